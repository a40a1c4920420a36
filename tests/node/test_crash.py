"""Crash handling: exit classification, the dead-man switch, reinit, escalation, postmaster death.

Rules: CRASH-1, CRASH-3, CRASH-4, CRASH-5, CRASH-6, CRASH-7, CRASH-8, CRASH-9, CRASH-10, T13,
T14, scenarios F18, F19. Not applicable (no such kinds in pgbed): the bgwriter, walwriter,
autovacuum, archiver and syslogger rows of CRASH-1; the bgworker and walreceiver rows are tested
in their own issues.
"""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from orchestrator.localnode import LocalNode
from tests.clienthelp import drain_notices

CRASH_MSG = "terminating connection because of crash of another server process"




def _watch(conn: psycopg.Connection) -> list[tuple[str | None, str]]:
    notices: list[tuple[str | None, str]] = []
    conn.add_notice_handler(lambda d: notices.append((d.sqlstate, d.message_primary or "")))
    return notices


def test_sigkill_backend_restarts_cluster(node: LocalNode) -> None:
    """F18 / CRASH-1, CRASH-4, CRASH-6, CRASH-7: SIGKILL of one of three sessions' backends → the
    other two are told 57P02 and dropped; the node reinitialises and accepts again."""
    victim, a, b = node.connect(), node.connect(), node.connect()
    na, nb = _watch(a), _watch(b)
    pid = victim.info.backend_pid
    old_ckpt = node.child_pids("checkpointer")
    off = node.log_offset()
    os.kill(pid, signal.SIGKILL)
    node.wait_for_log(r"all server processes terminated; reinitializing", off)
    assert node.log_contains(rf"server process \(PID {pid}\) was terminated by signal 9: Killed", off)
    assert node.log_contains("terminating any other active server processes", off)
    for conn, notes in ((a, na), (b, nb)):
        deadline = time.monotonic() + 5
        while ("57P02", CRASH_MSG) not in notes and time.monotonic() < deadline:
            drain_notices(conn)
            time.sleep(0.05)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        assert ("57P02", CRASH_MSG) in notes
        conn.close()
    victim.close()
    assert node.poll_until(lambda: node.sql("SELECT 1") == [(1,)], what="node accepts again")
    assert node.child_pids("checkpointer") != old_ckpt  # every child was replaced
    states = [e["new"] for e in node.events("pm_state")]
    # T14 → T8 → T12 → T13 (reinit) → T4. Nothing was written since the checkpoint, so, as in
    # PostgreSQL, crash recovery finds no record to replay and never signals RECOVERY_STARTED.
    assert states[-5:] == ["WAIT_BACKENDS", "WAIT_DEAD_END", "NO_CHILDREN", "STARTUP", "RUN"]
    assert node.log_contains("redo is not required")
    crash = node.events("crash")
    assert len(crash) == 1 and crash[0]["child_pid"] == pid


def test_underscore_exit_0_of_attached_backend_is_a_crash(node: LocalNode) -> None:
    """CRASH-3: exit code 0 without detaching (os._exit from an injection point) is a crash."""
    c = node.connect()
    pid = c.info.backend_pid
    off = node.log_offset()
    c.execute("SELECT pgbed_injection_attach('backend-loop', '_exit', '0')")
    with pytest.raises(psycopg.OperationalError):
        c.execute("SELECT 1")
    c.close()
    node.wait_for_log("all server processes terminated; reinitializing", off)
    assert node.log_contains(rf"server process \(PID {pid}\) exited with exit code 0", off)
    # SQL-armed points die with shared memory: the new incarnation serves queries normally.
    assert node.poll_until(lambda: node.sql("SELECT 1") == [(1,)])


def test_exit_0_with_cleanup_is_not_a_crash(node: LocalNode) -> None:
    """CRASH-1, CRASH-3: the same exit code 0 after a clean detach is an ordinary exit."""
    other = node.connect()
    c = node.connect()
    c.execute("SELECT pgbed_injection_attach('backend-loop', 'exit', '0')")
    with pytest.raises(psycopg.OperationalError):
        c.execute("SELECT 1")
    c.close()
    time.sleep(0.3)
    assert not node.log_contains("terminating any other active server processes")
    assert not node.events("crash")
    other.close()


def test_checkpointer_death_is_a_crash(node: LocalNode) -> None:
    """CRASH-1: the checkpointer's exit 0 outside WAIT_CHECKPOINTER, and its SIGKILL, restart all."""
    with node.connect() as c:
        c.execute("SELECT pgbed_injection_attach('checkpointer-loop', 'exit', '0')")
        ckpt = node.child_pids("checkpointer")[0]
        off = node.log_offset()
        c.execute("SELECT pg_reload_conf()")  # wakes the checkpointer's loop
        node.wait_for_log("all server processes terminated; reinitializing", off)
    assert node.log_contains(rf"checkpointer process \(PID {ckpt}\) exited with exit code 0", off)
    node.poll_until(lambda: node.sql("SELECT 1") == [(1,)])
    ckpt = node.child_pids("checkpointer")[0]
    off = node.log_offset()
    os.kill(ckpt, signal.SIGKILL)
    node.wait_for_log("all server processes terminated; reinitializing", off)
    assert node.log_contains(rf"checkpointer process \(PID {ckpt}\) was terminated by signal 9: Killed", off)
    node.poll_until(lambda: node.sql("SELECT 1") == [(1,)])


