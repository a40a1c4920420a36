"""Process-model checkers over the nodes' jsonlog events and view snapshots.

What it does
- `start_times`: bgwcheck.check_start_times per node (ConsistentState / RecoveryFinished workers
  never start early, REC-7), plus: every statically registered PostmasterStart worker starts in
  each later incarnation once the node is up (BGW-5, BGW-17, §1 eligibility).
- `bgw17_reset`: bgwcheck.check_reinit_relaunch per node (BGW-17).
- `bgw_slots`: pg_stat_bgworker snapshots of one node over time, with that node's events: slot
  generations never go back within an incarnation (BGW-4/5), row fields agree with each other
  (BGW-12), a NEVER_RESTART worker is not started twice for one (slot, generation) (BGW-7/10), and
  an unregistered worker's (slot, generation) is not in use a second after its exit (BGW-10).
- `replication_slots`: one snapshot of pgbed_walsnd_slots / pgbed_walrcv through
  orchestrator/replcheck.py (WALSND-1/2, SIG-3/4, P-6).
- `streaming_resumed`: on a standby, streaming comes back after every walreceiver exit, and
  walreceiver starts keep wal_retrieve_retry_interval apart (WALRCV-5/6).
- `signal_exits`: what followed each signal the nemesis sent, against EXPECTED, a table of the
  documented outcome per (role, signal) built from the process model (reference/process-model.md).

What it deliberately does not do: query nodes, sleep, or read settings (pgbed.historic_bugs, or
a node's restart_after_crash, shared_preload_libraries, wal_retrieve_retry_interval: callers pass
what matters). It judges only what the events show: a child's exit that the postmaster did not
log (the postmaster was dead by then), a process's reaction that leaves no event, or a signal
outside EXPECTED is UNKNOWN, never VALID. Times are compared across the orchestrator's clock
(fault and snapshot times) and the nodes' (`ts`), which are one host clock here.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node import events as ev
from orchestrator import bgwcheck, replcheck
from orchestrator.checker.base import INVALID, UNKNOWN, VALID, CheckResult, invalid, merge, merge_judged, unknown, valid

Event = Mapping[str, Any]

NORMAL_STATES = frozenset({"STARTUP", "RECOVERY", "HOT_STANDBY", "RUN"})  # no crash or shutdown under way
STATIC_SETTLE_S = 2.0  # the postmaster launches eligible workers in its next loop pass; 2 s is many passes
UNREGISTER_GRACE_S = 1.0  # the brief's bound: the slot is freed in the same pass as the exit is reaped
RETRY_MARGIN_S = 0.2  # WALRCV-6 gaps are measured between fork events, not between the C timestamps
# The nemesis notes a fault's time after kill() returns, so an exit can be logged just before it.
SKEW_S = 0.5
# After a crash: children get SIGQUIT, SIGKILL at 5 s (CRASH-5), then reinit (CRASH-7); 15 s covers it.
REINIT_GRACE_S = 15.0


def _ts(e: Event) -> float:
    try:
        return float(e.get("ts") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _int(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _sorted(events: Iterable[Event]) -> list[Event]:
    return sorted(events, key=_ts)  # stable: events with one ts keep their log order


def _boundary(inc: Sequence[Event]) -> str | None:
    """What began an incarnation (bgwcheck.incarnations): a postmaster start, a crash reinit, or
    None for the log's beginning before any postmaster_start."""
    for e in inc[:1]:
        if e.get("event") in (ev.PM_START, ev.REINIT):
            return str(e["event"])
    return None


def _from_verdict(v: bgwcheck.Verdict, checked: int, name: str) -> CheckResult:
    if v.status == VALID:
        return valid(checked, name)
    if v.status == INVALID:
        return invalid(list(v.evidence), checked, name)
    return unknown("; ".join(v.evidence) or "nothing to judge", checked, name)


# -- start times ------------------------------------------------------------------------------------


def _static_postmaster_start(events: list[Event], name: str) -> CheckResult | None:
    """Static PostmasterStart workers missing from a later incarnation, or None if none could be
    judged.

    pgbed logs no registration for static workers (bgw_register is for dynamic ones), so the static
    set is learned from the bgw_start events of an incarnation that began with postmaster_start: a
    worker of generation 0 with no bgw_register of that name in it. The first postmaster's own
    incarnation therefore cannot be judged (a static worker that never started there is invisible),
    and the judgement assumes every restart of the node keeps the same shared_preload_libraries.
    Expected in a later incarnation: after a postmaster_start, every static worker known; after a
    reinit, those of this postmaster still registered and restartable (BGW-10, BGW-17)."""
    known: dict[str, int] = {}  # static PostmasterStart worker -> restart_time
    registered: set[str] = set()  # those still registered with the current postmaster
    bad: list[str] = []
    judged = 0
    for n, inc in enumerate(bgwcheck.incarnations(events)):
        kind = _boundary(inc)
        if kind == ev.PM_START:
            expected = set(known)
        elif kind == ev.REINIT:
            expected = {w for w in registered if known.get(w, -1) >= 0}
        else:
            expected = set()
        ready = next((_ts(e) for e in inc if e.get("event") == ev.PM_STATE and e.get("new") in ("RUN", "HOT_STANDBY")),
                     None)  # fmt: skip
        stop = next((_ts(e) for e in inc if e.get("event") == ev.SHUTDOWN_REQUEST), None)
        fork_failed = any(e.get("event") == ev.FORK_FAILED and e.get("kind") == "background worker" for e in inc)
        if expected and ready is not None and inc and _ts(inc[-1]) - ready >= STATIC_SETTLE_S \
                and not fork_failed and (stop is None or stop > ready + STATIC_SETTLE_S):  # fmt: skip
            by = ready + STATIC_SETTLE_S
            started = {e.get("name") for e in inc if e.get("event") == ev.BGW_START and _ts(e) <= by}
            forgotten = {e.get("name") for e in inc if e.get("event") == ev.BGW_FORGET and _ts(e) <= by}
            for w in sorted(expected - forgotten):
                judged += 1
                if w not in started:
                    bad.append(f"incarnation {n} ({kind} at {_ts(inc[0]):.3f}): static PostmasterStart worker {w!r} "
                               f"(known from an earlier incarnation) had not started {STATIC_SETTLE_S:g} s after the "
                               f"node reached RUN/HOT_STANDBY at {ready:.3f}")  # fmt: skip
        # learn, then follow registrations through this incarnation
        if kind == ev.PM_START:
            registered = set(known)
            dynamic = {e.get("name") for e in inc if e.get("event") == ev.BGW_REGISTER}
            for e in inc:
                if e.get("event") == ev.BGW_START and e.get("start_time") == "postmaster_start" \
                        and _int(e.get("generation")) == 0 and e.get("name") not in dynamic:  # fmt: skip
                    restart = _int(e.get("restart_time"))
                    known[str(e.get("name"))] = -1 if restart is None else restart
                    registered.add(str(e.get("name")))
        for e in inc:
            if e.get("event") == ev.BGW_FORGET or (e.get("event") == ev.BGW_EXIT and e.get("action") == "unregister"):
                registered.discard(str(e.get("name")))
    if bad:
        return invalid(bad, judged, name)
    return valid(judged, name) if judged else None


