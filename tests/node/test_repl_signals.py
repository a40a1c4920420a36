"""Every signal to walsenders and walreceivers, in their states, checked from outside through
pgbed_walsnd_slots, pgbed_walrcv and the jsonlog (orchestrator/replcheck.py), plus the two
historic bugs of `pgbed.historic_bugs` caught by the same checks.

Rules: WALSND-2, WALSND-4, WALSND-5, WALSND-6, WALRCV-3, WALRCV-4, WALRCV-5, WALRCV-6, SIG-1,
SIG-3, SIG-4, P-4, P-6, CRASH-1; scenarios F26 (SIGTERM the walsender: exit 1, no restart of
the cluster, reconnect no sooner than the retry interval), F28 (SIGKILL the walreceiver: standby
crash restart, sessions dropped, hot standby resumes), F30 (wrong primary_conninfo: FATAL and
exit 1 each time, no crash), F25 (standby frozen: the primary's shutdown waits for
wal_sender_timeout).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psycopg
import pytest

from orchestrator import replcheck
from orchestrator.localnode import LocalNode
from tests.clienthelp import pid_alive

RETRY_MS = 1000




def _pair(node_factory, standby_factory, primary_settings=None, **standby_settings) -> tuple[LocalNode, LocalNode]:
    p = node_factory("primary", **(primary_settings or {}))
    p.sql("CREATE TABLE t (id int PRIMARY KEY)")
    s = standby_factory(p, "standby1", wal_retrieve_retry_interval=f"'{RETRY_MS}ms'", **standby_settings)
    s.wait_for_log("started streaming WAL from primary")
    p.poll_until(lambda: p.sql("SELECT state FROM pg_stat_replication") == [("streaming",)], what="streaming")
    return p, s


def _check_invariants(p: LocalNode, s: LocalNode) -> None:
    v = replcheck.walsnd_slot_violations(_slots(p), exited=replcheck.exited_pids(p.events("child_exit")),
                                         alive=pid_alive)  # fmt: skip
    v += replcheck.walrcv_violations(_walrcv(s), exited=replcheck.exited_pids(s.events("child_exit")), alive=pid_alive)
    assert not v, v


def _slots(n: LocalNode) -> list[dict]:
    cols = ["slot", "pid", "state", "latch_owner_pid"]
    return [dict(zip(cols, r, strict=True)) for r in n.sql(f"SELECT {', '.join(cols)} FROM pgbed_walsnd_slots")]


def _walrcv(n: LocalNode) -> list[dict]:
    cols = ["pid", "state", "latch_owner_pid"]
    return [dict(zip(cols, r, strict=True)) for r in n.sql(f"SELECT {', '.join(cols)} FROM pgbed_walrcv")]


def _no_crash(n: LocalNode) -> None:
    assert not n.log_contains("terminating any other active server processes"), n.log_content()[-3000:]


def _converged(p: LocalNode, s: LocalNode, upto: int) -> None:
    for i in range(upto, upto + 5):
        p.sql("INSERT INTO t VALUES (%s)", (i,))
    p.wait_for_catchup(s, "replay")
    assert s.sql("SELECT count(*) FROM t") == p.sql("SELECT count(*) FROM t")


def _walsender_pid(p: LocalNode) -> int:
    return p.poll_until(lambda: (p.sql("SELECT pid FROM pg_stat_replication WHERE state = 'streaming'") or [[0]])[0][0],
                        what="a streaming walsender")  # fmt: skip


def _walsender_in_activity(n: LocalNode) -> int:
    q = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'"
    return n.poll_until(lambda: [r[0] for r in n.sql(q)], what="a walsender in pg_stat_activity")[0]


def _exit_of(n: LocalNode, pid: int) -> dict:
    return n.poll_until(lambda: next((e for e in n.events("child_exit") if e.get("child_pid") == pid), None),
                        what=f"exit of {pid}")  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1])
def test_walsender_harmless_signals(node_factory, standby_factory, sig: int) -> None:
    """WALSND-4: SIGHUP reloads, SIGUSR1 only wakes; streaming goes on with the same walsender."""
    p, s = _pair(node_factory, standby_factory)
    pid = _walsender_pid(p)
    for _ in range(20):
        os.kill(pid, sig)
    _converged(p, s, 0)
    assert _walsender_pid(p) == pid
    _no_crash(p)
    _check_invariants(p, s)


def test_walsender_sigterm_standby_reconnects_after_retry_interval(node_factory, standby_factory) -> None:
    """F26: SIGTERM → FATAL, exit 1, no cluster restart; the walreceiver loses its stream and exits
    1; the next walreceiver starts no sooner than wal_retrieve_retry_interval after the previous
    one's start, and within that plus 2 s; nothing acknowledged is lost."""
    p, s = _pair(node_factory, standby_factory)
    p.sql("INSERT INTO t VALUES (-1)")
    pid = _walsender_pid(p)
    os.kill(pid, signal.SIGTERM)
    assert _exit_of(p, pid)["exit_code"] == 1
    new_pid = _walsender_pid(p)
    assert new_pid != pid
    gaps = replcheck.restart_gaps(s.events("child_start"))
    assert gaps and all(g >= RETRY_MS / 1000 - 0.05 for g in gaps), gaps
    assert gaps[-1] <= RETRY_MS / 1000 + 2.0, gaps
    _no_crash(p)
    _no_crash(s)
    _converged(p, s, 0)
    _check_invariants(p, s)


