"""The whole `docker compose up` product, end to end: three nodes, the orchestrator running chaos
campaigns, Prometheus (built from Debian's package: no registry here), Grafana left out (it cannot
be built offline; the stack must not need it).

- `PGBED_OFFLINE=1 images/setup.sh` writes the offline compose.override.yaml (Prometheus built
  from Debian's package, Grafana in its profile); `docker compose up -d` with its own project
  name, host ports chosen by Docker, short campaigns (PGBED_CHAOS_DURATION / _INTERVAL / _PAUSE /
  _SEED / _FAULTS); every service turns healthy in order (healthchecks and depends_on
  conditions);
- through Prometheus's HTTP API: every node and the orchestrator are scraped (`up` is 1 for the
  three pgbed-node targets and the orchestrator), lag is reported for both standbys, at least
  one fault was recorded, a campaign finished and no checker said invalid, and every metric a
  Grafana dashboard queries exists and changed during the run (or is one that stays constant in a
  run without the bug it watches for — listed, with the reason);
- `docker compose down -v` leaves no container, network or volume of the project, and no helper
  or sidecar a campaign labelled for it.

Marked docker and chaos; PM-/BGW-/WALSND-/WALRCV- rules are exercised by the campaigns' checkers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from orchestrator.composecluster import wait_healthy

pytestmark = [pytest.mark.docker, pytest.mark.chaos, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("primary", "standby1", "standby2", "orchestrator", "prometheus")
DEADLINE_S = 240.0
# What the stack's orchestrator injects here: every process fault kind and a container restart.
FAULTS = "signal,signal-storm,pause,fault-hook,kill9,restart,failover,container-restart"
# Dashboard metrics that legitimately keep one value through a healthy run: each watches for a
# failure the run does not have.
CONSTANT_OK = {
    "pg_up": "1 whenever the exporter answers; a node that is down has no sample at all (Prometheus's own `up` "
             "shows it, and PgbedNodeDown uses both)",
    "pgbed_consistent": "0 only from a restart until consistency, about 0.1 s here: shorter than the 5 s scrape "
                        "interval",
    "pgbed_bgworker_early_starts_total": "only a historic bug starts a worker early",
    "pgbed_bgworker_crashes_total": "the campaign's workers exit cleanly unless a fault hits them",
    "pgbed_injection_points_armed": "the fault-hook kind is not in this run's fault list",
    "pgbed_injection_point_fires_total": "the fault-hook kind is not in this run's fault list",
    "pgbed_sync_standbys": "ANY 1 of two standbys: stays at 2 while both stream",
    "pgbed_timeline_id": "changes only at a failover, which this run's fault list leaves out",
}


def compose(project: str, env: dict[str, str], override: Path, *args: str, timeout: float = 900) -> str:
    cmd = ["docker", "compose", "-p", project, "-f", str(ROOT / "compose.yaml"), "-f", str(override), *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if r.returncode != 0:
        raise AssertionError(f"`{' '.join(cmd)}` exited {r.returncode}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r.stdout


def containers(client: Any, project: str) -> dict[str, Any]:  # service -> container
    found = client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
    return {c.labels.get("com.docker.compose.service", ""): c for c in found}


def host_port(c: Any, port: int) -> int:
    c.reload()
    return int(c.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])


class Prom:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait(self, expr: str, pred: Any, what: str, timeout: float = DEADLINE_S) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.query(expr)
                if pred(last):
                    return last
            except (OSError, AssertionError) as e:
                last = e
            time.sleep(2)
        raise AssertionError(f"{what}: `{expr}` not satisfied within {timeout:g} s; last result: {last!r}")


def dashboard_metrics() -> set[str]:
    sys.path.insert(0, str(ROOT / "grafana"))
    try:
        import build  # grafana/build.py
    finally:
        sys.path.pop(0)
    boards = [json.loads(p.read_text()) for p in sorted((ROOT / "grafana" / "dashboards").glob("*.json"))]
    return set(build.metric_names(boards))


def test_compose_stack_end_to_end(docker_client: Any, node_image: str, pgbed_labels: dict[str, str],
                                  tmp_path: Path) -> None:  # fmt: skip
    project = f"pgbede2e{pgbed_labels['pgbed.run'][:8]}{pgbed_labels['pgbed.worker']}".lower()
    # the offline setup, forced even where a registry answers, so the run is the same everywhere
    r = subprocess.run(["bash", str(ROOT / "images" / "setup.sh")], env={**os.environ, "PGBED_OFFLINE": "1"},
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    override = ROOT / "compose.override.yaml"
    assert "profiles" in override.read_text()
    env = {**os.environ, "PGBED_NODE_IMAGE": node_image, "PGBED_RUN": pgbed_labels["pgbed.run"],
           "PGBED_WORKER": pgbed_labels["pgbed.worker"], "PGBED_PORT": "0", "PGBED_STANDBY1_PORT": "0",
           "PGBED_STANDBY2_PORT": "0", "PGBED_PROMETHEUS_PORT": "0", "PGBED_GRAFANA_PORT": "0",
           "PGBED_CHAOS_DURATION": "25", "PGBED_CHAOS_INTERVAL": "2,4", "PGBED_CHAOS_PAUSE": "5",
           "PGBED_CHAOS_SEED": "7", "PGBED_CHAOS_FAULTS": FAULTS}  # fmt: skip
    env.pop("COMPOSE_PROFILES", None)
    by_project = {"label": f"com.docker.compose.project={project}"}
    t0 = time.monotonic()
    try:
        compose(project, env, override, "build", "prometheus")
        compose(project, env, override, "up", "-d", "--no-build")
        health = wait_healthy(docker_client, project, SERVICES, DEADLINE_S)
        if not all(health.get(s) == "healthy" for s in SERVICES):
            logs = compose(project, env, override, "logs", "--no-color", "--tail", "40")
            pytest.fail(f"not every service healthy within {DEADLINE_S:g} s: {health}\n{logs[-8000:]}", pytrace=False)
        assert "grafana" not in health, "Grafana started without its profile"
        print(f"\n[pgbed] compose stack healthy in {time.monotonic() - t0:.1f} s")
        prom = Prom(host_port(containers(docker_client, project)["prometheus"], 9090))
        try:
            check_through_prometheus(prom, t0)
        except AssertionError as e:
            logs = compose(project, env, override, "logs", "--no-color", "--tail", "60", "orchestrator")
            raise AssertionError(f"{e}\n--- the orchestrator's log ---\n{logs[-6000:]}") from None
    finally:
        compose(project, env, override, "down", "-v", "--remove-orphans", "--timeout", "120")
    assert docker_client.containers.list(all=True, filters=by_project) == []
    assert docker_client.networks.list(filters=by_project) == []
    assert docker_client.volumes.list(filters=by_project) == []
    helpers = {"label": f"com.docker.compose.project.target={project}"}
    assert docker_client.containers.list(all=True, filters=helpers) == []


def check_through_prometheus(prom: Prom, t0: float) -> None:
    prom.wait('up{job="pgbed-node"} == 1', lambda r: len(r) == 3, "all three nodes scraped")
    prom.wait('up{job="pgbed-orchestrator"} == 1', lambda r: len(r) == 1, "the orchestrator scraped")
    prom.wait("pg_stat_replication_pg_wal_lsn_diff", lambda r: {x["metric"].get("application_name") for x in r}
              >= {"standby1", "standby2"}, "byte lag reported for both standbys")  # fmt: skip
    prom.wait("pg_replication_lag_seconds", lambda r: len({x["metric"]["node"] for x in r}) >= 2,
              "seconds lag reported by both standbys")  # fmt: skip
    prom.wait("sum(pgbed_chaos_faults_total)", lambda r: r and float(r[0]["value"][1]) >= 1, "a fault recorded")
    prom.wait("sum(pgbed_chaos_campaigns_total)", lambda r: r and float(r[0]["value"][1]) >= 1,
              "a campaign finished", timeout=300)  # fmt: skip
    invalid = prom.query('sum(pgbed_chaos_checks_total{result="invalid"}) or vector(0)')
    assert float(invalid[0]["value"][1]) == 0, prom.query('pgbed_chaos_checks_total{result="invalid"}')
    bad = prom.query('pgbed_chaos_campaigns_total{verdict="invalid"} > 0')
    assert bad == [], bad

    # every metric a dashboard queries: present in some scrape of the run, and changed during it
    # (campaigns follow each other, so the fault kinds that feed some of them come round in time)
    wanted = sorted(dashboard_metrics())
    deadline = time.monotonic() + 300
    while True:
        span = f"{int(time.monotonic() - t0) + 30}s"
        missing = [m for m in wanted if not prom.query(f"count(last_over_time({m}[{span}]))")]
        unchanged = [m for m in wanted if m not in missing and m not in CONSTANT_OK
                     and not prom.query(f"max(changes({m}[{span}])) > 0")]  # fmt: skip
        if not missing and not unchanged:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"dashboard metrics absent from every scrape: {missing}; present but never "
                                 f"changed during the run: {unchanged}")  # fmt: skip
        time.sleep(5)
