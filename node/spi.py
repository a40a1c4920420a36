"""SPI for background workers: SQL in a worker's own transactions (executor/spi.c in spirit),
and BackgroundWorkerInitializeConnection.

What it does: `initialize_connection(dbname, user, flags)` and
`initialize_connection_by_oid(dboid, roleoid, flags)` check the database and role as InitPostgres
does (FATAL 3D000 / 28000, `role "x" is not permitted to log in` for a NOLOGIN role unless
flags has BGWORKER_BYPASS_ROLELOGINCHECK; BGWORKER_BYPASS_ALLOWCONN is accepted and changes
nothing, because pgbed's one database always allows connections), and fills the worker's pg_stat_activity row (datname,
usename). `SPI` runs statements through the same SQL layer as client backends
(node/sqlexec.py) inside explicit transactions: `start_transaction()`, `execute(sql, params)`
(rows as tuples), `commit()`, `rollback()`, with pg_stat_activity reporting (state
active/idle, query, query_start, xact_start) as pgstat_report_activity does.

What it deliberately does not do: cursors, prepared plans, subtransactions, or run without a
database connection (BGWORKER_BACKEND_DATABASE_CONNECTION is required, as in PostgreSQL).
"""

from __future__ import annotations

import time
from typing import Any

from node import bgworker, elog
from node.bgwlist import BGWORKER_BACKEND_DATABASE_CONNECTION, BGWORKER_BYPASS_ROLELOGINCHECK
from node.elog import PGError
from node.proc import me, report_activity
from node.sqlexec import SqlOwner
from node.states import ActivityState


class _NoClient:
    """A worker has no client: whatever a session would send goes nowhere."""

    def send(self, data: bytes) -> None:
        pass

    def flush(self) -> None:
        pass


class WorkerSession(SqlOwner):
    """The parts of a backend's Session that the SQL layer uses."""

    def __init__(self, dbname: str, user: str) -> None:
        self.guc = me.guc
        self.user = user
        self.database = dbname
        self.tx = "I"
        self.xact_start = 0.0
        self.stmt_start = 0.0
        self.stmt_deadline: float | None = None
        self.sql: Any = None
        self.param_oids: list[int] = []
        self.conn = _NoClient()

    def check_for_interrupts(self) -> None:
        bgworker.check_for_interrupts()

    def sleep(self, seconds: float, wait_event: tuple[str, str] = ("Timeout", "PgSleep")) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.check_for_interrupts()
            bgworker.wait_latch(left, wait_event[1])

    def notice(self, severity: str, message: str, sqlstate: str = "01000") -> None:
        elog.log(severity if severity in ("WARNING", "LOG") else "DEBUG1", message, sqlstate=sqlstate)


_session: WorkerSession | None = None


def initialize_connection(dbname: str | None, user: str | None, flags: int = 0) -> WorkerSession:
    """BackgroundWorkerInitializeConnection."""
    w = bgworker._worker
    if w is None or not w.flags & BGWORKER_BACKEND_DATABASE_CONNECTION:
        raise PGError("database connection requirement not indicated during registration", "XX000")
    dbname = dbname or "postgres"
    if dbname != "postgres":
        raise elog.fatal(f'database "{dbname}" does not exist', "3D000")
    return _connect(dbname, user or _bootstrap_superuser(), flags)


def initialize_connection_by_oid(dboid: int, roleoid: int, flags: int = 0) -> WorkerSession:
    """BackgroundWorkerInitializeConnectionByOid: role OID 0 is the bootstrap superuser."""
    from node.auth import role_name_by_oid
    from node.pgcatalog import DATABASE_NAME, DATABASE_OID

    w = bgworker._worker
    if w is None or not w.flags & BGWORKER_BACKEND_DATABASE_CONNECTION:
        raise PGError("database connection requirement not indicated during registration", "XX000")
    if dboid != DATABASE_OID:
        raise elog.fatal(f"database {dboid} does not exist", "3D000")
    if roleoid == 0:
        return _connect(DATABASE_NAME, _bootstrap_superuser(), flags)
    user = role_name_by_oid(me.datadir, roleoid)
    if user is None:
        raise elog.fatal(f"role with OID {roleoid} does not exist", "28000")
    return _connect(DATABASE_NAME, user, flags)


def _connect(dbname: str, user: str, flags: int) -> WorkerSession:
    """InitializeSessionUserId's checks, then the pg_stat_activity row."""
    global _session
    from node.auth import lookup_role

    row = lookup_role(me.datadir, user)
    if row is None:
        raise elog.fatal(f'role "{user}" does not exist', "28000")
    if not row.rolcanlogin and not flags & BGWORKER_BYPASS_ROLELOGINCHECK:
        raise elog.fatal(f'role "{user}" is not permitted to log in', "28000")
    e = me.entry
    if e is not None:
        e.changecount += 1
        e.datname = dbname.encode()[:63]
        e.usename = user.encode()[:63]
        e.changecount += 1
    _session = WorkerSession(dbname, user)
    return _session


def _bootstrap_superuser() -> str:
    import apsw

    from node.storage import heap_path

    conn = apsw.Connection(str(heap_path(me.datadir)), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(5000)
    try:
        row = conn.execute("SELECT rolname FROM pgbed_authid ORDER BY rowid LIMIT 1").fetchone()
        return str(row[0]) if row else "postgres"
    finally:
        conn.close()


class SPI:
    """Statements in explicit transactions, on the worker's connection."""

    def __init__(self, session: WorkerSession | None = None) -> None:
        s = session or _session
        if s is None:
            raise PGError("SPI used before initialize_connection()", "XX000")
        self.s = s

    def start_transaction(self, query: str | None = None) -> None:
        """SetCurrentStatementStartTimestamp + StartTransactionCommand + pgstat_report_activity."""
        now = time.time()
        self.s.stmt_start = now
        self.s.xact_start = now
        self.s.tx = "T"
        report_activity(ActivityState.ACTIVE, query or "", xact_start=now)

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        self.s.check_for_interrupts()
        sqls = self.s.sql_session()
        plan = sqls.plan(sql)
        try:
            result = sqls.run(plan, list(params or []))
        except BaseException:
            self.s.tx = "E"
            raise
        return [tuple(r) for r in (result.rows or [])]

    def commit(self) -> None:
        sqls = self.s.sql_session()
        sqls.commit()
        self.s.tx = "I"
        self.s.xact_start = 0.0
        report_activity(ActivityState.IDLE, xact_start=0.0)

    def rollback(self) -> None:
        sqls = self.s.sql_session()
        sqls.rollback()
        self.s.tx = "I"
        self.s.xact_start = 0.0
        report_activity(ActivityState.IDLE, xact_start=0.0)
