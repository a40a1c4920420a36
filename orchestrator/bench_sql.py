"""`pgbed bench sql`: pgbed's SQL path (commits, point reads, crash recovery, memory) next to
PostgreSQL 15's, in the same run.

What it does, per run and flavour (pgbed with a warm bytecode cache — the startup group's
pgbed+pyc — and a real PostgreSQL 15, interleaved A/B so machine noise hits both): a fresh
data directory with default settings apart from port, listen address, socket directory and
checkpoint_timeout = 1h (PostgreSQL also log_timezone = UTC), then on `CREATE TABLE kv (id int
PRIMARY KEY, v text)`:

1. single-row INSERT commits (autocommit, psycopg, parameters) for a fixed wall time
   (WINDOW_S, capped at MAX_OPS_PER_CLIENT per client), synchronous_commit on and off (SET in
   the session), 1 client and 4 clients (threads, one connection each): total commits/s and
   the per-commit latency seen by the client, median and p99;
2. point SELECT/s (`SELECT v FROM kv WHERE id = %s`, 1 client, same window) with its latency;
   steps 1 and 2 run over TCP on loopback (what a client of a container sees) and again over
   the Unix-domain socket (no TCP stack: the server's own cost), see "transport" below;
3. crash recovery: DROP/CREATE kv and CHECKPOINT, then RECOVERY_ROWS single-row autocommit
   INSERTs from LOAD_CLIENTS connections over the Unix socket with synchronous_commit=off, the
   last one alone with synchronous_commit=on (it flushes every earlier record), so that the
   WAL after the last checkpoint holds RECOVERY_ROWS commit records (pgbed: one WAL record per
   commit; PostgreSQL: a heap and an index record besides each commit record). Then the
   postmaster and all its children are SIGKILLed (a machine crash minus the page cache), the
   server is started again, and the figure is spawn → first successful `SELECT count(*) FROM
   kv` (a fresh connection every POLL_RECOVERY_S), which must return RECOVERY_ROWS. From the
   log, the recovery is split into spawn → `redo starts`, `redo starts` → `redo done` (redo
   alone), and `redo done` → `ready to accept connections` (end-of-recovery checkpoint);
4. peak RSS (VmHWM from /proc/PID/status) of the postmaster after the load, and the largest
   VmHWM of any client backend of the run, each read just before its connection closed;
5. fast shutdown, and a check that no process is left.

After the runs, a profile: py-spy (if installed: `pip install py-spy`; it is not a project
dependency) records one pgbed backend while a client commits single-row INSERTs over the Unix
socket, with synchronous_commit on and then off; the top functions by inclusive and by self
samples are printed (idle samples included, so waiting for the client shows up as such).

Transport: pgbed's backend flushes its output before reading each protocol message, so an
extended-protocol query (psycopg with parameters: Parse/Bind/Describe/Execute/Sync in one
packet) is answered in several small TCP segments; without TCP_NODELAY, Nagle holds each
segment after the first until the client ACKs, and the client delays its ACK (Linux: ~40 ms).
The TCP rows show what a client gets; the Unix-socket rows show the server's own cost. The
recovery load runs over the Unix socket for both servers (over TCP pgbed would take over an
hour for it); the recovery poll uses TCP (simple protocol, one segment per reply).

Every wait has a deadline: each timed window's threads are joined with one, and every other
statement runs under a watchdog that SIGKILLs the server when it expires (which ends the
blocked client call). The server processes are killed in `finally`, and the temp dir is kept
(for the logs) only when something failed.

What it deliberately does not do: tune either server, batch the benchmark's INSERTs, profile
PostgreSQL, or change pgbed when it misbehaves: it reports what it saw (log tail, counts).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.bench import (
    INSTALL_HINT,
    MAX_FAILURES_PER_FLAVOUR,
    PGBED_PYC,
    POSTGRES,
    READY_LINE,
    BenchError,
    Flavour,
    Registry,
    Server,
    Summary,
    _descendants,
    _environment,
    _kill,
    _pgbed_pyc_env,
    _procs_using,
    find_postgres,
    fmt_goal,
    fmt_met,
    fmt_ms,
    goal_met,
    log_line_time,
    render_table,
    summarize,
)
from orchestrator.localnode import free_port

MIN_RUNS = 5
WINDOW_S = 2.0  # each timed window (commits, selects)
WARMUP_S = 0.3  # untimed inserts before the first window of a run
MAX_OPS_PER_CLIENT = 200_000  # the "fixed number" cap of a window; the wall time ends it first
RECOVERY_ROWS = 100_000
LOAD_CLIENTS = 4
LOAD_TIMEOUT = 180.0
RECOVERY_TIMEOUT = 120.0
POLL_RECOVERY_S = 0.01  # a fork per attempt on both servers: not faster, it would slow recovery down
STEP_TIMEOUT = 30.0  # any single statement or connection outside a timed window
PROFILE_S = 3.0
PROFILE_RATE = 250
LOG_TAIL_LINES = 30
CHECKPOINT_TIMEOUT = "'1h'"

REDO_START_LINE = "redo starts at"
REDO_DONE_LINE = "redo done at"

TRANSPORTS: list[tuple[str, str]] = [("tcp", "TCP"), ("unix", "unix")]
COMMIT_CASES: list[tuple[str, int]] = [("on", 1), ("off", 1), ("on", 4), ("off", 4)]

TIME, RATE, SIZE = "time", "rate", "size"  # lower is better / higher is better / lower is better
UNITS = {TIME: "ms", RATE: "/s", SIZE: "MB"}


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    kind: str


def commit_key(transport: str, sync: str, clients: int) -> str:
    return f"{transport}_insert_{sync}_c{clients}"


def select_key(transport: str) -> str:
    return f"{transport}_select_c1"


def _figures() -> list[Figure]:
    out: list[Figure] = []
    for t, tl in TRANSPORTS:
        for sync, n in COMMIT_CASES:
            k, what = commit_key(t, sync, n), f"INSERT sync={sync} {n}c [{tl}]"
            out += [
                Figure(f"{k}_rate", f"{what} commits/s", RATE),
                Figure(f"{k}_lat_med", f"{what} latency median", TIME),
                Figure(f"{k}_lat_p99", f"{what} latency p99", TIME),
            ]
        k, what = select_key(t), f"point SELECT 1c [{tl}]"
        out += [
            Figure(f"{k}_rate", f"{what} /s", RATE),
            Figure(f"{k}_lat_med", f"{what} latency median", TIME),
            Figure(f"{k}_lat_p99", f"{what} latency p99", TIME),
        ]
    out += [
        Figure("recovery_first_query", f"crash recovery {RECOVERY_ROWS // 1000}k: restart -> count(*)", TIME),
        Figure("recovery_to_redo_start", "  restart -> log 'redo starts'", TIME),
        Figure("recovery_redo", "  redo (log 'redo starts' -> 'redo done')", TIME),
        Figure("recovery_redo_done_to_ready", "  log 'redo done' -> 'ready to accept'", TIME),
        Figure("load", f"load {RECOVERY_ROWS // 1000}k rows ({LOAD_CLIENTS} conns, unix, sync off)", TIME),
        Figure("rss_postmaster", "peak RSS postmaster (VmHWM)", SIZE),
        Figure("rss_backend", "peak RSS largest backend (VmHWM)", SIZE),
    ]
    return out


FIGURES: list[Figure] = _figures()
FIGURE_BY_KEY = {f.key: f for f in FIGURES}

# The goals: pgbed/PostgreSQL at most this.
GOALS: dict[str, float] = {
    **{f"{commit_key(t, sync, 1)}_lat_med": 3.0 for t, _ in TRANSPORTS for sync in ("on", "off")},
    "recovery_first_query": 1.5,
}
# shared/reference/postgres-figures.md (PostgreSQL 15.18, 2 cores, 1 client): median / p99 in ms.
REFERENCE_MS: dict[str, float] = {
    **{f"{commit_key(t, 'on', 1)}_lat_med": 0.20 for t, _ in TRANSPORTS},
    **{f"{commit_key(t, 'on', 1)}_lat_p99": 0.34 for t, _ in TRANSPORTS},
    **{f"{commit_key(t, 'off', 1)}_lat_med": 0.074 for t, _ in TRANSPORTS},
    **{f"{commit_key(t, 'off', 1)}_lat_p99": 0.12 for t, _ in TRANSPORTS},
}
LABELS = {PGBED_PYC: "pgbed+pyc", POSTGRES: "postgres"}


# -- pure parts: statistics, ratios, table, JSON, profiles ------------------------------------------


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics (numpy's
    default). Raises ValueError on no data."""
    if not xs:
        raise ValueError("percentile of no data")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def window_figures(key: str, ops: int, elapsed_s: float, latencies_s: list[float]) -> dict[str, float]:
    """A timed window's figures: ops/s, latency median and p99 in ms. Empty when nothing ran."""
    if ops <= 0 or elapsed_s <= 0 or not latencies_s:
        return {}
    return {
        f"{key}_rate": ops / elapsed_s,
        f"{key}_lat_med": statistics.median(latencies_s) * 1000,
        f"{key}_lat_p99": percentile(latencies_s, 99) * 1000,
    }


