"""Statement dispatch for a session: transaction control, SHOW/SET/RESET, CHECKPOINT, SELECT.

What it does: splits a simple-query string into statements (respecting quotes and comments),
applies PostgreSQL's transaction-block rules (25P02 in a failed block, the 25001/25P01
warnings, COMMIT of a failed block reporting ROLLBACK), and runs each statement, sending
RowDescription/DataRow/CommandComplete.

What it deliberately does not do: anything with tables. Statements outside this set get
0A000 naming the command; the storage issue routes them to SQLite instead.
"""

from __future__ import annotations

import re
import time
from typing import Any

from node import protocol as P
from node.elog import PGError

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _skip_quoted(sql: str, i: int) -> int:
    """Index just past the quoted token, comment or dollar-quoted string starting at sql[i]
    (psql's and the scanner's rules: '' doubling, E'' backslash escapes, "" identifiers,
    nested /* */ comments, -- to end of line, $tag$...$tag$)."""
    c = sql[i]
    n = len(sql)
    if c == "'" or c == '"':
        prefix_ok = i < 2 or not (sql[i - 2].isalnum() or sql[i - 2] == "_")
        escapes = c == "'" and i > 0 and sql[i - 1] in "eE" and prefix_ok
        j = i + 1
        while j < n:
            if escapes and sql[j] == "\\":
                j += 2
                continue
            if sql[j] == c:
                if j + 1 < n and sql[j + 1] == c:
                    j += 2
                    continue
                return j + 1
            j += 1
        return n
    if sql.startswith("--", i):
        j = sql.find("\n", i)
        return n if j < 0 else j + 1
    if sql.startswith("/*", i):
        depth, j = 1, i + 2
        while j < n and depth:
            if sql.startswith("/*", j):
                depth, j = depth + 1, j + 2
            elif sql.startswith("*/", j):
                depth, j = depth - 1, j + 2
            else:
                j += 1
        return j
    m = _DOLLAR.match(sql, i)
    if m and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
        end = sql.find(m.group(0), m.end())
        return n if end < 0 else end + len(m.group(0))
    return i + 1


def _strip_comments(sql: str) -> str:
    """The statement without leading whitespace and comments."""
    i = 0
    while i < len(sql):
        if sql[i].isspace():
            i += 1
        elif sql.startswith("--", i) or sql.startswith("/*", i):
            i = _skip_quoted(sql, i)
        else:
            break
    return sql[i:]


def split_statements(sql: str) -> list[str]:
    """Split a simple-query string at top-level semicolons; drop empty statements."""
    out: list[str] = []
    start = i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c == ";":
            stmt = sql[start:i].strip()
            if _strip_comments(stmt):
                out.append(stmt)
            start = i = i + 1
        elif c in "'\"$" or sql.startswith("--", i) or sql.startswith("/*", i):
            i = _skip_quoted(sql, i)
        else:
            i += 1
    stmt = sql[start:].strip()
    if _strip_comments(stmt):
        out.append(stmt)
    return out


def _words(sql: str) -> list[str]:
    return re.findall(r"[A-Za-z_][A-Za-z0-9_.]*|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[^\sA-Za-z_]+", sql)


TX_ALLOWED_IN_FAILED = {"rollback", "abort", "commit", "end"}
# Words that can start a PostgreSQL statement: anything else is a syntax error (42601), whereas
# a real statement pgbed cannot run yet is feature_not_supported (0A000).
STATEMENT_KEYWORDS = frozenset(
    "abort alter analyze begin call checkpoint close cluster comment commit copy create deallocate declare "
    "delete discard do drop end execute explain fetch grant import insert listen load lock merge move notify "
    "prepare reassign refresh reindex release reset revoke rollback savepoint security select set show start "
    "table truncate unlisten update vacuum values with".split()
)


def _first_word(sql: str) -> str:
    m = re.match(r"\s*([A-Za-z_]+)", _strip_comments(sql))
    return m.group(1).lower() if m else ""


def _second_word(sql: str) -> str:
    m = re.match(r"\s*[A-Za-z_]+\s+([A-Za-z_]+)", sql)
    return m.group(1).lower() if m else ""


