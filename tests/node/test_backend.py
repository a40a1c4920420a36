"""Client backends: cancel, terminate, connection limits, authentication rules, the protocol.

Rules: SIG-6 (deferred die: FATAL at a check point), wire-protocol §1 (CancelRequest → SIGINT,
57014, 53300, 28000, 3D000, NegotiateProtocolVersion, ReadyForQuery states, 25P02, 0A000),
CRASH-1 (a FATAL exit 1 is not a crash).
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from orchestrator.localnode import LocalNode
from tests.node import rawclient


def _cancel_later(fn, delay: float = 0.4) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(delay), fn()))
    t.start()
    return t


def test_cancel_request_cancels_pg_sleep(node: LocalNode) -> None:
    """CancelRequest (after an SSLRequest, as libpq's cancel_safe sends it) → SIGINT → 57014."""
    with node.connect() as c:
        t = _cancel_later(c.cancel_safe)
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="canceling statement due to user request"):
            c.execute("SELECT pg_sleep(10)")
        assert time.monotonic() - t0 < 5
        t.join()
        assert c.execute("SELECT 1").fetchone() == (1,)  # the session survives


def test_legacy_cancel_and_wrong_key(node: LocalNode) -> None:
    """A CancelRequest with the wrong key is ignored and logged; the right key cancels."""
    with node.connect() as c:
        pid = c.info.backend_pid
        rawclient.cancel(node.host, node.port, pid, 12345)
        node.wait_for_log(f"wrong key in cancel request for process {pid}")
        t = _cancel_later(c.cancel)
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT pg_sleep(10)")
        t.join()


def test_pg_cancel_and_terminate_backend(node: LocalNode) -> None:
    """pg_cancel_backend → 57014; pg_terminate_backend → FATAL 57P01, exit 1, no crash (CRASH-1)."""
    with node.connect() as admin, node.connect() as victim:
        vpid = victim.info.backend_pid
        t = _cancel_later(lambda: admin.execute("SELECT pg_cancel_backend(%s)", [vpid]))
        with pytest.raises(psycopg.errors.QueryCanceled):
            victim.execute("SELECT pg_sleep(10)")
        t.join()
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", [vpid]).fetchone() == (True,)
        with pytest.raises(psycopg.errors.AdminShutdown, match="terminating connection due to administrator command"):
            victim.execute("SELECT 1")
        ckpt = node.child_pids("checkpointer")[0]
        notices: list[str] = []
        admin.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        assert admin.execute("SELECT pg_terminate_backend(%s)", [ckpt]).fetchone() == (False,)
        assert notices == [f"PID {ckpt} is not a PostgreSQL backend process"]
    assert not node.events("crash")


def test_max_connections_53300(node_factory) -> None:
    """InitProcess: past max_connections a connection gets FATAL 53300."""
    n = node_factory(max_connections=3)
    conns = [n.connect() for _ in range(3)]
    err = rawclient.startup(n.host, n.port).error()
    assert err is not None and (err["S"], err["C"], err["M"]) == ("FATAL", "53300", "sorry, too many clients already")
    with pytest.raises(psycopg.OperationalError, match="sorry, too many clients already"):
        n.connect()
    assert n.pg_isready() == 0  # pg_isready: any SQLSTATE but 57P03 means "accepting"
    conns.pop().close()
    n.poll_until(lambda: n.sql("SELECT 1") == [(1,)], what="a slot frees up")
    for c in conns:
        c.close()


def test_hba_reject_and_unknown_database(node_factory) -> None:
    """pg_hba.conf: no matching rule / reject → 28000 with PostgreSQL's text; unknown db → 3D000."""
    n = node_factory(start=False)
    (n.datadir / "pg_hba.conf").write_text("host all mallory 127.0.0.1/32 reject\n"
                                           "host all postgres 127.0.0.1/32 trust\n")
    n.start()
    err = rawclient.startup(n.host, n.port, user="mallory").error()
    assert err is not None and err["C"] == "28000"
    assert err["M"] == ('pg_hba.conf rejects connection for host "127.0.0.1", user "mallory", database "postgres", '
                        "no encryption")
    err = rawclient.startup(n.host, n.port, user="eve").error()
    assert err is not None and err["M"] == ('no pg_hba.conf entry for host "127.0.0.1", user "eve", database '
                                            '"postgres", no encryption')
    err = rawclient.startup(n.host, n.port, database="nope").error()
    assert err is not None and (err["C"], err["M"]) == ("3D000", 'database "nope" does not exist')


