"""Crash recovery with real WAL: every acknowledged commit survives, redo is logged as
PostgreSQL logs it, and damaged WAL or pg_control fail the way PostgreSQL fails.

Rules and issue-3 points 3 and 4; T2 (RECOVERY_STARTED when redo starts, crash recovery
included), CRASH-7, CRASH-9 (a PANIC in the startup process aborts startup).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import psycopg
import pytest

from orchestrator import procfs
from orchestrator.localnode import LocalNode


def _insert_n(node: LocalNode, n: int, table: str = "d") -> None:
    with node.connect() as c:
        c.execute(f"CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY, v text)")
        for i in range(n):
            c.execute(f"INSERT INTO {table} VALUES (%s, %s)", [i, f"v{i}"])


def test_kill9_postmaster_then_redo(node: LocalNode) -> None:
    """Acknowledged commits survive SIGKILL of the postmaster; the restart replays them (T2)."""
    _insert_n(node, 50)
    node.kill9()
    node.poll_until(lambda: not node.orphans(), what="old children gone")
    off = node.log_offset()
    node.start()
    node.wait_for_log(r"redo starts at [0-9A-F]+/[0-9A-F]+", off)
    assert node.log_contains(r"redo done at [0-9A-F]+/[0-9A-F]+ system usage", off)
    assert node.log_contains(r"invalid record length at [0-9A-F]+/[0-9A-F]+: wanted 24, got 0", off)
    assert node.sql("SELECT count(*), max(id) FROM d") == [(50, 49)]
    states = [e["new"] for e in node.events("pm_state")]
    assert states[-3:] == ["STARTUP", "RECOVERY", "RUN"]


def test_immediate_shutdown_loses_nothing_acknowledged(node: LocalNode) -> None:
    _insert_n(node, 30)
    assert node.stop("immediate") == 0
    node.start()
    assert node.sql("SELECT count(*) FROM d") == [(30,)]


def test_clean_shutdown_needs_no_redo(node: LocalNode) -> None:
    _insert_n(node, 10)
    assert node.stop("fast") == 0
    off = node.log_offset()
    node.start()
    assert node.log_contains("database system was shut down at", off)
    assert not node.log_contains("redo starts", off)
    assert node.sql("SELECT count(*) FROM d") == [(10,)]


def test_concurrent_writers_random_kills(node: LocalNode) -> None:
    """Issue 3 point 4, seeded: three writers insert; each records the commits acknowledged to
    it, and a two-row transaction per step checks atomicity. At random moments the postmaster
    alone, or every process of the node at once, is SIGKILLed (alternating, six rounds); after each
    restart every acknowledged row is there and no transaction is half visible. (Backends frozen
    inside the commit protocol are test_kill_whole_node_inside_the_commit_window.)"""
    rng = random.Random(20261125)
    with node.connect() as c:
        c.execute("CREATE TABLE ack (writer int, seq int, part int, PRIMARY KEY (writer, seq, part))")
    acked: set[tuple[int, int]] = set()
    lock = threading.Lock()

    def writer(w: int, stop: threading.Event, start_seq: int) -> None:
        seq = start_seq
        try:
            conn = node.connect(connect_timeout=2)
        except psycopg.Error:
            return
        try:
            while not stop.is_set():
                seq += 1
                try:
                    with conn.transaction():
                        conn.execute("INSERT INTO ack VALUES (%s, %s, 1)", [w, seq])
                        conn.execute("INSERT INTO ack VALUES (%s, %s, 2)", [w, seq])
                except psycopg.Error:
                    return
                with lock:
                    acked.add((w, seq))
        finally:
            conn.close()

    base = 0
    for rnd in range(6):
        stop = threading.Event()
        threads = [threading.Thread(target=writer, args=(w, stop, base)) for w in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.2))
        if rnd % 2 == 0:
            os.kill(node.pid, signal.SIGKILL)  # the postmaster alone: children see it die
        else:
            for p in [node.pid, *node.children()]:  # the whole node at once
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        node.wait_exit()
        stop.set()
        for t in threads:
            t.join(10)
        node.poll_until(lambda: not node.orphans(), what="old children gone")
        node.start()
        rows = node.sql("SELECT writer, seq, count(*) FROM ack GROUP BY writer, seq")
        present = {(w, s) for w, s, _ in rows}
        assert all(n == 2 for _, _, n in rows), "a transaction is half visible after recovery"
        missing = acked - present
        assert not missing, f"acknowledged commits lost: {sorted(missing)[:10]}"
        base += 100000
    assert len(acked) > 20  # the load really ran


def test_torn_wal_tail_ends_redo_cleanly(node: LocalNode) -> None:
    """A record cut in the middle (garbage after the last good record) ends redo with
    PostgreSQL's message; everything before it is replayed, and the node opens."""
    _insert_n(node, 5)
    with node.connect() as c:
        lsn = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        seg = c.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
    node.kill9()
    node.poll_until(lambda: not node.orphans(), what="old children gone")
    hi, lo = (int(x, 16) for x in lsn.split("/"))
    pos = ((hi << 32) | lo) % (1024 * 1024)
    with open(node.datadir / "pg_wal" / seg, "r+b") as f:  # a plausible length, then garbage
        f.seek(pos)
        f.write((200).to_bytes(4, "little") + bytes(range(7, 47)))
    off = node.log_offset()
    node.start()
    node.wait_for_log(r"(incorrect resource manager data checksum in record at|record with incorrect prev-link"
                      r"|invalid record length at|invalid resource manager ID \d+ at) [0-9A-F]+/[0-9A-F]+", off)
    assert node.log_contains(r"redo done at", off)
    assert node.sql("SELECT count(*) FROM d") == [(5,)]


