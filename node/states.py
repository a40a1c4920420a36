"""Leaf module: every enum the node's processes share.

What it does: names the postmaster states (PMState), process kinds (BackendKind), shutdown
modes, startup-process status, child-slot states of the dead-man switch, PMSignal reasons,
quit reasons and the exit codes with a meaning.

What it deliberately does not do: import anything from the project. It is imported by the
postmaster, every child, the checkers and the unit tests, so it must stay a leaf (as
supervisor's states.py does, "to prevent circular import problems").

PMState lifecycle (reference/process-model.md §1): the postmaster starts in INIT, forks the
checkpointer and the startup process and enters STARTUP (T1). When redo begins the startup
process sends RECOVERY_STARTED (T2 → RECOVERY); once recovery is consistent and hot_standby is
on it sends BEGIN_HOT_STANDBY (T3 → HOT_STANDBY). When the startup process exits 0 the node is
in RUN (T4). Shutdown goes STOP_BACKENDS → WAIT_BACKENDS → WAIT_XLOG_SHUTDOWN →
WAIT_XLOG_ARCHIVAL → WAIT_CHECKPOINTER → WAIT_DEAD_END → NO_CHILDREN (T5..T12); a crash jumps
to WAIT_BACKENDS or WAIT_DEAD_END (T14) and NO_CHILDREN then decides between exit and reinit
(T13).

What PMState does not tell you: *why* the postmaster is stopping. That is `ShutdownMode`
(requested by a signal; only ever increases) and `fatal_error` (a crash is being handled).
Impossible combinations: RUN/HOT_STANDBY with fatal_error set (T14 moves away at once);
NO_CHILDREN with ShutdownMode.NONE and no fatal_error (nothing leads there).
"""

from __future__ import annotations

import enum


class PMState(enum.IntEnum):
    """Postmaster states; the order matters (comparisons such as `>= STOP_BACKENDS`)."""

    INIT = 0  # postmaster starting, no children yet
    STARTUP = 1  # startup process running, no redo yet
    RECOVERY = 2  # redo running, not consistent (or hot_standby=off)
    HOT_STANDBY = 3  # consistent recovery, read-only connections allowed
    RUN = 4  # normal processing
    STOP_BACKENDS = 5  # transient: signal the stop set, then WAIT_BACKENDS
    WAIT_BACKENDS = 6  # waiting for the stop set to exit
    WAIT_XLOG_SHUTDOWN = 7  # checkpointer writing the shutdown checkpoint
    WAIT_XLOG_ARCHIVAL = 8  # walsenders/archiver finishing after the checkpoint
    WAIT_CHECKPOINTER = 9  # told the checkpointer to exit
    WAIT_DEAD_END = 10  # waiting for dead-end children to go
    NO_CHILDREN = 11  # all gone: exit or reinitialise


class ShutdownMode(enum.IntEnum):
    """Requested shutdown; only ever increases (SHUT-1)."""

    NONE = 0
    SMART = 1
    FAST = 2
    IMMEDIATE = 3


class BackendKind(enum.Enum):
    """Every process kind pgbed has (DESIGN "The node"). Value = backend_type text."""

    POSTMASTER = "postmaster"
    STARTUP = "startup"
    CHECKPOINTER = "checkpointer"
    BACKEND = "client backend"
    DEAD_END = "dead-end client backend"
    WALSENDER = "walsender"
    WALRECEIVER = "walreceiver"
    BGWORKER = "background worker"
    METRICS = "metrics exporter"

    @property
    def point_prefix(self) -> str:
        """Prefix of this kind's injection points (`<process kind>-<step>`)."""
        return _POINT_PREFIX[self]


_POINT_PREFIX = {
    BackendKind.POSTMASTER: "postmaster",
    BackendKind.STARTUP: "startup",
    BackendKind.CHECKPOINTER: "checkpointer",
    BackendKind.BACKEND: "backend",
    BackendKind.DEAD_END: "dead-end",
    BackendKind.WALSENDER: "walsender",
    BackendKind.WALRECEIVER: "walreceiver",
    BackendKind.BGWORKER: "bgworker",
    BackendKind.METRICS: "metrics",
}

