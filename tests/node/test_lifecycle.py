"""Start, readiness, the pid file, client admission while starting, and the CLI.

Rules: PM-0, T1, T4, CRASH-10 (interlock), wire-protocol §1 (57P03 before authentication,
ParameterStatus, BackendKeyData), pg_isready's 0/1/2 contract.
Not applicable here (no such process kind in pgbed): the bgwriter, walwriter, archiver,
syslogger and autovacuum parts of T1/T4 and of LaunchMissingBackgroundProcesses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from orchestrator.localnode import LocalNode
from tests.node import rawclient


def test_start_to_ready_and_pidfile_layout(node: LocalNode) -> None:
    """T1, T4: checkpointer then startup process, then RUN; postmaster.pid as PostgreSQL writes it."""
    lines = node.pidfile()
    assert lines is not None
    assert lines[0] == str(node.pid)
    assert lines[1] == str(node.datadir.resolve())
    assert abs(int(lines[2]) - time.time()) < 60
    assert lines[3] == str(node.port)
    assert lines[4] == str(node.sockdir)
    assert lines[5] == "127.0.0.1"
    assert lines[7] == "ready   "
    assert node.log_contains("database system is ready to accept connections")
    states = [(e["old"], e["new"]) for e in node.events("pm_state")]
    assert states[:2] == [("INIT", "STARTUP"), ("STARTUP", "RUN")]
    starts = [e["kind"] for e in node.events("child_start")]
    assert starts[:2] == ["checkpointer", "startup"]
    assert node.sql("SELECT 1") == [(1,)]
    (started,) = node.sql("SELECT pg_postmaster_start_time()")[0]
    assert abs(started.timestamp() - int(lines[2])) < 1.0


def test_parameter_status_and_backend_key(node: LocalNode) -> None:
    """Wire §1: the 13 ParameterStatus values with a 15.x server_version; BackendKeyData has the real pid."""
    with node.connect() as c:
        info = c.info
        assert info.parameter_status("server_version").startswith("15.")
        assert c.info.server_version // 10000 == 15
        for name in ("application_name", "client_encoding", "DateStyle", "default_transaction_read_only",
                     "in_hot_standby", "integer_datetimes", "IntervalStyle", "is_superuser", "server_encoding",
                     "server_version", "session_authorization", "standard_conforming_strings", "TimeZone"):
            assert info.parameter_status(name) is not None, name
        assert info.parameter_status("in_hot_standby") == "off"
        assert info.backend_pid == c.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert info.backend_pid in node.children()


def test_psql_and_unix_socket(node: LocalNode) -> None:
    """psql over TCP and over the Unix socket in unix_socket_directories."""
    r = node.psql("-Atc", "SELECT 41 + 1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42"
    r = subprocess.run(["psql", "-X", "-h", str(node.sockdir), "-p", str(node.port), "-U", "postgres",
                        "-d", "postgres", "-Atc", "SELECT pg_is_in_recovery()"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "f"


def test_process_titles_show_roles(node: LocalNode) -> None:
    """setproctitle: `ps` shows each child's role in PostgreSQL's style."""
    with node.connect(application_name="t") as c:
        pid = c.info.backend_pid
        titles = node.children()
        assert any(t.startswith("pgbed: checkpointer") for t in titles.values()), titles
        assert titles[pid].startswith("pgbed: postgres postgres 127.0.0.1(")
        assert titles[pid].endswith("idle")


def test_57P03_while_starting_and_pg_isready_1(node_factory) -> None:
    """Wire §1 / PM canAcceptConnections: while STARTUP, connections get 57P03 before any
    authentication (a dead-end child), and pg_isready exits 1; after detaching the hook it is 0."""
    n = node_factory(start=False, injection_points="'startup-start:wait'")
    n.start(wait=False)
    n.wait_for_log("listening on IPv4")
    n.poll_until(lambda: n.pidfile_status() == "starting", what="pidfile says starting")
    r = rawclient.startup(n.host, n.port, ssl_first=True)
    assert r.messages[0] == ("ssl", b"N")
    assert r.types == "sslE"  # the error comes before any Authentication message
    err = r.error()
    assert err is not None
    assert (err["S"], err["V"], err["C"], err["M"]) == ("FATAL", "FATAL", "57P03", "the database system is starting up")
    with pytest.raises(psycopg.OperationalError, match="the database system is starting up"):
        n.connect()
    assert n.pg_isready() == 1
    assert any(e.get("kind") == "dead-end client backend" for e in n.events("child_start"))
    # Releasing the hook by reload: the postmaster rewrites the setting table.
    with open(n.datadir / "postgresql.conf", "a") as f:
        f.write("injection_points = ''\n")
    n.reload()
    n.wait_ready()
    assert n.pg_isready() == 0


def test_pg_isready_2_when_nothing_listens(node: LocalNode) -> None:
    """pg_isready: 0 when ready, 2 when no server answers."""
    assert node.pg_isready() == 0
    node.stop("fast")
    assert node.pg_isready() == 2


def test_cli_start_status_stop(tmp_path) -> None:
    """pgbed start --background / status / reload / stop, as pg_ctl."""
    n = LocalNode(tmp_path, "cli")
    n.init()
    dd = str(n.datadir)
    try:
        r = subprocess.run([sys.executable, "-m", "node", "start", "-D", dd, "-l", str(n.logfile), "--background"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "server started" in r.stdout
        r = subprocess.run([sys.executable, "-m", "node", "status", "-D", dd], capture_output=True, text=True)
        assert r.returncode == 0 and "server is running" in r.stdout
        assert n.sql("SELECT 1") == [(1,)]
        r = subprocess.run([sys.executable, "-m", "node", "reload", "-D", dd], capture_output=True, text=True)
        assert r.returncode == 0 and "server signaled" in r.stdout
        r = subprocess.run([sys.executable, "-m", "node", "stop", "-D", dd, "-m", "fast"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "server stopped" in r.stdout, r.stdout + r.stderr
        r = subprocess.run([sys.executable, "-m", "node", "status", "-D", dd], capture_output=True, text=True)
        assert r.returncode == 3
    finally:
        n_pids = n.orphans()
        for p in n_pids:
            os.kill(p, signal.SIGKILL)


def test_initdb_contents_and_controldata(tmp_path) -> None:
    """initdb: PG_VERSION, a postgresql.conf listing settings with defaults, pg_hba.conf, pg_control."""
    dd = tmp_path / "d"
    r = subprocess.run([sys.executable, "-m", "node", "initdb", "-D", str(dd)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (dd / "PG_VERSION").read_text().strip() == "15"
    conf = (dd / "postgresql.conf").read_text()
    for line in ("#port = 5432", "#max_connections = 100", "#restart_after_crash = on",
                 "#shared_preload_libraries = ''", "#log_min_messages = warning"):
        assert line in conf, line
    assert "trust" in (dd / "pg_hba.conf").read_text()
    assert (dd / "pg_wal").is_dir()
    r = subprocess.run([sys.executable, "-m", "node", "controldata", "-D", str(dd)], capture_output=True, text=True)
    assert "Database cluster state:               shut down" in r.stdout
    sysid = int(r.stdout.split("Database system identifier:")[1].split()[0])
    assert sysid > 2**32
    r2 = subprocess.run([sys.executable, "-m", "node", "initdb", "-D", str(dd)], capture_output=True, text=True)
    assert r2.returncode == 1 and "is not empty" in r2.stderr


def test_second_postmaster_refused_by_lock_file(node: LocalNode, tmp_path) -> None:
    """CreateLockFile: a live postmaster's postmaster.pid makes a second start fail."""
    other = LocalNode(tmp_path, "x")
    other.datadir = node.datadir
    other.logfile = tmp_path / "second.log"
    other.port = node.port
    other.start(expect_fail=True)
    assert other.exit_code == 1
    assert 'lock file "postmaster.pid" already exists' in other.log_content()
    assert f"Is another postmaster (PID {node.pid}) running" in other.log_content()
    assert node.sql("SELECT 1") == [(1,)]


