"""Streaming standbys: replay, hot standby reads, consistency, promotion, following a new
primary, diverged nodes, synchronous replication.

Rules: WALRCV-1, WALRCV-2, WALRCV-7, WALRCV-8, REC-1, REC-2, REC-3, REC-5, WALSND-3, WALSND-8,
SHUT-3..6 with a walsender (F12 without the bgworker), F33; the synchronous_standby_names /
synchronous_commit behaviour of syncrep.c.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from node.protocol import parse_lsn
from orchestrator.localnode import LocalNode


def _repoint(n: LocalNode, primary: LocalNode, **extra: str) -> None:
    """primary_conninfo lives in postgresql.auto.conf (written by basebackup -R), which wins
    over postgresql.conf: rewrite it there, as ALTER SYSTEM would."""
    auto = n.datadir / "postgresql.auto.conf"
    lines = [ln for ln in auto.read_text().splitlines(True) if not ln.startswith("primary_conninfo")]
    lines.append(f"primary_conninfo = 'host={primary.host} port={primary.port} user=postgres "
                 f"application_name={n.name}'\n")  # fmt: skip
    lines += [f"{k} = {v}\n" for k, v in extra.items()]
    auto.write_text("".join(lines))


def _pair(node_factory, standby_factory, **primary_settings) -> tuple[LocalNode, LocalNode]:
    p = node_factory("primary", **primary_settings)
    p.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    s = standby_factory(p, "standby1")
    return p, s


def test_standby_replays_and_serves_reads(node_factory, standby_factory) -> None:
    """A base backup + standby.signal + primary_conninfo streams and replays; reads are
    transaction-atomic; writes get 25006; the monitoring functions and views have values."""
    p, s = _pair(node_factory, standby_factory)
    assert s.log_contains(r"consistent recovery state reached at [0-9A-F]+/[0-9A-F]+")
    s.wait_for_log("started streaming WAL from primary at")
    with p.connect() as c:
        with c.transaction():
            for i in range(50):
                c.execute("INSERT INTO t VALUES (%s, 'x')", (i,))
    p.wait_for_catchup(s, "replay")
    assert s.sql("SELECT count(*) FROM t") == [(50,)]
    with s.connect() as c:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            c.execute("INSERT INTO t VALUES (1000, 'no')")
    rows = s.sql("SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), "
                 "pg_last_xact_replay_timestamp() IS NOT NULL")  # fmt: skip
    assert rows[0][0] is True and rows[0][3] is True
    assert parse_lsn(rows[0][1]) >= parse_lsn(rows[0][2]) >= p.lsn("flush")
    r = s.sql("SELECT status, received_tli, sender_host, sender_port, slot_name FROM pg_stat_wal_receiver")
    assert r == [("streaming", 1, p.host, p.port, None)]
    r = p.sql("SELECT application_name, state, sync_state, client_addr IS NOT NULL, reply_time IS NOT NULL "
              "FROM pg_stat_replication")  # fmt: skip
    assert r == [("standby1", "streaming", "async", True, True)]
    # Readers never see half a transaction while replay continues.
    stop = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        with s.connect() as c:
            while not stop.is_set():
                seen.append(c.execute("SELECT count(*) FROM t WHERE id >= 10000").fetchone()[0])

    th = threading.Thread(target=reader)
    th.start()
    try:
        with p.connect() as c:
            for b in range(20):
                with c.transaction():
                    for i in range(10):
                        c.execute("INSERT INTO t VALUES (%s, 'y')", (10000 + b * 10 + i,))
        p.wait_for_catchup(s, "replay")
    finally:
        stop.set()
        th.join()
    assert seen and all(n % 10 == 0 for n in seen), sorted(set(seen))


def test_consistency_window_and_standby_crash_restart(node_factory, standby_factory) -> None:
    """REC-1..3 with the `startup-before-consistent` injection point: until consistency,
    connections get 57P03 'not yet accepting connections'; then read-only connections open.
    A standby's own crash restart goes back through recovery and reaches consistency again."""
    p = node_factory("primary")
    p.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    s = standby_factory(p, "standby1", start=False, injection_points="'startup-before-consistent:sleep:3000'")
    s.start(wait=False)
    s.wait_for_log(r"redo starts at")
    s.poll_until(lambda: s.pidfile_status() is not None, what="pidfile")
    with pytest.raises(psycopg.OperationalError) as ei:
        s.connect()
    assert "the database system is not yet accepting connections" in str(ei.value)
    assert "Consistent recovery state has not been yet reached." in str(ei.value)
    s.wait_ready()
    s.wait_for_log("consistent recovery state reached")
    assert s.log_contains("database system is ready to accept read-only connections")
    p.sql("INSERT INTO t VALUES (1, 'a')")
    p.wait_for_catchup(s, "replay")
    off = s.log_offset()
    pid = s.child_pids("checkpointer")[0]
    import os
    import signal

    os.kill(pid, signal.SIGKILL)  # a crash: the standby reinitialises
    s.wait_for_log("all server processes terminated; reinitializing", offset=off)
    s.wait_for_log("consistent recovery state reached", offset=off)
    s.wait_for_log("ready to accept read-only connections", offset=off)
    p.sql("INSERT INTO t VALUES (2, 'b')")
    p.wait_for_catchup(s, "replay")
    assert s.sql("SELECT count(*) FROM t") == [(2,)]


