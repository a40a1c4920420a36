"""Crash of one client backend inside a node container, seen from outside the container.

Scenario F18 of reference/process-model.md, in Docker: two sessions from the host, SIGKILL one
session's backend inside the container, then

- CRASH-1 — a backend killed by a signal is a crash: the postmaster logs
  `server process (PID n) was terminated by signal 9: Killed`;
- CRASH-4 — the first crash makes the postmaster SIGQUIT every other child ...
- CRASH-6 — ... and a client backend that gets SIGQUIT tells its client
  `terminating connection because of crash of another server process` (SQLSTATE 57P02) before it
  exits: PostgreSQL 15 sends it as a client-only WARNING and closes the socket, so psycopg raises
  OperationalError ("server closed the connection unexpectedly") and the text arrives as a notice;
  the message is required in the error or in a notice;
- CRASH-7 — when no child is left the postmaster reinitialises
  (`all server processes terminated; reinitializing`) and accepts connections again.

Also checks the image itself: the postmaster runs as a non-root user, is the direct child of tini
(PID 1), and the image's HEALTHCHECK (pg_isready) turns `healthy`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

pytestmark = [pytest.mark.docker, pytest.mark.chaos]

READY = "database system is ready to accept connections"
CRASH_MSG = "terminating connection because of crash of another server process"
REINIT_MSG = "all server processes terminated; reinitializing"
DATA_DIR = "/var/lib/pgbed/data"


# --- helpers -----------------------------------------------------------------------------------


def _logs(container: DockerContainer) -> str:
    out, err = container.get_logs()
    return out.decode(errors="replace") + err.decode(errors="replace")


def _tail(container: DockerContainer, n: int = 60) -> str:
    try:
        lines = _logs(container).splitlines()
    except Exception as exc:  # the container may be gone
        return f"<no container log: {exc}>"
    return "\n".join(lines[-n:])


def _connect(container: DockerContainer, **kw: Any) -> psycopg.Connection:
    host = container.get_container_host_ip()
    if host == "localhost":
        host = "127.0.0.1"
    return psycopg.connect(
        host=host,
        port=int(container.get_exposed_port(5432)),
        user="postgres",
        dbname="postgres",
        connect_timeout=5,
        autocommit=True,
        **kw,
    )


def _exec(container: DockerContainer, *cmd: str) -> str:
    code, output = container.get_wrapped_container().exec_run(list(cmd))
    text = output.decode(errors="replace") if output else ""
    assert code == 0, f"`{' '.join(cmd)}` in the container exited {code}: {text}"
    return text


def _wait_for_log(container: DockerContainer, pattern: str, deadline_s: float) -> str:
    """Poll the container log for a regex until the deadline; return the matching line."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + deadline_s
    while True:
        for line in _logs(container).splitlines():
            if rx.search(line):
                return line
        if time.monotonic() >= deadline:
            pytest.fail(
                f"no log line matching {pattern!r} within {deadline_s} s; container log tail:\n{_tail(container)}",
                pytrace=False,
            )
        time.sleep(0.2)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def node(node_image: str, pgbed_labels: dict[str, str]) -> Iterator[DockerContainer]:
    """A fresh node container (random host port for 5432), ready to accept connections."""
    container = (
        DockerContainer(node_image)
        .with_exposed_ports(5432)
        .with_kwargs(labels=dict(pgbed_labels))
        .waiting_for(LogMessageWaitStrategy(READY).with_startup_timeout(60).with_poll_interval(0.2))
    )
    with container:
        yield container


# --- tests -------------------------------------------------------------------------------------


