"""Normalising what a scenario saw, and comparing two flavours' outcomes (pure functions).

What it does: `log_events(text)` turns a server log (PostgreSQL's stderr format with
log_line_prefix '%m [%p] %b ', which pgbed writes too) into the sequence of PMState-relevant
events — readiness, consistency, redo, shutdown requests and steps, child exits, crash and
reinitialisation, promotion and timelines, walreceiver and background-worker starts and
terminations, checkpoints by kind — with pids, LSNs, times and paths removed, so that the same
scenario on pgbed and on PostgreSQL 15 gives comparable tokens. What timing alone decides is
normalised away: retry loops collapse into one event, the order within a burst of process
starts and ends is not compared (their counts are), and PostmasterStart workers' starts float
over the startup process's progress messages; readiness, consistency, crashes, promotion and
shutdown steps stay in order. `compare(a, b, intended)`
compares two `Outcome`s facet by facet (each node's events, the scenario's steps: SQLSTATEs,
exit codes, view shapes, surviving rows) after applying the intended differences
(`load_intended()`: orchestrator/intended_differences.toml, each with its rule id and reason),
and `side_by_side()` renders a divergence as two columns.

What it deliberately does not do: run anything (orchestrator/diff.py does), or match log lines
it does not know: an unknown line is not an event, so a new message on either side changes
nothing until a pattern here names it.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INTENDED_FILE = Path(__file__).with_name("intended_differences.toml")

# '%m [%p] %b LEVEL:  message' — the prefix both flavours are given.
_LINE = re.compile(r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) (?P<tz>\S+) \[(?P<pid>\d+)\] (?P<btype>.*?) ?"
                   r"(?P<level>LOG|FATAL|PANIC|ERROR|WARNING|DEBUG\d?|NOTICE|INFO):  (?P<msg>.*)$")  # fmt: skip

# (pattern on the message, event token template). First match wins.
_EVENTS: list[tuple[re.Pattern[str], str]] = [(re.compile(p), t) for p, t in [
    (r"^database system is ready to accept connections", "ready"),
    (r"^database system is ready to accept read-only connections", "ready_read_only"),
    (r"^consistent recovery state reached", "consistent"),
    (r"^entering standby mode", "standby_mode"),
    (r"^redo starts at", "redo_starts"),
    (r"^redo done at", "redo_done"),
    (r"^database system was interrupted", "was_interrupted"),
    (r"^database system was not properly shut down; automatic recovery in progress", "automatic_recovery"),
    (r"^database system was shut down in recovery at", "was_shut_down_in_recovery"),
    (r"^database system was shut down at", "was_shut_down"),
    (r"^received (smart|fast|immediate) shutdown request", r"shutdown_request(\1)"),
    (r"^aborting any active transactions", "aborting_transactions"),
    (r"^shutting down$", "shutting_down"),
    (r"^database system is shut down", "shut_down"),
    (r"^abnormal database system shutdown", "abnormal_shutdown"),
    (r"^(.+?) \(PID \d+\) was terminated by signal (\d+)", r"exit(\1, signal \2)"),
    (r"^(.+?) \(PID \d+\) exited with exit code (\d+)", r"exit(\1, code \2)"),
    (r"^terminating any other active server processes", "terminating_others"),
    (r"^all server processes terminated; reinitializing", "reinitializing"),
    (r"^shutting down because restart_after_crash is off", "no_restart_after_crash"),
    (r"^received promote request", "promote_request"),
    (r"^selected new timeline ID: (\d+)", r"new_timeline(\1)"),
    (r"^archive recovery complete", "archive_recovery_complete"),
    (r"^new target timeline is (\d+)", r"new_target_timeline(\1)"),
    (r"^started streaming WAL from primary at \S+ on timeline (\d+)", r"streaming(timeline \1)"),
    (r"^restarted WAL streaming at \S+ on timeline (\d+)", r"restarted_streaming(timeline \1)"),
    (r"^replication terminated by primary server", "replication_terminated_by_primary"),
    (r"^could not connect to the primary server", "cannot_connect_primary"),
    (r"^terminating walreceiver process due to administrator command", "walreceiver_terminated"),
    (r"^terminating walreceiver due to timeout", "walreceiver_timeout"),
    (r'^terminating background worker "(.+?)" due to administrator command', r"bgworker_terminated(\1)"),
    (r'^starting background worker process "(.+?)"', r"bgworker_start(\1)"),
    (r'^background worker "(.+?)": must be registered in shared_preload_libraries', r"bgworker_refused(\1)"),
    (r"^checkpoint starting: (.*)", r"checkpoint(\1)"),
    (r"^restartpoint starting: (.*)", r"restartpoint(\1)"),
    (r"^terminating connection due to administrator command", "backend_terminated"),
    (r"^terminating connection because of crash of another server process", "backend_crash_notice"),
]]  # fmt: skip

# Outcomes of retry loops whose count depends on timing alone (a walreceiver that retries
# while its primary is still in crash recovery fails 0..n times): dropped, not compared.
_TIMING_ONLY = ("FATAL: cannot_connect_primary", "cannot_connect_primary")

# Events whose relative order within one burst is the scheduler's, not the server's (workers
# started in one pass, children ending after one signal, each logging its FATAL before the
# postmaster logs its exit): a burst of consecutive ones, of any of these kinds, is sorted; and
# they are counted, not collapsed, since each is one process.
_UNORDERED = ("bgworker_start(", "exit(", "FATAL: bgworker_terminated(", "FATAL: backend_terminated")


def match_line(line: str) -> re.Match[str] | None:
    """A log line in the common prefix format ('%m [%p] %b '): groups stamp, tz, pid, btype,
    level, msg; None for continuation lines and anything else."""
    return _LINE.match(line)


def parse_line(line: str) -> tuple[str, str, str] | None:
    """(backend type, level, message) of a log line in the common prefix format, else None."""
    m = _LINE.match(line)
    return (m["btype"].strip(), m["level"], m["msg"].strip()) if m else None


def event_of(level: str, msg: str) -> str | None:
    for rx, template in _EVENTS:
        m = rx.search(msg)
        if m:
            token = m.expand(template)
            token = re.sub(r"\bPID \d+\b", "PID n", token)
            token = re.sub(r"\d+/[0-9A-F]+", "LSN", token)
            return token if level == "LOG" or level.startswith("DEBUG") else f"{level}: {token}"
    return None


def log_events(text: str) -> list[str]:
    """The normalised event sequence of a server log: other repeated events in a row collapse
    into one (retry loops run a timing-dependent number of times), and bursts of process
    starts and ends are sorted."""
    out: list[str] = []
    for line in text.splitlines():
        parsed = parse_line(line)
        if parsed is None:
            continue
        token = event_of(parsed[1], parsed[2])
        if token is None or token in _TIMING_ONLY or (out and out[-1] == token and not _unordered(token)):
            continue
        out.append(token)
    return _float_starts(_sort_bursts(out))


# The startup process's progress messages between two PMState changes: the postmaster starts
# eligible workers (PostmasterStart ones at PM_STARTUP, BGW-7) while the startup process goes
# through these, and which of the two processes logs first is the scheduler's choice. Within a
# stretch of consecutive progress messages and worker starts, the starts are put last (sorted);
# readiness, consistency, crashes and shutdown steps stay the boundaries they are.
_STARTUP_PROGRESS = ("was_shut_down", "was_interrupted", "automatic_recovery", "standby_mode", "redo_starts",
                     "redo_done", "checkpoint(end-of-recovery")  # fmt: skip


def _float_starts(events: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(events):
        j = i
        while j < len(events) and events[j].startswith((*_STARTUP_PROGRESS, "bgworker_start(")):
            j += 1
        if j == i:
            out.append(events[i])
            i += 1
            continue
        stretch = events[i:j]
        out.extend(t for t in stretch if not t.startswith("bgworker_start("))
        out.extend(sorted(t for t in stretch if t.startswith("bgworker_start(")))
        i = j
    return out


def _unordered(token: str) -> bool:
    return token.startswith(_UNORDERED)


def _sort_bursts(events: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(events):
        j = i + 1
        if _unordered(events[i]):
            while j < len(events) and _unordered(events[j]):
                j += 1
            out.extend(sorted(events[i:j]))
        else:
            out.append(events[i])
        i = j
    return out


# -- outcomes and their comparison ------------------------------------------------------------------


@dataclass
class Outcome:
    """What one run of a scenario on one flavour showed: facet name → sequence of lines.
    Facets: `events:<node>` (log_events of that node's server log) and `steps` (the
    scenario's own observations: SQLSTATEs, exit codes, view shapes, rows that survived)."""

    scenario: str
    flavor: str
    facets: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None  # the scenario itself failed (an exception, with its evidence)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "flavor": self.flavor, "facets": self.facets, "error": self.error,
                "seconds": round(self.seconds, 2)}  # fmt: skip


