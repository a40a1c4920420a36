"""SQL over the heap, end to end: statements, transactions, errors, read-only, interrupts.

Rules and issue-3 points: heap + translation (point 1), WAL-first commit (2), read-only
enforcement 25006 (7), the protocol's extended query with binary parameters and results (5),
interrupts inside SQLite (DESIGN "interrupts").
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import psycopg
import pytest

from orchestrator.localnode import LocalNode


def test_ddl_dml_returning_and_types(node: LocalNode) -> None:
    with node.connect() as c:
        c.execute("CREATE TABLE acct (id serial PRIMARY KEY, owner text NOT NULL, balance numeric(12,2) DEFAULT 0,"
                  " active boolean DEFAULT true, opened timestamptz DEFAULT now())")
        rows = c.execute("INSERT INTO acct (owner, balance) VALUES (%s, %s), (%s, %s) RETURNING id, owner, balance",
                         ["ann", Decimal("10.50"), "bob", Decimal("3")]).fetchall()
        assert rows == [(1, "ann", Decimal("10.50")), (2, "bob", Decimal("3.00"))]
        cur = c.execute("SELECT id, active, opened FROM acct ORDER BY id")
        assert [d.type_code for d in cur.description] == [23, 16, 1184]
        (one, active, opened) = cur.fetchone()
        assert one == 1 and active is True and opened.tzinfo is not None
        assert c.execute("UPDATE acct SET balance = balance + 1 WHERE owner = %s RETURNING balance",
                         ["bob"]).fetchone() == (Decimal("4.00"),)
        assert c.execute("DELETE FROM acct WHERE id = 1 RETURNING owner").fetchone() == ("ann",)
        assert c.execute("SELECT count(*), sum(balance) FROM acct").fetchone() == (1, Decimal("4.00"))


def test_unique_violation_has_postgres_detail(node: LocalNode) -> None:
    with node.connect() as c:
        c.execute("CREATE TABLE u (id int PRIMARY KEY, v text)")
        c.execute("INSERT INTO u VALUES (1, 'a')")
        with pytest.raises(psycopg.errors.UniqueViolation) as ei:
            c.execute("INSERT INTO u VALUES (1, 'b')")
        assert ei.value.diag.message_primary == 'duplicate key value violates unique constraint "u_pkey"'
        assert ei.value.diag.message_detail == "Key (id)=(1) already exists."
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM nope")


def test_transaction_block_commit_rollback_and_savepoints(node: LocalNode) -> None:
    with node.connect() as c:
        c.execute("CREATE TABLE t (a int)")
        c.execute("BEGIN")
        c.execute("INSERT INTO t VALUES (1)")
        c.execute("SAVEPOINT s1")
        c.execute("INSERT INTO t VALUES (2)")
        c.execute("ROLLBACK TO SAVEPOINT s1")
        c.execute("INSERT INTO t VALUES (3)")
        c.execute("RELEASE SAVEPOINT s1")
        c.execute("COMMIT")
        c.execute("BEGIN")
        c.execute("INSERT INTO t VALUES (4)")
        c.execute("ROLLBACK")
        assert c.execute("SELECT a FROM t ORDER BY a").fetchall() == [(1,), (3,)]
        c.execute("BEGIN")
        c.execute("INSERT INTO t VALUES (5)")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0 FROM t")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("INSERT INTO t VALUES (6)")
        c.execute("COMMIT")  # reports ROLLBACK: the failed block is discarded
        assert c.execute("SELECT count(*) FROM t").fetchone() == (2,)
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction):
            c.execute("SAVEPOINT x")


def test_read_only_transactions_25006(node: LocalNode) -> None:
    with node.connect() as c:
        c.execute("CREATE TABLE r (a int)")
        c.execute("BEGIN READ ONLY")
        assert c.execute("SELECT count(*) FROM r").fetchone() == (0,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction,
                           match="cannot execute INSERT in a read-only transaction"):
            c.execute("INSERT INTO r VALUES (1)")
        c.execute("ROLLBACK")
        c.execute("SET default_transaction_read_only = on")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            c.execute("UPDATE r SET a = 2")
        c.execute("SET default_transaction_read_only = off")
        c.execute("INSERT INTO r VALUES (1)")


def test_extended_protocol_binary_params_and_results(node: LocalNode) -> None:
    """psycopg's binary parameters (int2/int8/bool/float8/bytea) and a binary cursor."""
    with node.connect() as c:
        c.execute("CREATE TABLE b (i int8, f float8, ok boolean, data bytea, s text)")
        c.execute("INSERT INTO b VALUES (%s, %s, %s, %s, %s)", [2**40, 1.5, True, b"\x00\x01", "x"])
        for i in range(7):  # prepared from the 6th execution on
            c.execute("INSERT INTO b (i, s) VALUES (%s, %s)", [i, f"r{i}"])
        assert c.execute("SELECT i, f, ok, data FROM b WHERE s = %s", ["x"]).fetchone() == (2**40, 1.5, True,
                                                                                               b"\x00\x01")
        with c.cursor(binary=True) as cur:
            cur.execute("SELECT i, s FROM b WHERE i = %s", [3])
            assert cur.fetchone() == (3, "r3")
        with c.cursor() as cur:
            cur.executemany("INSERT INTO b (i) VALUES (%s)", [(100 + k,) for k in range(5)])
        assert c.execute("SELECT count(*) FROM b WHERE i >= 100 AND i < 200").fetchone() == (5,)


