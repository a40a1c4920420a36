"""Background workers on real postmasters, driven through the pgbed_test SQL API and watched
through pg_stat_bgworker, pg_stat_activity and the jsonlog.

Rules: BGW-1/2 (static registration, `too many background workers`: F08), BGW-4/5/6 (dynamic
registration and adoption, notify pid), BGW-7 (restart time from the reap: F02), BGW-8 (fork
failure: F06), BGW-9/12/13 (STARTED means forked; waits), BGW-10 (exit 0 unregisters: F01; exit
1 with NEVER_RESTART unregisters), BGW-14 (terminate, also before start), BGW-16 (shutdown),
BGW-17 (crash reinit: NEVER_RESTART forgotten, the rest relaunched), BGW-18 (default signal
behaviour), BGW-19 (max_worker_processes bounds static + dynamic), PM-0 (a burst of 50
registrations does not starve connections), F07 (150 registrations with max_worker_processes
200 all start, without sleeping between launch passes).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psycopg
import pytest

from orchestrator.localnode import LocalNode
from tests.clienthelp import pid_alive


def _node(node_factory, static: str = "", **settings) -> LocalNode:
    conf = {"shared_preload_libraries": "'pgbed_test'", **settings}
    if static:
        conf["pgbed_test__static_workers"] = f"'{static}'"
    n = node_factory(**conf)
    n.sql("CREATE EXTENSION pgbed_test")
    return n


def _register(c: psycopg.Connection, name: str, start: str = "postmaster_start", restart: int = -1,
              behaviour: str = "run") -> tuple[int, int] | None:  # fmt: skip
    rows = c.execute("SELECT * FROM pgbed_test_register(%s, %s, %s, '{shmem}', %s)",
                     (name, start, restart, behaviour)).fetchall()  # fmt: skip
    return rows[0] if rows else None


def _slot(n: LocalNode, name: str) -> dict:
    cols = ["slot", "generation", "in_use", "status", "pid", "starts", "crashes", "last_exit_code", "notify_pid"]
    rows = n.sql(f"SELECT {', '.join(cols)} FROM pg_stat_bgworker WHERE name = %s AND in_use", (name,))
    return dict(zip(cols, rows[0], strict=True)) if rows else {}


def _events(n: LocalNode, event: str, name: str) -> list[dict]:
    return [e for e in n.events(event) if e.get("name") == name]


def test_static_workers_and_too_many(node_factory) -> None:
    """BGW-1/2/19, F08: preloaded static workers start at their start time; one more than
    max_worker_processes is rejected with `too many background workers`, the server runs and
    the extra worker never starts; pg_stat_activity shows workers with their type."""
    n = _node(node_factory, "a:postmaster_start:-1:run;b:recovery_finished:-1:run;c:postmaster_start:-1:run",
              max_worker_processes=2)  # fmt: skip
    assert n.log_contains("too many background workers")
    assert n.log_contains("Up to 2 background workers can be registered with the current settings.")
    n.poll_until(lambda: _slot(n, "a").get("status") == "started" and _slot(n, "b").get("status") == "started",
                 what="static workers running")  # fmt: skip
    assert not _slot(n, "c") and not _events(n, "bgw_start", "c")
    pids = {_slot(n, "a")["pid"], _slot(n, "b")["pid"]}
    rows = n.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgbed_test'")
    assert {r[0] for r in rows} == pids
    with n.connect(autocommit=True) as c:  # static + dynamic share max_worker_processes
        assert _register(c, "d") is None


def test_dynamic_worker_lifecycle_and_handles(node_factory) -> None:
    """BGW-4/6/9/12/13/14: register → (slot, generation); wait_startup → started with the pid,
    notify pid = the registering backend; terminate → FATAL `terminating background worker
    "pgbed_test" due to administrator command`, exit 1, unregistered; the old handle reads STOPPED."""
    n = _node(node_factory)
    with n.connect(autocommit=True) as c:
        h = _register(c, "dyn")
        assert h is not None
        slot, gen = h
        status, pid = c.execute("SELECT * FROM pgbed_test_wait_startup(%s, %s)", h).fetchone()
        assert status == "started" and pid
        assert _slot(n, "dyn")["notify_pid"] == c.info.backend_pid
        assert c.execute("SELECT * FROM pgbed_test_status(%s, %s)", h).fetchone() == ("started", pid)
        c.execute("SELECT pgbed_test_terminate(%s, %s)", h)
        assert c.execute("SELECT * FROM pgbed_test_wait_shutdown(%s, %s)", h).fetchone() == ("stopped", None)
    n.wait_for_log(f'background worker "pgbed_test" \\(PID {pid}\\) exited with exit code 1')
    assert n.log_contains('terminating background worker "pgbed_test" due to administrator command')
    n.poll_until(lambda: not _slot(n, "dyn"), what="slot freed")
    assert [e["reason"] for e in _events(n, "bgw_forget", "dyn")] == ["exited 1, never restart"]
    with n.connect(autocommit=True) as c:
        h2 = _register(c, "dyn2", behaviour="sleep:60000")
        assert h2 is not None and h2[0] == slot and h2[1] == gen + 1  # the freed slot, next generation
        assert c.execute("SELECT * FROM pgbed_test_status(%s, %s)", h).fetchone() == ("stopped", None)


def test_exit_0_unregisters_exit_1_restarts_after_restart_time(node_factory) -> None:
    """F01 / BGW-10: exit 0 unregisters even with a restart time (the waiter sees STOPPED, the
    worker is never relaunched). F02 / BGW-7: exit 1 with restart 2 is relaunched with a new pid
    no sooner than 2 s after the reap, STOPPED meanwhile, no cluster restart."""
    n = _node(node_factory)
    with n.connect(autocommit=True) as c:
        h0 = _register(c, "zero", restart=5, behaviour="exit:0")
        assert c.execute("SELECT * FROM pgbed_test_wait_shutdown(%s, %s)", h0).fetchone()[0] == "stopped"
        assert _register(c, "one", restart=2, behaviour="exit:1") is not None
    n.poll_until(lambda: not _slot(n, "zero"), what="exit 0 unregistered")
    assert len(_events(n, "bgw_start", "zero")) == 1
    n.poll_until(lambda: len(_events(n, "bgw_start", "one")) >= 2, timeout=10, what="relaunch")
    exit_ts = _events(n, "bgw_exit", "one")[0]["ts"]
    first, second = _events(n, "bgw_start", "one")[:2]
    assert second["pid"] != first["pid"]
    assert second["ts"] - exit_ts >= 2.0 - 0.05, second["ts"] - exit_ts
    assert not n.log_contains("terminating any other active server processes")
    time.sleep(0.3)
    assert len(_events(n, "bgw_start", "zero")) == 1


def test_fork_failure_is_bgw8(node_factory) -> None:
    """F06 / BGW-8: a fork failure (fault hook) is logged `could not fork background worker
    process`, counts as a crash; a NEVER_RESTART worker is then forgotten and its waiter sees
    STOPPED."""
    n = _node(node_factory)
    n.sql("SELECT pgbed_injection_attach('postmaster-fork-bgworker', 'fail')")
    with n.connect(autocommit=True) as c:
        h = _register(c, "nofork")
        assert c.execute("SELECT * FROM pgbed_test_wait_startup(%s, %s)", h).fetchone() == ("stopped", None)
    assert n.log_contains("could not fork background worker process")
    n.poll_until(lambda: not _slot(n, "nofork"), what="forgotten")
    n.sql("SELECT pgbed_injection_detach('postmaster-fork-bgworker')")


def test_default_signal_behaviour(node_factory) -> None:
    """BGW-18: SIGHUP is ignored by a worker without a handler; SIGTERM is FATAL and exit 1;
    SIGQUIT is _exit(2), a crash: the cluster reinitialises (CRASH-1)."""
    n = _node(node_factory)
    with n.connect(autocommit=True) as c:
        h = _register(c, "sig", restart=1)
        pid = c.execute("SELECT * FROM pgbed_test_wait_startup(%s, %s)", h).fetchone()[1]
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.3)
    assert _slot(n, "sig")["pid"] == pid
    os.kill(pid, signal.SIGTERM)
    n.wait_for_log(f'background worker "pgbed_test" \\(PID {pid}\\) exited with exit code 1')
    new = n.poll_until(lambda: (_slot(n, "sig").get("pid") or 0) not in (0, pid) and _slot(n, "sig")["pid"],
                       timeout=10, what="restart after SIGTERM")  # fmt: skip
    os.kill(new, signal.SIGQUIT)
    n.wait_for_log("all server processes terminated; reinitializing")


def test_crash_reinit_bgw17(node_factory) -> None:
    """BGW-17: a crashing worker makes the whole cluster restart; at reinit the NEVER_RESTART
    entries (the crasher included) are forgotten and the restartable ones relaunched."""
    n = _node(node_factory, "keep:postmaster_start:1:run;once:postmaster_start:-1:run")
    n.poll_until(lambda: _slot(n, "keep").get("status") == "started", what="keep running")
    with n.connect(autocommit=True) as c:
        _register(c, "crasher", behaviour="crash")
    m = n.wait_for_log("all server processes terminated; reinitializing")
    n.wait_for_log("database system is ready to accept connections", offset=m.end())
    n.poll_until(lambda: _slot(n, "keep").get("status") == "started", timeout=10, what="keep relaunched")
    assert not _slot(n, "once") and not _slot(n, "crasher")
    reasons = {e["name"]: e["reason"] for e in n.events("bgw_forget")}
    assert reasons.get("once") == "crash reinit, never restart"


def test_shutdown_stops_workers_and_forgets_unstarted(node_factory) -> None:
    """BGW-16 / SHUT-4: at fast shutdown running workers get SIGTERM and an unstarted worker with
    a waiter is forgotten (its waiter is told); the server exits 0."""
    n = _node(node_factory, "svc:postmaster_start:-1:run")
    n.poll_until(lambda: _slot(n, "svc").get("status") == "started", what="svc running")
    pid = _slot(n, "svc")["pid"]
    assert n.stop("fast") == 0
    exits = [e for e in n.events("bgw_exit") if e["pid"] == pid]
    assert exits and exits[0]["exit_code"] == 1


def test_burst_of_registrations_does_not_starve_connections(node_factory) -> None:
    """PM-0 / BGW-7: while 50 registrations are being launched, a new connection is accepted and
    answered before the burst has finished launching."""
    n = _node(node_factory, max_worker_processes=60)
    n.sql("SELECT pgbed_injection_attach('postmaster-fork-bgworker', 'sleep', '40')")
    with n.connect(autocommit=True) as c:
        for i in range(50):
            assert _register(c, f"b{i}", behaviour="run") is not None
    answered: list[float] = []

    def probe() -> None:
        with n.connect() as pc:
            pc.execute("SELECT 1").fetchone()
        answered.append(time.time())

    t = threading.Thread(target=probe)
    t.start()
    t.join(30)
    n.poll_until(lambda: len(n.events("bgw_start")) >= 50, timeout=30, what="all 50 started")
    last_start = max(e["ts"] for e in n.events("bgw_start"))
    assert answered and answered[0] < last_start, (answered, last_start)
    n.sql("SELECT pgbed_injection_detach('postmaster-fork-bgworker')")


def test_150_registrations_all_start_without_long_sleeps(node_factory) -> None:
    """F07 / BGW-7: max_worker_processes=200 and 150 registrations at once: all start, in
    passes of at most MAX_PER_PASS forks (node/bgwlist.py; unit-tested in test_bgwlist.py)
    with no sleep between passes while more are due, so the whole burst is running within
    seconds, far from the 60 s a sleeping postmaster would need."""
    n = _node(node_factory, max_worker_processes=200)
    with n.connect(autocommit=True) as c:
        for i in range(150):
            assert _register(c, f"f07_{i}", behaviour="run") is not None
    t_registered = time.time()
    n.poll_until(lambda: n.sql("SELECT count(*) FROM pg_stat_bgworker WHERE status = 'started'") == [(150,)],
                 timeout=60, what="150 workers started")  # fmt: skip
    starts = [e for e in n.events("bgw_start") if str(e.get("name", "")).startswith("f07_")]
    assert len(starts) == 150 and len({e["pid"] for e in starts}) == 150
    assert max(e["ts"] for e in starts) - t_registered < 30
    rows = n.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgbed_test'")
    assert rows == [(150,)]


def test_exit_without_detach_is_a_crash(node_factory) -> None:
    """BGW-11 / CRASH-3: a worker that exits 0 without detaching cleanly (`_exit:0`, no exit
    callbacks) still counts as a crash: the cluster reinitialises."""
    n = _node(node_factory)
    with n.connect(autocommit=True) as c:
        _register(c, "rude", behaviour="_exit:0")
    n.wait_for_log("all server processes terminated; reinitializing")
    assert [e["action"] for e in _events(n, "bgw_exit", "rude")] == ["crash"]


def test_concurrent_registrations_all_adopted(node_factory) -> None:
    """F40 / BGW-6 / SIG-5: two backends registering at the same moment send coalescing SIGUSR1s;
    every registration is still adopted and started."""
    n = _node(node_factory, max_worker_processes=30)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def reg(prefix: str) -> None:
        try:
            with n.connect(autocommit=True) as c:
                barrier.wait(10)
                for i in range(10):
                    assert _register(c, f"{prefix}{i}", behaviour="run") is not None
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=reg, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    n.poll_until(lambda: n.sql("SELECT count(*) FROM pg_stat_bgworker WHERE status = 'started'") == [(20,)],
                 what="20 workers started")  # fmt: skip


def test_notify_pid_cleared_when_the_backend_exits(node_factory) -> None:
    """BGW-15: the notify pid of a restartable worker is cleared when its registering backend
    exits cleanly (BackgroundWorkerStopNotifications): later starts signal nobody."""
    n = _node(node_factory)
    with n.connect(autocommit=True) as c:
        _register(c, "child", restart=1, behaviour="exit:1")
        n.poll_until(lambda: _slot(n, "child").get("notify_pid") == c.info.backend_pid, what="notify pid set")
    n.poll_until(lambda: len(_events(n, "bgw_start", "child")) >= 2, timeout=10, what="a restart")
    n.poll_until(lambda: _slot(n, "child").get("notify_pid") is None, what="notify pid cleared")


def test_hot_standby_off_consistent_state_waits_for_promotion(node_factory, standby_factory) -> None:
    """F31 / REC-4 / §1: with hot_standby=off a standby never passes through HOT_STANDBY, so a
    ConsistentState worker behaves like RecoveryFinished and starts only after promotion."""
    p = node_factory("primary")
    s = standby_factory(p, "standby1", start=False, hot_standby="off", shared_preload_libraries="'pgbed_test'",
                        pgbed_test__static_workers="'cons:consistent_state:-1:run'")  # fmt: skip
    s.start()
    s.wait_for_log("consistent recovery state reached")
    time.sleep(0.5)
    assert not _events(s, "bgw_start", "cons")
    assert s.pidfile_status() == "standby"
    from node.__main__ import main as cli

    assert cli(["promote", "-D", str(s.datadir)]) == 0
    s.poll_until(lambda: _events(s, "bgw_start", "cons"), what="started after promotion")
    run = next(e for e in s.events("pm_state") if e.get("new") == "RUN")
    assert _events(s, "bgw_start", "cons")[0]["ts"] >= run["ts"]


def test_smart_shutdown_waits_for_clients_not_workers(node_factory) -> None:
    """SHUT-2 / BGW-16: a smart shutdown waits for the client sessions (workers are not counted),
    then SIGTERMs the workers at STOP_BACKENDS; the server exits 0."""
    n = _node(node_factory, "svc:postmaster_start:-1:run")
    n.poll_until(lambda: _slot(n, "svc").get("status") == "started", what="svc running")
    pid = _slot(n, "svc")["pid"]
    sess = n.connect(autocommit=True)
    n.signal(signal.SIGTERM)  # smart
    n.wait_for_log("received smart shutdown request")
    time.sleep(0.5)
    assert not [e for e in n.events("bgw_exit") if e["pid"] == pid]  # still running while a client is
    sess.close()
    assert n.wait_exit() == 0
    exits = [e for e in n.events("bgw_exit") if e["pid"] == pid]
    assert exits and exits[0]["exit_code"] == 1


def test_postmaster_death_while_waiting_for_a_worker(node_factory, standby_factory) -> None:
    """F22 / CRASH-10 / BGW-13: a session blocked in worker_spi_launch on a hot standby when the
    postmaster is SIGKILLed gets `cannot start background processes without postmaster`, or
    its connection ends; the children exit by themselves."""
    p = node_factory("primary", shared_preload_libraries="'worker_spi'", worker_spi__total_workers="1")
    p.sql("CREATE EXTENSION worker_spi")
    s = standby_factory(p, "standby1", shared_preload_libraries="'worker_spi'", worker_spi__total_workers="1")
    p.wait_for_catchup(s, "replay")
    outcome: list[str] = []

    def launcher() -> None:
        try:
            with s.connect(autocommit=True) as c:
                c.execute("SELECT worker_spi_launch(7)")
                outcome.append("returned")
        except psycopg.Error as e:
            outcome.append(str(e))

    t = threading.Thread(target=launcher)
    t.start()
    time.sleep(0.7)
    children = list(s.children())
    os.kill(s.pid, signal.SIGKILL)
    t.join(30)
    assert outcome and outcome[0] != "returned", outcome
    assert any(x in outcome[0] for x in ("cannot start background processes without postmaster",
                                         "unexpected postmaster exit", "server closed the connection"))  # fmt: skip
    s.poll_until(lambda: not any(pid_alive(c) for c in children), timeout=15, what="children gone")


def test_notify_backend_gone_before_adoption(node_factory) -> None:
    """F09 / BGW-6 / BGW-15: a backend fills a slot naming itself as notify pid and exits before
    the postmaster adopts it (here: it exits at the injection point between filling the slot and
    signalling); the worker is adopted at the next BACKGROUND_WORKER_CHANGE and still starts, its
    notify pid cleared as not a live child."""
    n = _node(node_factory)
    with n.connect(autocommit=True) as c:
        c.execute("SELECT pgbed_injection_attach('backend-bgworker-registered', 'exit', '0')")
        with pytest.raises(psycopg.OperationalError):
            _register(c, "orphan")
    n.sql("SELECT pgbed_injection_detach('backend-bgworker-registered')")
    assert not _events(n, "bgw_register", "orphan")  # nobody told the postmaster yet
    with n.connect(autocommit=True) as c:
        _register(c, "second")  # its signal makes the postmaster look at every slot
    n.poll_until(lambda: _slot(n, "orphan").get("status") == "started", what="orphan started")
    assert _slot(n, "orphan")["notify_pid"] is None
    assert _slot(n, "second")["status"] == "started"
