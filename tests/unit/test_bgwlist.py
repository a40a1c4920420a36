"""node/bgwlist.py: the pure background-worker decisions, with a fake clock.

Rules: §1 start-time eligibility (bgworker_should_start_now), BGW-3 (sanity checks), BGW-7
(launch plan: running skipped, terminate forgotten, NEVER_RESTART crash forgotten, restart time
counted from the reap, at most 100 per pass, nothing while FatalError), BGW-10/11 (exit policy),
BGW-12 (status of a handle), BGW-17 (reset at reinit, and the historic pid-not-reset bug).
"""

from __future__ import annotations

import pytest

from node import bgwlist as B
from node.states import PMState

P_START = B.StartTime.POSTMASTER_START
CONSISTENT = B.StartTime.CONSISTENT_STATE
FINISHED = B.StartTime.RECOVERY_FINISHED

ELIGIBLE = {
    P_START: {PMState.INIT, PMState.STARTUP, PMState.RECOVERY, PMState.HOT_STANDBY, PMState.RUN},
    CONSISTENT: {PMState.HOT_STANDBY, PMState.RUN},
    FINISHED: {PMState.RUN},
}


@pytest.mark.parametrize("state", list(PMState))
@pytest.mark.parametrize("start", list(B.StartTime))
def test_start_time_table(state: PMState, start: B.StartTime) -> None:
    assert B.should_start_now(state, start) == (state in ELIGIBLE[start])


def test_consistent_in_recovery_historic_bug_widens_only_recovery() -> None:
    assert B.should_start_now(PMState.RECOVERY, CONSISTENT, consistent_in_recovery=True)
    assert not B.should_start_now(PMState.STARTUP, CONSISTENT, consistent_in_recovery=True)
    assert not B.should_start_now(PMState.STOP_BACKENDS, CONSISTENT, consistent_in_recovery=True)


def _w(name: str = "w", **kw: object) -> B.WorkerDef:
    kw.setdefault("function", "m:f")
    return B.WorkerDef(name, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kw, message", [
    ({"flags": 0}, 'background worker "w": background workers without shared memory access are not supported'),
    ({"flags": B.BGWORKER_SHMEM_ACCESS | B.BGWORKER_BACKEND_DATABASE_CONNECTION, "start_time": P_START},
     'background worker "w": cannot request database access if starting at postmaster start'),
    ({"restart_time": -2}, 'background worker "w": invalid restart interval'),
    ({"restart_time": B.MAX_RESTART_S + 1}, 'background worker "w": invalid restart interval'),
    ({"flags": B.BGWORKER_SHMEM_ACCESS | B.BGWORKER_CLASS_PARALLEL, "restart_time": 5},
     'background worker "w": parallel workers may not be configured for restart'),
])  # fmt: skip
def test_sanity_checks(kw: dict[str, object], message: str) -> None:
    with pytest.raises(B.SanityError) as ei:
        B.sanity_check(_w(**kw))
    assert str(ei.value) == message


def test_sanity_accepts_the_limits_and_defaults_the_type() -> None:
    for r in (B.BGW_NEVER_RESTART, 0, B.MAX_RESTART_S):
        B.sanity_check(_w(restart_time=r))
    assert _w("name").type == "name"


def _rw(name: str, slot: int, **kw: object) -> B.RegisteredWorker:
    return B.RegisteredWorker(_w(name, **kw), slot)  # type: ignore[arg-type]


def test_launch_plan_newest_first_and_skips() -> None:
    a, b, c, d = _rw("a", 0), _rw("b", 1), _rw("c", 2), _rw("d", 3, start_time=FINISHED)
    b.pid = 123  # running
    c.terminate = True
    plan = B.launch_plan([a, b, c, d], PMState.HOT_STANDBY, False, now=100.0)
    assert [r.worker.name for r in plan.start] == ["a"]  # d not eligible yet, b running
    assert plan.forget == [c]
    plan = B.launch_plan([a, b, c, d], PMState.RUN, False, now=100.0)
    assert [r.worker.name for r in plan.start] == ["d", "a"]