def test_cancel_inside_sqlite(node: LocalNode) -> None:
    """DESIGN "interrupts": a cancel reaches a statement running inside SQLite."""
    with node.connect() as c:
        t = threading.Thread(target=lambda: (time.sleep(0.5), c.cancel_safe()))
        t.start()
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n")
        assert time.monotonic() - t0 < 10
        t.join()
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_writer_waits_for_the_lock_and_lock_timeout(node: LocalNode) -> None:
    """One writer at a time: a second writer waits, and gives up after lock_timeout (55P03)."""
    with node.connect() as a, node.connect() as b:
        a.execute("CREATE TABLE w (x int)")
        a.execute("BEGIN")
        a.execute("INSERT INTO w VALUES (1)")
        b.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable, match="canceling statement due to lock timeout"):
            b.execute("INSERT INTO w VALUES (2)")
        a.execute("COMMIT")
        b.execute("INSERT INTO w VALUES (2)")
        assert b.execute("SELECT count(*) FROM w").fetchone() == (2,)


def test_schemas_and_search_path(node: LocalNode) -> None:
    with node.connect() as c:
        c.execute("CREATE SCHEMA app")
        c.execute("CREATE TABLE app.items (id int PRIMARY KEY, name text)")
        c.execute("INSERT INTO app.items VALUES (1, 'x')")
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM items")
        c.execute("SET search_path = app, public")
        assert c.execute("SELECT items.name FROM items").fetchone() == ("x",)


def test_psql_session(node: LocalNode) -> None:
    r = node.psql("-c", "CREATE TABLE p (a int, b text)", "-c", "INSERT INTO p VALUES (1, 'one'), (2, 'two')",
                  "-c", "SELECT b FROM p ORDER BY a DESC")
    assert r.returncode == 0, r.stderr
    assert "INSERT 0 2" in r.stdout and "two\n one" in r.stdout.replace(" two", "two")


def test_select_for_update_takes_the_write_lock(node: LocalNode) -> None:
    """Issue 3 point 1: FOR UPDATE is a write-locking read, not silently dropped."""
    with node.connect() as a, node.connect() as b:
        a.execute("CREATE TABLE f (id int PRIMARY KEY, v int)")
        a.execute("INSERT INTO f VALUES (1, 0)")
        a.execute("BEGIN")
        assert a.execute("SELECT v FROM f WHERE id = 1 FOR UPDATE").fetchone() == (0,)
        b.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            b.execute("UPDATE f SET v = 1 WHERE id = 1")
        a.execute("COMMIT")


