"""The heap: the node's SQLite database through APSW, and the WAL-first commit protocol.

What it does
- `bootstrap_heap()` creates `base/pgbed.db` at initdb (PostgreSQL's bootstrap mode: not
  WAL-logged, covered by the first checkpoint).
- `Heap` is one process's connection, opened after fork. A write transaction takes SQLite's
  write lock first (BEGIN IMMEDIATE; a blocked writer waits in a cancellable loop that honours
  lock_timeout), captures its row changes with the SQLite session extension (rowid tables too),
  and cuts the changeset at every DDL statement, which is logged as text.
- `Heap.commit()` is the protocol of DESIGN "WAL": build one COMMIT record holding the
  transaction's ops, append it to the WAL and flush it (per synchronous_commit and fsync),
  record the record's end LSN as `applied_lsn` in the same SQLite transaction, then commit
  SQLite. WAL is appended while holding SQLite's write lock, so LSN order is commit order. A
  failure after the WAL flush and before the local commit is a PANIC (crash restart), never a
  silent rollback: the WAL says the transaction committed.
- `apply_commit()` replays one COMMIT record (redo), idempotently: records at or below
  `applied_lsn` are skipped, and the new `applied_lsn` is written in the same transaction.
- `checkpoint_heap()` makes the heap durable (SQLite checkpoint + fsync), for the checkpointer.

What it deliberately does not do: SQL translation (node/sql/) or the WAL file format (node/wal.py).

Shared state: the WAL insert/prev/flush positions and the next xid live in XLogCtl in shared
memory; they are read and advanced only while holding SQLite's write lock, which is therefore
the WAL insertion lock too.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node import injection
from node.elog import PGError

HEAP_FILE = "base/pgbed.db"
CONTROL_TABLE = "pgbed_control"

OP_CHANGESET = 1
OP_SQL = 2
_XACT_HEAD = struct.Struct("<Bd I")  # version, commit time, op count
_OP_HEAD = struct.Struct("<BI")  # kind, length
XACT_VERSION = 1


def heap_path(datadir: str | Path) -> Path:
    return Path(datadir) / HEAP_FILE


def _configure(conn: Any) -> None:
    # SQLite's own journal is not our durability: the WAL is. WAL mode with synchronous=NORMAL
    # keeps the file consistent across crashes without an fsync per commit; checkpoint_heap()
    # makes it durable up to the checkpoint's redo point.
    # The journal mode is stored in the file: set it only when it is not WAL yet (setting it
    # again needs a lock, and another process may be writing: a replaying startup process).
    conn.set_busy_timeout(5000)
    if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    # SQLite folds its own WAL into the database file every 1000 pages (its default): without it
    # the -wal file grows without bound between pgbed checkpoints and every open must scan it.


def connect(datadir: str | Path) -> Any:
    """An APSW connection to the heap with pgbed's pragmas, SQL functions and collations (the
    numeric collation is needed by any statement touching a numeric index, redo included)."""
    import apsw

    from node.sql.functions import DefaultHooks, register_functions

    conn = apsw.Connection(str(heap_path(datadir)))
    _configure(conn)
    register_functions(conn, DefaultHooks())
    return conn


def bootstrap_heap(datadir: str | Path, superuser: str = "postgres", password: str | None = None) -> None:
    """initdb's bootstrap: catalog tables, the role table with the bootstrap superuser (and its
    password, stored as a SCRAM verifier, when one is given), the control row."""
    from node import auth
    from node.sql.catalog import Catalog

    path = heap_path(datadir)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(datadir)
    Catalog(conn).bootstrap()
    conn.execute(auth.ROLE_TABLE_DDL)
    sql, args = auth.bootstrap_role_sql(superuser)
    conn.execute(sql, args)
    if password is not None:
        conn.execute("UPDATE pgbed_authid SET rolpassword = ? WHERE rolname = ?",
                     (auth.encrypt_password(password, superuser), superuser))  # fmt: skip
    conn.execute(f"CREATE TABLE IF NOT EXISTS {CONTROL_TABLE} (applied_lsn INTEGER NOT NULL, "
                 "applied_start INTEGER NOT NULL DEFAULT 0, applied_xid INTEGER NOT NULL DEFAULT 0)")  # fmt: skip
    if not list(conn.execute(f"SELECT 1 FROM {CONTROL_TABLE}")):
        conn.execute(f"INSERT INTO {CONTROL_TABLE} (applied_lsn) VALUES (0)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode_xact(ops: list[tuple[int, bytes]], commit_time: float) -> bytes:
    out = [_XACT_HEAD.pack(XACT_VERSION, commit_time, len(ops))]
    for kind, data in ops:
        out.append(_OP_HEAD.pack(kind, len(data)))
        out.append(data)
    return b"".join(out)


def decode_xact(payload: bytes) -> tuple[float, list[tuple[int, bytes]]]:
    version, commit_time, n = _XACT_HEAD.unpack_from(payload, 0)
    if version != XACT_VERSION:
        raise ValueError(f"unknown transaction record version {version}")
    pos = _XACT_HEAD.size
    ops = []
    for _ in range(n):
        kind, length = _OP_HEAD.unpack_from(payload, pos)
        pos += _OP_HEAD.size
        ops.append((kind, payload[pos : pos + length]))
        pos += length
    if pos != len(payload):
        raise ValueError("trailing bytes in transaction record")
    return commit_time, ops


class Heap:
    """One process's connection to the node database.

    `interrupts` is the caller's CHECK_FOR_INTERRUPTS: it is called from SQLite's progress
    handler and from lock waits, and raises (cancel → ERROR, terminate → FATAL) — SQLite is
    interrupted and the exception is re-raised once SQLite has unwound (DESIGN "interrupts").
    """

    def __init__(self, datadir: str | Path, *, interrupts: Callable[[], None] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:  # fmt: skip
        import apsw

        self.apsw = apsw
        self.datadir = Path(datadir)
        self.conn = connect(datadir)
        self.conn.set_busy_timeout(0)
        self._interrupts = interrupts
        self._sleep = sleep or time.sleep
        self._pending: BaseException | None = None
        if interrupts is not None:
            self.conn.set_progress_handler(self._progress, 1000)
        self.session: Any = None
        self.ops: list[tuple[int, bytes]] = []
        self.marks: list[tuple[str, int]] = []  # (savepoint name, len(ops) when it was set)
        self.in_write = False

    # -- interrupts -------------------------------------------------------------------------------

    def _progress(self) -> bool:
        """SQLite's progress handler: True interrupts the statement (SQLITE_INTERRUPT)."""
        try:
            self._interrupts()  # type: ignore[misc]
        except BaseException as e:  # re-raised once SQLite has unwound
            self._pending = e
            return True
        return False

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run an APSW call, turning an interrupt back into the exception that caused it."""
        try:
            return fn()
        except self.apsw.InterruptError:
            exc, self._pending = self._pending, None
            if exc is not None:
                raise exc from None
            raise PGError("canceling statement due to user request", "57014") from None

    # -- write transactions -----------------------------------------------------------------------

    def begin_write(self, lock_timeout_ms: int = 0) -> None:
        """Take SQLite's write lock (BEGIN IMMEDIATE), waiting in a cancellable loop."""
        if self.in_write:
            return
        deadline = time.monotonic() + lock_timeout_ms / 1000.0 if lock_timeout_ms > 0 else None
        delay = 0.0005
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except self.apsw.BusyError:
                if self._interrupts is not None:
                    self._interrupts()
                if deadline is not None and time.monotonic() >= deadline:
                    raise PGError("canceling statement due to lock timeout", "55P03") from None
                self._sleep(delay)
                delay = min(delay * 2, 0.002)
        self.in_write = True
        self.ops = []
        self.marks = []
        self._new_session()

    def savepoint(self, kind: str, name: str, sql: str) -> None:
        """SAVEPOINT / RELEASE / ROLLBACK TO, keeping the logged ops in step with SQLite: a
        savepoint cuts the changeset and remembers how many ops precede it; ROLLBACK TO drops the
        ops logged since (DDL text and changesets cut after the savepoint describe changes SQLite
        has just undone) and the open session's changes with them. Raises apsw.SQLError for an
        unknown savepoint, as SQLite does."""
        key = name.lower()
        if kind == "savepoint":
            self._cut()
            self.conn.execute(sql)
            self.marks.append((key, len(self.ops)))
            self._new_session()
            return
        self.conn.execute(sql)
        idx = max((i for i, (n, _) in enumerate(self.marks) if n == key), default=None)
        if idx is None:
            return
        if kind == "release":
            del self.marks[idx:]
            return
        del self.marks[idx + 1 :]  # ROLLBACK TO keeps the savepoint itself
        if self.session is not None:
            self.session.close()
            self.session = None
        del self.ops[self.marks[idx][1] :]
        self._new_session()

    def _new_session(self) -> None:
        s = self.apsw.Session(self.conn, "main")
        # PostgreSQL tables often have no primary key (worker_spi's `counted` has none): capture
        # rowid tables too, keyed by rowid. Never VACUUM: it renumbers rowids.
        s.config(self.apsw.SQLITE_SESSION_OBJCONFIG_ROWID, 1)
        s.table_filter(lambda name: name != CONTROL_TABLE)
        s.attach(None)
        self.session = s

    def _cut(self) -> None:
        if self.session is not None:
            cs = self.session.changeset()
            self.session.close()
            self.session = None
            if cs:
                self.ops.append((OP_CHANGESET, cs))

    def execute_ddl(self, sqls: list[str]) -> None:
        """Run DDL inside the write transaction: the changeset so far is cut, the statements are
        logged as text, and capture resumes (a session cannot describe schema changes)."""
        self._cut()
        for sql in sqls:

            def run_one(sql: str = sql) -> Any:
                return self.conn.execute(sql).fetchall()

            self.run(run_one)
            self.ops.append((OP_SQL, sql.encode()))
        self._new_session()

    def run_ddl(self, fn: Callable[[], Any], sqls: list[str]) -> Any:
        """Run one DDL statement of the SQL layer: `fn` executes its SQLite statements `sqls`
        and the catalog-row changes that go with them. A session cannot describe schema
        changes, so the statements are logged as text, followed by the changeset of the catalog
        rows, in that order (redo creates the table before it fills pgbed_table). They are
        logged only once the statement has succeeded; a failed one leaves nothing behind."""
        self._cut()
        self._new_session()
        try:
            result = self.run(fn)
        except BaseException:
            assert self.session is not None
            self.session.close()
            self.session = None
            self._new_session()
            raise
        assert self.session is not None
        cs = self.session.changeset()
        self.session.close()
        self.session = None
        self.ops.extend((OP_SQL, sql.encode()) for sql in sqls)
        if cs:
            self.ops.append((OP_CHANGESET, cs))
        self._new_session()
        return result

    def commit(self, wal: Any, *, xid: int, flush: bool) -> int | None:
        """WAL first, then SQLite. Returns the commit record's end LSN (None if read-only)."""
        if not self.in_write:
            return None
        self._cut()
        ops, self.ops = self.ops, []
        self.marks = []
        if not ops:
            self.conn.execute("COMMIT")
            self.in_write = False
            return None
        payload = encode_xact(ops, time.time())
        start, end = wal.append_commit(xid, payload, flush=flush)
        try:
            # The window DESIGN calls out: the WAL says committed, SQLite does not yet. Anything
            # that fails from here on — an injected error, an interrupt inside SQLite — is a PANIC.
            injection.inject("backend-commit-after-wal")
            self.conn.execute(f"UPDATE {CONTROL_TABLE} SET applied_lsn = ?, applied_start = ?, applied_xid = ?",
                              (end, start, xid))  # fmt: skip
            self.conn.execute("COMMIT")
        except BaseException as e:  # re-raised once SQLite has unwound
            # The WAL already says this transaction committed: the only safe way on is a crash
            # restart that replays it (PostgreSQL PANICs here too).
            raise PGError(f"could not commit transaction after writing its WAL: {e}", "XX000",
                          severity="PANIC") from None  # fmt: skip
        self.in_write = False
        return end

    def rollback(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        self.ops = []
        self.marks = []
        if self.in_write or not self.conn.get_autocommit():
            try:
                self.conn.execute("ROLLBACK")
            except self.apsw.SQLError:
                pass
        self.in_write = False

    def applied_lsn(self) -> int:
        row = self.conn.execute(f"SELECT applied_lsn FROM {CONTROL_TABLE}").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.rollback()
        self.conn.close()


def applied_lsn(conn: Any) -> int:
    row = conn.execute(f"SELECT applied_lsn FROM {CONTROL_TABLE}").fetchone()
    return int(row[0]) if row else 0


def applied_state(conn: Any) -> tuple[int, int, int]:
    """(end LSN, start LSN, xid) of the last COMMIT record the heap contains."""
    row = conn.execute(f"SELECT applied_lsn, applied_start, applied_xid FROM {CONTROL_TABLE}").fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


def apply_commit(conn: Any, end_lsn: int, payload: bytes, applied: int | None = None, *, start_lsn: int = 0,
                 xid: int = 0) -> bool:  # fmt: skip
    """Redo one COMMIT record. Returns False when it was already applied (idempotent redo).
    `applied` is the caller's known applied_lsn (redo reads it once, not per record)."""
    import apsw

    if applied is None:
        applied = applied_lsn(conn)
    if end_lsn <= applied:
        return False
    _, ops = decode_xact(payload)

    def conflict(reason: int, change: Any) -> int:
        raise PGError(f"could not apply transaction ending at {end_lsn:X}: conflict "
                      f"{apsw.mapping_session_conflict.get(reason, reason)} on table {change.name}",
                      "XX000", severity="PANIC")  # fmt: skip

    conn.execute("BEGIN IMMEDIATE")
    try:
        for kind, data in ops:
            if kind == OP_CHANGESET:
                apsw.Changeset.apply(data, conn, conflict=conflict)
            elif kind == OP_SQL:
                conn.execute(data.decode())
            else:
                raise ValueError(f"unknown op kind {kind}")
        conn.execute(f"UPDATE {CONTROL_TABLE} SET applied_lsn = ?, applied_start = ?, applied_xid = ?",
                     (end_lsn, start_lsn, xid))  # fmt: skip
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True


def checkpoint_heap(conn: Any, datadir: str | Path) -> None:
    """Make every committed heap change durable: fold SQLite's WAL into the database file
    (waiting for readers, retried on busy) and fsync it."""
    import apsw

    for _ in range(200):
        try:
            busy, _log, _ckpt = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except apsw.BusyError:
            busy = 1
        if not busy:
            break
        time.sleep(0.005)
    else:
        conn.execute("PRAGMA wal_checkpoint(FULL)")
    _fsync(heap_path(datadir))
