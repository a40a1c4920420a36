"""orchestrator.bench: the pure parts (statistics, ratio/goal formatting, table, JSON shape). No servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import bench, bench_sql
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
    assert bench.main("nosuchgroup", runs=7) == 1
    assert "unknown group" in capsys.readouterr().err


def test_find_postgres_missing_says_where_it_looked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bench.shutil, "which", lambda _name: None)
    bindir, why = bench.find_postgres(fallback=tmp_path)
    assert bindir is None
    assert "pg_ctl" in why and str(tmp_path) in why
    assert bench.INSTALL_HINT == "apt-get install postgresql-15"


# -- `pgbed bench sql`: the pure parts ----------------------------------------------------------------


def test_main_dispatches_sql_and_enforces_five_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main("sql", runs=4) == 1
    assert "at least 5" in capsys.readouterr().err


def test_cli_accepts_the_sql_group(monkeypatch: pytest.MonkeyPatch) -> None:
    from node import __main__ as cli

    seen: dict[str, object] = {}

    def fake_main(group: str, runs: int = 7, json_out: str | None = None, suite: bool = False) -> int:
        seen.update(group=group, runs=runs, json_out=json_out)
        if suite:
            seen["suite"] = True
        return 0

    monkeypatch.setattr(bench, "main", fake_main)
    assert cli.main(["bench", "sql", "--runs", "5", "--json", "/tmp/x.json"]) == 0
    assert seen == {"group": "sql", "runs": 5, "json_out": "/tmp/x.json"}
    assert cli.main(["bench", "replication", "--runs", "3"]) == 0
    assert seen == {"group": "replication", "runs": 3, "json_out": None}
    assert cli.main(["bench", "chaos", "--runs", "2", "--suite"]) == 0
    assert seen == {"group": "chaos", "runs": 2, "json_out": None, "suite": True}
    with pytest.raises(SystemExit):
        cli.main(["bench", "nosuchgroup"])
    seen.clear()
    assert cli.main(["bench", "sql"]) == 0
    assert seen == {"group": "sql", "runs": 7, "json_out": None}  # no --runs: the group's own default


def test_bench_all_runs_every_group_and_keeps_going(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """`pgbed bench all --json`: every group in order, each group's report and printed table in
    one document, a failing group reported without stopping the others, exit 1 then."""
    from orchestrator import bench_all

    order: list[tuple[str, object]] = []

    def fake_main(group: str, runs: int | None = None, json_out: str | None = None, suite: bool = False) -> int:
        order.append((group, runs))
        if group == "replication":
            raise RuntimeError("standby never consistent")
        print(f"{group} table: ratio 1.5")
        assert json_out is not None
        Path(json_out).write_text(json.dumps({"bench": group}))
        return 0

    monkeypatch.setattr(bench, "main", fake_main)
    out = tmp_path / "all.json"
    assert bench_all.main(json_out=str(out)) == 1
    assert [g for g, _ in order] == list(bench_all.GROUPS) and {r for _, r in order} == {None}
    doc = json.loads(out.read_text())
    assert doc["groups"]["sql"]["report"] == {"bench": "sql"} and doc["groups"]["sql"]["exit"] == 0
    assert "sql table: ratio 1.5" in doc["groups"]["sql"]["output"]
    assert doc["groups"]["replication"]["exit"] == 1 and doc["groups"]["replication"]["report"] is None
    assert "failed: replication" in capsys.readouterr().out
    order.clear()
    assert bench_all.main(runs=2, groups=("startup", "metrics")) == 0
    assert order == [("startup", 2), ("metrics", 2)]


def test_percentile_interpolates_like_numpy() -> None:
    xs = [float(x) for x in range(1, 101)]  # 1..100
    assert bench_sql.percentile(xs, 50) == pytest.approx(50.5)
    assert bench_sql.percentile(xs, 99) == pytest.approx(99.01)
    assert bench_sql.percentile(xs, 0) == 1.0
    assert bench_sql.percentile(xs, 100) == 100.0
    assert bench_sql.percentile([3.0, 1.0, 2.0], 50) == 2.0  # order does not matter
    assert bench_sql.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        bench_sql.percentile([], 50)
    with pytest.raises(ValueError):
        bench_sql.percentile([1.0], 101)


def test_window_figures_rate_and_latencies_in_ms() -> None:
    lat = [0.001] * 98 + [0.010, 0.020]  # seconds
    figs = bench_sql.window_figures("tcp_insert_on_c1", 100, 2.0, lat)
    assert figs["tcp_insert_on_c1_rate"] == pytest.approx(50.0)
    assert figs["tcp_insert_on_c1_lat_med"] == pytest.approx(1.0)
    assert figs["tcp_insert_on_c1_lat_p99"] == pytest.approx(10.1)  # between 10 ms and 20 ms
    assert bench_sql.window_figures("k", 0, 2.0, []) == {}
    assert bench_sql.window_figures("k", 5, 0.0, [0.1] * 5) == {}


def test_worse_by_inverts_rates_only() -> None:
    fast, slow = summarize([100.0]), summarize([400.0])
    assert bench_sql.worse_by(bench_sql.TIME, slow, fast) == pytest.approx(4.0)  # pgbed 400 ms vs 100 ms
    assert bench_sql.worse_by(bench_sql.SIZE, slow, fast) == pytest.approx(4.0)
    assert bench_sql.worse_by(bench_sql.RATE, fast, slow) == pytest.approx(4.0)  # pgbed 100/s vs 400/s
    assert bench_sql.worse_by(bench_sql.RATE, slow, fast) == pytest.approx(0.25)
    assert bench_sql.worse_by(bench_sql.TIME, None, fast) is None
    assert bench_sql.worse_by(bench_sql.RATE, summarize([0.0]), fast) is None


def test_sql_figures_goals_and_references_match_the_issue() -> None:
    keys = [f.key for f in bench_sql.FIGURES]
    assert len(keys) == len(set(keys))
    for t in ("tcp", "unix"):
        for sync in ("on", "off"):
            for n in (1, 4):
                assert f"{t}_insert_{sync}_c{n}_rate" in keys
                assert f"{t}_insert_{sync}_c{n}_lat_p99" in keys
        assert f"{t}_select_c1_rate" in keys
    assert {"recovery_first_query", "recovery_redo", "rss_postmaster", "rss_backend"} <= set(keys)
    # within 3x on commit latency (1 client), 1.5x on crash recovery
    assert bench_sql.GOALS["tcp_insert_on_c1_lat_med"] == 3.0
    assert bench_sql.GOALS["unix_insert_off_c1_lat_med"] == 3.0
    assert bench_sql.GOALS["recovery_first_query"] == 1.5
    assert "tcp_insert_on_c4_lat_med" not in bench_sql.GOALS
    assert bench_sql.REFERENCE_MS["tcp_insert_on_c1_lat_med"] == 0.20
    assert bench_sql.REFERENCE_MS["unix_insert_off_c1_lat_med"] == 0.074
    assert bench_sql.RECOVERY_ROWS == 100_000


def _sql_samples() -> dict[str, dict[str, list[float]]]:
    return {
        bench_sql.PGBED_PYC: {
            "tcp_insert_on_c1_rate": [22.0, 21.0, 23.0, 22.5, 22.0],
            "tcp_insert_on_c1_lat_med": [44.0, 44.1, 43.9, 44.0, 44.2],
            "unix_insert_on_c1_lat_med": [0.40, 0.38, 0.42, 0.39, 0.41],
            "recovery_first_query": [3000.0, 2900.0, 3100.0, 3050.0, 2950.0],
            "rss_backend": [60.0, 61.0, 62.0, 63.0, 64.0],
        },
        POSTGRES: {
            "tcp_insert_on_c1_rate": [5000.0, 5500.0, 6000.0, 4500.0, 5200.0],
            "tcp_insert_on_c1_lat_med": [0.20, 0.18, 0.22, 0.19, 0.21],
            "unix_insert_on_c1_lat_med": [0.15, 0.14, 0.16, 0.15, 0.15],
            "recovery_first_query": [2000.0, 2100.0, 1900.0, 2050.0, 1950.0],
            "rss_backend": [20.0, 20.0, 20.0, 20.0, 20.0],
        },
    }


def test_sql_table_rows_content() -> None:
    rows = bench_sql.table_rows(_sql_samples())
    assert rows[0] == ["figure", "unit", "pgbed+pyc median (min-max)", "postgres median (min-max)",
                       "pgbed worse by", "goal", "met", "PG15 ref"]  # fmt: skip
    by_label = {r[0]: r for r in rows[1:]}
    assert len(by_label) == 5  # figures nobody measured are left out
    rate = by_label["INSERT sync=on 1c [TCP] commits/s"]
    assert rate[1:] == ["/s", "22.0 (21.0-23.0)", "5200 (4500-6000)", "236.4x", "-", "-", "-"]
    lat = by_label["INSERT sync=on 1c [TCP] latency median"]
    assert lat[1:] == ["ms", "44.0 (43.9-44.2)", "0.20 (0.18-0.22)", "220.0x", "<= 3x", "NO", "0.20"]
    unix = by_label["INSERT sync=on 1c [unix] latency median"]
    assert unix[4:7] == ["2.67x", "<= 3x", "yes"]
    rec = by_label["crash recovery 100k: restart -> count(*)"]
    assert rec[4:7] == ["1.50x", "<= 1.5x", "yes"]  # "within 1.5x" includes 1.5x
    assert by_label["peak RSS largest backend (VmHWM)"][1:5] == ["MB", "62.0 (60.0-64.0)", "20.0 (20.0-20.0)", "3.10x"]
    # rows appear in FIGURES order; the table renders as a rectangle
    order = [f.label for f in bench_sql.FIGURES if f.label in by_label]
    assert [r[0] for r in rows[1:]] == order
    lines = render_table(rows).splitlines()
    assert len(lines) == 6


def test_sql_table_rows_without_postgres() -> None:
    s = _sql_samples()
    del s[POSTGRES]
    rows = bench_sql.table_rows(s)
    assert all(r[3] == "-" and r[4] == "-" and r[6] == "-" for r in rows[1:])


def test_fmt_worse_magnitudes() -> None:
    assert bench_sql.fmt_worse(None) == "-"
    assert bench_sql.fmt_worse(2.666) == "2.67x"
    assert bench_sql.fmt_worse(236.36) == "236.4x"
    assert bench_sql.fmt_worse(1234.5) == "1234x"


def test_sql_build_report_shape_and_roundtrip() -> None:
    s = _sql_samples()
    details = [{"flavour": bench_sql.PGBED_PYC, "run": 1, "figures": {}, "count_after_recovery": 100_000}]
    profile = {"cases": {"on": {"samples": 10, "top_inclusive": [], "top_self": []}}}
    rep = bench_sql.build_report(s, runs=5, environment={"python": "3.11"}, details=details, profile=profile,
                                 failures=[], notes=["n"])  # fmt: skip
    rep = json.loads(json.dumps(rep))  # JSON-serialisable
    assert rep["bench"] == "sql" and rep["schema"] == 1 and rep["runs"] == 5
    assert rep["settings"]["recovery_rows"] == 100_000
    assert set(rep["flavours"]) == {"pgbed_pyc", "postgres"}
    fig = rep["flavours"]["pgbed_pyc"]["figures"]["tcp_insert_on_c1_lat_med"]
    assert fig == {"unit": "ms", "samples": [44.0, 44.1, 43.9, 44.0, 44.2], "n": 5, "median": 44.0,
                   "min": 43.9, "max": 44.2}  # fmt: skip
    assert rep["flavours"]["postgres"]["figures"]["tcp_insert_on_c1_rate"]["unit"] == "/s"
    r = rep["ratios"]["tcp_insert_on_c1_lat_med"]
    assert r == {"pgbed_worse_by": 220.0, "goal": 3.0, "met": False}
    assert rep["ratios"]["recovery_first_query"]["met"] is True
    assert rep["ratios"]["unix_select_c1_rate"] == {"pgbed_worse_by": None, "goal": None, "met": None}
    assert rep["figures"]["rss_backend"]["unit"] == "MB"
    assert rep["runs_detail"] == details and rep["profile"] == profile and rep["notes"] == ["n"]


_TOP = "<module> (node/__main__.py:243);main (node/backend.py:309)"
COLLAPSED = "\n".join([
    f"{_TOP};Session.run (node/backend.py:466);Latch.wait (node/ipc/latch.py:80) 30",
    f"{_TOP};Session.run (node/backend.py:466);Heap.commit (node/storage.py:220);WalWriter.flush (node/wal.py:500) 50",
    f"{_TOP};Session.run (node/backend.py:470);Heap.commit (node/storage.py:224) 15",
    f"{_TOP};f (x.py:1);f (x.py:2) 5",
    "garbage line without a count",
])  # fmt: skip


def test_parse_collapsed_counts_inclusive_and_self_per_function() -> None:
    total, incl, self_ = bench_sql.parse_collapsed(COLLAPSED)
    assert total == 100
    assert incl["Session.run (node/backend.py)"] == 95  # both line numbers are one function
    assert incl["Heap.commit (node/storage.py)"] == 65
    assert incl["f (x.py)"] == 5  # recursion counts once per stack
    assert self_ == {"Latch.wait (node/ipc/latch.py)": 30, "WalWriter.flush (node/wal.py)": 50,
                     "Heap.commit (node/storage.py)": 15, "f (x.py)": 5}  # fmt: skip


def test_top_functions_skips_the_frames_above_the_interesting_part() -> None:
    total, incl, self_ = bench_sql.parse_collapsed(COLLAPSED)
    top = bench_sql.top_functions(total, incl, 3, skip_above=0.97)
    assert [d["function"] for d in top] == ["Session.run (node/backend.py)", "Heap.commit (node/storage.py)",
                                            "WalWriter.flush (node/wal.py)"]  # fmt: skip
    assert top[0] == {"function": "Session.run (node/backend.py)", "samples": 95, "share": 0.95}
    assert bench_sql.top_functions(total, self_, 1) == [
        {"function": "WalWriter.flush (node/wal.py)", "samples": 50, "share": 0.5}
    ]
    assert bench_sql.top_functions(0, {}, 5) == []
