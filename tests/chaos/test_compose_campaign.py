"""Campaigns against the compose stack (compose.yaml), found by compose's labels.

One test walks the whole life of a stack, because bringing it up costs more than any one check:

- `docker compose -p <unique> up -d --no-build primary standby1 standby2` (the run's node image,
  host ports chosen by Docker, labels pgbed.run / pgbed.worker for cleanup; the stack's own
  orchestrator, Prometheus and Grafana are test_compose_stack.py's) brings up the three nodes:
  both standbys cloned at their first start by the image's entrypoint and streaming under
  `ANY 1 (standby1, standby2)` (ComposeCluster attaches to them by label);
- `python -m orchestrator chaos --compose-project <p>` with a seed whose schedule contains
  failovers: the campaign's verdict is not invalid, it recorded its faults, the last failover's
  promoted node is the primary found afterwards by asking the nodes, its old primary is a
  standby, every lost primary was re-cloned inside its own container (same container ids:
  compose still owns them), and no campaign helper or sidecar is left;
- a second campaign on the same stack (its own workload tables, worker_spi's total measured
  from its baseline) is judged on its own and is not invalid;
- `docker compose restart` of every service keeps the roles the campaign gave (the role is in
  the data directory), and both standbys stream again;
- `docker compose down -v` leaves no container, network or volume of the project.

Rules exercised end to end: REC-/WALRCV- (timeline switch followed by the repointed standby),
BGW- start times and SPI- folds through the campaign's checkers. Marked docker and chaos.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.composecluster import LABEL_PROJECT, ComposeCluster
from orchestrator.composecluster import wait_healthy as compose_wait_healthy

pytestmark = [pytest.mark.docker, pytest.mark.chaos, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 120.0
NODES = ("primary", "standby1", "standby2")


def compose(project: str, env: dict[str, str], *args: str, timeout: float = 300) -> str:
    cmd = ["docker", "compose", "-p", project, "-f", str(ROOT / "compose.yaml"), *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if r.returncode != 0:
        raise AssertionError(f"`{' '.join(cmd)}` exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout


def wait_healthy(client: Any, project: str, env: dict[str, str]) -> None:
    states = compose_wait_healthy(client, project, NODES, DEADLINE_S)
    if not all(states.get(n) == "healthy" for n in NODES):
        logs = compose(project, env, "logs", "--no-color", "--tail", "30")
        pytest.fail(f"compose project {project}: nodes not healthy within {DEADLINE_S:g} s; last states {states}\n"
                    f"{logs}", pytrace=False)  # fmt: skip


def campaign(project: str, seed: int, duration: float, faults: str, rundir: Path) -> tuple[int, str, dict[str, Any]]:
    cmd = [sys.executable, "-m", "orchestrator", "chaos", "--compose-project", project, "--seed", str(seed),
           "--duration", str(duration), "--faults", faults, "--rundir", str(rundir)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=ROOT)
    checks = json.loads((rundir / "checks.json").read_text()) if (rundir / "checks.json").exists() else {}
    return r.returncode, r.stdout + r.stderr, checks


def test_campaigns_against_the_compose_stack(docker_client: Any, node_image: str, pgbed_labels: dict[str, str],
                                            tmp_path: Path) -> None:  # fmt: skip
    project = f"pgbedtest{pgbed_labels['pgbed.run'][:8]}{pgbed_labels['pgbed.worker']}".lower()
    env = {**os.environ, "PGBED_NODE_IMAGE": node_image, "PGBED_RUN": pgbed_labels["pgbed.run"],
           "PGBED_WORKER": pgbed_labels["pgbed.worker"], "PGBED_PORT": "0", "PGBED_STANDBY1_PORT": "0",
           "PGBED_STANDBY2_PORT": "0"}  # fmt: skip
    by_project = {"label": f"{LABEL_PROJECT}={project}"}
    try:
        compose(project, env, "up", "-d", "--no-build", *NODES)  # the campaigns here are the test's own
        wait_healthy(docker_client, project, env)
        c = ComposeCluster(docker_client, project)
        assert c.primary_name == "primary" and sorted(s.name for s in c.standbys) == ["standby1", "standby2"]
        c.wait_streaming(timeout=DEADLINE_S)
        assert c.primary.sql("SHOW synchronous_standby_names") == [("ANY 1 (standby1, standby2)",)]
        ids = {n: node.container.id for n, node in c.nodes.items()}

        # 1. a campaign whose seeded schedule contains a failover
        code, out, checks = campaign(project, 3, 14, "failover,signal,kill9", tmp_path / f"{project}-run1")
        assert checks, f"no checks.json written:\n{out[-4000:]}"
        assert checks["verdict"]["status"] != "invalid", out[-6000:]
        faults = [json.loads(ln) for ln in (tmp_path / f"{project}-run1" / "faults.jsonl").read_text().splitlines()]
        assert faults and code == 0, out[-6000:]
        failovers = [f for f in faults if f["kind"] == "failover"]
        assert failovers, f"seed 3 was chosen for its failovers: {faults}"
        after = ComposeCluster(docker_client, project)  # roles read from the nodes themselves
        assert after.primary_name == failovers[-1]["detail"]["new_primary"], (after.primary_name, failovers)
        assert after.node(failovers[-1]["node"]).sql("SELECT pg_is_in_recovery()") == [(True,)]
        assert {n: node.container.id for n, node in after.nodes.items()} == ids, "a node container was replaced"
        after.wait_streaming(timeout=DEADLINE_S)
        helpers = {"label": f"pgbed.run={project}-run1"}
        leftovers = [x.name for x in docker_client.containers.list(all=True, filters=helpers)]
        assert leftovers == [], leftovers
        assert checks["config"]["target"] == project

        # 2. a second campaign on the same stack is judged on its own
        code2, out2, checks2 = campaign(project, 4, 6, "signal,restart", tmp_path / f"{project}-run2")
        assert checks2 and checks2["verdict"]["status"] != "invalid" and code2 == 0, out2[-6000:]
        by_name = {x["name"]: x for x in checks2["checks"]}
        assert by_name["acked-writes"]["status"] in ("valid", "unknown"), by_name["acked-writes"]
        assert by_name["worker-spi-total"]["status"] != "invalid", by_name["worker-spi-total"]

        # 3. restarted containers keep the roles the campaign gave them
        primary_before = ComposeCluster(docker_client, project).primary_name
        compose(project, env, "restart", *NODES)
        wait_healthy(docker_client, project, env)
        again = ComposeCluster(docker_client, project)
        assert again.primary_name == primary_before
        again.wait_streaming(timeout=DEADLINE_S)
    finally:
        compose(project, env, "down", "-v", "--remove-orphans")
    assert docker_client.containers.list(all=True, filters=by_project) == []
    assert docker_client.networks.list(filters=by_project) == []
    assert docker_client.volumes.list(filters=by_project) == []