def start_times(events_by_node: Mapping[str, Iterable[Mapping]]) -> CheckResult:
    """bgwcheck.check_start_times per node, plus the static PostmasterStart workers of
    `_static_postmaster_start` (which adds a result only for nodes where it judged something:
    most runs never restart a node, and that is no reason to call the start times unknown).

    Cannot be judged: whether a static PostmasterStart worker is missing from a node's first
    incarnation (pgbed logs no event for a static registration, so an unstarted one is invisible
    until some incarnation has shown it), nor a change of shared_preload_libraries between starts."""
    results: list[CheckResult] = []
    for node, evs in sorted(events_by_node.items()):
        es = _sorted(evs)
        judged = sum(1 for e in es if e.get("event") == ev.BGW_START
                     and e.get("start_time") in ("consistent_state", "recovery_finished"))  # fmt: skip
        results.append(_from_verdict(bgwcheck.check_start_times(es), judged, node))
        extra = _static_postmaster_start(es, node)
        if extra is not None:
            results.append(extra)
    if not results:
        return unknown("no node's events to judge", 0, "start-times")
    return merge_judged(results, "start-times")


def bgw17_reset(events_by_node: Mapping[str, Iterable[Mapping]]) -> CheckResult:
    results: list[CheckResult] = []
    for node, evs in sorted(events_by_node.items()):
        es = _sorted(evs)
        v = bgwcheck.check_reinit_relaunch(es)
        m = re.match(r"(\d+) ", v.evidence[0]) if v.status == VALID and v.evidence else None
        checked = int(m.group(1)) if m else sum(1 for e in es if e.get("event") == ev.REINIT)
        results.append(_from_verdict(v, checked, node))
    if not results:
        return unknown("no node's events to judge", 0, "bgw17-reset")
    return merge_judged(results, "bgw17-reset")


# -- pg_stat_bgworker snapshots ---------------------------------------------------------------------


def bgw_slots(snapshots: Sequence[Mapping[str, Any]], events: Iterable[Mapping]) -> CheckResult:
    """Snapshots: {"t", "incarnation", "rows"} of one node in time order. node/bgwviews.py renders
    a free slot (in_use false) with status "free"; "stopped" is accepted there too (both say no
    process), the property being that a free slot names no pid. restart_time NULL there is
    NEVER_RESTART (-1 in events); `starts` counts forks since the slot was (re)written for its
    current generation (node/bgworker.py write_slot), so a NEVER_RESTART row with starts > 1 is a
    second start of one registration."""
    name = "bgw-slots"
    snaps = sorted(snapshots, key=lambda s: float(s["t"]))
    evs = _sorted(events)
    bad: list[str] = []
    rows_checked = 0
    any_in_use = False
    last_gen: dict[tuple[Any, int], tuple[int, float]] = {}
    for s in snaps:
        t, inc = float(s["t"]), s.get("incarnation")
        for r in s.get("rows", []):
            rows_checked += 1
            slot, gen, in_use = int(r["slot"]), int(r["generation"]), bool(r["in_use"])
            status, pid = r.get("status"), _int(r.get("pid"))
            where = f"snapshot at {t:.3f} (incarnation {inc}), slot {slot} generation {gen}"
            any_in_use = any_in_use or in_use
            prev = last_gen.get((inc, slot))
            if prev is not None and gen < prev[0]:
                bad.append(f"{where}: generation went back from {prev[0]} (snapshot at {prev[1]:.3f}) to {gen}")
            last_gen[(inc, slot)] = (gen, t)
            if not in_use:
                if status not in ("free", "stopped") or pid is not None:
                    bad.append(f"{where}: not in use but status {status!r}, pid {pid}")
            elif status == "started":
                if pid is None or pid <= 0:
                    bad.append(f"{where}: status 'started' with pid {pid}")
            elif status in ("not yet started", "stopped"):
                if pid is not None:
                    bad.append(f"{where}: status {status!r} with pid {pid}")
            if in_use and r.get("restart_time") is None and (_int(r.get("starts")) or 0) > 1:
                bad.append(f"{where}: NEVER_RESTART worker {r.get('name')!r} shows {r.get('starts')} starts")
    incs = bgwcheck.incarnations(evs)
    for n, inc in enumerate(incs):
        starts: dict[tuple[Any, Any], list[Event]] = {}
        for e in inc:
            if e.get("event") == ev.BGW_START and (_int(e.get("restart_time")) or 0) < 0:
                starts.setdefault((e.get("slot"), e.get("generation")), []).append(e)
        for (slot, gen), es in sorted(starts.items(), key=lambda kv: repr(kv[0])):
            if len(es) > 1:
                seen = ", ".join(f"pid {e.get('pid')} at {_ts(e):.3f}" for e in es)
                bad.append(f"incarnation {n}: NEVER_RESTART worker {es[0].get('name')!r} started {len(es)} times for "
                           f"slot {slot} generation {gen}: {seen}")  # fmt: skip
        # an unregistered (slot, generation) only counts until shared memory is rebuilt
        end = _ts(incs[n + 1][0]) if n + 1 < len(incs) and incs[n + 1] else float("inf")
        for e in inc:
            if e.get("event") != ev.BGW_EXIT or e.get("action") != "unregister":
                continue
            slot, gen, t_exit = _int(e.get("slot")), _int(e.get("generation")), _ts(e)
            for s in snaps:
                t = float(s["t"])
                if not (t_exit + UNREGISTER_GRACE_S < t < end):
                    continue
                for r in s.get("rows", []):
                    if bool(r["in_use"]) and int(r["slot"]) == slot and int(r["generation"]) == gen:
                        bad.append(f"worker {e.get('name')!r} (pid {e.get('pid')}) exited with code "
                                   f"{e.get('exit_code')} and was unregistered at {t_exit:.3f}, but slot {slot} "
                                   f"generation {gen} is still in use (status {r.get('status')!r}) in the snapshot "
                                   f"at {t:.3f}")  # fmt: skip
    if bad:
        return invalid(bad, rows_checked, name)
    if not snaps:
        return unknown("no pg_stat_bgworker snapshot", 0, name)
    if not any_in_use:
        return unknown(f"no worker was in use in any of {len(snaps)} snapshots", rows_checked, name)
    return valid(rows_checked, name)