def test_launch_plan_restart_time_counts_from_the_reap() -> None:
    r = _rw("r", 0, restart_time=5)
    r.crashed_at = 100.0
    plan = B.launch_plan([r], PMState.RUN, False, now=104.9)
    assert plan.start == [] and plan.next_wakeup == 105.0
    assert B.launch_plan([r], PMState.RUN, False, now=105.0).start == [r]
    never = _rw("n", 1)
    never.crashed_at = 100.0
    assert B.launch_plan([never], PMState.RUN, False, now=1000.0).forget == [never]


def test_launch_plan_nothing_while_fatal_error_and_at_most_limit_per_pass() -> None:
    ws = [_rw(f"w{i}", i) for i in range(150)]
    assert B.launch_plan(ws, PMState.RUN, True, now=0.0).start == []
    plan = B.launch_plan(ws, PMState.RUN, False, now=0.0)
    assert len(plan.start) == B.MAX_PER_PASS and plan.more_due
    plan = B.launch_plan(ws[:7], PMState.RUN, False, now=0.0)
    assert len(plan.start) == 7 and not plan.more_due
    assert B.MAX_PER_PASS <= 100  # F07: never more than PostgreSQL's 100 per pass


@pytest.mark.parametrize("code, restart, detached, terminate, action", [
    (0, 5, True, False, B.ExitAction.UNREGISTER),
    (1, 5, True, False, B.ExitAction.RESTART_LATER),
    (1, B.BGW_NEVER_RESTART, True, False, B.ExitAction.UNREGISTER),
    (1, 5, True, True, B.ExitAction.UNREGISTER),
    (0, 5, False, False, B.ExitAction.CRASH),  # BGW-11: died attached
    (1, 5, False, False, B.ExitAction.CRASH),
    (2, 5, True, False, B.ExitAction.CRASH),
    (-9, 5, True, False, B.ExitAction.CRASH),
])  # fmt: skip
def test_exit_policy(code: int, restart: int, detached: bool, terminate: bool, action: B.ExitAction) -> None:
    rw = _rw("w", 0, restart_time=restart)
    rw.terminate = terminate
    assert B.exit_policy(rw, code, detached=detached) is action


def test_reset_after_crash_forgets_never_restart_and_clears_the_rest() -> None:
    keep, gone = _rw("keep", 0, restart_time=3, notify_pid=77), _rw("gone", 1)
    for rw in (keep, gone):
        rw.pid, rw.crashed_at = 999, 10.0
    assert B.reset_after_crash([keep, gone]) == [gone]
    assert (keep.pid, keep.crashed_at, keep.worker.notify_pid) == (0, None, 0)
    again = _rw("again", 0, restart_time=3)
    again.pid = 999
    B.reset_after_crash([again], pid_not_reset=True)
    assert again.pid == 999  # the pre-2025 bug: never relaunched
    assert B.launch_plan([again], PMState.RUN, False, now=0.0).start == []


@pytest.mark.parametrize("in_use, slot_gen, handle_gen, pid, expected", [
    (False, 1, 1, 5, (B.Status.STOPPED, 0)),
    (True, 2, 1, 5, (B.Status.STOPPED, 0)),
    (True, 1, 1, -1, (B.Status.NOT_YET_STARTED, 0)),
    (True, 1, 1, 0, (B.Status.STOPPED, 0)),
    (True, 1, 1, 42, (B.Status.STARTED, 42)),
])  # fmt: skip
def test_status_of(in_use: bool, slot_gen: int, handle_gen: int, pid: int, expected: tuple[B.Status, int]) -> None:
    assert B.status_of(in_use, slot_gen, handle_gen, pid) == expected


@pytest.mark.parametrize("text, value", [("postmaster_start", P_START), ("ConsistentState", CONSISTENT),
                                         ("recovery_finished", FINISHED)])  # fmt: skip
def test_start_time_names(text: str, value: B.StartTime) -> None:
    assert B.StartTime.parse(text) is value
    with pytest.raises(ValueError):
        B.StartTime.parse("sometime")
