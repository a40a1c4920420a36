"""Running a Plan on the heap connection, applying its catalog changes, and mapping SQLite errors.

What it does:
- `execute(conn, catalog, plan, params)` binds the parameters (values.bind_params with the plan's
  parameter types), runs the plan's steps in order (capturing the rows of data-modifying CTE steps
  into temp tables that the final step reads), applies DDL catalog changes right after the SQL that
  makes them, and returns a `Result` (typed columns, raw SQLite rows, command tag). Columns the plan
  could not type get the type of their first non-NULL value (values.value_oid).
- `map_sqlite_error(exc, plan, params)` turns an apsw exception into the PGError PostgreSQL would send
  (23505 with the constraint name and, for single-row INSERTs, `Key (id)=(1) already exists.`,
  23502, 23514, 42P01, 42703, 42601, 42P07, 22P02, 57014, 40001, 42883).

What it deliberately does not do: open, begin or commit transactions, take the write lock, check
read-only mode, capture changesets or write WAL — the caller owns the transaction (wrap `execute` in it,
including for DDL, so the catalog rows commit with the schema change). Session commands (begin, commit,
set, show …) are not executed here; `execute` raises if given one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import apsw

from node import protocol as P
from node.elog import PGError
from node.sql import values as V
from node.sql.catalog import Catalog, TableInfo
from node.sql.translate import (
    CreateIndex,
    CreateSchema,
    CreateTable,
    DdlAction,
    DropIndex,
    DropSchema,
    DropTable,
    Plan,
    ResultColumn,
)

SESSION_KINDS = frozenset(("begin", "commit", "rollback", "savepoint", "release", "rollback_to", "set", "show"))


@dataclass
class Result:
    columns: list[ResultColumn] | None
    rows: list[tuple[object, ...]] = field(default_factory=list)
    tag: str = ""
    rowcount: int = 0

    @property
    def oids(self) -> list[int]:
        return [c.oid if c.oid is not None else P.TEXT for c in self.columns or []]

    def text_rows(self) -> list[list[str | None]]:
        """Rows in PostgreSQL text output form."""
        oids = self.oids
        return [[V.to_text(v, o) for v, o in zip(r, oids, strict=False)] for r in self.rows]


def apply_ddl(catalog: Catalog, action: DdlAction) -> None:
    if isinstance(action, CreateTable):
        catalog.add_table(action.table)
        for s in action.sequences:
            catalog.add_sequence(s)
    elif isinstance(action, DropTable):
        catalog.drop_table(action.sqlite_name)
    elif isinstance(action, CreateSchema):
        catalog.add_schema(action.name)
    elif isinstance(action, DropSchema):
        for t in action.tables:
            catalog.drop_table(t)
        catalog.drop_schema(action.name)
    elif isinstance(action, CreateIndex):
        catalog.add_index(action.index, action.unique_columns)
    elif isinstance(action, DropIndex):
        catalog.drop_index(action.index)


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def execute(
    conn: apsw.Connection, catalog: Catalog, plan: Plan, params: list[object] | tuple[object, ...] = ()
) -> Result:
    """Run `plan` inside the caller's transaction. Raises PGError (already mapped)."""
    if plan.kind in SESSION_KINDS:
        raise PGError(f"{plan.kind} is handled by the session, not the SQL executor", "XX000")
    if len(params) != plan.nparams:
        raise PGError(f"bind message supplies {len(params)} parameters, but prepared statement "
                      f'"" requires {plan.nparams}', "08P01")  # fmt: skip
    bound = V.bind_params(params, plan.param_types)
    temps: list[str] = []
    rows: list[tuple[object, ...]] = []
    changes_before = conn.total_changes()
    try:
        if plan.ddl and plan.kind in ("create_schema",):
            for a in plan.ddl:
                apply_ddl(catalog, a)
        for i, step in enumerate(plan.steps):
            last = i == len(plan.steps) - 1
            nargs = len(_PARAM.findall(step.sql))
            cur = conn.cursor()
            if step.capture is not None:
                got = list(cur.execute(step.sql, bound if nargs else ()))
                conn.execute(f"DROP TABLE IF EXISTS temp.{_qi(step.capture)}")
                conn.execute(f"CREATE TEMP TABLE {_qi(step.capture)} "
                             f"({', '.join(_qi(c) for c in step.capture_columns)})")  # fmt: skip
                temps.append(step.capture)
                if got:
                    marks = ", ".join("?" for _ in step.capture_columns)
                    conn.executemany(f"INSERT INTO temp.{_qi(step.capture)} VALUES ({marks})", got)
                continue
            changes0 = conn.total_changes()
            res = cur.execute(step.sql, bound if nargs else ())
            if last and plan.columns is not None:
                rows = list(res)
            else:
                for _ in res:
                    pass
            if plan.kind == "drop_table" or plan.kind == "drop_schema":
                pass
            if last:
                changed = conn.total_changes() - changes0
        if plan.ddl and plan.kind != "create_schema":
            for a in plan.ddl:
                apply_ddl(catalog, a)
    except apsw.Error as e:
        raise map_sqlite_error(e, plan, params, catalog) from None
    finally:
        for t in temps:
            try:
                conn.execute(f"DROP TABLE IF EXISTS temp.{_qi(t)}")
            except apsw.Error:
                pass
    del changes_before
    columns = None
    if plan.columns is not None:
        columns = [ResultColumn(c.name, c.oid, c.typmod) for c in plan.columns]
        for j, c in enumerate(columns):
            if c.oid is None:
                v = next((r[j] for r in rows if r[j] is not None), None)
                c.oid = V.value_oid(v) if v is not None else P.TEXT
    if plan.kind == "select":
        n = len(rows)
    elif plan.kind in ("insert", "update", "delete"):
        n = len(rows) if plan.columns is not None else (changed if plan.steps else 0)
    else:
        n = 0
    tag = f"{plan.tag} {n}" if plan.tag_counts else plan.tag
    return Result(columns, rows, tag, n)