# -- replication slots ------------------------------------------------------------------------------


def _exited(events: list[Event]) -> set[int]:
    """replcheck.exited_pids, less the pids started again after their last exit: a recycled pid is
    a new process, not a dead one named by a stale slot."""
    pids = replcheck.exited_pids(events)
    last_exit: dict[int, float] = {}
    last_start: dict[int, float] = {}
    for e in events:
        p = _int(e.get("child_pid"))
        if p is None:
            continue
        if e.get("event") == ev.CHILD_EXIT:
            last_exit[p] = max(last_exit.get(p, 0.0), _ts(e))
        elif e.get("event") == ev.CHILD_START:
            last_start[p] = max(last_start.get(p, 0.0), _ts(e))
    return {p for p in pids if last_start.get(p, -1.0) <= last_exit.get(p, 0.0)}


def replication_slots(walsnd_rows: Iterable[Mapping], walrcv_rows: Iterable[Mapping], events: Iterable[Mapping],
                      alive: Callable[[int], bool] | None = None) -> CheckResult:  # fmt: skip
    """One snapshot of one node's pgbed_walsnd_slots and pgbed_walrcv, with the events that node
    logged before the snapshot (a process that exits later was alive when it was taken).

    Only the current postmaster's events count: a new postmaster (a restarted container above
    all, whose PID namespace starts again at 1) hands out the pids of the last one's children
    again, and the fork of such a pid may be logged only just before the snapshot."""
    name = "replication-slots"
    ws, wr, evs = list(walsnd_rows), list(walrcv_rows), _sorted(events)
    starts = [i for i, e in enumerate(evs) if e.get("event") == ev.PM_START]
    if starts:
        evs = evs[starts[-1]:]
    if not ws and not wr:
        return unknown("no pgbed_walsnd_slots or pgbed_walrcv row", 0, name)
    exited = _exited(evs)
    bad = [f"pgbed_walsnd_slots: {v}" for v in replcheck.walsnd_slot_violations(ws, exited=exited, alive=alive)]
    bad += [f"pgbed_walrcv: {v}" for v in replcheck.walrcv_violations(wr, exited=exited, alive=alive)]
    if bad:
        return invalid(bad, len(ws) + len(wr), name)
    return valid(len(ws) + len(wr), name)


# -- streaming resumed ------------------------------------------------------------------------------


def streaming_resumed(events: Iterable[Mapping], *, retry_interval_s: float, deadline_s: float) -> CheckResult:
    """A standby's events. Each walreceiver exit must be followed by a walrcv_streaming event within
    deadline_s, the clock restarting at a postmaster_start in between (time the node was down is
    back_to_ready's business). Not judged: exits once a shutdown was requested (nothing restarts),
    exits in an incarnation where the node was promoted or reached RUN (no longer a standby), and
    exits too close to the end of the events to tell. A fault that holds the stream down longer
    than deadline_s (a partition) is reported: pass a deadline that covers the longest fault.

    WALRCV-6 is judged within each incarnation only: a crash reinit or a new postmaster starts a
    fresh startup process, which asks for a walreceiver at once."""
    name = "streaming-resumed"
    evs = _sorted(events)
    if not evs:
        return unknown("no events", 0, name)
    observed_until = _ts(evs[-1])
    bad: list[str] = []
    checked = 0
    floor = retry_interval_s - RETRY_MARGIN_S
    incs = bgwcheck.incarnations(evs)
    for n, inc in enumerate(incs):
        # WALRCV-6 spaces the startup process's requests for streaming; the postmaster forks the
        # walreceiver when it next gets round to it, so fork-to-fork gaps can be shorter than the
        # interval by that latency. Judge the requests where the node logs them, else the forks.
        # A request right after following a new timeline is immediate by design (the rescan
        # happens before the sleep), so such a gap is not judged.
        requests = sorted(_ts(e) for e in inc if e.get("event") == ev.WALRCV_REQUEST)
        what = "requested streaming"
        if not requests:
            requests = sorted(_ts(e) for e in inc
                              if e.get("event") == ev.CHILD_START and e.get("kind") == "walreceiver")  # fmt: skip
            what = "started a walreceiver"
        switches = [_ts(e) for e in inc if e.get("event") == ev.TIMELINE_SWITCH]
        for a, b in itertools.pairwise(requests):
            if any(a <= t <= b for t in switches):
                continue
            checked += 1
            if b - a < floor:
                bad.append(f"incarnation {n}: {what} at {a:.3f} and again at {b:.3f}, {b - a:.2f} s apart "
                           f"(WALRCV-6: at least {retry_interval_s:g} s - {RETRY_MARGIN_S:g} s margin)")  # fmt: skip
    stream_ts = [_ts(e) for e in evs if e.get("event") == ev.WALRCV_STREAMING]
    start_ts = [_ts(e) for e in evs if e.get("event") == ev.PM_START]
    exits_seen = 0
    skipped: list[str] = []
    shutdown_at: float | None = None  # a shutdown request holds for the rest of that postmaster's life
    for inc in incs:
        if _boundary(inc) == ev.PM_START:
            shutdown_at = None
        # promotion stops the walreceiver for good: the exit that goes with it resumes nothing
        left_recovery = next((_ts(e) for e in inc if e.get("event") == ev.PROMOTE
                              or (e.get("event") == ev.PM_STATE and e.get("new") == "RUN")), None)  # fmt: skip
        for e in inc:
            if e.get("event") == ev.SHUTDOWN_REQUEST and shutdown_at is None:
                shutdown_at = _ts(e)
            if e.get("event") != ev.CHILD_EXIT or e.get("kind") != "walreceiver":
                continue
            exits_seen += 1
            t = _ts(e)
            what = f"walreceiver pid {e.get('child_pid')} exited ({_exit_words(e)}) at {t:.3f}"
            if shutdown_at is not None:
                skipped.append(f"{what}: during a shutdown requested at {shutdown_at:.3f}")
                continue
            if left_recovery is not None and left_recovery <= t + deadline_s:
                skipped.append(f"{what}: the node left recovery at {left_recovery:.3f}")
                continue
            k = bisect.bisect_right(stream_ts, t)
            t_stream = stream_ts[k] if k < len(stream_ts) else None
            hi = bisect.bisect_left(start_ts, t_stream) if t_stream is not None else len(start_ts)
            restarts = start_ts[bisect.bisect_right(start_ts, t) : hi]
            ref = restarts[-1] if restarts else t
            since = f" (the postmaster started again at {ref:.3f})" if restarts else ""
            if t_stream is not None and t_stream - ref <= deadline_s:
                checked += 1
                continue
            if t_stream is None and observed_until < ref + deadline_s:
                skipped.append(f"{what}: the events end at {observed_until:.3f}, before the deadline")
                continue
            checked += 1
            seen = f"streaming again only at {t_stream:.3f}" if t_stream is not None else "no streaming after it"
            bad.append(f"{what}: {seen}{since}, deadline {deadline_s:g} s")
    if bad:
        return invalid(bad, checked, name)
    if not exits_seen:
        return unknown("no walreceiver exit: nothing to resume from", checked, name)
    if exits_seen == len(skipped):
        return unknown(f"none of {exits_seen} walreceiver exits could be judged: " + "; ".join(skipped[:5]), checked,
                       name)  # fmt: skip
    return valid(checked, name)