def worse_by(kind: str, pgbed: Summary | None, postgres: Summary | None) -> float | None:
    """How many times worse pgbed's median is: pgbed/PostgreSQL for times and sizes, PostgreSQL/
    pgbed for rates (so > 1 always means pgbed is worse). None when either is missing or 0."""
    if pgbed is None or postgres is None or pgbed.median <= 0 or postgres.median <= 0:
        return None
    return postgres.median / pgbed.median if kind == RATE else pgbed.median / postgres.median


def fmt_value(kind: str, v: float) -> str:
    if kind == RATE:
        return f"{v:.0f}" if v >= 100 else f"{v:.1f}"
    if kind == SIZE:
        return f"{v:.1f}"
    return fmt_ms(v)


def fmt_cell(kind: str, s: Summary | None) -> str:
    if s is None:
        return "-"
    return f"{fmt_value(kind, s.median)} ({fmt_value(kind, s.min)}-{fmt_value(kind, s.max)})"


def fmt_worse(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 1000 else f"{r:.0f}x"


def table_rows(samples: dict[str, dict[str, list[float]]], mine: str = PGBED_PYC) -> list[list[str]]:
    """The result table from {flavour: {figure key: [value per run]}}; the first row is the header."""
    a_all, b_all = samples.get(mine, {}), samples.get(POSTGRES, {})
    rows = [
        [
            "figure",
            "unit",
            f"{LABELS.get(mine, mine)} median (min-max)",
            "postgres median (min-max)",
            "pgbed worse by",
            "goal",
            "met",
            "PG15 ref",
        ]
    ]
    for f in FIGURES:
        a, b = summarize(a_all.get(f.key, [])), summarize(b_all.get(f.key, []))
        if a is None and b is None:
            continue
        r, goal = worse_by(f.kind, a, b), GOALS.get(f.key)
        ref = REFERENCE_MS.get(f.key)
        rows.append(
            [
                f.label,
                UNITS[f.kind],
                fmt_cell(f.kind, a),
                fmt_cell(f.kind, b),
                fmt_worse(r),
                fmt_goal(goal),
                fmt_met(goal_met(r, goal)),
                "-" if ref is None else fmt_ms(ref),
            ]
        )
    return rows


def figure_json(kind: str, values: list[float]) -> dict[str, Any]:
    s = summarize(values)
    return {
        "unit": UNITS[kind],
        "samples": [round(x, 4) for x in values],
        "n": s.n if s else 0,
        "median": round(s.median, 4) if s else None,
        "min": round(s.min, 4) if s else None,
        "max": round(s.max, 4) if s else None,
    }


def build_report(
    samples: dict[str, dict[str, list[float]]],
    *,
    runs: int,
    environment: dict[str, Any],
    details: list[dict[str, Any]],
    profile: dict[str, Any],
    failures: list[dict[str, Any]],
    notes: list[str],
    mine: str = PGBED_PYC,
) -> dict[str, Any]:
    """The JSON document: every per-run value and its summary per flavour, ratios and goals."""
    flavours = {
        name: {
            "label": LABELS.get(name, name),
            "figures": {
                k: figure_json(FIGURE_BY_KEY[k].kind if k in FIGURE_BY_KEY else TIME, v) for k, v in figs.items()
            },
        }
        for name, figs in samples.items()
    }
    ratios: dict[str, Any] = {}
    for f in FIGURES:
        r = worse_by(
            f.kind, summarize(samples.get(mine, {}).get(f.key, [])), summarize(samples.get(POSTGRES, {}).get(f.key, []))
        )
        goal = GOALS.get(f.key)
        ratios[f.key] = {"pgbed_worse_by": None if r is None else round(r, 3), "goal": goal, "met": goal_met(r, goal)}
    return {
        "bench": "sql",
        "schema": 1,
        "runs": runs,
        "settings": {
            "window_s": WINDOW_S,
            "max_ops_per_client": MAX_OPS_PER_CLIENT,
            "recovery_rows": RECOVERY_ROWS,
            "load_clients": LOAD_CLIENTS,
            "transports": [t for t, _ in TRANSPORTS],
            "commit_cases": COMMIT_CASES,
            "checkpoint_timeout": CHECKPOINT_TIMEOUT.strip("'"),
        },
        "ratio_meaning": "pgbed_worse_by: pgbed/postgres for times and sizes, postgres/pgbed for rates",
        "environment": environment,
        "figures": {f.key: {"label": f.label, "unit": UNITS[f.kind], "kind": f.kind} for f in FIGURES},
        "reference_ms": REFERENCE_MS,
        "goals": GOALS,
        "flavours": flavours,
        "ratios": ratios,
        "runs_detail": details,
        "profile": profile,
        "failures": failures,
        "notes": notes,
    }


def _frame_name(frame: str) -> str:
    """`Session.execute (node/backend.py:604)` → `Session.execute (node/backend.py)`."""
    if frame.endswith(")") and " (" in frame:
        func, _, loc = frame[:-1].rpartition(" (")
        file = loc.rsplit(":", 1)[0] if ":" in loc and loc.rsplit(":", 1)[1].isdigit() else loc
        return f"{func} ({file})"
    return frame


def parse_collapsed(text: str) -> tuple[int, dict[str, int], dict[str, int]]:
    """py-spy's raw (collapsed-stack) output → (total samples, {function: inclusive samples},
    {function: self samples}); functions are named without line numbers, and a function counts
    once per stack however often it recurses."""
    total, incl, self_ = 0, {}, {}  # type: ignore[var-annotated]
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
        self_[frames[-1]] = self_.get(frames[-1], 0) + n
    return total, incl, self_


def top_functions(
    total: int, counts: dict[str, int], n: int = 15, *, skip_above: float | None = None
) -> list[dict[str, Any]]:
    """The n largest counts as {function, samples, share}; `skip_above` drops the frames above the
    interesting part (share of all samples above it: the interpreter's and the session loop's)."""
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    out = []
    for name, c in rows:
        share = c / total if total else 0.0
        if skip_above is not None and share > skip_above:
            continue
        out.append({"function": name, "samples": c, "share": round(share, 4)})
        if len(out) == n:
            break
    return out


# -- driving clients -------------------------------------------------------------------------------


def unix_connstr(srv: Server) -> str:
    return f"host={srv.sockdir} port={srv.port} user=postgres dbname=postgres connect_timeout=5"


def backend_hwm_kb(pid: int) -> int | None:
    """VmHWM of a process in kB, None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Window:
    ops: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    backend_hwm_kb: list[int] = field(default_factory=list)


def drive(
    connstr: str,
    clients: int,
    seconds: float,
    setup: list[str],
    op: Callable[[Any, int], bool | None],
    *,
    max_ops: int = MAX_OPS_PER_CLIENT,
    timeout: float = STEP_TIMEOUT,
) -> Window:
    """`clients` threads, one connection each (autocommit), run `setup`, wait for each other,
    then call op(connection, client number) until `seconds` have passed, `max_ops` calls were
    made or op returns False (that call is not counted); each call is timed. Raises BenchError
    when a client fails or the window does not end by its deadline."""
    import psycopg

    lock = threading.Lock()
    res = Window()
    errors: list[str] = []
    start = [0.0]
    barrier = threading.Barrier(clients + 1, action=lambda: start.__setitem__(0, time.perf_counter()))
    ends: list[float] = []

    def client(k: int) -> None:
        lat: list[float] = []
        conn = None
        try:
            conn = psycopg.connect(connstr, autocommit=True)
            for s in setup:
                conn.execute(s)
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            pid = int(row[0]) if row else 0
            barrier.wait(timeout)
            deadline = start[0] + seconds
            i = 0
            while i < max_ops:
                t0 = time.perf_counter()
                if t0 >= deadline:
                    break
                if op(conn, k) is False:
                    break
                lat.append(time.perf_counter() - t0)
                i += 1
            end = time.perf_counter()
            hwm = backend_hwm_kb(pid) if pid else None
            with lock:
                res.ops += i
                res.latencies_s.extend(lat)
                ends.append(end)
                if hwm is not None:
                    res.backend_hwm_kb.append(hwm)
        except threading.BrokenBarrierError:
            with lock:
                errors.append(f"client {k}: another client failed before the start")
        except Exception as e:  # reported as the window's failure
            with lock:
                errors.append(f"client {k}: {type(e).__name__}: {str(e).strip()}")
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.abort()
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    threads = [
        threading.Thread(target=client, args=(k,), daemon=True, name=f"bench-client-{k}") for k in range(clients)
    ]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout)
    deadline = time.monotonic() + seconds + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise BenchError(
            f"{clients} client(s) still running {seconds + timeout:g} s after the window "
            f"started (a statement hangs); errors so far: {errors or 'none'}"
        )
    if errors:
        raise BenchError("; ".join(errors))
    res.elapsed_s = (max(ends) - start[0]) if ends else 0.0
    return res


@contextlib.contextmanager
def watchdog(srv: Server, seconds: float, what: str) -> Iterator[None]:
    """Run the block with a deadline: when it expires the server's processes are SIGKILLed (which
    ends a blocked client call) and BenchError is raised with the log tail."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        pids = [*_descendants(srv.proc.pid), srv.proc.pid] if srv.proc and srv.proc.poll() is None else []
        _kill(pids + _procs_using(srv.rundir))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception as e:
        if fired.is_set():
            raise BenchError(
                srv.evidence(f"{srv.flavour.label}: {what} did not finish within {seconds:g} s (server killed)")
            ) from None
        if isinstance(e, BenchError):
            raise
        raise BenchError(
            srv.evidence(f"{srv.flavour.label}: {what} failed: {type(e).__name__}: {str(e).strip()}")
        ) from None
    finally:
        timer.cancel()
    if fired.is_set():
        raise BenchError(
            srv.evidence(f"{srv.flavour.label}: {what} did not finish within {seconds:g} s (server killed)")
        )


