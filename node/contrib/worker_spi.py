"""worker_spi: PostgreSQL's test module of the same name, in Python (reference §8, SPI-1..8).

What it does
- SPI-1 settings: worker_spi.naptime (s, default 10), worker_spi.database (default postgres),
  worker_spi.role (default: the bootstrap superuser) always; worker_spi.total_workers (default 2,
  1..100, postmaster) only when preloaded.
- SPI-2 static workers when preloaded: `worker_spi worker N`, type `worker_spi`, shared memory +
  database connection, RecoveryFinished, NEVER_RESTART, argument N.
- SPI-3/4/5/6/7 the worker: handlers first (SIGHUP: flag + latch; SIGTERM: the standard die),
  unblock, connect, log `<name> initialized with schemaN.counted`, create schemaN.counted and its
  partial unique index if missing, then every naptime (and at once after a SIGHUP) one
  transaction that deletes the delta rows and adds their sum to the total row, logging
  `<name>: count in schemaN.counted is now V` when a total exists.
- SPI-8 `worker_spi_launch(index int4, dboid oid default 0, roleoid oid default 0, flags text[]
  default '{}')` (after CREATE EXTENSION worker_spi): STRICT, registers `worker_spi dynamic
  worker <index>` with the caller as notify pid, waits for startup (blocking on a hot standby
  until promotion or cancel), returns the pid, NULL when no slot is free. dboid 0 is
  worker_spi.database, roleoid 0 is worker_spi.role (or the bootstrap superuser); the worker
  connects by OID with the flags as BGWORKER_BYPASS_* bits, so a NOLOGIN role needs
  ROLELOGINCHECK (otherwise FATAL `role "r" is not permitted to log in`), and an unknown OID is
  the worker's FATAL, not the caller's ERROR, as in PostgreSQL.

What it deliberately does not do: more than pgbed's one database (OID 5); ALLOWCONN is accepted
and has nothing to bypass, since that database always allows connections.
"""

from __future__ import annotations

import signal
from typing import Any

from node import bgworker, elog, spi
from node import protocol as P
from node.auth import role_oid_by_name
from node.bgwlist import (
    BGW_NEVER_RESTART,
    BGWORKER_BACKEND_DATABASE_CONNECTION,
    BGWORKER_BYPASS_ALLOWCONN,
    BGWORKER_BYPASS_ROLELOGINCHECK,
    BGWORKER_SHMEM_ACCESS,
    StartTime,
    Status,
    WorkerDef,
)
from node.elog import PGError
from node.proc import count_signal, install_handler, me, report_activity
from node.states import ActivityState
from node.sysquery import register

POSTGRES_DBOID = 5
_got_sighup = False


def define_settings(*, preloaded: bool) -> None:
    """DefineCustom*Variable for the module's settings (SPI-1), then MarkGUCPrefixReserved."""
    from node.guc import GucContext, GucType, Setting

    defs = [
        Setting("worker_spi.naptime", GucType.INT, 10, GucContext.SIGHUP, "Duration between each check (in seconds).",
                "Customized Options", min=1, max=2**31 - 1, unit="s"),
        Setting("worker_spi.database", GucType.STRING, "postgres", GucContext.SIGHUP,
                "Database to connect to.", "Customized Options"),
        Setting("worker_spi.role", GucType.STRING, "", GucContext.SIGHUP, "Role to connect with.",
                "Customized Options"),
    ]  # fmt: skip
    if preloaded:
        defs.append(Setting("worker_spi.total_workers", GucType.INT, 2, GucContext.POSTMASTER,
                            "Number of workers.", "Customized Options", min=1, max=100))  # fmt: skip
    for d in defs:
        msg = me.guc.define_custom(d)
        if msg:
            elog.log("WARNING", msg)


def _PG_init() -> None:
    """SPI-2: static workers when loaded by shared_preload_libraries."""
    define_settings(preloaded=True)
    for n in range(1, int(me.guc.get("worker_spi.total_workers")) + 1):
        bgworker.register_background_worker(WorkerDef(
            name=f"worker_spi worker {n}", type="worker_spi",
            flags=BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION,
            start_time=StartTime.RECOVERY_FINISHED, restart_time=BGW_NEVER_RESTART,
            function="worker_spi:worker_spi_main", main_arg=n,
        ))  # fmt: skip


# -- the worker ---------------------------------------------------------------------------------


def _sighup(signum: int, frame: Any) -> None:
    """worker_spi_sighup: a flag and the latch (SIG-1; errno is CPython's business, SIG-2)."""
    global _got_sighup
    count_signal(signum)
    _got_sighup = True
    if me.latch is not None:
        me.latch.set()


UPDATE_SQL = ("WITH deleted AS (DELETE FROM {schema}.{table} WHERE type = 'delta' RETURNING value), "
              "total AS (SELECT coalesce(sum(value), 0) as sum FROM deleted) "
              "UPDATE {schema}.{table} SET value = {table}.value + total.sum "
              "FROM total WHERE type = 'total' RETURNING {table}.value")  # fmt: skip


