"""Container faults on a DockerCluster: kill, stop, restart and pause a node's container, and
network partitions (two-way and one-way) with iptables from a sidecar.

What it does: `ContainerNemesis(cluster)` handles the kinds CONTAINER_KILL, CONTAINER_STOP,
CONTAINER_RESTART, CONTAINER_PAUSE, PARTITION and PARTITION_ONE_WAY of orchestrator/faults.py,
under the contract of nemesis/base.py. `invoke(kind, rng)` picks its target with the campaign's
seeded rng among the nodes whose containers run (and are not paused) at that moment, or takes
the one named with `node=`; `partition(grudge)` applies an explicit grudge. Each Fault records
what was actually done: the container, the signal or stop timeout, the exit code, how long a
restart took, the grudge, the addresses and the exact iptables commands run per node.

- kill: `docker kill` (SIGKILL to tini, so to the whole PID namespace); the container stays
  down until heal. stop: `docker stop` (SIGINT, a fast shutdown; SIGKILL after the stop
  timeout); down until heal. restart: `docker restart`, then wait until the node is ready again.
  pause: the cgroup freezer; frozen until heal.
- partitions: the grudge (pure, nemesis/partition.py) is turned into iptables commands by
  `iptables_rules` and run, for every running node, in a sidecar container that shares that
  node's network namespace (`network_mode="container:<id>"`, CAP_NET_ADMIN, root, the cluster's
  own image — the node image, or the postgres flavour's — which has iptables). The node
  containers stay unprivileged. A sidecar lives from the
  first partition touching its node until heal.

heal() undoes everything, whatever did it, and is idempotent: it unpauses every paused node,
empties the partition chain on every node partitioned since the last heal, starts every node
whose container is down (the primary first, so standbys find it), removes the sidecars, and
stamps the active faults with what it did. A second heal finds nothing to do.

What it deliberately does not do: signal processes inside containers (nemesis/process.py, which
works unchanged on a DockerCluster), choose when to inject (the campaign), or judge (checkers).
It does not make partitions outlive a container restart: the rules live in the container's
network namespace, which a stop or kill destroys (a restarted node comes back unpartitioned,
as a rebooted Jepsen node does); heal then has nothing to flush there and says so.

Ownership: one campaign thread drives it. `sidecars`, `partitioned` and `active` are its own
bookkeeping; node containers belong to the cluster, which this nemesis never re-shapes (no
node is added, removed or re-cloned here). Sidecars carry the cluster's labels, so the
cluster's teardown removes any that a crashed run left.
"""

from __future__ import annotations

import random
import secrets
import shlex
import time
from dataclasses import dataclass
from typing import Any

from orchestrator import faults as F
from orchestrator.dockercluster import DockerCluster
from orchestrator.dockernode import DockerNode, container_gone
from orchestrator.localnode import DEFAULT_TIMEOUT
from orchestrator.nemesis import partition as P
from orchestrator.nemesis.base import Fault, NemesisError

LABEL_SIDECAR = "pgbed.sidecar"  # the node whose network namespace the sidecar shares


@dataclass
class Sidecar:
    container: Any
    node_started_at: str  # the node container's StartedAt when the sidecar joined its netns