def _exit_words(e: Event) -> str:
    if e.get("signal"):
        return f"killed by {e.get('signal')}, {e.get('classification')}"
    return f"exit code {e.get('exit_code')}, {e.get('classification')}"


# -- signal exits -----------------------------------------------------------------------------------

RUNS = "keeps running"  # no exit of the pid within window_s
NO_CRASH = "no crash"  # may end (exit 0 or 1), must not crash
EXIT = "exits"  # exit code in `codes`, not a crash
CRASH_RESTART = "crash restart"  # crash-classified exit (codes / killed_by), crash event, then reinit
STARTUP_FAILURE = "startup failure"  # the startup process's exit (codes / killed_by), then the postmaster exits 1
PM_RELOAD = "postmaster reloads"
PM_RUNS = "postmaster keeps running"
PM_SHUTDOWN = "postmaster shuts down"
PM_DEATH = "postmaster dies"

SHUTDOWN_RANK = {"smart": 1, "fast": 2, "immediate": 3}


@dataclass(frozen=True)
class Expect:
    outcome: str
    rule: str
    says: str
    codes: frozenset[int] = frozenset()  # accepted exit codes
    killed_by: str | None = None  # accepted terminating signal
    mode: str | None = None  # PM_SHUTDOWN: the shutdown mode requested
    prompt: bool = True  # EXIT: a missing exit is a violation (not for exits that wait on a peer)
    crash_event: bool = True  # CRASH_RESTART: the postmaster logs this pid's crash (CRASH-4)


def _x(outcome: str, rule: str, says: str, codes: tuple[int, ...] = (), **kw: Any) -> Expect:
    return Expect(outcome, rule, says, frozenset(codes), **kw)


