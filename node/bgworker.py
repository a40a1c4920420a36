"""Background workers: PostgreSQL's API in Python form (BGW-1..19), registration side and the
worker process's side.

What it does
- Static registration (`register_background_worker`, BGW-1/2): valid only while the postmaster
  runs the `_PG_init()` of the `shared_preload_libraries` modules (`load_preload_libraries`);
  rejections are logged with PostgreSQL's words and the worker is dropped.
- Dynamic registration (`register_dynamic_background_worker`, BGW-3/4) from a backend or a
  worker: the first free slot is filled under LWLockId.BGWORKER (pid -1, generation + 1,
  terminate cleared, in_use last), then PMSIGNAL_BACKGROUND_WORKER_CHANGE. Returns a `Handle`
  (slot, generation) or None.
- Handles (BGW-12..14): `get_pid()`, `wait_for_startup()`, `wait_for_shutdown()`,
  `terminate()`.
- The worker process (`worker_main`, BGW-18): starts with signals blocked and PostgreSQL's
  default handlers (SIGTERM: die at the next check with `terminating background worker "<type>"
  due to administrator command`; SIGQUIT: _exit(2); SIGHUP ignored; SIGINT/SIGUSR1 only for
  database-connected workers), attaches to shared memory, and calls `module:function(main_arg)`:
  return → exit 0, an uncaught ERROR → exit 1. In the worker: `unblock_signals()`,
  `check_for_interrupts()`, `wait_latch()`.

What it deliberately does not do: decide when a worker starts or what its exit means (the pure
policy is node/bgwlist.py, applied by node/postmaster.py), parallel query.

Shared state: `shm.bgw[]` (node/ipc/shmem.py BgwSlot, with the ownership rules of BGW-5).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
from typing import Any

from node import elog, events, injection
from node.bgwlist import (
    BGW_NEVER_RESTART,
    BGWORKER_BACKEND_DATABASE_CONNECTION,
    BGWORKER_CLASS_PARALLEL,
    BGWORKER_SHMEM_ACCESS,
    SanityError,
    StartTime,
    Status,
    WorkerDef,
    sanity_check,
    status_of,
)
from node.elog import PGError
from node.ipc.latch import WL_POSTMASTER_DEATH
from node.ipc.lwlock import LWLockId
from node.ipc.pmsignal import send_pmsignal
from node.proc import count_signal, install_handler, me, report_signals, report_wait, report_wait_end
from node.states import PMSignalReason

__all__ = [
    "BGWORKER_BACKEND_DATABASE_CONNECTION",
    "BGWORKER_SHMEM_ACCESS",
    "BGW_NEVER_RESTART",
    "Handle",
    "StartTime",
    "Status",
    "WorkerDef",
    "check_for_interrupts",
    "register_background_worker",
    "register_dynamic_background_worker",
    "unblock_signals",
    "wait_latch",
]  # fmt: skip

# Short names of the preloadable modules pgbed ships (shared_preload_libraries = 'pgbed_test').
LIBRARIES = {"pgbed_test": "node.contrib.pgbed_test", "worker_spi": "node.contrib.worker_spi"}

# -- static registration (postmaster only) --------------------------------------------------------

_preloading = False
_shmem_initialized = False
STATIC_WORKERS: list[WorkerDef] = []


def load_preload_libraries(guc: Any) -> None:
    """process_shared_preload_libraries: import each module and run its _PG_init()."""
    global _preloading
    # SplitDirectoriesString: comma-separated, each name optionally double-quoted
    names = [x.strip().strip('"') for x in str(guc.get("shared_preload_libraries") or "").split(",") if x.strip()]
    _preloading = True
    try:
        for name in names:
            module_name = LIBRARIES.get(name, name)
            try:
                mod = importlib.import_module(module_name)
            except ImportError:
                raise elog.fatal(f'could not access file "{name}": No such file or directory', "58P01") from None
            init = getattr(mod, "_PG_init", None)
            if init is not None:
                init()
    finally:
        _preloading = False


def register_background_worker(w: WorkerDef) -> None:
    """RegisterBackgroundWorker (BGW-1/2)."""
    if _shmem_initialized:
        raise PGError(f'background worker "{w.name}": must be registered in "shared_preload_libraries"', "55000")
    if not _preloading:
        elog.log("LOG", f'background worker "{w.name}": must be registered in "shared_preload_libraries"')
        return
    try:
        sanity_check(w)
    except SanityError as e:
        elog.log("LOG", str(e))
        return
    if w.notify_pid:
        elog.log("LOG", f'background worker "{w.name}": only dynamic background workers can request notification')
        return
    limit = int(me.guc.get("max_worker_processes"))
    if len(STATIC_WORKERS) >= limit:
        elog.log("LOG", "too many background workers",
                 detail=f"Up to {limit} background workers can be registered with the current settings.",
                 hint='Consider increasing the configuration parameter "max_worker_processes".')  # fmt: skip
        return
    STATIC_WORKERS.append(w)


def mark_shmem_initialized() -> None:
    global _shmem_initialized
    _shmem_initialized = True


# -- slots ----------------------------------------------------------------------------------------


def write_slot(slot: Any, w: WorkerDef, *, generation: int, pid: int) -> None:
    """Fill a slot's definition; the caller sets in_use afterwards (P-11)."""
    slot.name = w.name.encode()[:95]
    slot.type = w.type.encode()[:95]
    slot.function = w.function.encode()[:127]
    slot.flags = w.flags
    slot.start_time = int(w.start_time)
    slot.restart_time = w.restart_time
    slot.main_arg = w.main_arg
    data = w.extra[:128]
    ctypes.memmove(slot.extra, data, len(data))  # raw bytes: a c_char field would stop at a NUL
    slot.extra_len = len(data)
    slot.notify_pid = w.notify_pid
    slot.generation = generation
    slot.pid = pid
    slot.terminate = 0
    slot.starts = slot.crashes = 0
    slot.last_start = slot.last_exit = 0.0
    slot.last_exit_code = 0
    slot.has_exited = 0


