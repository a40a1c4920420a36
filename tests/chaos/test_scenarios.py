"""Backend-agnostic fault scenarios: each runs on local processes and in a container
(`--backend=auto|local|docker`, default both), and on a real PostgreSQL 15 node as local
processes (the `postgres` variant, marked `differential`).

F18 — three sessions, SIGKILL one backend (CRASH-1, CRASH-4, CRASH-6, CRASH-7): the postmaster
logs `server process (PID n) was terminated by signal 9: Killed`, SIGQUITs every other child,
the other sessions are told `terminating connection because of crash of another server process`
(57P02; PostgreSQL 15 sends it as a client-only WARNING and closes the socket, so it arrives as
a notice and the next query fails), the node reinitialises and accepts connections again.
"""

from __future__ import annotations

import re
import time
from typing import Any

import psycopg
import pytest

from orchestrator.sessions import drain_notices, wait_until_reading

pytestmark = [pytest.mark.chaos]

CRASH_MSG = "terminating connection because of crash of another server process"
REINIT_MSG = "all server processes terminated; reinitializing"
READY = "database system is ready to accept connections"




def _wait_for_log(node: Any, pattern: str, timeout: float = 20.0) -> None:
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while not rx.search(node.log()):
        if time.monotonic() >= deadline:
            tail = "\n".join(node.log().splitlines()[-40:])
            pytest.fail(f"[{node.backend}] no log line matching {pattern!r} within {timeout} s; log tail:\n{tail}",
                        pytrace=False)  # fmt: skip
        time.sleep(0.05)


def test_f18_sigkill_backend_crash_restart(scenario_node: Any) -> None:
    """F18 / CRASH-1, CRASH-4, CRASH-6, CRASH-7 on the selected backend."""
    node = scenario_node
    victim, a, b = node.connect(), node.connect(), node.connect()
    notices: dict[int, list[tuple[str | None, str | None]]] = {}
    for conn in (a, b):
        seen = notices.setdefault(id(conn), [])
        conn.add_notice_handler(lambda d, seen=seen: seen.append((d.sqlstate, d.message_primary)))
    try:
        pid = int(victim.execute("SELECT pg_backend_pid()").fetchone()[0])
        try:  # else PostgreSQL may drop the notice (orchestrator/sessions.py)
            wait_until_reading(victim, [a.info.backend_pid, b.info.backend_pid])
        except TimeoutError as exc:
            pytest.fail(f"[{node.backend}] {exc}", pytrace=False)
        node.kill(pid, "SIGKILL")
        _wait_for_log(node, rf"server process \(PID {pid}\) was terminated by signal 9: Killed")
        _wait_for_log(node, re.escape("terminating any other active server processes"))
        _wait_for_log(node, re.escape(REINIT_MSG))
        for conn in (a, b):
            deadline = time.monotonic() + 5
            while ("57P02", CRASH_MSG) not in notices[id(conn)] and time.monotonic() < deadline:
                drain_notices(conn)
                time.sleep(0.05)
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
            assert ("57P02", CRASH_MSG) in notices[id(conn)], notices[id(conn)]
    finally:
        for conn in (victim, a, b):
            conn.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            with node.connect() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            break
        except psycopg.OperationalError as exc:  # 57P03 while crash recovery runs
            if time.monotonic() >= deadline:
                pytest.fail(f"[{node.backend}] no connection within 30 s of the reinit: {exc}", pytrace=False)
            time.sleep(0.05)
    log = node.log()
    assert READY in log[log.rindex(REINIT_MSG) :]
