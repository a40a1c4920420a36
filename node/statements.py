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


def run_statement(s: Any, sql: str, params: list[Any], *, send_description: bool, result_formats: list[int]) -> None:
    c = s.conn
    sql = _strip_comments(sql)
    word = _first_word(sql)
    if s.tx == "E" and word not in TX_ALLOWED_IN_FAILED:
        raise PGError("current transaction is aborted, commands ignored until end of transaction block", "25P02")
    if word in ("begin", "start"):
        if s.tx != "I":
            s.notice("WARNING", "there is already a transaction in progress", "25001")
        else:
            s.tx = "T"
            s.xact_start = time.time()
            s.guc.begin_transaction()
        c.send(P.command_complete("BEGIN" if word == "begin" else "START TRANSACTION"))
        return
    if word in ("commit", "end", "rollback", "abort"):
        commit = word in ("commit", "end")
        if s.tx == "I":
            s.notice("WARNING", "there is no transaction in progress", "25P01")
            c.send(P.command_complete("COMMIT" if commit else "ROLLBACK"))
            return
        failed = s.tx == "E"
        s.guc.end_transaction(commit and not failed)
        s.tx = "I"
        s.xact_start = 0.0
        c.send(P.command_complete("COMMIT" if commit and not failed else "ROLLBACK"))
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
    if word == "select":
        from node import sysfuncs  # noqa: F401 - registers the functions and views
        from node.sysquery import run_select

        res = run_select(sql, s, params, getattr(s, "param_oids", []))
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
    raise PGError(f"{word.upper()} is not supported by pgbed yet (no SQL storage until the storage issue)",
                  "0A000")  # fmt: skip


def _encode(v: Any, col: P.Column) -> bytes | None:
    if v is None:
        return None
    if col.type_oid == P.VOID:
        return b""
    if col.format == 1:
        return P.encode_binary(v, col.type_oid)
    return P.encode_text(v, col.type_oid)


def describe(s: Any, sql: str, params: list[Any]) -> list[P.Column]:
    word = _first_word(sql)
    if word == "show":
        w = _words(sql)
        name = w[1] if len(w) > 1 else ""
        if name.lower() == "all":
            return [P.Column.for_type(n, P.TEXT) for n in ("name", "setting", "description")]
        return [P.Column.for_type(name.lower(), P.TEXT)]
    if word != "select":
        return []
    from node import sysfuncs  # noqa: F401
    from node.sysquery import VIEWS, Expr, _result_type, parse_select

    sel = parse_select(sql)
    view = VIEWS.get(sel.source) if sel.source else None
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


def _set(s: Any, sql: str) -> None:
    m = _SET.match(sql)
    if not m:
        if re.match(r"\s*set\s+(session\s+characteristics|transaction)", sql, re.I):
            raise PGError("SET TRANSACTION is not supported by pgbed yet", "0A000")
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


def _checkpoint(s: Any) -> None:
    from node.checkpointer import CHECKPOINT_FORCE, CHECKPOINT_IMMEDIATE, CHECKPOINT_WAIT
    from node.startup import request_checkpoint

    request_checkpoint(CHECKPOINT_IMMEDIATE | CHECKPOINT_FORCE | CHECKPOINT_WAIT, wait=True,
                       interrupts=s.check_for_interrupts)
