"""The node verbs that do not depend on where a node runs: SQL, polling with deadlines, LSNs,
catch-up, promotion, the server log and the jsonlog's events.

What it does: `PgNode` gives both backends (orchestrator/localnode.py's processes and
orchestrator/dockernode.py's containers) one implementation of TAP's client-side verbs — connstr,
connect, sql, safe_sql, poll_until, poll_query_until, lsn, wait_for_catchup, promote,
connect_ok/connect_fails, log_offset, log_contains, wait_for_log, and `parse_events` for the
jsonlog. A subclass supplies `name`, `host`, `port`, `log_content()` and `_evidence(what)` (the
message of a NodeError: what was awaited, the log tail, where the logs are).

What it deliberately does not do: start, stop or signal anything (each backend does that its
own way).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

DEFAULT_TIMEOUT = float(os.environ.get("PGBED_TEST_TIMEOUT", "30"))


class NodeError(AssertionError):
    pass


def parse_events(text: str, name: str | None = None) -> list[dict[str, Any]]:
    """The jsonlog's records (optionally only the events named `name`); torn lines are skipped."""
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if name is None or rec.get("event") == name:
            out.append(rec)
    return out


# Auxiliary processes and launchers of PostgreSQL 15 that pgbed does not have: their titles
# would otherwise look like a backend's "user database host" to the pattern below.
PG_ONLY_TITLES = ("logical replication launcher", "autovacuum launcher", "autovacuum worker",
                  "background writer", "walwriter", "archiver", "parallel worker")  # fmt: skip


def role_of_title(cmdline: str, cluster_name: str = "") -> str:
    """The role a pgbed child's process title (set by node/launch.py's set_title), or a
    PostgreSQL child's (`postgres: <cluster_name>: …`), says it has:
    startup, checkpointer, walreceiver, walsender, backend, or `other` (bgworkers carry their
    own type as title, so they are found through pg_stat_bgworker instead)."""
    t = cmdline.removeprefix("pgbed: ").removeprefix("postgres: ")
    if cluster_name:
        t = t.removeprefix(f"{cluster_name}: ")
    if t.startswith(PG_ONLY_TITLES):
        return "other"
    first = t.split(" ", 1)[0]
    if first in ("startup", "checkpointer", "walreceiver"):
        return first
    if first == "walsender":
        return "walsender"
    # a client backend: "user database host[(port)] state"
    if re.match(r"\S+ \S+ (\[local\]|\S+\(\d+\)|\S+) ", t + " ") and first not in ("postmaster",):
        return "backend"
    return "other"