def read_slot(slot: Any) -> WorkerDef:
    """A defensive copy of a slot's definition (the postmaster never trusts shared memory)."""
    try:
        start = StartTime(int(slot.start_time))
    except ValueError:
        start = StartTime.RECOVERY_FINISHED
    return WorkerDef(
        name=slot.name.decode("utf-8", "replace"), type=slot.type.decode("utf-8", "replace"),
        flags=int(slot.flags), start_time=start, restart_time=int(slot.restart_time),
        function=slot.function.decode("utf-8", "replace"), main_arg=int(slot.main_arg),
        extra=bytes(slot.extra)[: int(slot.extra_len)], notify_pid=int(slot.notify_pid),
    )  # fmt: skip


# -- dynamic registration and handles (backends, workers) -----------------------------------------


class Handle:
    """BackgroundWorkerHandle: (slot, generation)."""

    def __init__(self, slot: int, generation: int) -> None:
        self.slot = slot
        self.generation = generation

    def __repr__(self) -> str:
        return f"Handle(slot={self.slot}, generation={self.generation})"

    def get_pid(self) -> tuple[Status, int]:
        """GetBackgroundWorkerPid (BGW-12)."""
        s = me.shm.bgw[self.slot]
        return status_of(bool(s.in_use), int(s.generation), self.generation, int(s.pid))

    def _wait(self, done: Any, interrupts: Any) -> tuple[Status, int]:
        latch = me.latch
        assert latch is not None
        report_wait("IPC", "BgWorkerStartup" if done is _started else "BgWorkerShutdown")
        try:
            while True:
                latch.reset()
                interrupts()
                st, pid = self.get_pid()
                if done(st):
                    return st, pid
                rc = latch.wait(1.0)
                if rc & WL_POSTMASTER_DEATH:
                    return Status.POSTMASTER_DIED, 0
        finally:
            report_wait_end()

    def wait_for_startup(self, interrupts: Any = None) -> tuple[Status, int]:
        """WaitForBackgroundWorkerStartup (BGW-13): never returns NOT_YET_STARTED."""
        return self._wait(_started, interrupts or check_for_interrupts)

    def wait_for_shutdown(self, interrupts: Any = None) -> tuple[Status, int]:
        """WaitForBackgroundWorkerShutdown: STOPPED at the first exit, even before a restart."""
        return self._wait(_stopped, interrupts or check_for_interrupts)

    def terminate(self) -> None:
        """TerminateBackgroundWorker (BGW-14): a no-op when the generation moved on."""
        s = me.shm.bgw[self.slot]
        signal_pm = False
        with me.locks.hold(LWLockId.BGWORKER):
            if s.in_use and int(s.generation) == self.generation:
                s.terminate = 1
                signal_pm = True
        if signal_pm:
            send_pmsignal(me.shm, me.postmaster_pid, PMSignalReason.BACKGROUND_WORKER_CHANGE)


def _started(st: Status) -> bool:
    return st is not Status.NOT_YET_STARTED


def _stopped(st: Status) -> bool:
    return st is Status.STOPPED


