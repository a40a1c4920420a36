"""How a workload client classifies an operation's exception (orchestrator/workload): a failure
to connect is a definite `fail` (nothing was sent), a connection lost mid-statement is `info`
(it may have committed), a server refusal by SQLSTATE is `fail`."""

from __future__ import annotations

import psycopg

from orchestrator.history import FAIL, INFO
from orchestrator.workload import NotConnected, classify


def test_not_connected_is_a_definite_failure() -> None:
    e = NotConnected('connection failed: connection to server at "127.0.0.1", port 1 failed: server closed the '
                     'connection unexpectedly')  # fmt: skip
    assert classify(e)[0] == FAIL


def test_connection_lost_mid_statement_is_unknown() -> None:
    assert classify(psycopg.OperationalError("server closed the connection unexpectedly"))[0] == INFO


def test_refusal_by_sqlstate_is_a_failure() -> None:
    e = psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")
    assert e.sqlstate == "23505"
    assert classify(e) == (FAIL, "23505: duplicate key value violates unique constraint")
    assert classify(psycopg.errors.AdminShutdown("terminating connection"))[0] == INFO
