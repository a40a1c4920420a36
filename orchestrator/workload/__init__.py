"""Workloads: seeded clients that record an operation history (orchestrator/history.py).

What it does: each workload has `setup(cluster)` (its tables), `clients(...)` (threads that
invoke operations against whatever node is the primary at that moment, or against standbys for
reads, and record invoke → ok / fail / info) and `final_read(cluster)` (the state the checker
compares the history with, read from the primary).
Outcomes follow what a client can know: an error the server sent
before the commit is `fail`; a connection that broke while a commit was in flight is `info`
(it may have committed); a commit whose synchronous-replication wait was cancelled is `ok`
(PostgreSQL committed it locally and says so in a WARNING).

What it deliberately does not do: judge (orchestrator/checker/data.py does) or inject faults.

Ownership: each client thread owns its connection and appends its own ops; `stop` is set by the
campaign thread only.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from orchestrator.cluster import Cluster
from orchestrator.history import FAIL, INFO, OK, History, Op

# SQLSTATE classes a client can trust as "the transaction did not commit": the server refused the
# statement (23 integrity, 42 syntax/undefined, 25 read-only transaction, 40 serialization,
# 55 lock not available, 57014 cancel before commit, 53 resources, 08P01 protocol).
DEFINITE_FAIL_CLASSES = ("23", "42", "25", "40", "55", "53", "22")
DEFINITE_FAIL_CODES = ("57014", "57P03", "08P01", "3D000", "28000", "28P01")


class NotConnected(Exception):
    """Client.ensure could not connect: the operation was never sent, a definite failure whatever
    the cause (a refused port, a proxy that accepted and closed, a FATAL at startup)."""


def classify(e: BaseException) -> tuple[str, str]:
    """(fail|info, error text) for an exception of one operation."""
    code = getattr(e, "sqlstate", None) or ""
    text = f"{code or type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    if isinstance(e, NotConnected):
        return FAIL, text
    if code and (code[:2] in DEFINITE_FAIL_CLASSES or code in DEFINITE_FAIL_CODES):
        return FAIL, text
    if isinstance(e, psycopg.OperationalError) and not code and "connection" in str(e).lower() \
            and "failed" in str(e).lower() and "server closed" not in str(e).lower():  # fmt: skip
        return FAIL, text  # the connection could not be made: nothing was sent
    return INFO, text


class Client(threading.Thread):
    """One worker thread: `step(conn, rng)` runs one operation and returns (f, value, result)."""

    def __init__(self, name: str, history: History, connect: Callable[[], Any], op: Callable[..., Any],
                 rng: random.Random, stop: threading.Event, pace_s: float) -> None:  # fmt: skip
        super().__init__(name=f"pgbed-{name}", daemon=True)
        self.process = name
        self.history = history
        self.connect_fn = connect
        self.op = op
        self.rng = rng
        self.stop_event = stop
        self.pace_s = pace_s
        self.conn: Any = None
        self.node: str | None = None

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.op(self)
            except Exception:  # an op records its own outcome; this keeps the thread alive
                self.drop()
                time.sleep(0.05)
            if self.pace_s:
                self.stop_event.wait(self.rng.uniform(0, 2 * self.pace_s))
        self.drop()

    def ensure(self) -> Any:
        if self.conn is None or self.conn.closed:
            try:
                self.conn, self.node = self.connect_fn()
            except psycopg.Error as e:
                raise NotConnected(str(e).strip().splitlines()[0] if str(e).strip() else repr(e)) from e
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        self.conn = None

    def invoke(self, f: str, value: Any) -> Op:
        return self.history.invoke(self.process, f, value, node=self.node)

    def outcome(self, inv: Op, e: BaseException) -> None:
        typ, text = classify(e)
        self.history.complete(inv, typ, error=text)
        if typ == INFO or isinstance(e, psycopg.OperationalError | NotConnected):
            self.drop()


def primary_connector(cluster: Cluster, timeout: float = 3.0) -> Callable[[], tuple[Any, str]]:
    def connect() -> tuple[Any, str]:
        n = cluster.primary
        return psycopg.connect(n.connstr(connect_timeout=int(timeout)), autocommit=True), n.name

    return connect


def any_node_connector(cluster: Cluster, rng: random.Random, timeout: float = 3.0) -> Callable[[], tuple[Any, str]]:
    def connect() -> tuple[Any, str]:
        names = sorted(cluster.nodes)
        n = cluster.nodes[rng.choice(names)]
        return psycopg.connect(n.connstr(connect_timeout=int(timeout)), autocommit=True), n.name

    return connect


class AckedWrites:
    """Unique inserts; the checker wants every acknowledged key to survive everything."""

    table = "acked"

    def __init__(self, clients: int = 3, pace_s: float = 0.01, table: str | None = None) -> None:
        if table:  # a campaign against a long-lived cluster (compose) uses tables of its own
            self.table = table
        self.n_clients = clients
        self.pace_s = pace_s
        self._next: dict[str, int] = {}

    def setup(self, cluster: Cluster) -> None:
        cluster.primary.safe_sql(f"CREATE TABLE IF NOT EXISTS {self.table} (k bigint PRIMARY KEY, writer text)")

    def final_read(self, cluster: Cluster) -> list[int]:
        return [int(r[0]) for r in cluster.primary.safe_sql(f"SELECT k FROM {self.table}")]

    def clients(self, cluster: Cluster, history: History, rng: random.Random, stop: threading.Event) -> list[Client]:
        out = []
        for i in range(self.n_clients):
            name = f"w{i}"
            self._next[name] = (i + 1) * 1_000_000_000

            def op(c: Client, name: str = name) -> None:
                self._next[name] += 1
                key = self._next[name]
                inv = c.invoke("insert", key)
                try:
                    conn = c.ensure()
                    conn.execute(f"INSERT INTO {self.table} VALUES (%s, %s)", (key, name))
                except Exception as e:
                    c.outcome(inv, e)
                    return
                c.history.complete(inv, OK)

            out.append(Client(name, history, primary_connector(cluster), op, random.Random(rng.random()), stop,
                              self.pace_s))  # fmt: skip
        return out


class Bank:
    """Transfers between accounts in one transaction each; reads (on any node) must always see
    the same total."""

    table = "accounts"

    def __init__(self, accounts: int = 8, balance: int = 100, clients: int = 2, readers: int = 2,
                 pace_s: float = 0.01, table: str | None = None) -> None:  # fmt: skip
        if table:
            self.table = table
        self.accounts = accounts
        self.balance = balance
        self.n_clients = clients
        self.n_readers = readers
        self.pace_s = pace_s

    @property
    def total(self) -> int:
        return self.accounts * self.balance

    def setup(self, cluster: Cluster) -> None:
        p = cluster.primary
        p.safe_sql(f"CREATE TABLE IF NOT EXISTS {self.table} (id int PRIMARY KEY, balance bigint NOT NULL)")
        if p.safe_sql(f"SELECT count(*) FROM {self.table}") == [(0,)]:
            values = ", ".join(f"({i}, {self.balance})" for i in range(self.accounts))
            p.safe_sql(f"INSERT INTO {self.table} VALUES {values}")

    def clients(self, cluster: Cluster, history: History, rng: random.Random, stop: threading.Event) -> list[Client]:
        out = []

        def transfer(c: Client) -> None:
            a, b = c.rng.sample(range(self.accounts), 2)
            amount = c.rng.randint(1, 10)
            inv = c.invoke("transfer", {"from": a, "to": b, "amount": amount})
            try:
                conn = c.ensure()
                with conn.transaction():
                    row = conn.execute(f"SELECT balance FROM {self.table} WHERE id = %s FOR UPDATE", (a,)).fetchone()
                    if row is None or row[0] < amount:
                        raise _Skip()
                    conn.execute(f"UPDATE {self.table} SET balance = balance - %s WHERE id = %s", (amount, a))
                    conn.execute(f"UPDATE {self.table} SET balance = balance + %s WHERE id = %s", (amount, b))
            except _Skip:
                c.history.complete(inv, FAIL, error="insufficient funds")
                return
            except Exception as e:
                c.outcome(inv, e)
                return
            c.history.complete(inv, OK)

        def read(c: Client) -> None:
            inv = c.invoke("read", None)
            try:
                conn = c.ensure()
                with conn.transaction():
                    rows = conn.execute(f"SELECT id, balance FROM {self.table}").fetchall()
            except Exception as e:
                c.outcome(inv, e)
                return
            c.history.complete(inv, OK, {"balances": {str(i): int(b) for i, b in rows}})

        for i in range(self.n_clients):
            out.append(Client(f"t{i}", history, primary_connector(cluster), transfer, random.Random(rng.random()),
                              stop, self.pace_s))  # fmt: skip
        for i in range(self.n_readers):
            r = random.Random(rng.random())
            out.append(Client(f"r{i}", history, any_node_connector(cluster, r), read, r, stop, self.pace_s))
        return out



class _Skip(Exception):
    """A transfer that would overdraw: rolled back by the client, a definite failure."""


class WorkerSpiDeltas:
    """Positive deltas inserted into worker_spi's schema1.counted on the primary; the worker
    (static, RecoveryFinished, so it runs on whichever node is the primary) folds them into the
    total row. Needs worker_spi in shared_preload_libraries with worker_spi.total_workers = 1."""

    table = "schema1.counted"

    def __init__(self, clients: int = 1, pace_s: float = 0.02) -> None:
        self.n_clients = clients
        self.pace_s = pace_s
        self.baseline = 0  # the total before this campaign's first delta (earlier campaigns' sum)

    def setup(self, cluster: Cluster, timeout: float = 30.0) -> None:
        """Make sure the total row exists and note its value once no delta is left unfolded (a
        long-lived cluster carries earlier campaigns' sums; final_read reports the difference)."""
        p = cluster.primary
        p.poll_until(lambda: p.sql("SELECT count(*) FROM schema1.counted") is not None, timeout=timeout,
                     what="worker_spi's schema1.counted")  # fmt: skip
        if p.safe_sql("SELECT count(*) FROM schema1.counted WHERE type = 'total'") == [(0,)]:
            p.safe_sql("INSERT INTO schema1.counted VALUES ('total', 0)")
        total, pending = self._read(cluster, timeout)
        if pending:
            raise AssertionError(f"worker_spi left {pending} deltas unfolded for {timeout:g} s before the campaign "
                                 f"(is its worker running on {p.name}?)")  # fmt: skip
        self.baseline = total or 0

    def clients(self, cluster: Cluster, history: History, rng: random.Random, stop: threading.Event) -> list[Client]:
        def delta(c: Client) -> None:
            v = c.rng.randint(1, 9)
            inv = c.invoke("delta", v)
            try:
                c.ensure().execute(f"INSERT INTO {self.table} VALUES ('delta', %s)", (v,))
            except Exception as e:
                c.outcome(inv, e)
                return
            c.history.complete(inv, OK)

        return [Client(f"d{i}", history, primary_connector(cluster), delta, random.Random(rng.random()), stop,
                       self.pace_s) for i in range(self.n_clients)]  # fmt: skip

    def final_read(self, cluster: Cluster, timeout: float = 30.0) -> tuple[int | None, int]:
        """(total this campaign added, delta rows left) once the worker has folded every delta,
        or at the deadline."""
        total, pending = self._read(cluster, timeout)
        return (None if total is None else total - self.baseline), pending

    def _read(self, cluster: Cluster, timeout: float) -> tuple[int | None, int]:
        p = cluster.primary
        deadline = time.monotonic() + timeout
        pending = -1
        while time.monotonic() < deadline:
            pending = int(p.safe_sql(f"SELECT count(*) FROM {self.table} WHERE type = 'delta'")[0][0])
            if pending == 0:
                break
            time.sleep(0.2)
        rows = p.safe_sql(f"SELECT value FROM {self.table} WHERE type = 'total'")
        return (int(rows[0][0]) if rows else None), pending
