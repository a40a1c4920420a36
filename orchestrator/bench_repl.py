"""`pgbed bench replication`: streaming replication figures next to PostgreSQL 15's, in one run.

What it does, per run and flavour (pgbed with a warm bytecode cache, and a real PostgreSQL 15
run as the `postgres` OS user, interleaved A/B): a primary with default settings (plus port,
listen address, socket directory, checkpoint_timeout = 1h), loaded with a ~50 MB table
(LOAD_ROWS rows of ROW_BYTES bytes, batched INSERT … SELECT generate_series), then

1. base backup: wall time of `pgbed basebackup -R` / `pg_basebackup -R -X stream -c fast`;
2. standby start → consistent: from spawning the standby's server to its log line
   `consistent recovery state reached` (both servers log it with a %m timestamp), and to the
   first read-only `SELECT 1` that succeeds;
3. replication lag under a steady load: one client commits single-row INSERTs paced at
   LAG_RATE commits/s for LAG_WINDOW_S, while another samples the primary's
   pg_stat_replication every LAG_SAMPLE_S: replay lag in bytes (pg_current_wal_lsn() -
   replay_lsn, computed client-side) and in seconds (replay_lag; NULL counts as 0, as it means
   caught up): median and p99 over the samples;
4. commit latency, one client, WINDOW_S each: synchronous_standby_names = the standby (sync)
   and then empty (async), per-commit latency median and p99;
5. promotion: `SELECT pg_promote(false)` on the standby, then the same session retries an
   INSERT until one is accepted: the time from the call to the accepted write.

Then both servers stop (fast), and nothing may be left running. Every wait has a deadline; on
failure the log tail is printed and the temp dir is kept.

What it deliberately does not do: tune either server, measure cascading standbys, or hide
failures: a step that fails is reported with its evidence and the run counts as failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from orchestrator.bench import (
    PGBED_PYC,
    POSTGRES,
    BenchError,
    Flavour,
    Registry,
    Server,
    _environment,
    fmt_ms,
    interleaved_runs,
    log_line_time,
    pgbed_and_postgres,
    render_table,
    summarize,
)
from orchestrator.bench_sql import percentile

LOAD_ROWS = 50_000
ROW_BYTES = 1000
BATCH = 1000
LAG_RATE = 500
LAG_WINDOW_S = 4.0
LAG_SAMPLE_S = 0.01
WINDOW_S = 2.0
STEP_TIMEOUT = 120.0
CONSISTENT_LINE = "consistent recovery state reached"

# (key, label, unit, goal as pgbed/postgres ratio or absolute bound, PG15 reference from the issue)
FIGURES: list[tuple[str, str, str, str | None, float | None]] = [
    ("basebackup", "base backup of ~50 MB", "ms", None, None),
    ("standby_consistent", "standby start -> consistent (log)", "ms", "<= 2x", 71.0),
    ("standby_select1", "standby start -> first read-only SELECT 1", "ms", None, None),
    ("lag_bytes_med", f"replay lag bytes median @{LAG_RATE}/s", "B", None, None),
    ("lag_bytes_p99", f"replay lag bytes p99 @{LAG_RATE}/s", "B", None, None),
    ("lag_s_med", f"replay lag median @{LAG_RATE}/s", "ms", None, None),
    ("lag_s_p99", f"replay lag p99 @{LAG_RATE}/s", "ms", "< 5 ms", 0.9),
    ("commit_sync_med", "commit latency sync (1 sync standby) median", "ms", "<= 3x", 0.37),
    ("commit_sync_p99", "commit latency sync p99", "ms", None, None),
    ("commit_async_med", "commit latency async median", "ms", None, None),
    ("commit_async_p99", "commit latency async p99", "ms", None, None),
    ("promote_first_write", "pg_promote() -> first INSERT accepted", "ms", "<= 2x", 18.0),
]


class _Pair:
    """A primary and its standby for one flavour and run."""

    def __init__(self, flavour: Flavour, rundir: Path, registry: Registry) -> None:
        self.flavour = flavour
        self.primary = Server(flavour, rundir / "primary", registry)
        self.standby = Server(flavour, rundir / "standby", registry)

    def sql(self, server: Server, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(server.connstr(), autocommit=True) as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else []

    def start_primary(self) -> None:
        p = self.primary
        p.prepare()
        p.initdb()
        with open(p.datadir / "postgresql.conf", "a") as f:
            f.write("checkpoint_timeout = '1h'\n")
        t0, _ = p.spawn()
        p.poll_select1(t0)

    def load(self) -> None:
        self.sql(self.primary, "CREATE TABLE big (id int PRIMARY KEY, v text)")
        pad = "x" * ROW_BYTES
        for start in range(0, LOAD_ROWS, BATCH):
            self.sql(self.primary, "INSERT INTO big SELECT g, %s FROM generate_series(%s::int, %s::int) g",
                     (pad, start, start + BATCH - 1))  # fmt: skip
        self.sql(self.primary, "CREATE TABLE t (id int PRIMARY KEY, v text)")

    def basebackup(self) -> float:
        s = self.standby
        s.prepare()
        if self.flavour.is_pgbed:
            cmd = [sys.executable, "-m", "node", "basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port),
                   "-D", str(s.datadir), "-R", "-U", "postgres"]  # fmt: skip
        else:
            assert self.flavour.bindir is not None
            cmd = [str(self.flavour.bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port),
                   "-D", str(s.datadir), "-R", "-U", "postgres", "-X", "stream", "-c", "fast"]  # fmt: skip
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=STEP_TIMEOUT,
                           **self.flavour.popen_kw(s.rundir))  # fmt: skip
        ms = (time.perf_counter() - t0) * 1000
        if r.returncode != 0:
            raise BenchError(self.primary.evidence(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}"))
        with open(s.datadir / "postgresql.conf", "a") as f:
            f.write("\n# pgbed bench standby\n")
            for k, v in self.flavour.conf(s.port, s.sockdir).items():
                f.write(f"{k} = {v}\n")
            f.write("cluster_name = 'standby1'\n")
        return ms

    def start_standby(self) -> tuple[float, float]:
        s = self.standby
        t0, t_wall = s.spawn()
        ms_select, _failed = s.poll_select1(t0)
        text = s.wait_log(CONSISTENT_LINE, timeout=STEP_TIMEOUT)
        at = log_line_time(text, CONSISTENT_LINE)
        if at is None:
            raise BenchError(s.evidence("consistent-state log line without a parseable time"))
        self.wait_streaming()
        return (at - t_wall) * 1000, ms_select

    def wait_streaming(self) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT
        last: Any = None
        while time.monotonic() < deadline:
            last = self.sql(self.primary, "SELECT state, application_name FROM pg_stat_replication")
            if ("streaming", "standby1") in last:
                return
            time.sleep(0.02)
        raise BenchError(self.primary.evidence(f"standby not streaming within {STEP_TIMEOUT:g} s; saw {last!r}"))

    def lag(self) -> dict[str, float]:
        """Paced commits on one connection, pg_stat_replication sampled on another."""
        import psycopg

        from node.protocol import parse_lsn

        stop = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                with psycopg.connect(self.primary.connstr(), autocommit=True) as c:
                    i = 0
                    t_next = time.perf_counter()
                    end = t_next + LAG_WINDOW_S
                    while time.perf_counter() < end:
                        c.execute("INSERT INTO t VALUES (%s, 'lag')", (i,))
                        i += 1
                        t_next += 1.0 / LAG_RATE
                        delay = t_next - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
            except BaseException as e:  # reported below
                errors.append(e)
            finally:
                stop.set()

        lag_bytes: list[float] = []
        lag_s: list[float] = []
        th = threading.Thread(target=writer)
        with psycopg.connect(self.primary.connstr(), autocommit=True) as c:
            th.start()
            time.sleep(0.2)
            while not stop.is_set():
                row = c.execute("SELECT pg_current_wal_lsn(), replay_lsn, replay_lag FROM pg_stat_replication "
                                "WHERE application_name = 'standby1'").fetchone()  # fmt: skip
                if row and row[1]:
                    lag_bytes.append(max(0, parse_lsn(str(row[0])) - parse_lsn(str(row[1]))))
                    lag_s.append(row[2].total_seconds() * 1000 if row[2] is not None else 0.0)
                time.sleep(LAG_SAMPLE_S)
        th.join(STEP_TIMEOUT)
        if errors:
            raise BenchError(self.primary.evidence(f"lag load failed: {errors[0]!r}"))
        if not lag_s:
            raise BenchError(self.primary.evidence("no pg_stat_replication sample during the lag load"))
        return {"lag_bytes_med": percentile(lag_bytes, 50), "lag_bytes_p99": percentile(lag_bytes, 99),
                "lag_s_med": percentile(lag_s, 50), "lag_s_p99": percentile(lag_s, 99)}  # fmt: skip

    def commit_latency(self, sync: bool, base: int) -> tuple[float, float]:
        import psycopg

        names = "'standby1'" if sync else "''"
        self.sql(self.primary, f"ALTER SYSTEM SET synchronous_standby_names = {names}")
        self.sql(self.primary, "SELECT pg_reload_conf()")
        deadline = time.monotonic() + STEP_TIMEOUT
        want = "sync" if sync else "async"
        while self.sql(self.primary, "SELECT sync_state FROM pg_stat_replication") != [(want,)]:
            if time.monotonic() > deadline:
                raise BenchError(self.primary.evidence(f"sync_state did not become {want}"))
            time.sleep(0.02)
        lat: list[float] = []
        with psycopg.connect(self.primary.connstr(), autocommit=True) as c:
            end = time.perf_counter() + WINDOW_S
            i = base
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                c.execute("INSERT INTO t VALUES (%s, 'commit')", (i,))
                lat.append((time.perf_counter() - t0) * 1000)
                i += 1
        return percentile(lat, 50), percentile(lat, 99)

    def promote(self) -> float:
        import psycopg

        with psycopg.connect(self.standby.connstr(), autocommit=True) as c:
            t0 = time.perf_counter()
            c.execute("SELECT pg_promote(false)")
            deadline = t0 + STEP_TIMEOUT
            while True:
                try:
                    c.execute("INSERT INTO t VALUES (-1, 'promoted')")
                    return (time.perf_counter() - t0) * 1000
                except psycopg.errors.ReadOnlySqlTransaction:
                    pass
                if time.perf_counter() > deadline:
                    raise BenchError(self.standby.evidence("no write accepted after pg_promote"))
                time.sleep(0.001)

    def stop(self) -> None:
        for s in (self.standby, self.primary):
            if s.proc is not None and s.proc.poll() is None:
                s.fast_shutdown()


def run_once(flavour: Flavour, rundir: Path, registry: Registry) -> dict[str, float]:
    pair = _Pair(flavour, rundir, registry)
    out: dict[str, float] = {}
    print(f"  {flavour.label}: primary + {LOAD_ROWS * ROW_BYTES // 1_000_000} MB load", flush=True)
    pair.start_primary()
    pair.load()
    out["basebackup"] = pair.basebackup()
    print(f"  {flavour.label}: base backup {fmt_ms(out['basebackup'])} ms; starting the standby", flush=True)
    out["standby_consistent"], out["standby_select1"] = pair.start_standby()
    print(f"  {flavour.label}: lag under {LAG_RATE} commits/s for {LAG_WINDOW_S:g} s", flush=True)
    out.update(pair.lag())
    out["commit_sync_med"], out["commit_sync_p99"] = pair.commit_latency(True, 1_000_000)
    out["commit_async_med"], out["commit_async_p99"] = pair.commit_latency(False, 2_000_000)
    out["promote_first_write"] = pair.promote()
    pair.stop()
    return out


def _fmt(v: float, unit: str) -> str:
    return f"{v:.0f}" if unit == "B" else fmt_ms(v)


def report(samples: dict[str, dict[str, list[float]]]) -> str:
    rows = [["figure", "unit", "pgbed median", "postgres median", "ratio", "goal", "met", "PG15 (issue)"]]
    for key, label, unit, goal, ref in FIGURES:
        a = summarize(samples.get(PGBED_PYC, {}).get(key, []))
        b = summarize(samples.get(POSTGRES, {}).get(key, []))
        r = a.median / b.median if a and b and b.median > 0 else None
        met = "-"
        if goal and a is not None:
            bound = float(goal.split()[1].rstrip("x"))
            if goal.endswith("x"):
                met = "-" if r is None else ("yes" if r <= bound else "NO")
            else:  # an absolute bound in the figure's unit
                met = "yes" if a.median < bound else "NO"
        rows.append([label, unit, _fmt(a.median, unit) if a else "-", _fmt(b.median, unit) if b else "-",
                     "-" if r is None else f"{r:.2f}x", goal or "-", met,
                     "-" if ref is None else fmt_ms(ref)])  # fmt: skip
    return render_table(rows)


def main(runs: int = 3, json_out: str | None = None) -> int:
    try:
        import psycopg
    except ImportError:
        print("pgbed bench: psycopg is required (pip install 'psycopg[binary]')", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="pgbed-bench-repl-"))
    os.chmod(root, 0o755)
    registry = Registry(root)
    flavours, pg_bindir, pg_version = pgbed_and_postgres(root)
    samples: dict[str, dict[str, list[float]]] = {f.name: {} for f in flavours}
    results, failures = interleaved_runs(flavours, runs, root, registry, run_once,
                                         (BenchError, OSError, subprocess.TimeoutExpired, psycopg.Error))  # fmt: skip
    for fl, res in results:
        for k, v in res.items():
            samples[fl.name].setdefault(k, []).append(v)
    keep = bool(failures)
    print()
    print(report(samples))
    print(f"\n{runs} run(s) per flavour, interleaved; medians over runs. pgbed = pgbed with a warm bytecode cache.")
    if failures:
        print("\nfailures:")
        for f in failures:
            print(f"  {f}")
    if json_out:
        env = _environment(pg_bindir, pg_version)
        with open(json_out, "w") as f:
            json.dump({"group": "replication", "runs": runs, "environment": env, "samples": samples,
                       "failures": failures}, f, indent=2)  # fmt: skip
    if keep:
        print(f"logs kept in {root}")
    else:
        with contextlib.suppress(OSError):
            shutil.rmtree(root)
    return 1 if failures else 0
