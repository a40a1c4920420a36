"""Background-worker slots in a real shared-memory segment, without forking: dynamic
registration (BGW-4), shared-memory initialisation (BGW-5) and the postmaster's adoption
(BGW-6), driven on a Postmaster object whose kill() only records.

Rules: BGW-3 (a failed check is the registrant's ERROR), BGW-4 (None in the postmaster, at
max_parallel_workers for parallel workers, and with no free slot; first free slot, generation
+ 1, pid -1, terminate cleared, in_use written last, then PMSIGNAL_BACKGROUND_WORKER_CHANGE),
BGW-5 (static workers fill the slots in list order, generation 0, pid -1), BGW-6 (slot count
differing from max_worker_processes: `inconsistent background worker state`, nothing adopted;
a new slot with terminate set or arriving at STOP_BACKENDS is freed at once and its notify pid
signalled; a notify pid that is no live postmaster child is cleared; terminate on a known slot:
SIGTERM a running worker, publish pid 0 for one never started; a reused slot replaces the stale
entry), P-11 (the definition, including bgw_extra with NUL bytes, survives the copy).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node import bgworker, postmaster
from node.bgwlist import (
    BGW_NEVER_RESTART,
    BGWORKER_CLASS_PARALLEL,
    BGWORKER_SHMEM_ACCESS,
    RegisteredWorker,
    StartTime,
    WorkerDef,
)
from node.elog import PGError
from node.guc import GucState
from node.ipc.lwlock import LWLocks
from node.ipc.pmsignal import PMSignalReason
from node.ipc.shmem import ShmemSegment, ShmemSizes
from node.pmchild import PMChild
from node.proc import me
from node.states import BackendKind, PMState


def _w(name: str, **kw: Any) -> WorkerDef:
    kw.setdefault("restart_time", BGW_NEVER_RESTART)
    return WorkerDef(name, function="pgbed_test:pgbed_test_main", **kw)


@pytest.fixture
def seg() -> Iterator[ShmemSegment]:
    s = ShmemSegment.create(ShmemSizes(n_procs=16, n_bgworkers=4), 1)
    s.s.bgw_count = 4
    yield s


@pytest.fixture
def backend(seg: ShmemSegment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Any]]:
    """This test process plays a backend attached to `seg`; pmsignals are recorded."""
    sent: list[tuple[int, Any]] = []
    g = GucState()
    g.set_internal("max_parallel_workers", "1")
    monkeypatch.setattr(me, "shm", seg.s)
    monkeypatch.setattr(me, "kind", BackendKind.BACKEND)
    monkeypatch.setattr(me, "locks", LWLocks(str(tmp_path / "locks")))
    monkeypatch.setattr(me, "guc", g)
    monkeypatch.setattr(me, "postmaster_pid", 4242)
    monkeypatch.setattr(bgworker, "send_pmsignal", lambda shm, pid, reason: sent.append((pid, reason)))
    return sent


def test_dynamic_registration_fills_the_first_free_slot(seg: ShmemSegment, backend: list) -> None:
    """BGW-4: generation + 1, pid -1, terminate cleared, in_use last, then the pmsignal."""
    s = seg.s
    s.bgw[0].in_use = 1
    s.bgw[1].generation = 6
    s.bgw[1].terminate = 1
    seen_in_use_while_writing: list[int] = []
    real_write = bgworker.write_slot

    def spy(slot: Any, w: WorkerDef, **kw: Any) -> None:
        seen_in_use_while_writing.append(int(slot.in_use))
        real_write(slot, w, **kw)

    bgworker.write_slot = spy  # type: ignore[assignment]
    try:
        h = bgworker.register_dynamic_background_worker(_w("dyn", extra=b"\x05\x00\x00\x00\x0a\x00", notify_pid=77))
    finally:
        bgworker.write_slot = real_write  # type: ignore[assignment]
    assert h is not None and (h.slot, h.generation) == (1, 7)
    assert seen_in_use_while_writing == [0]
    slot = s.bgw[1]
    assert (int(slot.in_use), int(slot.pid), int(slot.terminate), int(slot.generation)) == (1, -1, 0, 7)
    assert backend == [(4242, PMSignalReason.BACKGROUND_WORKER_CHANGE)]
    copy = bgworker.read_slot(slot)  # P-11: what the postmaster copies out
    assert copy.extra == b"\x05\x00\x00\x00\x0a\x00" and copy.notify_pid == 77 and copy.name == "dyn"


def test_dynamic_registration_refusals(seg: ShmemSegment, backend: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """BGW-4: None in the postmaster, at max_parallel_workers, and with every slot in use;
    BGW-3: a failed sanity check is an ERROR for the registrant."""
    monkeypatch.setattr(me, "kind", BackendKind.POSTMASTER)
    assert bgworker.register_dynamic_background_worker(_w("pm")) is None
    monkeypatch.setattr(me, "kind", BackendKind.BACKEND)
    par = _w("par", flags=BGWORKER_SHMEM_ACCESS | BGWORKER_CLASS_PARALLEL)
    assert bgworker.register_dynamic_background_worker(par) is not None
    assert bgworker.register_dynamic_background_worker(par) is None  # max_parallel_workers = 1
    assert bgworker.register_dynamic_background_worker(_w("plain")) is not None  # others are not limited
    with pytest.raises(PGError) as ei:
        bgworker.register_dynamic_background_worker(_w("restarting par", flags=par.flags, restart_time=5))
    assert ei.value.sqlstate == "22023"
    assert bgworker.register_dynamic_background_worker(_w("c")) is not None
    assert bgworker.register_dynamic_background_worker(_w("d")) is not None
    assert bgworker.register_dynamic_background_worker(_w("e")) is None  # 4 of 4 slots in use
    assert len(backend) == 4


@pytest.fixture
def pm(seg: ShmemSegment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    g = GucState()
    g.set_internal("max_worker_processes", "4")
    p = postmaster.Postmaster(str(tmp_path), g)
    p.seg = seg
    p.state = PMState.RUN
    p.killed = []  # type: ignore[attr-defined]
    p.kill = lambda pid, sig: p.killed.append((pid, sig))  # type: ignore[attr-defined]
    p.logged = []  # type: ignore[attr-defined]
    monkeypatch.setattr(postmaster.elog, "log", lambda level, msg, **kw: p.logged.append((level, msg)))
    monkeypatch.setattr(postmaster.elog, "event", lambda *a, **kw: None)
    yield p
    p.sel.close()


def _publish(seg: ShmemSegment, i: int, w: WorkerDef, generation: int, *, terminate: bool = False) -> None:
    slot = seg.s.bgw[i]
    bgworker.write_slot(slot, w, generation=generation, pid=-1)
    slot.terminate = int(terminate)
    slot.in_use = 1


def test_shmem_init_fills_slots_in_list_order(pm: Any, seg: ShmemSegment) -> None:
    """BGW-5: static workers in list order, generation 0, pid -1; the count is published."""
    pm.bgworkers = [RegisteredWorker(_w(n, start_time=StartTime.RECOVERY_FINISHED), -1) for n in ("a", "b", "c")]
    seg.s.bgw_count = 0
    pm._bgw_shmem_init(seg.s)
    assert int(seg.s.bgw_count) == 4
    got = [(seg.s.bgw[i].name, int(seg.s.bgw[i].generation), int(seg.s.bgw[i].pid), int(seg.s.bgw[i].in_use))
           for i in range(4)]  # fmt: skip
    assert got == [(b"a", 0, -1, 1), (b"b", 0, -1, 1), (b"c", 0, -1, 1), (b"", 0, 0, 0)]
    assert [(rw.shmem_slot, rw.generation) for rw in pm.bgworkers] == [(0, 0), (1, 0), (2, 0)]


def test_inconsistent_slot_count_adopts_nothing(pm: Any, seg: ShmemSegment) -> None:
    """BGW-6: a slot count that differs from max_worker_processes is logged and nothing moves."""
    _publish(seg, 0, _w("x"), 1)
    seg.s.bgw_count = 3
    pm._bgw_state_change()
    assert ("LOG", "inconsistent background worker state") in pm.logged
    assert pm.bgworkers == [] and int(seg.s.bgw[0].in_use) == 1


def test_adoption_of_new_slots(pm: Any, seg: ShmemSegment) -> None:
    """BGW-6: a new slot is copied; a notify pid that is a live child is kept, any other is
    cleared (in the copy and in the slot, which is the postmaster's now); a new slot with
    terminate set is freed at once and its notify pid signalled."""
    pm.children.add(PMChild(501, BackendKind.BACKEND, 3))
    _publish(seg, 0, _w("kept", notify_pid=501), 1)
    _publish(seg, 1, _w("stale", notify_pid=999999), 1)
    _publish(seg, 2, _w("cancelled", notify_pid=501), 1, terminate=True)
    pm._bgw_state_change()
    by_name = {rw.worker.name: rw for rw in pm.bgworkers}
    assert set(by_name) == {"kept", "stale"}
    assert by_name["kept"].worker.notify_pid == 501
    assert by_name["stale"].worker.notify_pid == 0 and int(seg.s.bgw[1].notify_pid) == 0
    assert ("DEBUG1", "worker notification PID 999999 is not valid") in pm.logged
    assert (int(seg.s.bgw[2].in_use), int(seg.s.bgw[2].pid)) == (0, 0)
    assert pm.killed == [(501, signal.SIGUSR1)]
    pm._bgw_state_change()  # adoption is idempotent: nothing copied twice
    assert len(pm.bgworkers) == 2


def test_new_slot_at_stop_backends_is_freed(pm: Any, seg: ShmemSegment) -> None:
    """BGW-6 / BGW-16: from STOP_BACKENDS on, a new registration is freed and its waiter told."""
    pm.children.add(PMChild(502, BackendKind.BACKEND, 4))
    pm.state = PMState.STOP_BACKENDS
    _publish(seg, 0, _w("late", notify_pid=502), 1)
    pm._bgw_state_change()
    assert pm.bgworkers == [] and int(seg.s.bgw[0].in_use) == 0
    assert pm.killed == [(502, signal.SIGUSR1)]


def test_terminate_flag_on_known_slots(pm: Any, seg: ShmemSegment) -> None:
    """BGW-6 / BGW-14: terminate newly set on a running worker's slot → SIGTERM once; on a
    never-started one → pid 0 published (the waiter reads STOPPED) and the notify pid signalled."""
    pm.children.add(PMChild(503, BackendKind.BACKEND, 5))
    _publish(seg, 0, _w("running"), 1)
    _publish(seg, 1, _w("waiting", notify_pid=503), 1)
    pm._bgw_state_change()
    running = next(rw for rw in pm.bgworkers if rw.worker.name == "running")
    running.pid = 7001
    seg.s.bgw[0].pid = 7001
    seg.s.bgw[0].terminate = 1
    seg.s.bgw[1].terminate = 1
    pm._bgw_state_change()
    pm._bgw_state_change()  # "newly set": no second SIGTERM
    assert pm.killed.count((7001, signal.SIGTERM)) == 1
    assert int(seg.s.bgw[1].pid) == 0 and (503, signal.SIGUSR1) in pm.killed
    assert bgworker.status_of(True, 1, 1, int(seg.s.bgw[1].pid))[0].name == "STOPPED"


def test_reused_slot_replaces_the_stale_entry(pm: Any, seg: ShmemSegment) -> None:
    """BGW-6: a slot freed and filled again (new generation) is a new registration."""
    _publish(seg, 0, _w("first"), 1)
    pm._bgw_state_change()
    seg.s.bgw[0].in_use = 0
    _publish(seg, 0, _w("second"), 2)
    pm._bgw_state_change()
    assert [(rw.worker.name, rw.generation) for rw in pm.bgworkers] == [("second", 2)]