_SAVEPOINT_NAME = re.compile(r"""^\s*(?:savepoint|release(?:\s+savepoint)?|rollback\s+(?:work\s+|transaction\s+)?to(?:\s+savepoint)?)\s+("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*;?\s*$""", re.I)  # noqa: E501


def _savepoint(s: Any, kind: str, sql: str) -> None:
    m = _SAVEPOINT_NAME.match(sql)
    if not m:
        raise PGError(f'syntax error at or near "{sql.split()[-1]}"', "42601")
    raw = m.group(1)
    name = raw[1:-1].replace('""', '"') if raw.startswith('"') else raw.lower()
    what = {"savepoint": "SAVEPOINT", "release": "RELEASE SAVEPOINT", "rollback_to": "ROLLBACK TO SAVEPOINT"}[kind]
    if s.tx == "I":
        raise PGError(f"{what} can only be used in transaction blocks", "25P01")
    s.sql_session().savepoint(kind, name)
    if kind == "rollback_to":
        s.tx = "T"  # ROLLBACK TO leaves a failed block usable again
    s.conn.send(P.command_complete({"savepoint": "SAVEPOINT", "release": "RELEASE", "rollback_to": "ROLLBACK"}[kind]))


def _begin(s: Any, word: str, sql: str) -> None:
    rest = sql.lower()
    if s.tx != "I":
        s.notice("WARNING", "there is already a transaction in progress", "25001")
    else:
        s.tx = "T"
        s.xact_start = time.time()
        s.guc.begin_transaction()
        if "read only" in rest:
            s.guc.set("transaction_read_only", "on", local=True)
        elif "read write" in rest:
            if s.sql_in_recovery():
                raise PGError("cannot set transaction read-write mode during recovery", "25006")
            s.guc.set("transaction_read_only", "off", local=True)
        elif s.guc.get("default_transaction_read_only"):
            s.guc.set("transaction_read_only", "on", local=True)
    s.conn.send(P.command_complete("BEGIN" if word == "begin" else "START TRANSACTION"))


def _end(s: Any, word: str) -> None:
    c = s.conn
    commit = word in ("commit", "end")
    if s.tx == "I":
        s.notice("WARNING", "there is no transaction in progress", "25P01")
        c.send(P.command_complete("COMMIT" if commit else "ROLLBACK"))
        return
    failed = s.tx == "E"
    sqls = s.sql if s.sql is not None else None
    try:
        if sqls is not None:
            if commit and not failed:
                sqls.commit()
            else:
                sqls.rollback()
    finally:
        s.guc.end_transaction(commit and not failed)
        s.tx = "I"
        s.xact_start = 0.0
    c.send(P.command_complete("COMMIT" if commit and not failed else "ROLLBACK"))


