"""`pgbed bench startup`: pgbed's start, crash-restart and shutdown times next to PostgreSQL 15's.

What it does: runs the same steps against pgbed and against a real PostgreSQL 15 (Debian's
postgresql-15: `pg_ctl` on PATH or /usr/lib/postgresql/15/bin) in one run, interleaved A/B per
run (pgbed run i, then PostgreSQL run i) so that machine noise hits both, and prints a table
(median, min and max in milliseconds, the ratio pgbed/PostgreSQL, the goal and the reference
figure from the PostgreSQL 15 reference document) and optionally writes all raw samples as JSON.
Per run and flavour:

1. initdb wall time (pgbed: `python -m node initdb --wal-segsize 16`; PostgreSQL: `initdb -A
   trust -U postgres`);
2. spawn of the server process (pgbed: `python -m node start -D dir` in the foreground;
   PostgreSQL: the `postgres` binary itself, not pg_ctl, which polls every 100 ms) → first
   successful connect + `SELECT 1`, polled every ~2 ms (refused / 57P03 are "not yet");
3. spawn → the log line `database system is ready to accept connections` (its %m timestamp,
   millisecond resolution, against the wall clock at spawn);
4. SIGKILL of an idle client backend → a new connection + `SELECT 1` works. A connection only
   counts once the postmaster has logged `terminating any other active server processes`, so
   one that slipped in before the postmaster noticed the crash is not taken for the restart;
   also kill → log `all server processes terminated; reinitializing`;
5. fast shutdown: SIGINT to the postmaster with no clients → the process exits (Popen.wait).

For pgbed it also measures the interpreter floor (`python -c pass`, `python -c "import
node.postmaster"`, both with sys.executable, not a pyenv shim) and lists the top 10 imports
of `python -X importtime`. When PYTHONDONTWRITEBYTECODE is set (every pgbed process then
compiles node/*.py from source), a third flavour "pgbed+pyc" runs the same steps with the
variable removed from the child environment and PYTHONPYCACHEPREFIX pointing into the bench's
temp dir, after `python -m compileall -q` of the node package: the figure a user with a normal
Python setup sees. Every flavour gets one untimed warm-up cycle first.

Running as root, PostgreSQL (which refuses root) runs as the `postgres` OS user: Popen's
user/group switch rather than `runuser`, whose watching parent would add a fork to the start
figure and turn SIGINT into SIGTERM (a smart, not fast, shutdown).

Every wait has a deadline (30 s for a server); a server that does not come up is killed and
reported with its log tail, and the temp dir is then kept for the log. All processes are
killed in `finally`, found by parentage and by open files / cwd under the temp dir (pgbed and
PostgreSQL children both leave the postmaster's process group). Exit code 0 whether or not
goals are met (it is a measurement), 1 when it could not run.

What it deliberately does not do: tune either server (no fsync=off; both keep their defaults
apart from port, listen address, socket directory and, for PostgreSQL, log_timezone=UTC),
use pg_ctl or `pgbed start --background` (their polling would be measured), or change
pgbed when pgbed misbehaves: it reports what it saw.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator import procfs
from orchestrator.localnode import free_port
from orchestrator.pgflavor import find_postgres

MIN_RUNS = 5
SERVER_TIMEOUT = 30.0
INITDB_TIMEOUT = 120.0
POLL_SLEEP = 0.002
MAX_FAILURES_PER_FLAVOUR = 2
LOG_TAIL_LINES = 25

READY_LINE = "database system is ready to accept connections"
CRASH_LINE = "terminating any other active server processes"
REINIT_LINE = "all server processes terminated; reinitializing"
INSTALL_HINT = "apt-get install postgresql-15"

# (key, label): the order of the table's rows.
FIGURES: list[tuple[str, str]] = [
    ("initdb", "initdb"),
    ("start_select1", "start -> first SELECT 1"),
    ("start_ready_log", "start -> log 'ready to accept'"),
    ("kill9_newconn", "kill -9 backend -> new conn"),
    ("kill9_reinit_log", "kill -9 -> log 'reinitializing'"),
    ("fast_shutdown", "fast shutdown"),
]
FLOOR_FIGURES: list[tuple[str, str]] = [
    ("py_nosite", "python -S -c pass (no site)"),
    ("py_pass", "python -c pass"),
    ("py_import_postmaster", "python -c 'import node.postmaster'"),
]
# Goal: pgbed/PostgreSQL ratio at most this (the targets).
GOALS: dict[str, float] = {"start_select1": 4.0, "kill9_newconn": 1.5, "fast_shutdown": 1.5}
# PostgreSQL 15.18 on a 2-core machine of this kind: median, min, max in ms
# (shared/reference/postgres-figures.md; fast shutdown has no range there).
REFERENCE_MS: dict[str, tuple[float, float | None, float | None]] = {
    "initdb": (1170.0, 860.0, 1310.0),
    "start_select1": (26.0, 25.0, 35.0),
    "start_ready_log": (21.0, 20.0, 31.0),
    "kill9_newconn": (78.0, 76.0, 114.0),
    "kill9_reinit_log": (4.0, 3.0, 5.0),
    "fast_shutdown": (13.0, None, None),
}

PGBED, PGBED_PYC, POSTGRES = "pgbed", "pgbed_pyc", "postgres"
LABELS = {PGBED: "pgbed", PGBED_PYC: "pgbed+pyc", POSTGRES: "postgres"}


class BenchError(Exception):
    """A step could not be measured; the message carries the evidence (log tail, log path)."""


# -- pure parts: statistics, formatting, table, JSON ----------------------------------------------


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    min: float
    max: float


def summarize(samples: Iterable[float]) -> Summary | None:
    """Median, min and max of the samples; None when there are none."""
    xs = list(samples)
    if not xs:
        return None
    return Summary(n=len(xs), median=statistics.median(xs), min=min(xs), max=max(xs))


def ratio(pgbed: Summary | None, postgres: Summary | None) -> float | None:
    """pgbed median / PostgreSQL median, None when either is missing or PostgreSQL's is not > 0."""
    if pgbed is None or postgres is None or postgres.median <= 0:
        return None
    return pgbed.median / postgres.median