# (role, signal) -> documented outcome. Roles as orchestrator/faults.py; exit codes as pgbed's child_exit events.
EXPECTED: dict[tuple[str, str], Expect] = {
    # The postmaster (PM-0: handlers set flags; the loop acts).
    ("postmaster", "SIGHUP"): _x(PM_RELOAD, "SHUT-8, PM-0", "reloads (a reload event) while Shutdown <= smart"),
    ("postmaster", "SIGUSR1"): _x(PM_RUNS, "PM-0", "pmsignal check only; keeps running"),
    ("postmaster", "SIGTERM"): _x(PM_SHUTDOWN, "SHUT-1, SHUT-2", "smart shutdown request", mode="smart"),
    ("postmaster", "SIGINT"): _x(PM_SHUTDOWN, "SHUT-1, SHUT-3", "fast shutdown request, exit 0", mode="fast"),
    ("postmaster", "SIGQUIT"): _x(PM_SHUTDOWN, "SHUT-1, SHUT-7", "immediate shutdown request, exit 0",
                                  mode="immediate"),
    ("postmaster", "SIGKILL"): _x(PM_DEATH, "CRASH-10", "dies without a word; children exit 1 when they notice"),
    # The startup process: any failure of it ends the postmaster with exit 1, no reinit.
    ("startup", "SIGHUP"): _x(RUNS, "SHUT-8", "reloads; keeps running"),
    ("startup", "SIGUSR1"): _x(RUNS, "SIG-3", "latch wake-up; keeps running"),
    ("startup", "SIGUSR2"): _x(RUNS, "REC-5", "promotes only if the promote file exists; otherwise keeps running"),
    ("startup", "SIGTERM"): _x(STARTUP_FAILURE, "CRASH-9", "exit 1, then the postmaster exits 1", (1,)),
    ("startup", "SIGQUIT"): _x(STARTUP_FAILURE, "CRASH-6, CRASH-9", "exit 2, then the postmaster exits 1", (2,)),
    ("startup", "SIGKILL"): _x(STARTUP_FAILURE, "CRASH-1, CRASH-9", "killed, then the postmaster exits 1",
                               killed_by="SIGKILL"),
    # The checkpointer: exit 0 is clean only in WAIT_CHECKPOINTER.
    ("checkpointer", "SIGHUP"): _x(RUNS, "SHUT-8", "reloads; keeps running"),
    ("checkpointer", "SIGUSR1"): _x(RUNS, "SIG-3", "latch wake-up; keeps running"),
    ("checkpointer", "SIGTERM"): _x(RUNS, "SHUT-4", "ignored (not in the stop set); keeps running"),
    ("checkpointer", "SIGINT"): _x(CRASH_RESTART, "CRASH-11, SHUT-5",
                                   "writes the shutdown checkpoint out of turn: 'WAL was shut down unexpectedly', "
                                   "crash restart (its own exit is the SIGQUIT that follows)",
                                   crash_event=False),
    ("checkpointer", "SIGUSR2"): _x(CRASH_RESTART, "CRASH-1", "exit 0 outside WAIT_CHECKPOINTER: crash restart", (0,)),
    ("checkpointer", "SIGQUIT"): _x(CRASH_RESTART, "CRASH-1, CRASH-6", "exit 2: crash restart", (2,)),
    ("checkpointer", "SIGKILL"): _x(CRASH_RESTART, "CRASH-1, CRASH-4", "killed: crash restart", killed_by="SIGKILL"),
    # The WAL sender.
    ("walsender", "SIGHUP"): _x(RUNS, "WALSND-4", "reloads; keeps running"),
    ("walsender", "SIGUSR1"): _x(RUNS, "WALSND-4", "procsignal (stops only on the checkpointer's request); runs"),
    ("walsender", "SIGINT"): _x(NO_CRASH, "WALSND-4", "cancels the current command (may end the stream); no crash"),
    ("walsender", "SIGUSR2"): _x(EXIT, "WALSND-4, WALSND-6", "last cycle: exit 0 once the standby confirmed", (0,),
                                 prompt=False),
    ("walsender", "SIGTERM"): _x(EXIT, "WALSND-4, CRASH-1", "FATAL, exit 1; no crash", (1,)),
    ("walsender", "SIGQUIT"): _x(CRASH_RESTART, "WALSND-4, CRASH-1", "exit 2: crash restart", (2,)),
    ("walsender", "SIGKILL"): _x(CRASH_RESTART, "CRASH-1, CRASH-4", "killed: crash restart", killed_by="SIGKILL"),
    # The WAL receiver.
    ("walreceiver", "SIGHUP"): _x(RUNS, "WALRCV-4", "reloads; keeps running"),
    ("walreceiver", "SIGINT"): _x(RUNS, "WALRCV-4", "ignored; keeps running"),
    ("walreceiver", "SIGUSR1"): _x(RUNS, "WALRCV-4", "procsignal; keeps running"),
    ("walreceiver", "SIGUSR2"): _x(RUNS, "WALRCV-4", "ignored; keeps running"),
    ("walreceiver", "SIGTERM"): _x(EXIT, "WALRCV-4, WALRCV-5", "exit 1, forgotten and re-requested; no crash", (1,)),
    ("walreceiver", "SIGQUIT"): _x(CRASH_RESTART, "WALRCV-4, WALRCV-5", "exit 2: standby crash restart", (2,)),
    ("walreceiver", "SIGKILL"): _x(CRASH_RESTART, "WALRCV-5, CRASH-1", "killed: standby crash restart",
                                   killed_by="SIGKILL"),
    # Background workers (PostgreSQL's default handlers; worker_spi adds a SIGHUP reload).
    ("bgworker", "SIGHUP"): _x(RUNS, "BGW-18", "ignored or reload; keeps running"),
    ("bgworker", "SIGUSR1"): _x(RUNS, "BGW-18", "ignored, or procsignal for database workers; keeps running"),
    ("bgworker", "SIGINT"): _x(NO_CRASH, "BGW-18", "ignored, or a cancel (ERROR, exit 1) for database workers"),
    ("bgworker", "SIGTERM"): _x(EXIT, "BGW-18, BGW-10", "FATAL 'terminating background worker', exit 1", (1,)),
    ("bgworker", "SIGQUIT"): _x(CRASH_RESTART, "BGW-18, CRASH-4", "_exit(2): crash restart", (2,)),
    ("bgworker", "SIGKILL"): _x(CRASH_RESTART, "BGW-10, CRASH-4", "killed: crash restart", killed_by="SIGKILL"),
    # Client backends.
    ("backend", "SIGHUP"): _x(RUNS, "SHUT-8", "reloads at the next idle point; keeps running"),
    ("backend", "SIGINT"): _x(RUNS, "F10", "cancels the running statement; the session keeps running"),
    ("backend", "SIGUSR1"): _x(RUNS, "SIG-3", "procsignal / latch wake-up; keeps running"),
    ("backend", "SIGTERM"): _x(EXIT, "SIG-6, CRASH-1", "FATAL at the next check, exit 1; no crash", (1,)),
    ("backend", "SIGQUIT"): _x(CRASH_RESTART, "CRASH-6", "quickdie, exit 2: crash restart", (2,)),
    ("backend", "SIGKILL"): _x(CRASH_RESTART, "CRASH-1, CRASH-4", "killed: crash restart (F18)", killed_by="SIGKILL"),
}  # fmt: skip


@dataclass(frozen=True)
class _Mark:
    """Something on a node after which a child may exit for a reason other than a signal to it."""

    ts: float
    index: int  # position in the node's sorted events (a fault's mark sorts by time only)
    what: str
    pid: int | None = None  # a crash event's child: its own crash disturbs nobody's judgement of it
    blind: bool = False  # the postmaster stopped or died: no more child exits get logged
    until: float | None = None  # a silent death happened somewhere in [ts, until]