def run_statement(s: Any, sql: str, params: list[Any], *, send_description: bool, result_formats: list[int],
                  portal: str | None = None, max_rows: int = 0) -> None:  # fmt: skip
    c = s.conn
    sql = _strip_comments(sql)
    word = _first_word(sql)
    rollback_to = word == "rollback" and "to" in (_second_word(sql), _third_word(sql))
    if s.tx == "E" and word not in TX_ALLOWED_IN_FAILED:
        raise PGError("current transaction is aborted, commands ignored until end of transaction block", "25P02")
    if word in ("begin", "start"):
        _begin(s, word, sql)
        return
    if rollback_to:
        _savepoint(s, "rollback_to", sql)
        return
    if word in ("savepoint", "release"):
        if s.tx == "E":
            raise PGError("current transaction is aborted, commands ignored until end of transaction block",
                          "25P02")  # fmt: skip
        _savepoint(s, word, sql)
        return
    if word in ("commit", "end", "rollback", "abort"):
        _end(s, word)
        return
    if word == "show":
        _show(s, sql, send_description)
        return
    if word == "set":
        _set(s, sql)
        return
    if word == "reset":
        w = _words(sql)
        if len(w) != 2:
            raise PGError(f'syntax error at or near "{w[2] if len(w) > 2 else "RESET"}"', "42601")
        if w[1].lower() == "all":
            s.guc.reset_all()
        else:
            s.set_guc(w[1], None)
        c.send(P.command_complete("RESET"))
        return
    if word in ("create", "drop") and _second_word(sql).lower() == "extension":
        from node import extension

        extension.statement(s, sql)
        return
    if word == "alter" and _second_word(sql).lower() == "system":
        _alter_system(s, sql)
        c.send(P.command_complete("ALTER SYSTEM"))
        return
    if word == "checkpoint":
        _checkpoint(s)
        c.send(P.command_complete("CHECKPOINT"))
        return
    if word == "discard" and [w.lower() for w in sql.split()[1:2]] == ["all"]:
        if s.tx != "I":
            raise PGError("DISCARD ALL cannot run inside a transaction block", "25001")
        s.guc.reset_all()
        s.prepared.clear()
        c.send(P.command_complete("DISCARD ALL"))
        return
    if word == "deallocate":
        c.send(P.command_complete(_deallocate(s, sql)))
        return
    res: Any = None
    if word == "select":
        from node.pgcatalog import intercept  # psql's catalog queries, answered from our catalog

        res = intercept(sql, s)
    if res is None and word == "select" and handled_by_sysquery(sql):
        from node import sysfuncs  # noqa: F401 - registers the functions and views
        from node.sysquery import run_select

        res = run_select(sql, s, params, getattr(s, "param_oids", []))
    if res is not None:
        fmts = result_formats
        cols = res.columns
        if fmts:
            cols = [P.Column(col.name, col.type_oid, col.typlen, col.typmod,
                             fmts[0] if len(fmts) == 1 else fmts[i]) for i, col in enumerate(cols)]  # fmt: skip
        if send_description:
            c.send(P.row_description(cols))
        for row in res.rows:
            c.send(P.data_row([_encode(v, col) for v, col in zip(row, cols, strict=True)]))
        c.send(P.command_complete(res.tag))
        return
    if word not in STATEMENT_KEYWORDS:
        m = re.match(r"\s*(\S+)", sql)
        tok = m.group(1) if m else sql.strip()[:1]
        raise PGError(f'syntax error at or near "{tok}"', "42601", position=sql.find(tok) + 1)
    if word in ("create", "alter", "drop") and _second_word(sql) in ("role", "user", "group"):
        _role_statement(s, sql)
        return
    result = s.portal_results.pop(portal, None) if portal is not None else None
    if result is None:
        result = run_sql(s, sql, params)
    out_cols = _columns(result, result_formats)
    if send_description and out_cols is not None:
        c.send(P.row_description(out_cols))
    rows = result.rows
    if portal is not None and max_rows > 0 and len(rows) > max_rows:
        # Execute with a row limit: send that many, keep the rest for the next Execute of this
        # portal, and say PortalSuspended instead of CommandComplete (what JDBC's fetch size uses).
        for row in rows[:max_rows]:
            c.send(P.data_row(_encode_row(row, out_cols)))
        result.rows = rows[max_rows:]
        result.resumed = True
        s.portal_results[portal] = result
        c.send(P.portal_suspended())
        return
    for row in rows:
        c.send(P.data_row(_encode_row(row, out_cols)))
    # A resumed portal's tag counts the rows of this Execute only, as PortalRunSelect reports them.
    resumed = getattr(result, "resumed", False) and result.tag.startswith("SELECT")
    c.send(P.command_complete(f"SELECT {len(rows)}" if resumed else result.tag))


