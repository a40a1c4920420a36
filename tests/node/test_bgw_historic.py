"""The two historic background-worker bugs of `pgbed.historic_bugs`, caught from the outside by
orchestrator/bgwcheck.py over the jsonlog (never by reading the setting); the same run without
the bug passes the same check.

Rules: §1 start-time table (`consistent_in_recovery`: ConsistentState workers eligible in
RECOVERY), BGW-17 (`bgw17_pid_not_reset`: the pre-2025 reinit bug, a crashed cluster's
restartable workers are never relaunched).
"""

from __future__ import annotations

import time

from orchestrator import bgwcheck


def test_consistent_in_recovery_caught(node_factory, standby_factory) -> None:
    for bug in (True, False):
        p = node_factory(f"primary{int(bug)}")
        s = standby_factory(p, f"standby{int(bug)}", start=False, shared_preload_libraries="'pgbed_test'",
                            pgbed_test__static_workers="'cons:consistent_state:-1:run'",
                            injection_points="'startup-before-consistent:sleep:1000'",
                            pgbed__historic_bugs="'consistent_in_recovery'" if bug else "''")  # fmt: skip
        s.start()
        s.poll_until(lambda s=s: s.events("bgw_start"), what="the ConsistentState worker started")
        verdict = bgwcheck.check_start_times(s.events())
        if bug:
            assert verdict.status == "invalid", verdict
            assert "ConsistentState worker 'cons'" in verdict.evidence[0]
        else:
            assert verdict.status == "valid", verdict
        s.teardown()
        p.teardown()


def test_bgw17_pid_not_reset_caught(node_factory) -> None:
    for bug in (True, False):
        n = node_factory(f"node{int(bug)}", shared_preload_libraries="'pgbed_test'",
                         pgbed_test__static_workers="'svc:postmaster_start:1:run'",
                         pgbed__historic_bugs="'bgw17_pid_not_reset'" if bug else "''")  # fmt: skip
        n.poll_until(lambda n=n: n.events("bgw_start"), what="svc started")
        n.sql("CREATE EXTENSION pgbed_test")
        n.sql("SELECT * FROM pgbed_test_register('boom', 'postmaster_start', -1, '{shmem}', 'crash')")
        n.poll_until(lambda n=n: n.events("reinit") and [e for e in n.events("ready")
                                                         if e["ts"] > n.events("reinit")[0]["ts"]],
                     what="ready after reinit")  # fmt: skip
        time.sleep(2.5)
        n.sql("SELECT 1")  # an event after the settle time, so the checker can judge
        verdict = bgwcheck.check_reinit_relaunch(n.events())
        if bug:
            assert verdict.status == "invalid", verdict
            assert "'svc'" in verdict.evidence[0]
        else:
            assert verdict.status == "valid", verdict
        n.teardown()