def fmt_ms(value: float) -> str:
    """Milliseconds with a precision that suits the magnitude: 0.42, 12.3, 1170."""
    if abs(value) < 10:
        return f"{value:.2f}"
    if abs(value) < 1000:
        return f"{value:.1f}"
    return f"{value:.0f}"


def fmt_summary(s: Summary | None) -> str:
    """`231.4 (220.1-250.3)`, or `-` when nothing was measured."""
    if s is None:
        return "-"
    return f"{fmt_ms(s.median)} ({fmt_ms(s.min)}-{fmt_ms(s.max)})"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def fmt_goal(goal: float | None) -> str:
    return "-" if goal is None else f"<= {goal:g}x"


def goal_met(r: float | None, goal: float | None) -> bool | None:
    """True/False when both a ratio and a goal exist, else None."""
    if r is None or goal is None:
        return None
    return r <= goal


def fmt_met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


def fmt_reference(key: str) -> str:
    ref = REFERENCE_MS.get(key)
    if ref is None:
        return "-"
    med, lo, hi = ref
    if lo is None or hi is None:
        return fmt_ms(med)
    return f"{fmt_ms(med)} ({fmt_ms(lo)}-{fmt_ms(hi)})"


def table_rows(samples: dict[str, dict[str, list[float]]]) -> list[list[str]]:
    """Rows of the result table from {flavour: {figure: [ms, ...]}}; first row is the header."""
    pg = samples.get(POSTGRES, {})
    rows = [["figure", "pgbed ms median (min-max)", "postgres ms median (min-max)", "ratio", "goal",
             "met", "PG15 ref ms"]]  # fmt: skip
    variants = [(PGBED, "")]
    if samples.get(PGBED_PYC):
        variants.append((PGBED_PYC, " [+pyc]"))
    for flavour, suffix in variants:
        mine = samples.get(flavour, {})
        for key, label in FIGURES:
            if key == "initdb" and suffix:
                continue  # initdb is not what the bytecode variant is about
            a, b = summarize(mine.get(key, [])), summarize(pg.get(key, []))
            r, goal = ratio(a, b), GOALS.get(key)
            rows.append([label + suffix, fmt_summary(a), fmt_summary(b), fmt_ratio(r), fmt_goal(goal),
                         fmt_met(goal_met(r, goal)), fmt_reference(key)])  # fmt: skip
    for flavour, suffix in variants:
        mine = samples.get(flavour, {})
        for key, label in FLOOR_FIGURES:
            if mine.get(key):
                rows.append([label + suffix, fmt_summary(summarize(mine[key])), "-", "-", "-", "-", "-"])
    return rows