def worker_spi_main(index: int) -> None:
    global _got_sighup
    w = bgworker._worker
    assert w is not None
    install_handler(signal.SIGHUP, _sighup)
    install_handler(signal.SIGTERM, bgworker._die)  # the standard die
    bgworker.unblock_signals()
    schema, table = f"schema{index}", "counted"
    define_settings(preloaded=False)
    if len(w.extra) >= 12:  # a dynamic worker: database, role and connection flags by OID
        dboid, roleoid, flags = (int.from_bytes(w.extra[i:i + 4], "little") for i in (0, 4, 8))
        session = spi.initialize_connection_by_oid(dboid, roleoid, flags)
    else:
        dbname = str(me.guc.get("worker_spi.database"))
        role = str(me.guc.get("worker_spi.role") or "") or None
        session = spi.initialize_connection(dbname, role)
    elog.log("LOG", f"{w.name} initialized with {schema}.{table}")
    s = spi.SPI(session)
    try:
        s.start_transaction("initializing worker_spi schema")
        if not session.sql_session().catalog.has_schema(schema):
            s.execute(f"CREATE SCHEMA {schema}")
            s.execute(f"CREATE TABLE {schema}.{table} (type text CHECK (type IN ('total', 'delta')), value integer)")
            s.execute(f"CREATE UNIQUE INDEX {table}_unique_total ON {schema}.{table} (type) WHERE type = 'total'")
        s.commit()
    except PGError as e:
        raise elog.fatal(e.message, e.sqlstate, detail=e.detail) from None  # SPI-3: failure is FATAL
    query = UPDATE_SQL.format(schema=schema, table=table)
    while True:
        bgworker.wait_latch(float(me.guc.get("worker_spi.naptime")), "WorkerSpiMain")
        bgworker.check_for_interrupts()
        if _got_sighup:
            _got_sighup = False
            from node.config import reload_in_child

            reload_in_child()
        s.start_transaction(query)
        try:
            rows = s.execute(query)
        except PGError as e:
            raise elog.fatal(f"cannot select from table {schema}.{table}: {e.message}", e.sqlstate) from None
        if rows and rows[0][0] is not None:
            elog.log("LOG", f"{w.name}: count in {schema}.{table} is now {rows[0][0]}")
        s.commit()


# -- worker_spi_launch (after CREATE EXTENSION worker_spi) ---------------------------------------

_VALID_FLAGS = {"ALLOWCONN": BGWORKER_BYPASS_ALLOWCONN, "ROLELOGINCHECK": BGWORKER_BYPASS_ROLELOGINCHECK}


def _flags(value: Any) -> int:
    """The text[] of connection flags as BGWORKER_BYPASS_* bits, with SPI-8's errors."""
    if value is None:
        return 0
    text = str(value).strip()
    if text.startswith("{") and text.endswith("}"):
        inner = text[1:-1]
        if "{" in inner:
            raise PGError("flags array must be one-dimensional", "22023")
        items = [x.strip() for x in inner.split(",") if x.strip()]
    else:
        items = [text] if text else []
    out = 0
    for it in items:
        if it.upper() == "NULL":
            raise PGError("flags array must not contain nulls", "22004")
        it = it.strip('"')
        if it not in _VALID_FLAGS:
            raise PGError("incorrect flag value found in array", "22023")
        out |= _VALID_FLAGS[it]
    return out


@register("worker_spi_launch", P.INT4, ("index", "dboid", "roleoid", "flags"), dboid=0, roleoid=0, flags="{}")
def worker_spi_launch(s: Any, index: Any, dboid: Any, roleoid: Any, flags: Any) -> int | None:
    from node import extension

    extension.require(s, "worker_spi", "worker_spi_launch(integer, oid, oid, text[])")
    if index is None or dboid is None or roleoid is None or flags is None:
        return None  # STRICT
    conn_flags = _flags(flags)
    define_settings(preloaded=False)
    dboid, roleoid = int(dboid), int(roleoid)
    if dboid == 0:  # get_database_oid(worker_spi.database, missing_ok=false)
        if str(me.guc.get("worker_spi.database")) != "postgres":
            raise PGError(f'database "{me.guc.get("worker_spi.database")}" does not exist', "3D000")
        dboid = POSTGRES_DBOID
    role = str(me.guc.get("worker_spi.role") or "")
    if roleoid == 0 and role:  # get_role_oid(worker_spi.role, missing_ok=false)
        found = role_oid_by_name(me.datadir, role)
        if found is None:
            raise PGError(f'role "{role}" does not exist', "42704")
        roleoid = found
    extra = b"".join(x.to_bytes(4, "little") for x in (dboid, roleoid, conn_flags))
    w = WorkerDef(name=f"worker_spi dynamic worker {int(index)}", type="worker_spi dynamic",
                  flags=BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION,
                  start_time=StartTime.RECOVERY_FINISHED, restart_time=BGW_NEVER_RESTART,
                  function="worker_spi:worker_spi_main", main_arg=int(index), extra=extra,
                  notify_pid=me.pid)  # fmt: skip
    h = bgworker.register_dynamic_background_worker(w)
    if h is None:
        return None
    report_activity(ActivityState.ACTIVE)
    st, pid = h.wait_for_startup(s.check_for_interrupts)
    if st is Status.STOPPED:
        raise PGError("could not start background process", "53000",
                      hint="More details may be available in the server log.")  # fmt: skip
    if st is Status.POSTMASTER_DIED:
        raise PGError("cannot start background processes without postmaster", "55000",
                      hint="Kill all remaining database processes and restart the database.")  # fmt: skip
    return pid