def test_negotiate_protocol_version(node: LocalNode) -> None:
    """A 3.2 StartupMessage gets NegotiateProtocolVersion (3.0) and the session proceeds."""
    r = rawclient.startup(node.host, node.port, minor=2, extra={"_pq_.test": "x"})
    assert r.types.startswith("vR")
    v = r.messages[0][1]
    assert v[:4] == (3 << 16).to_bytes(4, "big") and v[4:8] == (1).to_bytes(4, "big") and b"_pq_.test" in v
    assert r.types.endswith("KZ") and r.types.count("S") == 13


def test_transaction_states_and_errors(node: LocalNode) -> None:
    """ReadyForQuery I/T/E, 25P02 in a failed block, COMMIT of a failed block reports ROLLBACK,
    WARNINGs 25001/25P01, 0A000 for statements outside the supported set, 42601 for syntax."""
    r = node.psql("-c", "BEGIN", "-c", "SELECT 1/0", "-c", "SELECT 1", "-c", "COMMIT")
    assert "division by zero" in r.stderr
    assert "current transaction is aborted, commands ignored until end of transaction block" in r.stderr
    assert "ROLLBACK" in r.stdout
    with node.connect() as c:
        notes: list[tuple[str | None, str]] = []
        c.add_notice_handler(lambda d: notes.append((d.sqlstate, d.message_primary or "")))
        c.execute("COMMIT")
        c.execute("BEGIN")
        c.execute("BEGIN")
        assert c.info.transaction_status.name == "INTRANS"
        c.execute("ROLLBACK")
        assert notes == [("25P01", "there is no transaction in progress"),
                         ("25001", "there is already a transaction in progress")]
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            c.execute("CREATE TABLE t (a int[])")  # arrays: 0A000 naming the construct
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            c.execute("CREATE DATABASE other")  # one database, postgres (DESIGN)
        with pytest.raises(psycopg.errors.SyntaxError):
            c.execute("SELEC 1")
        with pytest.raises(psycopg.errors.UndefinedFunction):
            c.execute("SELECT no_such_function()")
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_extended_protocol_with_binary_params(node: LocalNode) -> None:
    """psycopg's Parse/Bind/Describe/Execute/Sync with binary int parameters, and auto-prepare."""
    with node.connect() as c:
        for i in range(8):  # prepare_threshold=5: the 6th run uses a named statement
            assert c.execute("SELECT %s::int8 + 1 AS n, %s::text AS t", [i, "x"]).fetchone() == (i + 1, "x")
        assert c.execute("SELECT %s AS b", [True]).fetchone() == (True,)


def test_pg_stat_activity_lists_every_process(node: LocalNode) -> None:
    """pg_stat_activity has a row per process of the node, not only client backends."""
    with node.connect(application_name="watcher") as c:
        rows = c.execute("SELECT pid, backend_type, state, application_name, client_addr, backend_start "
                         "FROM pg_stat_activity ORDER BY backend_type").fetchall()
        types = {r[1] for r in rows}
        assert {"checkpointer", "client backend"} <= types
        me = next(r for r in rows if r[0] == c.info.backend_pid)
        assert me[2] == "active" and me[3] == "watcher" and str(me[4]) == "127.0.0.1"
        assert c.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                         ).fetchone() == (1,)


def test_idle_backend_terminated_by_sigterm_gets_57P01(node: LocalNode) -> None:
    """SIG-6: SIGTERM only marks the interrupt; the idle loop raises FATAL 57P01 and exits 1."""
    import os
    import signal

    c = node.connect()
    os.kill(c.info.backend_pid, signal.SIGTERM)
    with pytest.raises(psycopg.errors.AdminShutdown):
        c.execute("SELECT 1")
    c.close()
    assert not node.events("crash")
