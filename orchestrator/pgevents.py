"""pgbed's jsonlog events, derived from a PostgreSQL 15 server log, so that the campaign checkers
(orchestrator/checker/process.py, orchestrator/bgwcheck.py) can judge real PostgreSQL too.

What it does: reads a text log written with `log_line_prefix = '%m [%p] %b '` (PostgresNode's)
and turns the lines PostgreSQL writes at the state changes pgbed records as events into those
events, with node/events.py's names and fields:

  postmaster  starting PostgreSQL …                          postmaster_start
              received <mode> shutdown request               shutdown_request {mode}
              received SIGHUP, reloading configuration files reload
              <process> (PID n) was terminated by signal …   child_exit {kind, child_pid, signal | exit_code}
              … then terminating any other active server …   crash {kind, child_pid} of that exit
              all server processes terminated; reinitializing reinit
              ready to accept read-only connections          pm_state HOT_STANDBY, ready {read_only}
              ready to accept connections                    ready {read_only: false}
              starting background worker process "x" (DEBUG1) bgw_start {name, start_time, restart_time}
  startup     consistent recovery state reached at X         consistent {lsn}
              received promote request                       promote
              new target timeline is N                       timeline_switch {new}
  walreceiver started streaming WAL from primary at X on …   walrcv_streaming {lsn, timeline}
              any FATAL                                      child_exit {kind walreceiver, exit_code 1}

The start time and restart interval of a worker are not in PostgreSQL's line: they come from the
`pgbed_test.static_workers` spec the node was given, and from what PostgreSQL 15 registers for its
own workers (the logical replication launcher: RecoveryFinished, 5 s; the autoprewarm leader and
parallel workers: ConsistentState, never restarted). A worker of unknown registration gets no
bgw_start, so it is never judged on a guess. `bgw_start` lines need `log_min_messages = debug1`.

Order and time: `%m` has millisecond resolution, so events keep the file's order (every process
writes to one stderr with O_APPEND, which respects causality: the startup process writes its last
line before it exits, the postmaster reaps it after) and each event's `ts` is its line's time,
raised where needed to 1 µs after the previous event's.

Derived rather than logged — `pm_state RUN`: PostgreSQL 15 enters PM_RUN when it reaps the
startup process, forks the RecoveryFinished workers, and only then logs "ready to accept
connections". RUN is placed at the postmaster's first line after the startup process's last line
of that incarnation (the first such fork, or "ready" itself). A worker forked while the startup
process still ran would precede that point, so the check that RecoveryFinished workers wait for
RUN keeps its teeth. A walreceiver's exit with 1 is not logged by the postmaster (it is no crash);
its FATAL line, the last thing it writes, stands for it.

What it deliberately does not do: invent what PostgreSQL's log does not say — child_start,
walrcv_request, bgw_register/bgw_forget, pm_exit and the pid of a forked worker have no events,
so the checkers that need them stay UNKNOWN on the postgres flavour. It reads; it owns no state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from node import events as ev
from orchestrator.diffnorm import match_line

_EXIT = re.compile(r"^(.*) \(PID (\d+)\) (?:was terminated by signal (\d+)(?::.*)?|exited with exit code (\d+))$")
_SIGNALS = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV",
            12: "SIGUSR2", 15: "SIGTERM"}  # fmt: skip
# LogChildExit's process names → pgbed's kinds (node/states.py BackendKind values)
REINIT_LINE = "all server processes terminated; reinitializing"
_KINDS = {"server process": "client backend", "startup process": "startup", "checkpointer process": "checkpointer",
          "WAL receiver process": "walreceiver", "WAL writer process": "walwriter",
          "background writer process": "bgwriter", "autovacuum launcher process": "autovacuum launcher",
          "archiver process": "archiver", "statistics collector process": "stats collector"}  # fmt: skip
# PostgreSQL 15's own workers: name (or name prefix) → (start time, restart interval in s, -1 never)
PG_WORKERS = {"logical replication launcher": ("recovery_finished", 5), "autoprewarm leader": ("consistent_state", -1),
              "parallel worker for PID ": ("consistent_state", -1)}  # fmt: skip


@dataclass
class _Line:
    ts: float
    pid: int
    btype: str
    level: str
    msg: str


def parse_static_workers(spec: str) -> dict[str, tuple[str, int]]:
    """`pgbed_test.static_workers` ('name:start_time:restart_s:behaviour;…') → name → (start
    time, restart interval); entries the extension would reject are left out, as it skips them."""
    out: dict[str, tuple[str, int]] = {}
    for tok in spec.split(";"):
        parts = [p.strip() for p in tok.split(":")]
        if len(parts) < 3 or not parts[0]:
            continue
        start = parts[1].lower()
        if start not in ("postmaster_start", "consistent_state", "recovery_finished"):
            continue
        try:
            restart = int(parts[2])
        except ValueError:
            continue
        out[parts[0]] = (start, restart)
    return out


def _lines(text: str) -> list[_Line]:
    out = []
    for raw in text.splitlines():
        m = match_line(raw)  # None: a continuation line; DETAIL/HINT/… are not levels it knows
        if m is None or m["tz"] != "UTC":  # PostgresNode sets log_timezone = 'UTC'
            continue
        ts = datetime.strptime(m["stamp"], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp()
        level = "DEBUG" if m["level"].startswith("DEBUG") else m["level"]
        out.append(_Line(ts, int(m["pid"]), m["btype"].strip(), level, m["msg"].strip()))
    return out


def _registration(name: str, workers: dict[str, tuple[str, int]]) -> tuple[str, int] | None:
    if name in workers:
        return workers[name]
    for key, reg in PG_WORKERS.items():
        if name == key or (key.endswith(" ") and name.startswith(key)):
            return reg
    return None


def _event(line: _Line, event: str, /, **fields: Any) -> dict[str, Any]:
    return {"ts": line.ts, "pid": line.pid, "backend_type": line.btype, "error_severity": line.level,
            "message": line.msg, "event": event, **fields}  # fmt: skip


def _exit_event(line: _Line, m: re.Match[str]) -> dict[str, Any]:
    what, pid, sig, code = m.groups()
    bgw = re.fullmatch(r'background worker "(.*)"', what)
    kind = "background worker" if bgw else _KINDS.get(what, what)
    extra = {"name": bgw.group(1)} if bgw else {}
    return _event(line, ev.CHILD_EXIT, kind=kind, child_pid=int(pid), exit_code=None if sig else int(code),
                  signal=_SIGNALS.get(int(sig), f"signal {sig}") if sig else None, **extra)  # fmt: skip


def events_from_log(text: str, static_workers: str = "") -> list[dict[str, Any]]:
    """The events of one node's PostgreSQL 15 log (every incarnation), in the log's order."""
    workers = parse_static_workers(static_workers)
    lines = _lines(text)
    run_at = _run_points(lines)
    out: list[dict[str, Any]] = []
    last_exit: dict[str, Any] | None = None
    for i, line in enumerate(lines):
        if i in run_at:
            out.append(_event(line, ev.PM_STATE, old=run_at[i], new="RUN", derived=True))
        msg, bt = line.msg, line.btype
        if bt == "postmaster":
            if msg.startswith("starting PostgreSQL "):
                out.append(_event(line, ev.PM_START))
            elif m := re.fullmatch(r"received (smart|fast|immediate) shutdown request", msg):
                out.append(_event(line, ev.SHUTDOWN_REQUEST, mode=m.group(1)))
            elif msg == "received SIGHUP, reloading configuration files":
                out.append(_event(line, ev.RELOAD))
            elif msg == REINIT_LINE:
                out.append(_event(line, ev.REINIT))
            elif msg == "terminating any other active server processes" and last_exit is not None:
                out.append(_event(line, ev.CRASH, kind=last_exit["kind"], child_pid=last_exit["child_pid"]))
            elif msg == "database system is ready to accept read-only connections":
                out.append(_event(line, ev.PM_STATE, old="RECOVERY", new="HOT_STANDBY"))
                out.append(_event(line, ev.READY, read_only=True))
            elif msg == "database system is ready to accept connections":
                out.append(_event(line, ev.READY, read_only=False))
            elif m := re.fullmatch(r'starting background worker process "(.*)"', msg):
                reg = _registration(m.group(1), workers)
                if reg is not None:
                    out.append(_event(line, ev.BGW_START, name=m.group(1), start_time=reg[0], restart_time=reg[1],
                                      pid=None))  # fmt: skip
            elif m := _EXIT.match(msg):
                last_exit = _exit_event(line, m)
                out.append(last_exit)
        elif bt == "startup":
            if m := re.fullmatch(r"consistent recovery state reached at (\S+)", msg):
                out.append(_event(line, ev.CONSISTENT, lsn=m.group(1)))
            elif msg == "received promote request":
                out.append(_event(line, ev.PROMOTE))
            elif m := re.fullmatch(r"new target timeline is (\d+)", msg):
                out.append(_event(line, ev.TIMELINE_SWITCH, new=int(m.group(1))))
        elif bt == "walreceiver":
            if m := re.fullmatch(r"started streaming WAL from primary at (\S+) on timeline (\d+)", msg):
                out.append(_event(line, ev.WALRCV_STREAMING, lsn=m.group(1), timeline=int(m.group(2))))
            elif line.level == "FATAL":
                out.append(_event(line, ev.CHILD_EXIT, kind="walreceiver", child_pid=line.pid, exit_code=1,
                                  signal=None))  # fmt: skip
    return _monotone(out)


def _run_points(lines: list[_Line]) -> dict[int, str]:
    """Index of the line before which PM_RUN is entered → the state it left, per incarnation that
    logs "ready to accept connections"."""
    points: dict[int, str] = {}
    last_startup: int | None = None
    hot_standby = False
    for i, line in enumerate(lines):
        starts = line.msg.startswith("starting PostgreSQL ") or line.msg == REINIT_LINE
        if line.btype == "postmaster" and starts:
            last_startup, hot_standby = None, False
        elif line.btype == "startup":
            last_startup = i
        elif line.btype == "postmaster" and line.msg == "database system is ready to accept read-only connections":
            hot_standby = True
        elif line.btype == "postmaster" and line.msg == "database system is ready to accept connections":
            at = i
            if last_startup is not None:
                at = next(j for j in range(last_startup + 1, i + 1) if lines[j].btype == "postmaster")
            points[at] = "HOT_STANDBY" if hot_standby else "RECOVERY"
            last_startup = None
    return points


def _monotone(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    prev = float("-inf")
    for e in events:
        ts = max(float(e["ts"]), prev + 1e-6)
        out.append({**e, "ts": ts})
        prev = ts
    return out
