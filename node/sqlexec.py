"""A backend's SQL over the heap: planning, transactions and the WAL-first commit.

What it does: one `SqlSession` per backend, created at the first statement that needs the heap
(the database is opened after fork, as DESIGN asks). It plans statements with node/sql's
translator (cached), takes SQLite's write lock for the first write of a transaction (so WAL
order is commit order), refuses writes in read-only transactions and during recovery (25006),
runs savepoints, and commits: WAL record first (flushed per synchronous_commit and fsync),
SQLite second (node/storage.py). It also supplies the SQL functions' session hooks: transaction
and statement timestamps, and pg_sleep as an interruptible latch wait.

What it deliberately does not do: speak the protocol or keep the ReadyForQuery state; the
backend's Session does, and calls `commit()`/`rollback()` at COMMIT/ROLLBACK.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from node.elog import PGError
from node.proc import me


class SqlOwner:
    """What a session (a client backend's, or a background worker's for SPI) has to offer the SQL
    layer: its SqlSession, opened at the first statement needing the heap, and the recovery test."""

    sql: Any = None

    def sql_session(self) -> Any:
        if self.sql is None:
            self.sql = SqlSession(self)
        return self.sql

    @staticmethod
    def sql_in_recovery() -> bool:
        return bool(me.shm.xlog.in_recovery)


class SqlSession:
    def __init__(self, session: Any) -> None:
        from node.sql.catalog import Catalog
        from node.sql.functions import register_functions
        from node.storage import Heap
        from node.xlog import XLog

        self.s = session
        self.heap = Heap(me.datadir, interrupts=session.check_for_interrupts, sleep=self._short_sleep)
        register_functions(self.heap.conn, self)
        self.catalog = Catalog(self.heap.conn)
        self.xlog = XLog(me.datadir, me.shm.xlog, fsync=bool(session.guc.get("fsync")))
        self.xid = 0
        self._tuples: dict[Any, int] = {}
        self._register_system_functions()

    def _register_system_functions(self) -> None:
        """DESIGN "storage": the system functions are SQLite functions too, so they work inside
        any statement (`SELECT v FROM t WHERE n > pg_backend_pid()`); the translator learns their
        result types. Functions node/sql implements itself (now(), pg_sleep, ...) keep theirs."""
        from node import pgcatalog, sysfuncs  # noqa: F401 - fill FUNCTIONS
        from node.sql import translate as tr
        from node.sysquery import FUNCTIONS

        for name, fn in FUNCTIONS.items():
            if name in tr._FUNC_RENAMES or name == "version":
                continue
            tr._ANON_TYPES.setdefault(name, fn.rettype)
            self.heap.conn.create_scalar_function(name, self._wrap(fn), -1)

    def _wrap(self, fn: Any) -> Any:
        session = self.s

        def call(*args: Any) -> Any:
            bound = dict(fn.defaults)
            if len(args) > len(fn.params):
                raise PGError(f"function takes at most {len(fn.params)} arguments", "42883")
            bound.update(zip(fn.params, args, strict=False))
            return _to_sqlite(fn.impl(session, **bound))

        return call
    # -- hooks for node/sql/functions.py -----------------------------------------------------------

    def transaction_timestamp(self) -> _dt.datetime:
        t = self.s.xact_start or self.s.stmt_start
        return _dt.datetime.fromtimestamp(t, _dt.UTC)

    def statement_timestamp(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.s.stmt_start, _dt.UTC)

    def sleep(self, seconds: float) -> None:
        self.s.sleep(seconds)

    def new_transaction(self) -> None:
        pass

    def new_statement(self) -> None:
        pass

    def _short_sleep(self, seconds: float) -> None:
        """The write-lock wait of node/storage.py: PostgreSQL would be waiting on a heavyweight lock."""
        self.s.sleep(seconds, ("Lock", "transactionid"))

    # -- planning ----------------------------------------------------------------------------------

    def search_path(self) -> list[str]:
        raw = str(self.s.guc.show("search_path"))
        out = []
        for part in raw.split(","):
            name = part.strip().strip('"')
            if name == "$user":
                name = self.s.user
            if name:
                out.append(name)
        return out

    def plan(self, sql: str) -> Any:
        from node.sql.translate import translate

        return translate(sql, self.catalog, self.search_path())

    # -- execution ---------------------------------------------------------------------------------

    def _check_writable_for_xid(self) -> None:
        if me.shm.xlog.in_recovery:
            raise PGError("cannot assign TransactionIds during recovery", "25006")

    def _check_writable(self, plan: Any) -> None:
        if me.shm.xlog.in_recovery or self.s.guc.get("transaction_read_only") or (
                self.s.tx == "I" and self.s.guc.get("default_transaction_read_only")):  # fmt: skip
            verb = (plan.tag or plan.kind).split()[0].upper() if (plan.tag or plan.kind) else "statement"
            if plan.for_update:
                verb = "SELECT FOR UPDATE"
            raise PGError(f"cannot execute {verb} in a read-only transaction", "25006")

    def ensure_write_txn(self) -> None:
        if not self.heap.in_write:
            self.heap.begin_write(int(self.s.guc.get("lock_timeout")))
            self.xid = self.xlog.next_xid()  # under the write lock, so xids follow commit order

    def run(self, plan: Any, params: list[Any]) -> Any:
        from node.sql.execute import execute

        in_block = self.s.tx != "I"
        if plan.is_write or plan.for_update:
            self._check_writable(plan)
            self.ensure_write_txn()
        try:
            if plan.kind in DDL_KINDS:
                result = self.heap.run_ddl(lambda: execute(self.heap.conn, self.catalog, plan, params),
                                           [st.sql for st in plan.steps if st.capture is None])  # fmt: skip
            else:
                result = self.heap.run(lambda: execute(self.heap.conn, self.catalog, plan, params))
        except BaseException:
            if not in_block:
                self.rollback()
            raise
        self._count_tuples(plan, result)
        if not in_block:
            self.commit()
        return result

    def savepoint(self, kind: str, name: str) -> None:
        self.ensure_write_txn()
        q = '"' + name.replace('"', '""') + '"'
        sql = {"savepoint": f"SAVEPOINT {q}", "release": f"RELEASE SAVEPOINT {q}",
               "rollback_to": f"ROLLBACK TO SAVEPOINT {q}"}[kind]  # fmt: skip
        try:
            self.heap.savepoint(kind, name, sql)
        except self.heap.apsw.SQLError:
            raise PGError(f'savepoint "{name}" does not exist', "3B001") from None

    def commit(self) -> None:
        from node.pgcatalog import StatCounter, count_stat

        if not self.heap.in_write:
            count_stat(StatCounter.XACT_COMMIT)
            self._tuples.clear()
            return
        sync = str(self.s.guc.show("synchronous_commit")) != "off"
        from node import injection

        injection.inject("backend-before-commit")
        end = self.heap.commit(self.xlog, xid=self.xid, flush=sync)
        injection.inject("backend-after-commit")
        if end is not None and not sync:
            # XLogSetAsyncXactLSN: the checkpointer (our walwriter) flushes it soon.
            ck = me.shm.ckpt
            if ck.checkpointer_pid:
                from node.ipc.latch import set_latch

                set_latch(me.shm.procs[ck.checkpointer_slot])
        if end is not None and sync:
            # SyncRepWaitForLSN. Unlike PostgreSQL, the transaction is already visible to other
            # sessions here: waiting before SQLite's COMMIT would hold the one write lock (and
            # so every other writer) for a network round trip.
            from node import syncrep

            mode = syncrep.wait_mode(self.s.guc)
            if mode is not None:
                syncrep.wait_for_lsn(self.s, me, end, mode)
        count_stat(StatCounter.XACT_COMMIT)
        for counter, n in self._tuples.items():
            count_stat(counter, n)
        self._tuples.clear()

    def rollback(self) -> None:
        from node.pgcatalog import StatCounter, count_stat

        self.heap.rollback()
        count_stat(StatCounter.XACT_ROLLBACK)
        self._tuples.clear()

    def _count_tuples(self, plan: Any, result: Any) -> None:
        """pg_stat_database's tup_* counters: DML counts land at commit; reads count at once."""
        from node.pgcatalog import StatCounter, count_stat

        counter = {"insert": StatCounter.TUP_INSERTED, "update": StatCounter.TUP_UPDATED,
                   "delete": StatCounter.TUP_DELETED}.get(plan.kind)  # fmt: skip
        if counter is not None:
            self._tuples[counter] = self._tuples.get(counter, 0) + int(result.rowcount)
        elif plan.kind == "select":
            count_stat(StatCounter.TUP_RETURNED, len(result.rows))
            count_stat(StatCounter.TUP_FETCHED, len(result.rows))

    def close(self) -> None:
        self.heap.close()
        self.xlog.close()


# Plans whose SQLite statements change the schema: WAL-logged as statement text (Heap.run_ddl).
DDL_KINDS = frozenset({"create_schema", "create_table", "create_index", "drop_table", "drop_index", "drop_schema"})


def _to_sqlite(v: Any) -> Any:
    """A Python value from a system function as SQLite stores it (node/sql/values.py's forms)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, _dt.datetime):
        from node.sql.values import to_timestamp

        return to_timestamp(v, True)
    if v is None or isinstance(v, int | float | str | bytes):
        return v
    return str(v)