# -- error mapping -------------------------------------------------------------------------------
_PARAM = re.compile(r"\?\d+")
_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)$")
_PK_ROWID = re.compile(r"PRIMARY KEY constraint failed")
_NOTNULL = re.compile(r"NOT NULL constraint failed: ([^.]+)\.(.+)$")
_CHECK = re.compile(r"CHECK constraint failed: (.+)$")
_NOSUCHTABLE = re.compile(r"no such table: (?:main\.)?(.+)$")
_NOSUCHCOL = re.compile(r"no such column: (.+)$")
_NOSUCHFUNC = re.compile(r"no such function: (.+)$")
_DATATYPE = re.compile(r"cannot store (\w+) value in (\w+) column ([^.]+)\.(.+)$")
_SYNTAX = re.compile(r'near "(.+)": syntax error')


def _relname(catalog: Catalog | None, sqlite_name: str) -> tuple[str, TableInfo | None]:
    ti = catalog.by_sqlite_name(sqlite_name) if catalog is not None else None
    return (ti.name if ti else sqlite_name), ti


def _key_detail(plan: Plan | None, params: list[object] | tuple[object, ...], cols: tuple[str, ...]) -> str | None:
    if plan is None or plan.kind != "insert" or len(plan.insert_rows) != 1:
        return None
    row = plan.insert_rows[0]
    vals: list[str] = []
    for c in cols:
        if c not in plan.insert_columns:
            return None
        v = row[plan.insert_columns.index(c)] if plan.insert_columns.index(c) < len(row) else None
        if isinstance(v, tuple) and v and v[0] == "param":
            idx = int(v[1]) - 1
            v = params[idx] if idx < len(params) else None
        if v is None:
            return None
        vals.append(str(v))
    return f"Key ({', '.join(cols)})=({', '.join(vals)}) already exists."


