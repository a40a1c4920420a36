"""pgbed_test: background workers with scripted behaviour, and the SQL API the start-time and
lifecycle tests drive (the differential issue builds the same API for real PostgreSQL).

What it does
- Preloaded (`shared_preload_libraries = 'pgbed_test'`), `_PG_init()` registers the static
  workers of `pgbed_test.static_workers = 'name:start_time:restart_s:behaviour;…'`.
- After `CREATE EXTENSION pgbed_test`:
  `pgbed_test_register(name text, start_time text, restart_s int, flags text[], behaviour text)
  returns table(slot int, generation bigint)` (no row when no slot is free; the caller is the
  notify pid); `pgbed_test_status(slot, generation)`, `pgbed_test_wait_startup(…)`,
  `pgbed_test_wait_shutdown(…)` return table(status text, pid int);
  `pgbed_test_terminate(slot, generation)` returns void.
- Worker behaviours: 'run' (latch loop until SIGTERM), 'sleep:MS' (then exit 0), 'exit:N',
  '_exit:N' (no clean detach), 'ignore:SIGNAME' (then 'run'), 'crash' (SIGSEGV).

What it deliberately does not do: SQL inside the worker (worker_spi does that).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from node import bgworker, elog
from node import protocol as P
from node.bgwlist import BGW_NEVER_RESTART, BGWORKER_BACKEND_DATABASE_CONNECTION, BGWORKER_SHMEM_ACCESS, StartTime
from node.elog import PGError
from node.proc import me
from node.sysquery import register, register_srf

FUNCTION = "pgbed_test:worker_main"
BEHAVIOURS = ("run", "sleep", "exit", "_exit", "ignore", "crash")


def parse_behaviour(text: str) -> tuple[str, str]:
    kind, _, arg = text.strip().partition(":")
    if kind not in BEHAVIOURS:
        raise ValueError(f'invalid behaviour "{text}"')
    if kind in ("sleep", "exit", "_exit") and not arg.lstrip("-").isdigit():
        raise ValueError(f'behaviour "{text}" needs a number')
    if kind == "ignore":
        try:
            signal.Signals[arg if arg.startswith("SIG") else "SIG" + arg]
        except KeyError:
            raise ValueError(f'invalid signal in behaviour "{text}"') from None
    return kind, arg


def make_worker(name: str, start_time: str, restart_s: int, flags: list[str], behaviour: str,
                notify_pid: int = 0) -> bgworker.WorkerDef:  # fmt: skip
    try:
        st = StartTime.parse(start_time)
        parse_behaviour(behaviour)
    except ValueError as e:
        raise PGError(str(e), "22023") from None
    bits = 0
    for f in flags:
        if f == "shmem":
            bits |= BGWORKER_SHMEM_ACCESS
        elif f == "database":
            bits |= BGWORKER_BACKEND_DATABASE_CONNECTION
        else:
            raise PGError(f'invalid flag "{f}"', "22023")
    restart = BGW_NEVER_RESTART if restart_s is None or int(restart_s) < 0 else int(restart_s)
    return bgworker.WorkerDef(name=name, type="pgbed_test", flags=bits, start_time=st, restart_time=restart,
                              function=FUNCTION, extra=behaviour.encode(), notify_pid=notify_pid)  # fmt: skip


def _PG_init() -> None:
    spec = str(me.guc.get("pgbed_test.static_workers") or "") if _has_setting() else ""
    for item in (x.strip() for x in spec.split(";")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) < 4:
            elog.log("LOG", f'pgbed_test: invalid static worker "{item}"')
            continue
        name, start, restart, behaviour = parts[0], parts[1], parts[2], ":".join(parts[3:])
        try:
            w = make_worker(name, start, int(restart), ["shmem"], behaviour)
        except (PGError, ValueError) as e:
            elog.log("LOG", f'pgbed_test: invalid static worker "{item}": {e}')
            continue
        bgworker.register_background_worker(w)


def _has_setting() -> bool:
    try:
        me.guc.get("pgbed_test.static_workers")
    except Exception:
        return False
    return True


# -- the worker --------------------------------------------------------------------------------


def worker_main(main_arg: int) -> None:
    w = bgworker._worker
    assert w is not None
    kind, arg = parse_behaviour(w.extra.decode())
    if kind == "ignore":
        sig = signal.Signals[arg if arg.startswith("SIG") else "SIG" + arg]
        signal.signal(sig, signal.SIG_IGN)
        kind = "run"
    bgworker.unblock_signals()
    if kind == "exit":
        raise SystemExit(int(arg))
    if kind == "_exit":
        os._exit(int(arg))
    if kind == "crash":
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "sleep":
        end = time.monotonic() + int(arg) / 1000.0
        while (left := end - time.monotonic()) > 0:
            bgworker.check_for_interrupts()
            bgworker.wait_latch(left)
        return
    while True:  # run
        bgworker.check_for_interrupts()
        bgworker.wait_latch(10.0)


# -- SQL API (after CREATE EXTENSION pgbed_test) -------------------------------------------------

_STATUS_COLS = [("status", P.TEXT), ("pid", P.INT4)]


def _array(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list | tuple):
        return [str(x) for x in v]
    text = str(v).strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    return [x.strip().strip('"') for x in text.split(",") if x.strip()]


def _require(s: Any, fn: str) -> None:
    from node import extension

    extension.require(s, "pgbed_test", fn)


@register_srf("pgbed_test_register", [("slot", P.INT4), ("generation", P.INT8)],
              ("name", "start_time", "restart_s", "flags", "behaviour"))  # fmt: skip
def pgbed_test_register(s: Any, name: str, start_time: str, restart_s: int, flags: Any,
                        behaviour: str) -> list[dict[str, Any]]:  # fmt: skip
    _require(s, "pgbed_test_register(text, text, integer, text[], text)")
    w = make_worker(str(name), str(start_time), int(restart_s), _array(flags), str(behaviour), notify_pid=me.pid)
    h = bgworker.register_dynamic_background_worker(w)
    return [] if h is None else [{"slot": h.slot, "generation": h.generation}]


def _handle(slot: int, generation: int) -> bgworker.Handle:
    n = int(me.shm.bgw_count)
    if not 0 <= int(slot) < n:
        raise PGError(f"invalid background worker slot {slot}", "22023")
    return bgworker.Handle(int(slot), int(generation))


def _row(st: bgworker.Status, pid: int) -> list[dict[str, Any]]:
    return [{"status": st.value, "pid": pid or None}]


@register_srf("pgbed_test_status", _STATUS_COLS, ("slot", "generation"))
def pgbed_test_status(s: Any, slot: int, generation: int) -> list[dict[str, Any]]:
    _require(s, "pgbed_test_status(integer, bigint)")
    return _row(*_handle(slot, generation).get_pid())


@register_srf("pgbed_test_wait_startup", _STATUS_COLS, ("slot", "generation"))
def pgbed_test_wait_startup(s: Any, slot: int, generation: int) -> list[dict[str, Any]]:
    _require(s, "pgbed_test_wait_startup(integer, bigint)")
    st, pid = _handle(slot, generation).wait_for_startup(s.check_for_interrupts)
    if st is bgworker.Status.POSTMASTER_DIED:
        raise PGError("cannot start background processes without postmaster", "55000",
                      hint="Kill all remaining database processes and restart the database.")  # fmt: skip
    return _row(st, pid)


@register_srf("pgbed_test_wait_shutdown", _STATUS_COLS, ("slot", "generation"))
def pgbed_test_wait_shutdown(s: Any, slot: int, generation: int) -> list[dict[str, Any]]:
    _require(s, "pgbed_test_wait_shutdown(integer, bigint)")
    return _row(*_handle(slot, generation).wait_for_shutdown(s.check_for_interrupts))


@register("pgbed_test_terminate", P.VOID, ("slot", "generation"))
def pgbed_test_terminate(s: Any, slot: int, generation: int) -> None:
    _require(s, "pgbed_test_terminate(integer, bigint)")
    _handle(slot, generation).terminate()