# Kinds that attach to shared memory and therefore take part in the dead-man switch (CRASH-3).
SHMEM_KINDS = frozenset(
    {
        BackendKind.STARTUP,
        BackendKind.CHECKPOINTER,
        BackendKind.BACKEND,
        BackendKind.WALSENDER,
        BackendKind.WALRECEIVER,
        BackendKind.BGWORKER,
        BackendKind.METRICS,
    }
)


class StartupStatus(enum.Enum):
    """What the postmaster knows about the startup process (PM: StartupStatusEnum)."""

    NOT_RUNNING = "not running"
    RUNNING = "running"
    SIGNALED = "signaled"  # we sent SIGQUIT/SIGKILL: its death is our doing (CRASH-9)
    CRASHED = "crashed"


class ChildSlotState(enum.IntEnum):
    """Dead-man switch per child slot (PMS: PM_CHILD_*; CRASH-3)."""

    UNUSED = 0
    ASSIGNED = 1  # forked, not yet attached (or detached cleanly)
    ACTIVE = 2  # attached to shared memory
    WALSENDER = 3  # attached and turned into a walsender


class PMSignalReason(enum.IntEnum):
    """Child → postmaster requests, one shm flag each plus SIGUSR1 (PMS; STYLE 12)."""

    RECOVERY_STARTED = 0
    BEGIN_HOT_STANDBY = 1
    XLOG_IS_SHUTDOWN = 2
    START_WALRECEIVER = 3
    BACKGROUND_WORKER_CHANGE = 4
    ADVANCE_STATE_MACHINE = 5
    PROMOTE = 6


class QuitReason(enum.IntEnum):
    """Why the postmaster sent SIGQUIT (PM: SetQuitSignalReason); read by backends' quickdie."""

    NOT_SENT = 0
    FOR_CRASH = 1
    FOR_STOP = 2


class ExitCode(enum.IntEnum):
    """Exit codes with a meaning (CRASH-1)."""

    CLEAN = 0
    FATAL = 1
    QUICKDIE = 2  # SIGQUIT: _exit(2)
    RECOVERY_TARGET = 3  # startup process stopped at the recovery target (T15, REC-8)


class PidfileStatus(enum.Enum):
    """Line 8 of postmaster.pid (PM_STATUS_*), padded to 8 characters on disk."""

    STARTING = "starting"
    STOPPING = "stopping"
    READY = "ready"
    STANDBY = "standby"


class DBState(enum.IntEnum):
    """pg_control's state field (DBState in PostgreSQL's pg_control.h)."""

    STARTUP = 0
    SHUTDOWNED = 1
    SHUTDOWNED_IN_RECOVERY = 2
    SHUTDOWNING = 3
    IN_CRASH_RECOVERY = 4
    IN_ARCHIVE_RECOVERY = 5
    IN_PRODUCTION = 6

    @property
    def text(self) -> str:
        return _DBSTATE_TEXT[self]


_DBSTATE_TEXT = {
    DBState.STARTUP: "starting up",
    DBState.SHUTDOWNED: "shut down",
    DBState.SHUTDOWNED_IN_RECOVERY: "shut down in recovery",
    DBState.SHUTDOWNING: "shutting down",
    DBState.IN_CRASH_RECOVERY: "in crash recovery",
    DBState.IN_ARCHIVE_RECOVERY: "in archive recovery",
    DBState.IN_PRODUCTION: "in production",
}


class ActivityState(enum.Enum):
    """pg_stat_activity.state."""

    STARTING = "starting"
    IDLE = "idle"
    ACTIVE = "active"
    IDLE_IN_TRANSACTION = "idle in transaction"
    IDLE_IN_TRANSACTION_ABORTED = "idle in transaction (aborted)"
    DISABLED = "disabled"
