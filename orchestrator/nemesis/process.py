"""Process faults on a cluster's nodes: signals by role, signal storms, SIGSTOP/SIGCONT, fault
hooks (injection points), whole-node kill -9, restarts and failover.

What it does: `ProcessNemesis(cluster)` handles the kinds SIGNAL, SIGNAL_STORM, PAUSE,
FAULT_HOOK, KILL9, RESTART and FAILOVER of orchestrator/faults.py. Targets are chosen at invoke
time with the campaign's seeded rng among processes that exist then (a role with no process on
any node is skipped, and the fault says so). Each Fault records what was actually done (node,
role, pid, signal, injection point). `heal()` resumes stopped processes, detaches armed hooks,
finishes a smart shutdown that clients would hold forever, and starts every node that is down;
it is idempotent.

What it deliberately does not do: judge outcomes (checker/process.py reads the Fault records
and the nodes' events) or touch the network (nemesis/proxy.py, nemesis/partition.py).

Ownership: one campaign thread drives it; `paused` and `hooks` are its own bookkeeping.
"""

from __future__ import annotations

import random
import signal
import time

from orchestrator import faults as F
from orchestrator.cluster import Cluster
from orchestrator.localnode import LocalNode
from orchestrator.nemesis.base import Fault, NemesisError

# Signals offered per role. Any signal is fair game for a test bed; these are the ones each
# process kind gives a meaning to (reference §§3-7), plus SIGKILL for every role.
SIGNALS: dict[str, tuple[str, ...]] = {
    F.POSTMASTER: ("SIGHUP", "SIGUSR1", "SIGINT", "SIGTERM", "SIGQUIT", "SIGKILL"),
    F.STARTUP: ("SIGHUP", "SIGUSR2", "SIGTERM", "SIGKILL"),
    F.CHECKPOINTER: ("SIGHUP", "SIGINT", "SIGTERM", "SIGKILL"),
    F.WALSENDER: ("SIGHUP", "SIGINT", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGKILL"),
    F.WALRECEIVER: ("SIGHUP", "SIGINT", "SIGUSR1", "SIGTERM", "SIGKILL"),
    F.BGWORKER: ("SIGHUP", "SIGINT", "SIGUSR1", "SIGTERM", "SIGKILL"),
    F.BACKEND: ("SIGHUP", "SIGINT", "SIGUSR1", "SIGTERM", "SIGKILL"),
}
# A storm is many signals in a short burst: the ones every process must absorb without exiting
# (they coalesce, SIG-5) plus the occasional SIGTERM.
STORM_SIGNALS = ("SIGHUP", "SIGUSR1", "SIGUSR1", "SIGHUP", "SIGINT")
# Injection points worth arming on a running cluster, with the action: each stalls or fails a
# process at a lifecycle step (node/injection.py).
HOOKS: tuple[tuple[str, str, str], ...] = (
    ("walreceiver-loop", "sleep", "2000"),
    ("walsender-loop", "sleep", "2000"),
    ("checkpointer-loop", "sleep", "1500"),
    ("backend-commit-after-wal", "sleep", "500"),
    ("startup-redo", "sleep", "1000"),
    ("walreceiver-loop", "error", ""),
    ("walsender-loop", "error", ""),
)


class ProcessNemesis:
    kinds = (F.SIGNAL, F.SIGNAL_STORM, F.PAUSE, F.FAULT_HOOK, F.KILL9, F.RESTART, F.FAILOVER)

    def __init__(self, cluster: Cluster, *, roles: tuple[str, ...] = F.ROLES, storm_size: int = 20,
                 signals: dict[str, tuple[str, ...]] | None = None) -> None:  # fmt: skip
        self.cluster = cluster
        self.roles = roles
        self.signals = {**SIGNALS, **(signals or {})}
        self.storm_size = storm_size
        self.paused: list[tuple[str, int]] = []  # (node, pid) stopped with SIGSTOP
        self.hooks: list[tuple[str, str]] = []  # (node, injection point) armed by us
        self.active: list[Fault] = []

    # -- contract ---------------------------------------------------------------------------------

    def setup(self) -> None:
        self.heal()

    def teardown(self) -> None:
        self.heal()

    def invoke(self, kind: str, rng: random.Random) -> Fault:
        fn = {F.SIGNAL: self._signal, F.SIGNAL_STORM: self._storm, F.PAUSE: self._pause,
              F.FAULT_HOOK: self._hook, F.KILL9: self._kill9, F.RESTART: self._restart,
              F.FAILOVER: self._failover}.get(kind)  # fmt: skip
        if fn is None:
            raise NemesisError(f"ProcessNemesis does not handle {kind!r}")
        fault = fn(rng)
        self.active.append(fault)
        return fault

    def heal(self) -> list[Fault]:
        t = time.time()
        resumed = []
        for node, pid in self.paused:
            n = self.cluster.nodes.get(node)
            try:
                if n is not None:
                    n.kill(pid, signal.SIGCONT)
                resumed.append(pid)
            except ProcessLookupError:
                pass
        self.paused.clear()
        detached = []
        for node, point in self.hooks:
            n = self.cluster.nodes.get(node)
            if n is not None and n.is_running():
                try:
                    n.sql("SELECT pgbed_injection_detach(%s)", (point,))
                    detached.append(f"{node}:{point}")
                except Exception:  # a crash reinit already cleared SQL-armed points
                    pass
        self.hooks.clear()
        finished = self._finish_smart_shutdowns()
        started = self._start_stopped()
        healed = []
        for f in self.active:
            f.healed_at = t
            f.heal_detail = {"resumed": resumed, "detached": detached, "fast_after_smart": finished,
                             "started": started}  # fmt: skip
            healed.append(f)
        self.active = []
        return healed

    # -- targets ----------------------------------------------------------------------------------

    def _candidates(self, role: str) -> list[tuple[LocalNode, int]]:
        out = []
        for n in self.cluster.nodes.values():
            if not n.is_running():
                continue
            try:
                out.extend((n, pid) for pid in n.pids(role))
            except Exception:  # the node is restarting: no target there now
                continue
        return out

    def _pick(self, rng: random.Random, roles: tuple[str, ...] | None = None) -> tuple[str, LocalNode, int]:
        order = list(roles or self.roles)
        rng.shuffle(order)
        for role in order:
            cands = self._candidates(role)
            if cands:
                n, pid = rng.choice(sorted(cands, key=lambda x: (x[0].name, x[1])))
                return role, n, pid
        raise NemesisError(f"no process of roles {order} is running")

    # -- faults -----------------------------------------------------------------------------------

    def _signal(self, rng: random.Random) -> Fault:
        role, n, pid = self._pick(rng)
        sig = rng.choice(self.signals[role])
        n.kill(pid, getattr(signal, sig))
        return Fault(F.SIGNAL, n.name, role, {"pid": pid, "signal": sig})

    def _storm(self, rng: random.Random) -> Fault:
        role, n, _ = self._pick(rng)
        sent: list[tuple[int, str]] = []
        for _ in range(self.storm_size):
            try:
                pids = n.pids(role)
            except Exception:  # the node went down under the storm
                break
            if not pids:
                break
            pid = rng.choice(pids)
            sig = rng.choice(STORM_SIGNALS)
            try:
                n.kill(pid, getattr(signal, sig))
                sent.append((pid, sig))
            except ProcessLookupError:
                pass
            time.sleep(rng.uniform(0, 0.01))
        return Fault(F.SIGNAL_STORM, n.name, role, {"sent": sent})

    def _pause(self, rng: random.Random) -> Fault:
        role, n, pid = self._pick(rng, tuple(r for r in self.roles if r != F.POSTMASTER) or None)
        n.kill(pid, signal.SIGSTOP)
        self.paused.append((n.name, pid))
        return Fault(F.PAUSE, n.name, role, {"pid": pid, "signal": "SIGSTOP"})

    def _hook(self, rng: random.Random) -> Fault:
        point, action, arg = rng.choice(HOOKS)
        nodes = sorted((n for n in self.cluster.nodes.values() if n.is_running()), key=lambda n: n.name)
        if not nodes:
            raise NemesisError("no running node to arm a fault hook on")
        n = rng.choice(nodes)
        n.sql("SELECT pgbed_injection_attach(%s, %s, %s)", (point, action, arg))
        self.hooks.append((n.name, point))
        return Fault(F.FAULT_HOOK, n.name, point.split("-", 1)[0], {"point": point, "action": action, "arg": arg})

    def _kill9(self, rng: random.Random) -> Fault:
        nodes = sorted((n for n in self.cluster.nodes.values() if n.is_running()), key=lambda n: n.name)
        if not nodes:
            raise NemesisError("no running node to kill")
        n = rng.choice(nodes)
        pids = [n.pid, *n.children()]
        for pid in pids:  # the whole node at once, as a power loss or an OOM kill of the cgroup
            try:
                n.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        n.wait_exit()
        return Fault(F.KILL9, n.name, None, {"pids": pids})

    def _restart(self, rng: random.Random) -> Fault:
        nodes = sorted((n for n in self.cluster.nodes.values() if n.is_running()), key=lambda n: n.name)
        if not nodes:
            raise NemesisError("no running node to restart")
        n = rng.choice(nodes)
        code = n.stop("fast")
        n.start()
        return Fault(F.RESTART, n.name, None, {"mode": "fast", "exit_code": code})

    def _failover(self, rng: random.Random) -> Fault:
        old = self.cluster.primary_name
        pid = self.cluster.primary.pid if self.cluster.primary.is_running() else None
        new = self.cluster.failover()
        return Fault(F.FAILOVER, old, F.POSTMASTER, {"old_primary_pid": pid, "new_primary": new.name,
                                                      "timeline_switches": self.cluster.timeline_switches})  # fmt: skip

    # -- heal helpers -----------------------------------------------------------------------------

    def _finish_smart_shutdowns(self) -> list[str]:
        """A smart shutdown waits for every client; the workload's never leave, so a SIGTERMed
        postmaster would wait forever. Turn it into a fast one (as an operator would)."""
        out = []
        for n in self.cluster.nodes.values():
            if n.is_running() and n.pidfile_status() == "stopping":
                try:
                    n.signal(signal.SIGINT)
                    n.wait_exit()
                    out.append(n.name)
                except Exception:
                    pass
        return out

    def _start_stopped(self) -> list[str]:
        started = []
        for n in self.cluster.nodes.values():
            if n.is_running():
                continue
            if n.proc is not None:
                n.wait_exit()
            n.start()
            started.append(n.name)
        return started
