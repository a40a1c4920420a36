"""A pgbed node run as local processes: the first piece of the Cluster API (TAP vocabulary).

What it does: init (initdb + append_conf), start (waits for postmaster.pid to say ready or
standby, or for the process to die), stop(mode), kill9, restart, reload, connect/sql,
log_content/log_contains/wait_for_log, json events, poll_until, and pids of children by role.
Every wait has a deadline; on timeout it raises NodeError with what it saw last, the tail of
the node's log and the log's path.

What it deliberately does not do: Docker, replication topologies or fault injection (the
orchestrator issue builds those on top of this handle), or fixed ports: each node takes a
free loopback port and a Unix socket directory inside its own data directory's parent.

Stopping a node that has silently died raises (STYLE 2.4: "otherwise tests might fail to detect
server crashes").

A node whose postmaster another process started (`pgbed cluster up`, see orchestrator/
cluster.py) is *adopted* (`adopt()`): its pid comes from postmaster.pid, liveness from the
kernel, and since it is not our child its exit status cannot be known (wait_exit returns -1).
Once this process starts it again it is an ordinary Popen child.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator import procfs
from orchestrator.pgnode import DEFAULT_TIMEOUT, NodeError, PgNode, parse_events, role_of_title

__all__ = ["DEFAULT_TIMEOUT", "LocalNode", "NodeError", "free_port", "role_of_title"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now. Random start, so parallel workers rarely race for one."""
    for _ in range(200):
        port = random.randint(20000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise NodeError("could not find a free port")


def _alive(pid: int) -> bool:
    """Is `pid` a live process (a zombie counts as dead: it only waits for its parent)?"""
    return procfs.state(pid) not in ("Z", "?")


class LocalNode(PgNode):
    flavor = "pgbed"  # orchestrator/pgflavor.py's PostgresNode: "postgres"

    def __init__(self, base: Path, name: str = "node", *, port: int | None = None, host: str = "127.0.0.1",
                 metrics: bool = False) -> None:  # fmt: skip
        self.name = name
        self.base = Path(base)
        self.datadir = self.base / name / "data"
        self.sockdir = self.base / name / "sock"
        self.logfile = self.base / name / "server.log"
        self.host = host  # any 127.0.0.x: Linux routes all of 127/8 to lo, so nodes get own addresses
        self.port = port or free_port(host)
        # The metrics exporter (pgbed.metrics_port) is off unless asked for: many test nodes share
        # 127.0.0.1, where the default port 9187 could be bound by one of them only.
        self.metrics_port = free_port(host) if metrics else 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.adopted_pid: int | None = None  # a postmaster started by another process (adopt())
        self.exit_code: int | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def init(self, *, wal_segsize_mb: int = 1, **settings: Any) -> LocalNode:
        self.sockdir.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([sys.executable, "-m", "node", "initdb", "-D", str(self.datadir),
                            "--wal-segsize", str(wal_segsize_mb)], capture_output=True, text=True)  # fmt: skip
        if r.returncode != 0:
            raise NodeError(f"initdb failed ({r.returncode}): {r.stderr}")
        base = {
            "port": self.port,
            "listen_addresses": f"'{self.host}'",
            "unix_socket_directories": f"'{self.sockdir}'",
            "log_destination": "'stderr,jsonlog'",
            "checkpoint_timeout": "'1h'",
            "pgbed__metrics_port": self.metrics_port,
        }
        base.update(settings)
        self.append_conf(**base)
        return self

    def init_from_backup(self, primary: LocalNode, *, standby: bool = True, slot: str | None = None,
                         **settings: Any) -> LocalNode:  # fmt: skip
        """Clone `primary` with `pgbed basebackup` (-R for a standby) and give the copy its own
        port and socket directory (TAP's init_from_backup with has_streaming)."""
        self.sockdir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "node", "basebackup", "-h", primary.host, "-p", str(primary.port),
               "-D", str(self.datadir), "-U", "postgres", "--application-name", self.name]  # fmt: skip
        if standby:
            cmd.append("-R")
        if slot:
            cmd += ["-S", slot]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=DEFAULT_TIMEOUT)
        if r.returncode != 0:
            raise NodeError(f"pgbed basebackup failed ({r.returncode}): {r.stderr}\n{primary._evidence('backup')}")
        base = {
            "port": self.port,
            "listen_addresses": f"'{self.host}'",
            "unix_socket_directories": f"'{self.sockdir}'",
            "cluster_name": f"'{self.name}'",
            "pgbed__metrics_port": self.metrics_port,
        }
        base.update(settings)
        self.append_conf(**base)
        return self

    def append_conf(self, **settings: Any) -> None:
        with open(self.datadir / "postgresql.conf", "a") as f:
            for k, v in settings.items():
                f.write(f"{k.replace('__', '.')} = {v}\n")

    def set_auto_conf(self, **settings: Any) -> None:
        """Write settings into postgresql.auto.conf as ALTER SYSTEM does (replacing earlier lines
        of the same names), for settings that `pgbed basebackup -R` put there, such as
        primary_conninfo: postgresql.auto.conf is read last, so append_conf cannot override them."""
        path = self.datadir / "postgresql.auto.conf"
        try:
            lines = path.read_text().splitlines()
        except OSError:
            lines = ["# Do not edit this file manually!", "# It will be overwritten by the ALTER SYSTEM command."]
        names = {k.replace("__", ".") for k in settings}
        kept = [ln for ln in lines if ln.split("=", 1)[0].strip() not in names]
        kept += [f"{k.replace('__', '.')} = {v}" for k, v in settings.items()]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(kept) + "\n")
        os.replace(tmp, path)

    def _server_cmd(self) -> list[str]:
        """The server in the foreground, as this node's child (a flavour's hook)."""
        return [sys.executable, "-m", "node", "start", "-D", str(self.datadir)]

    def _server_popen_kw(self) -> dict[str, Any]:
        return {}

    def start(self, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT, extra: list[str] | None = None,
              expect_fail: bool = False) -> LocalNode:  # fmt: skip
        self._wait_reaped()
        log = open(self.logfile, "ab")
        self.exit_code = None
        self.adopted_pid = None
        self.proc = subprocess.Popen([*self._server_cmd(), *(extra or [])], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, **self._server_popen_kw())  # fmt: skip
        log.close()
        if expect_fail:
            try:
                self.exit_code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise NodeError(self._evidence("expected the server to fail to start, it is still running")) from None
            return self
        if wait:
            self.wait_ready(timeout=timeout)
        return self

    def _wait_reaped(self, timeout: float = 10.0) -> None:
        """Wait until the postmaster named in postmaster.pid is gone, zombie included. A killed
        postmaster this process did not start (adopted) is reaped by its own parent, or by init
        once that has exited, whenever it gets round to it; PostgreSQL's lock-file check
        (kill(pid, 0)) counts a zombie as running and would refuse to start."""
        pid = self.pidfile_pid()
        if not pid:
            return
        if self.proc is not None and self.proc.pid == pid:
            self.proc.poll()  # our own child: reap it here
        deadline = time.monotonic() + timeout
        while procfs.state(pid) == "Z":
            if time.monotonic() >= deadline:
                raise NodeError(self._evidence(f"the previous postmaster (PID {pid}) is still a zombie after "
                                               f"{timeout:g} s: its parent has not reaped it"))  # fmt: skip
            time.sleep(0.01)

    def pidfile(self) -> list[str] | None:
        try:
            return (self.datadir / "postmaster.pid").read_text().split("\n")
        except OSError:
            return None

    def pidfile_pid(self) -> int:
        """The postmaster pid postmaster.pid names, 0 when there is none."""
        lines = self.pidfile()
        return int(lines[0]) if lines and lines[0].strip().isdigit() else 0

    def pidfile_status(self) -> str | None:
        lines = self.pidfile()
        return lines[7].strip() if lines and len(lines) > 7 else None

    def wait_ready(self, timeout: float = DEFAULT_TIMEOUT, statuses: tuple[str, ...] = ("ready", "standby")) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                self.exit_code = self.proc.returncode
                raise NodeError(self._evidence(f"server exited with code {self.exit_code} while starting"))
            last = self.pidfile_status()
            if last in statuses and self.pidfile_pid() == self.pid:
                return
            time.sleep(0.01)
        raise NodeError(self._evidence(f"server not ready after {timeout}s; pidfile status {last!r}"))

    def adopt(self) -> bool:
        """Take over a postmaster some other process started on this data directory (its pid
        from postmaster.pid); False when none is alive."""
        pid = self.pidfile_pid()
        if not pid or not _alive(pid):
            return False
        self.proc, self.adopted_pid, self.exit_code = None, pid, None
        return True

    @property
    def pid(self) -> int:
        if self.proc is not None:
            return self.proc.pid
        assert self.adopted_pid is not None, "node not started"
        return self.adopted_pid

    def is_running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.adopted_pid is not None and _alive(self.adopted_pid)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self, pid: int, sig: int) -> None:
        """Send `sig` to one process of this node (the nemesis's only way to signal; the Docker
        backend does the same through `docker exec`)."""
        os.kill(pid, sig)

    def stop(self, mode: str = "fast", timeout: float = DEFAULT_TIMEOUT) -> int:
        if self.proc is None and self.adopted_pid is None:
            raise NodeError("stop: node was never started")
        if not self.is_running():
            code = self.proc.returncode if self.proc is not None else "unknown (adopted)"
            raise NodeError(self._evidence(f"stop: server had already exited with code {code}"))
        self._request_stop(mode)
        return self.wait_exit(timeout)

    def _request_stop(self, mode: str) -> None:
        """Ask the postmaster to shut down in `mode` (a flavour's hook): SHUT-1's signals."""
        self.signal({"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode])

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """The postmaster's exit code; -1 for an adopted one (not our child: unknowable)."""
        if self.proc is None:
            assert self.adopted_pid is not None, "node not started"
            deadline = time.monotonic() + timeout
            while _alive(self.adopted_pid):
                if time.monotonic() > deadline:
                    raise NodeError(self._evidence(f"server (pid {self.adopted_pid}) did not exit within {timeout}s"))
                time.sleep(0.02)
            self.exit_code = -1
            return self.exit_code
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise NodeError(self._evidence(f"server did not exit within {timeout}s")) from None
        return self.exit_code

    def teardown(self) -> None:
        """Best-effort cleanup: immediate stop, then SIGKILL everything of this node."""
        if self.proc is None and self.adopted_pid is not None and _alive(self.adopted_pid):
            try:
                os.kill(self.adopted_pid, signal.SIGQUIT)
                self.wait_exit(8)
            except (NodeError, ProcessLookupError):
                pass
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGQUIT)
                self.proc.wait(8)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.proc.kill()
                self.proc.wait()
        for pid in self.orphans():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def backup(self, name: str, target_base: Path | None = None) -> Path:
        """TAP's backup(): a base backup of this running node into `<base>/backups/<name>`
        (plain copy, no recovery settings) for init_from_backup-style clones."""
        dest = Path(target_base or self.base) / "backups" / name
        if dest.exists():
            raise NodeError(f"backup {name!r} already exists at {dest}")
        r = subprocess.run([sys.executable, "-m", "node", "basebackup", "-h", self.host, "-p", str(self.port),
                            "-D", str(dest), "-U", "postgres"], capture_output=True, text=True,
                           timeout=DEFAULT_TIMEOUT)  # fmt: skip
        if r.returncode != 0:
            raise NodeError(f"pgbed basebackup failed ({r.returncode}): {r.stderr}\n{self._evidence('backup')}")
        return dest

    # -- clients ----------------------------------------------------------------------------------

    def psql(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["psql", "-X", "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                               *args], capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def pg_isready(self, timeout: float = 10) -> int:
        return subprocess.run(["pg_isready", "-h", self.host, "-p", str(self.port), "-t", "3"],
                              capture_output=True, timeout=timeout).returncode  # fmt: skip

    # -- observation ------------------------------------------------------------------------------

    def log_content(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        try:
            return parse_events((self.datadir / "log" / "postgresql.json").read_text(), name)
        except OSError:
            return []

    def children(self) -> dict[int, str]:
        """pid → process title of the postmaster's children (`ps` shows roles via setproctitle)."""
        return procfs.children(self.pid)

    def child_pids(self, role: str) -> list[int]:
        return [pid for pid, title in self.children().items() if re.search(role, title)]

    def orphans(self) -> list[int]:
        """Processes still holding this node's data directory interlock (any incarnation)."""
        out = []
        target = str((self.datadir / "global" / "pgbed.interlock").resolve())
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                for fd in (p / "fd").iterdir():
                    if os.readlink(fd) == target:
                        out.append(int(p.name))
                        break
            except OSError:
                continue
        return out

    def _evidence(self, what: str) -> str:
        tail = "\n".join(self.log_content().splitlines()[-25:])
        return (f"{what}\n--- last lines of {self.logfile} ---\n{tail}\n"
                f"Hint: the full log is {self.logfile}; the data directory is {self.datadir}")  # fmt: skip
