"""A node run in a container — pgbed's node image, or real PostgreSQL 15's (flavour
`postgres`) — the Docker backend of the Cluster API.

What it does: `DockerNode` offers the verbs of orchestrator/localnode.py's LocalNode that
Cluster, ProcessNemesis, the workloads and wait_all_ready use — name, host, port (the
host-mapped port of 5432), connstr/connect/sql/safe_sql/poll_until/poll_query_until,
init/init_from_backup/append_conf/set_auto_conf, start/stop(mode)/restart/kill9/reload,
is_running/wait_exit/pidfile_status/pid, lsn/wait_for_catchup/promote, the container log
(log_content/log_offset/log_contains/wait_for_log), the jsonlog events, pids(role)/children()
from `ps` inside the container and kill(pid, sig) through `docker exec kill` — plus what only a
container has: container_kill/stop/start/restart, pause/unpause, and `ip` on the cluster network.

How a container becomes a node. The image's entrypoint (images/node/entrypoint.sh), the same
one compose.yaml's services run, makes the data directory at the container's first start:
`pgbed initdb` for a primary, or a clone of the primary over the cluster network with
`pgbed basebackup [-R]` when PGBED_CLONE_FROM is set, then appends this node's settings
(PGBED_CONF, PGBED_AUTO_CONF) to the configuration files, and execs `pgbed start`. Settings go
into the files rather than `-c` arguments, which outrank postgresql.conf and
postgresql.auto.conf and so could never be changed by append_conf + reload (a failover rewrites
synchronous_standby_names and primary_conninfo). The postmaster is tini's only child, with the
same pid from the entrypoint's first instruction on (exec all the way), just as LocalNode's
Popen pid is; on later starts of the same container the data directory (its volume) is kept.

Flavours (`flavor=`, as orchestrator/pgflavor.py's for local nodes): "pgbed" runs the node
image (images/node/); "postgres" runs the pgbed-postgres image (images/postgres/), whose
entrypoint keeps the same PGBED_* contract with initdb, `pg_basebackup -X stream -c fast` and
the `postgres` binary, as user postgres, with $PGDATA /var/lib/postgresql/data. The verbs are
the same code on both, because PostgreSQL's pidfile, signals, process titles and views are what
pgbed models; the flavours differ only where the servers do: PostgreSQL logs to stderr only
(`log_line_prefix = '%m [%p] %b '`, pgbed's default, and UTC), so `events()` is empty, and
pgbed-only settings (`pgbed.*`) are left out of its configuration. The caller picks the image
that matches the flavour; nothing here checks that they agree.

`DockerNode.attach(...)` wraps a container made by someone else (a compose service, see
orchestrator/composecluster.py) instead: it is never created or removed here, and clients reach
it at its address on its network rather than through a host-mapped port.

What it deliberately does not do:
- Fixed names or host ports. The container name has a random suffix; the host port of 5432 is
  chosen by Docker, bound to 127.0.0.1, and changes at every container start (re-read then).
  While the container is down `port` keeps the last one: connecting fails as it would on a
  stopped local node (Docker hands out ephemeral ports in sequence, so reuse by another
  container within a test is not a practical concern).
- Editing files with `docker exec`: append_conf/set_auto_conf/events/pidfile read and write
  through the archive API (docker cp), which also works on a stopped container, so a node can
  be configured between a stop and a start as a local one can.
- `backup()`, `psql()` and `orphans()` of LocalNode: clones are made by the container itself.
- Metrics for the postgres flavour (no pgbed.metrics_port there; an exporter would run beside).

Differences from LocalNode that callers can observe (and why):
- kill9 (and any death of the postmaster) ends the container: tini exits with its child, and
  the kernel kills every process of the PID namespace at once. A LocalNode's children outlive a
  SIGKILLed postmaster until they notice its death; here none do.
- teardown() removes the container and its data volume; halt() kills it and keeps it (logs,
  events and files stay readable: DockerCluster retires re-cloned nodes this way).
- is_running() is the container's State.Running, which stays true while it is paused (the
  postmaster is alive, only frozen), and is true while the entrypoint is still cloning.
- pidfile staleness: the postmaster gets the same pid number in every incarnation (a fresh PID
  namespace), so wait_ready also requires the pidfile's start time to be no older than the
  container's own start.
- Every docker exec costs about 0.1 s (measured here): pids()/children()/kill() are that much
  slower than on a local node.

Ownership: a DockerNode owns its container (created at the first start, removed by teardown);
the DockerCluster owns the network and decides the topology. Only the thread driving the
cluster (the campaign's) calls lifecycle verbs; `_port` and `_started_at` are refreshed by the
lifecycle verbs only.
"""