def test_restart_after_crash_off(node_factory) -> None:
    """F19 / CRASH-8: with restart_after_crash=off a backend crash ends the postmaster, exit 1."""
    n = node_factory(restart_after_crash="off")
    c = n.connect()
    pid = c.info.backend_pid
    os.kill(pid, signal.SIGSEGV)
    assert n.wait_exit() == 1
    c.close()
    assert n.log_contains(rf"server process \(PID {pid}\) was terminated by signal 11: Segmentation fault")
    assert n.log_contains('shutting down because "restart_after_crash" is off')
    assert not n.log_contains("reinitializing")


def test_postmaster_death_ends_every_child(node: LocalNode) -> None:
    """CRASH-10: SIGKILL of the postmaster → every child sees the death pipe and exits within a
    second, including an idle backend and one sleeping in pg_sleep."""
    idle = node.connect()
    busy = node.connect()
    busy_pid = busy.info.backend_pid
    import threading

    errs: list[BaseException] = []

    def sleeper() -> None:
        try:
            busy.execute("SELECT pg_sleep(30)")
        except BaseException as e:
            errs.append(e)

    t = threading.Thread(target=sleeper)
    t.start()
    node.poll_until(lambda: (busy_pid,) in node.sql("SELECT pid FROM pg_stat_activity WHERE state = 'active'"),
                    what="sleeper active")
    children = list(node.children())
    assert len(children) >= 3  # checkpointer + two backends (the startup process is gone in RUN)
    node.kill9()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0 and any(os.path.exists(f"/proc/{p}") and _alive(p) for p in children):
        time.sleep(0.02)
    left = [p for p in children if _alive(p)]
    assert not left, f"children still alive 1 s after postmaster death: {left}"
    t.join(5)
    assert errs, "pg_sleep session should have been terminated"
    idle.close()
    busy.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_sigkill_escalation_after_5s(node: LocalNode) -> None:
    """CRASH-5: a child that ignores SIGQUIT gets SIGKILL 5 s after the crash, then reinit."""
    stubborn = node.connect()
    stubborn.execute("SELECT pgbed_injection_attach('backend-loop', 'ignore', 'SIGQUIT')")
    stubborn.execute("SELECT pgbed_injection_detach('backend-loop')")  # it fired: SIGQUIT ignored now
    victim = node.connect()
    off = node.log_offset()
    os.kill(victim.info.backend_pid, signal.SIGKILL)
    node.wait_for_log("terminating any other active server processes", off)
    t0 = time.monotonic()
    node.wait_for_log("issuing SIGKILL to recalcitrant children", off, timeout=15)
    waited = time.monotonic() - t0
    assert 4.5 <= waited <= 7.5, waited
    node.wait_for_log("all server processes terminated; reinitializing", off)
    esc = node.events("sigkill_escalation")[0]["ts"]
    crash = node.events("crash")[0]["ts"]
    assert 5.0 <= esc - crash < 6.5
    stubborn.close()
    victim.close()


def test_startup_failure_during_startup_aborts(node_factory) -> None:
    """CRASH-9: a non-zero exit of the startup process in STARTUP that we did not cause ends the
    postmaster at once with exit 1."""
    n = node_factory(start=False, injection_points="'startup-start:exit:1'")
    n.start(expect_fail=True)
    assert n.exit_code == 1
    assert n.log_contains(r"startup process \(PID \d+\) exited with exit code 1")
    assert n.log_contains("aborting startup due to startup process failure")


def test_startup_crash_later_shuts_down(node_factory) -> None:
    """CRASH-9, T13 (2): the startup process crashing after STARTUP (here in HOT_STANDBY) is a
    crash, and at NO_CHILDREN the postmaster exits 1 without reinitialising."""
    n = node_factory(start=False)
    (n.datadir / "standby.signal").write_text("")
    n.start()
    startup = n.child_pids("startup")[0]
    os.kill(startup, signal.SIGKILL)
    assert n.wait_exit() == 1
    assert n.log_contains(rf"startup process \(PID {startup}\) was terminated by signal 9: Killed")
    assert n.log_contains("shutting down due to startup process failure")
    assert not n.log_contains("reinitializing")


def test_fork_failure_of_a_backend(node: LocalNode) -> None:
    """A failed fork of a backend is reported to the client and logged; the node keeps running."""
    with node.connect() as c:
        c.execute("SELECT pgbed_injection_attach('postmaster-fork-backend', 'fail')")
        # PostgreSQL writes this error raw (report_fork_failure_to_client); with sslmode=prefer libpq
        # would call it "an error response during SSL exchange", so ask it not to try SSL.
        with pytest.raises(psycopg.OperationalError, match="could not fork new process for connection"):
            node.connect(sslmode="disable")
        c.execute("SELECT pgbed_injection_detach('postmaster-fork-backend')")
    assert node.log_contains("could not fork new process for connection")
    assert node.sql("SELECT 1") == [(1,)]
