"""Pure postmaster decisions: exit classification, connection admission, wait sets.

What it does: the tables of CRASH-1, canAcceptConnections (PM) and the SHUT-4 stop set, as pure
functions over states and kinds, so that they are unit-tested exhaustively without processes.

What it deliberately does not do: I/O of any kind. The postmaster applies the results.
"""

from __future__ import annotations

import enum
import signal

from node.states import BackendKind, PMState, ShutdownMode


class ExitClass(enum.Enum):
    CLEAN = "clean"  # expected exit
    FATAL = "fatal"  # exit 1: shared memory presumed intact
    CRASH = "crash"  # crash restart (CRASH-4)


# CRASH-1: kinds for which exit 0 or 1 is not a crash (subject to the dead-man switch).
_ZERO_OR_ONE = frozenset({BackendKind.BACKEND, BackendKind.WALSENDER, BackendKind.BGWORKER,
                          BackendKind.DEAD_END, BackendKind.WALRECEIVER, BackendKind.METRICS})
_DEADMAN = frozenset({BackendKind.BACKEND, BackendKind.WALSENDER, BackendKind.BGWORKER})


def classify_exit(kind: BackendKind, code: int, state: PMState, detached: bool) -> ExitClass:
    """`code` as os.waitstatus_to_exitcode gives it (negative = killed by that signal).

    The startup process is classified by the postmaster itself (CRASH-9 depends on history).
    """
    if code < 0:
        return ExitClass.CRASH
    if kind is BackendKind.CHECKPOINTER:
        return ExitClass.CLEAN if code == 0 and state == PMState.WAIT_CHECKPOINTER else ExitClass.CRASH
    if kind in _ZERO_OR_ONE:
        if code not in (0, 1):
            return ExitClass.CRASH
        if kind in _DEADMAN and not detached:
            return ExitClass.CRASH  # CRASH-3: died while still attached
        return ExitClass.CLEAN if code == 0 else ExitClass.FATAL
    if kind is BackendKind.STARTUP:
        return ExitClass.CLEAN if code == 0 else ExitClass.FATAL if code in (1, 3) else ExitClass.CRASH
    return ExitClass.CLEAN if code in (0, 1) else ExitClass.CRASH


_PROCNAME = {
    BackendKind.BACKEND: "server process",
    BackendKind.DEAD_END: "server process",
    BackendKind.STARTUP: "startup process",
    BackendKind.CHECKPOINTER: "checkpointer process",
    BackendKind.WALSENDER: "server process",  # PG15: walsenders are in BackendList
    BackendKind.WALRECEIVER: "WAL receiver process",
    BackendKind.BGWORKER: "background worker",
    BackendKind.METRICS: "metrics exporter process",
    BackendKind.POSTMASTER: "postmaster",
}


def procname(kind: BackendKind) -> str:
    return _PROCNAME[kind]


def describe_exit(name: str, pid: int, code: int) -> str:
    """LogChildExit's wording."""
    if code < 0:
        sig = -code
        try:
            text = signal.strsignal(sig) or "unknown signal"
        except ValueError:
            text = "unknown signal"
        return f"{name} (PID {pid}) was terminated by signal {sig}: {text}"
    return f"{name} (PID {pid}) exited with exit code {code}"


# SHUT-4: the stop set, signalled with SIGTERM at STOP_BACKENDS.
STOP_SET = frozenset({BackendKind.BACKEND, BackendKind.BGWORKER, BackendKind.STARTUP,
                      BackendKind.WALRECEIVER})
# Kinds WAIT_BACKENDS does not wait for in a normal shutdown (STYLE 7: every kind is either
# awaited or listed here).
_REMAIN_NORMAL = frozenset({BackendKind.CHECKPOINTER, BackendKind.WALSENDER, BackendKind.DEAD_END,
                            BackendKind.METRICS})
_REMAIN_CRASH = frozenset({BackendKind.DEAD_END})
_AWAITED = frozenset(BackendKind) - _REMAIN_NORMAL - {BackendKind.POSTMASTER}
assert _AWAITED | _REMAIN_NORMAL | {BackendKind.POSTMASTER} == frozenset(BackendKind)


def wait_backends_done(live: set[BackendKind], immediate_or_crash: bool) -> bool:
    remain = _REMAIN_CRASH if immediate_or_crash else _REMAIN_NORMAL
    return not (live - remain)


def can_accept_connections(state: PMState, shutdown: ShutdownMode, fatal_error: bool, conns_allowed: bool,
                           hot_standby: bool, *, n_children: int, max_children: int) -> str:
    """canAcceptConnections for a normal client connection; returns a CAC_* value."""
    from node import backend as b

    if state not in (PMState.RUN, PMState.HOT_STANDBY):
        if shutdown > ShutdownMode.NONE:
            return b.CAC_SHUTDOWN
        if not fatal_error and state == PMState.STARTUP:
            return b.CAC_STARTUP
        if not fatal_error and state == PMState.RECOVERY:
            return b.CAC_NOTCONSISTENT if hot_standby else b.CAC_NOTHOTSTANDBY
        return b.CAC_RECOVERY
    if not conns_allowed:
        return b.CAC_SHUTDOWN
    if n_children >= max_children:
        return b.CAC_TOOMANY
    return b.CAC_OK
