"""Shutdown modes with an idle client, and shutdown-request collapsing.

Rules: SHUT-1, SHUT-2, SHUT-3, SHUT-4, SHUT-5, SHUT-6, SHUT-7, T5..T13, CRASH-6 (immediate),
scenario F14. Not applicable (kinds pgbed does not have): the archiver/bgwriter/walwriter/
autovacuum/syslogger steps of SHUT-4..SHUT-10; walsender steps are tested with replication.
"""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from orchestrator.localnode import LocalNode
from tests.clienthelp import drain_notices
from tests.node import rawclient


def test_smart_waits_for_idle_client(node: LocalNode) -> None:
    """SHUT-2: smart shutdown refuses new connections but waits for the idle session."""
    c = node.connect()
    node.signal(signal.SIGTERM)
    node.wait_for_log("received smart shutdown request")
    node.poll_until(lambda: node.pidfile_status() == "stopping", what="pidfile stopping")
    err = rawclient.startup(node.host, node.port).error()
    assert err is not None and (err["C"], err["M"]) == ("57P03", "the database system is shutting down")
    time.sleep(1.0)
    assert node.is_running()
    assert c.execute("SELECT 1").fetchone() == (1,)  # the session still works
    c.close()
    assert node.wait_exit() == 0
    assert node.log_contains("database system is shut down")
    assert node.pidfile() is None


def test_fast_terminates_idle_client_with_57P01(node: LocalNode) -> None:
    """SHUT-3, SHUT-4: fast shutdown SIGTERMs backends; an idle client gets FATAL 57P01 pushed."""
    c = node.connect()
    assert node.stop("fast") == 0
    assert node.log_contains("received fast shutdown request")
    assert node.log_contains("aborting any active transactions")
    with pytest.raises(psycopg.errors.AdminShutdown) as ei:
        c.execute("SELECT 1")
    assert "terminating connection due to administrator command" in str(ei.value)
    c.close()
    states = [e["new"] for e in node.events("pm_state")]
    assert states[-7:] == ["STOP_BACKENDS", "WAIT_BACKENDS", "WAIT_XLOG_SHUTDOWN", "WAIT_XLOG_ARCHIVAL",
                           "WAIT_CHECKPOINTER", "WAIT_DEAD_END", "NO_CHILDREN"]
    assert node.log_contains("checkpoint starting: shutdown immediate")


def test_immediate_exits_0_and_next_start_recovers(node: LocalNode) -> None:
    """SHUT-7: immediate shutdown SIGQUITs everyone, the postmaster exits 0, and the next start
    runs crash recovery because the shutdown was not clean. CRASH-6: clients are told why."""
    c = node.connect()
    notices: list[tuple[str | None, str]] = []
    c.add_notice_handler(lambda d: notices.append((d.sqlstate, d.message_primary or "")))
    assert node.stop("immediate") == 0
    assert node.log_contains("received immediate shutdown request")
    drain_notices(c)  # read the WARNING before a query could draw a reset (see drain_notices)
    with pytest.raises(psycopg.OperationalError):
        c.execute("SELECT 1")
    assert ("57P01", "terminating connection due to immediate shutdown command") in notices
    off = node.log_offset()
    node.start()
    node.wait_for_log("database system was not properly shut down; automatic recovery in progress", off)
    assert node.log_contains("database system was interrupted; last known up at", off)
    assert node.log_contains("redo is not required", off)  # no WAL written since the checkpoint


def test_shutdown_requests_collapse_to_most_severe(node: LocalNode) -> None:
    """SHUT-1 / F14: SIGTERM, SIGINT, SIGTERM within one loop pass → one fast shutdown;
    a later SIGTERM is ignored, a later SIGQUIT escalates to immediate."""
    c = node.connect()
    c.execute("SELECT pgbed_injection_attach('checkpointer-checkpoint', 'wait')")
    os.kill(node.pid, signal.SIGSTOP)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        os.kill(node.pid, s)
    os.kill(node.pid, signal.SIGCONT)
    node.wait_for_log("received fast shutdown request")
    node.wait_for_log("checkpoint starting: shutdown")  # held there by the injection point
    assert not node.log_contains("received smart shutdown request")
    off = node.log_offset()
    node.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert not node.log_contains("received smart shutdown request", off)
    node.signal(signal.SIGQUIT)
    node.wait_for_log("received immediate shutdown request", off)
    assert node.wait_exit() == 0
    c.close()
    assert len(node.events("shutdown_request")) == 2


def test_shutdown_request_during_crash_is_abnormal(node: LocalNode) -> None:
    """SHUT-9 / F21: a smart shutdown while children of a crash are still exiting → no reinit,
    `abnormal database system shutdown`, exit 1. A backend that ignores SIGQUIT keeps the crash
    in progress until the 5 s SIGKILL."""
    stubborn = node.connect()
    stubborn.execute("SELECT pgbed_injection_attach('backend-loop', 'ignore', 'SIGQUIT')")
    stubborn.execute("SELECT pgbed_injection_detach('backend-loop')")
    victim = node.connect()
    os.kill(victim.info.backend_pid, signal.SIGKILL)
    node.wait_for_log("terminating any other active server processes")
    node.signal(signal.SIGTERM)
    assert node.wait_exit(timeout=20) == 1
    assert node.log_contains("received smart shutdown request")
    assert node.log_contains("abnormal database system shutdown")
    assert not node.log_contains("reinitializing")
    stubborn.close()
    victim.close()


def test_startup_exit_3_is_shutdown_at_recovery_target(node_factory) -> None:
    """T15 / REC-8: the startup process exiting 3 (recovery target reached with action shutdown)
    makes the postmaster shut down cleanly."""
    n = node_factory(start=False)
    (n.datadir / "standby.signal").write_text("")
    n.start()
    with n.connect() as c:
        c.execute("SELECT pgbed_injection_attach('startup-loop', 'exit', '3')")
    n.signal(signal.SIGHUP)  # wakes the startup process's loop, where the point fires
    assert n.wait_exit() == 0
    assert n.log_contains("shutdown at recovery target")
    assert n.log_contains("database system is shut down")
