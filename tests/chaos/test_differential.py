"""The differential scenarios (orchestrator/diffscen.py) as tests: each runs on a pgbed cluster
and on a PostgreSQL 15 cluster with the same seed, and a divergence of the normalised outcome —
PMState-relevant log events, worker starts and exits, exit codes, SQLSTATEs, view shapes, rows
that survived — is a failure that prints both sequences side by side, unless
orchestrator/intended_differences.toml lists it (with its rule id and reason). Scenarios that
exist on one flavour only (PostgreSQL's own workers; pgbed's pg_stat_bgworker view) must run
without error there. `pytest -m differential` selects these and the fault campaigns on a
PostgreSQL 15 cluster (test_campaigns.py); `pgbed diff` is the same comparison as a command with
a table.

Rules: the ids each scenario names (`pgbed diff --list`), in the test id's scenario.

Needs Debian's postgresql-15 and the pgbed_test extension built for it (ext/pgbed_test; .ci/run
installs both); without them these tests skip and say which is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.diff import diff_scenario, why_not
from orchestrator.diffnorm import load_intended
from orchestrator.diffscen import SCENARIOS

pytestmark = [pytest.mark.chaos, pytest.mark.differential, pytest.mark.timeout(180)]

SEED = 1


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_agrees_with_postgresql_15(name: str, tmp_path: Path) -> None:
    scen = SCENARIOS[name]
    missing = [m for f in scen.flavours if (m := why_not(scen, f))]
    if missing:
        pytest.skip(f"cannot run on PostgreSQL 15 here: {missing[0]}")
    tmp_path.chmod(0o755)  # the postgres OS user runs the PostgreSQL nodes beneath it
    res = diff_scenario(scen, SEED, tmp_path, load_intended())
    v = res.verdict
    if v.status == "error":
        pytest.fail(f"{name} ({' '.join(scen.rules)}) failed to run:\n" + "\n".join(v.how) + f"\n\n{v.detail}\n"
                    f"logs under {tmp_path}", pytrace=False)  # fmt: skip
    if v.status == "differs":
        pytest.fail(f"{name} ({' '.join(scen.rules)}): pgbed and PostgreSQL 15 differ\n" + "\n".join(v.how)
                    + f"\n\n{v.detail}\n\nlogs under {tmp_path}; if the difference is intended, list it in "
                    "orchestrator/intended_differences.toml with its rule id and reason", pytrace=False)  # fmt: skip
    assert v.status in ("same", scen.kind), v
    for flavor, outcome in res.outcomes.items():
        assert outcome.facets.get("events:primary"), f"{flavor}: no events read from the primary's log"


def test_a_historic_bug_put_back_into_pgbed_is_a_divergence(tmp_path: Path) -> None:
    """BGW-7 / REC-7, the comparison's own meta-test: with `consistent_in_recovery` put back into
    pgbed (ConsistentState workers eligible in RECOVERY) and the standby's startup process held
    before consistency (injection point, pgbed only), the static ConsistentState worker starts
    before `consistent recovery state reached`; PostgreSQL 15 starts it after, and the runner
    must call that a divergence and show where."""
    scen = SCENARIOS["bgworker-start-times"]
    missing = [m for f in scen.flavours if (m := why_not(scen, f))]
    if missing:
        pytest.skip(f"cannot run on PostgreSQL 15 here: {missing[0]}")
    tmp_path.chmod(0o755)
    bug = {"pgbed__historic_bugs": "'consistent_in_recovery'",
           "injection_points": "'startup-before-consistent:sleep:800'"}  # fmt: skip
    v = diff_scenario(scen, SEED, tmp_path, load_intended(), pgbed_settings=bug).verdict
    assert v.status == "differs", v
    assert any(h.startswith("events:standby1") and "bgworker_start(pgbed_s_cs)" in h for h in v.how), v.how
    assert "consistent" in v.detail and "* " in v.detail


def test_campaign_checkers_judge_postgresql_15_from_its_log(tmp_path: Path) -> None:
    """BGW-7 (start times), BGW-17, WALRCV-6, CRASH-1 judged on real PostgreSQL 15 by the
    campaign's own checkers, from the events orchestrator/pgevents.py derives from its log: a
    standby with pgbed_test's static workers has its walreceiver SIGKILLed (a crash reinit) and
    SIGTERMed (exit 1, streaming again after the retry interval), then is promoted (its
    RecoveryFinished worker and the logical replication launcher start at PM_RUN). PostgreSQL
    is the reference, so every checker must find it valid, and each must have judged something."""
    import os
    import signal
    import time

    from orchestrator.chaos import campaign_settings
    from orchestrator.checker import process
    from orchestrator.cluster import Cluster
    from orchestrator.pgflavor import pgbed_test_installed, postgres_available

    if missing := postgres_available():
        pytest.skip(f"no PostgreSQL 15 here: {missing}")
    if not pgbed_test_installed():
        pytest.skip("the pgbed_test extension is not installed for PostgreSQL 15 (make -C ext/pgbed_test install)")
    tmp_path.chmod(0o755)
    c = Cluster.local(tmp_path / "c", standbys=1, settings=campaign_settings(1.0, True, flavor="postgres"),
                      flavor="postgres")  # fmt: skip
    try:
        c.catch_up()
        s = c.standbys[0]

        def next_walreceiver(old: int | None) -> int:
            return s.poll_until(lambda: next((p for p in s.pids("walreceiver") if p != old), None),
                                what="a (new) walreceiver")  # fmt: skip

        wr = next_walreceiver(None)
        os.kill(wr, signal.SIGKILL)
        s.wait_for_log("all server processes terminated; reinitializing")
        wr = next_walreceiver(wr)
        s.poll_until(lambda: len([e for e in s.events("bgw_start") if e["name"] == "cons"]) >= 2,
                     what="the ConsistentState worker started again after the reinit")  # fmt: skip
        time.sleep(2.5)  # bgw17_reset judges an incarnation that ran 2 s past ready
        os.kill(wr, signal.SIGTERM)
        s.poll_until(lambda: len(s.events("walrcv_streaming")) >= 3, what="streaming after the SIGTERM")
        c.primary.stop("fast")
        c.failover()
        s.poll_until(lambda: any(e["name"] == "fin" for e in s.events("bgw_start")),
                     what="the RecoveryFinished worker after promotion")  # fmt: skip
        evs = s.events()
    finally:
        c.teardown()
    names = [e["event"] for e in evs]
    for want in ("postmaster_start", "crash", "reinit", "consistent", "promote", "walrcv_streaming", "child_exit"):
        assert want in names, f"no {want} event derived from PostgreSQL's log; events: {names}"
    run = next(e for e in evs if e["event"] == "pm_state" and e["new"] == "RUN")
    fin = next(e for e in evs if e["event"] == "bgw_start" and e["name"] == "fin")
    assert run["ts"] < fin["ts"], "PM_RUN placed before the RecoveryFinished worker's fork"
    for r in (process.start_times({"standby1": evs}), process.bgw17_reset({"standby1": evs}),
              process.streaming_resumed(evs, retry_interval_s=1.0, deadline_s=30.0)):  # fmt: skip
        assert r.status == "valid" and r.checked > 0, f"{r}\nlog: {tmp_path}"