def test_walsender_sigint_and_sigusr2(node_factory, standby_factory) -> None:
    """SIGINT cancels START_REPLICATION (the standby gets an ERROR and reconnects); SIGUSR2 is
    the last cycle: once the standby confirmed everything the walsender sends `COPY 0` and exits
    0 (WALSND-6). Neither is a crash."""
    p, s = _pair(node_factory, standby_factory)
    pid = _walsender_pid(p)
    os.kill(pid, signal.SIGINT)
    s.wait_for_log("canceling statement due to user request")
    assert _exit_of(p, pid)["exit_code"] in (0, 1)
    pid = _walsender_pid(p)
    os.kill(pid, signal.SIGUSR2)
    assert _exit_of(p, pid)["exit_code"] == 0
    s.wait_for_log("replication terminated by primary server")
    _walsender_pid(p)
    _no_crash(p)
    _converged(p, s, 0)
    _check_invariants(p, s)


def test_walsender_sigquit_is_a_crash(node_factory, standby_factory) -> None:
    """CRASH-1: a walsender that exits 2 (SIGQUIT) makes the primary crash-restart; the standby
    reconnects afterwards."""
    p, s = _pair(node_factory, standby_factory)
    os.kill(_walsender_pid(p), signal.SIGQUIT)
    m = p.wait_for_log("all server processes terminated; reinitializing")
    p.wait_for_log("database system is ready to accept connections", offset=m.end())
    _converged(p, s, 0)
    _check_invariants(p, s)


def test_signal_storm_on_walsender_and_walreceiver(node_factory, standby_factory) -> None:
    """Storms of HUP/USR1 (and USR2/INT on the walreceiver, which ignores them) while rows are
    written: no crash on either side, every row arrives, invariants hold throughout."""
    p, s = _pair(node_factory, standby_factory)
    wr = s.child_pids("walreceiver")[0]
    ws = _walsender_pid(p)
    for i in range(30):
        for pid, sig in ((ws, signal.SIGHUP), (ws, signal.SIGUSR1), (wr, signal.SIGHUP), (wr, signal.SIGUSR1),
                         (wr, signal.SIGUSR2), (wr, signal.SIGINT)):  # fmt: skip
            os.kill(pid, sig)
        p.sql("INSERT INTO t VALUES (%s)", (i,))
        if i % 10 == 0:
            _check_invariants(p, s)
    _converged(p, s, 1000)
    assert s.child_pids("walreceiver") == [wr]
    _no_crash(p)
    _no_crash(s)


def test_walreceiver_sigterm_restarted_by_startup(node_factory, standby_factory) -> None:
    """WALRCV-4/5: SIGTERM → exit 1, forgotten by the postmaster; the startup process asks for a
    new walreceiver after the retry interval; no crash."""
    p, s = _pair(node_factory, standby_factory)
    pid = s.child_pids("walreceiver")[0]
    os.kill(pid, signal.SIGTERM)
    assert _exit_of(s, pid)["exit_code"] == 1
    s.poll_until(lambda: s.child_pids("walreceiver") and s.child_pids("walreceiver") != [pid],
                 what="a new walreceiver")  # fmt: skip
    gaps = replcheck.restart_gaps(s.events("child_start"))
    assert gaps and gaps[-1] >= RETRY_MS / 1000 - 0.05, gaps
    _no_crash(s)
    _converged(p, s, 0)
    _check_invariants(p, s)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGQUIT])
def test_walreceiver_crash_restarts_the_standby(node_factory, standby_factory, sig: int) -> None:
    """F28 / WALRCV-5: any exit but 0/1 crash-restarts the standby; hot-standby sessions are
    dropped; hot standby resumes and streaming continues."""
    p, s = _pair(node_factory, standby_factory)
    sess = s.connect(autocommit=True)
    os.kill(s.child_pids("walreceiver")[0], sig)
    s.wait_for_log("all server processes terminated; reinitializing")
    with pytest.raises(psycopg.OperationalError):
        for _ in range(50):
            sess.execute("SELECT 1")
            time.sleep(0.05)
    s.wait_for_log("database system is ready to accept read-only connections",
                   offset=s.log_content().index("reinitializing"))  # fmt: skip
    _converged(p, s, 0)
    _check_invariants(p, s)