def test_promotion_follow_and_diverged_node(node_factory, standby_factory, tmp_path) -> None:
    """F33 / REC-5: pg_promote returns true, new timeline with a .history file, walreceiver gone,
    open sessions see in_hot_standby off and can write without reconnecting. A second standby
    repointed at the new primary follows it across the timeline switch (TIMELINE_HISTORY,
    'new target timeline is 2'). The old primary, which wrote past the switch point, refuses to
    stream from it; re-cloned with pgbed basebackup it follows."""
    p, s1 = _pair(node_factory, standby_factory)
    s2 = standby_factory(p, "standby2")
    p.sql("INSERT INTO t VALUES (1, 'before')")
    p.wait_for_catchup(s1, "replay")
    p.wait_for_catchup(s2, "replay")
    sess = s1.connect(autocommit=True)
    assert sess.info.parameter_status("in_hot_standby") == "on"
    p.stop()
    p.start()  # the old primary lives on and writes on timeline 1 past the coming switch point
    p.sql("INSERT INTO t VALUES (666, 'diverged')")
    assert s1.sql("SELECT pg_promote(true, 60)") == [(True,)]
    assert s1.log_contains("received promote request")
    assert s1.log_contains("selected new timeline ID: 2")
    hist = (s1.datadir / "pg_wal" / "00000002.history").read_text()
    assert hist.startswith("1\t") and hist.endswith("\tno recovery target specified\n")
    assert s1.sql("SELECT count(*) FROM pg_stat_wal_receiver") == [(0,)]
    assert s1.sql("SELECT timeline_id FROM pg_control_checkpoint()")[0][0] in (1, 2)
    sess.execute("INSERT INTO t VALUES (2, 'after')")  # same session, no reconnect
    assert sess.info.parameter_status("in_hot_standby") == "off"
    sess.close()
    # standby2 follows the new primary.
    off = s2.log_offset()
    _repoint(s2, s1)
    s2.reload()
    s2.wait_for_log("new target timeline is 2", offset=off)
    s1.wait_for_catchup(s2, "replay")
    assert s2.sql("SELECT count(*) FROM t") == [(2,)]
    assert s2.sql("SELECT received_tli FROM pg_stat_wal_receiver") == [(2,)]
    # The old primary, demoted, must not replay the new timeline over its diverged WAL.
    p.stop()
    (p.datadir / "standby.signal").write_text("")
    p.append_conf(primary_conninfo=f"'host={s1.host} port={s1.port} user=postgres application_name=old'",
                  wal_retrieve_retry_interval="'200ms'")  # fmt: skip
    off = p.log_offset()
    p.start()
    p.wait_for_log(r"requested starting point [0-9A-F]+/[0-9A-F]+ on timeline 1 is not in this server's history|"
                   r"forked off current database system timeline 1", offset=off)  # fmt: skip
    time.sleep(0.5)
    assert p.sql("SELECT count(*) FROM t WHERE id = 666") == [(1,)]
    assert p.sql("SELECT count(*) FROM t WHERE id = 2") == [(0,)]
    p.teardown()
    fresh = standby_factory(s1, "reclone")
    s1.wait_for_catchup(fresh, "replay")
    assert fresh.sql("SELECT count(*) FROM t WHERE id IN (1, 2)") == [(2,)]


