"""Static registration rules (BGW-1, BGW-2) of node/bgworker.py, without processes.

Rules: BGW-1 (only while shared_preload_libraries is loaded in the postmaster; a LOG outside it;
an ERROR after shared memory exists), BGW-2 (rejections only log: failed sanity check, notify pid,
`too many background workers` beyond max_worker_processes).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node import bgworker
from node.bgwlist import WorkerDef
from node.elog import PGError
from node.guc import GucState
from node.proc import me


@pytest.fixture
def reg(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    logged: list[tuple[str, str]] = []
    monkeypatch.setattr(bgworker.elog, "log", lambda level, msg, **kw: logged.append((level, msg)))
    monkeypatch.setattr(bgworker, "STATIC_WORKERS", [])
    monkeypatch.setattr(bgworker, "_shmem_initialized", False)
    g = GucState()
    g.set_internal("max_worker_processes", "2")
    monkeypatch.setattr(me, "guc", g)
    yield logged


def _w(name: str, **kw: object) -> WorkerDef:
    return WorkerDef(name, function="m:f", **kw)  # type: ignore[arg-type]


def test_outside_preload_is_logged_and_ignored(reg: list[tuple[str, str]]) -> None:
    bgworker.register_background_worker(_w("late"))
    assert reg == [("LOG", 'background worker "late": must be registered in "shared_preload_libraries"')]
    assert bgworker.STATIC_WORKERS == []


def test_after_shmem_is_an_error(reg: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bgworker, "_shmem_initialized", True)
    with pytest.raises(PGError):
        bgworker.register_background_worker(_w("late"))


def test_rejections_while_preloading(reg: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bgworker, "_preloading", True)
    bgworker.register_background_worker(_w("noshm", flags=0))
    bgworker.register_background_worker(_w("notify", notify_pid=123))
    for name in ("a", "b", "c"):
        bgworker.register_background_worker(_w(name))
    assert [w.name for w in bgworker.STATIC_WORKERS] == ["a", "b"]
    msgs = [m for _lvl, m in reg]
    assert msgs[0] == 'background worker "noshm": background workers without shared memory access are not supported'
    assert msgs[1] == 'background worker "notify": only dynamic background workers can request notification'
    assert msgs[2] == "too many background workers"