def _marks(evs: list[Event]) -> list[_Mark]:
    out: list[_Mark] = []
    pm_pid: int | None = None
    pm_exited = True
    for i, e in enumerate(evs):
        name, t = e.get("event"), _ts(e)
        if name == ev.PM_START:
            if not pm_exited:
                # the previous postmaster died without a word; it was alive at its own last line
                j = next((k for k in range(i - 1, -1, -1) if _int(evs[k].get("pid")) == pm_pid), i - 1)
                out.append(_Mark(_ts(evs[j]) if j >= 0 else t, max(j, 0),
                                 f"postmaster {pm_pid} died without logging its exit (next start at {t:.3f})",
                                 blind=True, until=t))  # fmt: skip
            pm_pid, pm_exited = _int(e.get("pid")), False
            out.append(_Mark(t, i, f"postmaster_start at {t:.3f}", blind=True))
        elif name == ev.PM_EXIT:
            pm_exited = True
            out.append(_Mark(t, i, f"postmaster_exit (code {e.get('exit_code')}) at {t:.3f}", blind=True))
        elif name == ev.CRASH:
            out.append(_Mark(t, i, f"crash of {e.get('kind')} pid {e.get('child_pid')} at {t:.3f}",
                             _int(e.get("child_pid"))))  # fmt: skip
        elif name in (ev.REINIT, ev.SIGKILL_ESCALATION, ev.PROMOTE):
            out.append(_Mark(t, i, f"{name} at {t:.3f}"))
        elif name == ev.SHUTDOWN_REQUEST:
            out.append(_Mark(t, i, f"{e.get('mode')} shutdown request at {t:.3f}"))
        elif name == ev.PM_STATE and e.get("new") not in NORMAL_STATES:
            out.append(_Mark(t, i, f"pm_state {e.get('old')} -> {e.get('new')} at {t:.3f}"))
    return sorted(out, key=lambda m: (m.index, m.ts))


@dataclass
class _Pre:
    """The node just before a signal."""

    unsettled: str | None  # why the node was not running normally, or None
    shutdown: str | None  # the shutdown mode already requested of this postmaster
    fatal: bool  # FatalError was set: a child's crash is bookkeeping only (CRASH-4), a shutdown exits 1 (SHUT-9)


def _pre(evs: list[Event], t0: float) -> _Pre:
    state: str | None = None
    shutdown: str | None = None
    fatal: str | None = None
    for e in evs:
        t = _ts(e)
        if t >= t0:
            break
        name = e.get("event")
        if name == ev.PM_START:
            state, shutdown, fatal = None, None, None
        elif name == ev.PM_STATE:
            state = e.get("new")
            if state in ("RECOVERY", "RUN"):
                fatal = None  # T2 and T4 clear FatalError; a reinit does not
            elif state not in NORMAL_STATES and shutdown is None and fatal is None:
                # CRASH-11 and a failed checkpointer fork set FatalError without a crash event
                fatal = f"the postmaster went to {state} at {t:.3f} with no shutdown requested"
        elif name == ev.SHUTDOWN_REQUEST:
            mode = str(e.get("mode"))
            if SHUTDOWN_RANK.get(mode, 0) > SHUTDOWN_RANK.get(shutdown or "", 0):
                shutdown = mode
        elif name == ev.CRASH:
            fatal = f"a crash (pid {e.get('child_pid')} at {t:.3f}) was being handled"
        elif name == ev.PM_EXIT:
            state = "exited"
    why = None
    if shutdown:
        why = f"a {shutdown} shutdown was under way"
    elif fatal:
        why = f"{fatal} (FatalError until RECOVERY or RUN)"
    elif state is not None and state not in NORMAL_STATES:
        why = f"the postmaster was in {state}"
    return _Pre(why, shutdown, fatal is not None)


def _last_fatal(evs: list[Event], pid: int, t0: float, upto: int) -> Event | None:
    """The last FATAL or PANIC line the process itself logged between t0 and event `upto`."""
    for e in reversed(evs[:upto]):
        if _ts(e) < t0:
            return None
        if _int(e.get("pid")) == pid and e.get("error_severity") in ("FATAL", "PANIC"):
            return e
    return None


def _matches(x: Expect, e: Event) -> bool:
    code, sig = _int(e.get("exit_code")), e.get("signal")
    crash = e.get("classification") == "crash"
    if x.outcome == CRASH_RESTART:
        if not crash:
            return False
        return (not x.codes and x.killed_by is None) or (code in x.codes) or (sig is not None and sig == x.killed_by)
    if x.outcome == STARTUP_FAILURE:
        return (code is not None and code in x.codes) or (sig is not None and sig == x.killed_by)
    if x.outcome == EXIT:
        return not crash and code in x.codes
    if x.outcome == NO_CRASH:
        return not crash and code in (0, 1)
    return False


@dataclass
class _Fault:
    node: str
    role: str
    signal: str
    pid: int
    t: float
    later_same_pid: list[float]  # times of later signals to the same process