def _role_statement(s: Any, sql: str) -> None:
    """CREATE/ALTER/DROP ROLE|USER: rows of pgbed_authid, written (and WAL-logged) in the
    session's transaction like any other change; node/auth.py knows PostgreSQL's rules."""
    from node import auth

    spec = auth.parse_create_role(sql)
    if spec is None:
        raise PGError(f"{' '.join(sql.split()[:2]).upper()} in this form is not supported by pgbed", "0A000")
    verb = " ".join(sql.split()[:2]).upper()
    if s.sql_in_recovery() or s.guc.get("transaction_read_only") or (
            s.tx == "I" and s.guc.get("default_transaction_read_only")):  # fmt: skip
        raise PGError(f"cannot execute {verb} in a read-only transaction", "25006")
    sqls = s.sql_session()
    conn = sqls.heap.conn

    def lookup(name: str) -> Any:
        return auth.RoleRow.from_row(conn.execute(auth.SELECT_ROLE_SQL, (name,)).fetchone())

    first = conn.execute("SELECT rolname FROM pgbed_authid ORDER BY rowid LIMIT 1").fetchone()
    plan = auth.plan_role_statement(
        spec, lookup, current_user=s.user, is_superuser=bool(s.guc.get("is_superuser")),
        password_encryption=str(s.guc.show("password_encryption")),
        bootstrap_superuser=str(first[0]) if first else None,
    )  # fmt: skip
    def write() -> None:
        for stmt, args in plan.statements:
            conn.execute(stmt, args)

    in_statement_txn(s, write)
    for sqlstate, message in plan.notices:
        s.notice("NOTICE", message, sqlstate)
    s.conn.send(P.command_complete(plan.tag))


def in_statement_txn(s: Any, work: Any) -> None:
    """Run `work` in the session's write transaction: a statement of its own outside a
    transaction block (committed here, rolled back on error), or part of the open block."""
    sqls = s.sql_session()
    sqls.ensure_write_txn()
    try:
        work()
    except BaseException:
        if s.tx == "I":
            sqls.rollback()
        raise
    if s.tx == "I":
        sqls.commit()


def run_sql(s: Any, sql: str, params: list[Any]) -> Any:
    """A statement for the SQL layer: plan (cached), then run in the session's transaction."""
    sqls = s.sql_session()
    plan = sqls.plan(sql)
    if plan.kind in ("set", "show", "begin", "commit", "rollback", "savepoint", "release", "rollback_to"):
        raise PGError(f"{plan.kind.upper()} in this form is not supported by pgbed", "0A000")
    for sqlstate, message in plan.notices:
        s.notice("NOTICE", message, sqlstate)
    return sqls.run(plan, params)


def _columns(result: Any, result_formats: list[int]) -> list[P.Column] | None:
    if result.columns is None:
        return None
    oids = result.oids
    fmts = result_formats
    return [P.Column.for_type(col.name, oid, fmts[0] if len(fmts) == 1 else (fmts[i] if fmts else 0))
            for i, (col, oid) in enumerate(zip(result.columns, oids, strict=True))]  # fmt: skip


def _encode_row(row: Any, cols: list[P.Column] | None) -> list[bytes | None]:
    from node.sql.values import to_text

    out: list[bytes | None] = []
    for v, col in zip(row, cols or [], strict=False):
        if v is None:
            out.append(None)
        elif col.format == 1:
            out.append(_encode_binary(v, col.type_oid))
        else:
            t = to_text(v, col.type_oid)
            out.append(None if t is None else t.encode())
    return out


def _encode_binary(v: Any, oid: int) -> bytes:
    if oid == P.BOOL:
        return P.encode_binary(bool(v), oid)
    if oid in (P.NUMERIC,):
        from decimal import Decimal

        return P.encode_binary(Decimal(str(v)), oid)
    return P.encode_binary(v, oid)


_ROUTE: dict[str, bool] = {}


def handled_by_sysquery(sql: str) -> bool:
    """SELECTs over system functions and views only (no user table) stay on the system-query
    evaluator, which knows their types; everything else is the SQL layer's."""
    hit = _ROUTE.get(sql)
    if hit is None:
        from node import pgcatalog, sysfuncs  # noqa: F401 - register their functions and views
        from node.sysquery import parse_select

        try:
            parse_select(sql)
            hit = True
        except PGError as e:
            if e.sqlstate in ("0A000", "42883") and _names_a_system_view(sql):
                raise  # the SQL layer does not know the view: its 42P01 would mislead
            hit = False
        if len(_ROUTE) > 4096:
            _ROUTE.clear()
        _ROUTE[sql] = hit
    return hit


