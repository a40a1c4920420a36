"""orchestrator/bgwcheck.py: the start-time and BGW-17 relaunch checks over event lists.

Rules: §1 start-time table (ConsistentState not before HOT_STANDBY/RUN, RecoveryFinished not
before RUN), BGW-17 (restartable workers relaunched after a crash reinit); unknown verdicts
when too little was seen.
"""

from __future__ import annotations

from orchestrator import bgwcheck


def _ev(event: str, ts: float, **kw: object) -> dict:
    return {"event": event, "ts": ts, **kw}


def test_start_times_valid_invalid_unknown() -> None:
    good = [_ev("postmaster_start", 0), _ev("pm_state", 1, new="RECOVERY"), _ev("pm_state", 2, new="HOT_STANDBY"),
            _ev("bgw_start", 2.1, name="c", start_time="consistent_state")]  # fmt: skip
    assert bgwcheck.check_start_times(good).status == "valid"
    early = [*good[:2], _ev("bgw_start", 1.5, name="c", start_time="consistent_state"), good[2]]
    v = bgwcheck.check_start_times(early)
    assert v.status == "invalid" and "'c'" in v.evidence[0]
    fin = [*good, _ev("bgw_start", 2.2, name="f", start_time="recovery_finished")]
    assert bgwcheck.check_start_times(fin).status == "invalid"  # no RUN in this incarnation
    promoted = [*good, _ev("pm_state", 3, new="RUN"), _ev("bgw_start", 3.01, name="f", start_time="recovery_finished"),
                _ev("ready", 3.02, read_only=False)]  # fmt: skip
    assert bgwcheck.check_start_times(promoted).status == "valid"  # forked at RUN, before `ready` is logged
    assert bgwcheck.check_start_times(good[:3]).status == "unknown"


def test_incarnations_split_at_reinit() -> None:
    evs = [_ev("postmaster_start", 0), _ev("pm_state", 1, new="RUN"), _ev("reinit", 2),
           _ev("bgw_start", 2.5, name="c", start_time="consistent_state"), _ev("pm_state", 3, new="RUN")]  # fmt: skip
    assert len(bgwcheck.incarnations(evs)) == 2
    # The consistency event of the first incarnation does not cover a start in the second.
    assert bgwcheck.check_start_times(evs).status == "invalid"


def test_reinit_relaunch() -> None:
    before = [_ev("postmaster_start", 0), _ev("bgw_start", 1, name="svc", restart_time=1),
              _ev("bgw_start", 1.1, name="once", restart_time=-1)]  # fmt: skip
    after = [_ev("reinit", 5), _ev("ready", 6, read_only=False)]
    relaunched = before + after + [_ev("bgw_start", 6.1, name="svc", restart_time=1), _ev("x", 9)]
    assert bgwcheck.check_reinit_relaunch(relaunched).status == "valid"
    missing = before + after + [_ev("x", 9)]
    v = bgwcheck.check_reinit_relaunch(missing)
    assert v.status == "invalid" and "'svc'" in v.evidence[0]
    short = before + after + [_ev("x", 6.5)]
    assert bgwcheck.check_reinit_relaunch(short).status == "unknown"
