"""PostgreSQL catalog and statistics views, pg_control functions, and psql's catalog queries.

What it does:
- Registers system views into node/sysquery.py's `VIEWS` at import (like node/sysfuncs.py):
  `pg_settings` (from the session's GucState), `pg_database`, `pg_stat_database`, `pg_roles`,
  `pg_user`, and `pg_control_checkpoint` / `pg_control_system` (views named like the functions,
  so that `SELECT * FROM pg_control_checkpoint()` can be routed to them, see below).
- Registers `pg_control_checkpoint()` and `pg_control_system()` into sysquery's `FUNCTIONS`. The
  evaluator has no composite types, so the functions return the record's text form with type
  `record` (2249): `SELECT pg_control_system()` prints exactly what PostgreSQL prints.
- `intercept(sql, session) -> Result | None` recognises the catalog queries psql 15 sends for
  `\\dt`, `\\d`, `\\ds`, `\\dv` (with or without a pattern), `\\d NAME` (every query of
  describeOneTableDetails for an ordinary table), `\\l`, `\\dn` and `\\du`, by a fingerprint
  (tokens with whitespace collapsed, keywords lowercased, string and number literals replaced
  by `?`), and answers them from pgbed's own catalog (node/sql/catalog.py) with the column names
  and type OIDs PostgreSQL 15 sends. It never translates psql's SQL. The query texts were
  captured from psql 15.18 against PostgreSQL 15.18 (log_statement=all); the tests keep them.

Decisions:
- Databases: pgbed has exactly one database, `postgres` (oid 5, as initdb gives it).
  template0/template1 are NOT reported: a pg_database row promises that a connection to it
  works (datallowconn), and pgbed has no template databases. `\\l` therefore lists one row.
- Roles: the bootstrap superuser `postgres` (oid 10), plus the rows of a heap table
  `pgbed_authid(rolname, rolsuper, rolcanlogin, rolpassword, rolvaliduntil)` when it exists
  (oid 16384 + rowid). Passwords are never shown (`********`, as PostgreSQL's pg_roles does).
  PostgreSQL's predefined `pg_*` roles are not listed.
- Relation OIDs: a table's oid is 16384 + its rowid in `pgbed_table` (stable: pgbed never
  VACUUMs the heap). psql looks a table up by name and then queries by that oid.
- `\\d NAME` finds ordinary tables only: sequences (serial columns' `<table>_<col>_seq`,
  listed by `\\d`/`\\ds`) and indexes are not described (psql prints "Did not find any
  relation named ...").
- Statistics counters live in `me.shm.counters` at the slots of `StatCounter` (below); this
  module only reads them. `numbackends` is counted from the process array.

What it deliberately does not do: general pg_catalog emulation (pg_class, pg_attribute ... are
not queryable), `\\d+`/`\\dt+`/`\\di`/`\\df` and other meta-commands (their queries do not match
and fall through to the normal path, which reports them as unsupported), pattern forms of
`\\l`/`\\dn`/`\\du`, or default expressions beyond literals, now() and serial sequences (other
defaults are shown in their SQLite spelling). CHECK constraints are shown as pgbed stored them
in SQLite (`CHECK (v > 0)`, where PostgreSQL prints `CHECK (v > 0::double precision)`).
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node import protocol as P
from node import sysquery as _sysquery
from node.proc import me, read_entry
from node.states import BackendKind
from node.sysquery import VIEWS, Result, ViewDef, register

__all__ = [
    "BOOTSTRAP_SUPERUSER",
    "DATABASE_NAME",
    "DATABASE_OID",
    "STAT_COUNTER_BASE",
    "Result",
    "StatCounter",
    "count_stat",
    "fingerprint",
    "intercept",
    "routed_function_view",
]

# -- type OIDs protocol.py does not name ----------------------------------------------------------
XID = 28
NAME_ARRAY = 1003
ACLITEM_ARRAY = 1034
RECORD = 2249
_TYPLEN = {XID: 4, RECORD: -1, NAME_ARRAY: -1, ACLITEM_ARRAY: -1}

DATABASE_OID = 5
DATABASE_NAME = "postgres"
BOOTSTRAP_SUPERUSER = "postgres"
BOOTSTRAP_SUPERUSER_OID = 10
FIRST_NORMAL_OID = 16384
ENCODING_UTF8 = 6
LOCALE = "C.UTF-8"


def _col(name: str, oid: int) -> P.Column:
    c = P.Column.for_type(name, oid)
    if oid in _TYPLEN:
        c.typlen = _TYPLEN[oid]
    return c


def _ts(t: float) -> _dt.datetime | None:
    return _dt.datetime.fromtimestamp(t, _dt.UTC) if t else None


def _ts_seconds(t: float) -> _dt.datetime | None:
    """pg_control keeps pg_time_t (whole seconds); PostgreSQL shows no fraction."""
    return _ts(float(int(t))) if t else None


def _shm() -> Any:
    return getattr(me, "shm", None)


# =================================================================================================
# Statistics counters (pg_stat_database)
# =================================================================================================

STAT_COUNTER_BASE = 32  # slots 0..31 of me.shm.counters are left to others


class StatCounter(enum.IntEnum):
    """Slots of `me.shm.counters` (uint64 each) holding the database `postgres`'s statistics.

    Who writes (the lead wires it): backends add to them, e.g. `count_stat(XACT_COMMIT)` at
    every commit. Values are cumulative since the shared memory segment was created (a crash
    restart starts them at 0, as PostgreSQL's stats are reset after a crash).
      XACT_COMMIT / XACT_ROLLBACK     transactions committed / rolled back (incl. implicit ones)
      BLKS_READ / BLKS_HIT            pages read from disk / found in cache (SQLite page cache)
      TUP_RETURNED / TUP_FETCHED      rows scanned / rows returned by queries
      TUP_INSERTED / TUP_UPDATED / TUP_DELETED   rows changed by committed DML
      CONFLICTS, TEMP_FILES, TEMP_BYTES, DEADLOCKS  as PostgreSQL's columns
      SESSIONS, SESSIONS_ABANDONED, SESSIONS_FATAL, SESSIONS_KILLED  as PostgreSQL's columns
      SESSION_TIME_US, ACTIVE_TIME_US, IDLE_IN_TRANSACTION_TIME_US   microseconds (the view
                                      reports milliseconds as float8, as PostgreSQL does)
      STATS_RESET_US                  Unix time of the last reset in microseconds; 0 = never
    """

    XACT_COMMIT = STAT_COUNTER_BASE + 0
    XACT_ROLLBACK = STAT_COUNTER_BASE + 1
    BLKS_READ = STAT_COUNTER_BASE + 2
    BLKS_HIT = STAT_COUNTER_BASE + 3
    TUP_RETURNED = STAT_COUNTER_BASE + 4
    TUP_FETCHED = STAT_COUNTER_BASE + 5
    TUP_INSERTED = STAT_COUNTER_BASE + 6
    TUP_UPDATED = STAT_COUNTER_BASE + 7
    TUP_DELETED = STAT_COUNTER_BASE + 8
    CONFLICTS = STAT_COUNTER_BASE + 9
    TEMP_FILES = STAT_COUNTER_BASE + 10
    TEMP_BYTES = STAT_COUNTER_BASE + 11
    DEADLOCKS = STAT_COUNTER_BASE + 12
    SESSIONS = STAT_COUNTER_BASE + 13
    SESSIONS_ABANDONED = STAT_COUNTER_BASE + 14
    SESSIONS_FATAL = STAT_COUNTER_BASE + 15
    SESSIONS_KILLED = STAT_COUNTER_BASE + 16
    SESSION_TIME_US = STAT_COUNTER_BASE + 17
    ACTIVE_TIME_US = STAT_COUNTER_BASE + 18
    IDLE_IN_TRANSACTION_TIME_US = STAT_COUNTER_BASE + 19
    STATS_RESET_US = STAT_COUNTER_BASE + 20


def count_stat(counter: StatCounter, n: int = 1) -> None:
    """Add `n` to a counter. A plain read-modify-write: two processes adding at the same instant
    can lose one addition (statistics tolerate that; PostgreSQL's are lossy too). Wrap it in an
    LWLock if exact counts are ever needed."""
    shm = _shm()
    if shm is not None:
        shm.counters[int(counter)] += n


def _counter(c: StatCounter) -> int:
    shm = _shm()
    return int(shm.counters[int(c)]) if shm is not None else 0


# =================================================================================================
# pg_settings
# =================================================================================================

_CATEGORY = {
    "FILE LOCATIONS": "File Locations",
    "CONNECTIONS AND AUTHENTICATION": "Connections and Authentication",
    "RESOURCE USAGE (except WAL)": "Resource Usage",
    "WRITE-AHEAD LOG": "Write-Ahead Log",
    "REPLICATION": "Replication",
    "REPORTING AND LOGGING": "Reporting and Logging",
    "CLIENT CONNECTION DEFAULTS": "Client Connection Defaults",
    "VERSION AND PLATFORM COMPATIBILITY": "Version and Platform Compatibility",
    "ERROR HANDLING": "Error Handling",
    "PRESET OPTIONS": "Preset Options",
    "PGBED": "Customized Options",
    "": "Customized Options",
}

SETTINGS_COLUMNS = [
    ("name", P.TEXT), ("setting", P.TEXT), ("unit", P.TEXT), ("category", P.TEXT), ("short_desc", P.TEXT),
    ("extra_desc", P.TEXT), ("context", P.TEXT), ("vartype", P.TEXT), ("source", P.TEXT), ("min_val", P.TEXT),
    ("max_val", P.TEXT), ("enumvals", P.TEXT), ("boot_val", P.TEXT), ("reset_val", P.TEXT),
    ("sourcefile", P.TEXT), ("sourceline", P.INT4), ("pending_restart", P.BOOL),
]  # fmt: skip


def _raw_value(s: Any, v: Any, *, show_octal: bool) -> str:
    """A value in base units as pg_settings shows it (no unit conversion, unlike SHOW)."""
    from node.guc import GucType

    if s.type is GucType.BOOL:
        return "on" if v else "off"
    if s.type is GucType.INT:
        return f"{int(v):04o}" if (show_octal and s.octal) else str(int(v))
    if s.type is GucType.REAL:
        return f"{float(v):g}"
    return str(v)


def _num(s: Any, v: float | None) -> str | None:
    from node.guc import GucType

    if v is None or s.type not in (GucType.INT, GucType.REAL):
        return None
    return str(int(v)) if s.type is GucType.INT else f"{float(v):g}"


def _source_location(guc: Any, name: str) -> tuple[str | None, int | None]:
    """sourcefile/sourceline. GucState keeps them on its private slots; a public accessor
    (`GucState.source_location(name)`) is used instead when it exists."""
    fn = getattr(guc, "source_location", None)
    if callable(fn):
        loc = fn(name)
        return (loc[0], loc[1]) if loc else (None, None)
    slot = getattr(guc, "_slots", {}).get(name.lower())
    f = getattr(slot, "sourcefile", None)
    return (f, int(getattr(slot, "sourceline", 0)) or None) if f else (None, None)


def _pg_array(items: list[str]) -> str:
    out = []
    for it in items:
        if it == "" or it.upper() == "NULL" or any(c in it for c in '{}",\\ '):
            it = '"' + it.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append(it)
    return "{" + ",".join(out) + "}"


def settings_rows(session: Any) -> list[dict[str, Any]]:
    from node.guc import GucSource, GucType

    guc = session.guc
    rows = []
    for name, _shown, _desc in guc.show_all():
        s = guc.setting(name)
        src = guc.source(name)
        enumvals = _pg_array([n for n, _v, hidden in s.enum_values if not hidden]) if s.type is GucType.ENUM else None
        f, line = _source_location(guc, name) if src == GucSource.FILE else (None, None)
        rows.append({
            "name": s.name,
            "setting": _raw_value(s, guc.get(name), show_octal=True),
            "unit": s.unit if s.type in (GucType.INT, GucType.REAL) else None,
            "category": _CATEGORY.get(s.group, s.group.title()),
            "short_desc": s.short_desc,
            "extra_desc": None,
            "context": s.context.label,
            "vartype": s.type.value,
            "source": src.label,
            "min_val": _num(s, s.min),
            "max_val": _num(s, s.max),
            "enumvals": enumvals,
            "boot_val": _raw_value(s, s.default, show_octal=False),
            "reset_val": _raw_value(s, guc.reset_value(name), show_octal=False),
            "sourcefile": f,
            "sourceline": line,
            "pending_restart": False,
        })  # fmt: skip
    return rows


VIEWS["pg_settings"] = ViewDef(SETTINGS_COLUMNS, settings_rows)


# =================================================================================================
# pg_database, pg_stat_database
# =================================================================================================

DATABASE_COLUMNS = [
    ("oid", P.OID), ("datname", P.NAME), ("datdba", P.OID), ("encoding", P.INT4), ("datlocprovider", P.CHAR),
    ("datistemplate", P.BOOL), ("datallowconn", P.BOOL), ("datconnlimit", P.INT4), ("datfrozenxid", XID),
    ("datminmxid", XID), ("dattablespace", P.OID), ("datcollate", P.TEXT), ("datctype", P.TEXT),
    ("daticulocale", P.TEXT), ("datcollversion", P.TEXT), ("datacl", ACLITEM_ARRAY),
]  # fmt: skip


def database_rows(session: Any) -> list[dict[str, Any]]:
    return [{
        "oid": DATABASE_OID, "datname": DATABASE_NAME, "datdba": BOOTSTRAP_SUPERUSER_OID,
        "encoding": ENCODING_UTF8, "datlocprovider": "c", "datistemplate": False, "datallowconn": True,
        "datconnlimit": -1, "datfrozenxid": 716, "datminmxid": 1, "dattablespace": 1663, "datcollate": LOCALE,
        "datctype": LOCALE, "daticulocale": None, "datcollversion": None, "datacl": None,
    }]  # fmt: skip


VIEWS["pg_database"] = ViewDef(DATABASE_COLUMNS, database_rows)

STAT_DATABASE_COLUMNS = [
    ("datid", P.OID), ("datname", P.NAME), ("numbackends", P.INT4), ("xact_commit", P.INT8),
    ("xact_rollback", P.INT8), ("blks_read", P.INT8), ("blks_hit", P.INT8), ("tup_returned", P.INT8),
    ("tup_fetched", P.INT8), ("tup_inserted", P.INT8), ("tup_updated", P.INT8), ("tup_deleted", P.INT8),
    ("conflicts", P.INT8), ("temp_files", P.INT8), ("temp_bytes", P.INT8), ("deadlocks", P.INT8),
    ("checksum_failures", P.INT8), ("checksum_last_failure", P.TIMESTAMPTZ), ("blk_read_time", P.FLOAT8),
    ("blk_write_time", P.FLOAT8), ("session_time", P.FLOAT8), ("active_time", P.FLOAT8),
    ("idle_in_transaction_time", P.FLOAT8), ("sessions", P.INT8), ("sessions_abandoned", P.INT8),
    ("sessions_fatal", P.INT8), ("sessions_killed", P.INT8), ("stats_reset", P.TIMESTAMPTZ),
]  # fmt: skip

_COUNTED_COLUMNS = {
    "xact_commit": StatCounter.XACT_COMMIT, "xact_rollback": StatCounter.XACT_ROLLBACK,
    "blks_read": StatCounter.BLKS_READ, "blks_hit": StatCounter.BLKS_HIT,
    "tup_returned": StatCounter.TUP_RETURNED, "tup_fetched": StatCounter.TUP_FETCHED,
    "tup_inserted": StatCounter.TUP_INSERTED, "tup_updated": StatCounter.TUP_UPDATED,
    "tup_deleted": StatCounter.TUP_DELETED, "conflicts": StatCounter.CONFLICTS,
    "temp_files": StatCounter.TEMP_FILES, "temp_bytes": StatCounter.TEMP_BYTES,
    "deadlocks": StatCounter.DEADLOCKS, "sessions": StatCounter.SESSIONS,
    "sessions_abandoned": StatCounter.SESSIONS_ABANDONED, "sessions_fatal": StatCounter.SESSIONS_FATAL,
    "sessions_killed": StatCounter.SESSIONS_KILLED,
}  # fmt: skip
_TIME_COLUMNS = {
    "session_time": StatCounter.SESSION_TIME_US, "active_time": StatCounter.ACTIVE_TIME_US,
    "idle_in_transaction_time": StatCounter.IDLE_IN_TRANSACTION_TIME_US,
}  # fmt: skip


def _numbackends() -> int:
    shm = _shm()
    if shm is None:
        return 0
    n = 0
    for e in shm.procs:
        if not e.pid:
            continue
        r = read_entry(e)
        if r is not None and r["kind"] in (BackendKind.BACKEND, BackendKind.WALSENDER, BackendKind.BGWORKER) \
                and r["datname"] == DATABASE_NAME:  # fmt: skip
            n += 1
    return n


def stat_database_rows(session: Any) -> list[dict[str, Any]]:
    """Two rows as in PostgreSQL 15: datid 0 (shared objects; pgbed has none, so zeros) and
    the database `postgres` from the StatCounter slots."""
    shared: dict[str, Any] = {c: 0 for c, t in STAT_DATABASE_COLUMNS if t in (P.INT8, P.FLOAT8, P.INT4)}
    shared.update(datid=0, datname=None, checksum_failures=None, checksum_last_failure=None, stats_reset=None)
    db: dict[str, Any] = dict(shared)
    db.update(datid=DATABASE_OID, datname=DATABASE_NAME, numbackends=_numbackends())
    for col, c in _COUNTED_COLUMNS.items():
        db[col] = _counter(c)
    for col, c in _TIME_COLUMNS.items():
        db[col] = _counter(c) / 1000.0
    reset_us = _counter(StatCounter.STATS_RESET_US)
    db["stats_reset"] = _ts(reset_us / 1e6) if reset_us else None
    shared["numbackends"] = 0
    return [shared, db]


VIEWS["pg_stat_database"] = ViewDef(STAT_DATABASE_COLUMNS, stat_database_rows)


# =================================================================================================
# pg_roles, pg_user
# =================================================================================================

ROLES_COLUMNS = [
    ("rolname", P.NAME), ("rolsuper", P.BOOL), ("rolinherit", P.BOOL), ("rolcreaterole", P.BOOL),
    ("rolcreatedb", P.BOOL), ("rolcanlogin", P.BOOL), ("rolreplication", P.BOOL), ("rolconnlimit", P.INT4),
    ("rolpassword", P.TEXT), ("rolvaliduntil", P.TIMESTAMPTZ), ("rolbypassrls", P.BOOL),
    ("rolconfig", P.TEXT_ARRAY), ("oid", P.OID),
]  # fmt: skip
USER_COLUMNS = [
    ("usename", P.NAME), ("usesysid", P.OID), ("usecreatedb", P.BOOL), ("usesuper", P.BOOL), ("userepl", P.BOOL),
    ("usebypassrls", P.BOOL), ("passwd", P.TEXT), ("valuntil", P.TIMESTAMPTZ), ("useconfig", P.TEXT_ARRAY),
]  # fmt: skip
HIDDEN_PASSWORD = "********"


def _role(name: str, oid: int, superuser: bool, canlogin: bool, validuntil: Any) -> dict[str, Any]:
    return {
        "rolname": name, "rolsuper": superuser, "rolinherit": True, "rolcreaterole": superuser,
        "rolcreatedb": superuser, "rolcanlogin": canlogin, "rolreplication": superuser, "rolconnlimit": -1,
        "rolpassword": HIDDEN_PASSWORD, "rolvaliduntil": validuntil, "rolbypassrls": superuser,
        "rolconfig": None, "oid": oid,
    }  # fmt: skip


def _timestamp(v: Any) -> _dt.datetime | None:
    """rolvaliduntil as stored (Unix seconds or ISO text) -> aware datetime; junk -> None."""
    if v is None or v == "":
        return None
    if isinstance(v, int | float):
        return _dt.datetime.fromtimestamp(float(v), _dt.UTC)
    try:
        t = _dt.datetime.fromisoformat(str(v).strip())
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=_dt.UTC)


def _heap_conn(session: Any) -> Any:
    return session.sql_session().catalog.conn


def _has_table(conn: Any, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() \
        is not None  # fmt: skip


def role_rows(session: Any) -> list[dict[str, Any]]:
    rows = [_role(BOOTSTRAP_SUPERUSER, BOOTSTRAP_SUPERUSER_OID, True, True, None)]
    conn = _heap_conn(session)
    if _has_table(conn, "pgbed_authid"):
        seen = {BOOTSTRAP_SUPERUSER}
        for rowid, name, sup, login, until in conn.execute(
            "SELECT rowid, rolname, rolsuper, rolcanlogin, rolvaliduntil FROM pgbed_authid ORDER BY rowid"
        ):
            if name is None or name in seen:
                continue
            seen.add(name)
            rows.append(_role(str(name), FIRST_NORMAL_OID + int(rowid), bool(sup), bool(login), _timestamp(until)))
    return rows


def user_rows(session: Any) -> list[dict[str, Any]]:
    return [{
        "usename": r["rolname"], "usesysid": r["oid"], "usecreatedb": r["rolcreatedb"], "usesuper": r["rolsuper"],
        "userepl": r["rolreplication"], "usebypassrls": r["rolbypassrls"], "passwd": HIDDEN_PASSWORD,
        "valuntil": r["rolvaliduntil"], "useconfig": None,
    } for r in role_rows(session) if r["rolcanlogin"]]  # fmt: skip


VIEWS["pg_roles"] = ViewDef(ROLES_COLUMNS, role_rows)
VIEWS["pg_user"] = ViewDef(USER_COLUMNS, user_rows)


# =================================================================================================
# pg_control_checkpoint(), pg_control_system()
# =================================================================================================

CONTROL_CHECKPOINT_COLUMNS = [
    ("checkpoint_lsn", P.PG_LSN), ("redo_lsn", P.PG_LSN), ("redo_wal_file", P.TEXT), ("timeline_id", P.INT4),
    ("prev_timeline_id", P.INT4), ("full_page_writes", P.BOOL), ("next_xid", P.TEXT), ("next_oid", P.OID),
    ("next_multixact_id", XID), ("next_multi_offset", XID), ("oldest_xid", XID), ("oldest_xid_dbid", P.OID),
    ("oldest_active_xid", XID), ("oldest_multi_xid", XID), ("oldest_multi_dbid", P.OID),
    ("oldest_commit_ts_xid", XID), ("newest_commit_ts_xid", XID), ("checkpoint_time", P.TIMESTAMPTZ),
]  # fmt: skip
CONTROL_SYSTEM_COLUMNS = [
    ("pg_control_version", P.INT4), ("catalog_version_no", P.INT4), ("system_identifier", P.INT8),
    ("pg_control_last_modified", P.TIMESTAMPTZ),
]  # fmt: skip


def _datadir(session: Any) -> str:
    return str(getattr(session, "datadir", None) or me.datadir)


def _wal_file_name(lsn: int, tli: int, segsize: int) -> str:
    """XLByteToSeg + XLogFileName (no previous-segment rule: this is the segment holding lsn)."""
    segno = lsn // segsize
    per_xlogid = 0x100000000 // segsize
    return f"{tli:08X}{segno // per_xlogid:08X}{segno % per_xlogid:08X}"


def control_checkpoint_rows(session: Any) -> list[dict[str, Any]]:
    """pg_control's last checkpoint. pgbed's pg_control has no copy of the checkpoint's nextXid,
    so next_xid is the node's current next xid (shared memory), epoch 0; multixacts, commit
    timestamps and the oid counter do not exist in pgbed and read as PostgreSQL's initial values."""
    from node.datadir import read_control

    cf = read_control(_datadir(session))
    shm = _shm()
    next_xid = int(shm.xlog.next_xid) if shm is not None else 0
    return [{
        "checkpoint_lsn": cf.checkpoint_lsn, "redo_lsn": cf.redo_lsn,
        "redo_wal_file": _wal_file_name(cf.redo_lsn, cf.timeline, cf.wal_segment_size),
        "timeline_id": cf.timeline, "prev_timeline_id": cf.prev_timeline, "full_page_writes": True,
        "next_xid": f"0:{max(next_xid, 3)}", "next_oid": FIRST_NORMAL_OID, "next_multixact_id": 1,
        "next_multi_offset": 0, "oldest_xid": 3, "oldest_xid_dbid": 1, "oldest_active_xid": 0,
        "oldest_multi_xid": 1, "oldest_multi_dbid": 1, "oldest_commit_ts_xid": 0, "newest_commit_ts_xid": 0,
        "checkpoint_time": _ts_seconds(cf.checkpoint_time),
    }]  # fmt: skip


def control_system_rows(session: Any) -> list[dict[str, Any]]:
    from node.datadir import CATALOG_VERSION, PG_CONTROL_VERSION, control_path, read_control

    d = _datadir(session)
    cf = read_control(d)
    modified = cf.time or Path(control_path(d)).stat().st_mtime
    return [{
        "pg_control_version": PG_CONTROL_VERSION, "catalog_version_no": CATALOG_VERSION,
        "system_identifier": cf.system_identifier, "pg_control_last_modified": _ts_seconds(modified),
    }]  # fmt: skip


VIEWS["pg_control_checkpoint"] = ViewDef(CONTROL_CHECKPOINT_COLUMNS, control_checkpoint_rows)
VIEWS["pg_control_system"] = ViewDef(CONTROL_SYSTEM_COLUMNS, control_system_rows)

# Record functions whose `FROM f()` form is the view of the same name. When node/sysquery.py
# has a TABLE_FUNCTIONS set (the proposed `FROM f()` support), they are registered there too.
FUNCTION_VIEWS = ("pg_control_checkpoint", "pg_control_system")
_table_functions = getattr(_sysquery, "TABLE_FUNCTIONS", None)
if isinstance(_table_functions, set):
    _table_functions.update(FUNCTION_VIEWS)


def routed_function_view(name: str) -> ViewDef | None:
    """The view that answers `SELECT ... FROM name()` (None if `name` is not such a function)."""
    return VIEWS.get(name) if name in FUNCTION_VIEWS else None


def record_text(columns: list[tuple[str, int]], row: dict[str, Any]) -> str:
    """record_out: `(v1,v2,"quoted if needed",)` with NULL as an empty field."""
    out = []
    for name, oid in columns:
        v = row[name]
        if v is None:
            out.append("")
            continue
        s = P.encode_text(v, oid).decode()
        if s == "" or any(c in s for c in '(),"\\') or any(c.isspace() for c in s):
            s = '"' + s.replace("\\", "\\\\").replace('"', '""') + '"'
        out.append(s)
    return "(" + ",".join(out) + ")"


@register("pg_control_checkpoint", RECORD)
def pg_control_checkpoint(s: Any) -> str:
    return record_text(CONTROL_CHECKPOINT_COLUMNS, control_checkpoint_rows(s)[0])


@register("pg_control_system", RECORD)
def pg_control_system(s: Any) -> str:
    return record_text(CONTROL_SYSTEM_COLUMNS, control_system_rows(s)[0])


# =================================================================================================
# Fingerprints
# =================================================================================================

_FP_TOKEN = re.compile(
    r"""\s*(?:
      (?P<estr>[eE]'(?:[^'\\]|''|\\.)*')
    | (?P<str>'(?:[^']|'')*')
    | (?P<qident>"(?:[^"]|"")*")
    | (?P<num>\d+(?:\.\d+)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<op>[-+*/<>=~!@#%^&|`?]+|::|.)
    )""",
    re.VERBOSE | re.DOTALL,
)


def _unquote_literal(tok: str) -> str:
    if tok[0] in "eE":
        body = tok[2:-1].replace("''", "'")
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), body)
    return tok[1:-1].replace("''", "'")