def _deallocate(s: Any, sql: str) -> str:
    """DEALLOCATE [PREPARE] { name | ALL }: drops named prepared statements (psycopg sends
    DEALLOCATE ALL to resynchronise its statement cache). Returns the command tag."""
    m = re.fullmatch(r"\s*deallocate\s+(?:prepare\s+)?(\"(?:[^\"]|\"\")+\"|[A-Za-z_][A-Za-z0-9_$]*)\s*;?\s*",
                     sql, re.IGNORECASE)  # fmt: skip
    if m is None:
        m2 = re.match(r"\s*deallocate\s*(\S*)", sql, re.IGNORECASE)
        tok = (m2.group(1) if m2 else "") or "end of input"
        raise PGError(f'syntax error at or near "{tok}"' if tok != "end of input" else
                      "syntax error at end of input", "42601")  # fmt: skip
    name = m.group(1)
    if name.lower() == "all":
        s.prepared.clear()
        return "DEALLOCATE ALL"
    name = name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()
    if name not in s.prepared:
        raise PGError(f'prepared statement "{name}" does not exist', "26000")
    del s.prepared[name]
    return "DEALLOCATE"


def _names_a_system_view(sql: str) -> bool:
    from node.sysquery import VIEWS

    m = re.search(r"\bfrom\s+(?:pg_catalog\.)?([A-Za-z_][A-Za-z0-9_]*)", sql, re.IGNORECASE)
    return m is not None and m.group(1).lower() in VIEWS


def _third_word(sql: str) -> str:
    m = re.match(r"\s*[A-Za-z_]+\s+[A-Za-z_]+\s+([A-Za-z_]+)", sql)
    return m.group(1).lower() if m else ""


def _encode(v: Any, col: P.Column) -> bytes | None:
    if v is None:
        return None
    if col.type_oid == P.VOID:
        return b""
    if col.format == 1:
        return P.encode_binary(v, col.type_oid)
    return P.encode_text(v, col.type_oid)


def describe(s: Any, sql: str, params: list[Any], portal: str | None = None) -> list[P.Column]:
    """Columns of a statement (portal None) or of a bound portal. A portal of the SQL layer is
    run here and its result kept for the Execute that follows in the same flight."""
    sql = _strip_comments(sql)
    word = _first_word(sql)
    if word == "show":
        w = _words(sql)
        name = w[1] if len(w) > 1 else ""
        if name.lower() == "all":
            return [P.Column.for_type(n, P.TEXT) for n in ("name", "setting", "description")]
        return [P.Column.for_type(name.lower(), P.TEXT)]
    if word in ("begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "set", "reset",
                "checkpoint", "discard"):  # fmt: skip
        return []
    if (word in ("create", "drop") and _second_word(sql) == "extension") or (
            word == "alter" and _second_word(sql) == "system"):  # fmt: skip
        return []  # utility statements of node/extension.py and ALTER SYSTEM: no result columns
    if word == "select":
        from node.pgcatalog import intercept

        res = intercept(sql, s)
        if res is not None:
            return list(res.columns)
    if not (word == "select" and handled_by_sysquery(sql)):
        if portal is None:  # a statement: only the plan's shape is known
            plan = s.sql_session().plan(sql)
            if plan.columns is None:
                return []
            return [P.Column.for_type(col.name, col.oid or P.TEXT) for col in plan.columns]
        if s.tx == "E":
            raise PGError("current transaction is aborted, commands ignored until end of transaction block",
                          "25P02")  # fmt: skip
        result = run_sql(s, sql, params)
        s.portal_results[portal] = result
        return _columns(result, []) or []
    from node import sysfuncs  # noqa: F401
    from node.sysquery import SRFS, VIEWS, Expr, ViewDef, _result_type, parse_select

    sel = parse_select(sql)
    view = VIEWS.get(sel.source) if sel.source else None
    if sel.source in SRFS:  # describe without running it: the function's declared columns
        view = ViewDef(SRFS[sel.source].columns, lambda _s: [])
    source_cols = dict(view.columns) if view else {}
    cols: list[P.Column] = []
    for e, alias in sel.items:
        if e.kind == "star" and view is not None:
            cols.extend(P.Column.for_type(c, t) for c, t in view.columns)
        elif isinstance(e, Expr):
            cols.append(P.Column.for_type(alias, _result_type(e, source_cols, getattr(s, "param_oids", []))))
    return cols


