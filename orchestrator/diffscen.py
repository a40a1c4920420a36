"""The differential scenarios: each runs unchanged on a pgbed cluster and on a PostgreSQL 15
cluster (orchestrator/cluster.py, `flavor=`) and records what a client and an operator see.

What it does: every `Scenario` is a function of a `Run` — which brings up a local cluster of the
run's flavour with the settings both flavours share (log_min_messages = debug1 so that worker
starts are logged, log_checkpoints = on), gives a seeded `random.Random`, and records `steps`:
SQLSTATEs of failed statements (`r.attempt`), postmaster exit codes, view shapes (column
names and selected values, `r.shape`), and whether acknowledged rows survived. The runner
(orchestrator/diff.py) adds each node's normalised log events (orchestrator/diffnorm.py).
Each scenario names the rule ids of /work/shared/reference/process-model.md it exercises, and
whether it runs on both flavours, on pgbed only (it needs something PostgreSQL has not, such
as injection points) or on PostgreSQL only (PostgreSQL's own workers, which pgbed does not
have: the autoprewarm leader, the logical replication launcher, parallel workers).

What it deliberately does not do: judge (the comparison is orchestrator/diffnorm.py's), or
use anything one flavour lacks inside a both-flavour scenario: only SQL, signals, the log
and the files PostgreSQL documents (postmaster.pid).

Ownership: a Run owns its cluster and tears it down; scenarios touch only that cluster.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from orchestrator.cluster import Cluster
from orchestrator.diffnorm import log_events
from orchestrator.pgnode import NodeError
from orchestrator.sessions import drain_notices, wait_until_reading

COMMON_SETTINGS: dict[str, Any] = {
    "log_min_messages": "debug1",  # `starting background worker process` is DEBUG1 in both
    "log_checkpoints": "on",
    "restart_after_crash": "on",
}
PGBED_TEST_STATIC = {"pgbed_s_pm": "postmaster_start", "pgbed_s_cs": "consistent_state",
                     "pgbed_s_rf": "recovery_finished"}  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    name: str
    rules: tuple[str, ...]
    summary: str
    fn: Callable[[Run], None]
    flavours: tuple[str, ...] = ("pgbed", "postgres")
    needs_pgbed_test: bool = False  # the pgbed_test module / ext/pgbed_test extension

    @property
    def kind(self) -> str:
        return "both" if len(self.flavours) == 2 else f"{self.flavours[0]}-only"


class Run:
    def __init__(self, flavor: str, base: Path, seed: int, extra_settings: dict[str, Any] | None = None) -> None:
        self.flavor = flavor
        self.extra_settings = dict(extra_settings or {})  # over every cluster's settings (meta-tests)
        self.base = base
        self.rng = random.Random(seed)
        self.steps: list[str] = []
        self.cluster: Cluster | None = None

    def up(self, standbys: int = 0, settings: dict[str, Any] | None = None,
           standby_settings: dict[str, Any] | None = None, sync: bool = True) -> Cluster:  # fmt: skip
        self.cluster = Cluster.local(self.base, standbys=standbys, flavor=self.flavor, sync=sync,
                                     settings={**COMMON_SETTINGS, **(settings or {}), **self.extra_settings},
                                     standby_settings=standby_settings)  # fmt: skip
        return self.cluster

    def step(self, line: str) -> None:
        self.steps.append(line)

    def attempt(self, label: str, conn: Any, query: str, params: Any = None) -> str | None:
        """Run `query` and record `label: ok` or `label: SQLSTATE <code>`; returns the code."""
        try:
            conn.execute(query, params)
        except psycopg.Error as e:
            code = e.sqlstate or f"client-side {type(e).__name__}"
            self.step(f"{label}: SQLSTATE {code}")
            return code
        self.step(f"{label}: ok")
        return None

    def connect_outcome(self, label: str, node: Any) -> None:
        try:
            node.connect(connect_timeout=5).close()
            self.step(f"{label}: connected")
        except psycopg.Error as e:
            self.step(f"{label}: SQLSTATE {e.sqlstate or _sqlstate_in_text(str(e))}")

    def shape(self, label: str, node: Any, query: str) -> None:
        """Record a view's column names and its rows (the query picks comparable columns)."""
        with node.connect() as c:
            cur = c.execute(query)
            rows = cur.fetchall()
            cols = [d.name for d in cur.description or []]
        self.step(f"{label} columns: {', '.join(cols)}")
        for row in sorted(rows, key=repr):
            self.step(f"{label} row: {', '.join(str(v) for v in row)}")

    def rows_survived(self, label: str, node: Any, acked: int, table: str = "acked") -> None:
        got = node.sql(f"SELECT count(*) FROM {table}")[0][0]
        self.step(f"{label}: {'all' if got == acked else f'{got} of'} {acked} acknowledged rows")

    def teardown(self) -> None:
        if self.cluster is not None:
            self.cluster.teardown()