# -- one run ---------------------------------------------------------------------------------------


class SqlServer(Server):
    def evidence(self, what: str) -> str:
        lines = [ln for ln in self.log_text().splitlines() if "dead-end client backend" not in ln]
        tail = "\n".join(lines[-LOG_TAIL_LINES:])
        return (
            f"{what}\n--- last lines of {self.logfile} (without dead-end connection refusals) ---\n"
            f"{tail}\n--- end of log tail ---"
        )

    def configure(self) -> None:
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write(f"checkpoint_timeout = {CHECKPOINT_TIMEOUT}\n")

    def kill_all(self) -> tuple[list[int], float, dict[int, str]]:
        """SIGKILL the postmaster and every descendant at once (pgbed's leave its process group),
        then wait until each is gone or a zombie (its files, locks and shared memory released:
        a process that is still exiting no longer shows its open files in /proc). Returns (the
        pids, ms until all were dead, {pid: state} of those seen alive after the kill)."""
        assert self.proc is not None
        victims = [self.proc.pid, *_descendants(self.proc.pid)]
        t0 = time.perf_counter()
        _kill(victims)
        seen: dict[int, str] = {}
        try:
            self.proc.wait(SERVER_WAIT)
        except subprocess.TimeoutExpired:
            raise BenchError(self.evidence(f"{self.flavour.label}: postmaster survived SIGKILL")) from None
        deadline = time.monotonic() + SERVER_WAIT
        while time.monotonic() < deadline:
            alive = {pid: st for pid in victims if (st := _proc_state(pid)) not in (None, "Z", "X")}
            for pid, st in alive.items():
                seen.setdefault(pid, st)
            left = _procs_using(self.rundir)
            if not alive and not left:
                return victims, (time.perf_counter() - t0) * 1000, seen
            _kill(left)
            time.sleep(0.005)
        raise BenchError(
            self.evidence(
                f"{self.flavour.label}: processes still running {SERVER_WAIT:g} s after "
                f"SIGKILL: {sorted(seen)}, using the data dir: {_procs_using(self.rundir)}"
            )
        )

    def start_with_port_retry(self) -> None:
        """Spawn and wait for SELECT 1; when another process took the port in the meantime (the
        machine is shared: free_port() only says it was free), once more on a new port."""
        for attempt in (1, 2):
            t0, _ = self.spawn()
            try:
                self.poll_select1(t0)
                return
            except BenchError:
                if attempt == 2 or "Address already in use" not in self.log_text():
                    raise
            self.kill_all()
            self.port = free_port()
            with open(self.datadir / "postgresql.conf", "a") as f:
                f.write(f"port = {self.port}  # the first one was taken by another process\n")
            _say(f"  {self.flavour.label}: port taken by another process; retrying on port {self.port}")

    def poll_count(self, t0: float) -> tuple[float, int, int]:
        """ms from t0 until a fresh connection's `SELECT count(*) FROM kv` works; (ms, count, failed)."""
        import psycopg

        assert self.proc is not None
        deadline = t0 + RECOVERY_TIMEOUT
        failed, last_err = 0, "no attempt made"
        while True:
            if self.proc.poll() is not None:
                raise BenchError(
                    self.evidence(
                        f"{self.flavour.label}: server exited with code "
                        f"{self.proc.returncode} during recovery (last error: {last_err})"
                    )
                )
            try:
                with psycopg.connect(self.connstr(), autocommit=True) as conn:
                    row = conn.execute("SELECT count(*) FROM kv").fetchone()
                    assert row is not None
                    return (time.perf_counter() - t0) * 1000, int(row[0]), failed
            except psycopg.Error as e:
                failed += 1
                last_err = f"{type(e).__name__}: {str(e).strip()}"
            if time.perf_counter() > deadline:
                raise BenchError(
                    self.evidence(
                        f"{self.flavour.label}: no successful count(*) within "
                        f"{RECOVERY_TIMEOUT:g} s of the restart; last error: {last_err}"
                    )
                )
            time.sleep(POLL_RECOVERY_S)


