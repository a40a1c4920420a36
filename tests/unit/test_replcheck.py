"""orchestrator.replcheck: the outside invariant checks over pgbed_walsnd_slots / pgbed_walrcv snapshots and jsonlog
events: one pid per walsender slot (WALSND-1), a used slot's latch owned by its own pid and a free slot pointing
at no latch (WALSND-2, SIG-3), no slot or walreceiver naming an exited or dead process (P-6), and the gaps
between walreceiver starts (WALRCV-6)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.replcheck import exited_pids, restart_gaps, walrcv_violations, walsnd_slot_violations


def slot(slot: int, pid: int | None, owner: int | None, state: str = "streaming") -> dict[str, Any]:
    return {"slot": slot, "pid": pid, "state": state, "latch_owner_pid": owner}


def walrcv(pid: int | None, owner: int | None, state: str) -> dict[str, Any]:
    return {"pid": pid, "state": state, "latch_owner_pid": owner}


# ---- exited_pids -----------------------------------------------------------------------------


def test_exited_pids() -> None:
    events = [
        {"event": "child_exit", "child_pid": 101, "kind": "walsender", "ts": 1.0},
        {"event": "child_start", "child_pid": 102, "kind": "walsender", "ts": 1.5},
        {"event": "child_exit", "child_pid": "103", "ts": 2.0},  # as a string in some logs
        {"event": "child_exit", "child_pid": 0, "ts": 3.0},
        {"event": "child_exit", "ts": 4.0},
        {"event": "child_exit", "child_pid": 101, "ts": 5.0},
        {"message": "no event field"},
    ]
    assert exited_pids(events) == {101, 103}
    assert exited_pids([]) == set()
    assert exited_pids(iter(events)) == {101, 103}  # any iterable, read once


# ---- walsnd_slot_violations (WALSND-1/2, SIG-3, P-6) -----------------------------------------


def test_clean_snapshots_have_no_violations() -> None:
    assert walsnd_slot_violations([]) == []
    rows = [slot(0, 4242, 4242), slot(1, None, None, "startup"), slot(2, 0, 0), slot(3, 4343, 4343, "catchup")]
    assert walsnd_slot_violations(rows) == []
    assert walsnd_slot_violations(rows, exited={1, 2, 3}, alive=lambda pid: pid in (4242, 4343)) == []


def test_two_slots_with_one_pid() -> None:
    rows = [slot(0, 500, 500), slot(1, 600, 600), slot(3, 500, 500)]
    assert walsnd_slot_violations(rows) == ["slots 0 and 3 both hold pid 500"]


def test_three_slots_with_one_pid_report_each_duplicate() -> None:
    rows = [slot(0, 500, 500), slot(1, 500, 500), slot(2, 500, 500)]
    assert walsnd_slot_violations(rows) == ["slots 0 and 1 both hold pid 500", "slots 1 and 2 both hold pid 500"]


def test_used_slot_whose_latch_is_owned_by_another_pid() -> None:
    assert walsnd_slot_violations([slot(2, 700, 701)]) == ["slot 2 of pid 700 points at a latch owned by 701"]


@pytest.mark.parametrize("owner", [None, 0])
def test_used_slot_whose_latch_is_owned_by_nobody(owner: int | None) -> None:
    assert walsnd_slot_violations([slot(1, 700, owner)]) == ["slot 1 of pid 700 points at a latch owned by nobody"]


def test_free_slot_that_still_points_at_a_latch() -> None:
    assert walsnd_slot_violations([slot(4, None, 800)]) == ["free slot 4 points at a latch owned by 800"]
    assert walsnd_slot_violations([slot(4, 0, 800)]) == ["free slot 4 points at a latch owned by 800"]


def test_slot_naming_an_exited_pid() -> None:
    rows = [slot(0, 900, 900), slot(1, 901, 901)]
    exited = exited_pids([{"event": "child_exit", "child_pid": 901}])
    assert walsnd_slot_violations(rows, exited=exited) == ["slot 1 still names pid 901, which has exited"]


def test_slot_naming_a_pid_that_is_not_alive() -> None:
    rows = [slot(0, 900, 900), slot(1, 901, 901)]
    seen: list[int] = []

    def alive(pid: int) -> bool:
        seen.append(pid)
        return pid != 900

    assert walsnd_slot_violations(rows, alive=alive) == ["slot 0 names pid 900, which is not alive"]
    assert sorted(seen) == [900, 901]


def test_exited_takes_precedence_over_not_alive() -> None:
    v = walsnd_slot_violations([slot(0, 900, 900)], exited={900}, alive=lambda _pid: False)
    assert v == ["slot 0 still names pid 900, which has exited"]


def test_free_slots_are_not_checked_for_liveness() -> None:
    def alive(pid: int) -> bool:
        raise AssertionError(f"asked about {pid}")

    assert walsnd_slot_violations([slot(0, None, None), slot(1, 0, 0)], exited={0}, alive=alive) == []


def test_several_violations_in_row_order() -> None:
    rows = [slot(0, 10, 11), slot(1, None, 12), slot(2, 10, 10), slot(3, 13, 13)]
    assert walsnd_slot_violations(rows, exited={13}) == [
        "slot 0 of pid 10 points at a latch owned by 11",
        "free slot 1 points at a latch owned by 12",
        "slots 0 and 2 both hold pid 10",
        "slot 3 still names pid 13, which has exited",
    ]


# ---- walrcv_violations (WALRCV latch, P-6) ---------------------------------------------------


@pytest.mark.parametrize(
    "row",
    [walrcv(None, None, "stopped"), walrcv(0, 0, "starting"), walrcv(77, 77, "streaming"), walrcv(77, 77, "waiting")],
)
def test_walrcv_clean(row: dict[str, Any]) -> None:
    assert walrcv_violations([row]) == []
    assert walrcv_violations([row], exited={1}, alive=lambda _pid: True) == []


def test_walrcv_latch_owned_by_another_pid_or_nobody() -> None:
    assert walrcv_violations([walrcv(77, 78, "streaming")]) == ["walreceiver 77 points at a latch owned by 78"]
    assert walrcv_violations([walrcv(77, None, "streaming")]) == ["walreceiver 77 points at a latch owned by nobody"]


def test_no_walreceiver_but_latch_owned() -> None:
    assert walrcv_violations([walrcv(None, 78, "stopped")]) == ["no walreceiver, but its latch is owned by 78"]


@pytest.mark.parametrize("state", ["streaming", "waiting", "stopping", "restarting"])
def test_no_walreceiver_but_an_active_state(state: str) -> None:
    assert walrcv_violations([walrcv(0, 0, state)]) == [f"no walreceiver, but its state is {state}"]


def test_walrcv_naming_an_exited_or_dead_pid() -> None:
    row = walrcv(77, 77, "streaming")
    assert walrcv_violations([row], exited={77}) == ["walreceiver struct names pid 77, which has exited"]
    assert walrcv_violations([row], alive=lambda pid: pid != 77) == [
        "walreceiver struct names pid 77, which has exited"
    ]
    assert walrcv_violations([row], exited={77}, alive=lambda _pid: False) == [
        "walreceiver struct names pid 77, which has exited"
    ]


def test_walrcv_everything_wrong_at_once() -> None:
    assert walrcv_violations([walrcv(None, 5, "streaming")]) == [
        "no walreceiver, but its latch is owned by 5",
        "no walreceiver, but its state is streaming",
    ]


# ---- restart_gaps (WALRCV-6) -----------------------------------------------------------------


def test_restart_gaps() -> None:
    events = [
        {"event": "child_start", "kind": "walreceiver", "ts": 12.5},
        {"event": "child_start", "kind": "walsender", "ts": 12.75},
        {"event": "child_exit", "kind": "walreceiver", "ts": 13.0},
        {"event": "child_start", "kind": "walreceiver", "ts": 17.75},
        {"event": "child_start", "kind": "walreceiver", "ts": "18.25"},
    ]
    assert restart_gaps(events) == [5.25, 0.5]
    assert restart_gaps(events, kind="walsender") == []
    assert restart_gaps([]) == []
    assert restart_gaps(events[:1]) == []


def test_restart_gaps_sorts_by_timestamp() -> None:
    events = [{"event": "child_start", "kind": "walreceiver", "ts": ts} for ts in (30.0, 10.0, 20.5)]
    assert restart_gaps(iter(events)) == [10.5, 9.5]
    assert all(g >= 0 for g in restart_gaps(events))


def test_restart_gaps_other_kind() -> None:
    events = [
        {"event": "child_start", "kind": "startup", "ts": 1.0},
        {"event": "child_start", "kind": "startup", "ts": 4.0},
    ]
    assert restart_gaps(events, "startup") == [3.0]
    assert restart_gaps(events) == []