def _sqlstate_in_text(text: str) -> str:
    """A connection error's SQLSTATE when libpq only gave the message (startup failures)."""
    for code, needle in (("57P03", "the database system is"), ("28P01", "password authentication failed"),
                         ("53300", "too many"), ("3D000", "does not exist")):  # fmt: skip
        if needle in text:
            return code
    return f"none ({text.strip().splitlines()[0] if text.strip() else 'no message'})"


def _pgbed_test_settings(spec: dict[str, str] = PGBED_TEST_STATIC, restart_s: int = -1) -> dict[str, Any]:
    static = ";".join(f"{n}:{st}:{restart_s}:run" for n, st in spec.items())
    return {"shared_preload_libraries": "'pgbed_test'", "pgbed_test__static_workers": f"'{static}'"}


def _load(r: Run, node: Any, n: int) -> int:
    node.sql("CREATE TABLE IF NOT EXISTS acked (id int PRIMARY KEY, v text)")
    with node.connect() as c:
        for i in range(n):
            c.execute("INSERT INTO acked VALUES (%s, %s)", (i, f"v{r.rng.randrange(10**6)}"))
    return n


def _wait_gone(node: Any, pid: int, timeout: float = 20.0) -> None:
    node.poll_until(lambda: not _alive(pid), timeout=timeout, what=f"process {pid} gone")


def _expect(ok: bool, what: str) -> None:
    """A rule the scenario checks on one flavour itself (its outcome has no other to match)."""
    if not ok:
        raise AssertionError(what)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- scenarios ------------------------------------------------------------------------------------


def startup_shutdown(r: Run) -> None:
    """Each shutdown mode on an idle primary, then a start after it."""
    p = r.up().primary
    for mode in ("smart", "fast", "immediate"):
        r.step(f"{mode} shutdown: postmaster exit code {p.stop(mode)}")
        p.start()
    r.step(f"fast shutdown: postmaster exit code {p.stop('fast')}")


def smart_shutdown_waits(r: Run) -> None:
    """A smart shutdown waits for the open session, refuses new ones (57P03), then ends."""
    p = r.up().primary
    s = p.connect()
    r.attempt("open session before", s, "SELECT 1")
    p.signal(signal.SIGTERM)
    p.wait_for_log("received smart shutdown request")
    r.connect_outcome("new connection during smart shutdown", p)
    r.attempt("open session during smart shutdown", s, "SELECT 1")
    s.close()
    r.step(f"postmaster exit code {p.wait_exit()}")


def fast_shutdown_aborts(r: Run) -> None:
    """A fast shutdown terminates a session inside a transaction (57P01); its work is lost."""
    p = r.up().primary
    n = _load(r, p, 5)
    s = p.connect()
    s.execute("BEGIN")
    s.execute("INSERT INTO acked VALUES (1000, 'uncommitted')")
    p.signal(signal.SIGINT)
    p.wait_for_log("aborting any active transactions")
    time.sleep(0.3)
    r.attempt("session in a transaction after a fast shutdown", s, "SELECT 1")
    s.close()
    r.step(f"postmaster exit code {p.wait_exit()}")
    p.start()
    r.rows_survived("after restart", p, n)


def immediate_then_recovery(r: Run) -> None:
    """An immediate shutdown skips the checkpoint; the next start recovers every commit."""
    p = r.up().primary
    n = _load(r, p, r.rng.randint(20, 60))
    r.step(f"immediate shutdown: postmaster exit code {p.stop('immediate')}")
    p.start()
    r.rows_survived("after crash recovery", p, n)


