"""Child bookkeeping for the postmaster (PM: pmchild.c).

What it does: records every live child (pid, kind, child slot, start time, cancel key) and
hands out child slots — the index of a child's dead-man switch flag and ProcEntry in shared
memory — from one pool per group of kinds. Separate pools are why a flood of connections can
never starve the auxiliary processes or the background workers of a slot (PostgreSQL's
pmchild.c says the same). Kind-set helpers (`count`, `pids`) keep the state machine's
"which kinds are still here" questions in one place.

What it deliberately does not do: signal, fork or touch shared memory. The postmaster does
that with what this table tells it; this module is pure bookkeeping and is unit-tested as such.

Ownership: only the postmaster uses it. A slot is assigned before fork and released only by the
reaper, so a slot is never reused while its previous holder might still be alive.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from node.states import BackendKind

# Which pool each kind draws from. Walsenders start life as client connections, so they share
# the backend pool; dead-end children never attach and take no slot.
POOL_OF: dict[BackendKind, str | None] = {
    BackendKind.BACKEND: "backend",
    BackendKind.WALSENDER: "backend",
    BackendKind.BGWORKER: "bgworker",
    BackendKind.STARTUP: "aux",
    BackendKind.CHECKPOINTER: "aux",
    BackendKind.WALRECEIVER: "aux",
    BackendKind.METRICS: "aux",
    BackendKind.DEAD_END: None,
    BackendKind.POSTMASTER: None,
}
AUX_POOL_SIZE = 8  # startup, checkpointer, walreceiver, metrics exporter, and room to spare


@dataclass
class PMChild:
    pid: int
    kind: BackendKind
    slot: int  # -1 for dead-end children
    started_at: float = field(default_factory=time.time)
    cancel_key: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class ChildTable:
    def __init__(self, pool_sizes: dict[str, int]) -> None:
        self.pool_sizes = dict(pool_sizes)
        self._free: dict[str, list[int]] = {}
        start = 0
        for name, size in pool_sizes.items():
            # pop() takes from the end: keep the lowest slot numbers last so they go first
            self._free[name] = list(range(start + size - 1, start - 1, -1))
            start += size
        self.n_slots = start
        self._by_pid: dict[int, PMChild] = {}

    @classmethod
    def for_settings(cls, max_connections: int, max_worker_processes: int, max_wal_senders: int) -> ChildTable:
        # PostgreSQL sizes the backend pool at twice the connections it may serve, because a
        # child that is exiting still holds its slot while its successor starts.
        return cls({
            "backend": 2 * (max_connections + max_wal_senders),
            "bgworker": max(1, max_worker_processes),
            "aux": AUX_POOL_SIZE,
        })  # fmt: skip

    # -- slots ------------------------------------------------------------------------------------

    def assign(self, kind: BackendKind) -> int | None:
        """A free slot from the kind's pool; None when the pool is exhausted. -1 for kinds that
        take no slot."""
        pool = POOL_OF[kind]
        if pool is None:
            return -1
        free = self._free[pool]
        return free.pop() if free else None

    def release(self, kind: BackendKind, slot: int) -> None:
        pool = POOL_OF[kind]
        if pool is not None and slot >= 0:
            self._free[pool].append(slot)

    def used(self, pool: str) -> int:
        return self.pool_sizes[pool] - len(self._free[pool])

    # -- children ---------------------------------------------------------------------------------

    def add(self, child: PMChild) -> None:
        self._by_pid[child.pid] = child

    def pop(self, pid: int) -> PMChild | None:
        return self._by_pid.pop(pid, None)

    def get(self, pid: int) -> PMChild | None:
        return self._by_pid.get(pid)

    def __iter__(self) -> Iterator[PMChild]:
        return iter(list(self._by_pid.values()))

    def __len__(self) -> int:
        return len(self._by_pid)

    def __contains__(self, pid: object) -> bool:
        return pid in self._by_pid

    def kinds(self) -> set[BackendKind]:
        return {c.kind for c in self._by_pid.values()}

    def count(self, kinds: Iterable[BackendKind]) -> int:
        ks = frozenset(kinds)
        return sum(1 for c in self._by_pid.values() if c.kind in ks)

    def of_kinds(self, kinds: Iterable[BackendKind] | None = None,
                 exclude: Iterable[BackendKind] = ()) -> list[PMChild]:  # fmt: skip
        ks = None if kinds is None else frozenset(kinds)
        ex = frozenset(exclude)
        return [c for c in self._by_pid.values() if (ks is None or c.kind in ks) and c.kind not in ex]

    def cancel_keys(self) -> dict[int, int]:
        """pid → cancel key of the children a CancelRequest may target (client backends)."""
        return {c.pid: c.cancel_key for c in self._by_pid.values() if c.kind is BackendKind.BACKEND}
