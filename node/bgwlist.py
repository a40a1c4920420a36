"""The postmaster's list of registered background workers, as pure decisions (BGW-3, BGW-6,
BGW-7, BGW-10, BGW-12, BGW-16, BGW-17, and the start-time table of §1).

What it does: `WorkerDef` is PostgreSQL's BackgroundWorker (name, type, flags, start time,
restart time, `module:function`, main_arg, extra, notify pid) with `sanity_check()` (BGW-3);
`should_start_now()` is bgworker_should_start_now; `RegisteredWorker` is RegisteredBgWorker
(the postmaster's private copy plus pid, crash time, terminate); `launch_plan()` is the decision
half of maybe_start_bgworkers (what to fork now, what to forget, when to look again), and
`exit_policy()` the one of CleanupBackend/ReportBackgroundWorkerExit. `status_of()` is
GetBackgroundWorkerPid's mapping of a slot to STARTED/NOT_YET_STARTED/STOPPED.

What it deliberately does not do: fork, signal or touch shared memory (node/postmaster.py and
node/bgworker.py do); every function here takes the time and states as arguments, so the unit
tests drive it with a fake clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from node.states import PMState

BGWORKER_SHMEM_ACCESS = 0x0001
BGWORKER_BACKEND_DATABASE_CONNECTION = 0x0002
BGWORKER_CLASS_PARALLEL = 0x0010

# Flags of BackgroundWorkerInitializeConnection[ByOid] (not registration flags).
BGWORKER_BYPASS_ALLOWCONN = 0x0001
BGWORKER_BYPASS_ROLELOGINCHECK = 0x0002
BGW_NEVER_RESTART = -1
BGW_MAXLEN = 96
BGW_EXTRALEN = 128
# maybe_start_bgworkers forks at most this many per loop pass, then the loop goes on without
# sleeping. PostgreSQL [M] allows 100; a fork of a Python postmaster costs a few milliseconds, so
# pgbed takes 10 at a time to keep accepting connections during a burst (PM-0).
MAX_PER_PASS = 10
MAX_RESTART_S = 86_400_000  # BGW-3: milliseconds-per-day compared against seconds, as in PostgreSQL


class StartTime(enum.IntEnum):
    POSTMASTER_START = 0
    CONSISTENT_STATE = 1
    RECOVERY_FINISHED = 2

    @property
    def sql_name(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> StartTime:
        key = text.strip().lower().replace(" ", "_")
        aliases = {"postmasterstart": "postmaster_start", "consistentstate": "consistent_state",
                   "recoveryfinished": "recovery_finished"}  # fmt: skip
        key = aliases.get(key, key)
        for m in cls:
            if m.sql_name == key:
                return m
        raise ValueError(f'invalid start time "{text}"')


class Status(enum.Enum):
    STARTED = "started"
    NOT_YET_STARTED = "not yet started"
    STOPPED = "stopped"
    POSTMASTER_DIED = "postmaster died"


@dataclass
class WorkerDef:
    """BackgroundWorker."""

    name: str
    type: str = ""
    flags: int = BGWORKER_SHMEM_ACCESS
    start_time: StartTime = StartTime.POSTMASTER_START
    restart_time: int = BGW_NEVER_RESTART
    function: str = ""  # "module:function"
    main_arg: int = 0
    extra: bytes = b""
    notify_pid: int = 0

    def __post_init__(self) -> None:
        if not self.type:
            self.type = self.name  # BGW-3: an empty type defaults to the name


class SanityError(ValueError):
    """A BGW-3 check failed; the message is PostgreSQL's."""


def sanity_check(w: WorkerDef) -> None:
    """SanityCheckBackgroundWorker (BGW-3)."""
    if not w.flags & BGWORKER_SHMEM_ACCESS:
        raise SanityError(f'background worker "{w.name}": background workers without shared memory access are '
                          "not supported")  # fmt: skip
    if w.flags & BGWORKER_BACKEND_DATABASE_CONNECTION and w.start_time == StartTime.POSTMASTER_START:
        raise SanityError(f'background worker "{w.name}": cannot request database access if starting at '
                          "postmaster start")  # fmt: skip
    if w.restart_time != BGW_NEVER_RESTART and not 0 <= w.restart_time <= MAX_RESTART_S:
        raise SanityError(f'background worker "{w.name}": invalid restart interval')
    if w.flags & BGWORKER_CLASS_PARALLEL and w.restart_time != BGW_NEVER_RESTART:
        raise SanityError(f'background worker "{w.name}": parallel workers may not be configured for restart')
    if ":" not in w.function:
        raise SanityError(f'background worker "{w.name}": invalid entry point "{w.function}"')
    if len(w.name.encode()) >= BGW_MAXLEN or len(w.type.encode()) >= BGW_MAXLEN:
        raise SanityError(f'background worker "{w.name[:40]}": name too long')
    if len(w.extra) > BGW_EXTRALEN:
        raise SanityError(f'background worker "{w.name}": extra data too long')


