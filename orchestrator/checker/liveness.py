"""Liveness checkers: after the nemesis heals, the cluster must come back.

What it does: `back_to_ready` judges, for every heal (one node, or every node when the heal names
none), that each node concerned was observed ready (a successful `SELECT 1`, or a `ready` event)
at some time in [heal time, heal time + deadline_s].

What it deliberately does not do: poll nodes, sleep, or read settings; callers pass when they
healed and when they saw each node ready. It does not say why a node was late (the process and
data checkers look at the events), and it cannot tell a node that was never ready again from one
whose readiness nobody looked for: a caller must record a ready time for every node it polled.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orchestrator.checker.base import CheckResult, invalid, unknown, valid


def back_to_ready(heals: Iterable[Mapping[str, Any]], ready_times: Mapping[str, Sequence[float]], *,
                  deadline_s: float) -> CheckResult:  # fmt: skip
    name = "back-to-ready"
    hs = sorted(heals, key=lambda h: float(h["t"]))
    if not hs:
        return unknown("no heal happened: nothing to come back from", 0, name)
    times = {n: sorted(float(x) for x in ts) for n, ts in ready_times.items()}
    bad: list[str] = []
    unjudged: list[str] = []
    checked = 0
    for i, h in enumerate(hs):
        t = float(h["t"])
        targets = [h["node"]] if h.get("node") is not None else sorted(times)
        if not targets:
            unjudged.append(f"heal #{i} ({h.get('kind')}) at {t:.3f}: names no node, and no readiness was recorded")
            continue
        for n in targets:
            checked += 1
            ts = times.get(n, [])
            j = bisect.bisect_left(ts, t)
            nxt = ts[j] if j < len(ts) else None
            if nxt is None or nxt > t + deadline_s:
                later = f"next ready at {nxt:.3f} (+{nxt - t:.1f} s)" if nxt is not None else "never ready after it"
                bad.append(f"heal #{i} ({h.get('kind')}) at {t:.3f}: node {n} not ready within {deadline_s:g} s; "
                           f"{later}")  # fmt: skip
    if bad:
        return invalid(bad, checked, name)
    if unjudged:
        return unknown("; ".join(unjudged), checked, name)
    return valid(checked, name)
