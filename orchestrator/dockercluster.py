"""A primary and its streaming standbys in containers: the Docker backend of orchestrator/cluster.py.

What it does: `DockerCluster(client, image, labels, standbys=2, settings=...)` makes one
user-defined bridge network, starts a primary container (orchestrator/dockernode.py), then N
standby containers at once, each cloning the primary over the network with
`pgbed basebackup -R` at its first start, and waits until every standby streams. The primary
has `synchronous_standby_names = 'ANY 1 (standby1, standby2, …)'`, so losing one standby never
blocks commits. It exposes what Cluster exposes — `nodes`, `primary`, `standbys`,
`primary_name`, `retired`, `timeline_switches`, `node()`, `wait_streaming()`, `catch_up()`,
`most_advanced_standby()`, `failover()`, `repoint()`, `reclone()`, `ensure_running()`,
`teardown()` and the context manager — so that ProcessNemesis, the workloads and
wait_all_ready work on it unchanged. Nodes reach each other by name (each container's alias
on the network is its node name), so primary_conninfo survives container restarts, which
change addresses and host ports.

`flavor="postgres"` (with the pgbed-postgres image, images/postgres/: `DockerCluster(client,
"pgbed-postgres:test", labels, flavor="postgres")`) makes the same cluster of real PostgreSQL 15
containers — initdb, pg_basebackup -R, the postgres binary — and carries the flavour through
every node this cluster makes, re-cloned ones included, so failover and every scenario built on
the verbs run on both flavours (orchestrator/pgflavor.py does the same for local nodes).

Verbs that behave differently from Cluster's, and why:
- `failover()` halts the old primary's container (SIGKILL, kept) instead of LocalNode.teardown
  (immediate stop, directory kept): a container has no "stopped but data kept elsewhere" state
  other than stopped, and its files stay readable through the archive API.
- `reclone(name)` retires the old container (stopped, kept, disconnected from the network so
  its alias can never answer for the new one) and starts a new container under the same node
  name; `retired` holds the old DockerNode handles, whose logs and events stay readable until
  teardown. Cluster instead moves a directory aside.
- `repoint()` points primary_conninfo at the primary's network alias and port 5432, not at
  the host-mapped port: the standbys talk to each other inside the network.
- `teardown()` removes every container carrying this cluster's label (nodes, retired nodes and
  any nemesis sidecars) and then the network; Cluster's teardown leaves directories behind.
- `start()` starts the standbys concurrently (their clones overlap), where Cluster starts them
  one after the other.

What it deliberately does not do: build or pull images (tests/chaos/conftest.py builds the node
and postgres images), check that the image matches the flavour (the caller chooses both), pick
fixed names, subnets or host ports (Docker picks; names get a random suffix), or
inject faults (orchestrator/nemesis/container.py does).

Ownership: the cluster owns its network and every container labelled with its id; only the
thread that created it changes the topology (failover, reclone). Nemeses act on containers
through the node handles but never edit `nodes`.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from orchestrator.cluster import Cluster
from orchestrator.dockernode import LABEL_CLUSTER, PG_PORT, DockerNode, container_gone
from orchestrator.pgnode import DEFAULT_TIMEOUT, NodeError


class DockerCluster(Cluster):
    backend = "docker"

    def __init__(self, client: Any, image: str, labels: dict[str, str], standbys: int = 2, *, sync: bool = True,
                 settings: dict[str, Any] | None = None, standby_settings: dict[str, Any] | None = None,
                 start: bool = True, timeout: float = DEFAULT_TIMEOUT, flavor: str = "pgbed") -> None:  # fmt: skip
        names = ["primary"] + [f"standby{i + 1}" for i in range(standbys)]
        super().__init__(Path("."), names, sync=sync, settings=settings, standby_settings=standby_settings,
                         flavor=flavor)  # fmt: skip
        self.client = client
        self.image = image
        self.cluster_id = secrets.token_hex(4)
        self.labels = {**labels, LABEL_CLUSTER: self.cluster_id}
        self.network: Any = None
        if start:
            try:
                self.start(timeout=timeout)
            except BaseException:
                self.teardown()
                raise

    @property
    def network_name(self) -> str:
        return str(self.network.name)

    def _node(self, name: str) -> DockerNode:
        return DockerNode(self.client, self.image, name, labels=self.labels, network=self.network_name,
                          cluster_id=self.cluster_id, flavor=self.flavor)  # fmt: skip

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> DockerCluster:
        self.network = self.client.networks.create(f"pgbed-{self.cluster_id}", driver="bridge", labels=self.labels)
        p = self._node(self.primary_name)
        self.nodes[p.name] = p
        p.init(**self.settings, synchronous_standby_names=self.sync_names(self.names[1:]))
        p.start(timeout=timeout)
        for name in self.names[1:]:
            s = self._node(name)
            self.nodes[name] = s
            s.init_from_backup(p, **{**self.settings, **self.standby_settings})
            s.start(wait=False)
        for s in self.standbys:
            s.wait_ready(timeout=timeout)
        self.wait_streaming(timeout=timeout)
        return self

    # -- topology: Cluster's, with these differences ---------------------------------------------

    def _candidate(self, s: Any) -> bool:
        return bool(s.is_running() and not s.is_paused())

    def _lose(self, old: Any) -> None:
        old.halt()

    def primary_address(self) -> tuple[str, int]:
        """The primary's network alias and port 5432: standbys talk inside the network, and the
        alias survives the container restarts that change addresses and host ports."""
        return self.primary.name, PG_PORT

    def reclone(self, name: str, timeout: float = DEFAULT_TIMEOUT) -> DockerNode:
        """Retire the node's container and clone a new one from the current primary."""
        old = self.nodes[name]
        old.halt()
        try:  # its alias must never resolve to the old container again
            self.network.disconnect(old.container, force=True)
        except Exception as e:
            if not container_gone(e):
                raise
        self.retired.append(old)
        n = self._node(name)
        self.nodes[name] = n
        n.init_from_backup(self.primary, **{**self.settings, **self.standby_settings})
        n.start(timeout=timeout)
        return n

    def containers(self) -> list[Any]:
        """Every container labelled with this cluster's id (nodes, retired nodes, sidecars)."""
        return list(self.client.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={self.cluster_id}"}))

    def remove_labelled(self) -> list[BaseException]:
        """Remove every container labelled with this cluster's id (with its anonymous volumes);
        goes on after a failure and returns the failures."""
        errors: list[BaseException] = []
        for c in self.containers():
            try:
                c.remove(force=True, v=True)
            except Exception as e:
                if not container_gone(e):
                    errors.append(e)
        return errors

    def teardown(self) -> None:
        """Remove every container of this cluster (and its volume), then the network. Runs to
        the end even when one removal fails, and raises the first failure afterwards."""
        errors = self.remove_labelled()
        if self.network is not None:
            deadline = time.monotonic() + 10
            while True:  # endpoints of just-removed containers may take a moment to go
                try:
                    self.network.remove()
                    break
                except Exception as e:
                    if container_gone(e) and "has active endpoints" not in str(e):
                        break
                    if time.monotonic() > deadline:
                        errors.append(e)
                        break
                    time.sleep(0.2)
        if errors:
            raise NodeError(f"teardown of cluster {self.cluster_id} left something behind: {errors!r}")
