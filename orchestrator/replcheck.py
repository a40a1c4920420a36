"""Replication invariants checked from outside a node: pure functions over view snapshots and
jsonlog events (the orchestrator's checkers build on these).

What it does: `walsnd_slot_violations()` checks a `pgbed_walsnd_slots` snapshot (WALSND-1/2,
SIG-3, SIG-4, P-6): no two slots share a pid; a used slot's latch is owned by the slot's own
pid; a free slot points at no latch; no slot names a process the node has already reported
dead (a `child_exit` event of the postmaster) or that is not alive. `walrcv_violations()` does
the same for `pgbed_walrcv`. `restart_gaps()` measures, from `child_start` events, the gaps
between walreceiver starts (WALRCV-6: never shorter than wal_retrieve_retry_interval).

What it deliberately does not do: read settings (such as pgbed.historic_bugs) or talk to a
node; callers pass the rows and events they collected, and whether a pid is alive.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Row = Mapping[str, Any]


def exited_pids(events: Iterable[Row]) -> set[int]:
    """Pids the postmaster reported as exited (`child_exit` events)."""
    return {int(e["child_pid"]) for e in events if e.get("event") == "child_exit" and e.get("child_pid")}


def walsnd_slot_violations(rows: Iterable[Row], *, exited: set[int] = frozenset(),  # type: ignore[assignment]
                           alive: Callable[[int], bool] | None = None) -> list[str]:  # fmt: skip
    out: list[str] = []
    seen: dict[int, int] = {}
    for r in rows:
        slot, pid, owner = int(r["slot"]), int(r["pid"] or 0), int(r["latch_owner_pid"] or 0)
        if pid:
            if pid in seen:
                out.append(f"slots {seen[pid]} and {slot} both hold pid {pid}")
            seen[pid] = slot
            if owner != pid:
                out.append(f"slot {slot} of pid {pid} points at a latch owned by {owner or 'nobody'}")
            if pid in exited:
                out.append(f"slot {slot} still names pid {pid}, which has exited")
            elif alive is not None and not alive(pid):
                out.append(f"slot {slot} names pid {pid}, which is not alive")
        elif owner:
            out.append(f"free slot {slot} points at a latch owned by {owner}")
    return out


def walrcv_violations(rows: Iterable[Row], *, exited: set[int] = frozenset(),  # type: ignore[assignment]
                      alive: Callable[[int], bool] | None = None) -> list[str]:  # fmt: skip
    out: list[str] = []
    for r in rows:
        pid, owner, state = int(r["pid"] or 0), int(r["latch_owner_pid"] or 0), r["state"]
        if pid and owner != pid:
            out.append(f"walreceiver {pid} points at a latch owned by {owner or 'nobody'}")
        if not pid and owner:
            out.append(f"no walreceiver, but its latch is owned by {owner}")
        if not pid and state not in ("stopped", "starting"):
            out.append(f"no walreceiver, but its state is {state}")
        if pid and (pid in exited or (alive is not None and not alive(pid))):
            out.append(f"walreceiver struct names pid {pid}, which has exited")
    return out


def restart_gaps(events: Iterable[Row], kind: str = "walreceiver") -> list[float]:
    """Seconds between consecutive starts of `kind` (from the postmaster's child_start events)."""
    starts = sorted(float(e["ts"]) for e in events if e.get("event") == "child_start" and e.get("kind") == kind)
    return [b - a for a, b in itertools.pairwise(starts)]
