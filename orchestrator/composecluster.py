"""The compose stack's nodes as a Cluster: what `pgbed chaos --compose-project P` runs against.

What it does: `ComposeCluster(client, project)` finds the node containers of a running
`docker compose up` (compose.yaml) by compose's own labels — `com.docker.compose.project=P`
and a `com.docker.compose.service` of `primary` or `standbyN` — never by container names (v1
says `p_primary_1`, v2 `p-primary-1`). It attaches a DockerNode to each (orchestrator/
dockernode.py, reached at its address on the project's network), starts any node container
that is stopped (what a campaign's final heal would do anyway), and asks every node which one
is the primary: the roles come from the data directories, so after an earlier campaign's
failover `standby1` may be the primary and `primary` a standby. Everything else — failover,
repoint, ensure_running, the nemeses — is DockerCluster's.

Differences from DockerCluster, and why:
- reclone keeps the service's container (compose owns it, and `docker compose ps/logs/down`
  must keep finding it): a short-lived helper container of the node image mounts the node's
  volume (`volumes_from`), empties it and runs the image's entrypoint with PGBED_CLONE_FROM set
  and PGBED_INIT_ONLY=1 — the same clone-and-configure code a standby service runs at its
  first start, with the node's own PGBED_CONF — then the node container is started again. The
  old incarnation's server log and jsonlog are copied into a `Retired` record first, because
  the wipe destroys them.
- teardown removes only what this campaign made (nemesis sidecars and helpers, labelled with
  its cluster id); the nodes and the network stay, as the user's `docker compose up` left them
  (plus whatever roles the campaign's failovers gave them).

What it deliberately does not do: create, remove or rename compose services, touch containers
of any other project, or change compose.yaml's settings beyond what a failover must (the new
primary's synchronous_standby_names, the standbys' primary_conninfo).

Ownership: compose owns the node containers, their volumes and the network; this object owns
only its helpers and sidecars. One campaign at a time per project: two would fight over roles.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.cluster import Cluster
from orchestrator.dockercluster import DockerCluster
from orchestrator.dockernode import LABEL_CLUSTER, DockerNode
from orchestrator.pgnode import DEFAULT_TIMEOUT, NodeError

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
NODE_SERVICE = re.compile(r"^(primary|standby\d+)$")

# Runs in the re-clone helper (the node image, user pgbed, the node's volume mounted).
RECLONE_SCRIPT = 'find "$PGDATA" -mindepth 1 -delete && PGBED_INIT_ONLY=1 exec pgbed-entrypoint'


@dataclass
class Retired:
    """An incarnation of a node whose data directory a re-clone wiped: its logs, kept."""

    name: str
    log: str
    event_list: list[dict[str, Any]] = field(default_factory=list)

    def log_content(self) -> str:
        return self.log

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.event_list if name is None or e.get("event") == name]

    def is_running(self) -> bool:
        return False


def node_containers(client: Any, project: str) -> dict[str, Any]:
    """service name → container, for the project's node services (one container each)."""
    out: dict[str, Any] = {}
    for c in client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}):
        service = c.labels.get(LABEL_SERVICE, "")
        if not NODE_SERVICE.match(service):
            continue
        if service in out:
            raise NodeError(f"compose project {project!r} has more than one container of service {service!r} "
                            f"({out[service].name}, {c.name}): scaled node services are not supported")  # fmt: skip
        out[service] = c
    return out


def service_health(client: Any, project: str) -> dict[str, str]:
    """service → its container's health status ("healthy", "starting", …), or its state when it
    has no healthcheck, for every container of the project (scale 1)."""
    out = {}
    for c in client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}):
        c.reload()
        out[c.labels.get(LABEL_SERVICE, "")] = (c.attrs["State"].get("Health") or {}).get("Status", c.status)
    return out


def wait_healthy(client: Any, project: str, services: tuple[str, ...], timeout: float) -> dict[str, str]:
    """Poll until every one of `services` is healthy; returns the last states (the caller reports
    a timeout with them, and the logs)."""
    deadline = time.monotonic() + timeout
    while True:
        states = service_health(client, project)
        if all(states.get(s) == "healthy" for s in services) or time.monotonic() > deadline:
            return states
        time.sleep(0.25)


