"""orchestrator.bench: the pure parts (statistics, ratio/goal formatting, table, JSON shape). No servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import bench
from orchestrator.bench import (
    FIGURES,
    POSTGRES,
    Summary,
    build_report,
    fmt_goal,
    fmt_met,
    fmt_ms,
    fmt_ratio,
    fmt_reference,
    fmt_summary,
    goal_met,
    log_line_time,
    parse_importtime,
    ratio,
    render_table,
    summarize,
    table_rows,
)


def _samples() -> dict[str, dict[str, list[float]]]:
    return {
        "pgbed": {
            "initdb": [150.0, 120.0, 300.0, 140.0, 160.0],
            "start_select1": [210.0, 200.0, 260.0, 230.0, 240.0],
            "kill9_newconn": [60.0, 70.0, 80.0, 90.0, 100.0],
            "fast_shutdown": [15.0, 16.0, 17.0, 18.0, 19.0],
            "py_pass": [20.0, 21.0, 22.0, 23.0, 24.0],
            "py_import_postmaster": [60.0, 61.0, 62.0, 63.0, 64.0],
        },
        POSTGRES: {
            "initdb": [1000.0, 1100.0, 1200.0, 1300.0, 1400.0],
            "start_select1": [25.0, 26.0, 27.0, 28.0, 29.0],
            "kill9_newconn": [80.0, 80.0, 80.0, 80.0, 80.0],
            "fast_shutdown": [10.0, 10.0, 10.0, 10.0, 10.0],
        },
    }


# -- statistics -------------------------------------------------------------------------------------


def test_summarize_odd_and_even() -> None:
    assert summarize([3.0, 1.0, 2.0]) == Summary(n=3, median=2.0, min=1.0, max=3.0)
    assert summarize([4.0, 1.0, 2.0, 3.0]) == Summary(n=4, median=2.5, min=1.0, max=4.0)


def test_summarize_empty_and_generator() -> None:
    assert summarize([]) is None
    assert summarize(x * 1.0 for x in range(5)) == Summary(n=5, median=2.0, min=0.0, max=4.0)


def test_ratio() -> None:
    a, b = summarize([200.0]), summarize([25.0])
    assert ratio(a, b) == pytest.approx(8.0)
    assert ratio(a, None) is None
    assert ratio(None, b) is None
    assert ratio(a, summarize([0.0])) is None


# -- formatting -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ms", "text"), [(0.4213, "0.42"), (9.999, "10.00"), (12.34, "12.3"),
                                          (999.94, "999.9"), (1170.4, "1170"), (-3.0, "-3.00")])  # fmt: skip
def test_fmt_ms(ms: float, text: str) -> None:
    assert fmt_ms(ms) == text


def test_fmt_summary() -> None:
    assert fmt_summary(None) == "-"
    assert fmt_summary(Summary(5, 231.44, 220.1, 1250.3)) == "231.4 (220.1-1250)"


def test_ratio_goal_and_met_formatting() -> None:
    assert fmt_ratio(None) == "-"
    assert fmt_ratio(8.123) == "8.12x"
    assert fmt_ratio(10.26) == "10.3x"
    assert fmt_ratio(0.5) == "0.50x"
    assert fmt_goal(4.0) == "<= 4x"
    assert fmt_goal(1.5) == "<= 1.5x"
    assert fmt_goal(None) == "-"
    assert goal_met(3.9, 4.0) is True
    assert goal_met(4.0, 4.0) is True  # "within 4x" includes 4x
    assert goal_met(4.01, 4.0) is False
    assert goal_met(None, 4.0) is None
    assert goal_met(2.0, None) is None
    assert [fmt_met(m) for m in (True, False, None)] == ["yes", "NO", "-"]


def test_reference_figures_from_the_postgres_document() -> None:
    assert fmt_reference("start_select1") == "26.0 (25.0-35.0)"
    assert fmt_reference("kill9_newconn") == "78.0 (76.0-114.0)"
    assert fmt_reference("fast_shutdown") == "13.0"  # no range in the document
    assert fmt_reference("py_pass") == "-"


def test_goals_match_the_issue() -> None:
    assert bench.GOALS == {"start_select1": 4.0, "kill9_newconn": 1.5, "fast_shutdown": 1.5}


# -- table ------------------------------------------------------------------------------------------


def test_table_rows_content() -> None:
    rows = table_rows(_samples())
    assert rows[0][:4] == ["figure", "pgbed ms median (min-max)", "postgres ms median (min-max)", "ratio"]
    by_label = {r[0]: r for r in rows[1:]}
    start = by_label["start -> first SELECT 1"]
    assert start[1:] == ["230.0 (200.0-260.0)", "27.0 (25.0-29.0)", "8.52x", "<= 4x", "NO",
                         "26.0 (25.0-35.0)"]  # fmt: skip
    kill = by_label["kill -9 backend -> new conn"]
    assert kill[3:6] == ["1.00x", "<= 1.5x", "yes"]
    assert by_label["initdb"][3:6] == ["0.12x", "-", "-"]
    # figures nobody measured still get a row, with dashes
    assert by_label["start -> log 'ready to accept'"][1:4] == ["-", "-", "-"]
    assert by_label["python -c pass"][1:] == ["22.0 (20.0-24.0)", "-", "-", "-", "-", "-"]
    assert not any("[+pyc]" in r[0] for r in rows)  # no pyc flavour, no pyc rows


def test_table_rows_with_pyc_flavour_and_without_postgres() -> None:
    s = _samples()
    s["pgbed_pyc"] = {"start_select1": [100.0] * 5, "py_pass": [15.0] * 5}
    del s[POSTGRES]
    rows = table_rows(s)
    labels = [r[0] for r in rows]
    assert "start -> first SELECT 1 [+pyc]" in labels
    assert "initdb [+pyc]" not in labels
    assert "python -c pass [+pyc]" in labels
    pyc = rows[labels.index("start -> first SELECT 1 [+pyc]")]
    assert pyc[1:6] == ["100.0 (100.0-100.0)", "-", "-", "<= 4x", "-"]


def test_render_table_aligns_columns() -> None:
    text = render_table([["figure", "a", "b"], ["start -> first SELECT 1", "1234.5 (1-2)", "x"]])
    lines = text.splitlines()
    assert lines[0] == "figure                   a             b"
    assert lines[1] == "start -> first SELECT 1  1234.5 (1-2)  x"
    assert all(line == line.rstrip() for line in lines)


def test_render_real_table_is_rectangular() -> None:
    lines = render_table(table_rows(_samples())).splitlines()
    assert len(lines) == 1 + len(FIGURES) + 2
    starts = [lines[0].index(h) for h in ("pgbed ms", "postgres ms", "ratio", "goal", "met", "PG15 ref")]
    for line in lines[1:]:
        for col in starts:
            assert line[col - 2 : col] == "  "  # every column starts at the same offset


# -- JSON -------------------------------------------------------------------------------------------


def test_build_report_shape_and_roundtrip() -> None:
    env = {"python": "3.11.7", "nproc": 2, "PYTHONDONTWRITEBYTECODE": "1", "postgres_version": "15.18"}
    rep = build_report(_samples(), runs=5, environment=env,
                       importtime={"pgbed": [{"module": "node.postmaster", "self_us": 7000,
                                              "cumulative_us": 38000, "depth": 0}]},
                       failures=[], notes=["n"])  # fmt: skip
    assert json.loads(json.dumps(rep)) == rep
    assert set(rep) >= {"bench", "runs", "environment", "reference_ms", "goals", "flavours", "ratios",
                        "importtime_top10", "failures", "notes"}  # fmt: skip
    assert rep["bench"] == "startup" and rep["runs"] == 5
    assert rep["environment"]["PYTHONDONTWRITEBYTECODE"] == "1"
    fig = rep["flavours"]["pgbed"]["figures"]["start_select1"]
    assert fig == {"samples_ms": [210.0, 200.0, 260.0, 230.0, 240.0], "n": 5, "median_ms": 230.0,
                   "min_ms": 200.0, "max_ms": 260.0}  # fmt: skip
    assert rep["flavours"][POSTGRES]["label"] == "postgres"
    r = rep["ratios"]["pgbed"]["start_select1"]
    assert r == {"ratio": pytest.approx(8.519, abs=1e-3), "goal": 4.0, "met": False}
    assert rep["ratios"]["pgbed"]["initdb"]["goal"] is None
    assert rep["ratios"]["pgbed"]["start_ready_log"] == {"ratio": None, "goal": None, "met": None}
    assert "pgbed_pyc" not in rep["ratios"]
    assert rep["reference_ms"]["fast_shutdown"] == {"median": 13.0, "min": None, "max": None}


def test_figure_json_empty() -> None:
    assert bench.figure_json([]) == {"samples_ms": [], "n": 0, "median_ms": None, "min_ms": None,
                                     "max_ms": None}  # fmt: skip


# -- parsers ----------------------------------------------------------------------------------------


def test_parse_importtime_top_by_self_time() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |   _io\n"
        "import time:      3100 |       5400 |     node.datadir\n"
        "import time:      6900 |      38200 | node.postmaster\n"
        "some unrelated line\n"
    )
    top = parse_importtime(stderr, top=2)
    assert top == [
        {"module": "node.postmaster", "self_us": 6900, "cumulative_us": 38200, "depth": 0},
        {"module": "node.datadir", "self_us": 3100, "cumulative_us": 5400, "depth": 2},
    ]
    assert parse_importtime("") == []


def test_log_line_time_parses_the_m_prefix_as_utc() -> None:
    log = ("2026-11-25 10:58:37.938 UTC [31452] postmaster LOG:  listening on Unix socket\n"
           "2026-11-25 10:58:37.966 UTC [31452] postmaster LOG:  database system is ready to accept "
           "connections\n")  # fmt: skip
    t = log_line_time(log, bench.READY_LINE)
    assert t == pytest.approx(1795604317.966, abs=1e-6)
    assert log_line_time(log, "not there") is None
    no_prefix = "no prefix: database system is ready to accept connections"
    assert log_line_time(no_prefix, bench.READY_LINE) is None
    # PostgreSQL's %m without milliseconds (%t) still parses
    assert log_line_time("2026-11-25 10:58:37 UTC [1] LOG:  x", "x") == pytest.approx(1795604317.0)


# -- entry point, without servers -------------------------------------------------------------------


def test_main_enforces_at_least_five_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main("startup", runs=4) == 1
    assert "at least 5" in capsys.readouterr().err


def test_main_rejects_unknown_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main("replication", runs=7) == 1
    assert "unknown group" in capsys.readouterr().err


def test_find_postgres_missing_says_where_it_looked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bench.shutil, "which", lambda _name: None)
    bindir, why = bench.find_postgres(fallback=tmp_path)
    assert bindir is None
    assert "pg_ctl" in why and str(tmp_path) in why
    assert bench.INSTALL_HINT == "apt-get install postgresql-15"
