"""Network faults on the replication connections of a local cluster, through userspace proxies.

What it does: `ProxyNemesis(cluster)` puts one TcpProxy (nemesis/proxy.py) between each
standby's walreceiver and the primary at setup — the standby's primary_conninfo points at the
proxy, written into postgresql.auto.conf and reloaded, which restarts its walreceiver — and
handles the kinds LATENCY, RESET and BLACKHOLE of orchestrator/faults.py on one standby's proxy
chosen by the campaign's seeded rng. `heal()` returns every proxy to pass-through and, when the
primary has changed (failover re-pointed the standbys straight at the new one), puts fresh
proxies in front of the new primary; it is idempotent.

What it deliberately does not do: partitions between hosts (nemesis/partition.py with the
Docker backend) or faults on client connections (clients connect to the nodes directly).

Ownership: one campaign thread drives it; each proxy's own thread owns its sockets.
"""

from __future__ import annotations

import random
import time

from orchestrator import faults as F
from orchestrator.cluster import Cluster
from orchestrator.localnode import LocalNode
from orchestrator.nemesis.base import Fault, NemesisError
from orchestrator.nemesis.proxy import TcpProxy


class ProxyNemesis:
    kinds = (F.LATENCY, F.RESET, F.BLACKHOLE)

    def __init__(self, cluster: Cluster, *, latency_ms: tuple[float, float] = (50.0, 400.0)) -> None:
        self.cluster = cluster
        self.latency_ms = latency_ms
        self.proxies: dict[str, tuple[TcpProxy, str, int]] = {}  # standby → (proxy, upstream host, port)
        self.active: list[Fault] = []

    def setup(self) -> None:
        self._place()

    def teardown(self) -> None:
        self.heal()
        for name in list(self.proxies):
            self._unplace(name)

    def _place(self) -> list[str]:
        """A proxy in front of the current primary for every standby that lacks one."""
        p = self.cluster.primary
        placed = []
        for s in self.cluster.standbys:
            cur = self.proxies.get(s.name)
            if cur is not None and (cur[1], cur[2]) == (p.host, p.port):
                continue
            if cur is not None:
                cur[0].stop()
            proxy = TcpProxy(p.host, p.port).start()
            self.proxies[s.name] = (proxy, p.host, p.port)
            self._point(s, "127.0.0.1", proxy.port)
            placed.append(s.name)
        return placed

    def _unplace(self, name: str) -> None:
        proxy, _, _ = self.proxies.pop(name)
        s = self.cluster.nodes.get(name)
        if s is not None and name != self.cluster.primary_name:
            p = self.cluster.primary
            self._point(s, p.host, p.port)
        proxy.stop()

    @staticmethod
    def _point(s: LocalNode, host: str, port: int) -> None:
        s.set_auto_conf(primary_conninfo=f"'host={host} port={port} user=postgres application_name={s.name}'")
        if s.is_running():
            s.reload()

    def invoke(self, kind: str, rng: random.Random) -> Fault:
        names = sorted(n for n in self.proxies if n in self.cluster.nodes and n != self.cluster.primary_name)
        if not names:
            raise NemesisError("no standby behind a proxy")
        name = rng.choice(names)
        proxy = self.proxies[name][0]
        if kind == F.LATENCY:
            ms = round(rng.uniform(*self.latency_ms), 1)
            proxy.set_latency(ms)
            detail: dict[str, object] = {"latency_ms": ms}
        elif kind == F.RESET:
            detail = {"connections_reset": proxy.reset()}
        elif kind == F.BLACKHOLE:
            proxy.blackhole()
            detail = {"blackhole": True}
        else:
            raise NemesisError(f"ProxyNemesis does not handle {kind!r}")
        detail["proxy_port"] = proxy.port
        f = Fault(kind, name, F.WALRECEIVER, detail)
        self.active.append(f)
        return f

    def heal(self) -> list[Fault]:
        t = time.time()
        for proxy, _, _ in self.proxies.values():
            proxy.heal()
        placed = self._place() if self.proxies or self.active else []
        healed = []
        for f in self.active:
            f.healed_at = t
            f.heal_detail = {"pass": True, "new_proxies": placed}
            healed.append(f)
        self.active = []
        return healed
