"""Error reporting and server logging in PostgreSQL's form (elog.c, in small).

What it does:
- `PGError` carries an ERROR/FATAL/PANIC with SQLSTATE, message, detail, hint; backends turn it
  into an ErrorResponse, other processes log it and exit (FATAL → exit 1).
- `log()` writes one text line per message to stderr (`log_line_prefix` + `LEVEL:  message`,
  plus DETAIL/HINT/STATEMENT lines) filtered by log_min_messages, and, when log_destination
  has `jsonlog`, one JSON line to `log/postgresql.json` in the data directory.
- `event()` writes a jsonlog event line (node/events.py names) whatever the level, and a text
  line when the level passes log_min_messages.

What it deliberately does not do: run from signal handlers (P-5: a handler that logs risks
`reentrant call inside BufferedWriter`). Handlers count signals; the loops log them.

Every write is a single os.write on an O_APPEND descriptor, so lines of different processes
never interleave mid-line. Per-process context (pid, backend type, user, ...) is module state,
reset by `set_process()` right after fork.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

# For the server log, LOG ranks between ERROR and FATAL (elog.c: is_log_level_output).
_SERVER_RANK = {
    "DEBUG5": 10, "DEBUG4": 11, "DEBUG3": 12, "DEBUG2": 13, "DEBUG1": 14,
    "INFO": 17, "NOTICE": 18, "WARNING": 19, "ERROR": 21, "LOG": 21.5,
    "FATAL": 22, "PANIC": 23,
}  # fmt: skip


class PGError(Exception):
    """An ereport(ERROR|FATAL|PANIC). Raised at check points only, never in a handler."""

    def __init__(
        self,
        message: str,
        sqlstate: str = "XX000",
        *,
        severity: str = "ERROR",
        detail: str | None = None,
        hint: str | None = None,
        position: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.severity = severity
        self.detail = detail
        self.hint = hint
        self.position = position


def fatal(message: str, sqlstate: str = "XX000", **kw: Any) -> PGError:
    return PGError(message, sqlstate, severity="FATAL", **kw)


class _Ctx:
    pid = 0
    backend_type = "postmaster"
    application_name = ""
    user = ""
    dbname = ""
    remote = ""
    session_start = 0.0
    line_num = 0
    min_rank: float = _SERVER_RANK["WARNING"]
    prefix = "%m [%p] %b "
    json_fd: int | None = None
    stderr = True
    datadir = ""


ctx = _Ctx()


def set_process(backend_type: str) -> None:
    ctx.pid = os.getpid()
    ctx.backend_type = backend_type
    ctx.application_name = ""
    ctx.user = ""
    ctx.dbname = ""
    ctx.remote = ""
    ctx.session_start = time.time()
    ctx.line_num = 0


def configure(*, log_min_messages: str, log_destination: str, log_line_prefix: str, datadir: str) -> None:
    """Apply the logging settings (at start and after every reload)."""
    ctx.min_rank = _SERVER_RANK.get(log_min_messages.upper(), _SERVER_RANK["WARNING"])
    ctx.prefix = log_line_prefix
    dests = {d.strip().lower() for d in log_destination.split(",") if d.strip()}
    ctx.stderr = "stderr" in dests or not dests
    ctx.datadir = datadir
    if "jsonlog" in dests:
        if ctx.json_fd is None and datadir:
            logdir = os.path.join(datadir, "log")
            os.makedirs(logdir, mode=0o700, exist_ok=True)
            ctx.json_fd = os.open(
                os.path.join(logdir, "postgresql.json"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
            )
    elif ctx.json_fd is not None:
        os.close(ctx.json_fd)
        ctx.json_fd = None


def format_timestamp(t: float) -> str:
    """%m: `2026-11-25 10:00:00.123 UTC`."""
    tm = time.gmtime(t)
    return time.strftime("%Y-%m-%d %H:%M:%S", tm) + f".{int(t * 1000) % 1000:03d} UTC"


def _prefix(t: float) -> str:
    out: list[str] = []
    p = ctx.prefix
    i = 0
    while i < len(p):
        c = p[i]
        if c != "%" or i + 1 >= len(p):
            out.append(c)
            i += 1
            continue
        k = p[i + 1]
        i += 2
        if k == "m":
            out.append(format_timestamp(t))
        elif k == "t":
            out.append(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)))
        elif k == "p":
            out.append(str(ctx.pid or os.getpid()))
        elif k == "b":
            out.append(ctx.backend_type)
        elif k == "a":
            out.append(ctx.application_name)
        elif k == "u":
            out.append(ctx.user)
        elif k == "d":
            out.append(ctx.dbname)
        elif k in "rh":
            out.append(ctx.remote)
        elif k == "%":
            out.append("%")
    return "".join(out)


def _write_text(level: str, message: str, t: float, extra: list[tuple[str, str]]) -> None:
    if not ctx.stderr:
        return
    prefix = _prefix(t)
    # error_severity(): every debug level is written "DEBUG"
    lines = [f"{prefix}{'DEBUG' if level.startswith('DEBUG') else level}:  {message}\n"]
    lines.extend(f"{prefix}{tag}:  {text}\n" for tag, text in extra)
    data = "".join(lines).encode("utf-8", "replace")
    try:
        os.write(2, data)
    except OSError:
        pass


def _write_json(record: dict[str, Any]) -> None:
    if ctx.json_fd is None:
        return
    try:
        os.write(ctx.json_fd, (json.dumps(record, default=str) + "\n").encode())
    except OSError:
        pass


def _record(level: str, message: str, t: float, sqlstate: str | None, detail: str | None,
            hint: str | None) -> dict[str, Any]:  # fmt: skip
    ctx.line_num += 1
    rec: dict[str, Any] = {
        "timestamp": format_timestamp(t),
        "ts": round(t, 6),
        "pid": ctx.pid or os.getpid(),
        "backend_type": ctx.backend_type,
        "line_num": ctx.line_num,
        "error_severity": level,
        "message": message,
    }
    if ctx.user:
        rec["user"] = ctx.user
    if ctx.dbname:
        rec["dbname"] = ctx.dbname
    if ctx.application_name:
        rec["application_name"] = ctx.application_name
    if ctx.remote:
        rec["remote_host"] = ctx.remote
    if sqlstate:
        rec["state_code"] = sqlstate
    if detail:
        rec["detail"] = detail
    if hint:
        rec["hint"] = hint
    return rec


def passes(level: str) -> bool:
    return _SERVER_RANK[level] >= ctx.min_rank


def log(
    level: str,
    message: str,
    *,
    sqlstate: str | None = None,
    detail: str | None = None,
    hint: str | None = None,
    statement: str | None = None,
) -> None:
    """ereport to the server log (not to the client)."""
    if not passes(level):
        return
    t = time.time()
    extra = [(tag, text) for tag, text in (("DETAIL", detail), ("HINT", hint), ("STATEMENT", statement)) if text]
    _write_text(level, message, t, extra)
    if ctx.json_fd is not None:
        rec = _record(level, message, t, sqlstate, detail, hint)
        if statement:
            rec["statement"] = statement
        _write_json(rec)


def event(name: str, level: str, message: str, /, *, detail: str | None = None, log_text: bool = True,
          **fields: Any) -> None:
    """A log line that is also a checker-visible event (see node/events.py). With log_text
    False only the event is written: the text line is someone else's to log (once)."""
    t = time.time()
    if log_text and passes(level):
        _write_text(level, message, t, [("DETAIL", detail)] if detail else [])
    if ctx.json_fd is not None:
        rec = _record(level, message, t, None, detail, None)
        rec["event"] = name
        rec.update(fields)
        _write_json(rec)
