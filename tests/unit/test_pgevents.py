"""orchestrator/pgevents.py: pgbed's events derived from a PostgreSQL 15 log, and the checkers
judging them (BGW start times, BGW-17 relaunch after a reinit, WALRCV-6 streaming resumed).

The log is a real one (PostgreSQL 15.20, a standby with pgbed_test's static workers and
log_min_messages = debug1: its walreceiver killed with SIGKILL, SIGTERMed, then the node
promoted), trimmed of lines no event comes from."""

from __future__ import annotations

import pytest

from orchestrator.checker import process
from orchestrator.pgevents import events_from_log, parse_static_workers

WORKERS = "early:postmaster_start:1:run;cons:consistent_state:1:run;fin:recovery_finished:1:run"

STANDBY_LOG = """\
2026-12-05 11:34:05.730 UTC [17594] postmaster DEBUG:  registering background worker "fin"
2026-12-05 11:34:05.739 UTC [17594] postmaster LOG:  starting PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on x86_64
2026-12-05 11:34:05.742 UTC [17594] postmaster DEBUG:  starting background worker process "early"
2026-12-05 11:34:05.747 UTC [17597] startup LOG:  database system was interrupted; last known up at 2026-12-05 11:34
2026-12-05 11:34:05.824 UTC [17597] startup LOG:  consistent recovery state reached at 0/700100
2026-12-05 11:34:05.824 UTC [17594] postmaster LOG:  database system is ready to accept read-only connections
2026-12-05 11:34:05.824 UTC [17594] postmaster DEBUG:  starting background worker process "cons"
2026-12-05 11:34:05.829 UTC [17600] walreceiver LOG:  started streaming WAL from primary at 0/800000 on timeline 1
2026-12-05 11:34:08.951 UTC [17594] postmaster LOG:  WAL receiver process (PID 17620) was terminated by signal 9: Killed
2026-12-05 11:34:08.951 UTC [17594] postmaster LOG:  terminating any other active server processes
2026-12-05 11:34:08.953 UTC [17594] postmaster LOG:  all server processes terminated; reinitializing
2026-12-05 11:34:08.966 UTC [17735] startup LOG:  database system was interrupted while in recovery at log time …
2026-12-05 11:34:08.966 UTC [17735] startup HINT:  If this has occurred more than once some data might be corrupted.
2026-12-05 11:34:09.030 UTC [17735] startup LOG:  consistent recovery state reached at 0/700100
2026-12-05 11:34:09.030 UTC [17594] postmaster LOG:  database system is ready to accept read-only connections
2026-12-05 11:34:09.031 UTC [17594] postmaster DEBUG:  starting background worker process "cons"
2026-12-05 11:34:09.032 UTC [17594] postmaster DEBUG:  starting background worker process "early"
2026-12-05 11:34:09.038 UTC [17747] walreceiver LOG:  started streaming WAL from primary at 0/800000 on timeline 1
2026-12-05 11:34:11.952 UTC [17747] walreceiver FATAL:  terminating walreceiver process due to administrator command
2026-12-05 11:34:11.962 UTC [17787] walreceiver LOG:  started streaming WAL from primary at 0/800000 on timeline 1
2026-12-05 11:34:14.982 UTC [17787] walreceiver FATAL:  could not send end-of-streaming message to primary: …
		This probably means the server terminated abnormally
	no COPY in progress
2026-12-05 11:34:17.007 UTC [17735] startup LOG:  received promote request
2026-12-05 11:34:17.012 UTC [17735] startup LOG:  archive recovery complete
2026-12-05 11:34:17.013 UTC [17736] checkpointer LOG:  checkpoint starting: force
2026-12-05 11:34:17.016 UTC [17594] postmaster DEBUG:  starting background worker process "fin"
2026-12-05 11:34:17.016 UTC [17594] postmaster DEBUG:  starting background worker process "logical replication launcher"
2026-12-05 11:34:17.017 UTC [17594] postmaster LOG:  database system is ready to accept connections
2026-12-05 11:34:17.113 UTC [17594] postmaster LOG:  received SIGHUP, reloading configuration files
2026-12-05 11:34:20.000 UTC [17594] postmaster LOG:  received fast shutdown request
"""


def _short(e: dict) -> tuple:
    keys = ("new", "name", "kind", "signal", "exit_code", "mode", "read_only", "timeline")
    return (e["event"], *(e[k] for k in keys if k in e and e[k] is not None))