@dataclass
class Intended:
    """One intended difference: on `flavor`, in scenarios matching `scenario` (a glob) and
    facets matching `facet`, lines matching `pattern` are dropped, or rewritten to `replace`
    (a regex replacement) when given, before comparing."""

    id: str
    rule: str
    reason: str
    flavor: str
    pattern: str
    scenario: str = "*"
    facet: str = "*"
    replace: str | None = None

    def applies(self, scenario: str, flavor: str, facet: str) -> bool:
        return (flavor == self.flavor and fnmatch.fnmatchcase(scenario, self.scenario)
                and fnmatch.fnmatchcase(facet, self.facet))  # fmt: skip


def load_intended(path: Path = INTENDED_FILE) -> list[Intended]:
    """The intended differences; each entry must name a rule id and a reason."""
    data = tomllib.loads(path.read_text())
    out = []
    for i, d in enumerate(data.get("difference", [])):
        missing = [k for k in ("id", "rule", "reason", "flavor", "pattern") if not d.get(k)]
        if missing:
            raise ValueError(f"{path}: difference #{i + 1} lacks {', '.join(missing)}")
        if d["flavor"] not in ("pgbed", "postgres"):
            raise ValueError(f"{path}: difference {d['id']!r}: flavor must be pgbed or postgres")
        re.compile(d["pattern"])
        out.append(Intended(**d))
    ids = [x.id for x in out]
    dup = {x for x in ids if ids.count(x) > 1}
    if dup:
        raise ValueError(f"{path}: duplicate ids {sorted(dup)}")
    return out