def render_table(rows: list[list[str]]) -> str:
    """Left-aligned text columns, two spaces apart, no trailing blanks."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def figure_json(samples_ms: list[float]) -> dict[str, Any]:
    s = summarize(samples_ms)
    return {
        "samples_ms": [round(x, 3) for x in samples_ms],
        "n": s.n if s else 0,
        "median_ms": round(s.median, 3) if s else None,
        "min_ms": round(s.min, 3) if s else None,
        "max_ms": round(s.max, 3) if s else None,
    }


def build_report(
    samples: dict[str, dict[str, list[float]]],
    *,
    runs: int,
    environment: dict[str, Any],
    importtime: dict[str, list[dict[str, Any]]],
    failures: list[dict[str, Any]],
    notes: list[str],
) -> dict[str, Any]:
    """The JSON document: raw samples and summaries per flavour, ratios and goals, environment."""
    flavours = {
        name: {"label": LABELS.get(name, name), "figures": {k: figure_json(v) for k, v in figs.items()}}
        for name, figs in samples.items()
    }
    pg = samples.get(POSTGRES, {})
    ratios: dict[str, dict[str, Any]] = {}
    for name in (PGBED, PGBED_PYC):
        if name not in samples:
            continue
        ratios[name] = {}
        for key, _ in FIGURES:
            r = ratio(summarize(samples[name].get(key, [])), summarize(pg.get(key, [])))
            goal = GOALS.get(key)
            ratios[name][key] = {"ratio": None if r is None else round(r, 3), "goal": goal,
                                 "met": goal_met(r, goal)}  # fmt: skip
    return {
        "bench": "startup",
        "schema": 1,
        "runs": runs,
        "environment": environment,
        "reference_ms": {k: {"median": v[0], "min": v[1], "max": v[2]} for k, v in REFERENCE_MS.items()},
        "goals": GOALS,
        "flavours": flavours,
        "ratios": ratios,
        "importtime_top10": importtime,
        "failures": failures,
        "notes": notes,
    }


_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def parse_importtime(stderr: str, top: int = 10) -> list[dict[str, Any]]:
    """The `top` most expensive imports of `python -X importtime` by self time (µs)."""
    out = []
    for line in stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            out.append({"module": m.group(4), "self_us": int(m.group(1)), "cumulative_us": int(m.group(2)),
                        "depth": max(0, (len(m.group(3)) - 1) // 2)})  # fmt: skip
    out.sort(key=lambda d: d["self_us"], reverse=True)
    return out[:top]


_LOG_TS = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) UTC\b")


def log_line_time(log_text: str, needle: str) -> float | None:
    """Epoch seconds of the %m prefix (UTC) of the first log line containing `needle`."""
    for line in log_text.splitlines():
        if needle in line:
            m = _LOG_TS.match(line)
            if not m:
                return None
            ts = m.group(1)
            fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in ts else "%Y-%m-%d %H:%M:%S"
            return datetime.strptime(ts, fmt).replace(tzinfo=UTC).timestamp()
    return None


# -- processes ------------------------------------------------------------------------------------


def _proc_table() -> dict[int, int]:
    """pid → ppid of every process."""
    return procfs.proc_table()


def _descendants(root_pid: int) -> list[int]:
    table = _proc_table()
    kids: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root_pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def _procs_using(root: Path) -> list[int]:
    """Processes (not this one) whose cwd or an open file lies under `root`."""
    prefix = str(root.resolve()) + os.sep
    me = os.getpid()
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == me:
            continue
        try:
            links = [os.readlink(p / "cwd")]
            links += [os.readlink(fd) for fd in (p / "fd").iterdir()]
        except OSError:
            continue
        if any((link + os.sep).startswith(prefix) for link in links):
            out.append(int(p.name))
    return out


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


# -- flavours and servers -------------------------------------------------------------------------


@dataclass
class Flavour:
    name: str
    env: dict[str, str]
    bindir: Path | None = None  # PostgreSQL's
    uid: int | None = None  # run as this OS user (PostgreSQL under root)
    gid: int | None = None
    failures: int = 0

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def is_pgbed(self) -> bool:
        return self.bindir is None

    def popen_kw(self, cwd: Path) -> dict[str, Any]:
        kw: dict[str, Any] = {"env": self.env, "cwd": str(cwd), "stdin": subprocess.DEVNULL}
        if self.uid is not None:
            kw.update(user=self.uid, group=self.gid, extra_groups=[])
        return kw

    def initdb_cmd(self, datadir: Path) -> list[str]:
        if self.is_pgbed:
            return [sys.executable, "-m", "node", "initdb", "-D", str(datadir), "--wal-segsize", "16"]
        assert self.bindir is not None
        return [str(self.bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres"]

    def start_cmd(self, datadir: Path) -> list[str]:
        if self.is_pgbed:
            return [sys.executable, "-m", "node", "start", "-D", str(datadir)]
        assert self.bindir is not None
        return [str(self.bindir / "postgres"), "-D", str(datadir)]

    def conf(self, port: int, sockdir: Path) -> dict[str, str]:
        c = {"port": str(port), "listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{sockdir}'"}
        if not self.is_pgbed:
            c["log_timezone"] = "'UTC'"  # pgbed logs UTC always; %m is then parseable for both
        else:
            c["pgbed.metrics_port"] = "0"  # PostgreSQL has no exporter process: like for like
        return c


class Registry:
    """Every server process spawned, for the `finally` sweep."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def sweep(self) -> list[int]:
        """SIGKILL every server process and everything under the temp dir; the pids killed."""
        victims: set[int] = set()
        for p in self.procs:
            if p.poll() is None:
                victims.add(p.pid)
                victims.update(_descendants(p.pid))
        victims.update(_procs_using(self.root))
        _kill(victims)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        self.procs = [p for p in self.procs if p.poll() is None]
        return sorted(victims)


