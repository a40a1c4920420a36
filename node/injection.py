"""Fault hooks: named injection points, in the spirit of PostgreSQL's injection points.

What it does: code calls `inject("<process kind>-<step>")` at lifecycle steps and loop
iterations; when a point of that name is armed, its action runs. Actions:

    error            raise ERROR "error triggered for injection point <name>"
    exit:<code>      exit with cleanup (proc_exit: detaches from shm like a normal exit)
    _exit:<code>     os._exit without cleanup (the dead-man switch then calls it a crash)
    sleep:<ms>       sleep, waking only for postmaster death
    wait             block until the point is detached (SQL pgbed_injection_detach)
    ignore:<SIGNAME> ignore that signal from now on in this process
    stop             SIGSTOP self
    abort            SIGABRT self (os.abort)
    fail             at `postmaster-fork-<kind>`: the postmaster's fork of that kind fails

Points are armed two ways, kept in two shm tables:
- by the `injection_points` setting (`name:action[:arg],...`, sighup): the postmaster owns the
  *setting table* and rewrites it at shm creation and each reload, so setting-armed points
  survive a crash reinit. The one field anyone may write is `detached` (a SQL detach of a
  setting point), as `terminate` is in a bgworker slot.
- by SQL (`pgbed_injection_attach(name, action, arg)` / `pgbed_injection_detach(name)`): backends
  own the *SQL table*, writing under LWLockId.INJECTION; it dies with shared memory, so a crash
  reinit clears it.
Writers publish fields first and `armed` + `generation` last (P-11).

What it deliberately does not do: cost anything when nothing is armed. `inject()` reads two shm
counters and returns.
"""

from __future__ import annotations

import enum
import os
import select
import signal
import time
from typing import Any

from node import elog, events
from node.ipc.shmem import INJ_ARG_LEN, INJ_NAME_LEN


class Action(enum.IntEnum):
    ERROR = 1
    EXIT = 2
    UNDERSCORE_EXIT = 3
    SLEEP = 4
    WAIT = 5
    IGNORE = 6
    STOP = 7
    ABORT = 8
    FAIL = 9


ACTION_NAMES = {
    "error": Action.ERROR,
    "exit": Action.EXIT,
    "_exit": Action.UNDERSCORE_EXIT,
    "sleep": Action.SLEEP,
    "wait": Action.WAIT,
    "ignore": Action.IGNORE,
    "stop": Action.STOP,
    "abort": Action.ABORT,
    "fail": Action.FAIL,
}
_NEEDS_ARG = {Action.EXIT, Action.UNDERSCORE_EXIT, Action.SLEEP, Action.IGNORE}


class _State:
    shm: Any = None
    death_fd: int | None = None
    version: int = -1  # inj_version the cache was built at
    cache: dict[bytes, Any] = {}  # name → armed entry, rebuilt when the version moves


_st = _State()


def attach(shm: Any, death_fd: int | None) -> None:
    _st.shm = shm
    _st.death_fd = death_fd
    _st.version = -1
    _st.cache = {}


def validate(name: str, action: str, arg: str) -> str | None:
    """Return an error message, or None when the spec is valid."""
    if not name or len(name.encode()) >= INJ_NAME_LEN:
        return f'invalid injection point name "{name}"'
    act = ACTION_NAMES.get(action)
    if act is None:
        return f'invalid action "{action}" for injection point "{name}"'
    if act in _NEEDS_ARG and not arg:
        return f'injection point action "{action}" requires an argument'
    if len(arg.encode()) >= INJ_ARG_LEN:
        return f'argument of injection point "{name}" is too long (at most {INJ_ARG_LEN - 1} bytes)'
    if act in (Action.EXIT, Action.UNDERSCORE_EXIT, Action.SLEEP):
        try:
            v = int(arg)
        except ValueError:
            return f'invalid argument "{arg}" for injection point action "{action}"'
        if act is not Action.SLEEP and not 0 <= v <= 255:
            return f'exit code {v} for injection point "{name}" is outside the valid range (0 .. 255)'
        if act is Action.SLEEP and v < 0:
            return f'sleep time {v} for injection point "{name}" must not be negative'
    if act is Action.IGNORE:
        sig = arg.upper() if arg.upper().startswith("SIG") else "SIG" + arg.upper()
        if not hasattr(signal.Signals, sig):
            return f'invalid signal "{arg}" for injection point action "ignore"'
        if sig in ("SIGKILL", "SIGSTOP"):
            return f"{sig} cannot be ignored"
    return None


def parse_setting(value: str) -> list[tuple[str, str, str]]:
    """Parse `name:action[:arg],...`; raises ValueError with a PostgreSQL-style message."""
    out: list[tuple[str, str, str]] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":", 2)
        if len(parts) < 2:
            raise ValueError(f'invalid injection point specification "{item}"')
        name, action, arg = parts[0], parts[1], parts[2] if len(parts) > 2 else ""
        err = validate(name, action, arg)
        if err:
            raise ValueError(err)
        out.append((name, action, arg))
    return out


def guc_check(value: str) -> str | None:
    try:
        parse_setting(value)
    except ValueError as e:
        return str(e)
    return None


def _write_entry(e: Any, name: str, action: str, arg: str) -> None:
    e.armed = 0
    e.name = name.encode()
    e.action = int(ACTION_NAMES[action])
    e.arg = arg.encode()
    e.detached = 0
    e.fired = 0
    e.generation += 1
    e.armed = 1  # last: publishes the entry