def test_sigkill_backend_crash_restart(node: DockerContainer) -> None:
    """CRASH-1, CRASH-4, CRASH-6, CRASH-7: SIGKILL of one backend restarts the whole node."""
    victim = _connect(node)
    bystander = _connect(node)
    notices: list[tuple[str | None, str | None, str | None]] = []  # severity, sqlstate, message
    # (a Diagnostic is valid only inside the handler: copy its fields out)
    bystander.add_notice_handler(lambda d: notices.append((d.severity, d.sqlstate, d.message_primary)))
    try:
        victim_pid = int(victim.execute("SELECT pg_backend_pid()").fetchone()[0])
        bystander_pid = int(bystander.execute("SELECT pg_backend_pid()").fetchone()[0])
        assert victim_pid != bystander_pid

        _exec(node, "kill", "-9", str(victim_pid))

        # CRASH-1: the death is classified as a crash and logged the way PostgreSQL logs it.
        _wait_for_log(node, rf"server process \(PID {victim_pid}\) was terminated by signal 9: Killed", 20)
        # CRASH-4 + CRASH-7: every other child was told to quit and has exited; reinitialise.
        _wait_for_log(node, re.escape(REINIT_MSG), 20)

        # CRASH-6: the bystander's backend said why before it exited. PostgreSQL 14+ sends it as
        # a client-only WARNING (57P02) and closes the socket, so libpq reports the next query as
        # "server closed the connection unexpectedly" and the text arrives as a notice; a server
        # that sends it as an ErrorResponse instead puts it in the error text. Either is fine.
        with pytest.raises(psycopg.OperationalError) as excinfo:
            bystander.execute("SELECT 1")
        said = [f"{sev} {state}: {msg}" for sev, state, msg in notices]
        error_text = str(excinfo.value)
        assert CRASH_MSG in error_text or any(CRASH_MSG in line for line in said), (
            f"the other session was dropped without {CRASH_MSG!r}: error {error_text!r}, "
            f"notices {said}; container log tail:\n{_tail(node)}"
        )
        for _sev, state, msg in notices:
            if msg and CRASH_MSG in msg:
                assert state == "57P02", said
        assert bystander.closed or bystander.broken, "the other session is still open"
        # The killed session is gone as well.
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
    finally:
        victim.close()
        bystander.close()

    # CRASH-7: after the reinit (crash recovery) the node accepts connections again.
    deadline = time.monotonic() + 30
    last: Exception | None = None
    while True:
        try:
            with _connect(node) as conn:
                new_pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
                assert conn.execute("SELECT 1").fetchone()[0] == 1
            break
        except psycopg.OperationalError as exc:  # 57P03 while recovering, refused while resetting
            last = exc
        if time.monotonic() >= deadline:
            pytest.fail(
                f"no new connection within 30 s of the crash restart (last error: {last}); "
                f"container log tail:\n{_tail(node)}",
                pytrace=False,
            )
        time.sleep(0.2)
    assert new_pid not in (victim_pid, bystander_pid)
    log = _logs(node)
    assert READY in log[log.rindex(REINIT_MSG) :], f"no {READY!r} after the reinit; container log tail:\n{_tail(node)}"


def test_postmaster_non_root_under_tini_and_healthy(node: DockerContainer) -> None:
    """The image runs the postmaster as user pgbed, as tini's child, and its HEALTHCHECK passes."""
    pm_pid = _exec(node, "sh", "-c", f"head -n1 {DATA_DIR}/postmaster.pid").strip()
    assert pm_pid.isdigit(), f"postmaster.pid line 1 is {pm_pid!r}"
    user, uid, ppid = _exec(node, "ps", "-o", "user=,uid=,ppid=", "-p", pm_pid).split()
    assert uid != "0" and user != "root", f"postmaster {pm_pid} runs as {user} (uid {uid})"
    assert user == "pgbed", user
    assert ppid == "1", f"postmaster {pm_pid} has parent {ppid}, expected tini (PID 1)"
    assert _exec(node, "cat", "/proc/1/comm").strip() == "tini"

    wrapped = node.get_wrapped_container()
    wrapped.reload()
    check = wrapped.attrs["Config"].get("Healthcheck") or {}
    assert "pg_isready" in " ".join(check.get("Test", [])), check

    deadline = time.monotonic() + 40
    status = None
    while True:
        wrapped.reload()
        health = wrapped.attrs["State"].get("Health") or {}
        status = health.get("Status")
        if status == "healthy":
            break
        if time.monotonic() >= deadline:
            pytest.fail(
                f"health status is {status!r} 40 s after start; last probes: "
                f"{health.get('Log', [])[-3:]}\ncontainer log tail:\n{_tail(node)}",
                pytrace=False,
            )
        time.sleep(0.5)
