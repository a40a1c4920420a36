"""Fault hooks: injection points armed by setting and by SQL, and each action.

Rules: DESIGN "fault hooks" (setting-armed points survive a crash reinit, SQL-armed ones do
not), CRASH-1/CRASH-3 through the exit actions, PM-0 (postmaster-loop point).
"""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from orchestrator import procfs
from orchestrator.localnode import LocalNode
from tests.node import rawclient


def test_error_action_armed_by_setting(node: LocalNode) -> None:
    """`error` at backend-loop armed through the setting: every statement fails with the
    injection point's ERROR; removing it from the setting and reloading disarms it."""
    node.append_conf(injection_points="'backend-loop:error'")
    node.reload()
    with node.connect() as c:
        node.poll_until(lambda: _errors(c), what="point armed")
        with pytest.raises(psycopg.errors.InternalError, match="error triggered for injection point backend-loop"):
            c.execute("SELECT 1")
        node.append_conf(injection_points="''")
        node.reload()
        node.poll_until(lambda: not _errors(c), what="point disarmed")
        assert c.execute("SELECT count(*) FROM pgbed_injection_points").fetchone() == (0,)
    assert any(e["name"] == "backend-loop" and e["action"] == "error" for e in node.events("injection_fired"))


def _errors(c: psycopg.Connection) -> bool:
    try:
        c.execute("SELECT 1")
    except psycopg.errors.InternalError:
        return True
    return False


def test_error_in_checkpointer_fails_the_request(node: LocalNode) -> None:
    """An ERROR inside a requested checkpoint fails that request (the requester gets
    `checkpoint request failed`); the checkpointer survives and the next request succeeds."""
    with node.connect() as c:
        ckpt = node.child_pids("checkpointer")
        c.execute("SELECT pgbed_injection_attach('checkpointer-checkpoint', 'error')")
        with pytest.raises(psycopg.errors.InternalError, match="checkpoint request failed"):
            c.execute("CHECKPOINT")
        assert node.log_contains("error triggered for injection point checkpointer-checkpoint")
        c.execute("SELECT pgbed_injection_detach('checkpointer-checkpoint')")
        c.execute("CHECKPOINT")
        assert node.child_pids("checkpointer") == ckpt
    assert not node.events("crash")


def test_invalid_attach_is_rejected(node: LocalNode) -> None:
    with node.connect() as c:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match='invalid action "explode"'):
            c.execute("SELECT pgbed_injection_attach('backend-loop', 'explode')")
        with pytest.raises(psycopg.errors.InternalError, match="could not find injection point nope to detach"):
            c.execute("SELECT pgbed_injection_detach('nope')")


def test_setting_points_survive_reinit_sql_points_do_not(node_factory) -> None:
    """Setting-armed points are re-armed at crash reinit; SQL-armed ones die with shared memory."""
    n = node_factory(injection_points="'checkpointer-checkpoint:sleep:1'")
    with n.connect() as c:
        c.execute("SELECT pgbed_injection_attach('startup-redo', 'sleep', '1')")
        rows = sorted(c.execute("SELECT name, action, arg, source FROM pgbed_injection_points").fetchall())
        assert rows == [("checkpointer-checkpoint", "sleep", "1", "setting"), ("startup-redo", "sleep", "1", "sql")]
        victim = n.connect()
    os.kill(victim.info.backend_pid, signal.SIGKILL)
    n.wait_for_log("all server processes terminated; reinitializing")
    n.poll_until(lambda: n.sql("SELECT 1") == [(1,)])
    rows = n.sql("SELECT name, source FROM pgbed_injection_points")
    assert rows == [("checkpointer-checkpoint", "setting")]
    fired = [e["name"] for e in n.events("injection_fired")]
    assert "startup-redo" not in fired  # cleared with the old shared memory before recovery ran
    assert "checkpointer-checkpoint" in fired  # re-armed: the end-of-recovery checkpoint hit it
    victim.close()


def test_wait_then_detach(node: LocalNode) -> None:
    """`wait` blocks the process at the point until it is detached."""
    import threading

    with node.connect() as admin:
        admin.execute("SELECT pgbed_injection_attach('checkpointer-checkpoint', 'wait')")
        done: list[float] = []

        def ckpt() -> None:
            with node.connect() as c:
                c.execute("CHECKPOINT")
                done.append(time.monotonic())

        t = threading.Thread(target=ckpt)
        t.start()
        time.sleep(0.6)
        assert not done
        admin.execute("SELECT pgbed_injection_detach('checkpointer-checkpoint')")
        t.join(10)
        assert done


def test_stop_action_freezes_process(node: LocalNode) -> None:
    """`stop` sends SIGSTOP to the process itself (a gray failure); SIGCONT releases it."""
    import threading

    with node.connect() as c:
        c.execute("SELECT pgbed_injection_attach('backend-after-auth', 'stop')")
        before = set(node.children())
        t = threading.Thread(target=lambda: node.connect().close(), daemon=True)
        t.start()
        stopped = node.poll_until(lambda: [p for p in set(node.children()) - before if _state(p) == "T"],
                                  what="the new backend stopped itself")
        c.execute("SELECT pgbed_injection_detach('backend-after-auth')")
        assert t.is_alive()  # its client is still waiting
        os.kill(stopped[0], signal.SIGCONT)
        t.join(10)
        assert not t.is_alive()


def _state(pid: int) -> str:
    return procfs.state(pid)


def test_abort_action_is_a_crash(node: LocalNode) -> None:
    """`abort` raises SIGABRT: terminated by signal 6 → crash restart (CRASH-1)."""
    c = node.connect()
    pid = c.info.backend_pid
    c.execute("SELECT pgbed_injection_attach('backend-loop', 'abort')")
    with pytest.raises(psycopg.OperationalError):
        c.execute("SELECT 1")
    c.close()
    node.wait_for_log(rf"server process \(PID {pid}\) was terminated by signal 6: Aborted")
    node.wait_for_log("all server processes terminated; reinitializing")


def test_postmaster_fork_of_checkpointer_fails(node: LocalNode) -> None:
    """`fail` at postmaster-fork-checkpointer, armed by setting so it survives the reinit: the
    new incarnation cannot start its checkpointer, so crash recovery's end-of-recovery checkpoint
    waits; disarming it lets LaunchMissingBackgroundProcesses fork one and the node opens."""
    node.append_conf(injection_points="'postmaster-fork-checkpointer:fail'")
    node.reload()
    node.wait_for_log('parameter "injection_points" changed to')
    ckpt = node.child_pids("checkpointer")[0]
    os.kill(ckpt, signal.SIGKILL)
    node.wait_for_log("all server processes terminated; reinitializing")
    node.wait_for_log("could not fork checkpointer process: error triggered for injection point "
                      "postmaster-fork-checkpointer")
    time.sleep(0.5)
    # As in PostgreSQL the pid file keeps saying `ready` through a crash reinit; the clients
    # are what see the difference: FatalError stays set until crash recovery ends (no redo was
    # needed, so no T2), hence canAcceptConnections' CAC_RECOVERY.
    err = rawclient.startup(node.host, node.port).error()
    assert err is not None
    assert (err["C"], err["M"]) == ("57P03", "the database system is in recovery mode")
    assert not node.child_pids("checkpointer")
    node.append_conf(injection_points="''")
    node.reload()
    node.poll_until(lambda: node.sql("SELECT 1") == [(1,)], what="node opens once the checkpointer can start")
    assert node.child_pids("checkpointer")
