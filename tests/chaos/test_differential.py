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