class PgNode(ABC):
    name: str
    host: str
    port: int  # a plain attribute (local) or a property re-read at each container start (docker)
    poll_interval_s = 0.02

    @abstractmethod
    def log_content(self) -> str:
        """The server log so far (a file locally, `docker logs` for a container)."""

    @abstractmethod
    def _evidence(self, what: str) -> str:
        """A NodeError message: what was awaited, the log tail, where the full logs are."""

    # -- lifecycle verbs built on the backend's signal/stop/start/wait_exit -------------------------

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)  # type: ignore[attr-defined]
        self.wait_exit()  # type: ignore[attr-defined]

    def restart(self, mode: str = "fast") -> Any:
        self.stop(mode)  # type: ignore[attr-defined]
        return self.start()  # type: ignore[attr-defined]

    def reload(self) -> None:
        self.signal(signal.SIGHUP)  # type: ignore[attr-defined]

    # -- processes by role -------------------------------------------------------------------------

    def pids(self, role: str, name: str | None = None) -> list[int]:
        """Pids of this node's processes by role (orchestrator/faults.py ROLES), from the process
        titles of the postmaster's children; bgworkers by name or type (`name`) from
        pg_stat_bgworker, since a worker's title is its own type."""
        if role == "postmaster":
            return [self.pid] if self.is_running() else []  # type: ignore[attr-defined]
        if role == "bgworker":
            q = "SELECT pid FROM pg_stat_bgworker WHERE status = 'started'"
            rows = self.sql(q + " AND (name = %s OR type = %s)", (name, name)) if name else self.sql(q)
            return sorted(int(r[0]) for r in rows if r[0])
        children = self.children().items()  # type: ignore[attr-defined]
        return sorted(pid for pid, title in children if role_of_title(title, self.name) == role)

    # -- clients ----------------------------------------------------------------------------------

    def connstr(self, **kw: Any) -> str:
        params = {"host": self.host, "port": self.port, "user": "postgres", "dbname": "postgres",
                  "connect_timeout": 10}  # fmt: skip
        params.update(kw)
        return " ".join(f"{k}={v}" for k, v in params.items())

    def connect(self, **kw: Any) -> Any:
        import psycopg

        autocommit = kw.pop("autocommit", True)
        return psycopg.connect(self.connstr(**kw), autocommit=autocommit)

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect() as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else []

    def safe_sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """sql() that turns any failure into a NodeError carrying the log tail (TAP's safe_psql)."""
        try:
            return self.sql(query, params)
        except Exception as e:
            raise NodeError(self._evidence(f"query {query!r} failed: {e!r}")) from e

    def connect_ok(self, *, log_like: str | None = None, **kw: Any) -> None:
        """A connection with these parameters succeeds and runs SELECT 1 (and, with log_like, the
        server logs a line matching it)."""
        off = self.log_offset()
        with self.connect(**kw) as c:
            got = c.execute("SELECT 1").fetchone()
        if got != (1,):
            raise NodeError(self._evidence(f"SELECT 1 returned {got!r}"))
        if log_like:
            self.wait_for_log(log_like, offset=off)

    def connect_fails(self, expected: str, *, log_like: str | None = None, **kw: Any) -> str:
        """A connection with these parameters fails with an error matching `expected`; returns
        the error text."""
        import psycopg

        off = self.log_offset()
        try:
            with self.connect(**kw) as c:
                c.execute("SELECT 1")
        except psycopg.Error as e:
            text = str(e)
            if not re.search(expected, text):
                raise NodeError(self._evidence(f"connection failed with {text!r}, not matching {expected!r}")) from e
            if log_like:
                self.wait_for_log(log_like, offset=off)
            return text
        raise NodeError(self._evidence(f"connection succeeded; expected a failure matching {expected!r}"))

    # -- waits ------------------------------------------------------------------------------------

    def poll_until(self, fn: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = fn()
                if last:
                    return last
            except Exception as e:
                last = e
            time.sleep(self.poll_interval_s)
        raise NodeError(self._evidence(f"{what} not reached within {timeout}s; last value {last!r}"))

    def poll_query_until(self, query: str, expected: Any = True, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Run `query` until its first column of its first row equals `expected` (TAP's
        poll_query_until, which compares with 't')."""

        def check() -> bool:
            rows = self.sql(query)
            return bool(rows) and rows[0][0] == expected

        self.poll_until(check, timeout=timeout, what=f"{query!r} = {expected!r}")

    # -- replication ------------------------------------------------------------------------------

    def lsn(self, kind: str = "flush") -> int:
        """TAP's lsn(): insert/flush on a primary, receive/replay on a standby."""
        from node.protocol import parse_lsn

        q = {"insert": "pg_current_wal_insert_lsn()", "flush": "pg_current_wal_flush_lsn()",
             "write": "pg_current_wal_lsn()", "receive": "pg_last_wal_receive_lsn()",
             "replay": "pg_last_wal_replay_lsn()"}[kind]  # fmt: skip
        v = self.sql(f"SELECT {q}")[0][0]
        return parse_lsn(v) if v else 0

    def wait_for_catchup(self, standby: Any, mode: str = "replay", target: int | None = None,
                         timeout: float = DEFAULT_TIMEOUT) -> None:  # fmt: skip
        """Wait until `standby`'s walsender on this node reports `mode` (sent/write/flush/replay)
        at or past `target` (default: our current flush position)."""
        from node.protocol import parse_lsn

        goal = self.lsn("flush") if target is None else target
        col = f"{mode}_lsn"

        def check() -> Any:
            rows = self.sql(f"SELECT {col}, application_name FROM pg_stat_replication")
            return any(r[0] and r[1] == standby.name and parse_lsn(r[0]) >= goal for r in rows)

        self.poll_until(check, timeout=timeout, what=f"{standby.name} {mode} catching up to {goal:X}")

    def promote(self, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> None:
        """pg_promote() and, with wait, until the node is out of recovery (TAP's promote)."""
        rows = self.sql("SELECT pg_promote(true, %s)", (int(timeout),))
        if rows != [(True,)]:
            raise NodeError(self._evidence(f"pg_promote() returned {rows!r}"))
        if wait:
            self.poll_query_until("SELECT NOT pg_is_in_recovery()", timeout=timeout)

    # -- the server log ---------------------------------------------------------------------------

    def log_offset(self) -> int:
        return len(self.log_content())

    def log_contains(self, pattern: str, offset: int = 0) -> bool:
        return re.search(pattern, self.log_content()[offset:]) is not None

    def wait_for_log(self, pattern: str, offset: int = 0, timeout: float = DEFAULT_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log_content()[offset:])
            if m:
                return m
            time.sleep(self.poll_interval_s)
        raise NodeError(self._evidence(f"log pattern {pattern!r} not seen within {timeout}s"))
