"""CREATE EXTENSION / DROP EXTENSION for the modules pgbed ships (node/contrib).

What it does: records an installed extension as a row of `pgbed_extension` in the heap, written
in the session's transaction (so it is WAL-logged and a standby has it too), runs the module's
`install(sql_session)` hook if it has one, and answers `installed()` for the SQL functions an
extension provides (they raise 42883 until it is created, as in PostgreSQL).

What it deliberately does not do: control files, versions and update scripts, schemas other
than the default, dependencies between extensions.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from node import protocol as P
from node.elog import PGError

AVAILABLE = {"pgbed_test": "node.contrib.pgbed_test", "worker_spi": "node.contrib.worker_spi"}
TABLE_DDL = "CREATE TABLE IF NOT EXISTS pgbed_extension (extname TEXT PRIMARY KEY, extversion TEXT NOT NULL)"

_CREATE = re.compile(r"^\s*create\s+extension\s+(if\s+not\s+exists\s+)?(\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_]*)"
                     r"(?:\s+with)?(?:\s+schema\s+\S+)?(?:\s+version\s+\S+)?(?:\s+cascade)?\s*;?\s*$",
                     re.I)  # fmt: skip
_DROP = re.compile(r"^\s*drop\s+extension\s+(if\s+exists\s+)?(\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_]*)"
                   r"(?:\s+(?:cascade|restrict))?\s*;?\s*$", re.I)  # fmt: skip


def installed(session: Any, name: str) -> bool:
    conn = session.sql_session().heap.conn
    try:
        return conn.execute("SELECT 1 FROM pgbed_extension WHERE extname = ?", (name,)).fetchone() is not None
    except Exception:
        return False  # no table yet: nothing installed


def require(session: Any, name: str, function: str) -> None:
    """The 42883 a function of an extension that was not created gives."""
    if not installed(session, name):
        raise PGError(f"function {function} does not exist", "42883",
                      hint="No function matches the given name and argument types. You might need to add explicit "
                      "type casts.")  # fmt: skip


def statement(s: Any, sql: str) -> None:
    """CREATE/DROP EXTENSION in the session's transaction."""
    create = _CREATE.match(sql)
    drop = _DROP.match(sql) if create is None else None
    if create is None and drop is None:
        raise PGError(f'syntax error at or near "{sql.strip()[:30]}"', "42601")
    m = create or drop
    assert m is not None
    if_clause, name = m.group(1), m.group(2).strip('"')
    verb = "CREATE EXTENSION" if create else "DROP EXTENSION"
    if s.sql_in_recovery() or s.guc.get("transaction_read_only"):
        raise PGError(f"cannot execute {verb} in a read-only transaction", "25006")
    sqls = s.sql_session()
    if create and name not in AVAILABLE:
        control = f"/usr/share/postgresql/15/extension/{name}.control"
        raise PGError(f'extension "{name}" is not available', "0A000",
                      detail=f'Could not open extension control file "{control}": No such file or directory.',
                      hint="The extension must first be installed on the system where PostgreSQL is "
                      "running.")  # fmt: skip
    exists = installed(s, name)
    if create and exists:
        if if_clause:
            s.notice("NOTICE", f'extension "{name}" already exists, skipping', "42710")
            s.conn.send(P.command_complete(verb))
            return
        raise PGError(f'extension "{name}" already exists', "42710")
    if drop and not exists:
        if if_clause:
            s.notice("NOTICE", f'extension "{name}" does not exist, skipping', "00000")
            s.conn.send(P.command_complete(verb))
            return
        raise PGError(f'extension "{name}" does not exist', "42704")
    def write() -> None:
        sqls.heap.execute_ddl([TABLE_DDL])
        conn = sqls.heap.conn
        if create:
            conn.execute("INSERT INTO pgbed_extension (extname, extversion) VALUES (?, '1.0')", (name,))
            hook = getattr(importlib.import_module(AVAILABLE[name]), "install", None)
            if hook is not None:
                hook(sqls)
        else:
            conn.execute("DELETE FROM pgbed_extension WHERE extname = ?", (name,))

    from node.statements import in_statement_txn

    in_statement_txn(s, write)
    s.conn.send(P.command_complete(verb))
