"""The postmaster's statistics for the metrics exporter, and the shared signal counters.

What it does: `PmStatsMirror` is the postmaster's private copy of the counters it alone keeps —
PMState, the incarnation's start, consistency and readiness times, crash restarts, child starts
and exits by kind and exit class, and per background worker name the launches, crashes,
restarts and launches its start time did not allow. Every change is written through to the
current segment's `pmstats`; `publish(shm)` writes the whole copy into a new segment at a crash
reinit, so counters survive it (PostgreSQL keeps such state in postmaster-private memory for
the same reason: shared memory is suspect after a crash). `carry_signal_counts(old, new)`
copies the children's signal table into the new segment at the reinit, when no child is left
to write it. `flush_signal_count(...)` is what a process calls at a check point (never in a
handler) to add what it counted to the shared table.

What it deliberately does not do: read the counters for Prometheus (node/metrics.py does), or
take a lock in the postmaster: the postmaster's row of the signal table is written by the
postmaster only, every other row under LWLockId.METRICS.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

from node.ipc.shmem import BGW_STAT_SLOTS, EXIT_CLASS_SLOTS, KIND_SLOTS, SIGNAL_SLOTS
from node.states import BackendKind, PMState

KINDS = list(BackendKind)  # the same order as node/proc.py KIND_ORDER
EXIT_CLASSES = ("clean", "fatal", "crash")  # node/pmlogic.py ExitClass values, in slot order


@dataclass
class BgwStat:
    start_time: int
    starts: int = 0
    crashes: int = 0
    restarts: int = 0
    early_starts: int = 0


@dataclass
class PmStatsMirror:
    pm_state: PMState = PMState.INIT
    incarnation_start: float = 0.0
    consistent_at: float = 0.0
    ready_at: float = 0.0
    crash_restarts: int = 0
    child_starts: list[int] = field(default_factory=lambda: [0] * KIND_SLOTS)
    child_exits: list[int] = field(default_factory=lambda: [0] * (KIND_SLOTS * EXIT_CLASS_SLOTS))
    bgw: dict[str, BgwStat] = field(default_factory=dict)
    shm: Any = None  # the current segment's layout (written through)

    def publish(self, shm: Any) -> None:
        """Write everything into `shm` (a new segment) and write through to it from now on."""
        self.shm = shm
        ps = shm.pmstats
        ps.pm_state = int(self.pm_state)
        ps.incarnation_start = self.incarnation_start
        ps.consistent_at = self.consistent_at
        ps.ready_at = self.ready_at
        ps.crash_restarts = self.crash_restarts
        for i, v in enumerate(self.child_starts):
            ps.child_starts[i] = v
        for i, v in enumerate(self.child_exits):
            ps.child_exits[i] = v
        for i, (name, st) in enumerate(list(self.bgw.items())[:BGW_STAT_SLOTS]):
            self._write_bgw(i, name, st)
        ps.bgw_stat_count = min(len(self.bgw), BGW_STAT_SLOTS)

    # -- postmaster events ------------------------------------------------------------------------

    def set_state(self, state: PMState, now: float) -> None:
        self.pm_state = state
        if state in (PMState.HOT_STANDBY, PMState.RUN) and not self.consistent_at:
            self.consistent_at = now
        if self.shm is not None:
            self.shm.pmstats.pm_state = int(state)
            self.shm.pmstats.consistent_at = self.consistent_at

    def incarnation(self, now: float, *, reinit: bool) -> None:
        """The postmaster started, or a crash reinit began a new incarnation."""
        self.incarnation_start = now
        self.consistent_at = self.ready_at = 0.0
        if reinit:
            self.crash_restarts += 1
        if self.shm is not None:
            ps = self.shm.pmstats
            ps.incarnation_start, ps.consistent_at, ps.ready_at = now, 0.0, 0.0
            ps.crash_restarts = self.crash_restarts

    def ready(self, now: float) -> None:
        if not self.ready_at:
            self.ready_at = now
            if self.shm is not None:
                self.shm.pmstats.ready_at = now

    def child_start(self, kind: BackendKind) -> None:
        i = KINDS.index(kind)
        self.child_starts[i] += 1
        if self.shm is not None:
            self.shm.pmstats.child_starts[i] = self.child_starts[i]

    def child_exit(self, kind: BackendKind, exit_class: str) -> None:
        i = KINDS.index(kind) * EXIT_CLASS_SLOTS + EXIT_CLASSES.index(exit_class)
        self.child_exits[i] += 1
        if self.shm is not None:
            self.shm.pmstats.child_exits[i] = self.child_exits[i]

    def bgw_start(self, name: str, start_time: int, *, restart: bool, early: bool) -> None:
        st = self._bgw(name, start_time)
        st.starts += 1
        st.restarts += int(restart)
        st.early_starts += int(early)
        self._write_through(name, st)

    def bgw_crash(self, name: str, start_time: int) -> None:
        st = self._bgw(name, start_time)
        st.crashes += 1
        self._write_through(name, st)

    # -- internals ------------------------------------------------------------------------------

    def _bgw(self, name: str, start_time: int) -> BgwStat:
        st = self.bgw.get(name)
        if st is None:
            st = self.bgw[name] = BgwStat(start_time)
        return st

    def _write_through(self, name: str, st: BgwStat) -> None:
        if self.shm is None:
            return
        i = list(self.bgw).index(name)
        if i >= BGW_STAT_SLOTS:
            return  # more names than slots: the first ones are exported (documented in the exporter)
        self._write_bgw(i, name, st)
        self.shm.pmstats.bgw_stat_count = min(len(self.bgw), BGW_STAT_SLOTS)

    def _write_bgw(self, i: int, name: str, st: BgwStat) -> None:
        e = self.shm.pmstats.bgw_stats[i]
        e.name = name.encode()[:95]
        e.start_time = st.start_time
        e.starts, e.crashes, e.restarts, e.early_starts = st.starts, st.crashes, st.restarts, st.early_starts


def carry_signal_counts(old: Any, new: Any) -> None:
    """Copy the signal table of the old segment into the new one (crash reinit, no child alive)."""
    ctypes.memmove(ctypes.addressof(new.signal_counts), ctypes.addressof(old.signal_counts),
                   ctypes.sizeof(new.signal_counts))  # fmt: skip


def flush_signal_count(shm: Any, locks: Any, kind: BackendKind, signum: int, count: int) -> None:
    """Add `count` receipts of `signum` by a process of `kind` to the shared table."""
    if not 0 < signum < SIGNAL_SLOTS:
        return
    i = KINDS.index(kind) * SIGNAL_SLOTS + signum
    if kind is BackendKind.POSTMASTER or locks is None:
        shm.signal_counts[i] += count
        return
    from node.ipc.lwlock import LWLockId

    with locks.hold(LWLockId.METRICS):
        shm.signal_counts[i] += count


def signal_counts(shm: Any) -> dict[tuple[BackendKind, int], int]:
    """(kind, signal number) → count, the nonzero entries."""
    out = {}
    for k, kind in enumerate(KINDS):
        for n in range(1, SIGNAL_SLOTS):
            v = int(shm.signal_counts[k * SIGNAL_SLOTS + n])
            if v:
                out[(kind, n)] = v
    return out
