"""Unit tests of the differential runner's pure parts (orchestrator/diffnorm.py): log parsing
and normalisation into PMState-relevant events, intended differences (loading, refusing bad
entries, applying) and the comparison with its side-by-side rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.diffnorm import (
    INTENDED_FILE,
    Intended,
    Outcome,
    apply_intended,
    compare,
    event_of,
    load_intended,
    log_events,
    parse_line,
    side_by_side,
)

# A PostgreSQL 15 log (log_line_prefix '%m [%p] %b ') around a backend killed with SIGKILL.
PG_CRASH_LOG = """\
2026-12-04 19:40:01.101 UTC [4100] postmaster LOG:  starting PostgreSQL 15.18 (Debian 15.18-0+deb12u1)
2026-12-04 19:40:01.102 UTC [4100] postmaster LOG:  listening on IPv4 address "127.0.0.1", port 5432
2026-12-04 19:40:01.110 UTC [4102] startup LOG:  database system was shut down at 2026-12-04 19:40:00 UTC
2026-12-04 19:40:01.120 UTC [4100] postmaster LOG:  database system is ready to accept connections
2026-12-04 19:40:02.500 UTC [4100] postmaster LOG:  client backend (PID 4120) was terminated by signal 9: Killed
2026-12-04 19:40:02.500 UTC [4100] postmaster DETAIL:  Failed process was running: SELECT pg_sleep(60)
2026-12-04 19:40:02.500 UTC [4100] postmaster LOG:  terminating any other active server processes
2026-12-04 19:40:02.510 UTC [4100] postmaster LOG:  all server processes terminated; reinitializing
2026-12-04 19:40:02.520 UTC [4130] startup LOG:  database system was interrupted; last known up at 2026-12-04 19:40:01
2026-12-04 19:40:02.530 UTC [4] startup LOG:  database system was not properly shut down; automatic recovery in progress
2026-12-04 19:40:02.531 UTC [4130] startup LOG:  redo starts at 0/1518A10
2026-12-04 19:40:02.540 UTC [4130] startup LOG:  redo done at 0/1518B28 system usage: CPU: user: 0.00 s
2026-12-04 19:40:02.541 UTC [4131] checkpointer LOG:  checkpoint starting: end-of-recovery immediate wait
2026-12-04 19:40:02.560 UTC [4100] postmaster LOG:  database system is ready to accept connections
"""


def test_parse_line_splits_prefix_level_and_message() -> None:
    assert parse_line("2026-12-04 19:40:01.120 UTC [4100] postmaster LOG:  database system is ready") == (
        "postmaster", "LOG", "database system is ready")  # fmt: skip
    assert parse_line("2026-12-04 19:40:01.120 UTC [77] client backend FATAL:  terminating connection") == (
        "client backend", "FATAL", "terminating connection")  # fmt: skip
    assert parse_line("\tcontinuation of a multi-line statement") is None
    assert parse_line("2026-12-04 19:40:01 garbage") is None


def test_event_of_normalises_pids_lsns_and_levels() -> None:
    assert event_of("LOG", "client backend (PID 4120) was terminated by signal 9: Killed") == (
        "exit(client backend, signal 9)")  # fmt: skip
    assert event_of("LOG", "background worker \"w1\" (PID 12) exited with exit code 1") == (
        'exit(background worker "w1", code 1)')  # fmt: skip
    assert event_of("LOG", "started streaming WAL from primary at 0/3000000 on timeline 2") == "streaming(timeline 2)"
    assert event_of("LOG", "checkpoint starting: shutdown immediate") == "checkpoint(shutdown immediate)"
    assert event_of("FATAL", "terminating connection due to administrator command") == "FATAL: backend_terminated"
    assert event_of("DEBUG1", 'starting background worker process "pgbed_s_cs"') == "bgworker_start(pgbed_s_cs)"
    assert event_of("LOG", "some message nobody has a pattern for") is None


def test_log_events_of_a_postgres_crash_restart() -> None:
    """The token sequence of CRASH-1/CRASH-2's log: exit, terminate others, reinitialise, redo."""
    assert log_events(PG_CRASH_LOG) == [
        "was_shut_down", "ready", "exit(client backend, signal 9)", "terminating_others", "reinitializing",
        "was_interrupted", "automatic_recovery", "redo_starts", "redo_done",
        "checkpoint(end-of-recovery immediate wait)", "ready",
    ]  # fmt: skip


def test_log_events_collapse_repeats_drop_timing_only_and_sort_bursts() -> None:
    def line(msg: str, level: str = "LOG") -> str:
        return f"2026-12-04 19:40:01.101 UTC [1] postmaster {level}:  {msg}"

    text = "\n".join([
        line("could not connect to the primary server: connection refused", "FATAL"),
        line("could not connect to the primary server: connection refused", "FATAL"),
        line('starting background worker process "zeta"', "DEBUG"),
        line('starting background worker process "alpha"', "DEBUG1"),
        line("database system is ready to accept connections"),
        line("database system is ready to accept connections"),
    ])  # fmt: skip
    assert log_events(text) == ["bgworker_start(alpha)", "bgworker_start(zeta)", "ready"]


