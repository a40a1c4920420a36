"""pg_stat_bgworker: every background-worker slot, as shared memory has it (ours, not PostgreSQL's).

Columns: slot, generation, in_use, name, type, start_time, restart_time (NULL = never),
flags, pid, status (free / not yet started / started / stopped), notify_pid, starts, crashes,
last_start, last_exit, last_exit_code. The postmaster writes every field of a slot in use
(BGW-5); rows are copies taken without a lock, as PostgreSQL's own readers do.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from node import protocol as P
from node.bgwlist import BGWORKER_BACKEND_DATABASE_CONNECTION, BGWORKER_SHMEM_ACCESS, StartTime
from node.proc import me
from node.sysquery import VIEWS, ViewDef


def _ts(t: float) -> _dt.datetime | None:
    return _dt.datetime.fromtimestamp(t, _dt.UTC) if t else None


def _rows(s: Any) -> list[dict[str, Any]]:
    shm = me.shm
    out = []
    for i in range(min(int(shm.bgw_count), len(shm.bgw))):
        b = shm.bgw[i]
        in_use = bool(b.in_use)
        pid = int(b.pid)
        status = "free" if not in_use else "not yet started" if pid == -1 else "stopped" if pid == 0 else "started"
        flags = [n for bit, n in ((BGWORKER_SHMEM_ACCESS, "shmem"), (BGWORKER_BACKEND_DATABASE_CONNECTION,
                                                                       "database")) if int(b.flags) & bit]  # fmt: skip
        try:
            start = StartTime(int(b.start_time)).sql_name
        except ValueError:
            start = None
        out.append({
            "slot": i, "generation": int(b.generation), "in_use": in_use,
            "name": b.name.decode("utf-8", "replace") or None, "type": b.type.decode("utf-8", "replace") or None,
            "start_time": start if in_use or b.name else None,
            "restart_time": None if int(b.restart_time) < 0 else int(b.restart_time),
            "flags": ",".join(flags), "pid": pid if pid > 0 else None, "status": status,
            "notify_pid": int(b.notify_pid) or None, "starts": int(b.starts), "crashes": int(b.crashes),
            "last_start": _ts(float(b.last_start)), "last_exit": _ts(float(b.last_exit)),
            "last_exit_code": int(b.last_exit_code) if b.has_exited else None,
        })  # fmt: skip
    return out


VIEWS["pg_stat_bgworker"] = ViewDef(
    [("slot", P.INT4), ("generation", P.INT8), ("in_use", P.BOOL), ("name", P.TEXT), ("type", P.TEXT),
     ("start_time", P.TEXT), ("restart_time", P.INT4), ("flags", P.TEXT), ("pid", P.INT4), ("status", P.TEXT),
     ("notify_pid", P.INT4), ("starts", P.INT4), ("crashes", P.INT4), ("last_start", P.TIMESTAMPTZ),
     ("last_exit", P.TIMESTAMPTZ), ("last_exit_code", P.INT4)],
    _rows,
)  # fmt: skip