def test_synchronous_commit_waits_for_the_standby(node_factory, standby_factory) -> None:
    """FIRST 1 (standby1): commits wait for the standby's flush; sync_state 'sync'; with the
    standby gone a commit blocks, and cancelling the wait gives PostgreSQL's WARNING while the
    row stays committed locally. ANY 1 (...) shows 'quorum'. synchronous_commit=local does not wait."""
    p, s = _pair(node_factory, standby_factory)
    p.append_conf(synchronous_standby_names="'FIRST 1 (standby1)'")
    p.reload()
    p.poll_until(lambda: p.sql("SELECT sync_state FROM pg_stat_replication") == [("sync",)], what="sync standby")
    for i, mode in enumerate(("on", "remote_write", "remote_apply", "local", "off")):
        with p.connect() as c:
            c.execute(f"SET synchronous_commit = {mode}")
            c.execute("INSERT INTO t VALUES (%s, %s)", (100 + i, mode))
    s.stop()
    with p.connect(autocommit=True) as c:
        notices: list[str] = []
        c.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        c.execute("SET synchronous_commit = local")
        c.execute("INSERT INTO t VALUES (-1, 'local commit returns without the standby')")
        c.execute("RESET synchronous_commit")
        pid = c.info.backend_pid
        t0 = time.monotonic()
        threading.Timer(1.0, lambda: p.sql("SELECT pg_cancel_backend(%s)", (pid,))).start()
        c.execute("INSERT INTO t VALUES (-2, 'waits')")
        waited = time.monotonic() - t0
    assert waited >= 0.9, waited
    assert any("canceling wait for synchronous replication due to user request" in n for n in notices), notices
    assert p.log_contains("The transaction has already committed locally, but might not have been replicated")
    assert p.sql("SELECT count(*) FROM t WHERE id = -2") == [(1,)]
    p.append_conf(synchronous_standby_names="'ANY 1 (standby1, other)'")
    p.reload()
    s.start()
    p.poll_until(lambda: p.sql("SELECT sync_state, sync_priority FROM pg_stat_replication") == [("quorum", 1)],
                 what="quorum standby")  # fmt: skip
    p.sql("INSERT INTO t VALUES (-3, 'quorum')")
    p.wait_for_catchup(s, "flush")


def test_fast_shutdown_with_streaming_standby(node_factory, standby_factory) -> None:
    """F12 (without a bgworker) / WALSND-5/6: the walsender enters `stopping`, the shutdown
    checkpoint is streamed, the walsender exits 0 once the standby confirmed it, then the
    postmaster exits 0; the standby logs that the primary ended replication."""
    p, s = _pair(node_factory, standby_factory)
    p.sql("INSERT INTO t VALUES (1, 'x')")
    p.wait_for_catchup(s, "replay")
    off = s.log_offset()
    assert p.stop("fast") == 0
    states = [e["state"] for e in p.events("walsnd_state")]
    assert "stopping" in states
    done = p.events("walsnd_done")
    assert done, "walsender did not finish at shutdown"
    exits = [e for e in p.events("child_exit") if e.get("kind") == "walsender"]
    assert exits and exits[-1]["exit_code"] == 0
    s.wait_for_log("replication terminated by primary server", offset=off)
    shutdown_ckpt = parse_lsn(done[-1]["lsn"])
    s.poll_until(lambda: parse_lsn(s.sql("SELECT pg_last_wal_replay_lsn()")[0][0]) >= shutdown_ckpt,
                 what="standby replayed the shutdown checkpoint")  # fmt: skip