def register_dynamic_background_worker(w: WorkerDef) -> Handle | None:
    """RegisterDynamicBackgroundWorker (BGW-3/4). ERROR on a failed sanity check; None when no
    slot is free (or, for parallel workers, max_parallel_workers is reached)."""
    if me.shm is None or me.kind.value == "postmaster":
        return None
    try:
        sanity_check(w)
    except SanityError as e:
        raise PGError(str(e), "22023") from None
    shm = me.shm
    n = min(int(shm.bgw_count), len(shm.bgw))
    with me.locks.hold(LWLockId.BGWORKER):
        if w.flags & BGWORKER_CLASS_PARALLEL:
            running = sum(1 for i in range(n) if shm.bgw[i].in_use and shm.bgw[i].flags & BGWORKER_CLASS_PARALLEL)
            if running >= int(me.guc.get("max_parallel_workers")):
                return None
        for i in range(n):
            s = shm.bgw[i]
            if not s.in_use:
                generation = int(s.generation) + 1
                write_slot(s, w, generation=generation, pid=-1)
                s.in_use = 1  # last (BGW-4 (3))
                break
        else:
            return None
    injection.inject("backend-bgworker-registered")
    send_pmsignal(shm, me.postmaster_pid, PMSignalReason.BACKGROUND_WORKER_CHANGE)
    return Handle(i, generation)


# -- the worker process ----------------------------------------------------------------------------

_worker: WorkerDef | None = None


def _die(signum: int, frame: Any) -> None:
    """bgworker_die ([M]): only a flag and the latch (SIG-6); FATAL comes at the next check."""
    count_signal(signum)
    me.pending.proc_die = True
    if me.latch is not None:
        me.latch.set()


def _quit(signum: int, frame: Any) -> None:
    os._exit(2)  # SignalHandlerForCrashExit


def _wake(signum: int, frame: Any) -> None:
    count_signal(signum)
    if me.latch is not None:
        me.latch.set()


def _cancel(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.pending.query_cancel = True
    if me.latch is not None:
        me.latch.set()


def unblock_signals() -> None:
    """BackgroundWorkerUnblockSignals: the whole mask, as PostgreSQL's UnBlockSig."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def check_for_interrupts() -> None:
    """CHECK_FOR_INTERRUPTS in a worker: SIGTERM → FATAL (BGW-18), postmaster death → exit 1."""
    report_signals()
    p = me.pending
    if p.proc_die:
        wtype = _worker.type if _worker is not None else "unknown"
        raise elog.fatal(f'terminating background worker "{wtype}" due to administrator command', "57P01")
    if p.query_cancel:
        p.query_cancel = False
        raise PGError("canceling statement due to user request", "57014")
    if me.latch is not None and not me.latch.postmaster_alive():
        raise SystemExit(1)


def wait_latch(timeout: float | None, wait_event: str = "Extension") -> int:
    """WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH) + ResetLatch."""
    latch = me.latch
    assert latch is not None
    # The window between a loop's flag checks and its sleep (F39): a signal that arrives here
    # has set the latch, so the wait below returns at once instead of sleeping through it.
    injection.inject("bgworker-before-wait")
    report_wait("Extension", wait_event)
    try:
        rc = latch.wait(timeout)
    finally:
        report_wait_end()
    if rc & WL_POSTMASTER_DEATH:
        raise SystemExit(1)
    latch.reset()
    return rc


def resolve(function: str) -> Any:
    module_name, _, attr = function.partition(":")
    mod = importlib.import_module(LIBRARIES.get(module_name, module_name))
    return getattr(mod, attr)


def worker_main(w: WorkerDef, slot: int) -> int:
    """BackgroundWorkerMain, in the forked child."""
    global _worker
    _worker = w
    # The postmaster forks with every signal blocked; they stay blocked (SIGQUIT too, as with
    # PostgreSQL's BlockSig) until the worker calls unblock_signals().
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})
    install_handler(signal.SIGTERM, _die)
    install_handler(signal.SIGQUIT, _quit)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    if w.flags & BGWORKER_BACKEND_DATABASE_CONNECTION:
        install_handler(signal.SIGINT, _cancel)
        install_handler(signal.SIGUSR1, _wake)
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    elog.set_process(w.type)
    from node.launch import set_title
    from node.proc import attach

    set_title(f"{w.type}")
    injection.inject("bgworker-start")
    attach(backend_type=w.type)
    elog.event(events.BGW_MAIN, "DEBUG1", f'background worker "{w.name}" running', name=w.name, type=w.type,
               start_time=w.start_time.sql_name, pid=os.getpid(), slot=slot)  # fmt: skip
    try:
        fn = resolve(w.function)
    except (ImportError, AttributeError) as e:
        raise elog.fatal(f'could not find function "{w.function}": {e}', "42883") from None
    try:
        fn(w.main_arg)
    except PGError as e:
        if e.severity in ("FATAL", "PANIC"):
            raise
        elog.log("ERROR", e.message, sqlstate=e.sqlstate, detail=e.detail, hint=e.hint)
        return 1  # an uncaught ERROR in a worker: exit 1
    return 0
