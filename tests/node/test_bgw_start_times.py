"""Background-worker start times on real primaries and standbys (§1 eligibility, REC-7).

Rules: PostmasterStart workers run during recovery; ConsistentState workers start at the
standby's consistency (T3, HOT_STANDBY) and never before (the startup process is held before
consistency with the `startup-before-consistent` injection point); RecoveryFinished workers start
only at PM_RUN (promotion here), forked just before `database system is ready to accept
connections` is logged as PostgreSQL 15's reaper does; F05 (a RecoveryFinished
worker terminated before it starts never runs, even after promotion); F32 (after a crash, neither
ConsistentState nor RecoveryFinished workers start before the node is ready: crash recovery never
passes through HOT_STANDBY); F10 / BGW-13 (a cancelled wait keeps the registration, whose worker
starts at promotion).
"""

from __future__ import annotations

import psycopg

from orchestrator.localnode import LocalNode

STATIC = "early:postmaster_start:-1:run;cons:consistent_state:-1:run;fin:recovery_finished:-1:run"
RESTARTABLE = "early:postmaster_start:1:run;cons:consistent_state:1:run;fin:recovery_finished:1:run"


def _first(n: LocalNode, event: str, **match: object) -> dict | None:
    for e in n.events(event):
        if all(e.get(k) == v for k, v in match.items()):
            return e
    return None


def _ts(n: LocalNode, event: str, **match: object) -> float:
    e = n.poll_until(lambda: _first(n, event, **match), what=f"{event} {match}")
    return float(e["ts"])


def test_standby_start_times(node_factory, standby_factory) -> None:
    p = node_factory("primary")
    s = standby_factory(p, "standby1", start=False, shared_preload_libraries="'pgbed_test'",
                        pgbed_test__static_workers=f"'{STATIC}'",
                        injection_points="'startup-before-consistent:sleep:1500'")  # fmt: skip
    s.start(wait=False)
    early = _ts(s, "bgw_start", name="early")
    consistent = _ts(s, "consistent")
    hot = _ts(s, "pm_state", new="HOT_STANDBY")
    cons = _ts(s, "bgw_start", name="cons")
    assert early < consistent, "PostmasterStart runs during recovery, before consistency"
    assert consistent <= hot <= cons, (consistent, hot, cons)
    assert _first(s, "bgw_start", name="fin") is None  # RecoveryFinished: not in HOT_STANDBY
    s.wait_ready()
    assert s.sql("SELECT pg_promote()") == [(True,)]
    run = _ts(s, "pm_state", new="RUN")
    fin = _ts(s, "bgw_start", name="fin")
    ready = _ts(s, "ready", read_only=False)
    assert run <= fin <= ready, (run, fin, ready)
    assert s.sql("SELECT count(*) FROM pg_stat_bgworker WHERE status = 'started'") == [(3,)]


def test_terminated_before_start_never_runs(node_factory, standby_factory) -> None:
    """F05 / BGW-6/14: on a hot standby a RecoveryFinished worker is registered and terminated
    before it can start; its waiter sees STOPPED, its slot is freed, and it never runs, even after
    promotion."""
    p = node_factory("primary", shared_preload_libraries="'pgbed_test'")
    p.sql("CREATE EXTENSION pgbed_test")  # WAL-logged: the standby has it too
    s = standby_factory(p, "standby1", shared_preload_libraries="'pgbed_test'")
    p.wait_for_catchup(s, "replay")
    with s.connect(autocommit=True) as c:
        slot, gen = c.execute("SELECT * FROM pgbed_test_register('late', 'recovery_finished', -1, '{shmem}', "
                              "'run')").fetchone()  # fmt: skip
        h = (slot, gen)
        assert c.execute("SELECT * FROM pgbed_test_status(%s, %s)", h).fetchone() == ("not yet started", None)
        c.execute("SELECT pgbed_test_terminate(%s, %s)", h)
        assert c.execute("SELECT * FROM pgbed_test_wait_shutdown(%s, %s)", h).fetchone() == ("stopped", None)
    s.poll_until(lambda: not s.sql("SELECT 1 FROM pg_stat_bgworker WHERE name = 'late' AND in_use"), what="freed")
    assert s.sql("SELECT pg_promote()") == [(True,)]
    s.poll_until(lambda: s.sql("SELECT pg_is_in_recovery()") == [(False,)], what="promoted")
    import time

    time.sleep(0.5)
    assert _first(s, "bgw_start", name="late") is None