class Server:
    def __init__(self, flavour: Flavour, rundir: Path, registry: Registry) -> None:
        self.flavour = flavour
        self.rundir = rundir
        self.datadir = rundir / "data"
        self.sockdir = rundir / "sock"
        self.logfile = rundir / "server.log"
        self.port = free_port()
        self.registry = registry
        self.proc: subprocess.Popen[bytes] | None = None

    def connstr(self) -> str:
        return (f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=5 "
                "sslmode=disable gssencmode=disable")  # fmt: skip

    def log_text(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def evidence(self, what: str) -> str:
        tail = "\n".join(self.log_text().splitlines()[-LOG_TAIL_LINES:])
        return f"{what}\n--- last lines of {self.logfile} ---\n{tail}\n--- end of log tail ---"

    def prepare(self) -> None:
        self.rundir.mkdir(parents=True)
        self.sockdir.mkdir()
        self.logfile.touch()
        if self.flavour.uid is not None:
            for p in (self.rundir, self.sockdir, self.logfile):
                os.chown(p, self.flavour.uid, self.flavour.gid or -1)

    def initdb(self) -> float:
        """Run initdb; wall time in ms."""
        cmd = self.flavour.initdb_cmd(self.datadir)
        t0 = time.perf_counter()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=INITDB_TIMEOUT,
                               **self.flavour.popen_kw(self.rundir))  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BenchError(f"{' '.join(cmd)} did not finish within {INITDB_TIMEOUT:g} s") from None
        elapsed = (time.perf_counter() - t0) * 1000
        if r.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} failed with exit code {r.returncode}:\n{r.stdout}{r.stderr}")
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write("\n# pgbed bench\n")
            for k, v in self.flavour.conf(self.port, self.sockdir).items():
                f.write(f"{k} = {v}\n")
        return elapsed

    def spawn(self) -> tuple[float, float]:
        """Start the server process; (perf_counter, wall clock) just before the spawn."""
        with open(self.logfile, "ab") as log:
            t_wall, t0 = time.time(), time.perf_counter()
            self.proc = subprocess.Popen(self.flavour.start_cmd(self.datadir), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         **self.flavour.popen_kw(self.rundir))  # fmt: skip
        self.registry.procs.append(self.proc)
        return t0, t_wall

    def poll_select1(self, t0: float, *, gate: Callable[[], bool] | None = None) -> tuple[float, int]:
        """ms from t0 until a fresh connect + SELECT 1 succeeds, and how many attempts failed.

        With `gate`, no attempt is made until gate() is true (checked before each attempt).
        """
        import psycopg

        assert self.proc is not None
        deadline = t0 + SERVER_TIMEOUT
        failed, last_err = 0, "no attempt made"
        opened = False
        while True:
            if self.proc.poll() is not None:
                what = f"server exited with code {self.proc.returncode} (last connect error: {last_err})"
                raise BenchError(self.evidence(f"{self.flavour.label}: {what}"))
            opened = opened or gate is None or gate()
            if opened:
                try:
                    with psycopg.connect(self.connstr(), autocommit=True) as conn:
                        conn.execute("SELECT 1").fetchone()
                        return (time.perf_counter() - t0) * 1000, failed
                except psycopg.Error as e:
                    failed += 1
                    last_err = f"{type(e).__name__}: {str(e).strip()}"
            if time.perf_counter() > deadline:
                what = "no successful SELECT 1" if opened else "gate condition not reached"
                raise BenchError(self.evidence(f"{self.flavour.label}: {what} within {SERVER_TIMEOUT:g} s; "
                                               f"last connect error: {last_err}"))  # fmt: skip
            time.sleep(POLL_SLEEP)

    def wait_log(self, needle: str, offset: int = 0, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()[offset:]
            if needle in text:
                return text
            time.sleep(0.005)
        what = f"log line {needle!r} not seen within {timeout:g} s"
        raise BenchError(self.evidence(f"{self.flavour.label}: {what}"))

    def kill9_backend(self) -> tuple[float, float | None, int]:
        """SIGKILL an idle client backend; (ms to a new working connection, ms to the reinit log
        line or None, failed attempts)."""
        import psycopg

        sess = psycopg.connect(self.connstr(), autocommit=True)
        try:
            row = sess.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            backend = int(row[0])
            offset = len(self.log_text())
            t_wall, t0 = time.time(), time.perf_counter()
            os.kill(backend, signal.SIGKILL)
            ms, failed = self.poll_select1(t0, gate=lambda: CRASH_LINE in self.log_text()[offset:])
        finally:
            with contextlib.suppress(Exception):
                sess.close()
        reinit = log_line_time(self.wait_log(REINIT_LINE, offset), REINIT_LINE)
        return ms, None if reinit is None else (reinit - t_wall) * 1000, failed

    def fast_shutdown(self) -> float:
        """SIGINT to the postmaster → it exits; ms."""
        assert self.proc is not None
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(SERVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BenchError(self.evidence(f"{self.flavour.label}: fast shutdown did not finish within "
                                           f"{SERVER_TIMEOUT:g} s")) from None  # fmt: skip
        ms = (time.perf_counter() - t0) * 1000
        if code != 0:
            raise BenchError(self.evidence(f"{self.flavour.label}: fast shutdown exited with code {code}"))
        return ms


def pgbed_and_postgres(root: Path) -> tuple[list[Flavour], Path | None, str]:
    """The two flavours of the replication and bgworker groups: pgbed with a warm bytecode cache
    (compiled here), and PostgreSQL 15 run as the `postgres` OS user when we are root; a line
    says why PostgreSQL is missing when it is. Returns (flavours, PostgreSQL bindir, version)."""
    flavours = [Flavour(PGBED_PYC, _pgbed_pyc_env(root))]
    pg_bindir, pg_version = find_postgres()
    if pg_bindir is None:
        print(f"PostgreSQL 15 not found ({pg_version}): only pgbed is measured. `{INSTALL_HINT}`")
    else:
        uid = gid = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            uid, gid = pw.pw_uid, pw.pw_gid
        pg = Flavour(POSTGRES, dict(os.environ), bindir=pg_bindir, uid=uid, gid=gid)
        if uid is not None:
            pg.env["HOME"] = pwd.getpwuid(uid).pw_dir
        flavours.append(pg)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "node", "orchestrator"], env=flavours[0].env,
                   cwd=str(Path(__file__).resolve().parent.parent), capture_output=True)  # fmt: skip
    return flavours, pg_bindir, pg_version