def fingerprint(sql: str) -> tuple[list[str], list[str | None]]:
    """(tokens, literal values): tokens with identifiers lowercased, every string or number
    literal as `?`, whitespace and a trailing `;` gone; values[i] is the string literal behind
    tokens[i] (None for other tokens)."""
    toks: list[str] = []
    vals: list[str | None] = []
    pos = 0
    n = len(sql)
    while pos < n:
        m = _FP_TOKEN.match(sql, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        kind = m.lastgroup
        text = m.group(kind) if kind else ""
        if not text:
            continue
        if kind in ("str", "estr"):
            toks.append("?")
            vals.append(_unquote_literal(text))
        elif kind == "num":
            toks.append("?")
            vals.append(None)
        elif kind == "ident":
            toks.append(text.lower())
            vals.append(None)
        else:
            toks.append(text)
            vals.append(None)
    while toks and toks[-1] == ";":
        toks.pop()
        vals.pop()
    return toks, vals


def _fp(sql: str) -> tuple[str, ...]:
    return tuple(fingerprint(sql)[0])


class _Cursor:
    """Matches token patterns against a fingerprint, collecting the literals behind `?`."""

    def __init__(self, toks: list[str], vals: list[str | None]) -> None:
        self.toks, self.vals, self.i = toks, vals, 0

    def take(self, pattern: tuple[str, ...], out: list[str | None] | None = None) -> bool:
        j = self.i + len(pattern)
        if tuple(self.toks[self.i : j]) != pattern:
            return False
        if out is not None:
            out.extend(self.vals[k] for k in range(self.i, j) if self.toks[k] == "?")
        self.i = j
        return True

    def take_list(self) -> list[str | None] | None:
        """`( ?, ?, ... )` -> the literals."""
        if not self.take(("(",)):
            return None
        got: list[str | None] = []
        while True:
            if self.i >= len(self.toks) or self.toks[self.i] != "?":
                return None
            got.append(self.vals[self.i])
            self.i += 1
            if self.take((")",)):
                return got
            if not self.take((",",)):
                return None

    @property
    def done(self) -> bool:
        return self.i == len(self.toks)


# -- psql 15's queries (whitespace irrelevant; literals stand for any value) ---------------------

_Q_LIST_HEAD = _fp("""SELECT n.nspname as "Schema", c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index'
  WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table'
  WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace""")
_Q_LIST_AM = _fp("LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam")
_Q_LIST_KINDS = _fp("WHERE c.relkind IN")
_Q_ORDER_12 = _fp("ORDER BY 1,2")
_Q_LOOKUP_HEAD = _fp("""SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE""")
_Q_ORDER_23 = _fp("ORDER BY 2, 3")
_CL_AND = ("and",)
_CL_EXCLUDE = _fp("n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema'")
_CL_RELNAME = _fp("c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default")
_CL_NSPNAME = _fp("n.nspname OPERATOR(pg_catalog.~) '^(s)$' COLLATE pg_catalog.default")
_CL_VISIBLE = _fp("pg_catalog.pg_table_is_visible(c.oid)")

_Q_FLAGS = _fp("""SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity,
  c.relforcerowsecurity, false AS relhasoids, c.relispartition, '', c.reltablespace,
  CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence,
  c.relreplident, am.amname
FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)
LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid) WHERE c.oid = '16385'""")
_Q_COLUMNS = _fp("""SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity, a.attgenerated
FROM pg_catalog.pg_attribute a WHERE a.attrelid = '16385' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum""")
_Q_INDEXES = _fp("""SELECT c2.relname, i.indisprimary, i.indisunique, i.indisclustered, i.indisvalid,
  pg_catalog.pg_get_indexdef(i.indexrelid, 0, true), pg_catalog.pg_get_constraintdef(con.oid, true), contype,
  condeferrable, condeferred, i.indisreplident, c2.reltablespace
FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i
  LEFT JOIN pg_catalog.pg_constraint con ON (conrelid = i.indrelid AND conindid = i.indexrelid
  AND contype IN ('p','u','x'))
WHERE c.oid = '16385' AND c.oid = i.indrelid AND i.indexrelid = c2.oid
ORDER BY i.indisprimary DESC, c2.relname""")
_Q_CHECKS = _fp("""SELECT r.conname, pg_catalog.pg_get_constraintdef(r.oid, true) FROM pg_catalog.pg_constraint r
WHERE r.conrelid = '16385' AND r.contype = 'c' ORDER BY 1""")
_Q_POLICIES = _fp("""SELECT pol.polname, pol.polpermissive,
  CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from
  pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,
  pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid),
  CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE'
  END AS cmd
FROM pg_catalog.pg_policy pol WHERE pol.polrelid = '16385' ORDER BY 1""")
_Q_STATISTICS = _fp("""SELECT oid, stxrelid::pg_catalog.regclass,
  stxnamespace::pg_catalog.regnamespace::pg_catalog.text AS nsp, stxname,
  pg_catalog.pg_get_statisticsobjdef_columns(oid) AS columns, 'd' = any(stxkind) AS ndist_enabled,
  'f' = any(stxkind) AS deps_enabled, 'm' = any(stxkind) AS mcv_enabled, stxstattarget
FROM pg_catalog.pg_statistic_ext WHERE stxrelid = '16385' ORDER BY nsp, stxname""")
_Q_PUBLICATIONS = _fp("""SELECT pubname , NULL , NULL FROM pg_catalog.pg_publication p
  JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid
  JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid
WHERE pc.oid ='16385' and pg_catalog.pg_relation_is_publishable('16385')
UNION
SELECT pubname , pg_get_expr(pr.prqual, c.oid) , (CASE WHEN pr.prattrs IS NOT NULL THEN
  (SELECT string_agg(attname, ', ') FROM pg_catalog.generate_series(0,
   pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s, pg_catalog.pg_attribute
   WHERE attrelid = pr.prrelid AND attnum = prattrs[s]) ELSE NULL END)
FROM pg_catalog.pg_publication p JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid
  JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
WHERE pr.prrelid = '16385'
UNION
SELECT pubname , NULL , NULL FROM pg_catalog.pg_publication p
WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('16385')
ORDER BY 1""")
_Q_PARENTS = _fp("""SELECT c.oid::pg_catalog.regclass FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhparent AND i.inhrelid = '16385' AND c.relkind != 'p' AND c.relkind != 'I'
ORDER BY inhseqno""")
_Q_CHILDREN = _fp("""SELECT c.oid::pg_catalog.regclass, c.relkind, inhdetachpending,
  pg_catalog.pg_get_expr(c.relpartbound, c.oid)
FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhrelid AND i.inhparent = '16385'
ORDER BY pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.oid::pg_catalog.regclass::pg_catalog.text""")
_Q_DATABASES = _fp("""SELECT d.datname as "Name", pg_catalog.pg_get_userbyid(d.datdba) as "Owner",
  pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding", d.datcollate as "Collate", d.datctype as "Ctype",
  d.daticulocale as "ICU Locale", CASE d.datlocprovider WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu' END
  AS "Locale Provider", pg_catalog.array_to_string(d.datacl, E'\\n') AS "Access privileges"
FROM pg_catalog.pg_database d ORDER BY 1""")
_Q_SCHEMAS = _fp("""SELECT n.nspname AS "Name", pg_catalog.pg_get_userbyid(n.nspowner) AS "Owner"
FROM pg_catalog.pg_namespace n WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' ORDER BY 1""")
_Q_ROLES = _fp("""SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
  r.rolconnlimit, r.rolvaliduntil,
  ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid)
        WHERE m.member = r.oid) as memberof
  , r.rolreplication , r.rolbypassrls
FROM pg_catalog.pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1""")

# Result shapes, as PostgreSQL 15 sends them (names, type OIDs).
LIST_COLUMNS = [("Schema", P.NAME), ("Name", P.NAME), ("Type", P.TEXT), ("Owner", P.NAME)]
LOOKUP_COLUMNS = [("oid", P.OID), ("nspname", P.NAME), ("relname", P.NAME)]
FLAGS_COLUMNS = [
    ("relchecks", P.INT2), ("relkind", P.CHAR), ("relhasindex", P.BOOL), ("relhasrules", P.BOOL),
    ("relhastriggers", P.BOOL), ("relrowsecurity", P.BOOL), ("relforcerowsecurity", P.BOOL),
    ("relhasoids", P.BOOL), ("relispartition", P.BOOL), ("?column?", P.TEXT), ("reltablespace", P.OID),
    ("reloftype", P.TEXT), ("relpersistence", P.CHAR), ("relreplident", P.CHAR), ("amname", P.NAME),
]  # fmt: skip
COLUMNS_COLUMNS = [
    ("attname", P.NAME), ("format_type", P.TEXT), ("pg_get_expr", P.TEXT), ("attnotnull", P.BOOL),
    ("attcollation", P.NAME), ("attidentity", P.CHAR), ("attgenerated", P.CHAR),
]  # fmt: skip
INDEXES_COLUMNS = [
    ("relname", P.NAME), ("indisprimary", P.BOOL), ("indisunique", P.BOOL), ("indisclustered", P.BOOL),
    ("indisvalid", P.BOOL), ("pg_get_indexdef", P.TEXT), ("pg_get_constraintdef", P.TEXT), ("contype", P.CHAR),
    ("condeferrable", P.BOOL), ("condeferred", P.BOOL), ("indisreplident", P.BOOL), ("reltablespace", P.OID),
]  # fmt: skip
CHECKS_COLUMNS = [("conname", P.NAME), ("pg_get_constraintdef", P.TEXT)]
POLICIES_COLUMNS = [
    ("polname", P.NAME), ("polpermissive", P.BOOL), ("array_to_string", P.TEXT), ("pg_get_expr", P.TEXT),
    ("pg_get_expr", P.TEXT), ("cmd", P.TEXT),
]  # fmt: skip
STATISTICS_COLUMNS = [
    ("oid", P.OID), ("stxrelid", P.REGCLASS), ("nsp", P.TEXT), ("stxname", P.NAME), ("columns", P.TEXT),
    ("ndist_enabled", P.BOOL), ("deps_enabled", P.BOOL), ("mcv_enabled", P.BOOL), ("stxstattarget", P.INT4),
]  # fmt: skip
PUBLICATIONS_COLUMNS = [("pubname", P.NAME), ("?column?", P.TEXT), ("?column?", P.TEXT)]
PARENTS_COLUMNS = [("oid", P.REGCLASS)]
CHILDREN_COLUMNS = [("oid", P.REGCLASS), ("relkind", P.CHAR), ("inhdetachpending", P.BOOL), ("pg_get_expr", P.TEXT)]
DATABASES_COLUMNS = [
    ("Name", P.NAME), ("Owner", P.NAME), ("Encoding", P.NAME), ("Collate", P.TEXT), ("Ctype", P.TEXT),
    ("ICU Locale", P.TEXT), ("Locale Provider", P.TEXT), ("Access privileges", P.TEXT),
]  # fmt: skip
SCHEMAS_COLUMNS = [("Name", P.NAME), ("Owner", P.NAME)]
ROLES_LIST_COLUMNS = [
    ("rolname", P.NAME), ("rolsuper", P.BOOL), ("rolinherit", P.BOOL), ("rolcreaterole", P.BOOL),
    ("rolcreatedb", P.BOOL), ("rolcanlogin", P.BOOL), ("rolconnlimit", P.INT4), ("rolvaliduntil", P.TIMESTAMPTZ),
    ("memberof", NAME_ARRAY), ("rolreplication", P.BOOL), ("rolbypassrls", P.BOOL),
]  # fmt: skip


def _result(columns: list[tuple[str, int]], rows: list[list[Any]]) -> Result:
    return Result([_col(n, t) for n, t in columns], rows, f"SELECT {len(rows)}")


# =================================================================================================
# Relations as psql sees them
# =================================================================================================


@dataclass
class _Rel:
    oid: int
    schema: str
    name: str
    kind: str  # 'r' table, 'S' sequence
    table: Any = None  # node.sql.catalog.TableInfo for tables


def _sql_session(session: Any) -> Any:
    return session.sql_session()


def _search_path(session: Any) -> list[str]:
    sqls = _sql_session(session)
    fn = getattr(sqls, "search_path", None)
    if callable(fn):
        return list(fn())
    out = []
    for part in str(session.guc.show("search_path")).split(","):
        name = part.strip().strip('"')
        if name == "$user":
            name = str(getattr(session, "user", ""))
        if name:
            out.append(name)
    return out


class _View:
    """One statement's snapshot of pgbed's catalog, in pg_class terms."""

    def __init__(self, session: Any) -> None:
        self.catalog = _sql_session(session).catalog
        self.conn = self.catalog.conn
        self.path = ["pg_catalog", *[s for s in _search_path(session) if s != "pg_catalog"]]
        tables = {ti.sqlite_name: ti for ti in self.catalog.tables()}
        self.rels: list[_Rel] = []
        for rowid, sname in self.conn.execute("SELECT rowid, sqlite_name FROM pgbed_table ORDER BY rowid"):
            ti = tables.get(sname)
            if ti is None:
                continue
            self.rels.append(_Rel(FIRST_NORMAL_OID + int(rowid), ti.schema, ti.name, "r", ti))
            for c in ti.columns:
                if c.is_serial:
                    self.rels.append(_Rel(0, ti.schema, _seq_name(ti.name, c.name), "S"))
        self.schemas = sorted(self.catalog.schemas())

    def visible(self, rel: _Rel) -> bool:
        """pg_table_is_visible: the relation's schema is in search_path and no earlier schema
        there has a relation of the same name."""
        for s in self.path:
            if any(r.schema == s and r.name == rel.name for r in self.rels):
                return s == rel.schema
        return False

    def by_oid(self, oid: str | None) -> _Rel | None:
        try:
            want = int(oid or "")
        except ValueError:
            return None
        return next((r for r in self.rels if r.kind == "r" and r.oid == want), None)

    def qualified(self, rel: _Rel, name: str | None = None) -> str:
        """generate_relation_name: schema-qualified unless visible."""
        n = _quote_ident(name or rel.name)
        return n if self.visible(rel) else f"{_quote_ident(rel.schema)}.{n}"


def _seq_name(table: str, column: str) -> str:
    return f"{table}_{column}_seq"


def _regex_match(pattern: str | None, value: str) -> bool:
    if pattern is None:
        return True
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return False


# -- quoting -------------------------------------------------------------------------------------

_RESERVED = frozenset(
    "all analyse analyze and any array as asc asymmetric authorization between bigint binary bit boolean both "
    "case cast char character check coalesce collate collation column concurrently constraint create cross "
    "current_catalog current_date current_role current_schema current_time current_timestamp current_user dec "
    "decimal default deferrable desc distinct do else end except exists extract false fetch float for foreign "
    "freeze from full grant greatest group grouping having ilike in initially inner inout int integer intersect "
    "interval into is isnull join lateral leading least left like limit localtime localtimestamp national "
    "natural nchar none normalize not notnull null nullif numeric offset on only or order out outer overlaps "
    "overlay placing position precision primary real references returning right row select session_user setof "
    "similar smallint some substring symmetric table tablesample then time timestamp to trailing treat trim "
    "true union unique user using values varchar variadic verbose when where window with xmlattributes "
    "xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize "
    "xmltable".split()
)  # PostgreSQL 15's non-unreserved keywords (pg_get_keywords() where catcode <> 'U')


def _quote_ident(name: str) -> str:
    """quote_identifier(): bare only for lower-case identifiers that are not keywords."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


# -- column defaults -----------------------------------------------------------------------------

_LITERAL_CASTS = {
    P.TEXT: "text", P.VARCHAR: "character varying", P.BPCHAR: "bpchar", P.DATE: "date",
    P.TIMESTAMP: "timestamp without time zone", P.TIMESTAMPTZ: "timestamp with time zone",
    P.TIME: "time without time zone", P.UUID: "uuid", P.JSON: "json", P.JSONB: "jsonb", P.BYTEA: "bytea",
    P.NAME: "name",
}  # fmt: skip


def _default_text(view: _View, rel: _Rel, col: Any) -> str | None:
    """pg_get_expr(adbin) for a column default, from the SQLite expression pgbed stored."""
    from node.sql.catalog import format_type

    if col.is_serial:
        seq = _Rel(0, rel.schema, _seq_name(rel.name, col.name), "S")
        return f"nextval('{view.qualified(seq).replace(chr(39), chr(39) * 2)}'::regclass)"
    expr = col.default_expr
    if expr is None:
        return None
    e = expr.strip()
    while e.startswith("(") and e.endswith(")") and _balanced(e[1:-1]):
        e = e[1:-1].strip()
    oid = col.type.oid
    if e.upper() == "NULL":
        return None
    if e.upper() in ("PG_NOW()", "NOW()", "CURRENT_TIMESTAMP"):
        return "now()"
    if oid == P.BOOL and e in ("0", "1"):
        return "true" if e == "1" else "false"
    if re.fullmatch(r"-?\d+", e):
        v = int(e)
        if v >= 0:
            return e
        return f"'{e}'::{'integer' if v >= -(2**31) else 'bigint'}"
    if re.fullmatch(r"-?\d+\.\d*(?:[eE][-+]?\d+)?", e):
        if oid in (P.FLOAT4, P.FLOAT8):
            e = re.sub(r"\.0$", "", e)  # SQLite prints REAL 2 as 2.0; PostgreSQL keeps the literal 2
        return e if not e.startswith("-") else f"'{e}'::{format_type(oid, -1)}"
    m = re.fullmatch(r"'((?:[^']|'')*)'", e, re.S)
    if m:
        if oid == P.NUMERIC or oid in (P.INT2, P.INT4, P.INT8, P.FLOAT4, P.FLOAT8):
            body = m.group(1)
            return body if not body.startswith("-") else f"'{body}'::{format_type(oid, -1)}"
        if oid == P.BOOL:
            return "true" if m.group(1).lower() in ("t", "true", "1", "on", "yes") else "false"
        body = m.group(1)
        if oid == P.BPCHAR:
            body = body.rstrip(" ")  # stored padded; the literal PostgreSQL keeps was not
        elif oid in (P.TIMESTAMP, P.TIMESTAMPTZ, P.TIME):
            body = re.sub(r"(\.\d*?)0+(?=$|[+-])", r"\1", body).replace(".+", "+").replace(".-", "-")
            body = body[:-1] if body.endswith(".") else body
        cast = _LITERAL_CASTS.get(oid, format_type(oid, -1))
        return f"'{body}'::{cast}"
    if re.fullmatch(r"[xX]'[0-9a-fA-F]*'", e) and oid == P.BYTEA:
        return f"'\\x{e[2:-1].lower()}'::bytea"
    return re.sub(r"\bPG_NOW\(\)", "now()", e, flags=re.I)


def _balanced(s: str) -> bool:
    depth = 0
    quote = False
    for ch in s:
        if ch == "'":
            quote = not quote
        elif not quote:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    return False
    return depth == 0 and not quote


# -- indexes and constraints ---------------------------------------------------------------------


def _index_columns(conn: Any, sqlite_index: str) -> list[tuple[str, bool]]:
    out = []
    for _seq, _cid, name, desc, _coll, key in conn.execute("SELECT * FROM pragma_index_xinfo(?)", (sqlite_index,)):
        if key and name is not None:
            out.append((str(name), bool(desc)))
    return out


def _index_rows(view: _View, rel: _Rel) -> list[list[Any]]:
    ti = rel.table
    indexes = {name: sname for name, sname in view.conn.execute(
        "SELECT name, sqlite_name FROM pgbed_index WHERE table_sqlite_name = ?", (ti.sqlite_name,))}  # fmt: skip
    on = view.qualified(rel)
    rows: list[list[Any]] = []

    def cols_text(cols: list[tuple[str, bool]]) -> str:
        return ", ".join(_quote_ident(c) + (" DESC" if d else "") for c, d in cols)

    for k in ti.constraints:
        if k.kind not in ("p", "u") or k.name in indexes:
            continue
        cols = [(c, False) for c in k.columns]
        idxdef = f"CREATE UNIQUE INDEX {_quote_ident(k.name)} ON {on} USING btree ({cols_text(cols)})"
        condef = f"{'PRIMARY KEY' if k.kind == 'p' else 'UNIQUE'} ({', '.join(_quote_ident(c) for c in k.columns)})"
        rows.append([k.name, k.kind == "p", True, False, True, idxdef, condef, k.kind, False, False, False, 0])
    for name, sname in indexes.items():
        unique = any(k.kind == "u" and k.name == name for k in ti.constraints)
        cols = _index_columns(view.conn, sname)
        idxdef = (f"CREATE {'UNIQUE ' if unique else ''}INDEX {_quote_ident(name)} ON {on} USING btree "
                  f"({cols_text(cols)})")  # fmt: skip
        rows.append([name, False, unique, False, True, idxdef, None, None, None, None, False, 0])
    rows.sort(key=lambda r: (not r[1], r[0]))
    return rows


def _check_exprs(conn: Any, sqlite_table: str) -> dict[str, str]:
    """CONSTRAINT "name" CHECK (expr) clauses of the table's SQLite definition."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (sqlite_table,)).fetchone()
    if not row or not row[0]:
        return {}
    sql = str(row[0])
    out: dict[str, str] = {}
    for m in re.finditer(r'CONSTRAINT\s+"((?:[^"]|"")*)"\s+CHECK\s*\(', sql):
        start = m.end()
        depth, i, quote = 1, start, False
        while i < len(sql) and depth:
            ch = sql[i]
            if ch == "'":
                quote = not quote
            elif not quote:
                depth += 1 if ch == "(" else -1 if ch == ")" else 0
            i += 1
        out[m.group(1).replace('""', '"')] = f"CHECK ({sql[start : i - 1].strip()})"
    return out


# =================================================================================================
# The interception
# =================================================================================================


def _parse_clauses(cur: _Cursor, first_has_and: bool) -> dict[str, list[str | None]] | None:
    """Optional clauses of psql's name-pattern WHERE, in any order, each once."""
    found: dict[str, list[str | None]] = {}
    first = True
    while True:
        save = cur.i
        if not (first and not first_has_and) and not cur.take(_CL_AND):
            return found
        first = False
        for key, pat in (("exclude", _CL_EXCLUDE), ("relname", _CL_RELNAME), ("nspname", _CL_NSPNAME),
                         ("visible", _CL_VISIBLE)):  # fmt: skip
            lits: list[str | None] = []
            if key not in found and cur.take(pat, lits):
                found[key] = lits
                break
        else:
            cur.i = save
            return found


def _filter(view: _View, rels: list[_Rel], clauses: dict[str, list[str | None]]) -> list[_Rel]:
    out = []
    for r in rels:
        if "exclude" in clauses and (r.schema in ("pg_catalog", "information_schema") or r.schema.startswith(
                "pg_toast")):  # fmt: skip
            continue
        if "relname" in clauses and not _regex_match(clauses["relname"][0], r.name):
            continue
        if "nspname" in clauses and not _regex_match(clauses["nspname"][0], r.schema):
            continue
        if "visible" in clauses and not view.visible(r):
            continue
        out.append(r)
    return out


_KIND_NAMES = {"r": "table", "S": "sequence", "v": "view", "i": "index"}


def _list_relations(toks: list[str], vals: list[str | None], session: Any) -> Result | None:
    cur = _Cursor(toks, vals)
    if not cur.take(_Q_LIST_HEAD):
        return None
    cur.take(_Q_LIST_AM)
    if not cur.take(_Q_LIST_KINDS):
        return None
    kinds = cur.take_list()
    if kinds is None:
        return None
    clauses = _parse_clauses(cur, True)
    if clauses is None or not cur.take(_Q_ORDER_12) or not cur.done:
        return None
    view = _View(session)
    rels = [r for r in view.rels if r.kind in kinds]
    rows = [[r.schema, r.name, _KIND_NAMES[r.kind], BOOTSTRAP_SUPERUSER] for r in _filter(view, rels, clauses)]
    rows.sort(key=lambda r: (r[0], r[1]))
    return _result(LIST_COLUMNS, rows)


def _lookup(toks: list[str], vals: list[str | None], session: Any) -> Result | None:
    cur = _Cursor(toks, vals)
    if not cur.take(_Q_LOOKUP_HEAD):
        return None
    clauses = _parse_clauses(cur, False)
    if not clauses or not cur.take(_Q_ORDER_23) or not cur.done:
        return None
    view = _View(session)
    rels = _filter(view, [r for r in view.rels if r.kind == "r"], clauses)
    rows = sorted([[r.oid, r.schema, r.name] for r in rels], key=lambda r: (r[1], r[2]))
    return _result(LOOKUP_COLUMNS, rows)


def _first_literal(vals: list[str | None]) -> str | None:
    return next((v for v in vals if v is not None and v.isdigit()), None)


def _flags(view: _View, rel: _Rel | None) -> list[list[Any]]:
    if rel is None:
        return []
    ti = rel.table
    checks = sum(1 for k in ti.constraints if k.kind == "c")
    has_index = any(k.kind in ("p", "u") for k in ti.constraints) or view.conn.execute(
        "SELECT 1 FROM pgbed_index WHERE table_sqlite_name = ?", (ti.sqlite_name,)).fetchone() is not None  # fmt: skip
    return [[checks, "r", has_index, False, False, False, False, False, False, "", 0, "", "p", "d", "heap"]]


def _columns(view: _View, rel: _Rel | None) -> list[list[Any]]:
    if rel is None:
        return []
    return [[c.name, c.type.name, _default_text(view, rel, c), bool(c.not_null), None, "", ""]
            for c in sorted(rel.table.columns, key=lambda c: c.position)]  # fmt: skip


def _checks(view: _View, rel: _Rel | None) -> list[list[Any]]:
    if rel is None:
        return []
    exprs = _check_exprs(view.conn, rel.table.sqlite_name)
    rows = [[k.name, exprs.get(k.name, "CHECK (true)")] for k in rel.table.constraints if k.kind == "c"]
    return sorted(rows, key=lambda r: r[0])


_PerTable = Callable[[_View, "_Rel | None"], list[list[Any]]]
_TABLE_QUERIES: dict[tuple[str, ...], tuple[list[tuple[str, int]], _PerTable | None]] = {
    _Q_FLAGS: (FLAGS_COLUMNS, _flags),
    _Q_COLUMNS: (COLUMNS_COLUMNS, _columns),
    _Q_INDEXES: (INDEXES_COLUMNS, lambda v, r: _index_rows(v, r) if r is not None else []),
    _Q_CHECKS: (CHECKS_COLUMNS, _checks),
    _Q_POLICIES: (POLICIES_COLUMNS, None),
    _Q_STATISTICS: (STATISTICS_COLUMNS, None),
    _Q_PUBLICATIONS: (PUBLICATIONS_COLUMNS, None),
    _Q_PARENTS: (PARENTS_COLUMNS, None),
    _Q_CHILDREN: (CHILDREN_COLUMNS, None),
}


def _databases(session: Any) -> Result:
    rows = [[d["datname"], BOOTSTRAP_SUPERUSER, "UTF8", d["datcollate"], d["datctype"], d["daticulocale"],
             "libc" if d["datlocprovider"] == "c" else "icu", None] for d in database_rows(session)]  # fmt: skip
    return _result(DATABASES_COLUMNS, rows)


def _schemas(session: Any) -> Result:
    view = _View(session)
    rows = [[s, "pg_database_owner" if s == "public" else BOOTSTRAP_SUPERUSER] for s in view.schemas
            if not s.startswith("pg_") and s != "information_schema"]  # fmt: skip
    return _result(SCHEMAS_COLUMNS, rows)


def _roles(session: Any) -> Result:
    rows = [[r["rolname"], r["rolsuper"], r["rolinherit"], r["rolcreaterole"], r["rolcreatedb"], r["rolcanlogin"],
             r["rolconnlimit"], r["rolvaliduntil"], "{}", r["rolreplication"], r["rolbypassrls"]]
            for r in role_rows(session) if not str(r["rolname"]).startswith("pg_")]  # fmt: skip
    rows.sort(key=lambda r: r[0])
    return _result(ROLES_LIST_COLUMNS, rows)


_WHOLE_QUERIES: dict[tuple[str, ...], Callable[[Any], Result]] = {
    _Q_DATABASES: _databases,
    _Q_SCHEMAS: _schemas,
    _Q_ROLES: _roles,
}


def intercept(sql: str, session: Any) -> Result | None:
    """The answer to one of psql 15's catalog queries, or None when `sql` is not one of them.

    Cheap for ordinary SQL: anything without `pg_catalog.` is rejected before tokenising."""
    if "pg_catalog." not in sql:
        return None
    toks, vals = fingerprint(sql)
    key = tuple(toks)
    whole = _WHOLE_QUERIES.get(key)
    if whole is not None:
        return whole(session)
    per_table = _TABLE_QUERIES.get(key)
    if per_table is not None:
        columns, fn = per_table
        if fn is None:
            return _result(columns, [])
        view = _View(session)
        return _result(columns, fn(view, view.by_oid(_first_literal(vals))))
    if toks[:2] == ["select", "n"]:
        return _list_relations(toks, vals, session)
    if toks[:2] == ["select", "c"]:
        return _lookup(toks, vals, session)
    return None
