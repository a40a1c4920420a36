"""Suite-wide options: `--backend=auto|local|docker` picks where backend-agnostic scenarios run
(DESIGN "Tests"): `local` runs them on local processes only, `docker` in containers only, `auto`
(the default) on both, the Docker variant skipping with its reason where no engine answers."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=("auto", "local", "docker"), default="auto",
                     help="where backend-agnostic scenarios run (default: auto = both)")  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    choice = config.getoption("--backend")
    if choice == "auto":
        return
    other = "docker" if choice == "local" else "local"
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("scenario_backend") if callspec else None
        (drop if backend == other else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