def interleaved_runs(
    flavours: list[Flavour], runs: int, root: Path, registry: Registry, run_fn: Callable[..., Any],
    errors: tuple[type[BaseException], ...],
) -> tuple[list[tuple[Flavour, Any]], list[str]]:
    """Run `run_fn(flavour, rundir, registry)` for every flavour, `runs` times, alternating the
    order run by run (A/B, B/A) so that machine noise hits both. A run that raises one of `errors`
    is a failure with its message; every server process is swept after each run and at the end."""
    results: list[tuple[Flavour, Any]] = []
    failures: list[str] = []
    try:
        for run in range(1, runs + 1):
            for fl in flavours if run % 2 else list(reversed(flavours)):
                print(f"run {run}/{runs}: {fl.label}", flush=True)
                try:
                    results.append((fl, run_fn(fl, root / f"run{run}-{fl.name}", registry)))
                except errors as e:
                    failures.append(f"run {run} {fl.label}: {e}")
                    print(f"  FAILED: {e}", flush=True)
                finally:
                    registry.sweep()
    finally:
        leftovers = registry.sweep()
        if leftovers:
            failures.append(f"processes left running and killed: {leftovers}")
    return results, failures


def _time_cmd(cmd: list[str], flavour: Flavour, cwd: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, timeout=SERVER_TIMEOUT, **flavour.popen_kw(cwd))
    ms = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
    return ms