def _cause(exc: BaseException) -> PGError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, PGError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def map_sqlite_error(
    exc: BaseException,
    plan: Plan | None = None,
    params: list[object] | tuple[object, ...] = (),
    catalog: Catalog | None = None,
) -> PGError:
    """An apsw exception (or a PGError raised inside one of our SQL functions) -> PGError."""
    inner = _cause(exc)
    if inner is not None:
        return inner
    msg = str(exc)
    msg = msg.split(": ", 1)[1] if msg.startswith(("ConstraintError: ", "SQLError: ")) else msg
    m = _UNIQUE.search(msg)
    if m or _PK_ROWID.search(msg):
        cols: tuple[str, ...] = ()
        table = plan.target if plan is not None and plan.target else ""
        if m:
            parts = [x.strip() for x in m.group(1).split(",")]
            table = parts[0].split(".")[0]
            cols = tuple(x.split(".", 1)[1] for x in parts)
        rel, ti = _relname(catalog, table)
        cname = f"{rel}_{'_'.join(cols)}_key"
        if ti is not None:
            k = ti.constraint_for("p", cols) or ti.constraint_for("u", cols)
            if k is not None:
                cname = k.name
        return PGError(f'duplicate key value violates unique constraint "{cname}"', "23505",
                       detail=_key_detail(plan, params, cols))  # fmt: skip
    m = _NOTNULL.search(msg)
    if m:
        rel, _ = _relname(catalog, m.group(1))
        return PGError(f'null value in column "{m.group(2)}" of relation "{rel}" violates not-null constraint',
                       "23502")  # fmt: skip
    m = _CHECK.search(msg)
    if m:
        cname = m.group(1)
        rel = plan.target if plan is not None and plan.target else ""
        rel, _ = _relname(catalog, rel)
        return PGError(f'new row for relation "{rel}" violates check constraint "{cname}"', "23514")
    m = _DATATYPE.search(msg)
    if m:
        want = {"INTEGER": "integer", "REAL": "double precision", "TEXT": "text", "BLOB": "bytea"}.get(m.group(2))
        rel, ti = _relname(catalog, m.group(3))
        if ti is not None:
            col = ti.column(m.group(4))
            if col is not None:
                want = col.type.name
        return PGError(f"column \"{m.group(4)}\" is of type {want} but expression is of type "
                       f"{m.group(1).lower()}", "42804")  # fmt: skip
    m = _NOSUCHTABLE.search(msg)
    if m:
        rel, _ = _relname(catalog, m.group(1))
        return PGError(f'relation "{rel}" does not exist', "42P01")
    m = _NOSUCHCOL.search(msg)
    if m:
        name = m.group(1)
        pos = None
        if plan is not None and plan.sql:
            mm = re.search(r"\b" + re.escape(name.split(".")[-1]) + r"\b", plan.sql)
            pos = mm.start() + 1 if mm else None
        if "." in name:
            return PGError(f"column {name} does not exist", "42703", position=pos)
        return PGError(f'column "{name}" does not exist', "42703", position=pos)
    m = _NOSUCHFUNC.search(msg)
    if m:
        return PGError(f"function {m.group(1)}() does not exist", "42883",
                       hint="No function matches the given name and argument types. You might need to add explicit "
                            "type casts.")  # fmt: skip
    if "already exists" in msg:
        name = msg.rsplit(" ", 3)[0].split()[-1] if msg.startswith(("table", "index")) else ""
        rel, _ = _relname(catalog, name.strip('"'))
        return PGError(f'relation "{rel}" already exists', "42P07")
    if isinstance(exc, apsw.InterruptError) or "interrupted" in msg:
        return PGError("canceling statement due to user request", "57014")
    if isinstance(exc, (apsw.BusyError, apsw.LockedError)):
        return PGError("could not serialize access due to concurrent update", "40001")
    m = _SYNTAX.search(msg)
    if m:
        return PGError(f'syntax error at or near "{m.group(1)}"', "42601")
    if "too many terms in compound SELECT" in msg or "no such" in msg:
        return PGError(msg, "0A000")
    if isinstance(exc, apsw.TooBigError):
        return PGError("value too large", "54000")
    return PGError(f"internal SQLite error: {msg}", "XX000")