from __future__ import annotations

import io
import re
import secrets
import signal
import tarfile
import time
from datetime import datetime
from typing import Any

from orchestrator.pgflavor import FLAVOURS, flavour_settings
from orchestrator.pgnode import DEFAULT_TIMEOUT, NodeError, PgNode, parse_events

# each flavour's image's $PGDATA (images/node/Dockerfile, images/postgres/Dockerfile)
PGDATA_OF = {"pgbed": "/var/lib/pgbed/data", "postgres": "/var/lib/postgresql/data"}
# What init() writes for each flavour before the caller's settings. pgbed: the jsonlog the
# checkers read. postgres: pgbed's default log_line_prefix (the backend type in every line) in
# UTC, as orchestrator/pgflavor.py's local nodes set it, since PostgreSQL's default has no %b.
INIT_CONF_OF: dict[str, dict[str, str]] = {
    "pgbed": {"log_destination": "'stderr,jsonlog'"},
    "postgres": {"log_line_prefix": "'%m [%p] %b '", "log_timezone": "'UTC'"},
}
PG_PORT = 5432
LABEL_CLUSTER = "pgbed.cluster"  # which DockerCluster a container belongs to (teardown by label)
LABEL_NODE = "pgbed.node"


def _conf_lines(settings: dict[str, Any]) -> list[str]:
    return [f"{k.replace('__', '.')} = {v}" for k, v in settings.items()]


def _docker_time(s: str) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds, which fromisoformat rejects: cut to µs."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        return 0.0
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + tz).timestamp()


