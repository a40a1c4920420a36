"""Chaos scenarios on 1-primary/2-standby clusters: one campaign per process-level fault kind,
each judged by every checker — on local processes for every seed of `--chaos-seeds` (default
11,23; the proxy's latency/reset/blackhole with the first), and for the kinds whose mechanics
differ in containers also on the Docker backend (DOCKER_KINDS, first seed; `--backend`
chooses) — and the meta-tests that put each of `pgbed.historic_bugs` back and require the
matching checker — not just any — to say INVALID, while the same seed without the bug passes.

Rules exercised through the checkers (orchestrator/checker/*): no acknowledged write lost and
bank totals constant (data), standbys converge, BGW start times (§1, REC-7) and the BGW-17 reset,
WALSND-2 / SIG-3 / P-4 / P-6 slot invariants, the documented exit of each signal (CRASH-1,
WALSND-4/5, WALRCV-5, BGW-18), WALRCV-6 retry spacing, and liveness after every heal.

A failing campaign prints its seed and the one-line command that replays its schedule.
Network faults (latency, reset, blackhole) go through a userspace proxy placed between each
standby's walreceiver and the primary (no netem here). Container faults (kill/stop/pause,
partitions) need the Docker backend: tests/chaos/test_docker_cluster.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator import faults as F
from orchestrator.chaos import CampaignConfig, CampaignResult, docker_cluster, run_campaign

pytestmark = [pytest.mark.chaos]


def _campaign(tmp_path: Path, seed: int, faults: tuple[str, ...], **kw: Any) -> CampaignResult:
    settings = {k.replace(".", "__"): v for k, v in kw.pop("settings", {}).items()}
    cfg = CampaignConfig(seed=seed, duration_s=kw.pop("duration_s", 5.0), faults=faults, rundir=tmp_path / f"run{seed}",
                         settings=settings, **kw)  # fmt: skip
    return run_campaign(cfg, progress=lambda msg: None)


def _explain(r: CampaignResult) -> str:
    return f"seed {r.config.seed}; replay with: {r.config.replay_command()}\n{r.summary()}"


def _check(r: CampaignResult, name: str) -> Any:
    return next(c for c in r.checks if c.name == name)


# On Docker, the kinds whose mechanics differ there: a signal is sent by `docker exec kill`, a
# killed postmaster takes its whole container (PID namespace) down, a restart is a container stop
# and start, a failover halts and retires a container and re-clones in a new one. (Storms,
# pauses and fault hooks use the same exec / SQL paths as SIGNAL; the proxy runs on this host,
# and containers' network faults are partitions: test_docker_cluster.py.)
DOCKER_KINDS = (F.SIGNAL, F.KILL9, F.RESTART, F.FAILOVER)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function.__name__ != "test_fault_kind_campaign":
        return
    seeds: list[int] = metafunc.config.getoption("--chaos-seeds")
    params = []
    for kind in F.PROCESS_FAULTS + F.PROXY_FAULTS:
        for backend in ("local", "docker"):
            if backend == "docker" and kind not in DOCKER_KINDS:
                continue
            # every seed for the process faults on local processes; the proxy's faults (one
            # mechanism, three settings) and the Docker variants take the first seed
            for seed in seeds if backend == "local" and kind not in F.PROXY_FAULTS else seeds[:1]:
                marks = [pytest.mark.docker] if backend == "docker" else []
                params.append(pytest.param(kind, backend, seed, marks=marks, id=f"{kind}-{backend}-{seed}"))
    metafunc.parametrize(("kind", "scenario_backend", "seed"), params)


def test_fault_kind_campaign(tmp_path: Path, kind: str, scenario_backend: str, seed: int,
                             request: pytest.FixtureRequest) -> None:  # fmt: skip
    """Every process-level fault kind, alone, with the acknowledged-writes and bank workloads
    running and pgbed_test workers of the three start times on every node (the campaign's
    default): no checker may say INVALID, and the data checkers must have seen enough to say
    VALID."""
    if scenario_backend == "docker":
        # longer than a local campaign: a container restart keeps the primary away for seconds
        cfg = CampaignConfig(seed=seed, duration_s=8.0, faults=(kind,), rundir=tmp_path / f"run{seed}",
                             backend="docker")  # fmt: skip
        cluster = docker_cluster(cfg, request.getfixturevalue("node_image"),
                                 labels=request.getfixturevalue("pgbed_labels"))  # fmt: skip
        try:
            r = run_campaign(cfg, cluster=cluster, progress=lambda msg: None)
        finally:
            cluster.teardown()
    else:
        r = _campaign(tmp_path, seed, (kind,))
    assert r.faults, f"no fault was injected\n{_explain(r)}"
    assert r.verdict.status != "invalid", _explain(r)
    for name in ("acked-writes", "bank", "convergence", "back-to-ready"):
        assert _check(r, name).status == "valid", _explain(r)
    assert (r.rundir / "history.jsonl").stat().st_size > 0
    assert (r.rundir / "logs" / "primary.log").exists()


def _meta(tmp_path: Path, bug: str, checker: str, faults: tuple[str, ...], **kw: Any) -> None:
    settings = dict(kw.pop("settings", {}))
    with_bug = _campaign(tmp_path / "bug", 7, faults, settings={**settings, "pgbed.historic_bugs": f"'{bug}'"}, **kw)
    without = _campaign(tmp_path / "nobug", 7, faults, settings=settings, **kw)
    assert _check(with_bug, checker).status == "invalid", f"{bug} not caught by {checker}\n{_explain(with_bug)}"
    assert _check(without, checker).status == "valid", _explain(without)
    assert without.verdict.status != "invalid", _explain(without)


def test_meta_consistent_in_recovery(tmp_path: Path) -> None:
    """consistent_in_recovery (ConsistentState workers eligible in RECOVERY): restarting a standby
    whose startup process is held before consistency starts the `cons` worker too early; the
    start-times checker (jsonlog only) says INVALID. Same seed without the bug: VALID."""
    _meta(tmp_path, "consistent_in_recovery", "start-times", (F.RESTART,), duration_s=4.0,
          settings={"injection_points": "'startup-before-consistent:sleep:800'"},
          interval_s=(0.3, 0.6))  # fmt: skip


def test_meta_bgw17_pid_not_reset(tmp_path: Path) -> None:
    """bgw17_pid_not_reset (the pre-2025 reinit bug): SIGKILL of a worker is a crash restart;
    with the bug the crashed worker is never relaunched and the bgw17-reset checker says INVALID."""
    _meta(tmp_path, "bgw17_pid_not_reset", "bgw17-reset", (F.SIGNAL,), duration_s=4.0,
          roles=(F.BGWORKER,), signals={F.BGWORKER: ("SIGKILL",)}, interval_s=(1.0, 1.5))  # fmt: skip


def test_meta_walsndkill_order(tmp_path: Path) -> None:
    """walsndkill_order (2013 WalSndKill order): with the exit path widened by injection points,
    SIGTERMed walsenders' successors lose their latch; the replication-slots checker says INVALID."""
    _meta(tmp_path, "walsndkill_order", "replication-slots", (F.SIGNAL,), duration_s=6.0,
          settings={"injection_points": "'walsender-kill-after-free:sleep:2500,walsender-kill-before-free:sleep:2500'",
                    "wal_retrieve_retry_interval": "'100ms'"},
          retry_interval_s=0.1, roles=(F.WALSENDER,), signals={F.WALSENDER: ("SIGTERM",)},
          interval_s=(0.5, 1.0), sample_every_s=0.05)  # fmt: skip


