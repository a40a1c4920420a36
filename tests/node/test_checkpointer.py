"""The checkpointer: timed, requested, end-of-recovery and shutdown checkpoints.

Rules: SHUT-5 (shutdown checkpoint on SIGINT, then XLOG_IS_SHUTDOWN), SHUT-6 (exit 0 on SIGUSR2),
T7, T9..T11, CRASH-1 (checkpointer rows). The walsender handshake of SHUT-5 belongs to the
replication issue.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from orchestrator.localnode import LocalNode


def _controldata(n: LocalNode) -> str:
    return subprocess.run([sys.executable, "-m", "node", "controldata", "-D", str(n.datadir)],
                          capture_output=True, text=True).stdout  # fmt: skip


def test_requested_checkpoint_updates_pg_control(node: LocalNode) -> None:
    before = _controldata(node)
    time.sleep(1.1)  # pg_control's modification time has one-second resolution in the text
    with node.connect() as c:
        c.execute("CHECKPOINT")
    assert node.log_contains("checkpoint starting: immediate force wait")
    assert node.log_contains("checkpoint complete: wrote 0 buffers")
    after = _controldata(node)
    assert "in production" in after
    assert before != after


def test_shutdown_checkpoint_marks_clean_shutdown(node: LocalNode) -> None:
    assert node.stop("smart") == 0
    assert "Database cluster state:               shut down" in _controldata(node)
    off = node.log_offset()
    node.start()
    assert node.log_contains("database system was shut down at", off)
    assert not node.log_contains("automatic recovery in progress", off)


@pytest.mark.slow
def test_timed_checkpoint_fires_and_is_skipped_when_idle(node_factory) -> None:
    """checkpoint_timeout=30s (its minimum): the timer fires after 30 s; with no WAL written since
    the last checkpoint PostgreSQL skips it, and so does pgbed (DEBUG1)."""
    n = node_factory(checkpoint_timeout="'30s'", log_min_messages="debug1")
    t0 = time.monotonic()
    n.wait_for_log("checkpoint skipped because system is idle", timeout=45)
    assert 29.0 <= time.monotonic() - t0 <= 40.0