def test_process_ends_in_one_burst_are_sorted_and_counted() -> None:
    """Three workers ending after one SIGTERM: FATAL and exit lines interleave as the scheduler
    pleases, and three identical exits are three processes, not one retried event."""

    def line(msg: str, level: str = "LOG") -> str:
        return f"2026-12-04 19:40:01.101 UTC [1] postmaster {level}:  {msg}"

    fatal = 'terminating background worker "w" due to administrator command'
    exited = 'background worker "w" (PID 9) exited with exit code 1'
    a = "\n".join([line("received fast shutdown request"), line(fatal, "FATAL"), line(exited),
                   line(fatal, "FATAL"), line(fatal, "FATAL"), line(exited), line(exited), line("shutting down")])
    b = "\n".join([line("received fast shutdown request"), line(fatal, "FATAL"), line(fatal, "FATAL"),
                   line(exited), line(fatal, "FATAL"), line(exited), line(exited), line("shutting down")])
    assert log_events(a) == log_events(b)
    assert log_events(a).count('exit(background worker "w", code 1)') == 3


def _toml(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "intended.toml"
    p.write_text(body)
    return p


def test_the_shipped_intended_differences_load_and_each_names_a_rule_and_reason() -> None:
    entries = load_intended(INTENDED_FILE)
    assert entries, "the shipped file lists the intended differences"
    for x in entries:
        assert x.rule and x.reason.strip() and x.flavor in ("pgbed", "postgres")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[difference]]\nid = "a"\nflavor = "pgbed"\npattern = "x"\nreason = "r"\n', "lacks rule"),
        ('[[difference]]\nid = "a"\nrule = "P-1"\nflavor = "mysql"\npattern = "x"\nreason = "r"\n',
         "flavor must be pgbed or postgres"),
        ('[[difference]]\nid = "a"\nrule = "P-1"\nflavor = "pgbed"\npattern = "x"\nreason = "r"\n' * 2,
         "duplicate ids"),
    ],
)  # fmt: skip
def test_load_intended_refuses_incomplete_or_inconsistent_entries(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_intended(_toml(tmp_path, body))


def test_load_intended_refuses_a_bad_regex(tmp_path: Path) -> None:
    import re

    body = '[[difference]]\nid = "a"\nrule = "P-1"\nflavor = "pgbed"\npattern = "(unclosed"\nreason = "r"\n'
    with pytest.raises(re.error):
        load_intended(_toml(tmp_path, body))


def _intended(**kw: str) -> Intended:
    base = {"id": "x", "rule": "BGW-1", "reason": "because", "flavor": "postgres", "pattern": "launcher"}
    return Intended(**{**base, **kw})  # type: ignore[arg-type]


def test_apply_intended_drops_or_rewrites_only_where_it_applies() -> None:
    events = ["ready", "bgworker_start(launcher)", "ready"]
    o = Outcome("s1", "postgres", {"events:primary": events, "steps": ["launcher"]})
    out, used = apply_intended(o, [_intended(facet="events:*")])
    assert out.facets == {"events:primary": ["ready"], "steps": ["launcher"]}  # repeats collapse after a drop
    assert used == {"x"}
    out, used = apply_intended(o, [_intended(pattern=r"start\((\w+)\)", replace=r"begin(\1)", scenario="s*")])
    assert out.facets["events:primary"] == ["ready", "bgworker_begin(launcher)", "ready"]
    _, used = apply_intended(o, [_intended(flavor="pgbed"), _intended(id="y", scenario="other")])
    assert used == set()


def test_compare_same_differs_and_error() -> None:
    a = Outcome("s", "pgbed", {"events:primary": ["ready", "shut_down"], "steps": ["q: ok"]})
    b = Outcome("s", "postgres", {"events:primary": ["ready", "bgworker_start(launcher)", "shut_down"],
                                  "steps": ["q: ok"]})  # fmt: skip
    v = compare(a, b, [])
    assert v.status == "differs"
    assert v.how == ["events:primary: pgbed has nothing, postgres has bgworker_start(launcher) after ready"]
    assert "* " in v.detail and "bgworker_start(launcher)" in v.detail
    v = compare(a, b, [_intended(facet="events:*")])
    assert (v.status, v.intended_used) == ("same", {"x"})
    v = compare(a, Outcome("s", "postgres", error="NodeError: boom\ntraceback"), [])
    assert v.status == "error" and v.how == ["postgres: NodeError: boom"]


def test_side_by_side_marks_differing_rows() -> None:
    text = side_by_side("steps", ["a", "b", "c"], ["a", "x", "c"], width=10)
    rows = text.splitlines()
    assert rows[0] == "steps:"
    assert rows[2].startswith("  a") and rows[-1].startswith("  c")
    assert any(r.startswith("* b") for r in rows) and any(r.rstrip().endswith("| x") for r in rows)


def test_worker_starts_float_over_startup_progress_but_not_over_readiness() -> None:
    """A PostmasterStart worker (BGW-7) is started while the startup process logs its progress:
    which process logs first is timing; a worker started after readiness stays after it."""

    def line(msg: str, level: str = "LOG") -> str:
        return f"2026-12-04 19:40:01.101 UTC [1] postmaster {level}:  {msg}"

    start_pm = line('starting background worker process "pm"', "DEBUG")
    start_cs = line('starting background worker process "cs"', "DEBUG")
    progress = [line("database system was interrupted; last known up at x"), line("entering standby mode"),
                line("redo starts at 0/100028")]
    consistent = line("consistent recovery state reached at 0/100100")
    early = "\n".join([start_pm, *progress, consistent, start_cs])
    late = "\n".join([*progress[:2], start_pm, progress[2], consistent, start_cs])
    assert log_events(early) == log_events(late) == [
        "was_interrupted", "standby_mode", "redo_starts", "bgworker_start(pm)", "consistent", "bgworker_start(cs)"]
    wrong = "\n".join([*progress, start_cs, consistent])  # a ConsistentState worker before consistency
    assert log_events(wrong) != log_events(early.replace(start_pm + "\n", ""))
