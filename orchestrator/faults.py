"""Fault kinds and process roles: names shared by `--faults`, the nemesis, the fault log,
the `pgbed_chaos_*` metrics' `kind` label and the dashboards. Nothing else spells them.

What it deliberately does not do: inject anything (orchestrator/nemesis does).
"""

from __future__ import annotations

# process-level faults (any backend)
SIGNAL = "signal"  # one signal to one process chosen by role
SIGNAL_STORM = "signal-storm"  # many signals to processes of one role in a short burst
PAUSE = "pause"  # SIGSTOP a process, SIGCONT at heal
FAULT_HOOK = "fault-hook"  # arm an injection point, detach it at heal
KILL9 = "kill9"  # SIGKILL the postmaster and every process of the node (node crash)
RESTART = "restart"  # fast shutdown and start again
FAILOVER = "failover"  # lose the primary for good: promote a standby, re-point, re-clone
# network faults on the walreceiver's connection (userspace proxy; no netem here)
LATENCY = "latency"
RESET = "reset"
BLACKHOLE = "blackhole"
# container-level faults (docker backend only)
CONTAINER_KILL = "container-kill"
CONTAINER_STOP = "container-stop"
CONTAINER_RESTART = "container-restart"
CONTAINER_PAUSE = "container-pause"
PARTITION = "partition"  # two-way between nodes, iptables DROP from a sidecar
PARTITION_ONE_WAY = "partition-one-way"

PROCESS_FAULTS = (SIGNAL, SIGNAL_STORM, PAUSE, FAULT_HOOK, KILL9, RESTART, FAILOVER)
PROXY_FAULTS = (LATENCY, RESET, BLACKHOLE)
CONTAINER_FAULTS = (CONTAINER_KILL, CONTAINER_STOP, CONTAINER_RESTART, CONTAINER_PAUSE, PARTITION,
                    PARTITION_ONE_WAY)  # fmt: skip
ALL_FAULTS = PROCESS_FAULTS + PROXY_FAULTS + CONTAINER_FAULTS

# process roles, as node/states.py's BackendKind values and pg_stat_activity's backend_type
POSTMASTER = "postmaster"
STARTUP = "startup"
CHECKPOINTER = "checkpointer"
WALSENDER = "walsender"
WALRECEIVER = "walreceiver"
BGWORKER = "bgworker"
BACKEND = "backend"
ROLES = (POSTMASTER, STARTUP, CHECKPOINTER, WALSENDER, WALRECEIVER, BGWORKER, BACKEND)


def parse_faults(spec: str) -> tuple[str, ...]:
    """`--faults a,b,c` → the kinds, in order, each checked against ALL_FAULTS."""
    kinds = tuple(x.strip() for x in spec.split(",") if x.strip())
    bad = [k for k in kinds if k not in ALL_FAULTS]
    if bad:
        raise ValueError(f"unknown fault kind(s) {', '.join(bad)}; known: {', '.join(ALL_FAULTS)}")
    return kinds
