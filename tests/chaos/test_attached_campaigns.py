"""Campaigns against a local cluster that is already running (`pgbed cluster up`), one after
another, with the CLI a user would type.

- `pgbed cluster up --dir D` leaves a primary and two streaming standbys running after it exits
  (psql reaches the primary; `status` lists three running nodes);
- `pgbed chaos --cluster-dir D` with a seed whose schedule contains failovers adopts the
  postmasters, is not judged invalid, and leaves the cluster up with the new roles saved in
  cluster.json: the last failover's promoted standby primary, its lost primary re-cloned (a new
  postmaster) as a standby;
- a second campaign on the same cluster (workload tables of its own, worker_spi's total from
  its baseline) is judged on its own and is not invalid;
- `pgbed cluster down` stops every node; `status` then exits 3.

Rules exercised through the campaign's checkers as in test_campaigns.py; the failover follows
REC-/WALRCV- (timeline switch, repointed standby).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cluster import Cluster

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]


def pgbed(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)  # fmt: skip


def campaign(d: Path, rundir: Path, seed: int, duration: float, faults: str) -> tuple[Any, dict[str, Any]]:
    r = pgbed("chaos", "--cluster-dir", str(d), "--seed", str(seed), "--duration", str(duration), "--faults", faults,
              "--rundir", str(rundir))  # fmt: skip
    checks = json.loads((rundir / "checks.json").read_text()) if (rundir / "checks.json").exists() else {}
    return r, checks


def test_campaigns_against_a_running_local_cluster(tmp_path: Path) -> None:
    d = tmp_path / "cluster"
    try:
        up = pgbed("cluster", "up", "--dir", str(d))
        assert up.returncode == 0, up.stdout + up.stderr
        manifest = json.loads((d / "cluster.json").read_text())
        assert manifest["primary"] == "primary" and manifest["names"] == ["primary", "standby1", "standby2"]
        st = pgbed("cluster", "status", "--dir", str(d))
        assert st.returncode == 0 and st.stdout.count("pid ") == 3, st.stdout + st.stderr
        c = Cluster.attach(d)
        c.wait_streaming(timeout=30)
        pids_before = {n.name: n.pid for n in c.nodes.values()}
        assert all(n.proc is None and n.adopted_pid for n in c.nodes.values()), "not adopted"

        r1, checks = campaign(d, tmp_path / "run1", 3, 6, "failover,signal")
        assert checks and checks["verdict"]["status"] != "invalid" and r1.returncode == 0, r1.stdout + r1.stderr[-6000:]
        faults = [json.loads(ln) for ln in (tmp_path / "run1" / "faults.jsonl").read_text().splitlines()]
        failovers = [f for f in faults if f["kind"] == "failover"]
        assert failovers, f"seed 3 was chosen for its failover: {faults}"
        assert checks["config"]["target"] == str(d.resolve())

        after = Cluster.attach(d)  # roles read from the nodes themselves
        saved = json.loads((d / "cluster.json").read_text())["primary"]
        assert after.primary_name == saved == failovers[-1]["detail"]["new_primary"], (after.primary_name, failovers)
        lost = failovers[-1]["node"]
        assert after.node(lost).sql("SELECT pg_is_in_recovery()") == [(True,)]
        assert after.node(lost).pid != pids_before[lost]  # re-cloned and started anew
        assert (d / "retired").is_dir() and any((d / "retired").iterdir())
        after.wait_streaming(timeout=30)

        r2, checks2 = campaign(d, tmp_path / "run2", 4, 4, "signal,restart")
        assert checks2 and checks2["verdict"]["status"] != "invalid" and r2.returncode == 0, r2.stderr[-6000:]
        by_name = {x["name"]: x for x in checks2["checks"]}
        assert by_name["acked-writes"]["status"] in ("valid", "unknown"), by_name["acked-writes"]
        assert by_name["worker-spi-total"]["status"] != "invalid", by_name["worker-spi-total"]
    finally:
        down = pgbed("cluster", "down", "--dir", str(d))
        if (d / "cluster.json").exists():
            for n in Cluster.attach(d, start=False).nodes.values():
                n.teardown()
    assert down.returncode == 0, down.stdout + down.stderr
    st = pgbed("cluster", "status", "--dir", str(d))
    assert st.returncode == 3 and "pid " not in st.stdout, st.stdout


@pytest.mark.differential
def test_campaign_against_a_running_postgresql_15_cluster(tmp_path: Path) -> None:
    """`pgbed cluster up --flavor postgres` then `pgbed chaos --cluster-dir`: the campaign takes
    the flavour from cluster.json (no worker_spi, no pgbed-only views or injection points), kills
    adopted PostgreSQL postmasters with SIGKILL and starts them again — PostgreSQL's lock-file
    check counts an unreaped zombie as running, so the restart waits until init has reaped the
    old postmaster — and judges PostgreSQL VALID, start times included (BGW-7, CRASH-1, WALRCV-6)."""
    from orchestrator.pgflavor import pgbed_test_installed, postgres_available

    if missing := postgres_available():
        pytest.skip(f"no PostgreSQL 15 here: {missing}")
    if not pgbed_test_installed():
        pytest.skip("the pgbed_test extension is not installed for PostgreSQL 15 (make -C ext/pgbed_test install)")
    tmp_path.chmod(0o755)
    d = tmp_path / "cluster"
    try:
        up = pgbed("cluster", "up", "--dir", str(d), "--flavor", "postgres")
        assert up.returncode == 0, up.stdout + up.stderr
        assert json.loads((d / "cluster.json").read_text())["flavor"] == "postgres"
        r, checks = campaign(d, tmp_path / "run1", 2, 8, "kill9,failover")
        assert checks and checks["verdict"]["status"] != "invalid" and r.returncode == 0, r.stdout + r.stderr[-6000:]
        faults = [json.loads(ln) for ln in (tmp_path / "run1" / "faults.jsonl").read_text().splitlines()]
        assert any(f["kind"] == "kill9" for f in faults), f"seed 2 was chosen for its kill9: {faults}"
        by_name = {x["name"]: x for x in checks["checks"]}
        for name in ("acked-writes", "bank", "convergence", "back-to-ready", "start-times"):
            assert by_name[name]["status"] == "valid", by_name[name]
        assert "worker-spi-total" not in by_name, "worker_spi is pgbed's"
    finally:
        pgbed("cluster", "down", "--dir", str(d))
        if (d / "cluster.json").exists():
            for n in Cluster.attach(d, start=False).nodes.values():
                n.teardown()