def test_events_of_a_standby_log() -> None:
    """Every state change the log shows, in its order, with pgbed's names and fields."""
    evs = events_from_log(STANDBY_LOG, WORKERS)
    assert [_short(e) for e in evs] == [
        ("postmaster_start",),
        ("bgw_start", "early"),
        ("consistent",),
        ("pm_state", "HOT_STANDBY"),
        ("ready", True),
        ("bgw_start", "cons"),
        ("walrcv_streaming", 1),
        ("child_exit", "walreceiver", "SIGKILL"),
        ("crash", "walreceiver"),
        ("reinit",),
        ("consistent",),
        ("pm_state", "HOT_STANDBY"),
        ("ready", True),
        ("bgw_start", "cons"),
        ("bgw_start", "early"),
        ("walrcv_streaming", 1),
        ("child_exit", "walreceiver", 1),
        ("walrcv_streaming", 1),
        ("child_exit", "walreceiver", 1),
        ("promote",),
        ("pm_state", "RUN"),  # derived: after the startup process's last line, before the first fork
        ("bgw_start", "fin"),
        ("bgw_start", "logical replication launcher"),
        ("ready", False),
        ("reload",),
        ("shutdown_request", "fast"),
    ]
    crash = next(e for e in evs if e["event"] == "crash")
    assert crash["child_pid"] == 17620 and crash["pid"] == 17594
    fin = next(e for e in evs if e.get("name") == "fin")
    assert (fin["start_time"], fin["restart_time"]) == ("recovery_finished", 1)
    launcher = next(e for e in evs if e.get("name") == "logical replication launcher")
    assert (launcher["start_time"], launcher["restart_time"]) == ("recovery_finished", 5)
    run = next(e for e in evs if e.get("new") == "RUN")
    assert run["old"] == "HOT_STANDBY" and run["derived"] is True
    ts = [e["ts"] for e in evs]
    assert ts == sorted(ts) and len(set(ts)) == len(ts), "file order kept, with distinct times"
    assert run["ts"] < fin["ts"] < next(e for e in evs if e["event"] == "ready" and not e["read_only"])["ts"]


def test_checkers_judge_postgresql_from_its_log() -> None:
    """BGW start times, BGW-17 and WALRCV-6 judged on PostgreSQL's own behaviour: valid, and
    with something checked."""
    evs = events_from_log(STANDBY_LOG, WORKERS)
    r = process.start_times({"standby1": evs})
    assert (r.status, r.checked) == ("valid", 4), r  # cons twice, fin, the logical replication launcher
    r = process.bgw17_reset({"standby1": evs})
    assert (r.status, r.checked) == ("valid", 2), r  # early and cons ran again after the reinit
    r = process.streaming_resumed(evs, retry_interval_s=1.0, deadline_s=30.0)
    assert r.status == "valid" and r.checked >= 1, r


def test_a_recovery_finished_worker_forked_during_recovery_is_caught() -> None:
    """The derived RUN keeps the check's teeth: a RecoveryFinished worker the postmaster forks
    while the startup process still runs (it logs after the fork) is before RUN: invalid."""
    bad = STANDBY_LOG.replace(
        "2026-12-05 11:34:17.007 UTC [17735] startup LOG:  received promote request\n",
        '2026-12-05 11:34:17.006 UTC [17594] postmaster DEBUG:  starting background worker process "fin"\n'
        "2026-12-05 11:34:17.007 UTC [17735] startup LOG:  received promote request\n",
    )
    r = process.start_times({"standby1": events_from_log(bad, WORKERS)})
    assert r.status == "invalid", r
    assert any("RecoveryFinished worker 'fin'" in e for e in r.evidence), r.evidence


def test_a_consistent_state_worker_before_hot_standby_is_caught() -> None:
    bad = STANDBY_LOG.replace(
        "2026-12-05 11:34:05.747 UTC [17597] startup LOG:  database system was interrupted;",
        '2026-12-05 11:34:05.745 UTC [17594] postmaster DEBUG:  starting background worker process "cons"\n'
        "2026-12-05 11:34:05.747 UTC [17597] startup LOG:  database system was interrupted;",
    )
    r = process.start_times({"standby1": events_from_log(bad, WORKERS)})
    assert r.status == "invalid" and any("ConsistentState worker 'cons'" in e for e in r.evidence), r


def test_workers_of_unknown_registration_are_not_judged() -> None:
    """Without the static-worker spec PostgreSQL's line says nothing about start times: no
    bgw_start for them (PostgreSQL's own launcher is still known)."""
    names = [e["name"] for e in events_from_log(STANDBY_LOG) if e["event"] == "bgw_start"]
    assert names == ["logical replication launcher"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a:postmaster_start:1:run", {"a": ("postmaster_start", 1)}),
        (
            "a:Consistent_State:-1:run; b:recovery_finished:5:exit:1",
            {"a": ("consistent_state", -1), "b": ("recovery_finished", 5)},
        ),
        ("a:whenever:1:run;b:postmaster_start:x:run;c;:postmaster_start:1:run", {}),
    ],
)
def test_static_worker_spec(spec: str, expected: dict) -> None:
    """Entries the extension would skip (bad start time, bad restart interval, no name) are
    skipped here too."""
    assert parse_static_workers(spec) == expected


def test_other_time_zones_and_foreign_lines_are_ignored() -> None:
    text = ("2026-12-05 11:34:05.739 CET [1] postmaster LOG:  starting PostgreSQL 15.20\n"
            "garbage\n\tcontinuation\n")  # fmt: skip
    assert events_from_log(text) == []
