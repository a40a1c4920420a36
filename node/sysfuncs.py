"""System functions and views: pg_backend_pid(), pg_terminate_backend(), pg_stat_activity, ...

What it does: registers the functions and views of node/sysquery.py's tables. Each function
takes the calling session (node/backend.py's Session) and keyword arguments named as
PostgreSQL names them, and behaves as PostgreSQL 15's does (warnings, return values, errors).

What it deliberately does not do: parse SQL. When the storage issue brings SQLite these same
callables are registered as SQLite functions and the views become virtual tables.
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
import time
from pathlib import Path
from typing import Any

from node import injection
from node import protocol as P
from node.elog import PGError
from node.proc import me, read_entry
from node.states import BackendKind
from node.sysquery import VIEWS, ViewDef, register

VERSION = "0.1.0"
SERVER_VERSION = f"15.18 (pgbed {VERSION})"

# Kinds pg_terminate_backend/pg_cancel_backend accept: those in PostgreSQL's ProcArray. Auxiliary
# processes (startup, checkpointer) get "is not a PostgreSQL backend process".
SIGNALLABLE = {BackendKind.BACKEND, BackendKind.WALSENDER, BackendKind.BGWORKER}


def _ts(t: float) -> _dt.datetime | None:
    return _dt.datetime.fromtimestamp(t, _dt.UTC) if t else None


def _find_proc(pid: int) -> dict[str, Any] | None:
    for e in me.shm.procs:
        if e.pid == pid:
            return read_entry(e)
    return None


@register("version", P.TEXT)
def version(s: Any) -> str:
    import platform

    return (f"PostgreSQL {SERVER_VERSION} on {platform.machine()}-pc-linux-gnu, compiled by CPython "
            f"{platform.python_version()}, 64-bit")  # fmt: skip


@register("pg_backend_pid", P.INT4)
def pg_backend_pid(s: Any) -> int:
    return me.pid


@register("pg_is_in_recovery", P.BOOL)
def pg_is_in_recovery(s: Any) -> bool:
    return bool(me.shm.xlog.in_recovery)


@register("pg_reload_conf", P.BOOL)
def pg_reload_conf(s: Any) -> bool:
    try:
        os.kill(me.postmaster_pid, signal.SIGHUP)
    except OSError as e:
        s.notice("WARNING", f"failed to send signal to postmaster: {e.strerror}", "01000")
        return False
    return True


def _signal_backend(s: Any, pid: int | None, sig: int) -> bool | None:
    if pid is None:
        return None
    row = _find_proc(int(pid))
    if row is None or row["kind"] not in SIGNALLABLE:
        s.notice("WARNING", f"PID {pid} is not a PostgreSQL backend process", "01000")
        return False
    try:
        os.kill(int(pid), sig)
    except OSError as e:
        s.notice("WARNING", f"could not send signal to process {pid}: {e.strerror}", "01000")
        return False
    return True


@register("pg_cancel_backend", P.BOOL, ("pid",))
def pg_cancel_backend(s: Any, pid: int | None) -> bool | None:
    return _signal_backend(s, pid, signal.SIGINT)


@register("pg_terminate_backend", P.BOOL, ("pid", "timeout"), timeout=0)
def pg_terminate_backend(s: Any, pid: int | None, timeout: int | None) -> bool | None:
    if timeout is not None and int(timeout) < 0:
        raise PGError('"timeout" must not be negative', "22023")
    ok = _signal_backend(s, pid, signal.SIGTERM)
    if not ok or not timeout:
        return ok
    deadline = time.monotonic() + int(timeout) / 1000.0
    while time.monotonic() < deadline:
        if _find_proc(int(pid)) is None:  # type: ignore[arg-type]
            return True
        s.sleep(0.01)
    s.notice("WARNING", f"backend with PID {pid} did not terminate within {timeout} milliseconds", "01000")
    return False


@register("current_setting", P.TEXT, ("setting_name", "missing_ok"), missing_ok=False)
def current_setting(s: Any, setting_name: str | None, missing_ok: bool | None) -> str | None:
    if setting_name is None:
        return None
    from node.guc import GucError

    try:
        return str(s.guc.show(setting_name))
    except GucError as e:
        if missing_ok and e.sqlstate == "42704":
            return None
        raise PGError(e.message, e.sqlstate, detail=e.detail, hint=e.hint) from None


@register("set_config", P.TEXT, ("setting_name", "new_value", "is_local"))
def set_config(s: Any, setting_name: str, new_value: str | None, is_local: bool) -> str:
    s.set_guc(setting_name, new_value, local=bool(is_local))
    return str(s.guc.show(setting_name))


@register("pg_sleep", P.VOID, ("seconds",))
def pg_sleep(s: Any, seconds: Any) -> None:
    if seconds is None:
        return None
    s.sleep(float(seconds))
    return None


@register("now", P.TIMESTAMPTZ)
def now(s: Any) -> _dt.datetime:
    return _ts(s.xact_start or s.stmt_start) or _dt.datetime.now(_dt.UTC)


@register("transaction_timestamp", P.TIMESTAMPTZ)
def transaction_timestamp(s: Any) -> _dt.datetime:
    return now(s)


@register("statement_timestamp", P.TIMESTAMPTZ)
def statement_timestamp(s: Any) -> _dt.datetime:
    return _ts(s.stmt_start) or _dt.datetime.now(_dt.UTC)


@register("clock_timestamp", P.TIMESTAMPTZ)
def clock_timestamp(s: Any) -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


@register("pg_postmaster_start_time", P.TIMESTAMPTZ)
def pg_postmaster_start_time(s: Any) -> _dt.datetime | None:
    return _ts(me.shm.postmaster_start_time)


@register("current_database", P.NAME)
def current_database(s: Any) -> str:
    return str(s.database)


for _name in ("current_user", "session_user", "user", "current_role"):
    register(_name, P.NAME)(lambda s: str(s.user))


@register("pg_is_wal_replay_paused", P.BOOL)
def pg_is_wal_replay_paused(s: Any) -> bool:
    """Always false in recovery: pgbed has no pg_wal_replay_pause(), so replay is never paused."""
    if not me.shm.xlog.in_recovery:
        raise PGError("recovery is not in progress", "55000",
                      hint="Recovery control functions can only be executed during recovery.")  # fmt: skip
    return False


@register("pg_promote", P.BOOL, ("wait", "wait_seconds"), wait=True, wait_seconds=60)
def pg_promote(s: Any, wait: bool, wait_seconds: int) -> bool:
    """REC-5: create the promote file, SIGUSR1 the postmaster, optionally wait."""
    if not me.shm.xlog.in_recovery:
        raise PGError("recovery is not in progress", "55000",
                      hint="Recovery control functions can only be executed during recovery.")  # fmt: skip
    if wait_seconds is None or int(wait_seconds) <= 0:
        raise PGError('"wait_seconds" must not be negative or zero', "22023")
    path = Path(me.datadir) / "promote"
    path.write_text("")
    try:
        os.kill(me.postmaster_pid, signal.SIGUSR1)
    except OSError:
        path.unlink(missing_ok=True)
        s.notice("WARNING", "failed to send signal to postmaster", "01000")
        return False
    if not wait:
        return True
    deadline = time.monotonic() + int(wait_seconds)
    while time.monotonic() < deadline:
        if not me.shm.xlog.in_recovery:
            return True
        s.sleep(0.1)  # PG polls every 100 ms too
    s.notice("WARNING", f"server did not promote within {wait_seconds} seconds", "01000")
    return False


@register("pgbed_injection_attach", P.VOID, ("name", "action", "arg"), arg="")
def pgbed_injection_attach(s: Any, name: str, action: str, arg: str | None) -> None:
    if name is None or action is None:
        return None
    injection.sql_attach(me.shm, me.locks, name, action, arg or "")
    return None


@register("pgbed_injection_detach", P.VOID, ("name",))
def pgbed_injection_detach(s: Any, name: str) -> None:
    if name is not None:
        injection.sql_detach(me.shm, me.locks, name)
    return None


# -- views --------------------------------------------------------------------------------------

ACTIVITY_COLUMNS = [
    ("datid", P.OID), ("datname", P.NAME), ("pid", P.INT4), ("leader_pid", P.INT4), ("usesysid", P.OID),
    ("usename", P.NAME), ("application_name", P.TEXT), ("client_addr", P.INET), ("client_hostname", P.TEXT),
    ("client_port", P.INT4), ("backend_start", P.TIMESTAMPTZ), ("xact_start", P.TIMESTAMPTZ),
    ("query_start", P.TIMESTAMPTZ), ("state_change", P.TIMESTAMPTZ), ("wait_event_type", P.TEXT),
    ("wait_event", P.TEXT), ("state", P.TEXT), ("backend_xid", P.TEXT), ("backend_xmin", P.TEXT),
    ("query_id", P.INT8), ("query", P.TEXT), ("backend_type", P.TEXT),
]  # fmt: skip
_CLIENT_KINDS = {BackendKind.BACKEND, BackendKind.WALSENDER, BackendKind.BGWORKER}


def _activity_rows(s: Any) -> list[dict[str, Any]]:
    rows = []
    for e in me.shm.procs:
        if not e.pid:
            continue
        r = read_entry(e)
        if r is None:
            continue
        kind = r["kind"]
        client = kind in _CLIENT_KINDS
        has_db = kind is BackendKind.BACKEND or bool(r["datname"])
        rows.append({
            "datid": 5 if has_db and r["datname"] else None,
            "datname": r["datname"] or None,
            "pid": r["pid"],
            "leader_pid": None,
            "usesysid": 10 if r["usename"] else None,
            "usename": r["usename"] or None,
            "application_name": r["application_name"] if client else "",
            "client_addr": r["client_addr"] or None,
            "client_hostname": None,
            "client_port": (r["client_port"] if r["client_addr"] else (-1 if kind is BackendKind.BACKEND else None)),
            "backend_start": _ts(r["backend_start"]),
            "xact_start": _ts(r["xact_start"]),
            "query_start": _ts(r["query_start"]),
            "state_change": _ts(r["state_change"]) if client else None,
            "wait_event_type": r["wait_event_type"] or None,
            "wait_event": r["wait_event"] or None,
            "state": r["state"].value if client and r["state"] is not None else None,
            "backend_xid": None,
            "backend_xmin": None,
            "query_id": None,
            "query": r["query"] if client else "",
            "backend_type": r["backend_type"],
        })  # fmt: skip
    return rows


VIEWS["pg_stat_activity"] = ViewDef(ACTIVITY_COLUMNS, _activity_rows)


def _injection_rows(s: Any) -> list[dict[str, Any]]:
    return [
        {"name": n, "action": a, "arg": g, "source": src} for n, a, g, src in injection.list_points(me.shm)
    ]


VIEWS["pgbed_injection_points"] = ViewDef(
    [("name", P.TEXT), ("action", P.TEXT), ("arg", P.TEXT), ("source", P.TEXT)], _injection_rows
)


# -- WAL positions (storage issue) ----------------------------------------------------------------


@register("pg_current_wal_lsn", P.PG_LSN)
def pg_current_wal_lsn(s: Any) -> int:
    """The flushed-or-written end of WAL; PostgreSQL reports the write position."""
    _not_in_recovery("pg_current_wal_lsn")
    return int(me.shm.xlog.insert_lsn)


@register("pg_current_wal_insert_lsn", P.PG_LSN)
def pg_current_wal_insert_lsn(s: Any) -> int:
    _not_in_recovery("pg_current_wal_insert_lsn")
    return int(me.shm.xlog.insert_lsn)


@register("pg_current_wal_flush_lsn", P.PG_LSN)
def pg_current_wal_flush_lsn(s: Any) -> int:
    _not_in_recovery("pg_current_wal_flush_lsn")
    return int(me.shm.xlog.flush_lsn)


@register("pg_last_wal_replay_lsn", P.PG_LSN)
def pg_last_wal_replay_lsn(s: Any) -> int | None:
    xl = me.shm.xlog
    # GetXLogReplayRecPtr: the end of the last replayed record, still after recovery has ended
    # (promotion, crash recovery); NULL when the server started without recovery
    return int(xl.replay_lsn) if xl.in_recovery or xl.recovery_ran else None


@register("pg_wal_lsn_diff", P.NUMERIC, ("lsn1", "lsn2"))
def pg_wal_lsn_diff(s: Any, lsn1: Any, lsn2: Any) -> Any:
    from decimal import Decimal

    if lsn1 is None or lsn2 is None:
        return None
    return Decimal(_lsn(lsn1) - _lsn(lsn2))


def _lsn(v: Any) -> int:
    if isinstance(v, int):
        return v
    try:
        return P.parse_lsn(str(v))
    except ValueError:
        raise PGError(f'invalid input syntax for type pg_lsn: "{v}"', "22P02") from None


def _not_in_recovery(fn: str) -> None:
    if me.shm.xlog.in_recovery:
        raise PGError("recovery is in progress", "55000",
                      hint="WAL control functions cannot be executed during recovery.")  # fmt: skip


@register("pg_walfile_name", P.TEXT, ("lsn",))
def pg_walfile_name(s: Any, lsn: Any) -> str | None:
    from node import wal

    if lsn is None:
        return None
    if me.shm.xlog.in_recovery:
        raise PGError("recovery is in progress", "55000",
                      hint="pg_walfile_name() cannot be executed during recovery.")  # fmt: skip
    return wal.walfile_name(_lsn(lsn), int(me.shm.xlog.timeline), int(me.shm.xlog.segsize))


@register("txid_current", P.INT8)
def txid_current(s: Any) -> int:
    """Assigns an xid now if the transaction has none (PostgreSQL does the same)."""
    sqls = s.sql_session()
    sqls._check_writable_for_xid()
    sqls.ensure_write_txn()
    if s.tx == "I":
        xid = sqls.xid
        sqls.commit()
        return xid
    return int(sqls.xid)


# Registered at import: views and functions defined in their own modules.
from node import bgwviews, replviews  # noqa: E402,F401
from node.contrib import pgbed_test, worker_spi  # noqa: E402,F401 - they answer only after CREATE EXTENSION