def test_wrong_primary_conninfo_retries_without_crash(node_factory, standby_factory) -> None:
    """F30 / WALRCV-6: a wrong primary_conninfo gives FATAL 'could not connect to the primary
    server' and exit 1 every time, retried at the retry interval, never a crash."""
    p = node_factory("primary")
    s = standby_factory(p, "standby1", start=False, wal_retrieve_retry_interval="'300ms'")
    auto = s.datadir / "postgresql.auto.conf"
    auto.write_text(auto.read_text().replace(f"port={p.port}", "port=1"))
    s.start()
    s.poll_until(lambda: len(s.events("child_start")) and
                 len([e for e in s.events("child_exit") if e.get("kind") == "walreceiver"]) >= 3,
                 what="three failed walreceivers")  # fmt: skip
    assert s.log_contains("could not connect to the primary server")
    exits = [e for e in s.events("child_exit") if e.get("kind") == "walreceiver"]
    assert all(e["exit_code"] == 1 for e in exits)
    assert all(g >= 0.25 for g in replcheck.restart_gaps(s.events("child_start")))
    assert not s.sql("SELECT * FROM pg_stat_wal_receiver")
    _no_crash(s)


def test_frozen_standby_holds_primary_shutdown_until_sender_timeout(node_factory, standby_factory) -> None:
    """F25 / WALSND-6,7: with the standby SIGSTOPped, a fast shutdown of the primary waits in
    WAIT_XLOG_ARCHIVAL until wal_sender_timeout ends the walsender, then completes."""
    p, s = _pair(node_factory, standby_factory, {"wal_sender_timeout": "'2s'"})
    wr = s.child_pids("walreceiver")[0]
    os.kill(wr, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        assert p.stop("fast", timeout=30) == 0
        took = time.monotonic() - t0
    finally:
        os.kill(wr, signal.SIGCONT)
    assert p.log_contains("terminating walsender process due to replication timeout")
    assert 1.0 <= took <= 10, took
    states = [e["new"] for e in p.events("pm_state")]
    assert "WAIT_XLOG_ARCHIVAL" in states


def test_historic_walsndkill_order_caught(node_factory, standby_factory) -> None:
    """pgbed.historic_bugs=walsndkill_order puts back the 2013 WalSndKill order (pid cleared
    first). With an injection point widening the window, the standby's new walsender claims the
    freed slot and the dying one then clears the new owner's latch pointer: the slot check sees
    a used slot whose latch nobody owns. The same run without the bug passes."""
    for bug in (True, False):
        settings = {"injection_points": "'walsender-kill-after-free:sleep:2500,walsender-kill-before-free:sleep:2500'",
                    "pgbed.historic_bugs": "'walsndkill_order'" if bug else "''"}  # fmt: skip
        p = node_factory(f"primary{int(bug)}", **settings)
        p.sql("CREATE TABLE t (id int PRIMARY KEY)")
        s = standby_factory(p, f"standby{int(bug)}", wal_retrieve_retry_interval="'100ms'")
        pid = _walsender_pid(p)
        os.kill(pid, signal.SIGTERM)
        violations: list[str] = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and not any("latch owned by nobody" in v for v in violations):
            violations += replcheck.walsnd_slot_violations(_slots(p))
            time.sleep(0.05)
        if bug:
            assert any("latch owned by nobody" in v for v in violations), violations
        else:
            assert not violations, violations
            _converged(p, s, 0)
        p.teardown()
        s.teardown()


def test_historic_signal_handler_work_caught(node_factory, standby_factory) -> None:
    """pgbed.historic_bugs=signal_handler_work: a SIGTERM handler that runs the exit path inside
    the handler (P-4) cuts through the slot claim, so the WalSnd slot keeps naming a process the
    postmaster reported dead (jsonlog child_exit). With flag-only handlers the same signal at the
    same place ends the walsender at its next check and the slot is freed."""
    for bug in (True, False):
        settings = {"injection_points": "'walsender-claim:sleep:1500'",
                    "pgbed.historic_bugs": "'signal_handler_work'" if bug else "''"}  # fmt: skip
        p = node_factory(f"primary{int(bug)}", **settings)
        psql_args = ["psql", f"host={p.host} port={p.port} user=postgres replication=true", "-c", "IDENTIFY_SYSTEM"]
        client = subprocess.Popen(psql_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The walsender is asleep inside its slot claim (the injection point): signal it there.
        pid = _walsender_in_activity(p)
        os.kill(pid, signal.SIGTERM)
        _exit_of(p, pid)
        client.wait(10)
        time.sleep(0.3)
        violations = replcheck.walsnd_slot_violations(_slots(p), exited=replcheck.exited_pids(p.events("child_exit")))
        if bug:
            assert any(f"still names pid {pid}, which has exited" in v for v in violations), violations
        else:
            assert not violations, violations
        p.teardown()