def should_start_now(state: PMState, start_time: StartTime, *, consistent_in_recovery: bool = False) -> bool:
    """bgworker_should_start_now: the start-time table of §1. `consistent_in_recovery` is the
    historic bug of that name (ConsistentState workers eligible in RECOVERY)."""
    if state >= PMState.STOP_BACKENDS:
        return False
    if start_time == StartTime.POSTMASTER_START:
        return True
    if start_time == StartTime.CONSISTENT_STATE:
        if consistent_in_recovery and state == PMState.RECOVERY:
            return True
        return state in (PMState.HOT_STANDBY, PMState.RUN)
    return state == PMState.RUN


@dataclass
class RegisteredWorker:
    """RegisteredBgWorker: the postmaster's own copy of a slot's definition."""

    worker: WorkerDef
    shmem_slot: int
    generation: int = 0
    pid: int = 0  # 0: not running
    child_slot: int = -1
    crashed_at: float | None = None  # None: never crashed (or reset); monotonic time of the reap
    terminate: bool = False
    launches: int = 0  # forks of this registration (a launch after the first is a restart)


@dataclass
class LaunchPlan:
    start: list[RegisteredWorker]
    forget: list[RegisteredWorker]
    next_wakeup: float | None  # monotonic time when a crashed worker becomes due, if any
    more_due: bool  # MAX_PER_PASS reached with more eligible: loop again without sleeping


def launch_plan(workers: list[RegisteredWorker], state: PMState, fatal_error: bool, now: float, *,
                consistent_in_recovery: bool = False, limit: int = MAX_PER_PASS) -> LaunchPlan:  # fmt: skip
    """maybe_start_bgworkers' decisions (BGW-7), newest registration first."""
    start: list[RegisteredWorker] = []
    forget: list[RegisteredWorker] = []
    wake: float | None = None
    more = False
    if fatal_error:
        return LaunchPlan(start, forget, None, False)
    for rw in reversed(workers):
        if rw.pid:
            continue  # running
        if rw.terminate:
            forget.append(rw)
            continue
        if rw.crashed_at is not None:
            if rw.worker.restart_time == BGW_NEVER_RESTART:
                forget.append(rw)
                continue
            due = rw.crashed_at + rw.worker.restart_time
            if now < due:
                wake = due if wake is None else min(wake, due)
                continue
        if should_start_now(state, rw.worker.start_time, consistent_in_recovery=consistent_in_recovery):
            if len(start) >= limit:
                more = True
                break
            start.append(rw)
    return LaunchPlan(start, forget, wake, more)


class ExitAction(enum.Enum):
    UNREGISTER = "unregister"  # slot freed, then the notify pid signalled
    RESTART_LATER = "restart later"  # pid 0; relaunched restart_time after the reap
    CRASH = "crash"  # cluster crash restart (CRASH-4); BGW-17 at reinit


def exit_policy(rw: RegisteredWorker, code: int, *, detached: bool) -> ExitAction:
    """BGW-10/11 ([M]): exit 0 unregisters; exit 1 restarts or unregisters per restart_time;
    anything else, or 0/1 without a clean detach, is a crash."""
    if code not in (0, 1) or not detached:
        return ExitAction.CRASH
    if code == 0 or rw.terminate or rw.worker.restart_time == BGW_NEVER_RESTART:
        return ExitAction.UNREGISTER
    return ExitAction.RESTART_LATER


def reset_after_crash(workers: list[RegisteredWorker], *, pid_not_reset: bool = False) -> list[RegisteredWorker]:
    """ResetBackgroundWorkerCrashTimes (BGW-17): NEVER_RESTART entries are forgotten (the
    returned list); the others get crash time, notify pid and pid cleared. `pid_not_reset` is the
    historic bug (pre-2025): pid stays set, so the crashed worker is never relaunched."""
    forgotten = [rw for rw in workers if rw.worker.restart_time == BGW_NEVER_RESTART]
    for rw in workers:
        if rw in forgotten:
            continue
        rw.crashed_at = None
        rw.worker.notify_pid = 0
        if not pid_not_reset:
            rw.pid = 0
        rw.child_slot = -1
    return forgotten


def status_of(in_use: bool, slot_generation: int, handle_generation: int, pid: int) -> tuple[Status, int]:
    """GetBackgroundWorkerPid (BGW-12)."""
    if not in_use or slot_generation != handle_generation:
        return Status.STOPPED, 0
    if pid == -1:
        return Status.NOT_YET_STARTED, 0
    if pid == 0:
        return Status.STOPPED, 0
    return Status.STARTED, pid
