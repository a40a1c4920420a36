"""WALRCV-1 and WALRCV-3 as state transitions on a real shared-memory segment: what the
startup process's request does to the WalRcv struct, and the 10 s startup timeout.

Rules: WALRCV-1 (STOPPED → STARTING + PMSIGNAL_START_WALRECEIVER; WAITING → RESTARTING + the
walreceiver's latch; start point rounded down to a segment boundary), WALRCV-3 (STARTING for
more than 10 s is forced to STOPPED), WALRCV-2 (ShutdownWalRcv: STARTING → STOPPED at once).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from node import walreceiver as wr
from node.ipc.shmem import ShmemSegment, ShmemSizes
from node.proc import me
from node.states import PMSignalReason


class _Locks:
    @contextlib.contextmanager
    def hold(self, lock: Any) -> Iterator[None]:
        yield


@pytest.fixture
def shm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    seg = ShmemSegment.create(ShmemSizes(n_procs=8), 1)
    s = seg.s
    s.xlog.segsize = 1 << 20
    s.walrcv.latch_slot = -1
    sent: list[int] = []
    monkeypatch.setattr(wr, "send_pmsignal", lambda shm, pid, reason: sent.append(int(reason)))
    monkeypatch.setattr(me, "slot", 3)
    s.sent = sent  # type: ignore[attr-defined]
    yield s


def test_request_from_stopped_starts_a_walreceiver(shm: Any) -> None:
    wr.request_streaming(shm, _Locks(), "host=h port=1", "slot1", 0x123456, 1)
    w = shm.walrcv
    assert w.state == wr.STARTING
    assert w.receive_start_lsn == 0x100000  # rounded down to the segment start
    assert w.receive_start_tli == 1
    assert w.conninfo == b"host=h port=1" and w.slot_name == b"slot1"
    assert w.startup_slot == 3
    assert shm.sent == [int(PMSignalReason.START_WALRECEIVER)]


def test_request_while_waiting_restarts_without_a_new_process(shm: Any) -> None:
    w = shm.walrcv
    w.state = wr.WAITING
    w.receive_start_lsn = 0x100000
    w.received_tli = 1
    wr.request_streaming(shm, _Locks(), "host=h", "", 0x2345678, 2)
    assert w.state == wr.RESTARTING
    assert w.receive_start_lsn == 0x2300000 and w.receive_start_tli == 2
    assert shm.sent == []  # the running walreceiver picks it up; no PMSIGNAL


def test_request_while_streaming_changes_nothing(shm: Any) -> None:
    w = shm.walrcv
    w.state = wr.STREAMING
    w.receive_start_lsn = 0x100000
    wr.request_streaming(shm, _Locks(), "host=h", "", 0x500000, 1)
    assert w.state == wr.STREAMING and w.receive_start_lsn == 0x100000 and shm.sent == []


def test_starting_too_long_is_forced_to_stopped(shm: Any) -> None:
    w = shm.walrcv
    wr.request_streaming(shm, _Locks(), "host=h", "", 0x100000, 1)
    assert wr.running(shm, _Locks())
    w.start_time = time.time() - (wr.STARTUP_TIMEOUT_S + 1)
    assert not wr.running(shm, _Locks())
    assert w.state == wr.STOPPED


def test_shutdown_of_a_walreceiver_that_never_started(shm: Any) -> None:
    w = shm.walrcv
    wr.request_streaming(shm, _Locks(), "host=h", "", 0x100000, 1)
    wr.shutdown_walrcv(shm, _Locks(), timeout=0.5)
    assert w.state == wr.STOPPED
