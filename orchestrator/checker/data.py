"""Data checkers: what the workloads' histories and the nodes' final contents must satisfy.

What it does
- `acked_writes`: the acknowledged-writes workload. Every insert that completed `ok` is in the
  surviving primary's final read; no insert that completed `fail` is; nothing is there that no
  client ever invoked, and no key is there twice. `info` and uncompleted inserts may go either way.
- `bank`: the bank workload. Every `ok` read (on the primary or a standby alike) shows exactly
  the accounts range(accounts), none negative, summing to `total`.
- `convergence`: after the final catch-up, every standby holds exactly the primary's rows.

What it deliberately does not do: query nodes, read settings (pgbed.historic_bugs included) or
sleep; callers pass the history and the rows. It does not judge transfers one by one (a bank read
is the observation; a transfer's own completion proves nothing about what a read must see), nor
linearizability: these are set and sum properties only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orchestrator.checker.base import CheckResult, invalid, unknown, valid
from orchestrator.history import FAIL, INFO, NEMESIS, OK, Op, pairs

MAX_EVIDENCE = 20  # per kind of finding: enough to debug, not a wall of text for a run that lost everything


def _capped(items: list[str], what: str) -> list[str]:
    if len(items) <= MAX_EVIDENCE:
        return items
    return [*items[:MAX_EVIDENCE], f"... and {len(items) - MAX_EVIDENCE} more {what}"]


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


# -- acknowledged writes ----------------------------------------------------------------------------


def acked_writes(history: Iterable[Op], final_keys: Iterable[int], *, min_ok: int = 50) -> CheckResult:
    name = "acked-writes"
    ops = [op for op in history if op.f == "insert" and op.process != NEMESIS]
    # key -> every (invoke, completion) of it: a key invoked twice is judged on all its attempts
    attempts: dict[int, list[tuple[Op, Op | None]]] = {}
    malformed = 0
    for inv, done in pairs(ops):
        k = _as_int(inv.value)
        if k is None:
            malformed += 1
            continue
        attempts.setdefault(k, []).append((inv, done))
    final = Counter(k for k in (_as_int(x) for x in final_keys) if k is not None)

    lost, failed_present, phantom, doubled = [], [], [], []
    n_ok = 0
    for k, tries in sorted(attempts.items()):
        oks = [(i, c) for i, c in tries if c is not None and c.type == OK]
        n_ok += len(oks)
        if oks and k not in final:
            i, c = oks[0]
            lost.append(f"key {k}: insert acknowledged (invoke op {i.index} at {i.time:.3f} s by {i.process}, ok op "
                        f"{c.index} at {c.time:.3f} s) but missing from the final read")  # fmt: skip
        # only a key whose every attempt failed must be absent: an info or open attempt may have happened
        if k in final and all(c is not None and c.type == FAIL for _, c in tries):
            i, c = tries[0]
            assert c is not None
            failed_present.append(f"key {k}: insert failed (invoke op {i.index} by {i.process}, fail op {c.index} at "
                                  f"{c.time:.3f} s, error {c.error!r}) but present in the final read")  # fmt: skip
    for k, n in sorted(final.items()):
        if k not in attempts:
            phantom.append(f"key {k}: present in the final read but no client ever invoked its insert")
        if n > 1:
            doubled.append(f"key {k}: present {n} times in the final read")
    bad = (_capped(lost, "lost keys") + _capped(failed_present, "failed keys present")
           + _capped(phantom, "never-invoked keys") + _capped(doubled, "duplicated keys"))  # fmt: skip
    if bad:
        return invalid(bad, n_ok, name)
    if n_ok < min_ok:
        n_info = sum(1 for tries in attempts.values() for _, c in tries if c is None or c.type == INFO)
        return unknown(f"only {n_ok} inserts completed ok (need {min_ok}); {n_info} info/uncompleted, "
                       f"{malformed} with a non-integer key", n_ok, name)  # fmt: skip
    return valid(n_ok, name)


# -- bank ---------------------------------------------------------------------------------------------


def bank(history: Iterable[Op], *, total: int, accounts: int, min_reads: int = 10) -> CheckResult:
    name = "bank"
    want = set(range(accounts))
    bad: list[str] = []
    n_reads = 0
    malformed: list[str] = []
    for _inv, done in pairs(op for op in history if op.f == "read" and op.process != NEMESIS):
        if done is None or done.type != OK:
            continue
        where = f"read op {done.index} at {done.time:.3f} s by {done.process} on {done.node or 'the primary'}"
        raw = done.value.get("balances") if isinstance(done.value, Mapping) else None
        if not isinstance(raw, Mapping):
            # a workload bug, not a database one: not judged, but said
            malformed.append(f"{where}: value {done.value!r} has no balances mapping")
            continue
        n_reads += 1
        balances: dict[int, Any] = {}
        extra: list[Any] = []
        for k, v in raw.items():
            ik = _as_int(k)
            if ik is None or ik not in want:
                extra.append(k)
            else:
                balances[ik] = v
        problems = []
        missing = sorted(want - set(balances))
        if missing:
            problems.append(f"accounts {missing} missing")
        if extra:
            problems.append(f"unexpected accounts {sorted(map(str, extra))}")
        ints: dict[Any, int] = {}
        for k, v in raw.items():
            iv = _as_int(v)
            if iv is None:
                problems.append(f"account {k} has a non-integer balance {v!r}")
            else:
                ints[k] = iv
        negative = {k: v for k, v in ints.items() if v < 0}
        if negative:
            problems.append(f"negative balances {negative}")
        if sum(ints.values()) != total:
            problems.append(f"balances sum to {sum(ints.values())}, not {total}")
        if problems:
            bad.append(f"{where}: " + "; ".join(problems) + f" (balances {dict(raw)})")
    if bad:
        return invalid(_capped(bad, "bad reads"), n_reads, name)
    if n_reads < min_reads:
        why = f"only {n_reads} reads completed ok (need {min_reads})"
        if malformed:
            why += f"; {len(malformed)} ok reads had no balances, first: {malformed[0]}"
        return unknown(why, n_reads, name)
    return valid(n_reads, name)


# -- convergence ------------------------------------------------------------------------------------


def _frozen(v: Any) -> Any:
    """A hashable stand-in for a row, so rows compare as multisets whatever container they came in."""
    if isinstance(v, Mapping):
        return tuple(sorted((str(k), _frozen(x)) for k, x in v.items()))
    if isinstance(v, list | tuple):
        return tuple(_frozen(x) for x in v)
    try:
        hash(v)
    except TypeError:
        return repr(v)
    return v


def _show(rows: Counter[Any], first: int = 5) -> str:
    items = sorted(rows.elements(), key=repr)
    head = ", ".join(repr(r) for r in items[:first])
    return head + (f", ... ({len(items)} in all)" if len(items) > first else "")


def convergence(primary_rows: Mapping[str, Sequence[Any]],
                standby_rows: Mapping[str, Mapping[str, Sequence[Any]]]) -> CheckResult:  # fmt: skip
    name = "convergence"
    if not standby_rows:
        return unknown("no standby to compare with the primary", 0, name)
    if not primary_rows:
        return unknown("no table read from the primary", 0, name)
    bad: list[str] = []
    unread: list[str] = []
    checked = 0
    for standby, tables in sorted(standby_rows.items()):
        for table, rows in sorted(primary_rows.items()):
            if table not in tables:
                unread.append(f"standby {standby}: table {table} was not read")
                continue
            checked += 1
            want = Counter(_frozen(r) for r in rows)
            got = Counter(_frozen(r) for r in tables[table])
            missing, extra = want - got, got - want
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"{sum(missing.values())} rows missing ({_show(missing)})")
                if extra:
                    parts.append(f"{sum(extra.values())} extra rows ({_show(extra)})")
                bad.append(f"standby {standby}, table {table}: " + "; ".join(parts)
                           + f" [primary {len(rows)} rows, standby {len(tables[table])}]")  # fmt: skip
    if bad:
        return invalid(bad, checked, name)
    if unread:
        return unknown("; ".join(unread), checked, name)
    return valid(checked, name)


def worker_spi_total(history: Iterable[Op], final_total: int | None, pending_deltas: int, *,
                     min_ok: int = 20) -> CheckResult:  # fmt: skip
    """worker_spi deltas (SPI-4): clients insert positive `delta` rows into schemaN.counted and
    the worker folds them into the `total` row, each iteration in one transaction. After the
    cluster settled with no delta left, total = the sum of the acknowledged deltas plus some of
    the deltas whose outcome was unknown (info), never less and never more: a lost fold or a
    double fold shows here. Ops: f="delta", invoke value = the delta (int)."""
    name = "worker-spi-total"
    ok = unknown_sum = n_ok = 0
    for inv, done in pairs(op for op in history if op.f == "delta" and op.process != NEMESIS):
        v = _as_int(inv.value) or 0
        if done is not None and done.type == OK:
            ok += v
            n_ok += 1
        elif done is None or done.type == INFO:
            unknown_sum += v
    if final_total is None:
        return unknown("no total row was read", n_ok, name)
    if pending_deltas:
        return unknown(f"{pending_deltas} delta rows were still unfolded at the end", n_ok, name)
    if n_ok < min_ok:
        return unknown(f"only {n_ok} acknowledged deltas (need {min_ok})", n_ok, name)
    if not ok <= final_total <= ok + unknown_sum:
        return invalid([f"total is {final_total}, but the acknowledged deltas sum to {ok} and the unknown ones to "
                        f"{unknown_sum}: it must lie in [{ok}, {ok + unknown_sum}]"], n_ok, name)  # fmt: skip
    return valid(n_ok, name)