def apply_setting(shm: Any, value: str) -> None:
    """Postmaster only: rewrite the setting table from the `injection_points` value.

    Everything is validated before the first write, so an invalid value leaves the table as
    it was. Callers apply it only when the value changed: rewriting re-arms points that SQL
    detached and releases processes blocked in `wait`."""
    specs = parse_setting(value)[: len(shm.inj_setting)]
    for i, e in enumerate(shm.inj_setting):
        if i < len(specs):
            _write_entry(e, *specs[i])
        else:
            e.armed = 0
    shm.inj_setting_count = len(specs)
    shm.inj_version += 1


def sql_attach(shm: Any, locks: Any, name: str, action: str, arg: str) -> None:
    from node.ipc.lwlock import LWLockId

    err = validate(name, action, arg)
    if err:
        raise elog.PGError(err, "22023")
    with locks.hold(LWLockId.INJECTION):
        free = None
        target = None
        for e in shm.inj_sql:
            if e.armed and e.name.decode() == name:
                target = e
                break
            if not e.armed and free is None:
                free = e
        if target is None:
            if free is None:
                raise elog.PGError("no free slot for injection point", "53000")
            _write_entry(free, name, action, arg)
            shm.inj_sql_count += 1
        else:
            _write_entry(target, name, action, arg)
        shm.inj_version += 1


def sql_detach(shm: Any, locks: Any, name: str) -> None:
    from node.ipc.lwlock import LWLockId

    found = False
    with locks.hold(LWLockId.INJECTION):
        for e in shm.inj_sql:
            if e.armed and e.name.decode() == name:
                e.armed = 0
                shm.inj_sql_count = max(0, shm.inj_sql_count - 1)
                found = True
    for e in shm.inj_setting:
        if e.armed and not e.detached and e.name.decode() == name:
            e.detached = 1
            found = True
    shm.inj_version += 1
    if not found:
        raise elog.PGError(f"could not find injection point {name} to detach", "XX000")


def list_points(shm: Any) -> list[tuple[str, str, str, str]]:
    """(name, action, arg, source) of every armed point, for the pgbed_injection_points view."""
    rev = {v: k for k, v in ACTION_NAMES.items()}
    rows = []
    for source, table in (("setting", shm.inj_setting), ("sql", shm.inj_sql)):
        for e in table:
            if e.armed and not e.detached:
                rows.append((e.name.decode(), rev.get(e.action, "?"), e.arg.decode(), source))
    return rows


def _find(name: str) -> Any:
    """The armed entry for `name`. Scanning 64 ctypes entries costs microseconds, so each
    process keeps a name → entry map, rebuilt only when inj_version moves; the entry's own
    flags are re-checked on every use because a detach may race with the rebuild."""
    s = _st.shm
    v = s.inj_version
    if v != _st.version:
        cache: dict[bytes, Any] = {}
        for table in (s.inj_setting, s.inj_sql):  # SQL-armed wins over the setting
            for e in table:
                if e.armed and not e.detached:
                    cache[e.name] = e
        _st.cache = cache
        _st.version = v
    bname = name.encode()
    e = _st.cache.get(bname)
    if e is not None and e.armed and not e.detached and e.name == bname:
        return e
    return None


def armed(name: str) -> Any:
    s = _st.shm
    if s is None or not (s.inj_setting_count or s.inj_sql_count):
        return None
    return _find(name)


def _postmaster_dead() -> bool:
    if _st.death_fd is None:
        return False
    r, _, _ = select.select([_st.death_fd], [], [], 0)
    return bool(r)


def _sleep(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if _st.death_fd is not None:
            r, _, _ = select.select([_st.death_fd], [], [], left)
            if r:
                os._exit(1)  # CRASH-10: the postmaster is gone
        else:
            time.sleep(left)


def inject(name: str) -> None:
    """Run the action of `name` if it is armed. Costs two shm reads when nothing is armed."""
    s = _st.shm
    if s is None or not (s.inj_setting_count or s.inj_sql_count):
        return
    e = _find(name)
    if e is None:
        return
    run(name, e)


def run(name: str, e: Any) -> None:
    action = Action(e.action)
    arg = e.arg.decode()
    e.fired += 1
    elog.event(
        events.INJECTION_FIRED, "LOG", f'injection point "{name}" fired: {action.name.lower()}',
        name=name, action=action.name.lower(), arg=arg,
    )  # fmt: skip
    if action in (Action.ERROR, Action.FAIL):
        raise elog.PGError(f"error triggered for injection point {name}")
    if action is Action.EXIT:
        raise SystemExit(int(arg))
    if action is Action.UNDERSCORE_EXIT:
        os._exit(int(arg))
    if action is Action.SLEEP:
        _sleep(int(arg) / 1000.0)
    elif action is Action.WAIT:
        gen = e.generation
        while e.armed and not e.detached and e.generation == gen:
            _sleep(0.01)
            if _postmaster_dead():
                os._exit(1)
    elif action is Action.IGNORE:
        sig = arg.upper() if arg.upper().startswith("SIG") else "SIG" + arg.upper()
        signal.signal(getattr(signal.Signals, sig), signal.SIG_IGN)
    elif action is Action.STOP:
        os.kill(os.getpid(), signal.SIGSTOP)
    elif action is Action.ABORT:
        os.abort()
