"""Replication views and functions over shared memory (registered into node/sysquery.py).

What it does: pg_stat_replication (WalSnd slots joined with the walsenders' activity rows, lags
as intervals, sync_priority/sync_state from node/syncrep.py), pg_stat_wal_receiver (WALRCV-8:
no row while pid is 0 or before the connection is up), pg_replication_slots, and pgbed's two
raw views for the orchestrator's invariant checks: pgbed_walsnd_slots (every slot, free ones
too, with the pid owning the latch the slot points at) and pgbed_walrcv (the WalRcv struct).
Functions: pg_last_wal_receive_lsn, pg_last_xact_replay_timestamp, pg_drop_replication_slot.

What it deliberately does not do: write shared memory (except dropping a slot through
node/replslot.py), or lock: every row is copied under the owner's seqlock, retried while odd.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from node import protocol as P
from node import replslot, syncrep
from node.ipc.shmem import WALRCV_STATES, WALSND_STATES
from node.proc import me, read_entry
from node.sysquery import VIEWS, ViewDef, register


def _ts(t: float) -> _dt.datetime | None:
    return _dt.datetime.fromtimestamp(t, _dt.UTC) if t else None


def _lag(v: float) -> _dt.timedelta | None:
    return None if v < 0 else _dt.timedelta(seconds=v)


def _copy(entry: Any, fields: list[str]) -> dict[str, Any] | None:
    """A consistent copy of a seqlock-protected struct."""
    for _ in range(1000):
        before = entry.changecount
        if before & 1:
            continue
        out = {f: getattr(entry, f) for f in fields}
        if entry.changecount == before:
            return out
    return None


_WALSND_FIELDS = ["pid", "state", "latch_slot", "sent_lsn", "write_lsn", "flush_lsn", "apply_lsn", "write_lag",
                  "flush_lag", "apply_lag", "reply_time", "application_name"]  # fmt: skip


def _latch_owner(slot: int) -> int:
    if slot < 0 or slot >= len(me.shm.procs):
        return 0
    return int(me.shm.procs[slot].latch_owner)


def _walsnd_rows(s: Any) -> list[dict[str, Any]]:
    """Read under LWLockId.WALSND, as PostgreSQL reads a slot under its spinlock: a claim or a
    release in progress is never seen half done (unless the historic bug does half of it
    outside the lock)."""
    from node.ipc.lwlock import LWLockId

    with me.locks.hold(LWLockId.WALSND):
        # The latch owner too is read under the lock: a walsender frees its slot (under the lock)
        # before it disowns its latch, so inside the lock the two always agree; read after it,
        # an owner already gone would be paired with a stale copy of a slot still in use.
        copies = [_copy(ws, _WALSND_FIELDS) for ws in me.shm.walsnd]
        owners = [_latch_owner(c["latch_slot"]) if c is not None else 0 for c in copies]
    out = []
    for i, c in enumerate(copies):
        if c is None:
            continue
        out.append({
            "slot": i, "pid": c["pid"] or 0,
            "state": WALSND_STATES[c["state"]] if c["pid"] else None,
            "latch_owner_pid": owners[i],
            "sent_lsn": c["sent_lsn"] or None, "write_lsn": c["write_lsn"] or None,
            "flush_lsn": c["flush_lsn"] or None, "replay_lsn": c["apply_lsn"] or None,
            "reply_time": _ts(c["reply_time"]),
        })  # fmt: skip
    return out


VIEWS["pgbed_walsnd_slots"] = ViewDef(
    [("slot", P.INT4), ("pid", P.INT4), ("state", P.TEXT), ("latch_owner_pid", P.INT4), ("sent_lsn", P.PG_LSN),
     ("write_lsn", P.PG_LSN), ("flush_lsn", P.PG_LSN), ("replay_lsn", P.PG_LSN), ("reply_time", P.TIMESTAMPTZ)],
    _walsnd_rows,
)  # fmt: skip


REPLICATION_COLUMNS = [
    ("pid", P.INT4), ("usesysid", P.OID), ("usename", P.NAME), ("application_name", P.TEXT), ("client_addr", P.INET),
    ("client_hostname", P.TEXT), ("client_port", P.INT4), ("backend_start", P.TIMESTAMPTZ), ("backend_xmin", P.TEXT),
    ("state", P.TEXT), ("sent_lsn", P.PG_LSN), ("write_lsn", P.PG_LSN), ("flush_lsn", P.PG_LSN),
    ("replay_lsn", P.PG_LSN), ("write_lag", P.INTERVAL), ("flush_lag", P.INTERVAL), ("replay_lag", P.INTERVAL),
    ("sync_priority", P.INT4), ("sync_state", P.TEXT), ("reply_time", P.TIMESTAMPTZ),
]  # fmt: skip


def _replication_rows(s: Any) -> list[dict[str, Any]]:
    shm = me.shm
    cfg = syncrep.config_from(me.guc)
    states, _ = syncrep.sync_states(cfg, syncrep.snapshot_senders(shm))
    activity = {}
    for e in shm.procs:
        if e.pid:
            r = read_entry(e)
            if r is not None:
                activity[r["pid"]] = r
    out = []
    for i, ws in enumerate(shm.walsnd):
        c = _copy(ws, _WALSND_FIELDS)
        if c is None or not c["pid"]:
            continue
        a = activity.get(c["pid"], {})
        prio, sync_state = states.get(i, (0, "async"))
        out.append({
            "pid": c["pid"], "usesysid": 10, "usename": a.get("usename") or None,
            "application_name": c["application_name"].decode("utf-8", "replace"),
            "client_addr": a.get("client_addr") or None, "client_hostname": None,
            "client_port": a.get("client_port") if a.get("client_addr") else -1,
            "backend_start": _ts(a.get("backend_start", 0.0)), "backend_xmin": None,
            "state": WALSND_STATES[c["state"]],
            "sent_lsn": c["sent_lsn"] or None, "write_lsn": c["write_lsn"] or None,
            "flush_lsn": c["flush_lsn"] or None, "replay_lsn": c["apply_lsn"] or None,
            "write_lag": _lag(c["write_lag"]), "flush_lag": _lag(c["flush_lag"]), "replay_lag": _lag(c["apply_lag"]),
            "sync_priority": prio, "sync_state": sync_state, "reply_time": _ts(c["reply_time"]),
        })  # fmt: skip
    return out


VIEWS["pg_stat_replication"] = ViewDef(REPLICATION_COLUMNS, _replication_rows)


_WALRCV_FIELDS = ["pid", "state", "latch_slot", "ready_to_display", "receive_start_lsn", "receive_start_tli",
                  "written_lsn", "flushed_lsn", "received_tli", "last_msg_send_time", "last_msg_receipt_time",
                  "latest_end_lsn", "latest_end_time", "slot_name", "sender_host", "sender_port",
                  "conninfo"]  # fmt: skip


def _walrcv_raw_rows(s: Any) -> list[dict[str, Any]]:
    # The latch owner belongs with the copy it was read with: copy, owner, copy again, and only
    # a pair of equal copies counts (the walreceiver may exit in between).
    for _ in range(100):
        c = _copy(me.shm.walrcv, _WALRCV_FIELDS)
        if c is None:
            return []
        owner = _latch_owner(c["latch_slot"])
        if _copy(me.shm.walrcv, _WALRCV_FIELDS) == c:
            break
    else:
        return []
    return [{
        "pid": c["pid"], "state": WALRCV_STATES[c["state"]], "latch_owner_pid": owner,
        "receive_start_lsn": c["receive_start_lsn"] or None, "written_lsn": c["written_lsn"] or None,
        "flushed_lsn": c["flushed_lsn"] or None, "received_tli": c["received_tli"],
        "last_msg_receipt_time": _ts(c["last_msg_receipt_time"]),
    }]  # fmt: skip


VIEWS["pgbed_walrcv"] = ViewDef(
    [("pid", P.INT4), ("state", P.TEXT), ("latch_owner_pid", P.INT4), ("receive_start_lsn", P.PG_LSN),
     ("written_lsn", P.PG_LSN), ("flushed_lsn", P.PG_LSN), ("received_tli", P.INT4),
     ("last_msg_receipt_time", P.TIMESTAMPTZ)],
    _walrcv_raw_rows,
)  # fmt: skip


def _mask_password(conninfo: str) -> str:
    """The conninfo as PostgreSQL shows it: password replaced by ********."""
    from node.replclient import parse_conninfo, quote_conninfo_value

    try:
        params = parse_conninfo(conninfo)
    except Exception:
        return conninfo
    if "password" in params:
        params["password"] = "********"
    return " ".join(f"{k}={quote_conninfo_value(v)}" for k, v in params.items())


def _wal_receiver_rows(s: Any) -> list[dict[str, Any]]:
    c = _copy(me.shm.walrcv, _WALRCV_FIELDS)
    if c is None or not c["pid"] or not c["ready_to_display"]:
        return []  # WALRCV-8
    return [{
        "pid": c["pid"], "status": WALRCV_STATES[c["state"]],
        "receive_start_lsn": c["receive_start_lsn"] or None, "receive_start_tli": c["receive_start_tli"],
        "written_lsn": c["written_lsn"] or None, "flushed_lsn": c["flushed_lsn"] or None,
        "received_tli": c["received_tli"], "last_msg_send_time": _ts(c["last_msg_send_time"]),
        "last_msg_receipt_time": _ts(c["last_msg_receipt_time"]),
        "latest_end_lsn": c["latest_end_lsn"] or None, "latest_end_time": _ts(c["latest_end_time"]),
        "slot_name": c["slot_name"].decode() or None, "sender_host": c["sender_host"].decode() or None,
        "sender_port": c["sender_port"] or None, "conninfo": _mask_password(c["conninfo"].decode()),
    }]  # fmt: skip


VIEWS["pg_stat_wal_receiver"] = ViewDef(
    [("pid", P.INT4), ("status", P.TEXT), ("receive_start_lsn", P.PG_LSN), ("receive_start_tli", P.INT4),
     ("written_lsn", P.PG_LSN), ("flushed_lsn", P.PG_LSN), ("received_tli", P.INT4),
     ("last_msg_send_time", P.TIMESTAMPTZ), ("last_msg_receipt_time", P.TIMESTAMPTZ), ("latest_end_lsn", P.PG_LSN),
     ("latest_end_time", P.TIMESTAMPTZ), ("slot_name", P.TEXT), ("sender_host", P.TEXT), ("sender_port", P.INT4),
     ("conninfo", P.TEXT)],
    _wal_receiver_rows,
)  # fmt: skip


def _slot_rows(s: Any) -> list[dict[str, Any]]:
    return [{
        "slot_name": x.name, "plugin": None, "slot_type": "physical", "datoid": None, "database": None,
        "temporary": x.temporary, "active": bool(x.active_pid), "active_pid": x.active_pid or None,
        "xmin": None, "catalog_xmin": None, "restart_lsn": x.restart_lsn or None, "confirmed_flush_lsn": None,
        "wal_status": "reserved" if x.restart_lsn else None, "safe_wal_size": None, "two_phase": False,
    } for x in replslot.all_slots(me.shm)]  # fmt: skip


VIEWS["pg_replication_slots"] = ViewDef(
    [("slot_name", P.NAME), ("plugin", P.NAME), ("slot_type", P.TEXT), ("datoid", P.OID), ("database", P.NAME),
     ("temporary", P.BOOL), ("active", P.BOOL), ("active_pid", P.INT4), ("xmin", P.TEXT), ("catalog_xmin", P.TEXT),
     ("restart_lsn", P.PG_LSN), ("confirmed_flush_lsn", P.PG_LSN), ("wal_status", P.TEXT),
     ("safe_wal_size", P.INT8), ("two_phase", P.BOOL)],
    _slot_rows,
)  # fmt: skip


@register("pg_last_wal_receive_lsn", P.PG_LSN)
def pg_last_wal_receive_lsn(s: Any) -> int | None:
    """GetWalRcvFlushRecPtr: how far streamed WAL is flushed; NULL when nothing was streamed."""
    v = int(me.shm.walrcv.flushed_lsn)
    return v or None


@register("pg_last_xact_replay_timestamp", P.TIMESTAMPTZ)
def pg_last_xact_replay_timestamp(s: Any) -> _dt.datetime | None:
    return _ts(float(me.shm.xlog.last_xact_replay_ts))


@register("pg_drop_replication_slot", P.VOID, ("slot_name",))
def pg_drop_replication_slot(s: Any, slot_name: str) -> None:
    replslot.drop(me.shm, me.locks, me.datadir, str(slot_name), me.pid)