class DockerNode(PgNode):
    poll_interval_s = 0.05  # each poll may cost a docker exec
    backend = "docker"

    def __init__(self, client: Any, image: str, name: str, *, labels: dict[str, str], network: str,
                 cluster_id: str = "", host: str = "127.0.0.1", flavor: str = "pgbed") -> None:  # fmt: skip
        if flavor not in FLAVOURS:
            raise NodeError(f"unknown flavour {flavor!r} (expected one of {', '.join(FLAVOURS)})")
        self.flavor = flavor
        self.client = client
        self.image = image
        self.name = name  # also its alias on the cluster network and its application_name
        self.labels = {**labels, LABEL_NODE: name, **({LABEL_CLUSTER: cluster_id} if cluster_id else {})}
        self.network = network
        self.published_host = host  # where the host-mapped port listens
        self.via_network = False  # attached containers are reached at their network address
        self.owned = True  # False for attached containers: never removed here
        self.datadir = PGDATA_OF[flavor]  # inside the container
        self.container: Any = None
        self.container_name = f"pgbed-{cluster_id or secrets.token_hex(4)}-{name}-{secrets.token_hex(3)}"
        self.exit_code: int | None = None
        self._env: dict[str, str] = {"PGBED_NODE_NAME": name}
        self._conf: list[str] = []  # postgresql.conf lines for the first start
        self._auto_conf: list[str] = []
        self._port: int | None = None
        self._addr: str | None = None  # network address of an attached container, per start
        self._started_at = 0.0  # epoch seconds of the container's current start

    @classmethod
    def attach(cls, client: Any, container: Any, name: str, *, network: str, flavor: str = "pgbed") -> DockerNode:
        """A node for a container someone else made (a compose service): clients reach it at
        its address on `network` (the orchestrator may run in a container on that network, or
        on the host, which routes to bridge networks); start/stop/kill act on it, but teardown
        never removes it."""
        tags = container.image.tags if container.image is not None else []
        n = cls(client, tags[0] if tags else container.image.id, name, labels={}, network=network, flavor=flavor)
        n.container = container
        n.container_name = container.name
        n.via_network = True
        n.owned = False
        if n._state().get("Running"):
            n._note_started()
        return n

    @property
    def host(self) -> str:  # type: ignore[override]
        if not self.via_network:
            return self.published_host
        if not self._addr:
            self._addr = self.ip
            if not self._addr:
                raise NodeError(self._evidence(f"{self.name}: no address on network {self.network} (not running?)"))
        return self._addr

    # -- lifecycle --------------------------------------------------------------------------------

    def init(self, *, wal_segsize_mb: int = 1, **settings: Any) -> DockerNode:
        """A fresh primary: initdb at the container's first start, with these settings. The
        container is created by start(), so append_conf may still add settings in between."""
        self._require_no_container("init")
        self._env["PGBED_WAL_SEGSIZE_MB"] = str(wal_segsize_mb)
        base = {**INIT_CONF_OF[self.flavor], "checkpoint_timeout": "'1h'", "cluster_name": f"'{self.name}'"}
        base.update(settings)
        self._conf += self._lines(base)
        return self

    def init_from_backup(self, primary: DockerNode, *, standby: bool = True, slot: str | None = None,
                         **settings: Any) -> DockerNode:  # fmt: skip
        """A clone of `primary` (a standby with -R), made by `pgbed basebackup` (pg_basebackup
        for the postgres flavour) inside this container at its first start, over the cluster
        network (TAP's init_from_backup with has_streaming: the backup and the clone are one
        step here)."""
        self._require_no_container("init_from_backup")
        if primary.network != self.network:
            raise NodeError(f"{self.name} is on network {self.network}, its primary {primary.name} on "
                            f"{primary.network}: a clone must reach the primary")  # fmt: skip
        self._env["PGBED_CLONE_FROM"] = primary.name
        self._env["PGBED_BASEBACKUP_ARGS"] = " ".join((["-R"] if standby else []) + (["-S", slot] if slot else []))
        self._conf += self._lines({"cluster_name": f"'{self.name}'", **settings})
        return self

    def _lines(self, settings: dict[str, Any]) -> list[str]:
        """Configuration lines for this flavour (pgbed-only settings left out for PostgreSQL)."""
        return _conf_lines(flavour_settings(self.flavor, settings))

    def _require_no_container(self, what: str) -> None:
        if self.container is not None:
            raise NodeError(f"{what}: {self.name} already has container {self.container_name}")

    def _create(self) -> None:
        env = dict(self._env)
        env["PGBED_CONF"] = "\n".join(self._conf)
        env["PGBED_AUTO_CONF"] = "\n".join(self._auto_conf)
        api = self.client.api
        self.container = self.client.containers.create(
            self.image,
            name=self.container_name,
            hostname=self.name,
            environment=env,
            labels=self.labels,
            network=self.network,
            networking_config={self.network: api.create_endpoint_config(aliases=[self.name])},
            ports={f"{PG_PORT}/tcp": ("127.0.0.1", None)},
        )

    def start(self, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> DockerNode:
        """Create the container on the first call, start it otherwise; with wait, until the
        pidfile says ready (primary) or standby."""
        if self.container is None:
            self._create()
        elif self._state().get("Running"):
            raise NodeError(self._evidence(f"start: {self.name}'s container is already running"))
        self.exit_code = None
        self.container.start()
        self._note_started()
        if wait:
            self.wait_ready(timeout=timeout)
        return self

    def _note_started(self) -> None:
        self.container.reload()
        self._started_at = _docker_time(self.container.attrs["State"].get("StartedAt", ""))
        self._port = None
        self._addr = None

    def wait_ready(self, timeout: float = DEFAULT_TIMEOUT, statuses: tuple[str, ...] = ("ready", "standby")) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            state = self._state()
            if not state.get("Running"):
                self.exit_code = state.get("ExitCode")
                raise NodeError(self._evidence(f"container exited with code {self.exit_code} while starting"))
            lines = self.pidfile()
            last = lines[7].strip() if lines and len(lines) > 7 else lines
            # a pidfile left by an earlier incarnation names the same pid: its start time tells
            started = lines[2].strip() if lines and len(lines) > 2 else ""
            if last in statuses and started.isdigit() and int(started) >= int(self._started_at):
                return
            time.sleep(0.05)
        raise NodeError(self._evidence(f"server not ready after {timeout}s; pidfile status {last!r}"))

    def pidfile(self) -> list[str] | None:
        text = self.read_file(f"{self.datadir}/postmaster.pid")
        return text.split("\n") if text is not None else None

    def pidfile_status(self) -> str | None:
        lines = self.pidfile()
        return lines[7].strip() if lines and len(lines) > 7 else None

    @property
    def proc(self) -> Any:
        """The container (None before the first start): what ProcessNemesis checks before
        wait_exit, as LocalNode's Popen."""
        return self.container

    @property
    def pid(self) -> int:
        """The postmaster's pid inside the container: tini's only child."""
        for pid, ppid, _ in self._ps():
            if ppid == 1:
                return pid
        raise NodeError(self._evidence(f"{self.name}: no postmaster (child of tini) in the container"))

    def is_running(self) -> bool:
        return self.container is not None and bool(self._state().get("Running"))

    def is_paused(self) -> bool:
        return self.container is not None and bool(self._state().get("Paused"))

    def signal(self, sig: int) -> None:
        self.kill(self.pid, sig)

    def kill(self, pid: int, sig: int) -> None:
        """Send `sig` to one process in the container (`docker exec kill`, as the postmaster's
        user). A process, or a container, that is already gone raises ProcessLookupError, as
        os.kill does; a container that goes away during the exec took the signal."""
        name = signal.Signals(sig).name.removeprefix("SIG")
        if not self.is_running():
            raise ProcessLookupError(f"{self.name}: container not running, so no process {pid}")
        got = self._exec_unless_gone(["kill", f"-{name}", str(pid)])
        if got is None:
            # The container went away under the exec: what a kill of the postmaster (or of
            # anything whose death ends it) does to the exec'd `kill` itself. Delivered.
            return
        code, text = got
        if code != 0:
            if "No such process" in text:
                raise ProcessLookupError(f"{self.name}: no process {pid}")
            if "not permitted" in text:
                raise PermissionError(f"{self.name}: kill -{name} {pid}: {text.strip()}")
            raise NodeError(self._evidence(f"kill -{name} {pid} exited {code}: {text.strip()}"))

    def _exec_unless_gone(self, cmd: list[str]) -> tuple[int, str] | None:
        """(exit code, output) of `cmd` in the container, or None when the container is not
        running or is going away under the exec.

        A container whose postmaster was just killed is torn down while Docker still reports it
        running: an exec into it then fails in the runtime itself (exit 126, "OCI runtime exec
        failed: ... setns", "read init-p: connection reset by peer" or "cannot exec in a stopped
        state"), or the exec'd command is
        SIGKILLed with the rest of the PID namespace (exit 137; a `kill` of the postmaster kills
        itself that way). Wait for the state to settle: stopped means gone; still running means
        the failure was something else, and the exec is tried once more."""
        code, text = 0, ""
        for _ in range(2):
            try:
                code, out = self.container.exec_run(cmd)
            except Exception as e:
                if container_gone(e):
                    return None
                raise
            text = out.decode(errors="replace") if out else ""
            # 126 is the runtime refusing the exec ("OCI runtime exec failed: … setns", "cannot
            # exec in a stopped state"): the container is going away; 137 is the exec'd command
            # killed with the rest of the PID namespace.
            if code not in (126, 137):
                return int(code), text
            deadline = time.monotonic() + 3
            while self.is_running() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.is_running():
                return None
        return int(code), text

    def stop(self, mode: str = "fast", timeout: float = DEFAULT_TIMEOUT) -> int:
        """Shut the postmaster down (smart/fast/immediate); the container ends with it."""
        if self.container is None:
            raise NodeError("stop: node was never started")
        if not self.is_running():
            code = self._state().get("ExitCode")
            raise NodeError(self._evidence(f"stop: container had already exited with code {code}"))
        self.signal({"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode])
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        assert self.container is not None
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self._state()
            if not state.get("Running"):
                self.exit_code = int(state.get("ExitCode", -1))
                return self.exit_code
            time.sleep(0.05)
        raise NodeError(self._evidence(f"container did not exit within {timeout}s; state {state.get('Status')!r}"))

    def halt(self) -> None:
        """Kill the container at once (if it runs) and keep it: logs and files stay readable."""
        if self.container is None:
            return
        try:
            if self.is_paused():
                self.container.unpause()
            if self.is_running():
                self.container.kill()
            self.wait_exit()
        except Exception as e:
            if not container_gone(e):
                raise

    def teardown(self) -> None:
        """Remove the container and its data volume (best effort); an attached container is
        left as it is (its owner, e.g. compose, removes it)."""
        if self.container is None or not self.owned:
            return
        try:
            self.container.remove(force=True, v=True)
        except Exception as e:
            if not container_gone(e):
                raise

    # -- container faults -------------------------------------------------------------------------

    def container_kill(self, sig: str = "SIGKILL", timeout: float = DEFAULT_TIMEOUT) -> int:
        """`docker kill` (PID 1, tini, forwards any signal but SIGKILL to the postmaster);
        returns the exit code once the container has stopped."""
        self.container.kill(signal=sig)
        return self.wait_exit(timeout)

    def container_stop(self, stop_timeout: int = 10) -> int:
        """`docker stop`: STOPSIGNAL (SIGINT, a fast shutdown), SIGKILL after stop_timeout."""
        self.container.stop(timeout=stop_timeout)
        return self.wait_exit(stop_timeout + DEFAULT_TIMEOUT)

    def container_start(self, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> DockerNode:
        if self.container is None:
            raise NodeError(f"container_start: {self.name} has no container yet (use start)")
        return self.start(wait=wait, timeout=timeout)

    def container_restart(self, stop_timeout: int = 10, *, wait: bool = True,
                          timeout: float = DEFAULT_TIMEOUT) -> DockerNode:  # fmt: skip
        """`docker restart`: stop as container_stop does, then start; with wait, until ready."""
        self.container.restart(timeout=stop_timeout)
        self.exit_code = None
        self._note_started()
        if wait:
            self.wait_ready(timeout=timeout)
        return self

    def pause(self, attempts: int = 5) -> int:
        """Freeze every process of the container (cgroup freezer): alive, unresponsive. Returns
        how many attempts it took.

        runc gives up ("OCI runtime pause failed: unable to freeze") when a process does not
        reach the frozen state in time, and thaws the cgroup again, so trying again a moment
        later is safe. Seen here once in about ten pauses of a node under write load; a process
        in uninterruptible sleep (I/O, and the storage driver here is fuse-overlayfs) is the
        usual cause, though we did not pin it down."""
        import docker

        for attempt in range(1, attempts + 1):
            try:
                self.container.pause()
                return attempt
            except docker.errors.APIError as e:
                if "unable to freeze" not in str(e) or attempt == attempts:
                    raise
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    def unpause(self) -> None:
        self.container.unpause()

    @property
    def ip(self) -> str:
        """Address on the cluster network ('' while the container is not running)."""
        self.container.reload()
        nets = self.container.attrs["NetworkSettings"].get("Networks") or {}
        return str((nets.get(self.network) or {}).get("IPAddress") or "")

    @property
    def port(self) -> int:
        if self.via_network:
            return PG_PORT
        if self._port is None:
            self.container.reload()
            ports = (self.container.attrs["NetworkSettings"].get("Ports") or {}).get(f"{PG_PORT}/tcp") or []
            if not ports:
                raise NodeError(self._evidence(f"{self.name}: no host port for {PG_PORT} (container not running?)"))
            self._port = int(ports[0]["HostPort"])
        return self._port

    def exec(self, *cmd: str, user: str = "") -> tuple[int, str]:
        """Run a command in the container (as the image's user unless `user`): (exit code, output)."""
        code, out = self.container.exec_run(list(cmd), user=user)
        return int(code), out.decode(errors="replace") if out else ""

    # -- files in the data directory --------------------------------------------------------------

    def read_file(self, path: str) -> str | None:
        """A file of the container (running or not), or None if it does not exist."""
        got = self._read_member(path)
        return got[0].decode(errors="replace") if got else None

    def _read_member(self, path: str) -> tuple[bytes, tarfile.TarInfo] | None:
        if self.container is None:
            return None
        try:
            stream, _ = self.container.get_archive(path)
        except Exception as e:
            if container_gone(e):
                return None
            raise
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
            member = tf.next()
            if member is None or not member.isfile():
                return None
            f = tf.extractfile(member)
            return (f.read() if f else b""), member

    def _write_file(self, path: str, data: bytes, like: tarfile.TarInfo) -> None:
        info = tarfile.TarInfo(path.rsplit("/", 1)[1])
        info.size, info.mode, info.uid, info.gid = len(data), like.mode, like.uid, like.gid
        info.uname, info.gname, info.mtime = like.uname, like.gname, int(time.time())
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            tf.addfile(info, io.BytesIO(data))
        if not self.container.put_archive(path.rsplit("/", 1)[0], buf.getvalue()):
            raise NodeError(self._evidence(f"could not write {path} into {self.container_name}"))

    def append_conf(self, **settings: Any) -> None:
        if self.container is None:
            self._conf += self._lines(settings)
            return
        path = f"{self.datadir}/postgresql.conf"
        got = self._read_member(path)
        if got is None:
            raise NodeError(self._evidence(f"append_conf: {path} does not exist in {self.container_name} yet"))
        text = got[0].decode()
        text += ("" if text.endswith("\n") or not text else "\n") + "\n".join(self._lines(settings)) + "\n"
        self._write_file(path, text.encode(), got[1])

    def set_auto_conf(self, **settings: Any) -> None:
        """Settings into postgresql.auto.conf as ALTER SYSTEM does (earlier lines of the same names
        replaced), for what `pgbed basebackup -R` put there, such as primary_conninfo."""
        if self.container is None:
            self._auto_conf += self._lines(settings)
            return
        path = f"{self.datadir}/postgresql.auto.conf"
        got = self._read_member(path)
        like = got or self._read_member(f"{self.datadir}/postgresql.conf")  # a new file gets its owner and mode
        if like is None:
            raise NodeError(self._evidence(f"set_auto_conf: no configuration in {self.container_name} yet"))
        lines = got[0].decode().splitlines() if got else [
            "# Do not edit this file manually!", "# It will be overwritten by the ALTER SYSTEM command."]  # fmt: skip
        names = {k.replace("__", ".") for k in settings}
        kept = [ln for ln in lines if ln.split("=", 1)[0].strip() not in names] + self._lines(settings)
        self._write_file(path, ("\n".join(kept) + "\n").encode(), like[1])

    # -- clients ----------------------------------------------------------------------------------

    # -- observation ------------------------------------------------------------------------------

    def log_content(self) -> str:
        """The container's output (stdout and stderr) over all its starts."""
        if self.container is None:
            return ""
        try:
            return bytes(self.container.logs(stdout=True, stderr=True)).decode(errors="replace")
        except Exception as e:
            if container_gone(e):
                return ""
            raise

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The node's jsonlog ($PGDATA/log/postgresql.json), read through the archive API; none
        for the postgres flavour (PostgreSQL has no pgbed events)."""
        if self.flavor == "postgres":
            return []
        return parse_events(self.read_file(f"{self.datadir}/log/postgresql.json") or "", name)

    def _ps(self) -> list[tuple[int, int, str]]:
        """(pid, ppid, title) of every process in the container but the `ps` itself."""
        got = self._exec_unless_gone(["ps", "-e", "-ww", "-o", "pid=,ppid=,args="])
        if got is None:
            return []
        code, text = got
        if code != 0:
            raise NodeError(self._evidence(f"ps in {self.container_name} exited {code}: {text!r}"))
        rows = []
        for line in text.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                rows.append((int(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else ""))
        # processes started by docker exec have parent 0 (outside the namespace), tini too
        return [r for r in rows if r[1] != 0]

    def children(self) -> dict[int, str]:
        """pid → process title of the postmaster's children."""
        rows = self._ps()
        pm = next((pid for pid, ppid, _ in rows if ppid == 1), None)
        return {pid: title for pid, ppid, title in rows if pm is not None and ppid == pm}

    def _state(self) -> dict[str, Any]:
        try:
            self.container.reload()
        except Exception as e:
            if container_gone(e):
                return {"Status": "removed", "Running": False, "ExitCode": -1}
            raise
        return dict(self.container.attrs.get("State") or {})

    def _evidence(self, what: str) -> str:
        tail = "\n".join(self.log_content().splitlines()[-25:])
        status = "no container"
        if self.container is not None:
            try:
                st = self._state()
                status = f"{st.get('Status')}, exit code {st.get('ExitCode')}"
            except Exception as e:  # the evidence must not hide the error it explains
                status = f"unknown ({e!r})"
        return (f"{what}\n--- last lines of `docker logs {self.container_name}` ({status}) ---\n{tail}\n"
                f"Hint: the data directory is {self.datadir} in container {self.container_name}; "
                f"`docker logs {self.container_name}` has the full log")  # fmt: skip


def container_gone(e: BaseException) -> bool:
    """The container was removed, is not running or is paused: not an error of ours."""
    import docker

    if isinstance(e, docker.errors.NotFound):
        return True
    if isinstance(e, docker.errors.APIError) and e.status_code == 409:
        return True
    text = str(e)
    return "is not running" in text or "is paused" in text