def test_wait_events_in_pg_stat_activity(node: LocalNode) -> None:
    """Issue 3 point 6: wait_event_type/wait_event as PostgreSQL names them."""
    with node.connect() as idle, node.connect() as sleeper, node.connect() as holder, node.connect() as waiter, \
            node.connect() as watch:  # fmt: skip
        holder.execute("CREATE TABLE lk (a int)")
        holder.execute("BEGIN")
        holder.execute("INSERT INTO lk VALUES (1)")
        ts = [threading.Thread(target=lambda: sleeper.execute("SELECT pg_sleep(2)"), daemon=True),
              threading.Thread(target=lambda: waiter.execute("INSERT INTO lk VALUES (2)"), daemon=True)]
        for t in ts:
            t.start()

        def events() -> dict[int, tuple[str | None, str | None]]:
            rows = watch.execute("SELECT pid, wait_event_type, wait_event FROM pg_stat_activity").fetchall()
            return {r[0]: (r[1], r[2]) for r in rows}

        want = {idle.info.backend_pid: ("Client", "ClientRead"), sleeper.info.backend_pid: ("Timeout", "PgSleep"),
                waiter.info.backend_pid: ("Lock", "transactionid")}
        node.poll_until(lambda: all(events().get(p) == w for p, w in want.items()), what="wait events")
        assert ("Activity", "CheckpointerMain") in events().values()
        holder.execute("COMMIT")
        for t in ts:
            t.join(10)


def test_set_transaction_read_only_and_txid(node: LocalNode) -> None:
    """Issue 3 point 7: SET TRANSACTION READ ONLY (and the session-wide form); point 6: txid_current()."""
    with node.connect() as c:
        c.execute("CREATE TABLE st (a int)")
        c.execute("BEGIN")
        c.execute("SET TRANSACTION READ ONLY")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            c.execute("INSERT INTO st VALUES (1)")
        c.execute("ROLLBACK")
        c.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            c.execute("INSERT INTO st VALUES (1)")
        c.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        c.execute("INSERT INTO st VALUES (1)")
        (x1,) = c.execute("SELECT txid_current()").fetchone()
        (x2,) = c.execute("SELECT txid_current()").fetchone()
        assert x2 > x1 > 0
        c.execute("BEGIN")
        c.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE")
        (a,) = c.execute("SELECT txid_current()").fetchone()
        (b,) = c.execute("SELECT txid_current()").fetchone()
        assert a == b  # one xid per transaction
        c.execute("COMMIT")


def test_system_views_with_like_and_unsupported_constructs(node: LocalNode) -> None:
    """System views answer [NOT] LIKE / ILIKE (psql users filter pg_stat_activity that way); a
    construct the system-view evaluator lacks is 0A000 naming it, not a misleading 42P01 from
    the table engine, which does not know the views; user tables still take it."""
    assert node.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'check%'") == [(1,)]
    assert node.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type NOT ILIKE 'CHECK%' "
                    "AND backend_type = 'client backend'") == [(1,)]  # fmt: skip
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="BETWEEN is not supported by pgbed yet"):
        node.sql("SELECT pid FROM pg_catalog.pg_stat_activity WHERE pid BETWEEN 1 AND 2")
    node.sql("CREATE TABLE liketest (a text)")
    node.sql("INSERT INTO liketest VALUES ('x')")
    assert node.sql("SELECT a FROM liketest WHERE a BETWEEN 'a' AND 'z' AND a LIKE 'x'") == [("x",)]
    # a Python list is sent as an array parameter: arrays are beyond pgbed, and both paths say so
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=r"ANY \(array or subquery\) is not supported"):
        node.sql("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", ([1, 2],))
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=r"ANY \(array or subquery\) is not supported"):
        node.sql("SELECT a FROM liketest WHERE a = ANY(%s)", (["x"],))
    with pytest.raises(psycopg.errors.UndefinedFunction, match="function nosuchfn"):
        node.sql("SELECT nosuchfn(pid) FROM pg_stat_activity")


def test_deallocate(node: LocalNode) -> None:
    """DEALLOCATE [PREPARE] name | ALL drops named prepared statements (psycopg sends DEALLOCATE
    ALL to resynchronise its cache after some rollbacks); an unknown name is 26000."""
    with node.connect() as c:
        c.execute("SELECT 1", prepare=True)
        name = next(iter(c._prepared._names.values())).decode()  # psycopg's own name for it, e.g. _pg3_0
        cur = c.execute(f"DEALLOCATE {name}", prepare=False)
        assert cur.statusmessage == "DEALLOCATE"
        with pytest.raises(psycopg.errors.InvalidSqlStatementName, match=f'prepared statement "{name}" does not exist'):
            c.execute(f"DEALLOCATE PREPARE {name}", prepare=False)
        assert c.execute("DEALLOCATE ALL", prepare=False).statusmessage == "DEALLOCATE ALL"
        with pytest.raises(psycopg.errors.SyntaxError):
            c.execute("DEALLOCATE", prepare=False)
