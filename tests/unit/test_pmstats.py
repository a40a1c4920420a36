"""node/pmstats.py on a real shared memory segment: the postmaster's mirror writes through, a
new segment gets every counter back (CRASH-7: counters survive a crash reinit), the signal table
is carried over, and only the postmaster's row is written without LWLockId.METRICS."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from node.ipc.lwlock import LWLockId
from node.ipc.shmem import ShmemSegment, ShmemSizes
from node.pmstats import PmStatsMirror, carry_signal_counts, flush_signal_count, signal_counts
from node.states import BackendKind, PMState


def seg() -> ShmemSegment:
    return ShmemSegment.create(ShmemSizes(n_procs=4), generation=1)


def test_mirror_writes_through_and_republishes_into_a_new_segment() -> None:
    m = PmStatsMirror(incarnation_start=100.0)
    a = seg()
    m.publish(a.s)
    m.set_state(PMState.RUN, 100.5)
    m.ready(100.6)
    m.child_start(BackendKind.CHECKPOINTER)
    m.child_exit(BackendKind.BACKEND, "crash")
    m.bgw_start("w", 1, restart=False, early=True)
    m.bgw_start("w", 1, restart=True, early=False)
    m.bgw_crash("w", 1)
    ps = a.s.pmstats
    assert (ps.pm_state, ps.consistent_at, ps.ready_at) == (int(PMState.RUN), 100.5, 100.6)
    assert ps.child_starts[list(BackendKind).index(BackendKind.CHECKPOINTER)] == 1
    assert ps.bgw_stat_count == 1
    e = ps.bgw_stats[0]
    assert (e.name, e.start_time, e.starts, e.restarts, e.early_starts, e.crashes) == (b"w", 1, 2, 1, 1, 1)

    m.incarnation(200.0, reinit=True)  # the crash reinit: a new incarnation, then a new segment
    b = seg()
    m.publish(b.s)
    ps = b.s.pmstats
    assert ps.crash_restarts == 1 and ps.incarnation_start == 200.0 and ps.consistent_at == 0.0
    assert ps.child_starts[list(BackendKind).index(BackendKind.CHECKPOINTER)] == 1
    assert ps.bgw_stats[0].starts == 2 and ps.bgw_stats[0].crashes == 1


class FakeLocks:
    def __init__(self) -> None:
        self.held: list[LWLockId] = []

    @contextlib.contextmanager
    def hold(self, lock: LWLockId) -> Iterator[None]:
        self.held.append(lock)
        yield


def test_signal_counts_flush_under_the_lock_and_carry_over() -> None:
    a, locks = seg(), FakeLocks()
    flush_signal_count(a.s, locks, BackendKind.POSTMASTER, 1, 2)  # SIGHUP x2, the postmaster: no lock
    assert locks.held == []
    flush_signal_count(a.s, locks, BackendKind.CHECKPOINTER, 1, 1)
    flush_signal_count(a.s, locks, BackendKind.CHECKPOINTER, 99, 1)  # out of range: ignored
    assert locks.held == [LWLockId.METRICS]
    assert signal_counts(a.s) == {(BackendKind.POSTMASTER, 1): 2, (BackendKind.CHECKPOINTER, 1): 1}
    b = seg()
    carry_signal_counts(a.s, b.s)
    assert signal_counts(b.s) == signal_counts(a.s)
