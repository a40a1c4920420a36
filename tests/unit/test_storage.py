"""node.storage: the WAL-first commit protocol, redo, and interrupts inside SQLite.

A fake WAL records each commit payload; replaying the payloads with apply_commit onto a copy of
the database made before the transactions must give the same rows (DESIGN "WAL": redo =
changeset apply, idempotent through applied_lsn). The real WAL files are tested in test_wal.py,
and crash recovery end to end in tests/node.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import apsw
import pytest

from node.elog import PGError
from node.storage import (
    OP_CHANGESET,
    OP_SQL,
    Heap,
    apply_commit,
    bootstrap_heap,
    decode_xact,
    encode_xact,
    heap_path,
)


class FakeWal:
    def __init__(self) -> None:
        self.lsn = 1000
        self.records: list[tuple[int, int, bytes, bool]] = []

    def append_commit(self, xid: int, payload: bytes, *, flush: bool) -> tuple[int, int]:
        start = self.lsn
        self.lsn += 8 * (1 + len(payload) // 8)
        self.records.append((xid, self.lsn, payload, flush))
        return start, self.lsn


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    primary = tmp_path / "primary"
    bootstrap_heap(primary)
    replica = tmp_path / "replica"
    (replica / "base").mkdir(parents=True)
    shutil.copy(heap_path(primary), heap_path(replica))
    return primary, replica


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    c = apsw.Connection(str(heap_path(path)))
    try:
        return [tuple(r) for r in c.execute(sql)]
    finally:
        c.close()


def replay(wal: FakeWal, replica: Path) -> int:
    conn = apsw.Connection(str(heap_path(replica)))
    n = sum(apply_commit(conn, end, payload) for _, end, payload, _ in wal.records)
    conn.close()
    return n


def test_xact_payload_round_trip() -> None:
    ops = [(OP_CHANGESET, b"\x01\x02"), (OP_SQL, b"CREATE TABLE x(a)"), (OP_CHANGESET, b"")]
    t, back = decode_xact(encode_xact(ops, 123.5))
    assert t == 123.5 and back == ops
    with pytest.raises(ValueError):
        decode_xact(encode_xact(ops, 1.0) + b"junk")


def test_commit_replays_identically_with_ddl_cut(dirs: tuple[Path, Path]) -> None:
    """Row changes before and after DDL in one transaction, a rowid table without a key, an
    UPDATE and a DELETE: replaying the WAL payloads reproduces the primary exactly."""
    primary, replica = dirs
    wal = FakeWal()
    h = Heap(primary)
    h.begin_write()
    h.execute_ddl(["CREATE TABLE counted (type TEXT, value INTEGER)"])  # no primary key
    h.conn.execute("INSERT INTO counted VALUES ('total', 1), ('delta', 5), ('delta', 7)")
    h.execute_ddl(["CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT)"])
    h.conn.execute("INSERT INTO k(v) VALUES ('a'), ('b')")
    end1 = h.commit(wal, xid=1, flush=True)
    h.begin_write()
    h.conn.execute("UPDATE counted SET value = value + 12 WHERE type = 'total'")
    h.conn.execute("DELETE FROM counted WHERE type = 'delta'")
    h.conn.execute("UPDATE k SET v = 'z' WHERE id = 2")
    end2 = h.commit(wal, xid=2, flush=False)
    assert end1 is not None and end2 is not None and end2 > end1
    assert h.applied_lsn() == end2
    kinds = [k for k, _ in decode_xact(wal.records[0][2])[1]]
    assert kinds == [OP_SQL, OP_CHANGESET, OP_SQL, OP_CHANGESET]
    h.close()
    assert replay(wal, replica) == 2
    for sql in ("SELECT rowid, * FROM counted ORDER BY rowid", "SELECT * FROM k ORDER BY id"):
        assert rows(replica, sql) == rows(primary, sql)
    assert rows(replica, "SELECT applied_lsn FROM pgbed_control") == [(end2,)]
    assert replay(wal, replica) == 0  # idempotent: everything at or below applied_lsn is skipped


def test_read_only_and_empty_transactions_write_no_wal(dirs: tuple[Path, Path]) -> None:
    primary, _ = dirs
    wal = FakeWal()
    h = Heap(primary)
    h.begin_write()
    h.execute_ddl(["CREATE TABLE t (a INTEGER)"])
    h.commit(wal, xid=1, flush=True)
    h.begin_write()
    h.conn.execute("SELECT * FROM t").fetchall()
    assert h.commit(wal, xid=2, flush=True) is None
    assert len(wal.records) == 1
    h.begin_write()
    h.conn.execute("INSERT INTO t VALUES (1)")
    h.rollback()
    assert rows(primary, "SELECT count(*) FROM t") == [(0,)]
    h.close()


def test_writer_waits_then_lock_timeout(dirs: tuple[Path, Path]) -> None:
    """One writer at a time: a second one waits (cancellable) and gives up with 55P03."""
    primary, _ = dirs
    a = Heap(primary)
    a.begin_write()
    calls: list[int] = []
    b = Heap(primary, interrupts=lambda: calls.append(1))
    with pytest.raises(PGError) as ei:
        b.begin_write(lock_timeout_ms=100)
    assert (ei.value.sqlstate, ei.value.message) == ("55P03", "canceling statement due to lock timeout")
    assert calls  # the wait checked for interrupts
    a.rollback()
    b.begin_write(lock_timeout_ms=100)
    b.rollback()
    a.close()
    b.close()


def test_cancel_interrupts_a_running_statement(dirs: tuple[Path, Path]) -> None:
    """DESIGN "interrupts": the progress handler runs CHECK_FOR_INTERRUPTS inside SQLite."""
    primary, _ = dirs
    ticks = {"n": 0}

    def interrupts() -> None:
        ticks["n"] += 1
        if ticks["n"] > 50:
            raise PGError("canceling statement due to user request", "57014")

    h = Heap(primary, interrupts=interrupts)
    long_query = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(PGError) as ei:
        h.run(lambda: h.conn.execute(long_query).fetchall())
    assert ei.value.sqlstate == "57014"
    assert h.run(lambda: h.conn.execute("SELECT 1").fetchall()) == [(1,)]
    h.close()


def test_commit_failure_after_wal_is_panic(dirs: tuple[Path, Path]) -> None:
    """A failure between the WAL flush and the local commit is a PANIC, never a rollback."""
    primary, _ = dirs

    class BrokenWal(FakeWal):
        def append_commit(self, xid: int, payload: bytes, *, flush: bool) -> tuple[int, int]:
            span = super().append_commit(xid, payload, flush=flush)
            h.conn.execute("DROP TABLE pgbed_control")  # make the applied_lsn update fail
            return span

    h = Heap(primary)
    h.begin_write()
    h.execute_ddl(["CREATE TABLE t (a INTEGER)"])
    with pytest.raises(PGError) as ei:
        h.commit(BrokenWal(), xid=1, flush=True)
    assert ei.value.severity == "PANIC"