def backend_kill9(r: Run) -> None:
    """F18: SIGKILL a client backend: every other session gets 57P02, the node reinitialises."""
    p = r.up().primary
    n = _load(r, p, 10)
    victim, other = p.connect(), p.connect()
    codes: list[str | None] = []
    other.add_notice_handler(lambda d: codes.append(d.sqlstate))
    pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
    wait_until_reading(victim, [other.info.backend_pid])  # else PostgreSQL may drop the notice
    os.kill(pid, signal.SIGKILL)
    p.wait_for_log("all server processes terminated; reinitializing")
    # read what the server sent (the quickdie WARNING) before sending anything
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        drain_notices(other)
        time.sleep(0.05)
    p.poll_until(lambda: p.sql("SELECT 1") == [(1,)], what="accepting connections after the crash")
    try:
        other.execute("SELECT 1")
        r.step("other session after the crash: still usable")
    except psycopg.Error as e:
        r.step(f"other session after the crash: SQLSTATE {e.sqlstate or 'none (connection closed)'}")
    r.step(f"other session notices: {', '.join(sorted({c or '?' for c in codes})) or 'none'}")
    victim.close()
    other.close()
    r.rows_survived("after the crash restart", p, n)


def checkpointer_kill9(r: Run) -> None:
    """SIGKILL the checkpointer: any exit of an auxiliary process but 0 is a crash (CRASH-1)."""
    c = r.up(standbys=1)
    p = c.primary
    n = _load(r, p, 10)
    c.catch_up()
    (pid,) = p.pids("checkpointer")
    os.kill(pid, signal.SIGKILL)
    p.wait_for_log("all server processes terminated; reinitializing")
    p.poll_until(lambda: p.sql("SELECT 1") == [(1,)], what="accepting connections after the crash")
    c.wait_streaming()
    r.rows_survived("primary after the crash restart", p, n)


def sql_errors(r: Run) -> None:
    """SQLSTATEs of common mistakes, on the primary and on a hot standby."""
    c = r.up(standbys=1)
    p, s = c.primary, c.standbys[0]
    p.sql("CREATE TABLE acked (id int PRIMARY KEY, v text)")
    p.sql("INSERT INTO acked VALUES (1, 'a')")
    c.catch_up()
    with p.connect() as a:
        r.attempt("syntax error", a, "SELEC 1")
        r.attempt("undefined table", a, "SELECT * FROM no_such_table")
        r.attempt("undefined column", a, "SELECT no_such_column FROM acked")
        r.attempt("unique violation", a, "INSERT INTO acked VALUES (1, 'again')")
        r.attempt("not-null violation", a, "INSERT INTO acked VALUES (NULL, 'x')")
        r.attempt("division by zero", a, "SELECT 1/0")
        r.attempt("bad integer input", a, "SELECT 'x'::int")
        r.attempt("unknown setting", a, "SET no_such_setting = 1")
        r.attempt("postmaster-only setting", a, "SET max_connections = 5")
        r.attempt("pg_promote on a primary", a, "SELECT pg_promote()")
        r.attempt("duplicate table", a, "CREATE TABLE acked (id int)")
    with s.connect() as b:
        r.attempt("write on a standby", b, "INSERT INTO acked VALUES (2, 'b')")
        r.attempt("DDL on a standby", b, "CREATE TABLE t2 (i int)")
        r.attempt("read on a standby", b, "SELECT count(*) FROM acked")
        r.attempt("pg_is_in_recovery on a standby", b, "SELECT pg_is_in_recovery()")


def replication_views(r: Run) -> None:
    """pg_stat_replication and pg_stat_wal_receiver with two sync-quorum standbys (WALSND-3,
    WALRCV-8)."""
    c = r.up(standbys=2)
    _load(r, c.primary, 3)
    c.catch_up()
    r.shape("pg_stat_replication", c.primary,
            "SELECT application_name, state, sync_state, sync_priority, (replay_lsn IS NOT NULL) AS replayed "
            "FROM pg_stat_replication")  # fmt: skip
    r.shape("pg_stat_wal_receiver", c.standbys[0],
            "SELECT status, received_tli, (flushed_lsn IS NOT NULL) AS flushed, "
            "(sender_host IS NOT NULL) AS has_sender FROM pg_stat_wal_receiver")  # fmt: skip
    r.shape("recovery functions", c.standbys[0],
            "SELECT pg_is_in_recovery(), pg_is_wal_replay_paused(), "
            "pg_last_wal_receive_lsn() >= pg_last_wal_replay_lsn()")  # fmt: skip
    r.shape("primary recovery functions", c.primary,
            "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() IS NULL AS never_replayed")  # fmt: skip


