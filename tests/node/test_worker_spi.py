"""worker_spi on real postmasters (reference §8).

Rules: SPI-1 (settings), SPI-2 (static workers when preloaded), SPI-3 (initialisation: schema,
table, partial unique index, log line), SPI-4 (each iteration: deltas folded into the total,
`count ... is now V`), SPI-5 / F35 (SIGHUP wakes at once; a new naptime applies), SPI-6 / F36
(pg_terminate_backend: FATAL with the type, exit 1, not relaunched), SPI-7 / F38 (pg_stat_activity:
backend_type, datname, state, query, query_start advancing per naptime), SPI-8 (worker_spi_launch:
STRICT, the pid, NULL without a slot, flag errors, connection by OID with ROLELOGINCHECK; F37:
blocks on a hot standby until promotion), F39 / SIG-3 / P-2,3 (a SIGHUP between the flag checks
and the sleep is not slept through: the handler sets the latch, and every signal also writes
the latch's wakeup pipe).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psycopg
import pytest

from orchestrator.localnode import LocalNode


def _spi_node(node_factory, **settings) -> LocalNode:
    conf = {"shared_preload_libraries": "'worker_spi'", "worker_spi__naptime": "1",
            "worker_spi__total_workers": "1", **settings}  # fmt: skip
    n = node_factory(**conf)
    n.wait_for_log("worker_spi worker 1 initialized with schema1.counted")
    # The log line comes first (SPI-3), then the transaction that creates the table.
    n.poll_until(lambda: n.sql("SELECT count(*) FROM schema1.counted") is not None, what="schema1.counted created")
    return n


def test_static_worker_counts_and_reports(node_factory) -> None:
    """SPI-1/2/3/4/7: the static worker creates schema1.counted with its constraints, folds the
    deltas into the total every naptime, and shows in pg_stat_activity."""
    n = _spi_node(node_factory)
    n.poll_until(lambda: n.sql("SELECT count(*) FROM schema1.counted") == [(0,)], what="table created")
    with pytest.raises(psycopg.errors.CheckViolation):
        n.sql("INSERT INTO schema1.counted VALUES ('bogus', 1)")
    n.sql("INSERT INTO schema1.counted VALUES ('total', 1)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        n.sql("INSERT INTO schema1.counted VALUES ('total', 2)")  # the partial unique index
    n.sql("INSERT INTO schema1.counted VALUES ('delta', 2), ('delta', 3)")
    n.wait_for_log("worker_spi worker 1: count in schema1.counted is now 6")
    assert n.sql("SELECT type, value FROM schema1.counted") == [("total", 6)]
    rows = n.sql("SELECT backend_type, datname, usename, query FROM pg_stat_activity WHERE backend_type = 'worker_spi'")
    assert rows and rows[0][:3] == ("worker_spi", "postgres", "postgres")
    assert "DELETE FROM schema1.counted WHERE type = 'delta'" in rows[0][3]
    assert n.sql("SHOW worker_spi.naptime") == [("1s",)]
    assert n.sql("SHOW worker_spi.total_workers") == [("1",)]


def test_query_start_advances_and_state_alternates(node_factory) -> None:
    """F38 / SPI-7: polled every 0.25 s, query_start advances about once per naptime and the
    state is idle between iterations (active while one runs)."""
    n = _spi_node(node_factory)
    starts, states = set(), set()
    t_end = time.monotonic() + 3.2
    while time.monotonic() < t_end:
        r = n.sql("SELECT query_start, state FROM pg_stat_activity WHERE backend_type = 'worker_spi'")
        if r and r[0][0] is not None:
            starts.add(r[0][0])
            states.add(r[0][1])
        time.sleep(0.25)
    assert 2 <= len(starts) <= 5, sorted(starts)
    assert "idle" in states


def test_sighup_wakes_at_once_and_new_naptime(node_factory) -> None:
    """F35 / SPI-5: with naptime 10, a reload that sets naptime 1 runs an extra iteration at once,
    then one per second."""
    n = _spi_node(node_factory, worker_spi__naptime="10")
    n.sql("INSERT INTO schema1.counted VALUES ('total', 0)")
    off = n.log_offset()
    n.append_conf(worker_spi__naptime="1")
    t0 = time.time()
    n.reload()
    n.wait_for_log("count in schema1.counted is now 0", offset=off, timeout=5)
    first = time.time() - t0
    assert first < 2.0, first
    n.poll_until(lambda: n.log_content()[off:].count("count in schema1.counted is now") >= 3, timeout=5,
                 what="one iteration per second")  # fmt: skip


def test_sighup_between_flag_check_and_wait_wakes_at_once(node_factory) -> None:
    """F39 / SIG-3 / P-2,3: with naptime 10 the worker is held by the `bgworker-before-wait`
    injection point (sleep 1.5 s) in the window after its flag checks and before its sleep; a
    SIGHUP sent to it there sets the latch, so the wait returns at once and the next iteration
    runs when the hold ends — not 10 s later."""
    n = _spi_node(node_factory, worker_spi__naptime="10")
    n.sql("INSERT INTO schema1.counted VALUES ('total', 0)")
    pid = n.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'worker_spi'")[0][0]
    n.sql("SELECT pgbed_injection_attach('bgworker-before-wait', 'sleep', '1500')")
    off = n.log_offset()
    fired_before = len([e for e in n.events("injection_fired") if e.get("pid") == pid])
    os.kill(pid, signal.SIGHUP)  # SPI-5: an iteration at once, which then enters the window
    n.wait_for_log("count in schema1.counted is now 0", offset=off, timeout=5)
    n.poll_until(lambda: len([e for e in n.events("injection_fired") if e.get("pid") == pid]) > fired_before,
                 timeout=5, what="the worker inside the window")  # fmt: skip
    n.sql("SELECT pgbed_injection_detach('bgworker-before-wait')")
    off2 = n.log_offset()
    t0 = time.time()
    os.kill(pid, signal.SIGHUP)  # inside the window: the flag check for this loop pass is behind it
    n.wait_for_log("count in schema1.counted is now 0", offset=off2, timeout=8)
    assert time.time() - t0 < 5.0, "the SIGHUP was slept through"


def test_terminate_is_fatal_and_not_relaunched(node_factory) -> None:
    """F36 / SPI-6 / BGW-10: pg_terminate_backend on the worker: FATAL `terminating background
    worker "worker_spi" due to administrator command`, `... exited with exit code 1`, never
    relaunched (NEVER_RESTART)."""
    n = _spi_node(node_factory)
    pid = n.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'worker_spi'")[0][0]
    assert n.sql("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    n.wait_for_log('terminating background worker "worker_spi" due to administrator command')
    n.wait_for_log(f'background worker "worker_spi" \\(PID {pid}\\) exited with exit code 1')
    time.sleep(1.5)
    assert n.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'worker_spi'") == [(0,)]


def test_worker_spi_launch(node_factory) -> None:
    """SPI-8: CREATE EXTENSION worker_spi; worker_spi_launch returns the dynamic worker's pid
    (type `worker_spi dynamic`), NULL for a NULL argument (STRICT) or when no slot is free; the
    flag checks' errors."""
    n = _spi_node(node_factory, max_worker_processes=2)
    with pytest.raises(psycopg.errors.UndefinedFunction):
        n.sql("SELECT worker_spi_launch(2)")
    n.sql("CREATE EXTENSION worker_spi")
    pid = n.sql("SELECT worker_spi_launch(2)")[0][0]
    assert isinstance(pid, int) and pid > 0
    n.wait_for_log("worker_spi dynamic worker 2 initialized with schema2.counted")
    assert n.sql("SELECT backend_type FROM pg_stat_activity WHERE pid = %s", (pid,)) == [("worker_spi dynamic",)]
    assert n.sql("SELECT worker_spi_launch(NULL)") == [(None,)]
    assert n.sql("SELECT worker_spi_launch(3)") == [(None,)]  # no slot left (2 of 2 used)
    for flags, msg in (("{BOGUS}", "incorrect flag value found in array"),
                       ("{{ALLOWCONN}}", "flags array must be one-dimensional")):  # fmt: skip
        with pytest.raises(psycopg.Error) as ei:
            n.sql("SELECT worker_spi_launch(4, 0, 0, %s)", (flags,))
        assert msg in str(ei.value)