class ContainerNemesis:
    kinds = F.CONTAINER_FAULTS

    def __init__(self, cluster: DockerCluster, *, stop_timeout: int = 10, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.cluster = cluster
        self.stop_timeout = stop_timeout
        self.timeout = timeout
        self.sidecars: dict[str, Sidecar] = {}
        self.partitioned: set[str] = set()  # nodes whose chain may hold DROP rules
        self.active: list[Fault] = []

    # -- contract ---------------------------------------------------------------------------------

    def setup(self) -> None:
        self.heal()

    def teardown(self) -> None:
        self.heal()

    def invoke(self, kind: str, rng: random.Random, *, node: str | None = None) -> Fault:
        fn = {F.CONTAINER_KILL: self._kill, F.CONTAINER_STOP: self._stop, F.CONTAINER_RESTART: self._restart,
              F.CONTAINER_PAUSE: self._pause, F.PARTITION: self._partition,
              F.PARTITION_ONE_WAY: self._partition_one_way}.get(kind)  # fmt: skip
        if fn is None:
            raise NemesisError(f"ContainerNemesis does not handle {kind!r}")
        fault = fn(self._target(rng, node), rng)
        self.active.append(fault)
        return fault

    def partition(self, grudge: P.Grudge, *, kind: str = F.PARTITION) -> Fault:
        """Apply an explicit grudge (nemesis/partition.py) to the running nodes."""
        fault = self._apply(grudge, kind, node=None)
        self.active.append(fault)
        return fault

    def heal(self, *, everywhere: bool = False) -> list[Fault]:
        """Undo every fault (see the module docstring). With `everywhere`, also empty the
        partition chain of every running node, not only of those this instance partitioned:
        for a caller that cannot know what an earlier nemesis left (a fixture after a failure)."""
        t = time.time()
        unpaused = []
        for n in self._nodes():
            if n.is_paused():
                n.unpause()
                unpaused.append(n.name)
        if everywhere:
            self.partitioned.update(n.name for n in self._nodes() if n.is_running())
        flushed, gone_with_netns = self._heal_partitions()
        started = []
        for n in sorted(self._nodes(), key=lambda n: n.name != self.cluster.primary_name):
            if not n.is_running():
                n.container_start(timeout=self.timeout)
                started.append(n.name)
        removed = self._remove_sidecars()
        detail = {"unpaused": unpaused, "started": started, "partitions_healed": flushed,
                  "partitions_gone_with_netns": gone_with_netns, "sidecars_removed": removed}  # fmt: skip
        healed = []
        for f in self.active:
            f.healed_at = t
            f.heal_detail = detail
            healed.append(f)
        self.active = []
        return healed

    # -- targets ----------------------------------------------------------------------------------

    def _nodes(self) -> list[DockerNode]:
        return sorted(self.cluster.nodes.values(), key=lambda n: n.name)

    def _reachable(self) -> list[DockerNode]:
        return [n for n in self._nodes() if n.is_running() and not n.is_paused()]

    def _target(self, rng: random.Random, name: str | None) -> DockerNode:
        live = self._reachable()
        if name is not None:
            n = self.cluster.node(name)
            if n not in live:
                raise NemesisError(f"{name}'s container is not running (or is paused)")
            return n
        if not live:
            raise NemesisError("no running container to inject a container fault into")
        return rng.choice(live)

    # -- container faults -------------------------------------------------------------------------

    def _base(self, n: DockerNode) -> dict[str, Any]:
        return {"container": n.container_name, "was_primary": n.name == self.cluster.primary_name}

    def _kill(self, n: DockerNode, rng: random.Random) -> Fault:
        code = n.container_kill("SIGKILL", timeout=self.timeout)
        return Fault(F.CONTAINER_KILL, n.name, None, {**self._base(n), "signal": "SIGKILL", "exit_code": code})

    def _stop(self, n: DockerNode, rng: random.Random) -> Fault:
        t0 = time.monotonic()
        code = n.container_stop(self.stop_timeout)
        detail = {**self._base(n), "stop_timeout": self.stop_timeout, "exit_code": code,
                  "seconds": round(time.monotonic() - t0, 3)}  # fmt: skip
        return Fault(F.CONTAINER_STOP, n.name, None, detail)

    def _restart(self, n: DockerNode, rng: random.Random) -> Fault:
        t0 = time.monotonic()
        n.container_restart(self.stop_timeout, wait=True, timeout=self.timeout)
        detail = {**self._base(n), "stop_timeout": self.stop_timeout, "ready_after_s": round(time.monotonic() - t0, 3)}
        return Fault(F.CONTAINER_RESTART, n.name, None, detail)

    def _pause(self, n: DockerNode, rng: random.Random) -> Fault:
        attempts = n.pause()
        return Fault(F.CONTAINER_PAUSE, n.name, None, {**self._base(n), "attempts": attempts})

    # -- partitions -------------------------------------------------------------------------------

    def _partition(self, n: DockerNode, rng: random.Random) -> Fault:
        names = [x.name for x in self._reachable()]
        if len(names) < 2:
            raise NemesisError(f"a partition needs two running nodes; running: {names}")
        return self._apply(P.isolate(n.name, names), F.PARTITION, node=n.name)

    def _partition_one_way(self, n: DockerNode, rng: random.Random) -> Fault:
        others = [x.name for x in self._reachable() if x.name != n.name]
        if not others:
            raise NemesisError(f"a one-way partition needs two running nodes; only {n.name} runs")
        src = rng.choice(others)
        return self._apply(P.one_way(src, n.name), F.PARTITION_ONE_WAY, node=n.name)

    def _apply(self, grudge: P.Grudge, kind: str, node: str | None) -> Fault:
        live = {x.name: x for x in self._reachable()}
        mentioned = set(grudge) | {d for drops in grudge.values() for d in drops}
        down = sorted(mentioned - set(live))
        if down:
            raise NemesisError(f"cannot partition {', '.join(down)}: container not running (or paused)")
        addr = {name: x.ip for name, x in live.items()}
        try:
            rules = P.iptables_rules(grudge, addr)
        except ValueError as e:
            raise NemesisError(f"bad partition {grudge!r}: {e}") from e
        ran: dict[str, list[str]] = {}
        for name, cmds in rules.items():
            self._run(live[name], cmds)
            ran[name] = [str(c) for c in cmds]
            if grudge.get(name):
                self.partitioned.add(name)
        detail = {"grudge": {k: sorted(v) for k, v in sorted(grudge.items())}, "describe": P.describe(grudge),
                  "addr": addr, "commands": ran}  # fmt: skip
        return Fault(kind, node, None, detail)

    def _heal_partitions(self) -> tuple[list[str], list[str]]:
        flushed, gone = [], []
        for name in sorted(self.partitioned):
            n = self.cluster.nodes.get(name)
            car = self.sidecars.get(name)
            if n is None or not n.is_running() or (car is not None and _started_at(n) != car.node_started_at):
                gone.append(name)  # a new network namespace (or none): the rules went with the old one
                continue
            self._run(n, P.heal_rules([name])[name])
            flushed.append(name)
        self.partitioned.clear()
        return flushed, gone

    def _sidecar(self, n: DockerNode) -> Any:
        """The sidecar in `n`'s current network namespace (made, or re-made after the node's
        container was restarted, which gave it a new namespace)."""
        started = _started_at(n)
        car = self.sidecars.get(n.name)
        if car is not None and car.node_started_at == started:
            return car.container
        if car is not None:
            _remove(car.container)
        c = self.cluster.client.containers.run(
            self.cluster.image,
            command=["sleep", "infinity"],
            detach=True,
            user="0",  # iptables needs root and CAP_NET_ADMIN; only the sidecar has them
            cap_add=["NET_ADMIN"],
            network_mode=f"container:{n.container.id}",
            labels={**self.cluster.labels, LABEL_SIDECAR: n.name},
            name=f"{n.container_name}-net-{secrets.token_hex(2)}",
        )
        self.sidecars[n.name] = Sidecar(c, started)
        return c

    def _run(self, n: DockerNode, cmds: list[P.Cmd]) -> None:
        """The commands, in order, in one shell in `n`'s network namespace; a command that may
        fail (partition.py says which) is allowed to."""
        script = "set -e\n" + "\n".join(shlex.join(c.argv) + (" 2>/dev/null || true" if c.ok_to_fail else "")
                                        for c in cmds)  # fmt: skip
        code, out = self._sidecar(n).exec_run(["sh", "-c", script], user="0")
        if code != 0:
            text = out.decode(errors="replace") if out else ""
            raise NemesisError(f"iptables in {n.name}'s network namespace exited {code}: {text.strip()}\n"
                               f"commands:\n{script}")  # fmt: skip

    def _remove_sidecars(self) -> int:
        n = 0
        for car in self.sidecars.values():
            _remove(car.container)
            n += 1
        self.sidecars.clear()
        return n


def _started_at(n: DockerNode) -> str:
    n.container.reload()
    return str(n.container.attrs["State"].get("StartedAt", ""))


def _remove(container: Any) -> None:
    """Remove a sidecar with its anonymous volume (the node image declares VOLUME for $PGDATA, so
    every sidecar of that image gets one, which `docker rm` without -v would leave behind)."""
    try:
        container.remove(force=True, v=True)
    except Exception as e:
        if not container_gone(e):
            raise