def _judge(f: _Fault, x: Expect, evs: list[Event], marks: list[_Mark], observed_until: float,
           window_s: float) -> tuple[str, str]:  # fmt: skip
    """(status, evidence) of one signal fault."""
    t0 = f.t - SKEW_S
    head = f"{f.role} pid {f.pid} sent {f.signal} at {f.t:.3f} ({x.rule}: {x.says})"
    pre = _pre(evs, t0)
    if x.outcome in (PM_RELOAD, PM_RUNS, PM_SHUTDOWN, PM_DEATH):
        return _judge_postmaster(f, x, evs, observed_until, window_s, pre, head)
    # A crash of this very pid is the outcome being judged, not something that came between.
    mine = [m for m in marks if (m.ts >= t0 or (m.until or 0.0) >= t0) and m.pid != f.pid]
    later = [_Mark(t, -1, f"another signal to pid {f.pid} at {t:.3f}") for t in f.later_same_pid]

    def came_between(i: int) -> str | None:
        """What, other than the signal, happened after it and before event i (the exit)."""
        found = [m for m in mine if m.index < i] + [m for m in later if m.ts < _ts(evs[i])]
        why = min(found, key=lambda m: m.ts).what if found else None
        return pre.unsettled or why

    first = next((i for i, e in enumerate(evs) if e.get("event") == ev.CHILD_EXIT
                  and _int(e.get("child_pid")) == f.pid and _ts(e) >= t0), None)  # fmt: skip
    seen = f"child_exit at {_ts(evs[first]):.3f} ({_exit_words(evs[first])})" if first is not None else ""

    if x.outcome in (RUNS, NO_CRASH):
        end = min(f.t + window_s, f.later_same_pid[0] if f.later_same_pid else float("inf"))
        if first is not None and _ts(evs[first]) <= end:
            e = evs[first]
            if e.get("signal") == f.signal:
                return INVALID, f"{head}: killed by that very signal, {seen}"
            if x.outcome == NO_CRASH and _matches(x, e):
                return VALID, f"{head}: {seen}"
            if e.get("classification") != "crash":
                if _int(e.get("exit_code")) == 0 and f.role in ("backend", "walsender"):
                    # exit 0 is a client or standby that left: the process ran until then
                    return VALID, f"{head}: ran until its peer left, {seen}"
                said = _last_fatal(evs, f.pid, t0, first)
                quote = f" after FATAL {said.get('message')!r} ({said.get('state_code')})" if said is not None else ""
                if said is not None and said.get("state_code") == "XX000" and came_between(first) is None:
                    # an internal error right after a signal it should absorb: a handler that did work (P-4, P-5)
                    return INVALID, f"{head}: {seen}{quote}"
                return UNKNOWN, (f"{head}: {seen}{quote} within {window_s:g} s; not attributable to the signal (a "
                                 "peer or a client can end it)")  # fmt: skip
            other = came_between(first)
            if other is None:
                return INVALID, f"{head}: {seen} within {window_s:g} s, with no crash or shutdown before it"
            return UNKNOWN, f"{head}: {seen}, but {other}"
        blind = next((m for m in mine if m.blind and m.ts <= end), None)
        if blind is not None:
            return UNKNOWN, f"{head}: {blind.what}, within the {window_s:g} s window"
        if observed_until < end:
            return UNKNOWN, f"{head}: the events end at {observed_until:.3f}, before the window does at {end:.3f}"
        return VALID, f"{head}: no exit until {end:.3f}"

    # EXIT, CRASH_RESTART, STARTUP_FAILURE: an exit is due
    if first is None:
        other = pre.unsettled or next((m.what for m in sorted(mine + later, key=lambda m: m.ts)), None)
        if other is not None:
            return UNKNOWN, f"{head}: no exit logged, but {other}"
        if x.outcome == EXIT and not x.prompt:
            return UNKNOWN, f"{head}: no exit logged by {observed_until:.3f} (this exit waits on a peer)"
        if observed_until < f.t + window_s:
            return UNKNOWN, f"{head}: no exit logged; the events end at {observed_until:.3f}"
        return INVALID, f"{head}: no exit of pid {f.pid} logged in the {observed_until - f.t:.1f} s of events after it"
    e = evs[first]
    other = came_between(first)
    if not _matches(x, e):
        if other is not None:
            return UNKNOWN, f"{head}: {seen}, but {other}"
        if x.outcome == EXIT and _int(e.get("exit_code")) == 0 and f.role in ("backend", "walsender"):
            return UNKNOWN, f"{head}: {seen}; its client or standby may have left first"
        return INVALID, f"{head}: {seen}"
    if other is not None or x.outcome == EXIT:
        return VALID, f"{head}: {seen}"
    # the consequences, judged only when nothing else was going on
    after = evs[first + 1 :]
    follow = next((a for a in after if a.get("event") in (ev.REINIT, ev.PM_EXIT, ev.PM_START)), None)
    waited = observed_until - _ts(e)
    if x.outcome == CRASH_RESTART:
        if x.crash_event:
            upto = next((k for k, a in enumerate(after) if a.get("event") in (ev.REINIT, ev.PM_START)), len(after))
            if not any(a.get("event") == ev.CRASH and _int(a.get("child_pid")) == f.pid for a in after[:upto]):
                return INVALID, f"{head}: {seen}, but no crash event for pid {f.pid} followed (CRASH-4)"
        if follow is not None:
            return VALID, f"{head}: {seen}, then {follow.get('event')} at {_ts(follow):.3f}"
        if waited >= REINIT_GRACE_S:
            return INVALID, f"{head}: {seen}, then no reinit nor postmaster exit in {waited:.1f} s (CRASH-7)"
        return UNKNOWN, f"{head}: {seen}; the events end at {observed_until:.3f}, before a reinit was due"
    # STARTUP_FAILURE
    if follow is None:
        if waited >= REINIT_GRACE_S:
            return INVALID, f"{head}: {seen}, then no postmaster exit in {waited:.1f} s (CRASH-9)"
        return UNKNOWN, f"{head}: {seen}; the events end at {observed_until:.3f}"
    if follow.get("event") == ev.REINIT:
        return INVALID, f"{head}: {seen}, then a reinit at {_ts(follow):.3f} instead of postmaster exit 1 (CRASH-9)"
    if follow.get("event") == ev.PM_START:
        return UNKNOWN, f"{head}: {seen}; the postmaster stopped without logging its exit"
    if _int(follow.get("exit_code")) != 1:
        return INVALID, f"{head}: {seen}, then the postmaster exited with code {follow.get('exit_code')} (CRASH-9: 1)"
    return VALID, f"{head}: {seen}, then postmaster exit 1 at {_ts(follow):.3f}"


