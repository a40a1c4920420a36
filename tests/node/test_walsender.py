"""The walsender over the replication protocol, driven by libpq clients (psql, psycopg's libpq,
pg_receivewal 15).

Rules: WALSND-1 (slot claim, max_wal_senders FATAL), WALSND-3 (states), WALSND-7, WALSND-8;
wire-protocol.md §3 (command results, errors before and after CopyBothResponse, slots) and §4
(segment names); scenario F24. pg_receivewal must write correctly named segments, follow a
timeline switch and work with -S; the segments it wrote are replayed by a standby without
streaming.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from node.protocol import parse_lsn
from orchestrator.localnode import LocalNode

PG_RECEIVEWAL = "/usr/lib/postgresql/15/bin/pg_receivewal"


def _repl(n: LocalNode) -> psycopg.Connection:
    return psycopg.connect(
        host=n.host, port=n.port, user="postgres", dbname="postgres", replication="true", autocommit=True
    )


def _exec(conn: psycopg.Connection, cmd: str) -> psycopg.pq.abc.PGresult:
    return conn.pgconn.exec_(cmd.encode())


def _rows(res: psycopg.pq.abc.PGresult) -> list[list[str | None]]:
    return [
        [None if res.get_value(r, c) is None else res.get_value(r, c).decode() for c in range(res.nfields)]
        for r in range(res.ntuples)
    ]


def _err(res: psycopg.pq.abc.PGresult) -> tuple[str, str]:
    return (
        res.error_field(psycopg.pq.DiagnosticField.SQLSTATE).decode(),
        res.error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY).decode(),
    )


def test_identify_system_show_and_sql_refused(node: LocalNode) -> None:
    """IDENTIFY_SYSTEM's four columns; SHOW's units; plain SQL and the extended protocol refused;
    the walsender shows in pg_stat_activity and takes a WalSnd slot (WALSND-1)."""
    sysid = node.sql("SELECT system_identifier FROM pg_control_system()")[0][0]
    with _repl(node) as c:
        res = _exec(c, "IDENTIFY_SYSTEM")
        assert [res.fname(i).decode() for i in range(4)] == ["systemid", "timeline", "xlogpos", "dbname"]
        row = _rows(res)[0]
        assert row[0] == str(sysid) and row[1] == "1" and row[3] is None
        assert "/" in row[2]
        assert _rows(_exec(c, "SHOW wal_segment_size")) == [["1MB"]]
        assert _rows(_exec(c, "SHOW data_directory_mode")) == [["0700"]]
        assert _err(_exec(c, "SELECT 1")) == (
            "0A000",
            "cannot execute SQL commands in WAL sender for physical replication",
        )
        assert _err(_exec(c, "IDENTIFY_SYSTEM extra"))[0] == "42601"
        assert _err(_exec(c, "TIMELINE_HISTORY 1")) == (
            "58P01",
            'could not open file "pg_wal/00000001.history": No such file or directory',
        )
        pid = c.info.backend_pid
        rows = node.sql("SELECT backend_type FROM pg_stat_activity WHERE pid = %s", (pid,))
        assert rows == [("walsender",)]
        slots = node.sql("SELECT pid, state, latch_owner_pid FROM pgbed_walsnd_slots WHERE pid <> 0")
        assert slots == [(pid, "startup", pid)]
    node.poll_until(lambda: not node.sql("SELECT 1 FROM pgbed_walsnd_slots WHERE pid <> 0"),
                    what="walsender slot freed")  # fmt: skip
    # The extended protocol: libpq's PQexecParams.
    with _repl(node) as c:
        res = c.pgconn.exec_params(b"IDENTIFY_SYSTEM", [])
        assert _err(res) == ("08P01", "extended query protocol not supported in a replication connection")


def test_max_wal_senders_fatal(node_factory) -> None:
    """F24 / WALSND-1: with max_wal_senders=1 in use, the next replication connection gets FATAL
    53300 with the reference's text; normal connections are not affected."""
    n = node_factory(max_wal_senders=1)
    with _repl(n):
        with pytest.raises(psycopg.OperationalError) as ei:
            _repl(n)
        assert 'number of requested standby connections exceeds "max_wal_senders" (currently 1)' in str(ei.value)
        assert n.sql("SELECT 1") == [(1,)]
    with _repl(n) as c:  # the slot was freed
        assert _rows(_exec(c, "IDENTIFY_SYSTEM"))


