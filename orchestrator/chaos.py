"""Chaos campaigns: workloads and faults interleaved on a cluster, then every checker.

What it does: `run_campaign(cfg)` brings up (or is given) a cluster, creates the workloads'
tables, starts their clients, and for `duration` seconds injects faults of the kinds asked for,
with seeded waits between them, healing each one and waiting until every node answers again
(the liveness deadline) before the next. When the primary is lost for good (FAILOVER) the most
advanced standby is promoted and the rest follow. At the end it heals everything, stops the
clients, waits for the standbys to catch up, reads the final state and runs the checkers over
the history, the fault log, the nodes' jsonlog events and the view snapshots it sampled. It
writes a run directory — history.jsonl, faults.jsonl, checks.json, summary.txt and every
node's server log and jsonlog — prints progress while it runs and a readable summary at the
end, and (with a metrics port) exports `pgbed_chaos_*` metrics for Prometheus.

What it deliberately does not do: read `pgbed.historic_bugs` or any setting to judge: the
checkers see only what the nodes said. Replay a run with the same seed and fault list: the
schedule (which fault, when, which target among those that exist) is drawn from the seed, so
a replay injects the same faults in the same order, though the processes' own timing differs.

Ownership: the campaign thread drives the nemesis and the sampler; client threads append to the
history; nothing else writes the run directory.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import faults as F
from orchestrator.checker.base import CheckResult, check_safe, merge
from orchestrator.cluster import Cluster, wait_all_ready
from orchestrator.history import NEMESIS, History
from orchestrator.localnode import LocalNode
from orchestrator.nemesis.base import Composed, Fault, NemesisError
from orchestrator.nemesis.network import ProxyNemesis
from orchestrator.nemesis.process import ProcessNemesis
from orchestrator.workload import AckedWrites, Bank, WorkerSpiDeltas

# A restartable static worker of each start time on every node, so that the start-time and
# BGW-17 checkers have something to judge in every campaign, and worker_spi's static worker for
# the deltas workload (RecoveryFinished: it runs on whichever node is the primary).
STATIC_WORKERS = "early:postmaster_start:1:run;cons:consistent_state:1:run;fin:recovery_finished:1:run"
BGW_SETTINGS = {"shared_preload_libraries": "'pgbed_test,worker_spi'",
                "pgbed_test__static_workers": f"'{STATIC_WORKERS}'",
                "worker_spi__total_workers": "1", "worker_spi__naptime": "1"}  # fmt: skip


# PostgreSQL 15 (the postgres flavour): the same static workers through the C pgbed_test, no
# worker_spi (Debian does not ship it), and the postmaster's DEBUG1 "starting background worker
# process" lines, from which orchestrator/pgevents.py derives the bgw_start events.
PG_BGW_SETTINGS = {"shared_preload_libraries": "'pgbed_test'", "pgbed_test__static_workers": f"'{STATIC_WORKERS}'",
                   "log_min_messages": "debug1"}  # fmt: skip


def campaign_settings(retry_interval_s: float = 1.0, bgworkers: bool = True,
                      extra: dict[str, Any] | None = None, flavor: str = "pgbed",
                      say: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """postgresql.conf settings of every node of a campaign's cluster (compose.yaml's
    PGBED_BASE_CONF says the same for the compose stack). On PostgreSQL the static workers need
    the C pgbed_test installed; without it there are none, and `say` is told why."""
    bgw = {}
    if bgworkers and flavor == "pgbed":
        bgw = BGW_SETTINGS
    elif bgworkers:
        from orchestrator.pgflavor import pgbed_test_installed

        if pgbed_test_installed():
            bgw = PG_BGW_SETTINGS
        elif say is not None:
            say("[chaos] PostgreSQL 15 has no pgbed_test extension (make -C ext/pgbed_test install): "
                "no static workers, so the start-time checkers will say UNKNOWN")  # fmt: skip
    return {"wal_retrieve_retry_interval": f"'{int(retry_interval_s * 1000)}ms'", **bgw, **(extra or {})}


@dataclass
class CampaignConfig:
    seed: int
    duration_s: float
    faults: tuple[str, ...]
    rundir: Path
    standbys: int = 2
    interval_s: tuple[float, float] = (0.5, 2.0)  # quiet time before each fault
    hold_s: tuple[float, float] = (0.3, 1.5)  # how long a fault stays before its heal
    liveness_deadline_s: float = 30.0
    retry_interval_s: float = 1.0  # wal_retrieve_retry_interval the cluster is given
    metrics_port: int = 0
    settings: dict[str, Any] = field(default_factory=dict)  # extra postgresql.conf for every node
    roles: tuple[str, ...] = F.ROLES
    signals: dict[str, tuple[str, ...]] | None = None  # per-role signal menus (default: nemesis/process.py)
    min_acked: int = 50
    sample_every_s: float = 0.2  # the slot views are sampled this often while the campaign runs
    bgworkers: bool = True  # preload pgbed_test with a static worker of each start time on every node
    settle_s: float = 2.5  # quiet time before the final reads, so restarts after the last fault are seen
    backend: str = "local"  # for the replay command; the cluster itself is made by the caller
    target: str = ""  # the running cluster attached to: a compose project, or a local cluster's directory
    table_suffix: str = ""  # workload tables of their own on a long-lived cluster (acked_<suffix>, …)
    # pgbed, or postgres: the campaign's own local cluster is real PostgreSQL 15, without the
    # pgbed-only parts (worker_spi and its deltas workload, pg_stat_bgworker, events PostgreSQL
    # does not log: the checkers that need them say UNKNOWN); the static workers come from the C
    # pgbed_test and the events from PostgreSQL's log (orchestrator/pgevents.py), so the same
    # faults and checkers judge the system pgbed models
    flavor: str = "pgbed"

    def replay_command(self) -> str:
        cmd = (f"python -m orchestrator chaos --seed {self.seed} --duration {self.duration_s:g} "
               f"--faults {','.join(self.faults)}")  # fmt: skip
        if self.backend == "compose":
            return f"{cmd} --compose-project {self.target}"
        if self.target:
            return f"{cmd} --cluster-dir {self.target}"
        return (f"{cmd} --standbys {self.standbys}" + (f" --backend {self.backend}" if self.backend != "local" else "")
                + (f" --flavor {self.flavor}" if self.flavor != "pgbed" else ""))  # fmt: skip


@dataclass
class CampaignResult:
    verdict: CheckResult
    checks: list[CheckResult]
    faults: list[Fault]
    history: History
    rundir: Path
    config: CampaignConfig

    def summary(self) -> str:
        head = f"campaign seed={self.config.seed} faults={','.join(self.config.faults)}"
        lines = [f"{head}: {self.verdict.status.upper()}",
                 f"  {len(self.faults)} faults, {len(self.history)} ops, run directory {self.rundir}",
                 f"  replay: {self.config.replay_command()}"]  # fmt: skip
        for c in self.checks:
            lines.append(f"  {c.status:8s} {c.name} ({c.checked} checked)")
            lines.extend(f"           - {e}" for e in c.evidence[:5])
        return "\n".join(lines)


class Metrics:
    """pgbed_chaos_* for Prometheus (names in node/metricnames.py): faults injected by kind,
    checks by result, the current phase, seconds to recover after each heal, client operations,
    campaigns by verdict. One instance serves every campaign of a process (`--forever`), so the
    endpoint stays up between campaigns (phase "idle")."""

    PHASES = ("idle", "setup", "chaos", "heal", "check", "done")

    def __init__(self, port: int, addr: str = "0.0.0.0") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

        from node import metricnames as M

        def spec(name: str) -> tuple[str, str, list[str]]:
            _kind, help_, labels = M.CHAOS_METRICS[name]
            return name.removesuffix("_total"), help_, list(labels)

        r = self.registry = CollectorRegistry()
        self.faults = Counter(*spec(M.CHAOS_FAULTS), registry=r)
        self.checks = Counter(*spec(M.CHAOS_CHECKS), registry=r)
        self.phase = Gauge(*spec(M.CHAOS_PHASE), registry=r)
        name, help_, _ = spec(M.CHAOS_RECOVERY)
        self.recovery = Histogram(name, help_, buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=r)
        self.ops = Counter(*spec(M.CHAOS_OPS), registry=r)
        self.campaigns = Counter(*spec(M.CHAOS_CAMPAIGNS), registry=r)
        for kind in F.ALL_FAULTS:  # every kind exported from the start, at 0
            self.faults.labels(kind)
        for verdict in ("valid", "invalid", "unknown"):
            self.campaigns.labels(verdict)
        self.set_phase("idle")
        self.server = None
        if port:
            self.server, _thread = start_http_server(port, addr=addr, registry=r)

    def set_phase(self, phase: str) -> None:
        for p in self.PHASES:
            self.phase.labels(p).set(1 if p == phase else 0)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()


def _all_nodes(cluster: Cluster) -> dict[str, LocalNode]:
    out = dict(cluster.nodes)
    for i, r in enumerate(cluster.retired):
        # a local retired node is named after its directory (primary-1); a retired container
        # keeps its node name, so it gets a suffix here
        out[r.name if r.name not in out else f"{r.name}-{i + 1}"] = r
    return out


def _sample(cluster: Cluster, samples: dict[str, list[Any]]) -> None:
    """One snapshot of the slot views per node that answers now, with the time it was taken
    (pgbed's views: nothing to take on PostgreSQL, whose checkers then say UNKNOWN)."""
    if cluster.flavor != "pgbed":
        return
    for name, n in list(cluster.nodes.items()):
        if not n.is_running():
            continue
        try:
            with n.connect(connect_timeout=2) as c:
                snap: dict[str, Any] = {"node": name, "t": time.time()}
                for key, view in (("walsnd", "pgbed_walsnd_slots"), ("walrcv", "pgbed_walrcv"),
                                  ("bgw", "pg_stat_bgworker")):  # fmt: skip
                    cur = c.execute(f"SELECT * FROM {view}")
                    cols = [d.name for d in cur.description or []]
                    snap[key] = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
            samples.setdefault("snapshots", []).append(snap)
        except Exception:  # a node that cannot answer now is sampled next time
            continue


def run_campaign(cfg: CampaignConfig, *, cluster: Cluster | None = None,
                 progress: Callable[[str], None] | None = None, metrics: Metrics | None = None,
                 interrupt: threading.Event | None = None) -> CampaignResult:  # fmt: skip
    """One campaign. `interrupt` (e.g. set by SIGTERM) ends the fault phase early; the heal, the
    final reads and the checkers still run, so nothing is left paused or partitioned."""
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    rng = random.Random(cfg.seed)
    cfg.rundir.mkdir(parents=True, exist_ok=True)
    own_metrics = metrics is None
    if metrics is None:
        metrics = Metrics(cfg.metrics_port)
    metrics.set_phase("setup")
    own_cluster = cluster is None
    bgworkers = cfg.bgworkers and cfg.flavor == "pgbed"  # worker_spi and its deltas are pgbed's
    settings = campaign_settings(cfg.retry_interval_s, cfg.bgworkers, cfg.settings, cfg.flavor, say)
    t_setup = time.monotonic()
    if cluster is None:
        say(f"[chaos] seed {cfg.seed}: bringing up a primary and {cfg.standbys} standbys under {cfg.rundir}")
        cluster = Cluster.local(cfg.rundir / "cluster", standbys=cfg.standbys, settings=settings, flavor=cfg.flavor)
    took = f" in {time.monotonic() - t_setup:.1f} s" if own_cluster else ""
    say(f"[chaos] cluster ({cluster.backend}) ready{took}: "
        + ", ".join(f"{n.name}={n.host}:{n.port}" for n in cluster.nodes.values()))  # fmt: skip
    history = History()
    sfx = cfg.table_suffix
    acked = AckedWrites(table=f"acked_{sfx}" if sfx else None)
    bank = Bank(table=f"accounts_{sfx}" if sfx else None)
    spi = WorkerSpiDeltas() if bgworkers else None
    stop = threading.Event()
    faults: list[Fault] = []
    heals: list[dict[str, Any]] = []
    ready_times: dict[str, list[float]] = {n: [] for n in cluster.nodes}
    samples: dict[str, list[Any]] = {}
    parts: list[Any] = [ProcessNemesis(cluster, roles=cfg.roles, signals=cfg.signals)]
    if any(k in F.PROXY_FAULTS for k in cfg.faults):
        parts.append(ProxyNemesis(cluster))
    if any(k in F.CONTAINER_FAULTS for k in cfg.faults):
        from orchestrator.nemesis.container import ContainerNemesis

        parts.append(ContainerNemesis(cluster))  # type: ignore[arg-type]
    nemesis = Composed(*parts)
    clients = []
    sampler_stop = threading.Event()

    def sampler() -> None:
        while not sampler_stop.wait(cfg.sample_every_s):
            _sample(cluster, samples)

    sampler_thread = threading.Thread(target=sampler, name="pgbed-sampler", daemon=True)
    try:
        for w in (acked, bank, spi):
            if w is not None:
                w.setup(cluster)
        cluster.catch_up()
        clients = acked.clients(cluster, history, rng, stop) + bank.clients(cluster, history, rng, stop)
        if spi is not None:
            clients += spi.clients(cluster, history, rng, stop)
        for c in clients:
            c.start()
        sampler_thread.start()
        nemesis.setup()
        metrics.set_phase("chaos")
        t_end = time.monotonic() + cfg.duration_s
        n_fault = 0
        halt = interrupt or threading.Event()
        while time.monotonic() < t_end and not halt.is_set():
            halt.wait(rng.uniform(*cfg.interval_s))
            if time.monotonic() >= t_end or halt.is_set():
                break
            kind = rng.choice(cfg.faults)
            n_fault += 1
            try:
                f = nemesis.invoke(kind, rng)
            except NemesisError as e:
                history.append(NEMESIS, "fail", kind, str(e))
                say(f"[chaos] #{n_fault} {kind}: not injected ({e})")
                continue
            faults.append(f)
            metrics.faults.labels(kind).inc()
            history.append(NEMESIS, "info", kind, f.to_dict())
            elapsed = cfg.duration_s - (t_end - time.monotonic())
            say(f"[chaos] #{n_fault} t+{elapsed:.1f}s/{cfg.duration_s:g}s ({len(history)} ops) {f.describe()}")
            time.sleep(rng.uniform(*cfg.hold_s))
            t_heal = time.time()
            nemesis.heal()
            heals.append({"t": t_heal, "kind": kind, "node": None})
            try:
                got = wait_all_ready(cluster, timeout=cfg.liveness_deadline_s)
            except AssertionError as e:  # recorded; the liveness checker judges it
                say(f"[chaos]   not every node answered within {cfg.liveness_deadline_s:g} s: {e}".splitlines()[0])
                got = {}
            for name, t in got.items():
                ready_times.setdefault(name, []).append(t)
            if got:
                metrics.recovery.observe(max(got.values()) - t_heal)
            # (the sampler thread takes the slot snapshots: a view read can wait on a slot lock
            # that a process held by an injection point keeps, and must not hold up the schedule)
        metrics.set_phase("heal")
        say("[chaos] healing and stopping the clients")
        nemesis.teardown()
        sampler_stop.set()
        stop.set()
        for c in clients:
            c.join(30)
        heals.append({"t": time.time(), "kind": "final", "node": None})
        cluster.ensure_running()
        final_ready = wait_all_ready(cluster, timeout=cfg.liveness_deadline_s)
        for name, t in final_ready.items():
            ready_times.setdefault(name, []).append(t)
        time.sleep(cfg.settle_s)
        cluster.wait_streaming(timeout=cfg.liveness_deadline_s)
        cluster.catch_up(timeout=cfg.liveness_deadline_s)
        _sample(cluster, samples)
        metrics.set_phase("check")
        checks = _run_checkers(cfg, cluster, history, faults, heals, ready_times, samples, acked, bank, spi)
    finally:
        stop.set()
        sampler_stop.set()
        for c in clients:
            c.join(5)
        if sampler_thread.is_alive():
            sampler_thread.join(5)
        _write_rundir(cfg, cluster, history, faults)
        if own_cluster:
            cluster.teardown()
    for c in checks:
        metrics.checks.labels(c.name, c.status).inc()
    for op in history:
        if op.process != NEMESIS and op.type != "invoke":
            metrics.ops.labels(op.type).inc()
    verdict = merge(checks, "campaign")
    result = CampaignResult(verdict, checks, faults, history, cfg.rundir, cfg)
    (cfg.rundir / "checks.json").write_text(json.dumps({"verdict": verdict.to_dict(),
                                                        "checks": [c.to_dict() for c in checks],
                                                        "config": {**asdict(cfg), "rundir": str(cfg.rundir)}},
                                                       indent=2, default=str))  # fmt: skip
    (cfg.rundir / "summary.txt").write_text(result.summary() + "\n")
    metrics.campaigns.labels(verdict.status).inc()
    metrics.set_phase("done")
    if own_metrics:
        metrics.close()
    return result


def _run_checkers(cfg: CampaignConfig, cluster: Cluster, history: History, faults: list[Fault],
                  heals: list[dict[str, Any]], ready_times: dict[str, list[float]], samples: dict[str, list[Any]],
                  acked: AckedWrites, bank: Bank, spi: WorkerSpiDeltas | None) -> list[CheckResult]:  # fmt: skip
    from orchestrator.checker import data, liveness, process

    nodes = _all_nodes(cluster)
    events = {name: n.events() for name, n in nodes.items()}
    def rows(n: Any) -> dict[str, list[Any]]:
        return {"acked": sorted(n.safe_sql(f"SELECT k FROM {acked.table}")),
                "accounts": sorted(n.safe_sql(f"SELECT id, balance FROM {bank.table}"))}  # fmt: skip

    primary_rows = rows(cluster.primary)
    final_keys = [int(r[0]) for r in primary_rows["acked"]]
    standby_rows = {s.name: rows(s) for s in cluster.standbys}
    signal_faults = [{"kind": f.kind, "node": f.node, "role": f.role, "signal": f.detail.get("signal"),
                      "pid": f.detail.get("pid"), "t": f.t} for f in faults if f.kind == F.SIGNAL]  # fmt: skip
    checks = [
        check_safe("acked-writes", data.acked_writes, list(history), final_keys, min_ok=cfg.min_acked),
        check_safe("bank", data.bank, list(history), total=bank.total, accounts=bank.accounts),
        check_safe("convergence", data.convergence, primary_rows, standby_rows),
        check_safe("start-times", process.start_times, events),
        check_safe("bgw17-reset", process.bgw17_reset, events),
        _slot_checks(samples.get("snapshots", []), events),
        _bgw_slot_checks(cluster, samples.get("snapshots", []), events),
        check_safe("signal-exits", process.signal_exits, signal_faults, events),
        check_safe("back-to-ready", liveness.back_to_ready, heals, ready_times,
                   deadline_s=cfg.liveness_deadline_s),
    ]  # fmt: skip
    if spi is not None:
        total, pending = spi.final_read(cluster, timeout=cfg.liveness_deadline_s)
        checks.append(check_safe("worker-spi-total", data.worker_spi_total, list(history), total, pending))
    for s in cluster.standbys:
        r = check_safe("streaming-resumed", process.streaming_resumed, events.get(s.name, []),
                       retry_interval_s=cfg.retry_interval_s, deadline_s=cfg.liveness_deadline_s)
        r.name = f"streaming-resumed:{s.name}"
        checks.append(r)
    return checks


def _slot_checks(snapshots: list[dict[str, Any]], events: dict[str, list[dict[str, Any]]]) -> CheckResult:
    """The slot invariants on every snapshot, each judged against the exits the postmaster had
    reported before it was taken (a process that exits later was alive then)."""
    from orchestrator.checker import process

    results = []
    for snap in snapshots:
        before = [e for e in events.get(snap["node"], []) if float(e.get("ts", 0)) < snap["t"] - 0.05]
        r = check_safe("replication-slots", process.replication_slots, snap["walsnd"], snap["walrcv"], before)
        r.evidence = [f"{snap['node']} at {snap['t']:.3f}: {e}" for e in r.evidence]
        results.append(r)
    out = merge(results, "replication-slots")
    out.checked = len(snapshots)
    return out


def _bgw_slot_checks(cluster: Cluster, snapshots: list[dict[str, Any]],
                     events: dict[str, list[dict[str, Any]]]) -> CheckResult:  # fmt: skip
    """pg_stat_bgworker snapshots per node incarnation: a snapshot taken before a node was
    re-cloned belongs to the retired directory's events; the incarnation number is how many
    postmaster starts and reinits that node had logged by then."""
    from orchestrator.checker import process

    by_node: dict[str, list[dict[str, Any]]] = {}
    for snap in snapshots:
        owner = snap["node"]
        for name, retired, t in cluster.reclones:
            if name == owner and snap["t"] < t:
                owner = retired
                break
        evs = events.get(owner, [])
        inc = sum(1 for e in evs if e.get("event") in ("postmaster_start", "reinit") and float(e["ts"]) <= snap["t"])
        by_node.setdefault(owner, []).append({"t": snap["t"], "incarnation": inc, "rows": snap.get("bgw", [])})
    results = []
    for node, snaps in sorted(by_node.items()):
        r = check_safe("bgw-slots", process.bgw_slots, snaps, events.get(node, []))
        r.evidence = [f"{node}: {e}" for e in r.evidence]
        results.append(r)
    from orchestrator.checker.base import merge_judged

    return merge_judged(results, "bgw-slots")


def _write_rundir(cfg: CampaignConfig, cluster: Cluster, history: History, faults: list[Fault]) -> None:
    history.save(cfg.rundir / "history.jsonl")
    with open(cfg.rundir / "faults.jsonl", "w") as fh:
        for f in faults:
            fh.write(json.dumps(f.to_dict(), default=str) + "\n")
    logs = cfg.rundir / "logs"
    logs.mkdir(exist_ok=True)
    for name, n in _all_nodes(cluster).items():
        try:
            if hasattr(n, "logfile"):  # a local node: copy its files
                shutil.copyfile(n.logfile, logs / f"{name}.log")
                shutil.copyfile(n.datadir / "log" / "postgresql.json", logs / f"{name}.json")
            else:  # a container: what docker logs and the jsonlog inside it say
                (logs / f"{name}.log").write_text(n.log_content())
                (logs / f"{name}.json").write_text("".join(json.dumps(e) + "\n" for e in n.events()))
        except Exception:  # a missing log must not hide the campaign's result
            pass


def docker_cluster(cfg: CampaignConfig, image: str, labels: dict[str, str] | None = None) -> Cluster:
    """A DockerCluster for a campaign, its containers and network labelled pgbed.run=<rundir's
    name> (or `labels`, e.g. a test run's) so that `docker rm -f $(docker ps -aq -f
    label=pgbed.run=…)` finds leftovers."""
    import docker

    from orchestrator.dockercluster import DockerCluster

    settings = campaign_settings(cfg.retry_interval_s, cfg.bgworkers, cfg.settings)
    labels = labels or {"pgbed.run": cfg.rundir.name, "pgbed.worker": "campaign"}
    return DockerCluster(docker.from_env(), image, labels, standbys=cfg.standbys, settings=settings)


def _pair(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(",")
    a, b = float(lo), float(hi or lo)
    if not 0 <= a <= b:
        raise ValueError(f"{text!r}: want MIN,MAX seconds with 0 <= MIN <= MAX")
    return a, b


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os
    import signal
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m orchestrator chaos",
                                 description="Run seeded chaos campaigns: on a cluster of their own (local processes "
                                             "or containers), or against a running cluster (a `pgbed cluster` or a "
                                             "compose stack). PGBED_CHAOS=off in the environment only serves the "
                                             "metrics (phase idle) until SIGTERM.")  # fmt: skip
    env_seed = os.environ.get("PGBED_CHAOS_SEED")
    ap.add_argument("--seed", type=int, default=int(env_seed) if env_seed else None,
                    help="schedule seed (default: PGBED_CHAOS_SEED, else random, printed)")  # fmt: skip
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of faults per campaign (default 60)")
    defaults = {"local": F.PROCESS_FAULTS + F.PROXY_FAULTS, "docker": F.PROCESS_FAULTS + F.CONTAINER_FAULTS,
                "compose": F.PROCESS_FAULTS + F.CONTAINER_FAULTS}  # fmt: skip
    ap.add_argument("--faults", default=os.environ.get("PGBED_CHAOS_FAULTS") or None,
                    help="comma-separated fault kinds (default: PGBED_CHAOS_FAULTS, else every kind the "
                         "backend supports; "
                         f"local: {','.join(defaults['local'])}; "
                         f"docker and compose: {','.join(defaults['docker'])})")  # fmt: skip
    ap.add_argument("--interval", default="0.5,2", help="MIN,MAX seconds of quiet before each fault (default 0.5,2)")
    ap.add_argument("--standbys", type=int, default=2)
    ap.add_argument("--rundir", default=None, help="run directory (default: a new temp directory; with --forever "
                                                   "one subdirectory per campaign)")  # fmt: skip
    ap.add_argument("--metrics-port", type=int, default=0, help="serve pgbed_chaos_* metrics here (0: off)")
    ap.add_argument("--forever", action="store_true",
                    help="campaign after campaign (seeds seed, seed+1, …) until SIGTERM/SIGINT, against a "
                         "running cluster (--cluster-dir or --compose-project)")  # fmt: skip
    ap.add_argument("--pause", type=float, default=10.0, help="with --forever: seconds between campaigns")
    ap.add_argument("--backend", choices=["local", "docker"], default="local",
                    help="local processes, or containers of the node image (--image, built beforehand)")  # fmt: skip
    ap.add_argument("--image", default="pgbed-node:test", help="node image for --backend docker")
    ap.add_argument("--flavor", choices=["pgbed", "postgres"], default="pgbed",
                    help="postgres: the campaign's own local cluster runs Debian's PostgreSQL 15 (pgbed diff's "
                         "flavour): static workers from the C pgbed_test, events derived from its log, no "
                         "worker_spi")  # fmt: skip
    ap.add_argument("--cluster-dir", default=None, type=Path, metavar="DIR",
                    help="run against the running local cluster of `pgbed cluster up --dir DIR` instead of a "
                         "cluster of its own (it stays up afterwards, with the roles the campaign left)")  # fmt: skip
    ap.add_argument("--compose-project", default=None, metavar="PROJECT",
                    help="run against the nodes of this running compose project (found by compose's "
                         "labels; 'auto': the project of the container this runs in) instead of a cluster "
                         "of its own")  # fmt: skip
    args = ap.parse_args(argv)
    backend = "compose" if args.compose_project else args.backend
    if args.cluster_dir and (args.compose_project or args.backend != "local"):
        ap.error("--cluster-dir is a local cluster: not with --compose-project or --backend docker")
    if args.forever and not (args.cluster_dir or args.compose_project):
        ap.error("--forever runs against a running cluster: give --cluster-dir or --compose-project")
    try:
        kinds = F.parse_faults(args.faults) if args.faults else defaults[backend]
        interval = _pair(args.interval)
    except ValueError as e:
        ap.error(str(e))
    if backend == "local" and (bad := [k for k in kinds if k in F.CONTAINER_FAULTS]):
        ap.error(f"fault kinds {', '.join(bad)} need --backend docker or --compose-project")
    if args.cluster_dir:  # the cluster's own flavour (pgbed cluster up --flavor), from its manifest
        try:
            saved = json.loads((args.cluster_dir / Cluster.MANIFEST).read_text()).get("flavor", "pgbed")
        except (OSError, ValueError) as e:
            ap.error(f"--cluster-dir {args.cluster_dir}: no cluster there ({e}); make one with `pgbed cluster up`")
        if args.flavor != "pgbed" and args.flavor != saved:
            ap.error(f"--flavor {args.flavor}: the cluster at {args.cluster_dir} is {saved}")
        args.flavor = saved
    if args.flavor == "postgres" and backend != "local":
        ap.error("--flavor postgres is for a local cluster (--backend local)")
    if args.flavor == "postgres" and F.FAULT_HOOK in kinds:
        if args.faults:
            ap.error("fault kind fault-hook arms pgbed's injection points, which PostgreSQL 15 has not")
        kinds = tuple(k for k in kinds if k != F.FAULT_HOOK)
    if backend != "local" and (bad := [k for k in kinds if k in F.PROXY_FAULTS]):
        ap.error(f"fault kinds {', '.join(bad)} use a proxy on this host, which containers cannot reach: "
                 "use --backend local (partitions are the Docker backend's network faults)")  # fmt: skip

    stop = threading.Event()

    def on_stop(signum: int, frame: Any) -> None:
        print(f"[chaos] {signal.Signals(signum).name}: finishing (heal, checks) and stopping", file=sys.stderr,
              flush=True)  # fmt: skip
        stop.set()

    signal.signal(signal.SIGTERM, on_stop)
    if args.forever:
        signal.signal(signal.SIGINT, on_stop)
    metrics = Metrics(args.metrics_port)
    try:
        if os.environ.get("PGBED_CHAOS", "").lower() == "off":
            print("[chaos] PGBED_CHAOS=off: serving metrics only (phase idle) until SIGTERM", file=sys.stderr,
                  flush=True)  # fmt: skip
            stop.wait()
            return 0
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
        base = Path(args.rundir) if args.rundir else Path(tempfile.mkdtemp(prefix=f"pgbed-chaos-{seed}-"))
        worst = 0
        n = 0
        while True:
            rundir = base / f"campaign-{n + 1:04d}-seed{seed + n}" if args.forever else base  # n: done so far
            cfg = CampaignConfig(seed=seed + n, duration_s=args.duration, faults=kinds, rundir=rundir,
                                 standbys=args.standbys, metrics_port=args.metrics_port, backend=backend,
                                 interval_s=interval, flavor=args.flavor)  # fmt: skip
            n += 1
            try:
                result = _one_campaign(cfg, args, metrics, stop)
            except Exception as e:  # a campaign that could not run (a node that never came back)
                if not args.forever:
                    raise
                print(f"[chaos] campaign {n} (seed {cfg.seed}) could not run: {e}".splitlines()[0], file=sys.stderr,
                      flush=True)  # fmt: skip
                metrics.campaigns.labels("unknown").inc()
                worst = max(worst, 1)
            else:
                print(result.summary(), flush=True)
                worst = max(worst, 1 if result.verdict.status == "invalid" else 0)
            if not args.forever or stop.wait(args.pause):
                return worst
            metrics.set_phase("idle")
    finally:
        metrics.close()


def _one_campaign(cfg: CampaignConfig, args: Any, metrics: Metrics, stop: threading.Event) -> CampaignResult:
    cluster: Cluster | None = None
    t0 = time.monotonic()
    if args.cluster_dir:
        print(f"[chaos] seed {cfg.seed}: attaching to the cluster at {args.cluster_dir}", file=sys.stderr, flush=True)
        cluster = Cluster.attach(args.cluster_dir)
        cfg.target = str(args.cluster_dir.resolve())
        cfg.table_suffix = f"s{cfg.seed}_{int(time.time())}"
        cfg.standbys = len(cluster.standbys)
    elif cfg.backend == "compose":
        cluster = compose_cluster(cfg, args.compose_project)
        cfg.standbys = len(cluster.standbys)
    elif cfg.backend == "docker":
        print(f"[chaos] seed {cfg.seed}: bringing up a primary and {cfg.standbys} standbys in containers of "
              f"{args.image}", file=sys.stderr, flush=True)  # fmt: skip
        cluster = docker_cluster(cfg, args.image)
        print(f"[chaos] containers up in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    try:
        return run_campaign(cfg, cluster=cluster, metrics=metrics, interrupt=stop)
    finally:
        if args.cluster_dir and cluster is not None:
            cluster.save()  # it stays up, with the roles this campaign left
        elif cluster is not None:
            cluster.teardown()


def compose_cluster(cfg: CampaignConfig, project: str) -> Cluster:
    """The nodes of a running compose project (orchestrator/composecluster.py); the campaign's
    helpers and sidecars are labelled pgbed.run=<rundir's name>, and its workload tables get a
    suffix of their own, so campaigns can follow each other on the same stack."""
    import docker

    from orchestrator.composecluster import ComposeCluster, own_project

    client = docker.from_env()
    if project == "auto":
        found = own_project(client)
        if not found:
            raise SystemExit("--compose-project auto: this process does not run in a compose container")
        project = found
    print(f"[chaos] seed {cfg.seed}: attaching to compose project {project!r}", file=sys.stderr, flush=True)
    cluster = ComposeCluster(client, project, labels={"pgbed.run": cfg.rundir.name, "pgbed.worker": "campaign"})
    cfg.target = project
    cfg.table_suffix = f"s{cfg.seed}_{int(time.time())}"
    return cluster