def test_corrupt_pg_control_is_fatal(node: LocalNode) -> None:
    node.stop("fast")
    p = node.datadir / "global" / "pg_control"
    data = bytearray(p.read_bytes())
    data[20] ^= 0xFF
    p.write_bytes(bytes(data))
    node.start(expect_fail=True)
    assert node.exit_code == 1
    assert node.log_contains("FATAL:  incorrect checksum in control file")  # ReadControlFile's wording
    assert "Traceback" not in node.log_content()


def test_missing_checkpoint_segment_is_fatal(node: LocalNode) -> None:
    node.stop("fast")
    for f in (node.datadir / "pg_wal").glob("0000000*"):
        f.unlink()
    node.start(expect_fail=True)
    assert node.exit_code == 1
    assert node.log_contains(r'could not open file "pg_wal/[0-9A-F]{24}": No such file or directory')
    assert node.log_contains("aborting startup due to startup process failure")


def _state(pid: int) -> str:
    return procfs.state(pid)


@pytest.mark.parametrize(("point", "survives"), [
    ("backend-before-commit", False),  # nothing in the WAL yet
    ("backend-commit-after-wal", True),  # WAL flushed, SQLite not committed: redo applies it
    ("backend-after-commit", True),  # committed, not yet acknowledged
])  # fmt: skip
def test_kill_whole_node_inside_the_commit_window(node: LocalNode, point: str, survives: bool) -> None:
    """Issue 3 point 4: a backend frozen (SIGSTOP by injection point) at each step of the commit
    protocol, then every process of the node SIGKILLed at once. None of these commits was
    acknowledged; after recovery the outcome is the one the WAL dictates."""
    with node.connect() as c:
        c.execute("CREATE TABLE win (id int PRIMARY KEY)")
        c.execute("INSERT INTO win VALUES (1)")
        c.execute("SELECT pgbed_injection_attach(%s, 'stop')", [point])
    before = set(node.children())
    done: list[object] = []

    def insert() -> None:
        try:
            with node.connect() as c2:
                c2.execute("INSERT INTO win VALUES (2)")
                done.append("acknowledged")
        except psycopg.Error as e:
            done.append(e)

    t = threading.Thread(target=insert, daemon=True)
    t.start()
    frozen = node.poll_until(lambda: [p for p in set(node.children()) - before if _state(p) == "T"],
                             what=f"a backend frozen at {point}")
    pids = [node.pid, *node.children()]
    for p in pids:
        os.kill(p, signal.SIGKILL)
    node.wait_exit()
    for p in frozen:
        os.kill(p, signal.SIGCONT)
    node.poll_until(lambda: not node.orphans(), what="old children gone")
    t.join(10)
    assert done and done[0] != "acknowledged"
    node.start()
    rows = node.sql("SELECT id FROM win ORDER BY id")
    assert rows == ([(1,), (2,)] if survives else [(1,)])