def walreceiver_sigterm(r: Run) -> None:
    """SIGTERM the walreceiver: it ends (FATAL), the startup process asks for a new one, and
    streaming resumes (WALRCV-4, WALRCV-5, WALRCV-6)."""
    c = r.up(standbys=1, standby_settings={"wal_retrieve_retry_interval": "'500ms'"})
    s = c.standbys[0]
    (pid,) = s.pids("walreceiver")
    os.kill(pid, signal.SIGTERM)
    _wait_gone(s, pid)
    s.poll_until(lambda: [q for q in s.pids("walreceiver") if q != pid], what="a new walreceiver")
    c.wait_streaming()
    n = _load(r, c.primary, 5)
    c.catch_up()
    r.rows_survived("standby after the walreceiver restart", s, n)


def walsender_sigterm(r: Run) -> None:
    """SIGTERM a walsender: it exits like a backend (no crash); the standby reconnects
    (WALSND-4, WALRCV-6)."""
    c = r.up(standbys=1, standby_settings={"wal_retrieve_retry_interval": "'500ms'"})
    p = c.primary
    (pid,) = p.pids("walsender")
    os.kill(pid, signal.SIGTERM)
    _wait_gone(p, pid)
    c.wait_streaming()
    n = _load(r, p, 5)
    c.catch_up()
    r.rows_survived("standby after the walsender restart", c.standbys[0], n)


def walsender_kill9(r: Run) -> None:
    """SIGKILL a walsender: a crash of the primary (CRASH-1), the standby reconnects after the
    reinit and every acknowledged row is on both nodes."""
    c = r.up(standbys=1, standby_settings={"wal_retrieve_retry_interval": "'500ms'"})
    p = c.primary
    n = _load(r, p, 8)
    (pid,) = p.pids("walsender")
    os.kill(pid, signal.SIGKILL)
    p.wait_for_log("all server processes terminated; reinitializing")
    c.wait_streaming()
    c.catch_up()
    r.rows_survived("primary after the crash restart", p, n)
    r.rows_survived("standby after the crash restart", c.standbys[0], n)


