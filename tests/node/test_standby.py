"""Archive recovery of a standby without a primary: hot standby, hot_standby=off, promotion.

Rules: T2, T3, T4, REC-1, REC-3, REC-4, REC-5, REC-6, REC-7, scenario F31 (without the worker,
which comes with the bgworker issue). These standbys have standby.signal but no
primary_conninfo and no backup label: the startup process reaches consistency at once because
there is no backup end pending and nothing to replay. Streaming standbys are in
test_streaming.py, test_standby_more.py and test_repl_signals.py.
"""

from __future__ import annotations

import psycopg
import pytest

from orchestrator.localnode import LocalNode
from tests.node import rawclient


def _standby(node_factory, **settings) -> LocalNode:
    n = node_factory(start=False, **settings)
    (n.datadir / "standby.signal").write_text("")
    return n


def test_hot_standby_opens_read_only(node_factory) -> None:
    """T2 → T3: RECOVERY_STARTED then BEGIN_HOT_STANDBY; pidfile ready; in_hot_standby on."""
    n = _standby(node_factory)
    n.start()
    n.wait_for_log("database system is ready to accept read-only connections")
    assert n.log_contains("entering standby mode")
    assert n.log_contains(r"consistent recovery state reached at [0-9A-F]+/[0-9A-F]+")
    # The postmaster logs the line, then updates the pidfile and its state (PostgreSQL's order).
    n.poll_until(lambda: [e["new"] for e in n.events("pm_state")] == ["STARTUP", "RECOVERY", "HOT_STANDBY"],
                 what="T2 then T3")  # fmt: skip
    n.poll_until(lambda: n.pidfile_status() == "ready", what="pidfile ready")
    with n.connect() as c:
        assert c.info.parameter_status("in_hot_standby") == "on"
        assert c.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert c.execute("SHOW default_transaction_read_only").fetchone() == ("on",)


def test_hot_standby_off_refuses_connections(node_factory) -> None:
    """REC-4 / F31: with hot_standby=off the node stays in RECOVERY, pidfile `standby`, and
    connections get 57P03 `the database system is not accepting connections` / `Hot standby mode is
    disabled.`; pg_isready says 1. Promotion then opens it (T4)."""
    n = _standby(node_factory, hot_standby="off")
    n.start()
    assert n.pidfile_status() == "standby"
    err = rawclient.startup(n.host, n.port).error()
    assert err is not None
    assert (err["C"], err["M"], err["D"]) == ("57P03", "the database system is not accepting connections",
                                              "Hot standby mode is disabled.")
    assert n.pg_isready() == 1
    (n.datadir / "promote").write_text("")
    import signal

    n.signal(signal.SIGUSR1)
    n.wait_for_log("database system is ready to accept connections")
    assert n.pidfile_status() == "ready"
    assert n.sql("SELECT pg_is_in_recovery()") == [(False,)]


def test_pg_promote_switches_timeline(node_factory) -> None:
    """REC-5: pg_promote(wait) → promote file + SIGUSR1 → startup exits 0 (T4); new timeline 2
    with a history file; pg_promote on a primary errors."""
    n = _standby(node_factory)
    n.start()
    with n.connect() as c:
        assert c.execute("SELECT pg_promote(true, 30)").fetchone() == (True,)
        assert c.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    assert n.log_contains("received promote request")
    assert n.log_contains("selected new timeline ID: 2")
    assert n.log_contains("archive recovery complete")
    assert (n.datadir / "pg_wal" / "00000002.history").read_text().startswith("1\t")
    assert not (n.datadir / "standby.signal").exists()
    # pg_promote returns once recovery has ended; the postmaster's T4 follows the startup
    # process's exit a moment later.
    n.poll_until(lambda: [e["new"] for e in n.events("pm_state")][-1] == "RUN", what="PMState RUN")
    with n.connect() as c:
        try:
            c.execute("SELECT pg_promote()")
            raise AssertionError("pg_promote on a primary must fail")
        except psycopg.errors.ObjectNotInPrerequisiteState as e:
            assert "recovery is not in progress" in str(e)


def test_stale_promote_file_removed_at_start(node_factory) -> None:
    """REC-6: a `promote` file present at postmaster start is deleted before recovery runs."""
    n = _standby(node_factory)
    (n.datadir / "promote").write_text("")
    n.start()
    n.wait_for_log("database system is ready to accept read-only connections")
    assert not (n.datadir / "promote").exists()
    assert n.sql("SELECT pg_is_in_recovery()") == [(True,)]


def test_smart_shutdown_of_standby(node_factory) -> None:
    """Shutdown in HOT_STANDBY: the startup process is in the stop set (SHUT-4) and exits 1 (T15);
    the checkpointer writes a restartpoint; exit 0; pg_control says shut down in recovery."""
    n = _standby(node_factory)
    n.start()
    assert n.stop("fast") == 0
    assert n.log_contains("restartpoint starting: shutdown immediate")
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "node", "controldata", "-D", str(n.datadir)], capture_output=True,
                       text=True)
    assert "shut down in recovery" in r.stdout


def test_standby_is_read_only_and_promotion_makes_it_writable(node_factory) -> None:
    """Issue 3 point 7: during recovery every write fails with 25006; data replayed from local
    WAL is readable; after promotion the same data can be written (new timeline)."""
    n = node_factory()
    with n.connect() as c:
        c.execute("CREATE TABLE s (a int)")
        c.execute("INSERT INTO s VALUES (1)")
    n.stop("immediate")  # leaves WAL to replay
    (n.datadir / "standby.signal").write_text("")
    n.start()
    with n.connect() as c:
        assert c.execute("SELECT a FROM s").fetchall() == [(1,)]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction,
                           match="cannot execute INSERT in a read-only transaction"):
            c.execute("INSERT INTO s VALUES (2)")
        assert c.execute("SELECT pg_promote()").fetchone() == (True,)
    with n.connect() as c:
        c.execute("INSERT INTO s VALUES (2)")
        assert c.execute("SELECT count(*) FROM s").fetchone() == (2,)
    n.kill9()
    n.poll_until(lambda: not n.orphans(), what="old children gone")
    n.start()  # recovery now reads WAL across the timeline switch
    assert n.sql("SELECT count(*) FROM s") == [(2,)]
