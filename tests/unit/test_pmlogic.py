"""node.pmlogic: exit classification (CRASH-1, CRASH-3), LogChildExit wording (CRASH-4),
canAcceptConnections (§1 "Which children may run in each state") and the SHUT-4 stop set.

The expected values are written out from reference/process-model.md and PostgreSQL's
postmaster.c, independently of the implementation, and checked over every combination
(STYLE "What to absorb" 9 and 14: exit policy is one pure table, tested exhaustively).
"""

from __future__ import annotations

import itertools

import pytest

from node import backend
from node.pmlogic import (
    STOP_SET,
    ExitClass,
    can_accept_connections,
    classify_exit,
    describe_exit,
    procname,
    wait_backends_done,
)
from node.states import BackendKind, PMState, ShutdownMode

K = BackendKind
CLEAN, FATAL, CRASH = ExitClass.CLEAN, ExitClass.FATAL, ExitClass.CRASH
CODES = (0, 1, 2, 3, -9, -11, -6)
CHILD_KINDS = [k for k in BackendKind if k is not K.POSTMASTER]  # the postmaster is never reaped

# ---- CRASH-1 / CRASH-3: the table, written from the spec ------------------------------------

# Kinds whose exit 0 or 1 is not a crash ...
ZERO_OR_ONE = {K.BACKEND, K.WALSENDER, K.BGWORKER, K.DEAD_END, K.WALRECEIVER, K.METRICS}
# ... and of those, the ones holding a dead-man-switch slot (CRASH-3: PMS, CleanupBackend).
DEADMAN = {K.BACKEND, K.WALSENDER, K.BGWORKER}


def expected_class(kind: BackendKind, code: int, state: PMState, detached: bool) -> ExitClass:
    """CRASH-1 row by row; CRASH-9 decides the startup process's fate, 0/1/3 are not crashes."""
    if kind is K.CHECKPOINTER:
        return CLEAN if (code == 0 and state is PMState.WAIT_CHECKPOINTER) else CRASH
    if kind is K.STARTUP:
        return {0: CLEAN, 1: FATAL, 3: FATAL}.get(code, CRASH)
    assert kind in ZERO_OR_ONE, kind  # a new kind must be added to this table
    if code not in (0, 1):
        return CRASH
    if kind in DEADMAN and not detached:
        return CRASH
    return CLEAN if code == 0 else FATAL


def test_every_child_kind_has_a_row() -> None:
    """CRASH-1: every kind the postmaster can reap is covered by the table above."""
    assert set(CHILD_KINDS) == ZERO_OR_ONE | {K.CHECKPOINTER, K.STARTUP}


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("kind", CHILD_KINDS, ids=lambda k: k.name)
def test_classify_exit_exhaustive(kind: BackendKind, code: int) -> None:
    """CRASH-1, CRASH-3: every kind x exit code x PMState x detached."""
    for state, detached in itertools.product(PMState, (True, False)):
        got = classify_exit(kind, code, state, detached)
        assert got is expected_class(kind, code, state, detached), (kind, code, state.name, detached)


@pytest.mark.parametrize("code", [-9, -11, -6, -15, -2])
@pytest.mark.parametrize("kind", CHILD_KINDS, ids=lambda k: k.name)
def test_killed_by_signal_is_always_a_crash(kind: BackendKind, code: int) -> None:
    """CRASH-1: killed by a signal = crash, for every kind, even SIGTERM and detached."""
    for state in PMState:
        assert classify_exit(kind, code, state, True) is CRASH


def test_checkpointer_exit_zero_only_clean_in_wait_checkpointer() -> None:
    """CRASH-1, T11: checkpointer exit 0 is clean only in WAIT_CHECKPOINTER."""
    clean_states = [s for s in PMState if classify_exit(K.CHECKPOINTER, 0, s, True) is CLEAN]
    assert clean_states == [PMState.WAIT_CHECKPOINTER]
    assert classify_exit(K.CHECKPOINTER, 1, PMState.WAIT_CHECKPOINTER, True) is CRASH
    assert classify_exit(K.CHECKPOINTER, 0, PMState.RUN, True) is CRASH


@pytest.mark.parametrize("kind", [K.BACKEND, K.WALSENDER, K.BGWORKER], ids=lambda k: k.name)
@pytest.mark.parametrize("code", [0, 1])
def test_dead_man_switch(kind: BackendKind, code: int) -> None:
    """CRASH-3: a clean-looking exit while the slot is still ACTIVE/WALSENDER is a crash."""
    assert classify_exit(kind, code, PMState.RUN, detached=False) is CRASH
    assert classify_exit(kind, code, PMState.RUN, detached=True) is (CLEAN if code == 0 else FATAL)