SERVER_WAIT = 30.0


def _proc_state(pid: int) -> str | None:
    """The one-letter state of a process from /proc/PID/stat, None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_sql_cycle(
    flavour: Flavour, rundir: Path, registry: Registry, tag: str
) -> tuple[dict[str, float], dict[str, Any]]:
    """One run for one flavour: ({figure: value}, details). Raises BenchError with evidence."""
    import psycopg

    out: dict[str, float] = {}
    detail: dict[str, Any] = {}
    srv = SqlServer(flavour, rundir, registry)
    srv.prepare()
    srv.initdb()
    srv.configure()
    srv.start_with_port_retry()
    ids = itertools.count(1_000_000)
    hwm: list[int] = []

    def window(what: str, *args: Any, **kw: Any) -> Window:
        try:
            return drive(*args, **kw)
        except BenchError as e:
            raise BenchError(srv.evidence(f"{flavour.label}: {what}: {e}")) from None

    done: list[int] = []  # ids inserted so far (list.append is atomic): the point SELECTs pick from them

    def insert(conn: Any, _k: int) -> None:
        i = next(ids)
        conn.execute("INSERT INTO kv VALUES (%s, %s)", (i, f"v{i}"))
        done.append(i)

    picks = itertools.count(1)

    def select(conn: Any, _k: int) -> None:
        key = done[(next(picks) * 7919) % len(done)]
        if conn.execute("SELECT v FROM kv WHERE id = %s", (key,)).fetchone() is None:
            raise BenchError(f"point SELECT found no row with id {key}, which was inserted and committed")

    main: Any = None
    try:
        with watchdog(srv, STEP_TIMEOUT, "CREATE TABLE kv"):
            main = psycopg.connect(srv.connstr(), autocommit=True)
            main.execute("CREATE TABLE kv (id int PRIMARY KEY, v text)")
        with watchdog(srv, STEP_TIMEOUT, "warm-up inserts"):
            w = window("warm-up inserts", unix_connstr(srv), 1, WARMUP_S, [], insert)
        hwm += w.backend_hwm_kb
        for t, tl in TRANSPORTS:
            cs = srv.connstr() if t == "tcp" else unix_connstr(srv)
            for sync, n in COMMIT_CASES:
                k = commit_key(t, sync, n)
                w = window(
                    f"INSERT sync={sync} {n}c [{tl}]", cs, n, WINDOW_S, [f"SET synchronous_commit = {sync}"], insert
                )
                hwm += w.backend_hwm_kb
                figs = window_figures(k, w.ops, w.elapsed_s, w.latencies_s)
                out.update(figs)
                _say(
                    f"  {tag}: INSERT sync={sync} {n} client(s) [{tl}]: {w.ops} commits in {w.elapsed_s:.2f} s = "
                    f"{figs.get(k + '_rate', 0):.0f}/s, latency median {figs.get(k + '_lat_med', 0):.3f} ms "
                    f"p99 {figs.get(k + '_lat_p99', 0):.3f} ms"
                )
            k = select_key(t)
            w = window(f"point SELECT [{tl}]", cs, 1, WINDOW_S, [], select)
            hwm += w.backend_hwm_kb
            figs = window_figures(k, w.ops, w.elapsed_s, w.latencies_s)
            out.update(figs)
            _say(
                f"  {tag}: point SELECT 1 client [{tl}]: {figs.get(k + '_rate', 0):.0f}/s, latency median "
                f"{figs.get(k + '_lat_med', 0):.3f} ms p99 {figs.get(k + '_lat_p99', 0):.3f} ms"
            )

        # -- crash recovery: RECOVERY_ROWS commit records after the last checkpoint ----------------
        with watchdog(srv, STEP_TIMEOUT * 2, "DROP/CREATE TABLE kv + CHECKPOINT"):
            main.execute("DROP TABLE kv")
            main.execute("CREATE TABLE kv (id int PRIMARY KEY, v text)")
            main.execute("CHECKPOINT")
        rows = itertools.count(1)
        last = RECOVERY_ROWS

        def load_one(conn: Any, _k: int) -> bool:
            i = next(rows)
            if i >= last:  # the last row is inserted alone, with synchronous_commit=on
                return False
            conn.execute("INSERT INTO kv VALUES (%s, %s)", (i, f"v{i}"))
            return True

        t_load = time.perf_counter()
        w = window(
            f"load of {RECOVERY_ROWS} rows",
            unix_connstr(srv),
            LOAD_CLIENTS,
            LOAD_TIMEOUT,
            ["SET synchronous_commit = off"],
            load_one,
            max_ops=RECOVERY_ROWS,
            timeout=STEP_TIMEOUT,
        )
        hwm += w.backend_hwm_kb
        with watchdog(srv, STEP_TIMEOUT, "the last load row (synchronous_commit=on) and count(*)"):
            uconn = psycopg.connect(unix_connstr(srv), autocommit=True)
            try:
                uconn.execute("SET synchronous_commit = on")
                uconn.execute("INSERT INTO kv VALUES (%s, %s)", (last, f"v{last}"))
                row = uconn.execute("SELECT count(*) FROM kv").fetchone()
                pid_row = uconn.execute("SELECT pg_backend_pid()").fetchone()
                if pid_row and (h := backend_hwm_kb(int(pid_row[0]))) is not None:
                    hwm.append(h)
            finally:
                uconn.close()
        out["load"] = (time.perf_counter() - t_load) * 1000
        before = int(row[0]) if row else -1
        detail["count_before_crash"] = before
        if before != RECOVERY_ROWS:
            raise BenchError(
                srv.evidence(f"{flavour.label}: count(*) after the load is {before}, expected {RECOVERY_ROWS}")
            )
        assert srv.proc is not None
        pm_hwm = backend_hwm_kb(srv.proc.pid)
        if pm_hwm is not None:
            out["rss_postmaster"] = pm_hwm / 1024
        if hwm:
            out["rss_backend"] = max(hwm) / 1024
        _say(
            f"  {tag}: loaded {RECOVERY_ROWS} rows in {out['load'] / 1000:.1f} s "
            f"({RECOVERY_ROWS / (out['load'] / 1000):.0f}/s); peak RSS postmaster "
            f"{out.get('rss_postmaster', 0):.1f} MB, largest backend {out.get('rss_backend', 0):.1f} MB"
        )
        with contextlib.suppress(Exception):
            main.close()
        main = None

        victims, kill_ms, seen = srv.kill_all()
        detail.update(
            killed=victims, kill_to_all_dead_ms=round(kill_ms, 1), alive_after_kill={str(k): v for k, v in seen.items()}
        )
        offset = len(srv.log_text())
        t0, t_wall = srv.spawn()
        ms, count, failed = srv.poll_count(t0)
        out["recovery_first_query"] = ms
        detail.update(count_after_recovery=count, failed_polls=failed)
        if count != RECOVERY_ROWS:
            raise BenchError(
                srv.evidence(f"{flavour.label}: count(*) after crash recovery is {count}, expected {RECOVERY_ROWS}")
            )
        log = srv.log_text()[offset:]
        with contextlib.suppress(BenchError):
            log = srv.wait_log(READY_LINE, offset, timeout=5.0)
        t_start, t_done = log_line_time(log, REDO_START_LINE), log_line_time(log, REDO_DONE_LINE)
        t_ready = log_line_time(log, READY_LINE)
        if t_start is not None:
            out["recovery_to_redo_start"] = (t_start - t_wall) * 1000
        if t_start is not None and t_done is not None:
            out["recovery_redo"] = (t_done - t_start) * 1000
        if t_done is not None and t_ready is not None:
            out["recovery_redo_done_to_ready"] = (t_ready - t_done) * 1000
        detail["recovery_log"] = [ln for ln in log.splitlines() if "dead-end client backend" not in ln][:20]
        _say(
            f"  {tag}: crash recovery: restart -> count(*) = {count} in {ms:.0f} ms "
            f"(redo {out.get('recovery_redo', float('nan')):.0f} ms by the log, {failed} refused attempts)"
        )

        with watchdog(srv, SERVER_WAIT, "fast shutdown"):
            srv.fast_shutdown()
        time.sleep(0.05)
        left = _procs_using(rundir)
        if left:
            _kill(left)
            raise BenchError(
                srv.evidence(f"{flavour.label}: processes still running after fast shutdown (killed): {left}")
            )
    finally:
        if main is not None:
            with contextlib.suppress(Exception):
                main.close()
    return out, detail


# -- profile ---------------------------------------------------------------------------------------


def find_py_spy() -> str | None:
    for cand in (Path(sys.executable).parent / "py-spy", shutil.which("py-spy")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def profile_pgbed(flavour: Flavour, rundir: Path, registry: Registry) -> dict[str, Any]:
    """py-spy on one pgbed backend while a client commits single-row INSERTs over the Unix socket."""
    import psycopg

    spy = find_py_spy()
    if spy is None:
        return {"skipped": "py-spy not installed (pip install py-spy; it is not a project dependency)"}
    srv = SqlServer(flavour, rundir, registry)
    srv.prepare()
    srv.initdb()
    srv.configure()
    srv.start_with_port_retry()
    result: dict[str, Any] = {
        "tool": f"py-spy record --idle --rate {PROFILE_RATE} --format raw",
        "transport": "unix",
        "seconds": PROFILE_S,
        "cases": {},
    }
    with watchdog(srv, STEP_TIMEOUT, "profile setup"):
        conn = psycopg.connect(unix_connstr(srv), autocommit=True)
        conn.execute("CREATE TABLE kv (id int PRIMARY KEY, v text)")
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pid = int(row[0])
    ids = itertools.count(1)
    try:
        for sync in ("on", "off"):
            out = rundir / f"py-spy-{sync}.txt"
            with watchdog(srv, PROFILE_S + STEP_TIMEOUT, f"profile sync={sync}"):
                conn.execute(f"SET synchronous_commit = {sync}")
                for _ in range(200):  # warm: plan cache, prepared statement
                    i = next(ids)
                    conn.execute("INSERT INTO kv VALUES (%s, %s)", (i, f"v{i}"))
                p = subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        f"{PROFILE_S:g}",
                        "--rate",
                        str(PROFILE_RATE),
                        "--idle",
                        "--format",
                        "raw",
                        "-o",
                        str(out),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                n, lat = 0, []
                deadline = time.monotonic() + PROFILE_S + STEP_TIMEOUT
                while p.poll() is None and time.monotonic() < deadline:
                    i = next(ids)
                    t = time.perf_counter()
                    conn.execute("INSERT INTO kv VALUES (%s, %s)", (i, f"v{i}"))
                    lat.append(time.perf_counter() - t)
                    n += 1
                try:
                    spy_out, _ = p.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    spy_out, _ = p.communicate()
            if p.returncode != 0 or not out.exists():
                result["cases"][sync] = {"error": f"py-spy exited with {p.returncode}: {spy_out.strip()[-800:]}"}
                continue
            total, incl, self_ = parse_collapsed(out.read_text())
            result["cases"][sync] = {
                "commits": n,
                "commit_latency_median_ms": round(statistics.median(lat) * 1000, 4) if lat else None,
                "samples": total,
                "top_inclusive": top_functions(total, incl, 15, skip_above=0.97),
                "top_self": top_functions(total, self_, 15),
            }
        with watchdog(srv, SERVER_WAIT, "fast shutdown after the profile"):
            conn.close()
            srv.fast_shutdown()
    finally:
        with contextlib.suppress(Exception):
            conn.close()
    return result


def print_profile(profile: dict[str, Any]) -> None:
    print("profile of one pgbed backend (py-spy, idle samples included):")
    if "skipped" in profile:
        print(f"  skipped: {profile['skipped']}")
        return
    if "error" in profile:
        print(f"  failed: {profile['error']}")
        return
    for sync, case in profile.get("cases", {}).items():
        if "error" in case:
            print(f"  synchronous_commit={sync}: {case['error']}")
            continue
        print(
            f"  synchronous_commit={sync}, Unix socket: {case['commits']} commits in {profile['seconds']:g} s, "
            f"median {case['commit_latency_median_ms']} ms under the profiler, {case['samples']} samples"
        )
        print("    top by inclusive share (frames above the session loop left out):")
        for d in case["top_inclusive"]:
            print(f"      {d['share']:6.1%}  {d['function']}")
        print("    top by self share:")
        for d in case["top_self"][:10]:
            print(f"      {d['share']:6.1%}  {d['function']}")


# -- main ------------------------------------------------------------------------------------------


def main(runs: int = 5, json_out: str | None = None) -> int:
    if runs < MIN_RUNS:
        print(f"pgbed bench: --runs must be at least {MIN_RUNS} (got {runs})", file=sys.stderr)
        return 1
    try:
        import psycopg  # noqa: F401 - fail early and clearly
    except ImportError:
        print("pgbed bench: psycopg is needed (pip install 'psycopg[binary]')", file=sys.stderr)
        return 1

    notes: list[str] = []
    failures: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix="pgbed-bench-sql-"))
    os.chmod(root, 0o755)  # the postgres OS user must traverse it
    registry = Registry(root)
    keep_root = False
    flavours: list[Flavour] = [Flavour(PGBED_PYC, _pgbed_pyc_env(root))]
    samples: dict[str, dict[str, list[float]]] = {}
    profile: dict[str, Any] = {}

    pg_bindir, pg_version = find_postgres()
    if pg_bindir is None:
        notes.append(
            f"PostgreSQL 15 not found ({pg_version}): only pgbed is measured, no ratios. "
            f"Install it with `{INSTALL_HINT}`."
        )
        print(notes[-1])
    else:
        if " 15." not in pg_version:
            notes.append(f"warning: {pg_version} is not PostgreSQL 15; ratios compare with it anyway")
            print(notes[-1])
        uid = gid = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
                uid, gid = pw.pw_uid, pw.pw_gid
            except KeyError:
                pg_bindir = None
                notes.append(
                    "running as root and there is no `postgres` OS user to run PostgreSQL as; only "
                    f"pgbed is measured. `{INSTALL_HINT}` creates it."
                )
                print(notes[-1])
        if pg_bindir is not None:
            pg = Flavour(POSTGRES, dict(os.environ), bindir=pg_bindir, uid=uid, gid=gid)
            if uid is not None:
                pg.env["HOME"] = pwd.getpwuid(uid).pw_dir
                notes.append("PostgreSQL runs as OS user postgres (the bench runs as root)")
            flavours.append(pg)
    env_info = _environment(pg_bindir, pg_version)
    notes.append(
        "pgbed runs with a warm bytecode cache (PYTHONDONTWRITEBYTECODE removed from its environment, "
        "PYTHONPYCACHEPREFIX in the temp dir, compileall first): the startup group's pgbed+pyc flavour."
    )
    notes.append(
        f"Timed windows are {WINDOW_S:g} s each (the issue suggests 3 s; shortened because every "
        "figure runs over both TCP and the Unix socket). psycopg prepares a statement after 5 "
        "executions (prepare_threshold), for both servers alike."
    )
    notes.append(
        "Both servers and the Python client share this machine's CPUs; with 4 clients the client "
        "threads (one GIL) can be the limit for PostgreSQL."
    )
    notes.append(
        "pgbed+pyc: pgbed's heap is SQLite in WAL mode; SIGKILL loses nothing that was written to it, "
        "so pgbed's redo finds its commits already applied and resumes reading at the heap's applied "
        "record (node/startup.py); PostgreSQL replays them into its buffers. Redo of lost heap writes "
        "is tested in tests/node/test_recovery.py, not measured here."
    )

    print(f"pgbed bench sql: {runs} runs, {', '.join(LABELS[f.name] for f in flavours)}; temp dir {root}")
    print(
        f"environment: Python {env_info['python']}, {env_info['nproc']} CPUs, load {env_info['loadavg_at_start'][0]}"
        + (f", {pg_version} in {pg_bindir}" if pg_bindir else "")
    )
    t_bench = time.monotonic()
    try:
        node_dir = Path(__import__("node").__file__).parent  # type: ignore[arg-type]
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(node_dir)],
            env=flavours[0].env,
            cwd=str(root),
            capture_output=True,
            timeout=120,
            check=False,
        )
        for f in flavours:
            samples[f.name] = {}
            d = root / f.name
            d.mkdir()
            if f.uid is not None:
                os.chown(d, f.uid, f.gid or -1)
        for i in range(1, runs + 1):
            for f in flavours:
                tag = f"run {i}/{runs} {LABELS[f.name]}"
                if f.failures >= MAX_FAILURES_PER_FLAVOUR:
                    _say(f"{tag}: skipped after {f.failures} failures")
                    continue
                rundir = root / f.name / f"run{i}"
                _say(f"{tag}: starting ({time.monotonic() - t_bench:.0f} s into the bench)")
                try:
                    res, detail = run_sql_cycle(f, rundir, registry, tag)
                except BenchError as e:
                    keep_root = True
                    f.failures += 1
                    failures.append({"flavour": f.name, "run": i, "error": str(e)})
                    print(f"{tag}: FAILED\n{e}", file=sys.stderr, flush=True)
                    continue
                finally:
                    registry.sweep()
                shutil.rmtree(rundir, ignore_errors=True)
                details.append(
                    {"flavour": f.name, "run": i, "figures": {k: round(v, 4) for k, v in res.items()}, **detail}
                )
                for k, v in res.items():
                    samples[f.name].setdefault(k, []).append(v)
        _say(f"profile: py-spy on a pgbed backend ({time.monotonic() - t_bench:.0f} s into the bench)")
        try:
            profile = profile_pgbed(flavours[0], root / PGBED_PYC / "profile", registry)
        except BenchError as e:
            keep_root = True
            profile = {"error": str(e)}
        finally:
            registry.sweep()
    except KeyboardInterrupt:
        print("pgbed bench: interrupted", file=sys.stderr)
        return 1
    finally:
        killed = registry.sweep()
        if killed:
            print(f"cleanup: killed leftover processes {killed}", file=sys.stderr)
        if keep_root:
            print(f"temp dir kept for its logs: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    env_info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    env_info["bench_seconds"] = round(time.monotonic() - t_bench, 1)
    report = build_report(
        samples, runs=runs, environment=env_info, details=details, profile=profile, failures=failures, notes=notes
    )
    print()
    print(render_table(table_rows(samples)))
    print(
        "(pgbed worse by: pgbed/postgres for times and sizes, postgres/pgbed for rates; PG15 ref: "
        "shared/reference/postgres-figures.md, 1 client)"
    )
    print()
    print_profile(profile)
    for n in notes:
        print(f"note: {n}")
    print(f"bench time {env_info['bench_seconds']:.0f} s")
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"JSON written to {json_out}")
    if failures:
        print(f"pgbed bench: {len(failures)} step(s) failed; see above", file=sys.stderr)
        return 1
    return 0