def apply_intended(o: Outcome, intended: list[Intended]) -> tuple[Outcome, set[str]]:
    """A copy of `o` with the intended differences applied, and the ids that changed a line."""
    used: set[str] = set()
    facets: dict[str, list[str]] = {}
    for facet, lines in o.facets.items():
        rules = [x for x in intended if x.applies(o.scenario, o.flavor, facet)]
        kept: list[str] = []
        for line in lines:
            for x in rules:
                if re.search(x.pattern, line):
                    used.add(x.id)
                    if x.replace is None:
                        line = None  # type: ignore[assignment]
                        break
                    line = re.sub(x.pattern, x.replace, line)
            if line is not None and not (kept and kept[-1] == line and not _unordered(line)):
                kept.append(line)
        facets[facet] = kept
    return Outcome(o.scenario, o.flavor, facets, o.error, o.seconds), used


@dataclass
class Verdict:
    scenario: str
    status: str  # same | differs | pgbed-only | postgres-only | error
    how: list[str] = field(default_factory=list)  # one line per differing facet
    detail: str = ""  # both sequences side by side, for each differing facet
    intended_used: set[str] = field(default_factory=set)


def compare(a: Outcome, b: Outcome, intended: list[Intended]) -> Verdict:
    """pgbed's outcome `a` against PostgreSQL's `b`."""
    if a.error or b.error:
        errs = [f"{o.flavor}: {o.error.splitlines()[0]}" for o in (a, b) if o.error]
        return Verdict(a.scenario, "error", errs, "\n\n".join(f"--- {o.flavor} ---\n{o.error}" for o in (a, b)
                                                            if o.error))  # fmt: skip
    a2, used_a = apply_intended(a, intended)
    b2, used_b = apply_intended(b, intended)
    how, details = [], []
    for facet in sorted(set(a2.facets) | set(b2.facets)):
        x, y = a2.facets.get(facet, []), b2.facets.get(facet, [])
        if x != y:
            how.append(f"{facet}: {_first_difference(x, y)}")
            details.append(side_by_side(facet, x, y))
    return Verdict(a.scenario, "differs" if how else "same", how, "\n\n".join(details), used_a | used_b)


def _first_difference(x: list[str], y: list[str]) -> str:
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=x, b=y, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        left = ", ".join(x[i1:i2]) or "nothing"
        right = ", ".join(y[j1:j2]) or "nothing"
        at = f" after {x[i1 - 1]}" if i1 > 0 else " at the start"
        return f"pgbed has {left}, postgres has {right}{at}"
    return "same lines"


def side_by_side(facet: str, x: list[str], y: list[str], width: int = 58) -> str:
    """Both sequences in two columns, aligned by difflib, differing rows marked."""
    rows = [f"{facet}:", f"  {'pgbed':<{width}} | postgres"]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=x, b=y, autojunk=False).get_opcodes():
        left, right = x[i1:i2], y[j1:j2]
        for k in range(max(len(left), len(right))):
            lv = left[k] if k < len(left) else ""
            rv = right[k] if k < len(right) else ""
            mark = " " if op == "equal" else "*"
            rows.append(f"{mark} {lv[:width]:<{width}} | {rv}")
    return "\n".join(rows)
