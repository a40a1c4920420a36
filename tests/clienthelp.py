"""Client-side helpers shared by node and chaos tests."""

from __future__ import annotations

from typing import Any

import psycopg


def drain_notices(conn: psycopg.Connection[Any]) -> None:
    """Let libpq read and dispatch what the server already sent (a quickdie WARNING) without
    sending anything: a query sent to a backend that has exited draws a TCP reset, and Linux
    then discards unread data, so the notice would race with the reset."""
    for step in (conn.pgconn.consume_input, conn.pgconn.is_busy):
        try:
            step()
        except psycopg.OperationalError:
            pass


def pid_alive(pid: int) -> bool:
    """Whether a process exists (signal 0); a recycled pid would count, which tests accept."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