def run_cycle(flavour: Flavour, rundir: Path, registry: Registry) -> dict[str, float]:
    """One run of every step for one flavour; {figure: ms}. Raises BenchError with evidence."""
    out: dict[str, float] = {}
    if flavour.is_pgbed:
        out["py_nosite"] = _time_cmd([sys.executable, "-S", "-c", "pass"], flavour, rundir.parent)
        out["py_pass"] = _time_cmd([sys.executable, "-c", "pass"], flavour, rundir.parent)
        out["py_import_postmaster"] = _time_cmd([sys.executable, "-c", "import node.postmaster"], flavour,
                                                rundir.parent)  # fmt: skip
    srv = Server(flavour, rundir, registry)
    srv.prepare()
    out["initdb"] = srv.initdb()
    t0, t_wall = srv.spawn()
    out["start_select1"], _ = srv.poll_select1(t0)
    ready = log_line_time(srv.wait_log(READY_LINE), READY_LINE)
    if ready is not None:
        out["start_ready_log"] = (ready - t_wall) * 1000
    ms, reinit_ms, _ = srv.kill9_backend()
    out["kill9_newconn"] = ms
    if reinit_ms is not None:
        out["kill9_reinit_log"] = reinit_ms
    out["fast_shutdown"] = srv.fast_shutdown()
    time.sleep(0.05)  # let any straggler show up before the leak check
    left = _procs_using(rundir)
    if left:
        _kill(left)
        raise BenchError(srv.evidence(f"{flavour.label}: processes still running after fast shutdown "
                                      f"(killed): {left}"))  # fmt: skip
    return out


# -- environment ----------------------------------------------------------------------------------


def _pgbed_pyc_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


def _importtime(env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import node.postmaster"], env=env,
                       cwd=str(cwd), capture_output=True, text=True, timeout=SERVER_TIMEOUT)  # fmt: skip
    return parse_importtime(r.stderr)


