"""More of the replication rules: walsender states (WALSND-3) including `backup`, an idle
walsender at shutdown (WALSND-5), the walreceiver's timeout and status interval (WALRCV-6,
F27 with the walsender frozen instead of a packet filter), restartpoints on a standby, `pgbed
promote`, and base-backup edge cases.

Rules: WALSND-3, WALSND-5, WALSND-7, WALRCV-6, WALRCV-8, REC-1, REC-5, SHUT-5.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from node.protocol import parse_lsn
from orchestrator.localnode import LocalNode


def _pair(node_factory, standby_factory, primary_settings=None, **standby_settings) -> tuple[LocalNode, LocalNode]:
    p = node_factory("primary", **(primary_settings or {}))
    p.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    s = standby_factory(p, "standby1", **standby_settings)
    p.poll_until(lambda: p.sql("SELECT state FROM pg_stat_replication") == [("streaming",)], what="streaming")
    return p, s


def test_walsender_states_include_catchup_streaming_and_backup(node_factory, standby_factory, tmp_path) -> None:
    """WALSND-3: a new standby's walsender goes startup → catchup → streaming (jsonlog
    walsnd_state); a BASE_BACKUP shows `backup` in pg_stat_replication while it runs."""
    p, _s = _pair(node_factory, standby_factory, {"injection_points": "'walsender-backup:sleep:1500'"})
    states = [e["state"] for e in p.events("walsnd_state")]
    # The standby's own clone came first: backup, then back to startup; then its streaming.
    assert states == ["backup", "startup", "catchup", "streaming"], states
    cmd = [sys.executable, "-m", "node", "basebackup", "-h", p.host, "-p", str(p.port), "-U", "postgres",
           "-D", str(tmp_path / "copy")]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        p.poll_until(lambda: ("backup",) in p.sql("SELECT state FROM pg_stat_replication"), what="backup state")
    finally:
        err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, err
    assert (tmp_path / "copy" / "backup_label").read_text().startswith("START WAL LOCATION: ")
    assert not (tmp_path / "copy" / "standby.signal").exists()  # no -R
    r = subprocess.run([sys.executable, "-m", "node", "basebackup", "-h", p.host, "-p", str(p.port), "-U",
                        "postgres", "-D", str(tmp_path / "copy")], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 1 and "exists but is not empty" in r.stderr


def test_idle_walsender_at_fast_shutdown(node_factory) -> None:
    """WALSND-5: a walsender with no replication active (a replication connection between
    commands) is told to stop and SIGTERMs itself; the shutdown completes with exit 0."""
    n = node_factory()
    c = psycopg.connect(host=n.host, port=n.port, user="postgres", dbname="postgres", replication="true",
                        autocommit=True)  # fmt: skip
    try:
        c.pgconn.exec_(b"IDENTIFY_SYSTEM")
        assert n.stop("fast") == 0
        exits = [e for e in n.events("child_exit") if e.get("kind") == "walsender"]
        assert exits and exits[-1]["exit_code"] == 1  # FATAL from the SIGTERM it sent itself
    finally:
        c.close()


def test_walreceiver_timeout_and_status_interval(node_factory, standby_factory) -> None:
    """WALRCV-6: status goes to the primary every wal_receiver_status_interval while idle;
    silence for wal_receiver_timeout ends the walreceiver (`terminating walreceiver due to
    timeout`, exit 1) and a new one streams after the retry interval. F27 with the walsender
    frozen by SIGSTOP instead of a packet filter; no pg_stat_wal_receiver row between attempts."""
    p, s = _pair(node_factory, standby_factory, {"wal_sender_timeout": "0"},
                 wal_receiver_status_interval="1", wal_receiver_timeout="'2s'",
                 wal_retrieve_retry_interval="'500ms'")  # fmt: skip
    t1 = p.sql("SELECT reply_time FROM pg_stat_replication")[0][0]
    time.sleep(2.5)
    t2 = p.sql("SELECT reply_time FROM pg_stat_replication")[0][0]
    assert (t2 - t1).total_seconds() >= 1.0, (t1, t2)
    ws = p.sql("SELECT pid FROM pg_stat_replication")[0][0]
    wr = s.child_pids("walreceiver")[0]
    os.kill(ws, signal.SIGSTOP)
    try:
        s.wait_for_log("terminating walreceiver due to timeout", timeout=15)
        exit_ev = s.poll_until(lambda: next((e for e in s.events("child_exit") if e.get("child_pid") == wr), None),
                               what="walreceiver exit")  # fmt: skip
        assert exit_ev["exit_code"] == 1
    finally:
        os.kill(ws, signal.SIGCONT)
    s.poll_until(lambda: s.sql("SELECT status FROM pg_stat_wal_receiver") == [("streaming",)], what="streaming again")
    assert not s.log_contains("terminating any other active server processes")


def test_restartpoint_on_standby_and_restart(node_factory, standby_factory) -> None:
    """A CHECKPOINT on a standby is a restartpoint: pg_control moves to the last replayed
    checkpoint, minRecoveryPoint covers the replayed WAL, older segments go; after a restart
    the standby starts from there and is consistent again."""
    p, s = _pair(node_factory, standby_factory)
    for i in range(0, 3000, 500):
        p.sql("INSERT INTO t SELECT g, %s FROM generate_series(%s, %s) g", ("x" * 1000, i, i + 499))
    p.sql("CHECKPOINT")
    p.sql("INSERT INTO t VALUES (-1, 'after')")
    p.wait_for_catchup(s, "replay")
    before = s.sql("SELECT checkpoint_lsn FROM pg_control_checkpoint()")[0][0]
    s.sql("CHECKPOINT")
    after = s.sql("SELECT checkpoint_lsn FROM pg_control_checkpoint()")[0][0]
    assert parse_lsn(after) > parse_lsn(before)
    assert s.log_contains("restartpoint complete")
    segs = sorted(f for f in os.listdir(s.datadir / "pg_wal") if len(f) == 24)
    assert segs[0] >= "00000001" + f"{0:08X}" + f"{parse_lsn(after) // (1 << 20):08X}", segs
    off = s.log_offset()
    s.restart()
    s.wait_for_log("consistent recovery state reached", offset=off)
    assert s.sql("SELECT count(*) FROM t") == [(3001,)]
    p.sql("INSERT INTO t VALUES (-2, 'later')")
    p.wait_for_catchup(s, "replay")
    assert s.sql("SELECT count(*) FROM t") == [(3002,)]


def test_pgbed_promote_cli(node_factory, standby_factory) -> None:
    """REC-5 (1): `pgbed promote -D` creates the promote file and signals the postmaster; the
    standby leaves recovery. On a primary it refuses."""
    p, s = _pair(node_factory, standby_factory)
    r = subprocess.run([sys.executable, "-m", "node", "promote", "-D", str(p.datadir)], capture_output=True, text=True)
    assert r.returncode == 1 and "not in standby mode" in r.stderr
    r = subprocess.run([sys.executable, "-m", "node", "promote", "-D", str(s.datadir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s.poll_until(lambda: s.sql("SELECT pg_is_in_recovery()") == [(False,)], what="promotion")
    assert not (s.datadir / "standby.signal").exists()
    assert not (s.datadir / "promote").exists()
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        s.sql("SELECT pg_promote()")


@pytest.mark.parametrize("inclusive", [True, False])
def test_recovery_target_lsn_promote(node_factory, standby_factory, inclusive: bool) -> None:
    """A recovery target: replay stops at recovery_target_lsn (`recovery stopping after/before
    WAL location (LSN)`), then recovery_target_action = promote ends recovery there: the rows
    committed after the target are not on the new timeline."""
    p = node_factory("primary")
    p.sql("CREATE TABLE t (id int PRIMARY KEY)")
    s = standby_factory(p, "standby1", start=False)
    p.sql("INSERT INTO t VALUES (1)")
    target = p.lsn("insert")  # the next record (row 2's commit) starts here
    p.sql("INSERT INTO t VALUES (2)")
    p.sql("INSERT INTO t VALUES (3)")
    s.append_conf(recovery_target_lsn=f"'{target >> 32:X}/{target & 0xFFFFFFFF:X}'",
                  recovery_target_inclusive="on" if inclusive else "off",
                  recovery_target_action="'promote'")  # fmt: skip
    s.start()
    s.poll_until(lambda: s.sql("SELECT pg_is_in_recovery()") == [(False,)], what="promotion at the target")
    word = "after" if inclusive else "before"
    assert s.log_contains(f'recovery stopping {word} WAL location \\(LSN\\) "{target >> 32:X}/{target & 0xFFFFFFFF:X}"')
    expected = [(1,), (2,)] if inclusive else [(1,)]
    assert s.sql("SELECT id FROM t ORDER BY id") == expected
    s.sql("INSERT INTO t VALUES (10)")


def test_recovery_target_action_shutdown_exits_3(node_factory, standby_factory) -> None:
    """REC-8 / T15: with recovery_target_action = shutdown the startup process exits 3 at the
    target and the postmaster shuts down ('shutdown at recovery target')."""
    p = node_factory("primary")
    p.sql("CREATE TABLE t (id int PRIMARY KEY)")
    s = standby_factory(p, "standby1", start=False)
    p.sql("INSERT INTO t VALUES (1)")
    target = p.lsn("insert")
    p.sql("INSERT INTO t VALUES (2)")
    s.append_conf(recovery_target_lsn=f"'{target >> 32:X}/{target & 0xFFFFFFFF:X}'",
                  recovery_target_action="'shutdown'")  # fmt: skip
    s.start(wait=False)
    code = s.wait_exit()
    assert code == 0, s.log_content()[-2000:]
    assert s.log_contains("recovery stopping after WAL location")
    assert s.log_contains("shutdown at recovery target")
    exits = [e for e in s.events("child_exit") if e.get("kind") == "startup"]
    assert exits and exits[-1]["exit_code"] == 3


def test_corrupt_streamed_record_is_fetched_again(node_factory, standby_factory) -> None:
    """A record that fails its CRC inside WAL the walreceiver already flushed (here: a byte
    flipped in the standby's segment while replay is held by recovery_min_apply_delay) is logged
    once with PostgreSQL's wording, streaming restarts from that segment, the primary's bytes
    replace the bad ones, and replay goes on: nothing is lost and nothing crashes."""
    p, s = _pair(node_factory, standby_factory, recovery_min_apply_delay="'1500ms'",
                 wal_retrieve_retry_interval="'200ms'")  # fmt: skip
    time.sleep(0.3)
    p.sql("INSERT INTO t VALUES (1, 'first')")
    second = p.lsn("insert")
    p.sql("INSERT INTO t VALUES (2, %s)", ("x" * 200,))
    end = p.lsn("insert")
    s.poll_until(lambda: parse_lsn(s.sql("SELECT pg_last_wal_receive_lsn()")[0][0]) >= end, what="streamed")
    seg = s.datadir / "pg_wal" / f"00000001{0:08X}{second // (1 << 20):08X}"
    off = second % (1 << 20) + 100
    with open(seg, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0xFF]))
    s.wait_for_log(f"incorrect resource manager data checksum in record at {second >> 32:X}/{second & 0xFFFFFFFF:X}")
    s.poll_until(lambda: s.sql("SELECT count(*) FROM t") == [(2,)], what="both rows replayed")
    assert s.sql("SELECT length(v) FROM t WHERE id = 2") == [(200,)]
    assert not s.log_contains("terminating any other active server processes")
