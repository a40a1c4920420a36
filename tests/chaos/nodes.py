"""Node adapters for scenarios that can run on either backend (`--backend`).

What it does: gives a scenario the few verbs it needs — connect, signal a process of the node,
read the server log — for a node run as local processes (orchestrator.localnode.LocalNode) or
in a container started with testcontainers. The orchestrator issue turns this into the full
Cluster API with two backends; until then this is the seam the chaos scenarios use.

What it deliberately does not do: start or stop nodes (fixtures do) or wait (scenarios do, with
deadlines and the log tail on failure).
"""

from __future__ import annotations

import os
import signal
from typing import Any, Protocol

import psycopg

from orchestrator.localnode import LocalNode


class ScenarioNode(Protocol):
    backend: str

    def connect(self) -> psycopg.Connection[Any]: ...
    def kill(self, pid: int, sig: str) -> None: ...
    def log(self) -> str: ...


class LocalScenarioNode:
    def __init__(self, node: LocalNode, backend: str = "local") -> None:
        self.node = node
        self.backend = backend  # local (pgbed) or postgres (a PostgresNode, the same interface)

    def connect(self) -> psycopg.Connection[Any]:
        return self.node.connect(connect_timeout=5)

    def kill(self, pid: int, sig: str) -> None:
        os.kill(pid, getattr(signal, sig))

    def log(self) -> str:
        return self.node.log_content()


class DockerScenarioNode:
    backend = "docker"

    def __init__(self, container: Any) -> None:
        self.container = container

    def connect(self) -> psycopg.Connection[Any]:
        host = self.container.get_container_host_ip()
        return psycopg.connect(host="127.0.0.1" if host == "localhost" else host,
                               port=int(self.container.get_exposed_port(5432)), user="postgres",
                               dbname="postgres", connect_timeout=5, autocommit=True)  # fmt: skip

    def exec(self, *cmd: str) -> str:
        code, output = self.container.get_wrapped_container().exec_run(list(cmd))
        text = output.decode(errors="replace") if output else ""
        assert code == 0, f"`{' '.join(cmd)}` in the container exited {code}: {text}"
        return text

    def kill(self, pid: int, sig: str) -> None:
        self.exec("kill", f"-{sig.removeprefix('SIG')}", str(pid))

    def log(self) -> str:
        out, err = self.container.get_logs()
        return out.decode(errors="replace") + err.decode(errors="replace")
