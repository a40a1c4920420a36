"""`pgbed bench bgworker`: dynamic background-worker latency, next to PostgreSQL 15's cost of a
forced parallel worker, in one run.

What it does, per run and flavour (interleaved):
- pgbed (warm bytecode cache; shared_preload_libraries = 'pgbed_test', jsonlog on):
  1. ITERATIONS dynamic registrations, one at a time, of a worker that exits at once: from just
     before `pgbed_test_register()` to the return of `pgbed_test_wait_startup()` (STARTED: forked,
     BGW-9), and to the worker's `bgw_main` jsonlog event (its main function about to run; the
     log's clock is this machine's);
  2. BURST registrations of long-running workers back to back, then the time until every one has
     logged `bgw_main` ("all running"); they are terminated afterwards.
- PostgreSQL 15 (as the `postgres` OS user): the same counts of `SELECT count(*)` over a small
  table with force_parallel_mode = on and one parallel worker (register, fork, start, exit), and
  with it off; the difference of the medians is what one dynamic worker costs a query. For the
  burst, BURST such queries from BURST_CLIENTS connections at once, to all done.
The ratio row compares pgbed's registration → main running with PostgreSQL's per-query worker
cost; the burst rows are not the same operation on both sides, and say so.

What it deliberately does not do: tune either server, or use a PostgreSQL extension.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
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
    pgbed_and_postgres,
    render_table,
    summarize,
)
from orchestrator.bench_sql import percentile

ITERATIONS = 200
BURST = 100
BURST_CLIENTS = 20
STEP_TIMEOUT = 120.0


def _connect(server: Server) -> Any:
    import psycopg

    c = psycopg.connect(server.connstr(), autocommit=True)
    c.prepare_threshold = None  # no server-side prepared plans: each query is planned under its settings
    return c


def _start(flavour: Flavour, rundir: Path, registry: Registry, extra: dict[str, str]) -> Server:
    srv = Server(flavour, rundir, registry)
    srv.prepare()
    srv.initdb()
    with open(srv.datadir / "postgresql.conf", "a") as f:
        for k, v in extra.items():
            f.write(f"{k} = {v}\n")
    t0, _ = srv.spawn()
    srv.poll_select1(t0)
    return srv


def _events(srv: Server) -> dict[str, float]:
    out: dict[str, float] = {}
    path = srv.datadir / "log" / "postgresql.json"
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                r = json.loads(line)
                if r.get("event") == "bgw_main":
                    out.setdefault(str(r.get("name")), float(r["ts"]))
    return out


def run_pgbed(flavour: Flavour, rundir: Path, registry: Registry) -> dict[str, list[float]]:
    srv = _start(flavour, rundir, registry, {"shared_preload_libraries": "'pgbed_test'",
                                            "max_worker_processes": str(BURST + 10),
                                            "log_destination": "'stderr,jsonlog'"})  # fmt: skip
    out: dict[str, list[float]] = {"started": [], "main": []}
    try:
        with _connect(srv) as c:
            c.execute("CREATE EXTENSION pgbed_test")
            t_reg: dict[str, float] = {}
            for i in range(ITERATIONS):
                name = f"one{i}"
                t0 = time.time()
                row = c.execute("SELECT * FROM pgbed_test_register(%s, 'postmaster_start', -1, '{shmem}', 'exit:0')",
                                (name,)).fetchone()  # fmt: skip
                if row is None:
                    raise BenchError(srv.evidence("no free background-worker slot"))
                c.execute("SELECT * FROM pgbed_test_wait_startup(%s, %s)", row).fetchone()
                out["started"].append((time.time() - t0) * 1000)
                t_reg[name] = t0
            deadline = time.monotonic() + STEP_TIMEOUT
            while True:
                ev = _events(srv)
                if all(n in ev for n in t_reg) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            out["main"] = [(ev[n] - t) * 1000 for n, t in t_reg.items() if n in ev]
            handles = []
            t0 = time.time()
            for i in range(BURST):
                row = c.execute("SELECT * FROM pgbed_test_register(%s, 'postmaster_start', -1, '{shmem}', 'run')",
                                (f"burst{i}",)).fetchone()  # fmt: skip
                if row is None:
                    raise BenchError(srv.evidence("no free background-worker slot for the burst"))
                handles.append(row)
            t_last_reg = time.time()
            names = {f"burst{i}" for i in range(BURST)}
            while True:
                ev = _events(srv)
                if names <= ev.keys():
                    break
                if time.monotonic() > deadline + STEP_TIMEOUT:
                    raise BenchError(srv.evidence(f"only {len(names & ev.keys())} of {BURST} burst workers ran"))
                time.sleep(0.02)
            out["burst_all"] = [(max(ev[n] for n in names) - t0) * 1000]
            out["burst_register"] = [(t_last_reg - t0) * 1000]
            for h in handles:
                c.execute("SELECT pgbed_test_terminate(%s, %s)", h)
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.fast_shutdown()
    return out


def run_postgres(flavour: Flavour, rundir: Path, registry: Registry) -> dict[str, list[float]]:
    srv = _start(flavour, rundir, registry, {"max_worker_processes": str(BURST + 10),
                                            "max_parallel_workers": str(BURST + 10)})  # fmt: skip
    out: dict[str, list[float]] = {"pq_on": [], "pq_off": []}
    q = "SELECT count(*) FROM small"
    try:
        with _connect(srv) as c:
            c.execute("CREATE TABLE small AS SELECT g AS id FROM generate_series(1, 100) g")
            c.execute("ANALYZE small")
            for setting in ("parallel_setup_cost = 0", "parallel_tuple_cost = 0", "max_parallel_workers_per_gather = 1",
                            "min_parallel_table_scan_size = 0"):  # fmt: skip
                c.execute(f"SET {setting}")
            for i in range(ITERATIONS * 2):
                mode = "on" if i % 2 == 0 else "off"
                c.execute(f"SET force_parallel_mode = {mode}")
                c.execute(f"SET max_parallel_workers_per_gather = {1 if mode == 'on' else 0}")
                t0 = time.perf_counter()
                c.execute(q).fetchone()
                out[f"pq_{mode}"].append((time.perf_counter() - t0) * 1000)
            plan = "\n".join(r[0] for r in c.execute("EXPLAIN (ANALYZE, COSTS OFF) " + q).fetchall())
            if "Workers Launched" not in plan:
                c.execute("SET force_parallel_mode = on")
                c.execute("SET max_parallel_workers_per_gather = 1")
                plan = "\n".join(r[0] for r in c.execute("EXPLAIN (ANALYZE, COSTS OFF) " + q).fetchall())
            if "Workers Launched: 1" not in plan:
                raise BenchError(f"PostgreSQL did not launch a parallel worker:\n{plan}")
        errors: list[BaseException] = []

        def client(n: int) -> None:
            try:
                with _connect(srv) as cc:
                    for s in ("parallel_setup_cost = 0", "parallel_tuple_cost = 0",
                              "max_parallel_workers_per_gather = 1", "force_parallel_mode = on"):  # fmt: skip
                        cc.execute(f"SET {s}")
                    for _ in range(n):
                        cc.execute(q).fetchone()
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=client, args=(BURST // BURST_CLIENTS,)) for _ in range(BURST_CLIENTS)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(STEP_TIMEOUT)
        out["burst_all"] = [(time.perf_counter() - t0) * 1000]
        if errors:
            raise BenchError(f"parallel burst failed: {errors[0]!r}")
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.fast_shutdown()
    return out


def main(runs: int = 3, json_out: str | None = None) -> int:
    import psycopg

    root = Path(tempfile.mkdtemp(prefix="pgbed-bench-bgw-"))
    os.chmod(root, 0o755)
    registry = Registry(root)
    flavours, pg_bindir, pg_version = pgbed_and_postgres(root)
    samples: dict[str, dict[str, list[float]]] = {f.name: {} for f in flavours}

    def run_fn(fl: Flavour, rundir: Path, registry: Registry) -> dict[str, list[float]]:
        return (run_pgbed if fl.is_pgbed else run_postgres)(fl, rundir, registry)

    results, failures = interleaved_runs(flavours, runs, root, registry, run_fn,
                                         (BenchError, OSError, subprocess.TimeoutExpired, psycopg.Error))  # fmt: skip
    for fl, res in results:
        for k, v in res.items():
            samples[fl.name].setdefault(k, []).extend(v)
    a, b = samples.get(PGBED_PYC, {}), samples.get(POSTGRES, {})

    def med(xs: list[float]) -> str:
        return fmt_ms(percentile(xs, 50)) if xs else "-"

    def p99(xs: list[float]) -> str:
        return fmt_ms(percentile(xs, 99)) if xs else "-"

    pg_cost = [on - off for on, off in zip(sorted(b.get("pq_on", [])), sorted(b.get("pq_off", [])), strict=False)]
    ratio = "-"
    if a.get("main") and pg_cost and percentile(pg_cost, 50) > 0:
        ratio = f"{percentile(a['main'], 50) / percentile(pg_cost, 50):.2f}x"
    main_med = percentile(a["main"], 50) if a.get("main") else None
    rows = [["figure", "pgbed median", "pgbed p99", "postgres median", "postgres p99", "ratio", "goal / met"],
            [f"register -> STARTED (x{ITERATIONS})", med(a.get("started", [])), p99(a.get("started", [])),
             "-", "-", "-", "-"],
            [f"register -> worker main running (x{ITERATIONS})", med(a.get("main", [])), p99(a.get("main", [])),
             med(pg_cost), p99(pg_cost), ratio,
             "< 3 ms: " + ("-" if main_med is None else "yes" if main_med < 3 else "NO")],
            ["postgres: query with 1 forced parallel worker", "-", "-", med(b.get("pq_on", [])),
             p99(b.get("pq_on", [])), "-", "-"],
            ["postgres: same query without", "-", "-", med(b.get("pq_off", [])), p99(b.get("pq_off", [])), "-", "-"],
            [f"burst: {BURST} registrations -> all running (pgbed) / {BURST} parallel-worker queries from "
             f"{BURST_CLIENTS} clients -> done (postgres)", med(a.get("burst_all", [])), "-",
             med(b.get("burst_all", [])), "-", "not the same operation", "-"],
            [f"  of which issuing the {BURST} registrations", med(a.get("burst_register", [])), "-", "-", "-", "-",
             "-"]]  # fmt: skip
    print()
    print(render_table(rows))
    print(f"\n{runs} run(s) per flavour, interleaved; times in ms. PostgreSQL's per-worker cost is the difference "
          "of the sorted per-query latencies with force_parallel_mode on and off.")  # fmt: skip
    if failures:
        print("\nfailures:")
        for f in failures:
            print(f"  {f}")
    if json_out:
        with open(json_out, "w") as fh:
            json.dump({"group": "bgworker", "runs": runs, "environment": _environment(pg_bindir, pg_version),
                       "samples": samples, "summary": {k: summarize(v).__dict__ if summarize(v) else None
                                                       for k, v in a.items()},
                       "failures": failures}, fh, indent=2, default=str)  # fmt: skip
    if not failures:
        with contextlib.suppress(OSError):
            shutil.rmtree(root)
    else:
        print(f"logs kept in {root}")
    return 1 if failures else 0