def _environment(pg_bindir: Path | None, pg_version: str) -> dict[str, Any]:
    import psycopg

    return {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "nproc": os.cpu_count(),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "python_env": {k: v for k, v in os.environ.items() if k.startswith("PYTHON")},
        "bytecode_cache_disabled": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        "postgres_bindir": str(pg_bindir) if pg_bindir else None,
        "postgres_version": pg_version if pg_bindir else None,
        "running_as_root": os.geteuid() == 0,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "psycopg": psycopg.__version__,
        "libpq": psycopg.pq.version(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _print_importtime(title: str, rows: list[dict[str, Any]]) -> None:
    print(title)
    for d in rows:
        print(f"  {d['self_us'] / 1000:7.1f} ms self  {d['cumulative_us'] / 1000:7.1f} ms cumulative  "
              f"{d['module']}")  # fmt: skip


# -- main -----------------------------------------------------------------------------------------


def main(group: str, runs: int | None = None, json_out: str | None = None, suite: bool = False) -> int:
    """One group; `runs` None: the group's own default (startup 7, sql 5, the others 3)."""
    kw: dict[str, Any] = {"runs": runs} if runs else {}
    if group == "chaos":
        from orchestrator import bench_chaos

        return bench_chaos.main(**kw, json_out=json_out, suite=suite)
    if group == "sql":
        from orchestrator import bench_sql

        return bench_sql.main(**kw, json_out=json_out)
    if group == "replication":
        from orchestrator import bench_repl

        return bench_repl.main(**kw, json_out=json_out)
    if group == "metrics":
        from orchestrator import bench_metrics

        return bench_metrics.main(**kw, json_out=json_out, compose=suite)
    if group == "bgworker":
        from orchestrator import bench_bgw

        return bench_bgw.main(**kw, json_out=json_out)
    if group != "startup":
        print(f"pgbed bench: unknown group {group!r}", file=sys.stderr)
        return 1
    runs = runs or 7
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
    root = Path(tempfile.mkdtemp(prefix="pgbed-bench-"))
    os.chmod(root, 0o755)  # the postgres OS user must traverse it
    registry = Registry(root)
    keep_root = False
    flavours: list[Flavour] = [Flavour(PGBED, dict(os.environ))]
    pg: Flavour | None = None
    samples: dict[str, dict[str, list[float]]] = {}
    importtime: dict[str, list[dict[str, Any]]] = {}

    pg_bindir, pg_version = find_postgres()
    if pg_bindir is None:
        msg = (f"PostgreSQL 15 not found ({pg_version}): only pgbed is measured, no ratios. "
               f"Install it with `{INSTALL_HINT}` (puts pg_ctl in /usr/lib/postgresql/15/bin).")  # fmt: skip
        print(msg)
        notes.append(msg)
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
                msg = ("running as root and there is no `postgres` OS user to run PostgreSQL as "
                       "(PostgreSQL refuses root); only pgbed is measured. "
                       f"`{INSTALL_HINT}` creates it.")  # fmt: skip
                print(msg)
                notes.append(msg)
        if pg_bindir is not None:
            pg = Flavour(POSTGRES, dict(os.environ), bindir=pg_bindir, uid=uid, gid=gid)
            if uid is not None:
                pg.env["HOME"] = pwd.getpwuid(uid).pw_dir
                notes.append("PostgreSQL runs as OS user postgres (the bench runs as root)")
    env_info = _environment(pg_bindir, pg_version)
    if env_info["bytecode_cache_disabled"]:
        notes.append("PYTHONDONTWRITEBYTECODE is set: pgbed processes compile node/*.py from source on "
                     "every start; the [+pyc] rows are the same steps with it removed from the child "
                     "environment and a warm bytecode cache (compileall + warm-up).")  # fmt: skip
        flavours.append(Flavour(PGBED_PYC, _pgbed_pyc_env(root)))
    if pg is not None:
        flavours.append(pg)

    print(f"pgbed bench startup: {runs} runs, {', '.join(f.label for f in flavours)}; temp dir {root}")
    print(f"environment: Python {env_info['python']} ({sys.executable}), {env_info['nproc']} CPUs, "
          f"load {env_info['loadavg_at_start'][0]}, "
          f"PYTHONDONTWRITEBYTECODE={env_info['PYTHONDONTWRITEBYTECODE']!s}"
          + (f", {pg_version} in {pg_bindir}" if pg_bindir else ""))  # fmt: skip
    try:
        node_dir = Path(__import__("node").__file__).parent  # type: ignore[arg-type]
        for f in flavours:
            samples[f.name] = {}
            if f.name == PGBED_PYC:
                subprocess.run([sys.executable, "-m", "compileall", "-q", str(node_dir)], env=f.env,
                               cwd=str(root), capture_output=True, timeout=120, check=False)  # fmt: skip
        for f in flavours:  # one untimed warm-up cycle each (page cache, bytecode cache)
            d = root / f.name
            d.mkdir()
            if f.uid is not None:
                os.chown(d, f.uid, f.gid or -1)
            try:
                run_cycle(f, d / "warmup", registry)
                shutil.rmtree(d / "warmup", ignore_errors=True)
            except BenchError as e:
                keep_root = True
                f.failures += 1
                failures.append({"flavour": f.name, "run": 0, "error": str(e)})
                print(f"warm-up {f.label}: FAILED\n{e}", file=sys.stderr)
            finally:
                registry.sweep()
            if f.is_pgbed:  # after the warm-up, so that [+pyc] sees a warm bytecode cache
                importtime[f.name] = _importtime(f.env, root)
                _print_importtime(f"top 10 imports of `python -X importtime -c 'import node.postmaster'`, "
                                  f"{f.label} (by self time):", importtime[f.name])  # fmt: skip

        for i in range(1, runs + 1):
            parts = []
            for f in flavours:
                if f.failures >= MAX_FAILURES_PER_FLAVOUR:
                    parts.append(f"{f.label} skipped")
                    continue
                rundir = root / f.name / f"run{i}"
                try:
                    res = run_cycle(f, rundir, registry)
                except BenchError as e:
                    keep_root = True
                    f.failures += 1
                    failures.append({"flavour": f.name, "run": i, "error": str(e)})
                    print(f"run {i}/{runs}: {f.label} FAILED\n{e}", file=sys.stderr)
                    parts.append(f"{f.label} FAILED")
                    continue
                finally:
                    registry.sweep()
                shutil.rmtree(rundir, ignore_errors=True)
                for k, v in res.items():
                    samples[f.name].setdefault(k, []).append(v)
                parts.append(f"{f.label} start {res['start_select1'] / 1000:.3f} s "
                             f"kill-9 {res['kill9_newconn'] / 1000:.3f} s "
                             f"shutdown {res['fast_shutdown'] / 1000:.3f} s")  # fmt: skip
            print(f"run {i}/{runs}: " + ", ".join(parts), flush=True)
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
    report = build_report(samples, runs=runs, environment=env_info, importtime=importtime,
                          failures=failures, notes=notes)  # fmt: skip
    print()
    print(render_table(table_rows(samples)))
    print()
    _print_floor_share(samples)
    report["injection_point_ns"] = inj = injection_point_cost()
    print(f"injection point check, nothing armed: {inj['unarmed_ns']:.0f} ns per call; an empty function "
          f"call: {inj['empty_call_ns']:.0f} ns; with 1 other point armed: {inj['other_armed_ns']:.0f} ns")
    for n in notes:
        print(f"note: {n}")
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"JSON written to {json_out}")
    if failures:
        print(f"pgbed bench: {len(failures)} step(s) failed; see above", file=sys.stderr)
        return 1
    return 0


def injection_point_cost(n: int = 200_000) -> dict[str, float]:
    """Cost of `inject()` at a point that is not armed — the check every loop iteration and
    lifecycle step pays — next to an empty call, in nanoseconds (best of 5 timeit repeats)."""
    import timeit

    from node import injection
    from node.ipc.shmem import ShmemSegment, ShmemSizes

    seg = ShmemSegment.create(ShmemSizes(n_procs=8), 1)
    injection.attach(seg.s, None)

    def empty(name: str) -> None:
        return None

    def best(fn: Callable[[str], None]) -> float:
        return min(timeit.repeat(lambda: fn("backend-loop"), number=n, repeat=5)) / n * 1e9

    try:
        out = {"unarmed_ns": best(injection.inject), "empty_call_ns": best(empty)}
        injection.apply_setting(seg.s, "checkpointer-loop:sleep:1")
        out["other_armed_ns"] = best(injection.inject)
    finally:
        injection.attach(None, None)
    return {k: round(v, 1) for k, v in out.items()}


def _print_floor_share(samples: dict[str, dict[str, list[float]]]) -> None:
    for name in (PGBED, PGBED_PYC):
        figs = samples.get(name, {})
        start = summarize(figs.get("start_select1", []))
        imp = summarize(figs.get("py_import_postmaster", []))
        bare = summarize(figs.get("py_pass", []))
        nosite = summarize(figs.get("py_nosite", []))
        if start and imp and bare:
            share = imp.median / start.median
            site = f" (site/.pth: {fmt_ms(bare.median - nosite.median)} ms)" if nosite else ""
            print(f"{LABELS[name]}: interpreter start {fmt_ms(bare.median)} ms{site} + imports "
                  f"{fmt_ms(imp.median - bare.median)} ms = {fmt_ms(imp.median)} ms of "
                  f"{fmt_ms(start.median)} ms start -> first SELECT 1 ({share:.0%})")  # fmt: skip