def _show(s: Any, sql: str, send_description: bool) -> None:
    from node.guc import GucError

    c = s.conn
    w = _words(sql)
    if len(w) < 2:
        raise PGError("syntax error at end of input", "42601", position=len(sql) + 1)
    name = " ".join(w[1:]).strip('"') if w[1].lower() in ("time", "transaction") else w[1].strip('"')
    if name.lower() == "time zone":
        name = "TimeZone"
    if name.lower() == "all":
        rows = s.guc.show_all()
        if send_description:
            c.send(P.row_description([P.Column.for_type(n, P.TEXT) for n in ("name", "setting", "description")]))
        for row in rows:
            c.send(P.data_row([x.encode() for x in row]))
        c.send(P.command_complete("SHOW"))
        return
    try:
        value = s.guc.show(name)
    except GucError as e:
        raise PGError(e.message, e.sqlstate, detail=e.detail, hint=e.hint) from None
    if send_description:
        c.send(P.row_description([P.Column.for_type(name.lower(), P.TEXT)]))
    c.send(P.data_row([str(value).encode()]))
    c.send(P.command_complete("SHOW"))


_SET = re.compile(
    r"""^\s*set\s+(?:(session|local)\s+)?(?:(time\s+zone)|("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_.]*)\s*(?:to|=))\s*(.*?)\s*;?\s*$""",
    re.I | re.S,
)


_SET_TRANSACTION = re.compile(
    r"^\s*set\s+(session\s+characteristics\s+as\s+)?transaction\s+(.*?)\s*;?\s*$", re.I | re.S
)


def _set_transaction(s: Any, session_wide: bool, modes: str) -> None:
    """SET TRANSACTION / SET SESSION CHARACTERISTICS AS TRANSACTION: READ ONLY|READ WRITE and
    ISOLATION LEVEL (accepted; with one writer at a time every level behaves as SERIALIZABLE)."""
    text = " ".join(modes.lower().replace(",", " ").split())
    ro: bool | None = None
    for part in re.finditer(r"read only|read write|isolation level (serializable|repeatable read|read committed|"
                            r"read uncommitted)|(not )?deferrable", text):  # fmt: skip
        if part.group(0) == "read only":
            ro = True
        elif part.group(0) == "read write":
            ro = False
    leftover = re.sub(r"read only|read write|isolation level (serializable|repeatable read|read committed|"
                      r"read uncommitted)|(not )?deferrable", "", text).strip()  # fmt: skip
    if leftover or not text:
        raise PGError(f'syntax error at or near "{leftover.split()[0] if leftover else "TRANSACTION"}"', "42601")
    if session_wide:
        if ro is not None:
            s.guc.set("default_transaction_read_only", "on" if ro else "off")
        return
    if s.tx == "I":
        s.notice("WARNING", "SET TRANSACTION can only be used in transaction blocks", "25P01")
        return
    if ro is False and s.sql_in_recovery():
        raise PGError("cannot set transaction read-write mode during recovery", "25006")
    if ro is not None:
        s.guc.set("transaction_read_only", "on" if ro else "off", local=True)


def _set(s: Any, sql: str) -> None:
    mt = _SET_TRANSACTION.match(sql)
    if mt:
        _set_transaction(s, bool(mt.group(1)), mt.group(2))
        s.conn.send(P.command_complete("SET"))
        return
    m = _SET.match(sql)
    if not m:
        raise PGError(f'syntax error at or near "{sql.strip()[:20]}"', "42601")
    scope, tz, name, value = m.groups()
    name = "TimeZone" if tz else name.strip('"')
    local = (scope or "").lower() == "local"
    if value.lower() == "default":
        s.set_guc(name, None, local=local)
    else:
        parts = _value_list(value)
        s.set_guc(name, ", ".join(parts), local=local)
    s.conn.send(P.command_complete("SET"))


