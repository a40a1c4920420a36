"""The current process: its shared-memory attachment, latch, pending interrupts and exit path.

What it does: holds what PostgreSQL keeps in globals such as MyProc, MyLatch, MyProcPid and
the *Pending interrupt flags; attaches a child to shared memory (dead-man switch ACTIVE, its
ProcEntry, its latch) and detaches it again in `proc_exit`, which runs the exit callbacks and
ends in os._exit. Also the pgstat_report_activity analogue (seqlock-protected writes of the
process's own pg_stat_activity row) and signal counting for the SIGNAL events.

What it deliberately does not do: decide what a signal means; each process kind installs its
own handlers (SIG-1: they only set flags here and set the latch).

Ownership: a process writes only its own ProcEntry and its own dead-man switch slot.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from node import elog, events, injection
from node.ipc.latch import Latch
from node.states import ActivityState, BackendKind, ChildSlotState

KIND_ORDER = list(BackendKind)
ACTIVITY_ORDER = list(ActivityState)


@dataclass
class Pending:
    """Flags set by signal handlers (volatile sig_atomic_t in C). Handlers write, loops read."""

    interrupt: bool = False
    proc_die: bool = False
    query_cancel: bool = False
    config_reload: bool = False
    shutdown_request: bool = False  # checkpointer: SIGINT
    shutdown_exit: bool = False  # checkpointer: SIGUSR2
    promote: bool = False  # startup: SIGUSR2
    # received[n] is only ever incremented (by handlers); reported[n] by the loop, so the two
    # never race on one integer.
    received: list[int] = field(default_factory=lambda: [0] * 65)
    reported: list[int] = field(default_factory=lambda: [0] * 65)


@dataclass
class ChildInfo:
    """What the postmaster passes to a child at fork (the child gets a copy, not a share)."""

    kind: BackendKind
    slot: int  # child slot; -1 for dead-end children (they never attach)
    cancel_key: int = 0


class MyProc:
    kind: BackendKind = BackendKind.POSTMASTER
    pid: int = 0
    slot: int = -1
    seg: Any = None  # ShmemSegment
    shm: Any = None  # its typed layout
    entry: Any = None  # our ProcEntry
    locks: Any = None
    latch: Latch | None = None
    postmaster_pid: int = 0
    death_fd: int | None = None
    datadir: str = ""
    guc: Any = None
    attached: bool = False
    exit_callbacks: list[Callable[[int], None]] = []
    pending: Pending = Pending()


me = MyProc


def install_handler(sig: int, fn: Callable[[int, Any], None]) -> None:
    """signal.signal with PostgreSQL 17's wrapper_handler check (SIG-2, P-8): a handler that
    fires in a process forked from us without exec (not a pgbed process) restores the default
    disposition and re-raises, instead of touching state that is not its own."""
    owner = os.getpid()

    def wrapper(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        fn(signum, frame)

    signal.signal(sig, wrapper)


def historic_bug(name: str) -> bool:
    """Whether `pgbed.historic_bugs` puts back the named historic bug (read at the call, so a
    reload takes effect; any process, the postmaster included)."""
    try:
        value = str(me.guc.get("pgbed.historic_bugs") or "")
    except Exception:
        return False
    return name in value.replace(" ", "").split(",")


def count_signal(signum: int) -> None:
    """Called from handlers: only an integer increment (P-5)."""
    me.pending.received[signum] += 1


# Handlers shared by the auxiliary processes (SIG-1: a flag, then the latch; nothing else).


def reload_handler(signum: int, frame: Any) -> None:
    """SignalHandlerForConfigReload."""
    count_signal(signum)
    me.pending.config_reload = True
    me.latch.set()  # type: ignore[union-attr]


def die_handler(signum: int, frame: Any) -> None:
    """SignalHandlerForShutdownRequest / die: the exit happens at the next check."""
    count_signal(signum)
    me.pending.proc_die = True
    me.latch.set()  # type: ignore[union-attr]


def wake_handler(signum: int, frame: Any) -> None:
    """procsignal_sigusr1_handler without reasons: wake the main loop."""
    count_signal(signum)
    me.latch.set()  # type: ignore[union-attr]


def process_config_reload() -> bool:
    """At a check point: when a SIGHUP asked for it (ConfigReloadPending), re-read the
    configuration files (ProcessConfigFile(PGC_SIGHUP)). True when it did, for callers that act
    on changed settings."""
    if not me.pending.config_reload:
        return False
    me.pending.config_reload = False
    from node.config import reload_in_child

    reload_in_child()
    return True


def report_signals() -> None:
    """At a check point: log the signals counted since the last report and add them to the shared
    counters the metrics exporter reads (never in a handler)."""
    p = me.pending
    for n in range(1, 65):
        got = p.received[n]
        if got != p.reported[n]:
            count = got - p.reported[n]
            p.reported[n] = got
            try:
                name = signal.Signals(n).name
            except ValueError:
                name = str(n)
            elog.event(events.SIGNAL, "DEBUG1", f"received {name} ({count}x)", signal=name, count=count,
                       kind=me.kind.value)  # fmt: skip
            shm = getattr(me, "shm", None)
            if shm is not None:
                from node.pmstats import flush_signal_count

                flush_signal_count(shm, getattr(me, "locks", None), me.kind, n, count)


def init_child(info: ChildInfo, *, set_title: Callable[[str], None]) -> None:
    me.kind = info.kind
    me.pid = os.getpid()
    me.slot = info.slot
    me.pending = Pending()
    me.exit_callbacks = []
    me.attached = False
    me.entry = None
    elog.set_process(info.kind.value)
    me.latch = Latch(me.death_fd)
    set_title(info.kind.value)


def attach(backend_type: str | None = None) -> None:
    """Attach to shared memory: dead-man switch ACTIVE, claim our ProcEntry, own our latch."""
    prefix = me.kind.point_prefix
    injection.inject(f"{prefix}-before-attach")
    shm = me.shm
    shm.child_state[me.slot] = ChildSlotState.ACTIVE
    me.attached = True
    e = shm.procs[me.slot]
    e.changecount += 1
    e.pid = me.pid
    e.kind = KIND_ORDER.index(me.kind)
    e.counted = 0
    e.state = ACTIVITY_ORDER.index(ActivityState.STARTING)
    now = time.time()
    e.backend_start = now
    e.xact_start = 0.0
    e.query_start = 0.0
    e.state_change = now
    e.backend_type = (backend_type or me.kind.value).encode()[:63]
    e.application_name = b""
    e.client_addr = b""
    e.client_port = 0
    e.usename = b""
    e.datname = b""
    e.wait_event_type = b""
    e.wait_event = b""
    e.query = b""
    e.changecount += 1
    me.entry = e
    assert me.latch is not None
    me.latch.own(e)
    injection.inject(f"{prefix}-after-attach")


def detach() -> None:
    """Clean detach, the last step of proc_exit: latch, then entry, then the dead-man switch."""
    if not me.attached:
        return
    e = me.entry
    if me.latch is not None:
        me.latch.disown()
    if e is not None:
        e.changecount += 1
        e.counted = 0
        e.pid = 0
        e.changecount += 1
        me.entry = None
    me.shm.child_state[me.slot] = ChildSlotState.ASSIGNED
    me.attached = False


def report_activity(state: ActivityState, query: str | None = None, *, xact_start: float | None = None) -> None:
    """pgstat_report_activity: update our own row under the seqlock."""
    e = me.entry
    if e is None:
        return
    now = time.time()
    e.changecount += 1
    e.state = ACTIVITY_ORDER.index(state)
    e.state_change = now
    if query is not None:
        e.query = query.encode("utf-8", "replace")[:1023]
        if state is ActivityState.ACTIVE:
            e.query_start = now
    if xact_start is not None:
        e.xact_start = xact_start
    e.changecount += 1


def report_wait(event_type: str, event: str) -> None:
    """pgstat_report_wait_start: what this process waits for (pg_stat_activity.wait_event*)."""
    e = me.entry
    if e is None:
        return
    e.changecount += 1
    e.wait_event_type = event_type.encode()[:31]
    e.wait_event = event.encode()[:31]
    e.changecount += 1


def report_wait_end() -> None:
    report_wait("", "")


def read_entry(e: Any) -> dict[str, Any] | None:
    """Copy a ProcEntry consistently (seqlock reader: retry while odd or changed)."""
    for _ in range(100):
        before = e.changecount
        if before & 1:
            continue
        pid = e.pid
        if not pid:
            return None
        row = {
            "pid": pid,
            "kind": KIND_ORDER[e.kind] if e.kind < len(KIND_ORDER) else BackendKind.BACKEND,
            "state": ACTIVITY_ORDER[e.state] if e.state < len(ACTIVITY_ORDER) else None,
            "backend_start": e.backend_start,
            "xact_start": e.xact_start,
            "query_start": e.query_start,
            "state_change": e.state_change,
            "backend_type": e.backend_type.decode("utf-8", "replace"),
            "application_name": e.application_name.decode("utf-8", "replace"),
            "client_addr": e.client_addr.decode(),
            "client_port": e.client_port,
            "usename": e.usename.decode("utf-8", "replace"),
            "datname": e.datname.decode("utf-8", "replace"),
            "wait_event_type": e.wait_event_type.decode(),
            "wait_event": e.wait_event.decode(),
            "query": e.query.decode("utf-8", "replace"),
            "counted": e.counted,
        }
        if e.changecount == before:
            return row
    return None


def proc_exit(code: int) -> None:
    """Run exit callbacks, detach cleanly, and _exit. Never returns."""
    try:
        injection.inject(f"{me.kind.point_prefix}-before-exit")
    except SystemExit as e:
        code = int(e.code or 0)
    except BaseException:
        pass
    for cb in reversed(me.exit_callbacks):
        try:
            cb(code)
        except BaseException:
            pass
    try:
        detach()
    except BaseException:
        pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    os._exit(code)
