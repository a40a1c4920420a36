"""node.injection: spec parsing/validation, the two shm tables, firing and detaching.

Arming and firing run against a real in-process ShmemSegment and real LWLocks; the actions
that would end or stop this process (`_exit`, `stop`, `abort`) are only parsed here.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node import injection
from node.elog import PGError
from node.injection import Action
from node.ipc.lwlock import LWLocks
from node.ipc.shmem import INJ_SLOTS, ShmemSegment, ShmemSizes


@pytest.fixture
def shm() -> Iterator[Any]:
    seg = ShmemSegment.create(ShmemSizes(n_procs=8), 1)
    injection.attach(seg.s, None)
    try:
        yield seg.s
    finally:
        injection.attach(None, None)
        seg.release()


@pytest.fixture
def locks(tmp_path: Path) -> Iterator[LWLocks]:
    lk = LWLocks(str(tmp_path / "lwlocks"))
    try:
        yield lk
    finally:
        os.close(lk.fd)


# ---- parsing and validation -----------------------------------------------------------------


def test_parse_every_action() -> None:
    value = (
        "a:error, b:exit:3,c:_exit:2, d:sleep:250,e:wait,f:ignore:SIGTERM,g:ignore:hup,h:stop,i:abort,j:fail"
    )
    assert injection.parse_setting(value) == [
        ("a", "error", ""),
        ("b", "exit", "3"),
        ("c", "_exit", "2"),
        ("d", "sleep", "250"),
        ("e", "wait", ""),
        ("f", "ignore", "SIGTERM"),
        ("g", "ignore", "hup"),
        ("h", "stop", ""),
        ("i", "abort", ""),
        ("j", "fail", ""),
    ]
    assert set(injection.ACTION_NAMES.values()) == set(Action)


def test_parse_empty_list_and_blank_items() -> None:
    assert injection.parse_setting("") == []
    assert injection.parse_setting(" , ,") == []
    assert injection.guc_check("") is None


def test_parse_keeps_colons_in_argument() -> None:
    assert injection.parse_setting("x:sleep:10") == [("x", "sleep", "10")]
    with pytest.raises(ValueError, match='invalid argument "1:2"'):
        injection.parse_setting("x:exit:1:2")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("justname", 'invalid injection point specification "justname"'),
        ("x:explode", 'invalid action "explode" for injection point "x"'),
        (":error", 'invalid injection point name ""'),
        ("x" * 64 + ":error", "invalid injection point name"),
        ("x:exit", 'injection point action "exit" requires an argument'),
        ("x:_exit:", 'injection point action "_exit" requires an argument'),
        ("x:sleep", 'injection point action "sleep" requires an argument'),
        ("x:ignore", 'injection point action "ignore" requires an argument'),
        ("x:exit:three", 'invalid argument "three" for injection point action "exit"'),
        ("x:sleep:1.5", 'invalid argument "1.5" for injection point action "sleep"'),
        ("x:_exit:0x1", 'invalid argument "0x1" for injection point action "_exit"'),
        ("x:ignore:SIGNOPE", 'invalid signal "SIGNOPE" for injection point action "ignore"'),
        ("x:ignore:15", 'invalid signal "15" for injection point action "ignore"'),
        ("a:error,x:explode", 'invalid action "explode"'),
    ],
)
def test_parse_errors(value: str, message: str) -> None:
    with pytest.raises(ValueError) as ei:
        injection.parse_setting(value)
    assert message in str(ei.value)
    assert injection.guc_check(value) == str(ei.value)


def test_validate_ok() -> None:
    assert injection.validate("x" * 63, "error", "") is None
    assert injection.validate("x", "ignore", "usr1") is None
    assert injection.validate("x", "exit", "0") is None


def test_validate_rejects_argument_longer_than_slot() -> None:
    assert injection.validate("x", "sleep", "1" * 40) is not None


def test_validate_rejects_uncatchable_signal() -> None:
    assert injection.validate("x", "ignore", "SIGKILL") is not None


# ---- arming and firing ----------------------------------------------------------------------


def test_unarmed_point_is_noop(shm: Any) -> None:
    injection.inject("x")
    assert injection.armed("x") is None
    injection.apply_setting(shm, "other:error")
    injection.inject("x")  # another point is armed: still a no-op for x


def test_inject_without_shared_memory_is_noop() -> None:
    injection.attach(None, None)
    injection.inject("x")
    assert injection.armed("x") is None


def test_setting_error_fires(shm: Any) -> None:
    injection.apply_setting(shm, "x:error")
    assert shm.inj_setting_count == 1
    with pytest.raises(PGError) as ei:
        injection.inject("x")
    assert ei.value.message == "error triggered for injection point x"
    assert ei.value.severity == "ERROR"
    assert shm.inj_setting[0].fired == 1
    with pytest.raises(PGError):
        injection.inject("x")  # stays armed
    assert shm.inj_setting[0].fired == 2


def test_exit_action_raises_system_exit(shm: Any) -> None:
    injection.apply_setting(shm, "x:exit:3")
    with pytest.raises(SystemExit) as ei:
        injection.inject("x")
    assert ei.value.code == 3


def test_fail_action_raises_error(shm: Any) -> None:
    """`fail` at postmaster-fork-<kind>: run() raises like `error` so the fork path fails."""
    injection.apply_setting(shm, "postmaster-fork-backend:fail")
    point = injection.armed("postmaster-fork-backend")
    assert point is not None and point.action == Action.FAIL
    with pytest.raises(PGError, match="error triggered for injection point postmaster-fork-backend"):
        injection.run("postmaster-fork-backend", point)


def test_sleep_action(shm: Any) -> None:
    injection.apply_setting(shm, "x:sleep:1")
    injection.inject("x")
    assert shm.inj_setting[0].fired == 1


def test_ignore_action(shm: Any) -> None:
    old = signal.getsignal(signal.SIGUSR2)
    try:
        injection.apply_setting(shm, "x:ignore:usr2")
        injection.inject("x")
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR2, old)


def test_reapply_replaces_setting_table(shm: Any) -> None:
    injection.apply_setting(shm, "a:error,b:error")
    gen = shm.inj_setting[0].generation
    injection.apply_setting(shm, "c:exit:1")
    assert shm.inj_setting_count == 1
    assert injection.armed("a") is None and injection.armed("b") is None
    assert injection.armed("c") is not None
    assert shm.inj_setting[0].generation == gen + 1
    injection.apply_setting(shm, "")
    assert shm.inj_setting_count == 0
    assert injection.list_points(shm) == []


def test_apply_setting_truncates_to_slots(shm: Any) -> None:
    value = ",".join(f"p{i}:error" for i in range(INJ_SLOTS + 3))
    injection.apply_setting(shm, value)
    assert shm.inj_setting_count == INJ_SLOTS
    assert injection.armed(f"p{INJ_SLOTS - 1}") is not None
    assert injection.armed(f"p{INJ_SLOTS}") is None


# ---- SQL attach / detach --------------------------------------------------------------------


def test_sql_attach_and_detach(shm: Any, locks: LWLocks) -> None:
    injection.sql_attach(shm, locks, "y", "error", "")
    assert shm.inj_sql_count == 1
    with pytest.raises(PGError, match="error triggered for injection point y"):
        injection.inject("y")
    injection.sql_attach(shm, locks, "y", "exit", "4")  # re-attach replaces in place
    assert shm.inj_sql_count == 1
    with pytest.raises(SystemExit) as ei:
        injection.inject("y")
    assert ei.value.code == 4
    injection.sql_detach(shm, locks, "y")
    assert shm.inj_sql_count == 0
    injection.inject("y")  # no longer fires


def test_sql_attach_validates(shm: Any, locks: LWLocks) -> None:
    with pytest.raises(PGError) as ei:
        injection.sql_attach(shm, locks, "y", "explode", "")
    assert (ei.value.sqlstate, ei.value.message) == (
        "22023",
        'invalid action "explode" for injection point "y"',
    )
    assert shm.inj_sql_count == 0


def test_sql_attach_table_full(shm: Any, locks: LWLocks) -> None:
    for i in range(INJ_SLOTS):
        injection.sql_attach(shm, locks, f"p{i}", "error", "")
    with pytest.raises(PGError) as ei:
        injection.sql_attach(shm, locks, "one-too-many", "error", "")
    assert ei.value.sqlstate == "53000"
    injection.sql_attach(shm, locks, "p0", "wait", "")  # an existing name still re-arms
    assert shm.inj_sql_count == INJ_SLOTS


def test_sql_point_wins_over_setting_point(shm: Any, locks: LWLocks) -> None:
    injection.apply_setting(shm, "z:error")
    injection.sql_attach(shm, locks, "z", "exit", "5")
    with pytest.raises(SystemExit):
        injection.inject("z")


def test_detach_unknown_point(shm: Any, locks: LWLocks) -> None:
    with pytest.raises(PGError) as ei:
        injection.sql_detach(shm, locks, "y")
    assert ei.value.message == "could not find injection point y to detach"


def test_detach_setting_point(shm: Any, locks: LWLocks) -> None:
    injection.apply_setting(shm, "x:error,w:error")
    injection.sql_detach(shm, locks, "x")
    assert shm.inj_setting[0].detached == 1
    assert shm.inj_setting[0].armed == 1  # the postmaster still owns the entry
    injection.inject("x")  # stopped firing
    with pytest.raises(PGError):
        injection.inject("w")
    with pytest.raises(PGError, match="could not find injection point x to detach"):
        injection.sql_detach(shm, locks, "x")
    assert injection.list_points(shm) == [("w", "error", "", "setting")]


def test_list_points(shm: Any, locks: LWLocks) -> None:
    injection.apply_setting(shm, "a:sleep:5,b:ignore:TERM")
    injection.sql_attach(shm, locks, "c", "_exit", "2")
    injection.sql_attach(shm, locks, "d", "wait", "")
    injection.sql_detach(shm, locks, "d")
    assert injection.list_points(shm) == [
        ("a", "sleep", "5", "setting"),
        ("b", "ignore", "TERM", "setting"),
        ("c", "_exit", "2", "sql"),
    ]