@pytest.mark.parametrize("kind", [K.WALRECEIVER, K.DEAD_END, K.METRICS], ids=lambda k: k.name)
def test_exit_one_not_a_crash_without_slot_check(kind: BackendKind) -> None:
    """CRASH-1: walreceiver (and dead-end children) exiting 1 is not a crash; exit 2 is (F16, F28)."""
    assert classify_exit(kind, 1, PMState.RUN, detached=False) is FATAL
    assert classify_exit(kind, 0, PMState.HOT_STANDBY, detached=False) is CLEAN
    assert classify_exit(kind, 2, PMState.RUN, detached=True) is CRASH


def test_startup_exit_codes() -> None:
    """CRASH-1 (startup row), T15: exit 3 is the recovery target, 2 (quickdie) is a crash."""
    assert classify_exit(K.STARTUP, 0, PMState.STARTUP, True) is CLEAN
    assert classify_exit(K.STARTUP, 1, PMState.RECOVERY, True) is FATAL
    assert classify_exit(K.STARTUP, 3, PMState.HOT_STANDBY, True) is FATAL
    assert classify_exit(K.STARTUP, 2, PMState.RECOVERY, True) is CRASH


# ---- CRASH-4: LogChildExit wording ----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (-9, "server process (PID 12) was terminated by signal 9: Killed"),
        (-11, "server process (PID 12) was terminated by signal 11: Segmentation fault"),
        (-6, "server process (PID 12) was terminated by signal 6: Aborted"),
        (1, "server process (PID 12) exited with exit code 1"),
        (0, "server process (PID 12) exited with exit code 0"),
        (2, "server process (PID 12) exited with exit code 2"),
    ],
)
def test_describe_exit(code: int, text: str) -> None:
    """CRASH-4: `<proc> (PID n) exited with exit code c` / `... was terminated by signal s: <name>`."""
    assert describe_exit("server process", 12, code) == text


def test_describe_exit_unknown_signal() -> None:
    """CRASH-4: a signal number the C library does not know still yields a line."""
    assert describe_exit("checkpointer process", 7, -200).startswith(
        "checkpointer process (PID 7) was terminated by signal 200: "
    )


def test_procnames() -> None:
    """CRASH-4: PostgreSQL's process names in exit lines (PM: process_pm_child_exit)."""
    assert procname(K.BACKEND) == "server process"
    assert procname(K.CHECKPOINTER) == "checkpointer process"
    assert procname(K.STARTUP) == "startup process"
    assert procname(K.WALRECEIVER) == "WAL receiver process"
    assert procname(K.WALSENDER) == "server process"
    assert procname(K.BGWORKER) == "background worker"
    for k in BackendKind:
        assert procname(k)


# ---- canAcceptConnections -------------------------------------------------------------------

NOT_OPEN = [s for s in PMState if s not in (PMState.RUN, PMState.HOT_STANDBY)]


def pg_can_accept(
    state: PMState, shutdown: ShutdownMode, fatal: bool, conns: bool, hot_standby: bool, toomany: bool
) -> str:
    """PostgreSQL's canAcceptConnections(B_BACKEND) plus BackendStartup's slot check (CAC_TOOMANY);
    pgbed splits PG's CAC_NOTHOTSTANDBY by hot_standby (the message BS picks)."""
    if state not in (PMState.RUN, PMState.HOT_STANDBY):
        if shutdown > ShutdownMode.NONE:
            return backend.CAC_SHUTDOWN
        if not fatal and state is PMState.STARTUP:
            return backend.CAC_STARTUP
        if not fatal and state is PMState.RECOVERY:
            return backend.CAC_NOTCONSISTENT if hot_standby else backend.CAC_NOTHOTSTANDBY
        return backend.CAC_RECOVERY
    if not conns:
        return backend.CAC_SHUTDOWN
    if toomany:
        return backend.CAC_TOOMANY
    return backend.CAC_OK


@pytest.mark.parametrize("state", PMState, ids=lambda s: s.name)
def test_can_accept_connections_exhaustive(state: PMState) -> None:
    """§1 admission table: every PMState x ShutdownMode x fatal_error x conns_allowed x hot_standby."""
    for shutdown, fatal, conns, hs, toomany in itertools.product(
        ShutdownMode, (False, True), (False, True), (False, True), (False, True)
    ):
        n = 10 if toomany else 3
        got = can_accept_connections(state, shutdown, fatal, conns, hs, n_children=n, max_children=10)
        want = pg_can_accept(state, shutdown, fatal, conns, hs, toomany)
        assert got == want, (state.name, shutdown.name, fatal, conns, hs, toomany)


