"""CheckResult and how results combine (Jepsen's checker contract).

What it does: a checker returns `CheckResult(status, evidence, checked)`: VALID, INVALID (with
evidence: what was seen that breaks the property) or UNKNOWN (with why: too little was seen to
judge, or the checker itself failed). `merge` ranks INVALID over UNKNOWN over VALID;
`check_safe` turns an exception inside a checker into UNKNOWN instead of aborting a run.

What it deliberately does not do: read settings, query nodes or sleep. Callers pass data in.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

VALID, INVALID, UNKNOWN = "valid", "invalid", "unknown"
_RANK = {VALID: 0, UNKNOWN: 1, INVALID: 2}


@dataclass
class CheckResult:
    status: str
    evidence: list[str] = field(default_factory=list)
    checked: int = 0  # how many things were judged (ops, events, slots …)
    name: str = ""

    @property
    def valid(self) -> bool:
        return self.status == VALID

    def summary(self) -> str:
        head = f"{self.name or 'check'}: {self.status} ({self.checked} checked)"
        return head + "".join(f"\n  - {e}" for e in self.evidence[:10])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "checked": self.checked, "evidence": self.evidence}


def valid(checked: int, name: str = "") -> CheckResult:
    return CheckResult(VALID, [], checked, name)


def invalid(evidence: list[str], checked: int, name: str = "") -> CheckResult:
    return CheckResult(INVALID, evidence, checked, name)


def unknown(why: str, checked: int = 0, name: str = "") -> CheckResult:
    return CheckResult(UNKNOWN, [why], checked, name)


def merge(results: Iterable[CheckResult], name: str = "all") -> CheckResult:
    rs = list(results)
    if not rs:
        return unknown("no checker ran", 0, name)
    worst = max(rs, key=lambda r: _RANK[r.status]).status
    ev = [f"{r.name}: {e}" for r in rs if r.status == worst and r.status != VALID for e in r.evidence]
    return CheckResult(worst, ev, sum(r.checked for r in rs), name)


def merge_judged(results: Iterable[CheckResult], name: str) -> CheckResult:
    """Per-node results of one property: INVALID if any node breaks it; otherwise VALID if at
    least one node gave something to judge (a node that saw nothing relevant — no crash, no
    worker of that start time — does not make the property unknown); UNKNOWN only when no
    node could be judged."""
    rs = list(results)
    if any(r.status == INVALID for r in rs):
        return merge(rs, name)
    judged = [r for r in rs if r.status == VALID]
    if judged:
        return CheckResult(VALID, [], sum(r.checked for r in judged), name)
    return merge(rs, name)


def check_safe(name: str, fn: Callable[..., CheckResult], *args: Any, **kwargs: Any) -> CheckResult:
    try:
        r = fn(*args, **kwargs)
    except Exception as e:  # a broken checker must not pass a run, nor abort it
        return unknown(f"checker raised {e!r}: {traceback.format_exc(limit=3)}", 0, name)
    r.name = r.name or name
    return r