def test_crash_recovery_holds_consistent_state_workers(node_factory) -> None:
    """F32 / REC-7: after a crash, ConsistentState and RecoveryFinished workers start only once
    the node is ready again (crash recovery has no HOT_STANDBY)."""
    n = node_factory("node", shared_preload_libraries="'pgbed_test'",
                     pgbed_test__static_workers=f"'{RESTARTABLE}'")  # fmt: skip
    n.poll_until(lambda: _first(n, "bgw_start", name="cons") and _first(n, "bgw_start", name="fin"),
                 what="first starts")  # fmt: skip
    with n.connect(autocommit=True) as c:
        c.execute("CREATE EXTENSION pgbed_test")
        c.execute("SELECT * FROM pgbed_test_register('boom', 'postmaster_start', -1, '{shmem}', 'crash')")
    reinit = _ts(n, "reinit")
    ready = n.poll_until(lambda: [e for e in n.events("pm_state") if e["ts"] > reinit and e["new"] == "RUN"],
                         what="RUN after reinit")[0]  # fmt: skip
    def relaunched() -> list[dict]:
        got = [e for e in n.events("bgw_start") if e["ts"] > reinit]
        return got if {"early", "cons", "fin"} <= {e["name"] for e in got} else []

    later = n.poll_until(relaunched, what="the three workers relaunched after the crash")
    for e in later:
        if e["name"] in ("cons", "fin"):
            assert e["ts"] >= ready["ts"], (e, ready)
    states = [e["new"] for e in n.events("pm_state") if e["ts"] > reinit]
    assert "HOT_STANDBY" not in states
    psycopg.connect(n.connstr()).close()


def test_cancel_while_waiting_keeps_the_registration(node_factory, standby_factory) -> None:
    """F10 / BGW-13: a backend blocked in wait_startup for a RecoveryFinished worker on a hot
    standby is cancelled with a real CancelRequest: ERROR 57014 `canceling statement due to user
    request`; the registration stays (NOT_YET_STARTED) and the worker starts at promotion."""
    import threading

    p = node_factory("primary", shared_preload_libraries="'pgbed_test'")
    p.sql("CREATE EXTENSION pgbed_test")
    s = standby_factory(p, "standby1", shared_preload_libraries="'pgbed_test'")
    p.wait_for_catchup(s, "replay")
    errors: list[BaseException] = []
    with s.connect(autocommit=True) as c:
        h = c.execute("SELECT * FROM pgbed_test_register('f10', 'recovery_finished', -1, '{shmem}', 'run')").fetchone()

        def wait() -> None:
            try:
                c.execute("SELECT * FROM pgbed_test_wait_startup(%s, %s)", h).fetchone()
            except psycopg.Error as e:
                errors.append(e)

        t = threading.Thread(target=wait)
        t.start()
        bpid = s.poll_until(lambda: s.sql("SELECT pid FROM pg_stat_activity WHERE query LIKE "
                                          "'%pgbed_test_wait_startup%' AND state = 'active'"),
                            what="the waiting backend")[0][0]  # fmt: skip
        assert t.is_alive(), "wait_startup returned before the promotion"
        c.cancel()
        t.join(10)
        assert not t.is_alive()
        assert errors and isinstance(errors[0], psycopg.errors.QueryCanceled), errors
        assert "canceling statement due to user request" in str(errors[0])
        assert c.execute("SELECT * FROM pgbed_test_status(%s, %s)", h).fetchone() == ("not yet started", None)
        assert s.sql("SELECT pid FROM pg_stat_activity WHERE pid = %s", (bpid,)) == [(bpid,)]  # session lives on
    assert s.sql("SELECT pg_promote()") == [(True,)]
    started = _ts(s, "bgw_start", name="f10")
    assert started >= _ts(s, "pm_state", new="RUN")
    s.poll_until(lambda: s.sql("SELECT status FROM pg_stat_bgworker WHERE name = 'f10' AND in_use") == [("started",)],
                 what="f10 running after promotion")  # fmt: skip
