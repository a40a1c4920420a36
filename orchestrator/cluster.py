"""Clusters: a primary and its streaming standbys, with PostgreSQL's TAP Cluster vocabulary.

What it does: `Cluster.local(base, standbys=2)` brings up a primary and N hot standbys as local
processes, each on its own 127.0.0.x address and free port in its own directory, cloned with
`pgbed basebackup -R` and streaming, with `synchronous_standby_names = 'ANY 1 (…)'` over the
standbys so losing one never blocks commits. Node handles (orchestrator/localnode.py) carry
the per-node verbs (init, start, stop(mode), restart, reload, kill9, append_conf, backup,
init_from_backup, promote, wait_for_catchup, poll_query_until, safe_sql, sql, connect_ok,
connect_fails, wait_for_log, log_contains, lsn, pids by role); the cluster adds the topology
verbs: which node is the primary, `wait_streaming()`, `failover()` (promote the most advanced
standby, re-point the others across the timeline switch, re-clone the old primary as a
standby of the new one), and `teardown()`. Every wait has a deadline and raises NodeError with
the last value seen, the node's log tail and where the log is.

`save()` writes `<base>/cluster.json` (names, addresses, which node is the primary) and
`Cluster.attach(base)` finds such a cluster again while it runs — `pgbed cluster up` leaves one
running for psql and for `pgbed chaos --cluster-dir` (orchestrator/clustercli.py): the
postmasters are adopted (orchestrator/localnode.py), stopped ones are started, and the primary
is whichever node is out of recovery, since an earlier campaign's failover may have moved it.

`flavor="postgres"` makes the same cluster of real PostgreSQL 15 nodes (orchestrator/
pgflavor.py: initdb, pg_basebackup -R, the postgres binary, pg_promote()), so every verb here
and every scenario built on them runs on both flavours.

What it deliberately does not do: containers (orchestrator/dockercluster.py and
composecluster.py subclass this with the same interface).

Ownership: the Cluster owns its nodes' directories; only the orchestrator's thread that created
it changes the topology (failover); nemeses signal processes but never edit `nodes`.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from pathlib import Path
from typing import Any

from orchestrator.localnode import DEFAULT_TIMEOUT, LocalNode, NodeError
from orchestrator.pgflavor import node_class

_host_counter = itertools.count(10)


def next_loopback_host() -> str:
    """A fresh 127.0.0.x for one node (x from 10 to 250, wrapping): separate addresses keep the
    nodes apart in logs, pg_stat_replication and proxies, as separate hosts would."""
    return f"127.0.0.{10 + (next(_host_counter) - 10) % 240}"


BASE_SETTINGS: dict[str, Any] = {
    "wal_keep_size": "'64MB'",  # a restarted standby must find its WAL on the primary
    "wal_receiver_status_interval": "'1s'",
    "wal_retrieve_retry_interval": "'1s'",
    "wal_sender_timeout": "'10s'",
    "wal_receiver_timeout": "'10s'",
}


class Cluster:
    backend = "local"

    def __init__(self, base: Path, names: list[str], *, sync: bool = True, settings: dict[str, Any] | None = None,
                 standby_settings: dict[str, Any] | None = None, metrics: bool = False,
                 flavor: str = "pgbed") -> None:  # fmt: skip
        self.base = Path(base)
        self.flavor = flavor  # pgbed, or real PostgreSQL 15 (orchestrator/pgflavor.py)
        self.metrics = metrics  # local nodes: a metrics exporter each, on a free port (LocalNode)
        self.names = names
        self.sync = sync
        self.settings = {**BASE_SETTINGS, **(settings or {})}
        self.standby_settings = standby_settings or {}
        self.nodes: dict[str, Any] = {}  # LocalNode here, DockerNode in DockerCluster
        self.primary_name = names[0]
        self.timeline_switches = 0
        self.retired: list[Any] = []  # re-cloned nodes' old directories or containers (logs, events)
        self.reclones: list[tuple[str, str, float]] = []  # (node, its retired directory's name, when)

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def local(cls, base: Path, *, standbys: int = 2, sync: bool = True, start: bool = True,
              settings: dict[str, Any] | None = None, standby_settings: dict[str, Any] | None = None,
              metrics: bool = False, flavor: str = "pgbed") -> Cluster:  # fmt: skip
        names = ["primary"] + [f"standby{i + 1}" for i in range(standbys)]
        c = cls(base, names, sync=sync, settings=settings, standby_settings=standby_settings, metrics=metrics,
                flavor=flavor)  # fmt: skip
        if start:
            c.start()
        return c

    MANIFEST = "cluster.json"

    def save(self) -> Path:
        """Write <base>/cluster.json, what attach() needs to find this cluster again."""
        data = {"backend": self.backend, "flavor": self.flavor, "names": self.names, "metrics": self.metrics,
                "primary": self.primary_name, "sync": self.sync,
                "timeline_switches": self.timeline_switches, "settings": self.settings,
                "standby_settings": self.standby_settings,
                "nodes": {name: {"host": n.host, "port": n.port, "metrics_port": getattr(n, "metrics_port", 0)}
                          for name, n in self.nodes.items()}}  # fmt: skip
        path = self.base / self.MANIFEST
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def attach(cls, base: Path, *, start: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Cluster:
        """The local cluster saved under `base`, its running postmasters adopted; with start,
        stopped nodes are started and the primary is asked for (pg_is_in_recovery)."""
        base = Path(base)
        try:
            data = json.loads((base / cls.MANIFEST).read_text())
        except OSError as e:
            raise NodeError(f"no cluster at {base}: {e}; make one with `pgbed cluster up --dir {base}`") from None
        c = cls(base, data["names"], sync=data["sync"], settings=data["settings"],
                standby_settings=data["standby_settings"], metrics=bool(data.get("metrics")),
                flavor=data.get("flavor", "pgbed"))  # fmt: skip
        c.timeline_switches = int(data.get("timeline_switches", 0))
        c.primary_name = data["primary"]
        for name, d in data["nodes"].items():
            n = c.node_class(base, name, host=d["host"], port=int(d["port"]))
            n.metrics_port = int(d.get("metrics_port", 0))
            n.adopt()
            c.nodes[name] = n
        if start:
            c.ensure_running(timeout=timeout)
            c.primary_name = c.find_primary(timeout=timeout)
        return c

    def find_primary(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The one node out of recovery, once every node answers (roles live in the data
        directories: an earlier campaign's failover may have moved the primary)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for name, n in self.nodes.items():
                try:
                    last[name] = n.sql("SELECT pg_is_in_recovery()")[0][0]
                except Exception as e:
                    last[name] = e
            if all(isinstance(v, bool) for v in last.values()):
                primaries = [name for name, v in last.items() if v is False]
                if len(primaries) == 1:
                    return primaries[0]
                raise NodeError(f"expected exactly one node out of recovery, found {primaries or 'none'} ({last}): "
                                "this cluster's roles are broken; re-create it")  # fmt: skip
            time.sleep(0.2)
        raise NodeError(f"not every node answered within {timeout:g} s (last: {last})")

    def sync_names(self, standbys: list[str]) -> str:
        return f"'ANY 1 ({', '.join(standbys)})'" if self.sync and standbys else "''"

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> Cluster:
        p = self.node_class(self.base, self.primary_name, host=next_loopback_host(), metrics=self.metrics)
        self.nodes[p.name] = p
        p.init(**self.settings, cluster_name=f"'{p.name}'",
               synchronous_standby_names=self.sync_names(self.names[1:]))  # fmt: skip
        p.start(timeout=timeout)
        for name in self.names[1:]:
            s = self.node_class(self.base, name, host=next_loopback_host(), metrics=self.metrics)
            self.nodes[name] = s
            s.init_from_backup(p, **{**self.settings, **self.standby_settings})
            s.start(timeout=timeout)
        self.wait_streaming(timeout=timeout)
        return self

    @property
    def node_class(self) -> type[LocalNode]:
        return node_class(self.flavor)

    # -- topology ---------------------------------------------------------------------------------

    @property
    def primary(self) -> Any:
        return self.nodes[self.primary_name]

    @property
    def standbys(self) -> list[Any]:
        return [n for name, n in self.nodes.items() if name != self.primary_name]

    def node(self, name: str) -> Any:
        try:
            return self.nodes[name]
        except KeyError:
            raise NodeError(f"no node {name!r} in this cluster ({', '.join(self.nodes)})") from None

    def wait_streaming(self, names: list[str] | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Every standby (or those named) has a walsender in state streaming on the primary."""
        want = set(names or [s.name for s in self.standbys])

        def check() -> Any:
            rows = self.primary.sql("SELECT application_name, state FROM pg_stat_replication")
            got = {r[0] for r in rows if r[1] == "streaming"}
            return want <= got or None

        self.primary.poll_until(check, timeout=timeout, what=f"standbys {sorted(want)} streaming")

    def catch_up(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Every running standby has replayed the primary's current flush position."""
        target = self.primary.lsn("flush")
        for s in self.standbys:
            if s.is_running():
                self.primary.wait_for_catchup(s, "replay", target, timeout=timeout)

    def _candidate(self, s: Any) -> bool:
        """Can this standby be asked for its LSNs and promoted? (The Docker backend also skips
        paused containers.)"""
        return bool(s.is_running())

    def most_advanced_standby(self) -> Any:
        best: tuple[int, str] | None = None
        for s in self.standbys:
            if not self._candidate(s):
                continue
            try:
                lsn = max(s.lsn("receive"), s.lsn("replay"))
            except Exception:  # a standby that cannot answer is not a candidate
                continue
            if best is None or lsn > best[0]:
                best = (lsn, s.name)
        if best is None:
            raise NodeError("failover: no running standby can be promoted")
        return self.nodes[best[1]]

    def _lose(self, old: Any) -> None:
        """Make sure the lost primary cannot come back on its own before it is re-cloned."""
        if old.is_running():
            old.teardown()

    def failover(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """The primary is lost: stop what is left of it, promote the most advanced standby,
        point the other standbys at it (they follow the new timeline: `new target timeline is
        N`), and re-clone the old primary as a standby of the new one (its WAL may have diverged:
        PostgreSQL would need pg_rewind; a fresh base backup is the simple, always-correct way)."""
        old = self.primary
        self._lose(old)
        new = self.most_advanced_standby()
        new.promote(timeout=timeout)
        self.timeline_switches += 1
        self.primary_name = new.name
        others = [s for s in self.standbys if s.name != old.name]
        for s in others:
            self.repoint(s)
        new.append_conf(synchronous_standby_names=self.sync_names([s.name for s in self.standbys]))
        new.reload()
        self.reclone(old.name, timeout=timeout)
        return new

    def primary_address(self) -> tuple[str, int]:
        """Where standbys reach the primary (the Docker backend: its alias inside the network)."""
        return self.primary.host, self.primary.port

    def repoint(self, standby: Any) -> None:
        """primary_conninfo at the current primary, by reload (a SIGHUP setting since PG 13)."""
        host, port = self.primary_address()
        standby.set_auto_conf(primary_conninfo=f"'host={host} port={port} user=postgres "
                                               f"application_name={standby.name}'")  # fmt: skip
        if standby.is_running():
            standby.reload()

    def reclone(self, name: str, timeout: float = DEFAULT_TIMEOUT) -> LocalNode:
        """Throw the node's data directory away and clone it afresh from the current primary."""
        old = self.nodes[name]
        if old.is_running():
            old.teardown()
        # Keep the old incarnation's logs and events for the checkers and the run directory.
        k = len(self.retired) + 1
        while (self.base / "retired" / f"{name}-{k}").exists():  # an earlier campaign's, on an attached cluster
            k += 1
        retired = self.base / "retired" / f"{name}-{k}"
        retired.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.base / name), retired)
        self.retired.append(self.node_class(retired.parent, retired.name, host=old.host, port=old.port))
        self.reclones.append((name, retired.name, time.time()))
        n = self.node_class(self.base, name, host=old.host, port=old.port, metrics=self.metrics)
        self.nodes[name] = n
        n.init_from_backup(self.primary, **{**self.settings, **self.standby_settings})
        n.start(timeout=timeout)
        return n

    def ensure_running(self, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """Start every node that is not running (after a kill9 or a stop); returns their names."""
        started = []
        for n in self.nodes.values():
            if not n.is_running():
                n.start(timeout=timeout)
                started.append(n.name)
        return started

    def teardown(self) -> None:
        for n in self.nodes.values():
            n.teardown()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()


def wait_all_ready(cluster: Cluster, timeout: float = DEFAULT_TIMEOUT) -> dict[str, float]:
    """Poll every node with SELECT 1 until it answers; returns node → epoch time it did."""
    out: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while len(out) < len(cluster.nodes) and time.monotonic() < deadline:
        for name, n in cluster.nodes.items():
            if name in out:
                continue
            try:
                if n.sql("SELECT 1") == [(1,)]:
                    out[name] = time.time()
            except Exception as e:
                last[name] = e
        time.sleep(0.05)
    missing = [n for n in cluster.nodes if n not in out]
    if missing:
        n = cluster.nodes[missing[0]]
        raise NodeError(n._evidence(f"nodes {missing} not answering within {timeout}s; last errors {last!r}"))
    return out