def test_can_accept_named_cases() -> None:
    """T2/T3/T4, SHUT-2, CRASH-7, F31: the situations the table exists for."""
    cac = can_accept_connections
    kw = {"n_children": 0, "max_children": 10}
    assert cac(PMState.RUN, ShutdownMode.NONE, False, True, True, **kw) == backend.CAC_OK
    assert cac(PMState.HOT_STANDBY, ShutdownMode.NONE, False, True, True, **kw) == backend.CAC_OK
    # SHUT-2: smart shutdown in RUN refuses new connections
    assert cac(PMState.RUN, ShutdownMode.SMART, False, False, True, **kw) == backend.CAC_SHUTDOWN
    assert cac(PMState.STARTUP, ShutdownMode.NONE, False, False, True, **kw) == backend.CAC_STARTUP
    # F31: hot_standby=off -> "Hot standby mode is disabled."
    assert cac(PMState.RECOVERY, ShutdownMode.NONE, False, False, False, **kw) == backend.CAC_NOTHOTSTANDBY
    assert cac(PMState.RECOVERY, ShutdownMode.NONE, False, False, True, **kw) == backend.CAC_NOTCONSISTENT
    # CRASH-7: after a crash the reinitialised STARTUP still has FatalError -> "in recovery mode"
    assert cac(PMState.STARTUP, ShutdownMode.NONE, True, False, True, **kw) == backend.CAC_RECOVERY
    assert cac(PMState.WAIT_BACKENDS, ShutdownMode.NONE, True, False, True, **kw) == backend.CAC_RECOVERY
    assert cac(PMState.WAIT_BACKENDS, ShutdownMode.FAST, False, False, True, **kw) == backend.CAC_SHUTDOWN
    # CAC_TOOMANY only once the state would admit the connection
    assert cac(PMState.RUN, ShutdownMode.NONE, False, True, True, n_children=10, max_children=10) == (
        backend.CAC_TOOMANY
    )
    assert cac(PMState.RUN, ShutdownMode.NONE, False, True, True, n_children=9, max_children=10) == (
        backend.CAC_OK
    )
    assert cac(PMState.STARTUP, ShutdownMode.NONE, False, True, True, n_children=99, max_children=10) == (
        backend.CAC_STARTUP
    )


@pytest.mark.parametrize(
    ("cac", "message", "sqlstate", "detail"),
    [
        (backend.CAC_STARTUP, "the database system is starting up", "57P03", None),
        (backend.CAC_SHUTDOWN, "the database system is shutting down", "57P03", None),
        (backend.CAC_RECOVERY, "the database system is in recovery mode", "57P03", None),
        (backend.CAC_NOTHOTSTANDBY, "the database system is not accepting connections", "57P03",
         "Hot standby mode is disabled."),
        (backend.CAC_NOTCONSISTENT, "the database system is not yet accepting connections", "57P03",
         "Consistent recovery state has not been yet reached."),
        (backend.CAC_TOOMANY, "sorry, too many clients already", "53300", None),
    ],
)  # fmt: skip
def test_cac_messages(cac: str, message: str, sqlstate: str, detail: str | None) -> None:
    """§1 / BS: each refusal the admission table can return has PostgreSQL's FATAL text."""
    e = backend.cac_error(cac)
    assert (e.severity, e.message, e.sqlstate, e.detail) == ("FATAL", message, sqlstate, detail)


# ---- SHUT-4: the stop set and WAIT_BACKENDS -------------------------------------------------


def test_stop_set_members() -> None:
    """SHUT-4: SIGTERM goes to backends, bgworkers, the startup process and the walreceiver;
    walsenders, the checkpointer and dead-end children are not signalled."""
    assert {K.BACKEND, K.BGWORKER, K.STARTUP, K.WALRECEIVER} <= STOP_SET
    assert not STOP_SET & {K.WALSENDER, K.CHECKPOINTER, K.DEAD_END, K.POSTMASTER}


@pytest.mark.parametrize("kind", CHILD_KINDS, ids=lambda k: k.name)
def test_wait_backends_normal_waits_exactly_for_the_stop_set(kind: BackendKind) -> None:
    """SHUT-4, T7: a normal shutdown waits for a kind iff it signalled it (else it would hang)."""
    assert wait_backends_done({kind}, immediate_or_crash=False) is (kind not in STOP_SET)


@pytest.mark.parametrize("kind", CHILD_KINDS, ids=lambda k: k.name)
def test_wait_backends_crash_waits_for_all_but_dead_end(kind: BackendKind) -> None:
    """SHUT-4, T8: under FatalError or immediate shutdown, only dead-end children may remain."""
    assert wait_backends_done({kind}, immediate_or_crash=True) is (kind is K.DEAD_END)


def test_wait_backends_sets() -> None:
    """SHUT-4, T7/T8: survivors of a normal shutdown; empty set is done in both modes."""
    survivors = {K.CHECKPOINTER, K.WALSENDER, K.DEAD_END}
    assert wait_backends_done(survivors, immediate_or_crash=False)
    assert not wait_backends_done(survivors, immediate_or_crash=True)
    assert not wait_backends_done(survivors | {K.BACKEND}, immediate_or_crash=False)
    assert wait_backends_done(set(), immediate_or_crash=False)
    assert wait_backends_done(set(), immediate_or_crash=True)
    assert wait_backends_done({K.DEAD_END}, immediate_or_crash=True)