def test_replication_slots_and_start_errors(node: LocalNode) -> None:
    """CREATE/READ/DROP_REPLICATION_SLOT results; READ of an unknown slot is a row of NULLs;
    START_REPLICATION errors of wire-protocol.md §3 with their SQLSTATEs."""
    with _repl(node) as c:
        res = _exec(c, 'CREATE_REPLICATION_SLOT "s1" PHYSICAL RESERVE_WAL')
        assert [res.fname(i).decode() for i in range(4)] == [
            "slot_name",
            "consistent_point",
            "snapshot_name",
            "output_plugin",
        ]
        name, lsn, snap, plugin = _rows(res)[0]
        assert name == "s1" and lsn != "0/0" and snap is None and plugin is None
        assert _rows(_exec(c, "READ_REPLICATION_SLOT s1")) == [["physical", lsn, "1"]]
        assert _rows(_exec(c, "READ_REPLICATION_SLOT nosuch")) == [[None, None, None]]
        assert _err(_exec(c, 'CREATE_REPLICATION_SLOT "s1" PHYSICAL'))[0] == "42710"
        assert _err(_exec(c, "CREATE_REPLICATION_SLOT Bad-Name PHYSICAL"))[0] == "42601"
        assert node.sql("SELECT slot_name, slot_type, active FROM pg_replication_slots") == [("s1", "physical", False)]
        assert _err(_exec(c, "START_REPLICATION SLOT nosuch PHYSICAL 0/100000")) == (
            "42704",
            'replication slot "nosuch" does not exist',
        )
        assert _err(_exec(c, "START_REPLICATION 0/100000 TIMELINE 7")) == (
            "XX000",
            "requested timeline 7 is not in this server's history",
        )
        res = _exec(c, "START_REPLICATION 5/0 TIMELINE 1")
        # As in PostgreSQL 15, this error comes after CopyBothResponse.
        assert res.status == psycopg.pq.ExecStatus.COPY_BOTH
        nbytes, _ = c.pgconn.get_copy_data(0)
        assert nbytes < 0
        res = c.pgconn.get_result()
        sqlstate, msg = _err(res)
        while c.pgconn.get_result() is not None:
            pass
        assert sqlstate == "XX000" and msg.startswith(
            "requested starting point 5/0 is ahead of the WAL flush position of this server"
        )
        assert _rows(_exec(c, "DROP_REPLICATION_SLOT s1")) == []
        assert _err(_exec(c, "DROP_REPLICATION_SLOT s1"))[0] == "42704"
    # A permanent slot survives a restart (pg_replslot/<name>/state).
    with _repl(node) as c:
        _exec(c, "CREATE_REPLICATION_SLOT keep PHYSICAL RESERVE_WAL")
    assert (node.datadir / "pg_replslot" / "keep" / "state").exists()
    node.restart()
    assert node.sql("SELECT slot_name FROM pg_replication_slots") == [("keep",)]


def _wait_for_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear; directory holds {sorted(os.listdir(path.parent))}")
        time.sleep(0.05)


def _fill(n: LocalNode, start: int, rows: int) -> None:
    for i in range(start, start + rows, 100):
        n.sql("INSERT INTO t SELECT g, %s FROM generate_series(%s, %s) g", ("x" * 1000, i, i + 99))


