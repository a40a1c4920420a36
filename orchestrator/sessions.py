"""Client sessions around a crash restart: read what a dying backend sent, and know when a
session's backend is really idle.

What it does: `drain_notices` lets libpq read and dispatch what the server already sent without
sending anything; `wait_until_reading` waits until the given backends wait for a command
(pg_stat_activity.wait_event = 'ClientRead'), on pgbed and PostgreSQL alike.

What it deliberately does not do: open or close connections, or judge what was received — the
scenario that uses them does. It owns no shared state.
"""

from __future__ import annotations

import time
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


def wait_until_reading(conn: psycopg.Connection[Any], pids: list[int], timeout: float = 10.0) -> None:
    """Wait until the backends `pids` wait for a command (wait_event ClientRead), asking over
    `conn`; TimeoutError names what pg_stat_activity showed last.

    A client has its ReadyForQuery while the backend may still be inside the flush that sent it.
    A SIGQUIT in that window finds PostgreSQL 15's channel busy (pq_putmessage returns at once
    while PqCommBusy is set), so quickdie exits without its 57P02 notice: under load the last
    session connected lost it in 2 of 80 runs, and in none of 80 once its backend was seen in
    ClientRead. A scenario that checks the notice waits for this first."""
    among = f"pid IN ({', '.join(str(int(p)) for p in pids)})"  # pgbed has no arrays: no = ANY($1)
    query = f"SELECT count(*) FROM pg_stat_activity WHERE {among} AND wait_event = 'ClientRead'"
    deadline = time.monotonic() + timeout
    while int(conn.execute(query).fetchone()[0]) < len(pids):  # type: ignore[index]
        if time.monotonic() >= deadline:
            rows = conn.execute(f"SELECT pid, state, wait_event FROM pg_stat_activity WHERE {among}").fetchall()
            raise TimeoutError(f"sessions {pids} not all waiting in ClientRead after {timeout:g} s; "
                               f"pg_stat_activity (pid, state, wait_event): {rows}")  # fmt: skip
        time.sleep(0.01)
