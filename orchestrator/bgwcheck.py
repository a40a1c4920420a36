"""Background-worker start-time checks over a node's jsonlog events (pure functions).

What it does: splits a node's events into incarnations (postmaster start, then every crash
`reinit`), and checks in each one:
- no ConsistentState worker started before the node's consistency event of that incarnation
  (the postmaster's transition to HOT_STANDBY or RUN);
- no RecoveryFinished worker started before the postmaster's transition to RUN of that
  incarnation (PostgreSQL forks them at PM_RUN just before it logs `ready`);
- after a crash reinit (BGW-17), every restartable worker that ran before the crash started
  again once the node was ready.
Each check returns a `Verdict`: valid, invalid (with evidence) or unknown (with why): unknown when
no worker of the start time concerned started in an incarnation, or when the incarnation after a
reinit was too short to judge.

What it deliberately does not do: read settings (pgbed.historic_bugs included) or query the
node; callers pass the events (orchestrator/localnode.py's `events()`, or the Docker backend's).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Event = Mapping[str, Any]


@dataclass
class Verdict:
    status: str  # "valid" | "invalid" | "unknown"
    evidence: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.status == "valid"


def incarnations(events: Iterable[Event]) -> list[list[Event]]:
    out: list[list[Event]] = [[]]
    for e in sorted(events, key=lambda x: float(x.get("ts", 0))):
        if e.get("event") in ("postmaster_start", "reinit") and out[-1]:
            out.append([])
        out[-1].append(e)
    return out


def _first_ts(inc: list[Event], pred: Any) -> float | None:
    for e in inc:
        if pred(e):
            return float(e["ts"])
    return None


def check_start_times(events: Iterable[Event]) -> Verdict:
    bad: list[str] = []
    judged = 0
    for n, inc in enumerate(incarnations(events)):
        consistent = _first_ts(inc, lambda e: e.get("event") == "pm_state" and e.get("new") in ("HOT_STANDBY", "RUN"))
        run = _first_ts(inc, lambda e: e.get("event") == "pm_state" and e.get("new") == "RUN")
        for e in inc:
            if e.get("event") != "bgw_start":
                continue
            st, ts = e.get("start_time"), float(e["ts"])
            if st == "consistent_state":
                judged += 1
                if consistent is None or ts < consistent:
                    bad.append(f"incarnation {n}: ConsistentState worker {e.get('name')!r} (pid {e.get('pid')}) "
                               f"started at {ts:.3f}, consistency at {consistent}")  # fmt: skip
            elif st == "recovery_finished":
                judged += 1
                if run is None or ts < run:
                    bad.append(f"incarnation {n}: RecoveryFinished worker {e.get('name')!r} (pid {e.get('pid')}) "
                               f"started at {ts:.3f}, RUN at {run}")  # fmt: skip
    if bad:
        return Verdict("invalid", bad)
    if not judged:
        return Verdict("unknown", ["no ConsistentState or RecoveryFinished worker started"])
    return Verdict("valid", [f"{judged} worker starts checked"])


def check_reinit_relaunch(events: Iterable[Event], *, settle_s: float = 2.0) -> Verdict:
    """BGW-17: after a crash reinit, the restartable workers that ran before it start again."""
    incs = incarnations(events)
    bad: list[str] = []
    judged = 0
    for before, after in itertools.pairwise(incs):
        if not after or after[0].get("event") != "reinit":
            continue
        ran = {e.get("name") for e in before if e.get("event") == "bgw_start" and int(e.get("restart_time", -1)) >= 0}
        forgotten = {e.get("name") for e in after if e.get("event") == "bgw_forget"}
        ready = _first_ts(after, lambda e: e.get("event") == "ready")
        last = float(after[-1]["ts"])
        if ready is None or last - ready < settle_s:
            continue  # too short to judge
        started = {e.get("name") for e in after if e.get("event") == "bgw_start"}
        for name in sorted(n for n in ran - forgotten if n is not None):
            judged += 1
            if name not in started:
                bad.append(f"restartable worker {name!r} ran before the reinit at {float(after[0]['ts']):.3f} "
                           f"and did not start again in the {last - ready:.1f} s after ready")  # fmt: skip
    if bad:
        return Verdict("invalid", bad)
    if not judged:
        return Verdict("unknown", ["no crash reinit with restartable workers long enough to judge"])
    return Verdict("valid", [f"{judged} relaunches seen"])