@pytest.mark.skipif(not os.path.exists(PG_RECEIVEWAL), reason="PostgreSQL 15's pg_receivewal is not installed")
def test_pg_receivewal_segments_replay_without_streaming(node_factory, standby_factory, tmp_path: Path) -> None:
    """pg_receivewal 15 with -S (created by --create-slot) streams our WAL into correctly named
    segments, renames finished ones from .partial; a standby cloned earlier, given only those
    segments (no primary_conninfo), replays them and reaches the primary's content."""
    p = node_factory("primary")
    p.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    backup = standby_factory(p, "copy", start=False)
    conninfo = f"host={p.host} port={p.port} user=postgres"
    out = tmp_path / "recv"
    out.mkdir()
    r = subprocess.run([PG_RECEIVEWAL, "-d", conninfo, "-D", str(out), "-S", "recv", "--create-slot"],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen([PG_RECEIVEWAL, "-d", conninfo, "-D", str(out), "-S", "recv", "-v", "--no-loop",
                             "-s", "1"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _fill(p, 0, 2500)  # > 2 MB of WAL: two 1 MB segments finish
        _wait_for_file(out / "000000010000000000000002")
        assert p.sql("SELECT active FROM pg_replication_slots WHERE slot_name = 'recv'") == [(True,)]
        p.poll_until(lambda: parse_lsn(p.sql("SELECT restart_lsn FROM pg_replication_slots")[0][0]) >= 0x200000,
                     what="slot advanced by pg_receivewal's flush reports")  # fmt: skip
        end = p.lsn("flush")
        # Let pg_receivewal receive everything, then stop it (it keeps the last segment .partial).
        p.poll_until(lambda: parse_lsn(p.sql("SELECT sent_lsn FROM pg_stat_replication")[0][0] or "0/0") >= end,
                     what="everything sent to pg_receivewal")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=15)[1]
    assert "finished segment at 0/200000 (timeline 1)" in err
    names = sorted(os.listdir(out))
    assert "000000010000000000000001" in names and "000000010000000000000002" in names
    assert any(nm.endswith(".partial") for nm in names), names
    # Replay: the copy gets the segments (the .partial one renamed) and no primary_conninfo.
    for nm in names:
        (backup.datadir / "pg_wal" / nm.removesuffix(".partial")).write_bytes((out / nm).read_bytes())
    auto = backup.datadir / "postgresql.auto.conf"
    auto.write_text("".join(ln for ln in auto.read_text().splitlines(True) if "primary_conninfo" not in ln))
    p.stop()  # nothing to stream from, even by accident
    backup.start()
    backup.poll_until(lambda: backup.sql("SELECT count(*) FROM t")[0][0] == 2500, what="replayed 2500 rows")
    assert backup.sql("SELECT pg_is_in_recovery()") == [(True,)]
    assert not backup.sql("SELECT * FROM pg_stat_wal_receiver")


@pytest.mark.skipif(not os.path.exists(PG_RECEIVEWAL), reason="PostgreSQL 15's pg_receivewal is not installed")
def test_pg_receivewal_follows_timeline_switch(node_factory, standby_factory, tmp_path: Path) -> None:
    """pg_receivewal resuming on timeline 1 against a server promoted to timeline 2: the end-of-
    timeline handshake, TIMELINE_HISTORY 2, then streaming on timeline 2 (wire-protocol.md §3)."""
    p = node_factory("primary")
    p.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    s = standby_factory(p, "standby")
    out = tmp_path / "recv"
    out.mkdir()
    # Phase 1: timeline 1 from the primary.
    proc = subprocess.Popen([PG_RECEIVEWAL, "-d", f"host={p.host} port={p.port} user=postgres", "-D", str(out),
                             "-v", "--no-loop"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    _fill(p, 0, 300)
    p.wait_for_catchup(s, "replay")
    target = p.lsn("flush")
    p.poll_until(
        lambda: any(
            r[0] and r[1] == "pg_receivewal" and parse_lsn(r[0]) >= target
            for r in p.sql("SELECT sent_lsn, application_name FROM pg_stat_replication")
        ),
        what="pg_receivewal sent all",
    )
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=15)
    p.stop()
    # Phase 2: the standby is promoted and writes on timeline 2; pg_receivewal follows.
    assert s.sql("SELECT pg_promote()") == [(True,)]
    _fill(s, 1000, 300)
    proc = subprocess.Popen([PG_RECEIVEWAL, "-d", f"host={s.host} port={s.port} user=postgres", "-D", str(out),
                             "-v", "--no-loop"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for_file(out / "00000002.history")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(nm.startswith("00000002") and "history" not in nm
                                                      for nm in os.listdir(out)):  # fmt: skip
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=15)[1]
    assert "switched to timeline 2" in err, err
    assert any(nm.startswith("00000002") and "history" not in nm for nm in os.listdir(out)), sorted(os.listdir(out))
    assert (out / "00000002.history").read_text().startswith("1\t")


PG_BASEBACKUP = "/usr/lib/postgresql/15/bin/pg_basebackup"
PG_VERIFYBACKUP = "/usr/lib/postgresql/15/bin/pg_verifybackup"


@pytest.mark.skipif(not os.path.exists(PG_BASEBACKUP), reason="PostgreSQL 15's pg_basebackup is not installed")
def test_pg_basebackup_15_clone_streams(node_factory, tmp_path: Path) -> None:
    """pg_basebackup 15 (-R, -X stream: a second connection with a temporary slot) takes a
    backup of pgbed, with a backup manifest pg_verifybackup accepts (file sizes and CRC-32C
    checksums; WAL parsing skipped, our record format is private); a pgbed standby started on it
    streams from the primary."""
    p = node_factory("primary")
    p.sql("CREATE TABLE t (id int PRIMARY KEY)")
    p.sql("INSERT INTO t VALUES (1)")
    d = tmp_path / "clone" / "data"
    r = subprocess.run([PG_BASEBACKUP, "-h", p.host, "-p", str(p.port), "-U", "postgres", "-D", str(d), "-R",
                        "-X", "stream", "-c", "fast"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (d / "backup_manifest").exists() and (d / "standby.signal").exists()
    if os.path.exists(PG_VERIFYBACKUP):
        v = subprocess.run([PG_VERIFYBACKUP, "-n", str(d)], capture_output=True, text=True, timeout=60)
        assert v.returncode == 0, v.stdout + v.stderr
        (d / "base" / "pgbed.db").write_bytes((d / "base" / "pgbed.db").read_bytes()[:-1] + b"\x01")
        v = subprocess.run([PG_VERIFYBACKUP, "-n", str(d)], capture_output=True, text=True, timeout=60)
        assert v.returncode != 0 and "checksum mismatch" in v.stderr
    # A fresh clone (the one above was tampered with) becomes a streaming pgbed standby.
    d2 = tmp_path / "standby" / "data"
    r = subprocess.run([PG_BASEBACKUP, "-h", p.host, "-p", str(p.port), "-U", "postgres", "-D", str(d2), "-R",
                        "-X", "stream", "-c", "fast"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = LocalNode(tmp_path, "standby")
    s.sockdir.mkdir(parents=True, exist_ok=True)
    s.append_conf(port=s.port, listen_addresses="'127.0.0.1'", unix_socket_directories=f"'{s.sockdir}'",
                  cluster_name="'standby'")  # fmt: skip
    try:
        s.start()
        p.sql("INSERT INTO t VALUES (2)")
        p.wait_for_catchup(s, "replay")
        assert s.sql("SELECT id FROM t ORDER BY id") == [(1,), (2,)]
    finally:
        s.teardown()