def test_launch_connects_by_oid_and_rolelogincheck(node_factory) -> None:
    """SPI-8 connection flags: the dynamic worker connects by database and role OID with the
    flags as BGWORKER_BYPASS_* bits. A NOLOGIN role is refused with FATAL `role "r" is not
    permitted to log in` (InitializeSessionUserId) unless ROLELOGINCHECK is given; a role OID
    that does not exist is the worker's FATAL, not the caller's ERROR; worker_spi.role supplies
    the role when roleoid is 0."""
    n = _spi_node(node_factory, max_worker_processes=6)
    n.sql("CREATE EXTENSION worker_spi")
    n.sql("CREATE ROLE spi_nologin NOLOGIN")
    oid = n.sql("SELECT oid FROM pg_roles WHERE rolname = 'spi_nologin'")[0][0]
    off = n.log_offset()
    pid = n.sql("SELECT worker_spi_launch(7, 0, %s)", (oid,))[0][0]
    n.wait_for_log('role "spi_nologin" is not permitted to log in', offset=off)
    n.wait_for_log(f'background worker "worker_spi dynamic" \\(PID {pid}\\) exited with exit code 1', offset=off)
    assert "worker_spi dynamic worker 7 initialized" not in n.log_content()[off:]
    pid = n.sql("SELECT worker_spi_launch(8, 0, %s, '{ROLELOGINCHECK}')", (oid,))[0][0]
    n.wait_for_log("worker_spi dynamic worker 8 initialized with schema8.counted", offset=off)
    assert n.sql("SELECT usename FROM pg_stat_activity WHERE pid = %s", (pid,)) == [("spi_nologin",)]
    pid = n.sql("SELECT worker_spi_launch(9, 0, 99999)")[0][0]
    n.wait_for_log("role with OID 99999 does not exist", offset=off)
    n.sql("ALTER SYSTEM SET worker_spi.role = 'spi_nologin'")
    n.reload()
    n.poll_until(lambda: n.sql("SHOW worker_spi.role") == [("spi_nologin",)], what="worker_spi.role reloaded")
    pid = n.sql("SELECT worker_spi_launch(10, 0, 0, '{ROLELOGINCHECK}')")[0][0]
    n.wait_for_log("worker_spi dynamic worker 10 initialized with schema10.counted", offset=off)
    assert n.sql("SELECT usename FROM pg_stat_activity WHERE pid = %s", (pid,)) == [("spi_nologin",)]