def test_meta_signal_handler_work(tmp_path: Path) -> None:
    """signal_handler_work (exit work inside the SIGTERM handler, P-4): a walsender SIGTERMed
    inside its slot claim leaves the slot naming a dead process; the replication-slots checker
    says INVALID."""
    _meta(tmp_path, "signal_handler_work", "replication-slots", (F.SIGNAL,), duration_s=6.0,
          settings={"injection_points": "'walsender-claim:sleep:1500'", "wal_retrieve_retry_interval": "'100ms'"},
          retry_interval_s=0.1, roles=(F.WALSENDER,), signals={F.WALSENDER: ("SIGTERM",)},
          interval_s=(0.3, 0.6), hold_s=(0.1, 0.2), sample_every_s=0.1)  # fmt: skip


# The same campaigns against real PostgreSQL 15: the faults whose targets both servers have
# (no injection points there), with the data and liveness checkers, which must judge the system
# pgbed models VALID as they judge pgbed (a checker that says INVALID on PostgreSQL is wrong, or
# PostgreSQL breaks the rule: either is worth a look). The static workers come from the C
# pgbed_test and the process checkers read events derived from PostgreSQL's log
# (orchestrator/pgevents.py); pgbed-only parts are off (worker_spi deltas, pg_stat_bgworker
# snapshots: those checkers say UNKNOWN).
POSTGRES_KINDS = (F.KILL9, F.FAILOVER)  # a crash restart, and a promotion with re-point and re-clone


@pytest.mark.differential
@pytest.mark.parametrize("kind", POSTGRES_KINDS)
def test_fault_kind_campaign_on_postgresql_15(tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    """CRASH-1, CRASH-4, REC-5, WALRCV-6 through the data checkers, and BGW-7's start times
    through the process checkers, on PostgreSQL 15."""
    from orchestrator.pgflavor import pgbed_test_installed, postgres_available

    missing = postgres_available()
    if missing:
        pytest.skip(f"no PostgreSQL 15 here: {missing}")
    if not pgbed_test_installed():
        pytest.skip("the pgbed_test extension is not installed for PostgreSQL 15 (make -C ext/pgbed_test install)")
    seed = request.config.getoption("--chaos-seeds")[0]
    r = _campaign(tmp_path, seed, (kind,), flavor="postgres")
    assert r.faults, f"no fault was injected\n{_explain(r)}"
    assert r.verdict.status != "invalid", _explain(r)
    for name in ("acked-writes", "bank", "convergence", "back-to-ready", "start-times"):
        assert _check(r, name).status == "valid", _explain(r)
    assert _check(r, "start-times").checked > 0, _explain(r)
    assert not [c for c in r.checks if c.name == "worker-spi-total"], "worker_spi is pgbed's"
    assert "--flavor postgres" in r.config.replay_command()