def promotion(r: Run) -> None:
    """pg_promote() on a standby: timeline 2, writes accepted, the data kept (REC-5, REC-7).
    Asynchronous, so that the promoted node's commits do not wait for a standby it lacks."""
    c = r.up(standbys=1, sync=False)
    n = _load(r, c.primary, 7)
    c.catch_up()
    c.primary.stop("fast")
    s = c.standbys[0]
    s.promote()
    r.shape("after promotion", s, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() IS NOT NULL AS replayed")
    # the end-of-recovery checkpoint of a promotion is requested without CHECKPOINT_IMMEDIATE:
    # when it completes (spread, so PostgreSQL takes a while) the control file says timeline 2
    s.poll_until(lambda: s.sql("SELECT timeline_id FROM pg_control_checkpoint()")[0][0] == 2, timeout=60,
                 what="a checkpoint on timeline 2")  # fmt: skip
    r.step("checkpoint on the new timeline: 2")
    with s.connect() as w:
        r.attempt("write on the promoted node", w, "INSERT INTO acked VALUES (100, 'new')")
    r.rows_survived("promoted node", s, n + 1)


def failover(r: Run) -> None:
    """Cluster.failover() with two standbys: promote the most advanced, re-point the other
    across the timeline switch, re-clone the old primary; no acknowledged row lost."""
    c = r.up(standbys=2)
    n = _load(r, c.primary, r.rng.randint(10, 30))
    new = c.failover()
    c.wait_streaming()
    n += _load_more(c.primary, n, 5)
    c.catch_up()
    r.step(f"new primary is the most advanced standby: {new.name in ('standby1', 'standby2')}")
    for name, node in sorted(c.nodes.items()):
        role = "primary" if name == c.primary_name else "standby"
        r.rows_survived(f"{role} after failover", node, n)


def _load_more(node: Any, start: int, k: int) -> int:
    with node.connect() as c:
        for i in range(start, start + k):
            c.execute("INSERT INTO acked VALUES (%s, 'after')", (i,))
    return k


def bgworker_start_times(r: Run) -> None:
    """Static workers with each start time on a standby: postmaster_start before consistency,
    consistent_state after it, recovery_finished only after promotion (BGW-7, REC-1, REC-3,
    REC-7)."""
    c = r.up(standbys=1, settings=_pgbed_test_settings())
    s = c.standbys[0]
    s.poll_until(lambda: s.log_contains('starting background worker process "pgbed_s_cs"'), what="pgbed_s_cs")
    c.primary.stop("fast")
    s.promote()
    s.poll_until(lambda: s.log_contains('starting background worker process "pgbed_s_rf"'), what="pgbed_s_rf")


def bgworker_dynamic(r: Run) -> None:
    """Dynamic pgbed_test workers: status words through a worker's life, restart after exit 1
    with restart_s = 1, terminate, and the 22023 errors (BGW-4, BGW-9, BGW-10, BGW-12..14)."""
    p = r.up(settings={"shared_preload_libraries": "'pgbed_test'"}).primary
    p.sql("CREATE EXTENSION pgbed_test")
    with p.connect() as a:
        slot, gen = a.execute("SELECT * FROM pgbed_test_register('d_run', 'postmaster_start', -1, "
                              "'{shmem}', 'run')").fetchone()  # fmt: skip
        st = a.execute("SELECT status FROM pgbed_test_wait_startup(%s, %s)", (slot, gen)).fetchone()[0]
        r.step(f"run worker after wait_startup: {st}")
        a.execute("SELECT pgbed_test_terminate(%s, %s)", (slot, gen))
        st = a.execute("SELECT status FROM pgbed_test_wait_shutdown(%s, %s)", (slot, gen)).fetchone()[0]
        r.step(f"run worker after terminate + wait_shutdown: {st}")
        slot, gen = a.execute("SELECT * FROM pgbed_test_register('d_exit1', 'postmaster_start', 1, "
                              "'{shmem}', 'exit:1')").fetchone()  # fmt: skip
        a.execute("SELECT * FROM pgbed_test_wait_startup(%s, %s)", (slot, gen))
        deadline = time.monotonic() + 15
        started = 'starting background worker process "d_exit1"'
        while p.log_content().count(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        r.step(f"exit:1 worker restarted after its restart interval: {p.log_content().count(started) >= 2}")
        a.execute("SELECT pgbed_test_terminate(%s, %s)", (slot, gen))
        st = a.execute("SELECT status FROM pgbed_test_wait_shutdown(%s, %s)", (slot, gen)).fetchone()[0]
        r.step(f"exit:1 worker after terminate: {st}")
        r.attempt("invalid behaviour", a, "SELECT * FROM pgbed_test_register('x', 'postmaster_start', -1, "
                                          "'{shmem}', 'dance')")  # fmt: skip
        r.attempt("invalid start time", a, "SELECT * FROM pgbed_test_register('x', 'never', -1, '{shmem}', 'run')")
        r.attempt("invalid flag", a, "SELECT * FROM pgbed_test_register('x', 'postmaster_start', -1, "
                                     "'{bogus}', 'run')")  # fmt: skip
        # pgbed_test_register() takes any negative restart_s for "never restart" (both
        # implementations), so this registers a worker that starts; wait for that, so that its
        # start is in the log whichever flavour is quicker
        if r.attempt("restart interval -7", a, "SELECT * FROM pgbed_test_register('x', 'postmaster_start', -7, "
                                               "'{shmem}', 'run')") is None:  # fmt: skip
            p.wait_for_log('starting background worker process "x"')


def bgworker_crash(r: Run) -> None:
    """A dynamic worker that crashes (SIGSEGV) makes the postmaster crash-restart the node;
    at the reinit workers that never restart are forgotten (the crashed one), the others start
    again at once (a static one with a 1 s restart interval) (CRASH-1, BGW-17)."""
    p = r.up(settings=_pgbed_test_settings({"pgbed_s_pm": "postmaster_start"}, restart_s=1)).primary
    p.sql("CREATE EXTENSION pgbed_test")
    n = _load(r, p, 4)
    with p.connect() as a:
        a.execute("SELECT * FROM pgbed_test_register('d_crash', 'postmaster_start', -1, '{shmem}', 'crash')")
    p.wait_for_log("all server processes terminated; reinitializing")
    p.poll_until(lambda: p.sql("SELECT 1") == [(1,)], what="accepting connections after the crash")
    p.poll_until(lambda: p.log_content().count('starting background worker process "pgbed_s_pm"') >= 2,
                 what="the static worker started again")  # fmt: skip
    r.rows_survived("after the crash restart", p, n)


def bgworker_sigterm(r: Run) -> None:
    """SIGTERM a running static worker: FATAL `terminating background worker … due to
    administrator command`, exit 1, restarted after its interval (BGW-10, BGW-18, SIG-6)."""
    spec = "pgbed_s_restart:postmaster_start:1:run"
    p = r.up(settings={"shared_preload_libraries": "'pgbed_test'",
                       "pgbed_test__static_workers": f"'{spec}'"}).primary  # fmt: skip
    p.wait_for_log('starting background worker process "pgbed_s_restart"')
    (pid,) = p.pids("bgworker", "pgbed_s_restart") if p.flavor == "pgbed" else _title_pids(p, "pgbed_s_restart")
    os.kill(pid, signal.SIGTERM)
    p.poll_until(lambda: p.log_content().count('starting background worker process "pgbed_s_restart"') >= 2,
                 what="the worker restarted")  # fmt: skip


def _title_pids(node: Any, title: str) -> list[int]:
    """A PostgreSQL bgworker's pid by its process title (`postgres: <cluster>: <bgw_name>`): a
    worker without a database connection has no pg_stat_activity row in PostgreSQL 15."""
    got = [pid for pid, t in node.children().items() if t.rstrip().endswith(f": {title}")]
    if not got:
        raise NodeError(node._evidence(f"no process titled {title!r} among {node.children()}"))
    return got


def pg_own_workers(r: Run) -> None:
    """PostgreSQL's own workers keep their start times: on a standby the autoprewarm leader
    (ConsistentState) starts after consistency and the logical replication launcher
    (RecoveryFinished) only after promotion; a parallel query registers dynamic workers (BGW-4,
    BGW-7, REC-7)."""
    c = r.up(standbys=1, settings={"shared_preload_libraries": "'pg_prewarm'"}, sync=False)
    s = c.standbys[0]
    s.poll_until(lambda: s.log_contains('starting background worker process "autoprewarm leader"'),
                 what="autoprewarm leader on the standby")  # fmt: skip
    ev = log_events(s.log_content())
    _expect(ev.index("consistent") < ev.index("bgworker_start(autoprewarm leader)"),
            f"the autoprewarm leader (ConsistentState) started before consistency: {ev}")  # fmt: skip
    launcher = 'starting background worker process "logical replication launcher"'
    _expect(not s.log_contains(launcher), "the logical replication launcher (RecoveryFinished) started on a standby")
    r.step("autoprewarm leader after consistency, no logical replication launcher before promotion")
    c.primary.stop("fast")
    s.promote()
    s.poll_until(lambda: s.log_contains('starting background worker process "logical replication launcher"'),
                 what="logical replication launcher after promotion")  # fmt: skip
    with s.connect() as a:
        a.execute("CREATE TABLE par AS SELECT g AS i FROM generate_series(1, 1000) g")
        a.execute("SET force_parallel_mode = on")
        a.execute("SET max_parallel_workers_per_gather = 1")
        r.step(f"parallel count: {a.execute('SELECT count(*) FROM par').fetchone()[0]}")
    s.wait_for_log(r'starting background worker process "parallel worker for PID \d+"')
    ev = log_events(s.log_content())
    _expect(ev.index("promote_request") < ev.index("bgworker_start(logical replication launcher)"),
            f"the logical replication launcher started before the promotion: {ev}")  # fmt: skip


def pgbed_bgworker_view(r: Run) -> None:
    """pgbed's pg_stat_bgworker view lists static workers with their start times and states
    (pgbed-only: PostgreSQL 15 has no such view) (BGW-1, BGW-7, BGW-12)."""
    p = r.up(settings=_pgbed_test_settings()).primary
    started = "SELECT count(*) FROM pg_stat_bgworker WHERE status = 'started' AND name LIKE 'pgbed_s_%'"
    p.poll_until(lambda: p.sql(started)[0][0] == 3, what="three static workers started")
    r.shape("pg_stat_bgworker", p, "SELECT name, start_time, status FROM pg_stat_bgworker WHERE name LIKE 'pgbed_s_%'")


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("startup-shutdown", ("SHUT-1", "SHUT-2", "SHUT-3", "SHUT-5", "SHUT-7"),
             "each shutdown mode on an idle primary, restarting after each", startup_shutdown),
    Scenario("smart-shutdown-waits", ("SHUT-1", "SHUT-2"),
             "smart shutdown waits for a session and refuses new ones", smart_shutdown_waits),
    Scenario("fast-shutdown-aborts", ("SHUT-3", "CRASH-6"),
             "fast shutdown terminates a session in a transaction", fast_shutdown_aborts),
    Scenario("immediate-then-recovery", ("SHUT-7", "REC-1"),
             "immediate shutdown, then crash recovery keeps every commit", immediate_then_recovery),
    Scenario("backend-kill9", ("CRASH-1", "CRASH-4", "CRASH-6", "CRASH-7"),
             "F18: SIGKILL of a client backend crash-restarts the node", backend_kill9),
    Scenario("checkpointer-kill9", ("CRASH-1", "CRASH-4", "WALRCV-6"),
             "SIGKILL of the checkpointer crash-restarts the primary", checkpointer_kill9),
    Scenario("sql-errors", ("REC-3",), "SQLSTATEs of common mistakes on a primary and a standby", sql_errors),
    Scenario("replication-views", ("WALSND-3", "WALRCV-8"),
             "pg_stat_replication / pg_stat_wal_receiver shapes with two standbys", replication_views),
    Scenario("walreceiver-sigterm", ("WALRCV-4", "WALRCV-5", "WALRCV-6"),
             "SIGTERM of the walreceiver: a new one streams again", walreceiver_sigterm),
    Scenario("walsender-sigterm", ("WALSND-4", "WALRCV-6"),
             "SIGTERM of a walsender: the standby reconnects", walsender_sigterm),
    Scenario("walsender-kill9", ("CRASH-1", "WALSND-2", "WALRCV-6"),
             "SIGKILL of a walsender crash-restarts the primary", walsender_kill9),
    Scenario("promotion", ("REC-5", "REC-7"), "pg_promote() on a standby", promotion),
    Scenario("failover", ("REC-5", "WALRCV-1"),
             "failover with two standbys: promote, re-point, re-clone", failover),
    Scenario("bgworker-start-times", ("BGW-7", "REC-1", "REC-3", "REC-7"),
             "static workers' start times on a standby and after promotion", bgworker_start_times,
             needs_pgbed_test=True),
    Scenario("bgworker-dynamic", ("BGW-4", "BGW-9", "BGW-10", "BGW-12", "BGW-13", "BGW-14"),
             "dynamic workers: status words, restart interval, terminate, errors", bgworker_dynamic,
             needs_pgbed_test=True),
    Scenario("bgworker-crash", ("CRASH-1", "BGW-17"),
             "a crashing dynamic worker crash-restarts the node", bgworker_crash, needs_pgbed_test=True),
    Scenario("bgworker-sigterm", ("BGW-10", "BGW-18", "SIG-6"),
             "SIGTERM of a static worker: exit 1, restarted after its interval", bgworker_sigterm,
             needs_pgbed_test=True),
    Scenario("pg-own-workers", ("BGW-4", "BGW-7", "REC-7"),
             "PostgreSQL's autoprewarm leader, logical replication launcher and parallel workers",
             pg_own_workers, flavours=("postgres",)),
    Scenario("pgbed-bgworker-view", ("BGW-1", "BGW-7", "BGW-12"),
             "pgbed's pg_stat_bgworker view", pgbed_bgworker_view, flavours=("pgbed",), needs_pgbed_test=True),
]}  # fmt: skip