def test_target_session_attrs_picks_the_right_node(node_factory, standby_factory) -> None:
    """psycopg with a two-host connection string: read-write lands on the primary, standby on
    the standby, whatever the host order."""
    p, s = _pair(node_factory, standby_factory)
    hosts = f"host={s.host},{p.host} port={s.port},{p.port} user=postgres dbname=postgres"
    with psycopg.connect(hosts + " target_session_attrs=read-write") as c:
        assert c.info.port == p.port
    with psycopg.connect(hosts + " target_session_attrs=standby") as c:
        assert c.info.port == s.port
    hosts = f"host={p.host},{s.host} port={p.port},{s.port} user=postgres dbname=postgres"
    with psycopg.connect(hosts + " target_session_attrs=standby") as c:
        assert c.info.port == s.port


def test_recovery_min_apply_delay(node_factory, standby_factory) -> None:
    """recovery_min_apply_delay holds a consistent standby's replay of a commit for the delay."""
    p, s = _pair(node_factory, standby_factory)
    s.append_conf(recovery_min_apply_delay="'1500ms'")
    s.reload()
    time.sleep(0.3)
    t0 = time.monotonic()
    p.sql("INSERT INTO t VALUES (1, 'delayed')")
    p.wait_for_catchup(s, "flush")
    assert s.sql("SELECT count(*) FROM t") == [(0,)]
    s.poll_until(lambda: s.sql("SELECT count(*) FROM t") == [(1,)], what="delayed replay")
    assert time.monotonic() - t0 >= 1.4


def test_ddl_after_the_base_backup_is_replayed(node_factory, standby_factory) -> None:
    """Schema changes made after the standby was cloned reach it: CREATE SCHEMA / TABLE / INDEX
    and DROP TABLE are WAL-logged as statement text followed by their
    catalog rows, inside the transaction's COMMIT record; a DDL rolled back to a savepoint, or
    in a failed statement, leaves nothing on the standby; the standby ends with the primary's
    schema and rows (the unique index enforces the same keys after promotion). Before this, only
    the catalog rows were logged and a table created after the clone never reached a standby."""
    p = node_factory("primary")
    s = standby_factory(p, "standby1")
    p.sql("CREATE SCHEMA app")
    p.sql("CREATE TABLE app.items (id int PRIMARY KEY, v text)")
    p.sql("INSERT INTO app.items VALUES (1, 'a'), (2, 'b')")
    p.sql("CREATE UNIQUE INDEX items_v ON app.items (v)")
    p.sql("CREATE TABLE gone (x int)")
    p.sql("DROP TABLE gone")
    with p.connect(autocommit=False) as c:
        c.execute("CREATE TABLE kept (x int)")
        c.execute("SAVEPOINT s1")
        c.execute("CREATE TABLE undone (x int)")
        c.execute("INSERT INTO kept VALUES (1)")
        c.execute("ROLLBACK TO SAVEPOINT s1")
        c.execute("INSERT INTO kept VALUES (2)")
        c.commit()
    with pytest.raises(psycopg.errors.DuplicateTable):
        p.sql("CREATE TABLE kept (x int)")
    p.wait_for_catchup(s, "replay")
    assert s.sql("SELECT id, v FROM app.items ORDER BY id") == [(1, "a"), (2, "b")]
    assert s.sql("SELECT x FROM kept") == [(2,)]
    for missing in ("gone", "undone"):
        with pytest.raises(psycopg.errors.UndefinedTable):
            s.sql(f"SELECT * FROM {missing}")
    assert s.sql("SELECT pg_promote()") == [(True,)]
    s.poll_until(lambda: s.sql("SELECT pg_is_in_recovery()") == [(False,)], what="promoted")
    with pytest.raises(psycopg.errors.UniqueViolation):
        s.sql("INSERT INTO app.items VALUES (3, 'a')")