def test_launch_blocks_on_hot_standby_until_promotion(node_factory, standby_factory) -> None:
    """F37 / SPI-8 / BGW-13: on a hot standby worker_spi_launch blocks (RecoveryFinished); a
    cancel (here statement_timeout: 57014 as for a cancel request) keeps the registration, whose
    worker starts at promotion; a second call blocks until the promotion and returns the pid."""
    p = node_factory("primary", shared_preload_libraries="'worker_spi'", worker_spi__total_workers="1")
    p.sql("CREATE EXTENSION worker_spi")
    s = standby_factory(p, "standby1", shared_preload_libraries="'worker_spi'", worker_spi__total_workers="1")
    p.wait_for_catchup(s, "replay")
    with s.connect(autocommit=True) as c:
        c.execute("SET statement_timeout = '1s'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT worker_spi_launch(5)")
    kept = "SELECT count(*) FROM pg_stat_bgworker WHERE name = 'worker_spi dynamic worker 5' AND in_use"
    assert s.sql(kept) == [(1,)]
    result: list[object] = []

    def launcher() -> None:
        with s.connect(autocommit=True) as c2:
            result.append(c2.execute("SELECT worker_spi_launch(6)").fetchone()[0])

    t = threading.Thread(target=launcher)
    t.start()
    time.sleep(0.5)
    assert not result
    assert s.sql("SELECT pg_promote()") == [(True,)]
    t.join(30)
    assert result and isinstance(result[0], int)
    s.wait_for_log("worker_spi dynamic worker 5 initialized with schema5.counted")
    s.wait_for_log("worker_spi dynamic worker 6 initialized with schema6.counted")
    os.kill(int(result[0]), signal.SIGTERM)