def test_redo_reapplies_commits_the_heap_lost(node: LocalNode) -> None:
    """As after an OS crash that lost heap writes: the heap file is put back as it was at a
    checkpoint, later commits exist only in the WAL, and redo re-applies exactly those
    (DESIGN: redo = changeset apply from the checkpoint's redo point, idempotent by applied LSN)."""
    import shutil

    _insert_n(node, 10)
    with node.connect() as c:
        c.execute("CHECKPOINT")  # heap durable and SQLite's WAL folded into the file
    heap = node.datadir / "base" / "pgbed.db"
    saved = node.base / "heap-at-checkpoint.db"
    shutil.copy(heap, saved)
    with node.connect() as c:
        for i in range(10, 25):
            c.execute("INSERT INTO d VALUES (%s, %s)", [i, f"v{i}"])
        c.execute("UPDATE d SET v = 'changed' WHERE id = 3")
        c.execute("DELETE FROM d WHERE id = 4")
    node.kill9()
    node.poll_until(lambda: not node.orphans(), what="old children gone")
    shutil.copy(saved, heap)
    for extra in ("pgbed.db-wal", "pgbed.db-shm"):
        (node.datadir / "base" / extra).unlink(missing_ok=True)
    off = node.log_offset()
    node.start()
    assert node.log_contains("redo starts at", off)
    assert node.sql("SELECT count(*), max(id) FROM d") == [(24, 24)]
    assert node.sql("SELECT v FROM d WHERE id = 3") == [("changed",)]


def _segments(node: LocalNode) -> list[str]:
    return sorted(p.name for p in (node.datadir / "pg_wal").iterdir() if len(p.name) == 24)


def test_checkpoint_removes_old_segments_and_wal_keep_size_keeps_them(node_factory) -> None:
    """Issue 3 point 3: a checkpoint removes the segments before its redo point; wal_keep_size
    holds that much WAL back. Also the LSN functions and the pg_lsn type (OID 3220)."""
    n = node_factory()  # 1 MB segments in tests
    with n.connect() as c:
        c.execute("CREATE TABLE big (id int PRIMARY KEY, pad text)")
        for i in range(40):  # ~4 MB of WAL
            c.execute("INSERT INTO big VALUES (%s, %s)", [i, "x" * 100_000])
        cur = c.execute("SELECT pg_current_wal_lsn(), pg_current_wal_insert_lsn(), pg_current_wal_flush_lsn()")
        assert [d.type_code for d in cur.description] == [3220, 3220, 3220]
        before = _segments(n)
        assert len(before) >= 4
        c.execute("CHECKPOINT")
        after = _segments(n)
        (cur_seg,) = c.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
    assert len(after) < len(before) and after[-1] == before[-1]
    assert cur_seg in after and before[0] not in after
    n.append_conf(wal_keep_size="'8MB'")
    n.reload()
    n.wait_for_log('parameter "wal_keep_size" changed to "8MB"')
    with n.connect() as c:
        for i in range(40, 80):
            c.execute("INSERT INTO big VALUES (%s, %s)", [i, "x" * 100_000])
        c.execute("CHECKPOINT")
    final = _segments(n)
    assert final[0] == after[0]  # nothing removed: the last 8 MB are held back by wal_keep_size
    assert len(final) > len(after)


def test_failure_inside_the_commit_window_is_a_panic_and_a_crash(node_factory, standby_factory) -> None:
    """CRASH-1: anything that fails after a transaction's COMMIT record is in the WAL but before
    SQLite committed (here an injected error; in the chaos campaign that found this, a fast
    shutdown's interrupt inside SQLite) is a PANIC, and a PANIC is a crash: the postmaster sees
    the abort, and crash recovery replays the commit, so the primary ends with the row its
    standby already replayed. The backend used to exit 1 (and an error at that point used to
    roll back as an ordinary ERROR): no crash, a shutdown checkpoint over a heap lacking a
    WAL-committed transaction, and standbys with a row the primary had lost."""
    p = node_factory("primary")
    p.sql("CREATE TABLE win (id int PRIMARY KEY)")
    s = standby_factory(p, "standby1")
    p.sql("SELECT pgbed_injection_attach('backend-commit-after-wal', 'error', '')")
    done: list[object] = []

    def insert() -> None:
        try:
            with p.connect() as c:
                c.execute("INSERT INTO win VALUES (2)")
                done.append("acknowledged")
        except psycopg.Error as e:
            done.append(e)

    off = p.log_offset()
    t = threading.Thread(target=insert, daemon=True)
    t.start()
    t.join(20)
    assert done and done[0] != "acknowledged", done
    p.wait_for_log("PANIC:  could not commit transaction after writing its WAL", offset=off)
    p.wait_for_log(r"server process \(PID \d+\) was terminated by signal 6", offset=off)
    p.wait_for_log("all server processes terminated; reinitializing", offset=off)
    p.wait_for_log("database system is ready to accept connections", offset=off)
    assert p.sql("SELECT id FROM win") == [(2,)]
    p.wait_for_catchup(s, "replay")
    assert s.sql("SELECT id FROM win") == [(2,)]
