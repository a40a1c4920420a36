"""The orchestrator's checkers (orchestrator/checker/*), on hand-made histories, events and snapshots.

Every checker is shown an input it must judge INVALID (and the evidence must say what was seen),
one it must judge VALID, and one where it saw too little and must say UNKNOWN. Plus the base
contract: check_safe turns a checker's exception into UNKNOWN, and merge ranks INVALID over
UNKNOWN over VALID, keeping only the worst results' evidence.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.checker import data, liveness, process
from orchestrator.checker.base import INVALID, UNKNOWN, VALID, CheckResult, check_safe, invalid, merge, unknown, valid
from orchestrator.history import FAIL, INFO, NEMESIS, OK, History, Op

PM = 1000  # the postmaster's pid in the hand-made events

# -- helpers ------------------------------------------------------------------------------------------


def E(event: str, ts: float, **kw: Any) -> dict[str, Any]:
    """An event as the postmaster writes it (pid = its own unless the event says otherwise)."""
    rec: dict[str, Any] = {"event": event, "ts": ts, "pid": PM, "backend_type": "postmaster"}
    rec.update(kw)
    return rec


def line(ts: float, pid: int = PM) -> dict[str, Any]:
    """A plain log line (no event): proof that the node was observed at that time."""
    return {"ts": ts, "pid": pid, "backend_type": "postmaster", "message": "tick"}


def boot(t: float, *, standby: bool = False, pid: int = PM) -> list[dict[str, Any]]:
    """postmaster_start, then the states up to ready."""
    last = "HOT_STANDBY" if standby else "RUN"
    evs = [E("postmaster_start", t, pid=pid), E("pm_state", t + 0.01, old="INIT", new="STARTUP", pid=pid)]
    if standby:
        evs.append(E("pm_state", t + 0.02, old="STARTUP", new="RECOVERY", pid=pid))
    evs += [E("pm_state", t + 0.05, old="RECOVERY" if standby else "STARTUP", new=last, pid=pid),
            E("ready", t + 0.05, read_only=standby, pid=pid)]  # fmt: skip
    return evs


def bgw(event: str, ts: float, name: str, start_time: str, *, pid: int = 0, slot: int = 0, generation: int = 0,
        restart_time: int = -1, **kw: Any) -> dict[str, Any]:  # fmt: skip
    return E(event, ts, name=name, type=name, start_time=start_time, pid=pid, slot=slot, generation=generation,
             restart_time=restart_time, **kw)  # fmt: skip


def exit_(ts: float, pid: int, kind: str, *, code: int | None = None, sig: str | None = None,
          cls: str = "fatal") -> dict[str, Any]:  # fmt: skip
    return E("child_exit", ts, kind=kind, child_pid=pid, exit_code=code, signal=sig, classification=cls)


def fault(role: str, sig: str, pid: int, t: float, node: str = "n1") -> dict[str, Any]:
    return {"kind": "signal", "node": node, "role": role, "signal": sig, "pid": pid, "t": t}


# -- base: check_safe and merge -----------------------------------------------------------------------


def test_check_safe_turns_an_exception_into_unknown() -> None:
    def broken(x: int) -> CheckResult:
        raise ZeroDivisionError(f"boom {x}")

    r = check_safe("broken", broken, 3)
    assert r.status == UNKNOWN and r.name == "broken"
    assert "ZeroDivisionError('boom 3')" in r.evidence[0]


def test_check_safe_names_an_unnamed_result_and_keeps_a_named_one() -> None:
    assert check_safe("x", lambda: valid(2)).name == "x"
    assert check_safe("x", lambda: valid(2, "own")).name == "own"


def test_merge_ranks_invalid_over_unknown_over_valid() -> None:
    v, u, i = valid(3, "v"), unknown("too little", 1, "u"), invalid(["lost key 7"], 2, "i")
    for order in ([v, u, i], [i, u, v], [u, i, v]):
        m = merge(order, "all")
        assert m.status == INVALID and m.evidence == ["i: lost key 7"] and m.checked == 6
    m = merge([v, u], "all")
    assert m.status == UNKNOWN and m.evidence == ["u: too little"]
    assert merge([v, valid(1, "w")]).status == VALID
    assert merge([]).status == UNKNOWN


# -- data.acked_writes --------------------------------------------------------------------------------


def acked_history(n_ok: int, *, fail: tuple[int, ...] = (), info: tuple[int, ...] = (),
                  open_: tuple[int, ...] = ()) -> History:  # fmt: skip
    h = History()
    for k in range(n_ok):
        h.complete(h.invoke("c0", "insert", k, node="primary"), OK)
    for k in fail:
        h.complete(h.invoke("c1", "insert", k), FAIL, error="57P01")
    for k in info:
        h.complete(h.invoke("c1", "insert", k), INFO, error="connection lost")
    for k in open_:
        h.invoke(f"c{k}", "insert", k)
    h.append(NEMESIS, INFO, "signal", {"pid": 1})  # nemesis ops are not the workload's
    return h


def test_acked_writes_valid_with_info_keys_either_way() -> None:
    h = acked_history(60, info=(100, 101), open_=(200, 201))
    r = data.acked_writes(h, [*range(60), 100, 200])
    assert r.status == VALID and r.checked == 60


def test_acked_writes_lost_write_is_invalid() -> None:
    h = acked_history(60)
    r = data.acked_writes(list(h), [k for k in range(60) if k != 7])
    assert r.status == INVALID and r.checked == 60
    inv_op = next(op for op in h if op.type == "invoke" and op.value == 7)
    assert any(f"key 7: insert acknowledged (invoke op {inv_op.index}" in e and "missing" in e for e in r.evidence)


def test_acked_writes_failed_or_never_invoked_key_present_is_invalid() -> None:
    h = acked_history(60, fail=(500,))
    r = data.acked_writes(h, [*range(60), 500, 999])
    assert r.status == INVALID
    assert any("key 500: insert failed" in e and "'57P01'" in e for e in r.evidence)
    assert "key 999: present in the final read but no client ever invoked its insert" in r.evidence


def test_acked_writes_duplicate_key_is_invalid() -> None:
    r = data.acked_writes(acked_history(60), [*range(60), 3])
    assert r.status == INVALID and r.evidence == ["key 3: present 2 times in the final read"]


def test_acked_writes_too_few_ok_is_unknown() -> None:
    r = data.acked_writes(acked_history(5, info=(9,)), range(5), min_ok=50)
    assert r.status == UNKNOWN and r.checked == 5 and "only 5 inserts" in r.evidence[0]


def test_acked_writes_is_invalid_even_below_min_ok() -> None:
    assert data.acked_writes(acked_history(5), [0, 1], min_ok=50).status == INVALID


def test_acked_writes_key_retried_after_fail_may_be_present() -> None:
    h = History()
    h.complete(h.invoke("c0", "insert", 1), FAIL)
    h.complete(h.invoke("c0", "insert", 1), OK)
    assert data.acked_writes(h, [1], min_ok=1).status == VALID


# -- data.bank ----------------------------------------------------------------------------------------


def bank_history(reads: list[dict[Any, int]], *, node: str | None = None) -> History:
    h = History()
    h.complete(h.invoke("t0", "transfer", {"from": 0, "to": 1, "amount": 5}), OK)
    for b in reads:
        h.complete(h.invoke("r0", "read", None, node=node), OK, {"balances": b})
    h.complete(h.invoke("r1", "read", None), FAIL, error="57P01")
    return h


GOOD = {"0": 95, "1": 105, "2": 100}


def test_bank_valid_reads_on_primary_and_standby() -> None:
    h = bank_history([GOOD] * 6)
    standby = bank_history([{0: 100, 1: 100, 2: 100}] * 6, node="standby1")
    r = data.bank([*h, *standby], total=300, accounts=3)
    assert r.status == VALID and r.checked == 12


def test_bank_wrong_sum_is_invalid_with_the_read_named() -> None:
    h = bank_history([GOOD] * 10 + [{"0": 95, "1": 100, "2": 100}], node="standby2")
    r = data.bank(h, total=300, accounts=3)
    bad = next(op for op in h if op.type == OK and op.f == "read" and op.value["balances"]["1"] == 100)
    assert r.status == INVALID
    assert r.evidence == [f"read op {bad.index} at {bad.time:.3f} s by r0 on standby2: balances sum to 295, not 300 "
                          "(balances {'0': 95, '1': 100, '2': 100})"]  # fmt: skip


def test_bank_missing_extra_and_negative_accounts_are_invalid() -> None:
    reads = [{"0": 300, "1": 0}, {"0": 150, "1": 150, "2": 0, "7": 0}, {"0": -5, "1": 205, "2": 100}]
    r = data.bank(bank_history(reads), total=300, accounts=3, min_reads=1)
    assert r.status == INVALID and len(r.evidence) == 3
    assert "accounts [2] missing" in r.evidence[0]
    assert "unexpected accounts ['7']" in r.evidence[1]
    assert "negative balances {'0': -5}" in r.evidence[2]


def test_bank_too_few_reads_is_unknown() -> None:
    r = data.bank(bank_history([GOOD] * 3), total=300, accounts=3, min_reads=10)
    assert r.status == UNKNOWN and r.checked == 3 and "only 3 reads" in r.evidence[0]


# -- data.convergence ---------------------------------------------------------------------------------


def test_convergence_valid_whatever_the_row_container() -> None:
    primary = {"acked": [(1,), (2,)], "accounts": [(0, 100), (1, 100)]}
    standbys = {"s1": {"acked": [[1], [2]], "accounts": [(0, 100), (1, 100)]}}
    r = data.convergence(primary, standbys)
    assert r.status == VALID and r.checked == 2


def test_convergence_diff_names_standby_table_and_rows() -> None:
    primary = {"acked": [(1,), (2,), (3,)], "accounts": [(0, 100)]}
    standbys = {"s1": {"acked": [(1,), (2,), (3,)], "accounts": [(0, 100)]},
                "s2": {"acked": [(1,), (4,)], "accounts": [(0, 100)]}}  # fmt: skip
    r = data.convergence(primary, standbys)
    assert r.status == INVALID
    assert r.evidence == ["standby s2, table acked: 2 rows missing ((2,), (3,)); 1 extra rows ((4,)) "
                          "[primary 3 rows, standby 2]"]  # fmt: skip


def test_convergence_without_standby_or_table_is_unknown() -> None:
    assert data.convergence({"acked": [(1,)]}, {}).status == UNKNOWN
    assert data.convergence({}, {"s1": {}}).status == UNKNOWN
    r = data.convergence({"acked": [(1,)]}, {"s1": {}})
    assert r.status == UNKNOWN and "table acked was not read" in r.evidence[0]


# -- liveness.back_to_ready ---------------------------------------------------------------------------


def test_back_to_ready_valid() -> None:
    heals = [{"t": 100.0, "kind": "signal", "node": None}, {"t": 200.0, "kind": "pause", "node": "s1"}]
    ready = {"p": [101.0, 150.0], "s1": [104.0, 203.0]}
    r = liveness.back_to_ready(heals, ready, deadline_s=5.0)
    assert r.status == VALID and r.checked == 3


def test_back_to_ready_late_node_is_invalid() -> None:
    heals = [{"t": 100.0, "kind": "kill9", "node": None}]
    r = liveness.back_to_ready(heals, {"p": [101.0], "s1": [99.0, 130.5]}, deadline_s=10.0)
    assert r.status == INVALID
    assert r.evidence == ["heal #0 (kill9) at 100.000: node s1 not ready within 10 s; next ready at 130.500 (+30.5 s)"]
    r = liveness.back_to_ready(heals, {"p": [90.0]}, deadline_s=10.0)
    assert r.evidence == ["heal #0 (kill9) at 100.000: node p not ready within 10 s; never ready after it"]


def test_back_to_ready_without_heal_is_unknown() -> None:
    assert liveness.back_to_ready([], {"p": [1.0]}, deadline_s=5.0).status == UNKNOWN
    assert liveness.back_to_ready([{"t": 1.0, "kind": "x", "node": None}], {}, deadline_s=5.0).status == UNKNOWN


# -- process.start_times and bgw17_reset -------------------------------------------------------------


def test_start_times_consistent_worker_before_hot_standby_is_invalid() -> None:
    evs = [E("postmaster_start", 10.0), E("pm_state", 10.1, old="INIT", new="STARTUP"),
           bgw("bgw_start", 10.2, "early", "consistent_state", pid=2001),
           E("pm_state", 11.0, old="RECOVERY", new="HOT_STANDBY")]  # fmt: skip
    r = process.start_times({"standby1": evs})
    assert r.status == INVALID and r.name == "start-times"
    assert r.evidence[0].startswith("standby1: incarnation 0: ConsistentState worker 'early' (pid 2001) started at "
                                    "10.200")  # fmt: skip


def test_start_times_valid_and_unknown() -> None:
    ok = [*boot(10.0), bgw("bgw_start", 10.5, "late", "recovery_finished", pid=2001)]
    assert process.start_times({"p": ok}).status == VALID
    # a node with nothing to judge does not make the property unknown when another was judged
    assert process.start_times({"p": ok, "s1": boot(10.0, standby=True)}).status == VALID
    r = process.start_times({"s1": boot(10.0, standby=True)})
    assert r.status == UNKNOWN and r.evidence == ["s1: no ConsistentState or RecoveryFinished worker started"]
    assert process.start_times({}).status == UNKNOWN


def static_runs(second_starts: bool) -> list[dict[str, Any]]:
    evs = [*boot(10.0), bgw("bgw_start", 10.02, "pm worker", "postmaster_start", pid=2001),
           bgw("bgw_start", 10.5, "late", "recovery_finished", pid=2002, slot=1),
           E("shutdown_request", 20.0, mode="fast"), E("postmaster_exit", 21.0, exit_code=0),
           *boot(30.0, pid=PM + 1), bgw("bgw_start", 30.5, "late", "recovery_finished", pid=3002, slot=1)]  # fmt: skip
    if second_starts:
        evs.append(bgw("bgw_start", 30.03, "pm worker", "postmaster_start", pid=3001))
    return [*evs, line(40.0, PM + 1)]


def test_start_times_static_postmaster_start_worker_missing_after_restart() -> None:
    r = process.start_times({"p": static_runs(False)})
    assert r.status == INVALID
    assert r.evidence == ["p: incarnation 1 (postmaster_start at 30.000): static PostmasterStart worker 'pm worker' "
                          "(known from an earlier incarnation) had not started 2 s after the node reached "
                          "RUN/HOT_STANDBY at 30.050"]  # fmt: skip
    assert process.start_times({"p": static_runs(True)}).status == VALID


def reinit_run(relaunched: bool) -> list[dict[str, Any]]:
    evs = [*boot(10.0), bgw("bgw_start", 10.5, "w", "recovery_finished", pid=2001, restart_time=1),
           E("reinit", 12.0, generation=1), *boot(12.1)[1:]]  # fmt: skip
    if relaunched:
        evs.append(bgw("bgw_start", 12.5, "w", "recovery_finished", pid=3001, restart_time=1))
    return [*evs, line(20.0)]


def test_bgw17_reset_valid_invalid_unknown() -> None:
    assert process.bgw17_reset({"p": reinit_run(True)}).status == VALID
    r = process.bgw17_reset({"p": reinit_run(False)})
    assert r.status == INVALID and r.name == "bgw17-reset"
    assert r.evidence[0].startswith("p: restartable worker 'w' ran before the reinit at 12.000")
    r = process.bgw17_reset({"p": boot(10.0)})
    assert r.status == UNKNOWN and "no crash reinit" in r.evidence[0]


# -- process.bgw_slots --------------------------------------------------------------------------------


def row(slot: int, gen: int, status: str, pid: int | None = None, *, in_use: bool = True, restart: int | None = None,
        starts: int = 1, name: str = "w") -> dict[str, Any]:  # fmt: skip
    return {"slot": slot, "generation": gen, "in_use": in_use, "status": status, "pid": pid, "name": name,
            "restart_time": restart, "starts": starts}  # fmt: skip


def test_bgw_slots_valid() -> None:
    snaps = [{"t": 10.0, "incarnation": 0, "rows": [row(0, 0, "started", 2001), row(1, 1, "not yet started"),
                                                    row(2, 0, "free", in_use=False)]},
             {"t": 11.0, "incarnation": 0, "rows": [row(0, 0, "started", 2001), row(1, 2, "stopped", restart=5),
                                                    row(2, 0, "free", in_use=False)]}]  # fmt: skip
    r = process.bgw_slots(snaps, boot(5.0))
    assert r.status == VALID and r.checked == 6


def test_bgw_slots_row_inconsistencies_are_invalid() -> None:
    torn = [row(0, 2, "started", None), row(1, 0, "free", 77, in_use=False), row(2, 1, "not yet started", 5),
            row(3, 1, "started", 9, starts=2)]  # fmt: skip
    snaps = [
        {"t": 10.0, "incarnation": 0, "rows": [row(0, 3, "started", 2001)]},
        {"t": 11.0, "incarnation": 0, "rows": torn},
        {"t": 12.0, "incarnation": 1, "rows": [row(0, 0, "started", 3001)]},
    ]
    r = process.bgw_slots(snaps, [])
    assert r.status == INVALID
    at = "snapshot at 11.000 (incarnation 0), slot"
    assert r.evidence == [  # a new incarnation may go back to generation 0: not reported
        f"{at} 0 generation 2: generation went back from 3 (snapshot at 10.000) to 2",
        f"{at} 0 generation 2: status 'started' with pid None",
        f"{at} 1 generation 0: not in use but status 'free', pid 77",
        f"{at} 2 generation 1: status 'not yet started' with pid 5",
        f"{at} 3 generation 1: NEVER_RESTART worker 'w' shows 2 starts",
    ]


def test_bgw_slots_never_restart_started_twice_is_invalid() -> None:
    evs = [*boot(5.0), bgw("bgw_start", 6.0, "once", "postmaster_start", pid=2001, slot=1, generation=4),
           bgw("bgw_start", 7.0, "once", "postmaster_start", pid=2002, slot=1, generation=4), E("reinit", 8.0),
           bgw("bgw_start", 9.0, "once", "postmaster_start", pid=2003, slot=1, generation=4)]  # fmt: skip
    r = process.bgw_slots([{"t": 10.0, "incarnation": 1, "rows": [row(1, 4, "started", 2003)]}], evs)
    assert r.status == INVALID
    assert r.evidence == ["incarnation 0: NEVER_RESTART worker 'once' started 2 times for slot 1 generation 4: "
                          "pid 2001 at 6.000, pid 2002 at 7.000"]  # fmt: skip


def test_bgw_slots_unregistered_worker_still_in_use_is_invalid() -> None:
    evs = [*boot(5.0), bgw("bgw_exit", 10.0, "dyn", "recovery_finished", pid=2001, slot=2, generation=3, exit_code=0,
                           action="unregister")]  # fmt: skip
    snaps = [
        {"t": 10.5, "incarnation": 0, "rows": [row(2, 3, "stopped")]},  # within the grace second: not judged
        {"t": 11.5, "incarnation": 0, "rows": [row(2, 3, "stopped")]},
    ]
    r = process.bgw_slots(snaps, evs)
    assert r.status == INVALID
    assert r.evidence == ["worker 'dyn' (pid 2001) exited with code 0 and was unregistered at 10.000, but slot 2 "
                          "generation 3 is still in use (status 'stopped') in the snapshot at 11.500"]  # fmt: skip
    assert process.bgw_slots(snaps[:1], evs).status == VALID


def test_bgw_slots_unknown_without_snapshots_or_workers() -> None:
    assert process.bgw_slots([], boot(5.0)).status == UNKNOWN
    r = process.bgw_slots([{"t": 1.0, "incarnation": 0, "rows": [row(0, 0, "free", in_use=False)]}], [])
    assert r.status == UNKNOWN and "no worker was in use" in r.evidence[0]


# -- process.replication_slots ------------------------------------------------------------------------


def ws(slot: int, pid: int, owner: int) -> dict[str, Any]:
    return {"slot": slot, "pid": pid, "state": "streaming" if pid else None, "latch_owner_pid": owner}


def test_replication_slots_valid() -> None:
    r = process.replication_slots([ws(0, 3001, 3001), ws(1, 0, 0)], [{"pid": 0, "state": "stopped",
                                                                      "latch_owner_pid": 0}], [])  # fmt: skip
    assert r.status == VALID and r.checked == 3


def test_replication_slots_exited_pid_is_invalid() -> None:
    evs = [E("child_start", 1.0, kind="client backend", child_pid=3001),
           exit_(2.0, 3001, "walsender", code=1)]  # fmt: skip
    r = process.replication_slots([ws(0, 3001, 3001)], [{"pid": 4001, "state": "streaming", "latch_owner_pid": 0}],
                                  evs, alive=lambda p: p != 4001)  # fmt: skip
    assert r.status == INVALID
    assert r.evidence == ["pgbed_walsnd_slots: slot 0 still names pid 3001, which has exited",
                          "pgbed_walrcv: walreceiver 4001 points at a latch owned by nobody",
                          "pgbed_walrcv: walreceiver struct names pid 4001, which has exited"]  # fmt: skip


def test_replication_slots_recycled_pid_is_not_exited() -> None:
    evs = [exit_(2.0, 3001, "walsender", code=0, cls="clean"), E("child_start", 3.0, kind="client backend",
                                                                  child_pid=3001)]  # fmt: skip
    assert process.replication_slots([ws(0, 3001, 3001)], [], evs).status == VALID


def test_replication_slots_judge_the_current_postmaster_only() -> None:
    """A restarted container's postmaster hands out its predecessor's pids again: pid 11, a
    walreceiver that exited before the restart, is the new walreceiver (its fork not logged yet)."""
    evs = [E("postmaster_start", 1.0), exit_(2.0, 11, "walreceiver", code=1), E("postmaster_start", 3.0)]
    rcv = [{"pid": 11, "state": "streaming", "latch_owner_pid": 11}]
    assert process.replication_slots([], rcv, evs).status == VALID
    # in the same incarnation the exit still counts
    r = process.replication_slots([], rcv, evs[:2])
    assert r.status == INVALID and "pid 11, which has exited" in r.evidence[-1], r.evidence


def test_replication_slots_without_rows_is_unknown() -> None:
    assert process.replication_slots([], [], []).status == UNKNOWN


# -- process.streaming_resumed ------------------------------------------------------------------------


def walrcv_start(ts: float, pid: int) -> dict[str, Any]:
    return E("child_start", ts, kind="walreceiver", child_pid=pid)


def streamed(ts: float, pid: int) -> dict[str, Any]:
    return E("walrcv_streaming", ts, pid=pid, backend_type="walreceiver", lsn="0/3000000", timeline=1)


def test_streaming_resumed_valid() -> None:
    evs = [*boot(0.0, standby=True), walrcv_start(1.0, 11), streamed(1.2, 11),
           exit_(10.0, 11, "walreceiver", code=1), walrcv_start(10.1, 12), streamed(10.3, 12), line(60.0)]  # fmt: skip
    r = process.streaming_resumed(evs, retry_interval_s=5.0, deadline_s=30.0)
    assert r.status == VALID and r.checked == 2


def test_streaming_resumed_late_stream_and_short_retry_are_invalid() -> None:
    evs = [*boot(0.0, standby=True), walrcv_start(1.0, 11), streamed(1.2, 11), exit_(10.0, 11, "walreceiver", code=1),
           walrcv_start(11.0, 12), exit_(11.5, 12, "walreceiver", code=1), walrcv_start(17.0, 13),
           streamed(45.0, 13), line(90.0)]  # fmt: skip
    r = process.streaming_resumed(evs, retry_interval_s=5.0, deadline_s=30.0)
    assert r.status == INVALID
    assert r.evidence == [
        "walreceiver pid 11 exited (exit code 1, fatal) at 10.000: streaming again only at 45.000, deadline 30 s",
        "walreceiver pid 12 exited (exit code 1, fatal) at 11.500: streaming again only at 45.000, deadline 30 s",
    ]
    gaps = process.streaming_resumed([*boot(0.0, standby=True), walrcv_start(1.0, 11), walrcv_start(2.0, 12),
                                      exit_(1.5, 11, "walreceiver", code=1), streamed(2.1, 12), line(60.0)],
                                     retry_interval_s=5.0, deadline_s=30.0)  # fmt: skip
    assert gaps.status == INVALID
    assert gaps.evidence == ["incarnation 0: started a walreceiver at 1.000 and again at 2.000, 1.00 s apart "
                             "(WALRCV-6: at least 5 s - 0.2 s margin)"]  # fmt: skip
    # where the startup process logs its requests, those are judged, not the postmaster's forks:
    # requests 5 s apart whose forks came 4.5 s apart (the first fork was late) are fine …
    req = [*boot(0.0, standby=True), E("walrcv_request", 1.0), walrcv_start(1.5, 11), exit_(1.6, 11, "walreceiver",
           code=1), E("walrcv_request", 6.0), walrcv_start(6.0, 12), streamed(6.1, 12), line(60.0)]  # fmt: skip
    assert process.streaming_resumed(req, retry_interval_s=5.0, deadline_s=30.0).status == VALID
    # … requests too close are not, unless a new timeline was followed in between
    close = [*boot(0.0, standby=True), E("walrcv_request", 1.0), walrcv_start(1.1, 11), exit_(1.2, 11, "walreceiver",
             code=1), E("walrcv_request", 2.0), walrcv_start(2.1, 12), streamed(2.2, 12), line(60.0)]  # fmt: skip
    r = process.streaming_resumed(close, retry_interval_s=5.0, deadline_s=30.0)
    assert r.status == INVALID and "requested streaming at 1.000 and again at 2.000" in r.evidence[0]
    followed = [*close[:-1], E("timeline_switch", 1.5, old=1, new=2), line(60.0)]
    assert process.streaming_resumed(sorted(followed, key=lambda e: e["ts"]), retry_interval_s=5.0,
                                     deadline_s=30.0).status == VALID  # fmt: skip


def test_streaming_resumed_clock_restarts_with_the_postmaster() -> None:
    evs = [*boot(0.0, standby=True), walrcv_start(1.0, 11), streamed(1.2, 11), exit_(10.0, 11, "walreceiver", code=2,
                                                                                     cls="crash"),
           *boot(50.0, standby=True, pid=PM + 1), walrcv_start(51.0, 12), streamed(52.0, 12), line(90.0)]  # fmt: skip
    assert process.streaming_resumed(evs, retry_interval_s=5.0, deadline_s=30.0).status == VALID


def test_streaming_resumed_unknown_without_judgeable_exit() -> None:
    r = process.streaming_resumed([*boot(0.0, standby=True), walrcv_start(1.0, 11), streamed(1.2, 11)],
                                  retry_interval_s=5.0, deadline_s=30.0)  # fmt: skip
    assert r.status == UNKNOWN and "no walreceiver exit" in r.evidence[0]
    at_shutdown = [*boot(0.0, standby=True), walrcv_start(1.0, 11), E("shutdown_request", 5.0, mode="fast"),
                   exit_(5.1, 11, "walreceiver", code=1), line(60.0)]  # fmt: skip
    r = process.streaming_resumed(at_shutdown, retry_interval_s=5.0, deadline_s=30.0)
    assert r.status == UNKNOWN and "during a shutdown requested at 5.000" in r.evidence[0]
    assert process.streaming_resumed([], retry_interval_s=5.0, deadline_s=30.0).status == UNKNOWN


# -- process.signal_exits -----------------------------------------------------------------------------


def running(*extra: dict[str, Any], until: float = 60.0, standby: bool = False) -> list[dict[str, Any]]:
    return sorted([*boot(0.0, standby=standby), *extra, line(until)], key=lambda e: e["ts"])


def one(role: str, sig: str, pid: int, t: float, evs: list[dict[str, Any]], **kw: Any) -> CheckResult:
    return process.signal_exits([fault(role, sig, pid, t)], {"n1": evs}, **kw)


def test_signal_exits_documented_exits_are_valid() -> None:
    assert one("walsender", "SIGTERM", 77, 10.0, running(exit_(10.05, 77, "walsender", code=1))).status == VALID
    assert one("bgworker", "SIGTERM", 78, 10.0, running(exit_(10.2, 78, "background worker", code=1))).status == VALID
    assert one("walreceiver", "SIGUSR2", 79, 10.0, running(standby=True)).status == VALID
    assert one("bgworker", "SIGINT", 80, 10.0, running(exit_(10.1, 80, "background worker", code=1))).status == VALID


def test_signal_exits_sigkill_of_a_child_is_a_crash_restart() -> None:
    evs = running(exit_(10.01, 77, "client backend", sig="SIGKILL", cls="crash"),
                  E("crash", 10.01, kind="client backend", child_pid=77),
                  E("pm_state", 10.01, old="RUN", new="WAIT_BACKENDS"), E("reinit", 10.5, generation=1))  # fmt: skip
    r = one("backend", "SIGKILL", 77, 10.0, evs)
    assert r.status == VALID and r.checked == 1
    no_crash_event = [e for e in evs if e.get("event") != "crash"]
    r = one("backend", "SIGKILL", 77, 10.0, no_crash_event)
    assert r.status == INVALID
    assert r.evidence == ["n1: backend pid 77 sent SIGKILL at 10.000 (CRASH-1, CRASH-4: killed: crash restart (F18)): "
                          "child_exit at 10.010 (killed by SIGKILL, crash), but no crash event for pid 77 followed "
                          "(CRASH-4)"]  # fmt: skip


def test_signal_exits_wrong_exit_codes_are_invalid() -> None:
    r = one("bgworker", "SIGTERM", 78, 10.0, running(exit_(10.2, 78, "background worker", code=0, cls="clean")))
    assert r.status == INVALID
    assert r.evidence == ["n1: bgworker pid 78 sent SIGTERM at 10.000 (BGW-18, BGW-10: FATAL 'terminating background "
                          "worker', exit 1): child_exit at 10.200 (exit code 0, clean)"]  # fmt: skip
    r = one("backend", "SIGHUP", 81, 10.0, running(exit_(10.1, 81, "client backend", sig="SIGHUP", cls="crash")))
    assert r.status == INVALID and "killed by that very signal" in r.evidence[0]
    # exit 1 but still attached: the dead-man switch makes it a crash (CRASH-3)
    r = one("walsender", "SIGTERM", 82, 10.0, running(exit_(10.1, 82, "walsender", code=1, cls="crash")))
    assert r.status == INVALID and "exit code 1, crash" in r.evidence[0]


def test_signal_exits_exits_within_a_keeps_running_window() -> None:
    # exit 0 of a backend is its client leaving: it ran until then
    assert one("backend", "SIGINT", 81, 10.0, running(exit_(10.5, 81, "client backend", code=0))).status == VALID
    # a walreceiver's exit 1 may be its primary going away: not attributable
    r = one("walreceiver", "SIGHUP", 82, 10.0, running(exit_(10.5, 82, "walreceiver", code=1), standby=True))
    assert r.status == UNKNOWN and "not attributable" in r.evidence[0]
    # an internal error right after a signal the process must absorb
    fatal = {"ts": 10.4, "pid": 81, "backend_type": "client backend", "error_severity": "FATAL", "state_code": "XX000",
             "message": "unexpected internal error in client backend: reentrant call"}  # fmt: skip
    r = one("backend", "SIGHUP", 81, 10.0, running(fatal, exit_(10.5, 81, "client backend", code=1)))
    assert r.status == INVALID
    assert r.evidence == ["n1: backend pid 81 sent SIGHUP at 10.000 (SHUT-8: reloads at the next idle point; keeps "
                          "running): child_exit at 10.500 (exit code 1, fatal) after FATAL 'unexpected internal error "
                          "in client backend: reentrant call' (XX000)"]  # fmt: skip


def test_signal_exits_missing_exit_is_invalid_only_for_prompt_exits() -> None:
    r = one("backend", "SIGTERM", 83, 10.0, running())
    assert r.status == INVALID
    assert r.evidence == ["n1: backend pid 83 sent SIGTERM at 10.000 (SIG-6, CRASH-1: FATAL at the next check, exit 1; "
                          "no crash): no exit of pid 83 logged in the 50.0 s of events after it"]  # fmt: skip
    r = one("walsender", "SIGUSR2", 84, 10.0, running())
    assert r.status == UNKNOWN and "waits on a peer" in r.evidence[0]
    r = one("backend", "SIGTERM", 83, 10.0, running(until=11.0))
    assert r.status == UNKNOWN and "the events end at 11.000" in r.evidence[0]


def test_signal_exits_startup_failure_ends_the_postmaster() -> None:
    base = [exit_(10.1, 90, "startup", code=1), E("crash", 10.1, kind="startup", child_pid=90)]
    ok = running(*base, E("postmaster_exit", 11.0, exit_code=1), standby=True)
    assert one("startup", "SIGTERM", 90, 10.0, ok).status == VALID
    bad = running(*base, E("reinit", 11.0, generation=1), standby=True)
    r = one("startup", "SIGTERM", 90, 10.0, bad)
    assert r.status == INVALID and "then a reinit at 11.000 instead of postmaster exit 1 (CRASH-9)" in r.evidence[0]


def test_signal_exits_checkpointer_sigint_is_a_crash_restart_via_crash11() -> None:
    evs = running(E("pm_state", 10.2, old="RUN", new="WAIT_BACKENDS"),
                  exit_(10.3, 95, "checkpointer", code=2, cls="crash"), E("reinit", 11.0))  # fmt: skip
    assert one("checkpointer", "SIGINT", 95, 10.0, evs).status == VALID
    r = one("checkpointer", "SIGTERM", 95, 10.0, running(exit_(10.3, 95, "checkpointer", code=0, cls="crash")))
    assert r.status == INVALID and "within 2 s, with no crash or shutdown before it" in r.evidence[0]


def test_signal_exits_postmaster_signals() -> None:
    fast = running(E("shutdown_request", 10.01, mode="fast"), E("postmaster_exit", 12.0, exit_code=0), until=12.0)
    assert one("postmaster", "SIGINT", PM, 10.0, fast).status == VALID
    r = one("postmaster", "SIGINT", PM, 10.0, running())
    assert r.status == INVALID and "no shutdown request within 2 s (the postmaster logged at 60.000)" in r.evidence[0]
    bad_exit = running(E("shutdown_request", 10.01, mode="immediate"), E("postmaster_exit", 12.0, exit_code=3))
    r = one("postmaster", "SIGQUIT", PM, 10.0, bad_exit)
    assert r.status == INVALID and "postmaster exit code 3" in r.evidence[0]
    assert one("postmaster", "SIGHUP", PM, 10.0, running(E("reload", 10.02))).status == VALID
    r = one("postmaster", "SIGHUP", PM, 10.0, running())
    assert r.status == INVALID and "no reload within 2 s" in r.evidence[0]
    assert one("postmaster", "SIGUSR1", PM, 10.0, running()).status == VALID
    # SHUT-1: a smart request during a fast shutdown is ignored
    during_fast = running(E("shutdown_request", 5.0, mode="fast"))
    assert one("postmaster", "SIGTERM", PM, 10.0, during_fast).status == VALID


def test_signal_exits_postmaster_sigkill_is_silent() -> None:
    killed = [*boot(0.0), line(9.0), *boot(30.0, pid=PM + 1), line(60.0, PM + 1)]
    assert one("postmaster", "SIGKILL", PM, 10.0, killed).status == VALID
    r = one("postmaster", "SIGKILL", PM, 10.0, running())
    assert r.status == INVALID and "the postmaster still logged 'tick' at 60.000" in r.evidence[0]


def test_signal_exits_unknown_when_confounded_or_uncovered() -> None:
    # another process crashed first: the worker's exit 2 is the postmaster's SIGQUIT, not our SIGTERM
    evs = running(E("crash", 10.1, kind="client backend", child_pid=5), exit_(10.2, 78, "background worker", code=2,
                                                                              cls="crash"))  # fmt: skip
    r = one("bgworker", "SIGTERM", 78, 10.0, evs)
    assert r.status == UNKNOWN and "but crash of client backend pid 5 at 10.100" in r.evidence[0]
    r = one("backend", "SIGUSR2", 86, 10.0, running())
    assert r.status == UNKNOWN and "no documented outcome" in r.evidence[0]
    assert process.signal_exits([], {"n1": running()}).status == UNKNOWN
    r = process.signal_exits([fault("backend", "SIGTERM", 83, 10.0, node="gone")], {"n1": running()})
    assert r.status == UNKNOWN and "no events of node gone" in r.evidence[0]
    # a judged fault and an unjudged one: unknown, not valid
    both = [fault("walsender", "SIGTERM", 77, 10.0), fault("backend", "SIGUSR2", 86, 20.0)]
    r = process.signal_exits(both, {"n1": running(exit_(10.05, 77, "walsender", code=1))})
    assert r.status == UNKNOWN and r.checked == 1


def test_signal_exits_a_later_signal_to_the_same_pid_closes_the_window() -> None:
    evs = running(exit_(11.0, 77, "walsender", code=1))
    faults = [fault("walsender", "SIGHUP", 77, 10.0), fault("walsender", "SIGTERM", 77, 10.9)]
    r = process.signal_exits(faults, {"n1": evs})
    assert r.status == VALID and r.checked == 2


def test_expected_covers_every_signal_the_nemesis_sends() -> None:
    try:
        from orchestrator.nemesis.process import SIGNALS
    except Exception as e:  # the nemesis is someone else's module: its import trouble is not this test's
        pytest.skip(f"orchestrator.nemesis.process does not import: {e!r}")
    missing = [(role, sig) for role, sigs in SIGNALS.items() for sig in sigs if (role, sig) not in process.EXPECTED]
    assert not missing
    assert all(x.rule for x in process.EXPECTED.values())


def test_op_from_history_round_trips_for_checkers() -> None:
    h = acked_history(2)
    again = [Op.from_json(op.to_json()) for op in h]
    assert data.acked_writes(again, [0, 1], min_ok=2).status == VALID


def _deltas(outcomes: list[tuple[int, str]]) -> list[Op]:
    h = History()
    for i, (v, typ) in enumerate(outcomes):
        inv = h.invoke(f"d{i % 2}", "delta", v)
        if typ != "none":
            h.complete(inv, typ)
    return list(h)


def test_worker_spi_total() -> None:
    ops = _deltas([(2, OK)] * 20 + [(5, INFO), (7, FAIL)])
    assert data.worker_spi_total(ops, 40, 0).status == VALID  # the info delta not folded
    assert data.worker_spi_total(ops, 45, 0).status == VALID  # … or folded
    r = data.worker_spi_total(ops, 38, 0)
    assert r.status == INVALID and r.evidence == ["total is 38, but the acknowledged deltas sum to 40 and the "
                                                  "unknown ones to 5: it must lie in [40, 45]"]  # fmt: skip
    assert data.worker_spi_total(ops, 52, 0).status == INVALID  # a failed delta folded, or one folded twice
    assert data.worker_spi_total(ops, 40, 3).status == UNKNOWN
    assert data.worker_spi_total(ops, None, 0).status == UNKNOWN
    assert data.worker_spi_total(_deltas([(1, OK)] * 3), 3, 0).status == UNKNOWN