def test_interlock_refuses_while_old_children_live(node: LocalNode) -> None:
    """DESIGN interlock: after the postmaster is SIGKILLed, a start is refused while a child of the
    old incarnation still lives (here one frozen by SIGSTOP), and allowed once it is gone."""
    ckpt = node.child_pids("checkpointer")[0]
    os.kill(ckpt, signal.SIGSTOP)
    try:
        node.kill9()
        node.start(expect_fail=True)
        assert node.exit_code == 1
        assert "pre-existing shared memory block is still in use" in node.log_content()
    finally:
        os.kill(ckpt, signal.SIGCONT)
    node.poll_until(lambda: not node.orphans(), timeout=10, what="old children gone")
    node.start()
    assert node.sql("SELECT 1") == [(1,)]


def test_tcp_port_taken_is_fatal(node_factory) -> None:
    """StreamServerPort: with listen_addresses set and no TCP socket created, the postmaster
    refuses to start (`could not create any TCP/IP sockets`), even though the Unix socket works."""
    import socket

    n = node_factory(start=False)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", n.port))
    squatter.listen(1)
    try:
        n.start(expect_fail=True)
    finally:
        squatter.close()
    assert n.exit_code == 1
    assert n.log_contains(r'could not bind IPv4 address "127.0.0.1": Address already in use')
    assert n.log_contains("FATAL:  could not create any TCP/IP sockets")
