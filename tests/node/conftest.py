"""Fixtures for node tests: real postmasters on free loopback ports in temp data directories.

Every node started through `node_factory` is torn down at the end of the test (immediate stop,
then SIGKILL of anything still holding its interlock), so a failing test leaves no process
behind. Nothing uses a fixed port or name, so the tests run in parallel under pytest-xdist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.localnode import LocalNode


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., LocalNode]]:
    nodes: list[LocalNode] = []

    def make(name: str = "node", *, start: bool = True, metrics: bool = False, **settings: Any) -> LocalNode:
        n = LocalNode(tmp_path, name, metrics=metrics)
        n.init(**settings)
        nodes.append(n)
        if start:
            n.start()
        return n

    yield make
    for n in nodes:
        n.teardown()


@pytest.fixture
def node(node_factory: Callable[..., LocalNode]) -> LocalNode:
    return node_factory()


@pytest.fixture
def standby_factory(tmp_path: Path) -> Iterator[Callable[..., LocalNode]]:
    """A streaming standby cloned from a running primary with `pgbed basebackup -R`."""
    nodes: list[LocalNode] = []

    def make(primary: LocalNode, name: str = "standby", *, start: bool = True, metrics: bool = False,
             **settings: Any) -> LocalNode:  # fmt: skip
        n = LocalNode(tmp_path, name, metrics=metrics)
        nodes.append(n)
        n.init_from_backup(primary, **settings)
        if start:
            n.start()
        return n

    yield make
    for n in nodes:
        n.teardown()