def own_project(client: Any) -> str | None:
    """The compose project of the container this process runs in, if any (the orchestrator
    service): its hostname is its container id unless compose.yaml sets one."""
    import socket

    try:
        me = client.containers.get(socket.gethostname())
    except Exception:  # not in a container, or not one this engine knows
        return None
    return me.labels.get(LABEL_PROJECT)


class ComposeCluster(DockerCluster):
    backend = "compose"

    def __init__(self, client: Any, project: str, *, labels: dict[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:  # fmt: skip
        found = node_containers(client, project)
        if "primary" not in found:
            raise NodeError(f"no pgbed node containers in compose project {project!r}: expected services "
                            f"primary and standbyN (found {sorted(found) or 'none'}); is the stack up? "
                            f"`docker compose -p {project} ps` shows what is there")  # fmt: skip
        names = sorted(found, key=lambda n: (n != "primary", n))
        Cluster.__init__(self, Path("."), names, sync=True)
        self.client = client
        self.project = project
        self.cluster_id = secrets.token_hex(4)
        self.labels = {**(labels or {}), LABEL_CLUSTER: self.cluster_id, LABEL_PROJECT + ".target": project}
        first = found["primary"]
        first.reload()
        nets = list((first.attrs["NetworkSettings"].get("Networks") or {}).keys())
        if not nets:
            raise NodeError(f"container {first.name} of project {project!r} is on no network")
        self.network = client.networks.get(nets[0])
        self.image = first.image.id
        for name in names:
            self.nodes[name] = DockerNode.attach(client, found[name], name, network=self.network.name)
        self.ensure_running(timeout=timeout)
        try:
            self.primary_name = self.find_primary(timeout)
        except NodeError as e:
            raise NodeError(f"compose project {project!r}: {e} (`docker compose -p {project} down -v` and up again "
                            "starts afresh)") from None  # fmt: skip

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> DockerCluster:
        raise NodeError("a compose cluster is started by `docker compose up`, not by the orchestrator")

    def reclone(self, name: str, timeout: float = DEFAULT_TIMEOUT) -> DockerNode:  # type: ignore[override]
        """Wipe the node's volume and clone it from the current primary, in the same container."""
        n: DockerNode = self.nodes[name]
        n.halt()
        self.retired.append(Retired(name, n.log_content(), n.events()))
        self.reclones.append((name, f"{name}-{len(self.retired)}", time.time()))
        env = [e for e in (n.container.attrs["Config"].get("Env") or [])
               if not e.startswith(("PGBED_CLONE_FROM=", "PGBED_BASEBACKUP_ARGS=", "PGBED_INIT_ONLY="))]  # fmt: skip
        env += [f"PGBED_CLONE_FROM={self.primary.name}", "PGBED_BASEBACKUP_ARGS=-R", f"PGBED_NODE_NAME={name}"]
        helper = self.client.containers.run(
            self.image, command=["sh", "-c", RECLONE_SCRIPT], detach=True, environment=env,
            volumes_from=[n.container.id], network=self.network.name, labels=self.labels,
            name=f"pgbed-{self.cluster_id}-reclone-{name}-{secrets.token_hex(3)}")  # fmt: skip
        try:
            code = helper.wait(timeout=timeout).get("StatusCode", -1)
            out = bytes(helper.logs()).decode(errors="replace")
        finally:
            helper.remove(force=True)
        if code != 0:
            raise NodeError(f"re-cloning {name} from {self.primary.name} failed (helper exited {code}):\n{out[-3000:]}")
        n.start(timeout=timeout)
        return n

    def teardown(self) -> None:
        """Remove this campaign's helpers and sidecars; the compose stack stays up."""
        errors = self.remove_labelled()
        if errors:
            raise NodeError(f"teardown of campaign {self.cluster_id} on project {self.project!r}: {errors!r}")