_VALUE_ITEM = re.compile(r"""\s*(?:'((?:[^']|'')*)'|("(?:[^"]|"")*")|([-+]?[A-Za-z0-9_.$]+))\s*(,|$)""")


def _value_list(value: str) -> list[str]:
    """SET's var_list: comma-separated literals, identifiers or numbers, nothing else."""
    out: list[str] = []
    pos = 0
    if not value.strip():
        raise PGError("syntax error at end of input", "42601")
    while pos < len(value):
        m = _VALUE_ITEM.match(value, pos)
        if not m or m.end() == pos:
            bad = value[pos:].strip().split()[0] if value[pos:].strip() else value
            raise PGError(f'syntax error at or near "{bad}"', "42601")
        quoted, ident, word, _ = m.groups()
        if quoted is not None:
            out.append(quoted.replace("''", "'"))
        elif ident is not None:
            out.append(ident[1:-1].replace('""', '"'))
        else:
            out.append(word)
        pos = m.end()
        if m.group(4) == "," and pos >= len(value):
            raise PGError("syntax error at end of input", "42601")
    if not out:
        raise PGError("syntax error at end of input", "42601")
    return out


_ALTER_SYSTEM = re.compile(
    r"""^\s*alter\s+system\s+(?:set\s+("[^"]+"|[A-Za-z_][A-Za-z0-9_.$]*)\s*(?:\bto\b|=)\s*(.*?)"""
    r"""|reset\s+("[^"]+"|[A-Za-z_][A-Za-z0-9_.$]*))\s*;?\s*$""",
    re.I | re.S,
)


def _alter_system(s: Any, sql: str) -> None:
    """ALTER SYSTEM SET/RESET (guc.c AlterSystemSetConfigFile): validate the value, then rewrite
    postgresql.auto.conf atomically under its lock. Takes effect at the next reload/restart."""
    import os
    from pathlib import Path

    from node.guc import GucError
    from node.ipc.lwlock import LWLockId
    from node.proc import me

    if s.tx != "I":
        raise PGError("ALTER SYSTEM cannot run inside a transaction block", "25001")
    m = _ALTER_SYSTEM.match(sql)
    if not m:
        raise PGError(f'syntax error at or near "{sql.strip()[:30]}"', "42601")
    set_name, value, reset_name = m.groups()
    name = (set_name or reset_name).strip('"')
    new_value: str | None = None
    if set_name is not None and value.strip().lower() != "default":
        new_value = ", ".join(_value_list(value))
    if name.lower() != "all":
        try:
            if new_value is not None:
                s.guc.check_value(name, new_value)
            elif "." not in name:
                s.guc.check_value(name, str(s.guc.show(name)))
        except GucError as e:
            raise PGError(e.message, e.sqlstate, detail=e.detail, hint=e.hint) from None
        from node.guc import GucContext, lookup

        setting = lookup(name)
        if setting is not None and setting.context == GucContext.INTERNAL:
            raise PGError(f'parameter "{name}" cannot be changed', "55P02")
        if setting is not None:
            name = setting.name
    path = Path(me.datadir) / "postgresql.auto.conf"
    with me.locks.hold(LWLockId.AUTOCONF):
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        header = [ln for ln in lines if ln.startswith("#")] or [
            "# Do not edit this file manually!", "# It will be overwritten by the ALTER SYSTEM command."]
        entries = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
        if name.lower() == "all":
            entries = []
        else:
            entries = [ln for ln in entries if ln.split("=", 1)[0].strip().lower() != name.lower()]
            if new_value is not None:
                entries.append(f"{name} = '" + new_value.replace("'", "''") + "'")
        tmp = path.with_suffix(".conf.tmp")
        with open(tmp, "w") as f:
            f.write("\n".join(header + entries) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _checkpoint(s: Any) -> None:
    from node.checkpointer import CHECKPOINT_FORCE, CHECKPOINT_IMMEDIATE, CHECKPOINT_WAIT
    from node.startup import request_checkpoint

    request_checkpoint(CHECKPOINT_IMMEDIATE | CHECKPOINT_FORCE | CHECKPOINT_WAIT, wait=True,
                       interrupts=s.check_for_interrupts)