def _judge_postmaster(f: _Fault, x: Expect, evs: list[Event], observed_until: float, window_s: float, pre: _Pre,
                      head: str) -> tuple[str, str]:  # fmt: skip
    t0, end = f.t - SKEW_S, f.t + window_s
    # bgw_* events carry the worker's pid in `pid`; everything else the postmaster logs carries its own
    mine = [e for e in evs if _int(e.get("pid")) == f.pid and e.get("backend_type", "postmaster") == "postmaster"]
    if not mine:
        return UNKNOWN, f"{head}: pid {f.pid} never appears as this node's postmaster in its events"
    alive_after = next((e for e in mine if _ts(e) >= end), None)
    nxt = f.later_same_pid[0] if f.later_same_pid else float("inf")
    if x.outcome == PM_DEATH:
        said = next((e for e in mine if _ts(e) > f.t), None)
        if said is not None:
            return (
                INVALID,
                f"{head}: the postmaster still logged {said.get('event') or said.get('message')!r} at {_ts(said):.3f}",
            )
        if observed_until < end:
            return UNKNOWN, f"{head}: the events end at {observed_until:.3f}"
        return VALID, f"{head}: nothing more from pid {f.pid}"
    exits = [e for e in mine if e.get("event") == ev.PM_EXIT and _ts(e) >= t0]
    requests = [e for e in mine if e.get("event") == ev.SHUTDOWN_REQUEST and _ts(e) >= t0]
    if x.outcome == PM_SHUTDOWN:
        want = SHUTDOWN_RANK[str(x.mode)]
        have = SHUTDOWN_RANK.get(pre.shutdown or "", 0)
        in_window = [e for e in requests if _ts(e) <= end]
        if have >= want:  # SHUT-1: a request not stronger than the current mode is ignored
            weak = [e for e in in_window if SHUTDOWN_RANK.get(str(e.get("mode")), 0) <= have]
            if weak:
                return (
                    INVALID,
                    f"{head}: a {pre.shutdown} shutdown was already under way, yet a "
                    f"{weak[0].get('mode')} request was accepted at {_ts(weak[0]):.3f} (SHUT-1)",
                )
            if alive_after is None and not exits:
                return UNKNOWN, f"{head}: a {pre.shutdown} shutdown was under way and the postmaster is not seen after"
            return VALID, f"{head}: ignored, a {pre.shutdown} shutdown was already under way (SHUT-1)"
        got = next((e for e in requests if SHUTDOWN_RANK.get(str(e.get("mode")), 0) >= want and _ts(e) <= end), None)
        if got is None:
            if in_window:
                weaker = in_window[0]
                return (
                    INVALID,
                    f"{head}: the postmaster logged a {weaker.get('mode')} shutdown request at {_ts(weaker):.3f}",
                )
            if alive_after is None:
                return UNKNOWN, f"{head}: no shutdown request logged, and the postmaster is not seen after {end:.3f}"
            return (
                INVALID,
                f"{head}: no shutdown request within {window_s:g} s (the postmaster logged at {_ts(alive_after):.3f})",
            )
        done = next((e for e in exits if _ts(e) >= _ts(got)), None)
        if done is not None:
            crashed = pre.fatal or any(e.get("event") == ev.CRASH and t0 <= _ts(e) <= _ts(done) for e in evs)
            allowed = {0, 1} if crashed else {0}  # SHUT-9: a crash during the shutdown exits 1
            if _int(done.get("exit_code")) not in allowed:
                return (
                    INVALID,
                    f"{head}: {got.get('mode')} request at {_ts(got):.3f}, then postmaster exit code "
                    f"{done.get('exit_code')} at {_ts(done):.3f} (expected {sorted(allowed)})",
                )
        return VALID, f"{head}: {got.get('mode')} shutdown request at {_ts(got):.3f}"
    # PM_RELOAD, PM_RUNS: no exit of its own within the window
    stop = next((e for e in exits if _ts(e) <= min(end, nxt)), None)
    if stop is not None:
        asked = next((e for e in requests if _ts(e) <= _ts(stop)), None)
        if asked is not None or pre.shutdown:
            return UNKNOWN, f"{head}: the postmaster exited at {_ts(stop):.3f} after a shutdown request"
        return INVALID, f"{head}: the postmaster exited with code {stop.get('exit_code')} at {_ts(stop):.3f}"
    if x.outcome == PM_RELOAD:
        reloads = [e for e in mine if e.get("event") == ev.RELOAD and t0 <= _ts(e) <= end]
        if SHUTDOWN_RANK.get(pre.shutdown or "", 0) > SHUTDOWN_RANK["smart"]:
            if reloads:
                return INVALID, f"{head}: reloaded at {_ts(reloads[0]):.3f} during a {pre.shutdown} shutdown (SHUT-8)"
            return VALID, f"{head}: not honoured during a {pre.shutdown} shutdown (SHUT-8)"
        if reloads:
            return VALID, f"{head}: reload at {_ts(reloads[0]):.3f}"
        if alive_after is None:
            return UNKNOWN, f"{head}: no reload logged, and the postmaster is not seen after {end:.3f}"
        return INVALID, f"{head}: no reload within {window_s:g} s (the postmaster logged at {_ts(alive_after):.3f})"
    if alive_after is None:
        return UNKNOWN, f"{head}: the postmaster is not seen after {end:.3f}"
    return VALID, f"{head}: still logging at {_ts(alive_after):.3f}"


def signal_exits(faults: Iterable[Mapping], events_by_node: Mapping[str, Iterable[Mapping]], *,
                 window_s: float = 2.0) -> CheckResult:  # fmt: skip
    """Each signal fault against EXPECTED. A fault's events are those of its node; `observed
    until` is the latest event of any node (all were read at the end of the run, so a quiet node
    was still observed until then). An exit that does not match is UNKNOWN, not INVALID, when the
    node was not running normally at the signal or something else (a crash, a shutdown, a
    promotion, another signal to the same pid, a postmaster that died) came between."""
    name = "signal-exits"
    evs_by = {n: _sorted(es) for n, es in events_by_node.items()}
    marks_by = {n: _marks(es) for n, es in evs_by.items()}
    observed_until = max((_ts(es[-1]) for es in evs_by.values() if es), default=0.0)
    fs = [x for x in faults if x.get("kind", "signal") == "signal"]
    parsed: list[_Fault] = []
    results: list[CheckResult] = []
    for x in fs:
        pid, t = _int(x.get("pid")), x.get("t")
        node, role, sig = x.get("node"), x.get("role"), x.get("signal")
        if pid is None or t is None or node is None or role is None or sig is None:
            results.append(unknown(f"fault {dict(x)} lacks node, role, signal, pid or time", 0, str(node)))
            continue
        parsed.append(_Fault(str(node), str(role), str(sig), pid, float(t), []))
    for a in parsed:
        a.later_same_pid = sorted(b.t for b in parsed if b.node == a.node and b.pid == a.pid and b.t > a.t)
    for f in sorted(parsed, key=lambda f: f.t):
        x = EXPECTED.get((f.role, f.signal))
        if x is None:
            results.append(unknown(f"{f.role} pid {f.pid} sent {f.signal} at {f.t:.3f}: no documented outcome in "
                                   "the table", 0, f.node))  # fmt: skip
            continue
        if f.node not in evs_by:
            results.append(unknown(f"{f.role} pid {f.pid} sent {f.signal} at {f.t:.3f}: no events of node {f.node}",
                                   0, f.node))  # fmt: skip
            continue
        status, text = _judge(f, x, evs_by[f.node], marks_by[f.node], observed_until, window_s)
        if status == VALID:
            results.append(valid(1, f.node))
        elif status == INVALID:
            results.append(invalid([text], 1, f.node))
        else:
            results.append(unknown(text, 0, f.node))
    if not results:
        return unknown("no signal fault to judge", 0, name)
    return merge(results, name)
