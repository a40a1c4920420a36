"""Synchronous replication (repl/syncrep.c, syncrep_gram.y): the names grammar, choosing the
synchronous standbys, releasing waiters, and a committing backend's wait.

What it does
- `parse_names()`: synchronous_standby_names as PostgreSQL reads it: `FIRST n (a, b)`,
  `ANY n (a, b)`, `n (a, b)` (= FIRST), a bare list `a, b` (= FIRST 1), `*` matching any
  standby, double-quoted names kept as written, others compared case-insensitively.
- `sync_states()`: pure. From the walsenders' application names, states and positions, each
  one's sync_priority and sync_state (sync / potential / quorum / async) and the LSNs the
  configuration guarantees per wait mode (write, flush, apply): FIRST n takes the minimum over
  the n highest-priority candidates, ANY n the n-th highest position among all candidates
  (SyncRepGetSyncRecPtr). Candidates are walsenders streaming or stopping with a valid flush
  position (SyncRepGetCandidateStandbys).
- `release_waiters()`: called by a walsender after each standby reply: publishes the new LSNs
  (never backwards) and sets the latch of every backend whose wait they cover.
- `wait_for_lsn()`: a committing backend's SyncRepWaitForLSN, with PostgreSQL's WARNINGs when
  the wait is cancelled or the session terminated (the transaction stays committed locally).

What it deliberately does not do: the walsender protocol (node/walsender.py) or decide when a
commit waits (node/sqlexec.py asks `wait_mode()`).

Shared state: `shm.syncrep.lsn[3]` under LWLockId.SYNCREP (written by walsenders only); each
backend's `sync_wait_lsn`/`sync_wait_mode` in its own ProcEntry (written by that backend only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MODE_WRITE, MODE_FLUSH, MODE_APPLY = 0, 1, 2
_WAIT_MODE = {"remote_write": MODE_WRITE, "on": MODE_FLUSH, "remote_apply": MODE_APPLY}


@dataclass(frozen=True)
class SyncConfig:
    method: str  # "priority" (FIRST) or "quorum" (ANY)
    num_sync: int
    names: tuple[str, ...]  # quoted names as written, others lower-cased; "*" matches all


class SyncNamesError(ValueError):
    pass


_TOK = re.compile(r'\s*(?:(?P<num>\d+)(?![A-Za-z_\d$\x80-\uffff])|(?P<q>"(?:[^"]|"")*")|(?P<star>\*)|(?P<p>[(),])'
                  r"|(?P<w>[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*))")  # fmt: skip
_PARSE_FAILED = "synchronous_standby_names parser failed"


def _tokens(text: str) -> list[tuple[str, str]]:
    """syncrep_scanner.l: FIRST/ANY (any case) are keywords, never names; names are identifiers,
    numbers, double-quoted strings or `*`; any other character is junk (a parse error)."""
    out = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOK.match(text, pos)
        if not m or m.end() == pos:
            raise SyncNamesError(_PARSE_FAILED)
        pos = m.end()
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "q" and (len(value) < 2 or not value.endswith('"')):
            raise SyncNamesError(_PARSE_FAILED)
        if kind == "w" and value.upper() in ("FIRST", "ANY"):
            kind = value.upper()
        out.append((kind, value))
    return out


def parse_names(text: str) -> SyncConfig | None:
    """None for an empty setting (no synchronous replication). syncrep_gram.y:
    standby_list | NUM '(' standby_list ')' | ANY NUM '(' ... ')' | FIRST NUM '(' ... ')'."""
    if text == "":
        return None
    toks = _tokens(text)
    i = 0
    method = "priority"
    num: int | None = None

    def name_at(j: int) -> str:
        kind, v = toks[j]
        if kind == "q":
            return v[1:-1].replace('""', '"')
        if kind in ("w", "num"):
            return v
        if kind == "star":
            return "*"
        raise SyncNamesError(_PARSE_FAILED)

    if toks and toks[0][0] in ("FIRST", "ANY"):
        if len(toks) < 2 or toks[1][0] != "num":
            raise SyncNamesError(_PARSE_FAILED)
        method = "quorum" if toks[0][0] == "ANY" else "priority"
        num = int(toks[1][1])
        i = 2
    elif len(toks) > 1 and toks[0][0] == "num" and toks[1] == ("p", "("):
        num = int(toks[0][1])
        i = 1
    names: list[str] = []
    if num is not None:
        if i >= len(toks) or toks[i] != ("p", "("):
            raise SyncNamesError(_PARSE_FAILED)
        i += 1
        while True:
            if i >= len(toks):
                raise SyncNamesError(_PARSE_FAILED)
            names.append(name_at(i))
            i += 1
            if i < len(toks) and toks[i] == ("p", ","):
                i += 1
                continue
            if i < len(toks) and toks[i] == ("p", ")") and i == len(toks) - 1:
                break
            raise SyncNamesError(_PARSE_FAILED)
        if num <= 0:
            raise SyncNamesError(f"number of synchronous standbys ({num}) must be greater than zero")
    else:
        num = 1
        while True:
            if i >= len(toks):
                raise SyncNamesError(_PARSE_FAILED)
            names.append(name_at(i))
            i += 1
            if i == len(toks):
                break
            if toks[i] != ("p", ","):
                raise SyncNamesError(_PARSE_FAILED)
            i += 1
    return SyncConfig(method, num, tuple(names))


def priority_of(cfg: SyncConfig, application_name: str) -> int:
    """SyncRepGetStandbyPriority: 1-based position of the first matching name, 0 = none."""
    for i, name in enumerate(cfg.names, 1):
        if name == "*" or name.lower() == application_name.lower():  # pg_strcasecmp
            return 1 if cfg.method == "quorum" else i
    return 0


@dataclass(frozen=True)
class Sender:
    index: int
    application_name: str
    state: str  # WALSND-3 name
    write: int
    flush: int
    apply: int


def sync_states(
    cfg: SyncConfig | None, senders: list[Sender]
) -> tuple[dict[int, tuple[int, str]], tuple[int, int, int] | None]:
    """({index: (priority, sync_state)}, guaranteed (write, flush, apply) or None)."""
    out: dict[int, tuple[int, str]] = {}
    if cfg is None:
        return {s.index: (0, "async") for s in senders}, None
    cands = []
    for s in senders:
        prio = priority_of(cfg, s.application_name)
        if s.flush == 0:
            prio = 0  # pg_stat_get_wal_senders: an invalid flush position is an async standby
        out[s.index] = (prio, "async" if prio == 0 else "potential")
        if s.state in ("streaming", "stopping") and prio > 0:
            cands.append((prio, s.index, s))
    if cfg.method == "quorum":
        for _p, idx, _s in cands:
            out[idx] = (out[idx][0], "quorum")
        if len(cands) < cfg.num_sync:
            return out, None
        pos = []
        for k in ("write", "flush", "apply"):
            vals = sorted((getattr(s, k) for _p, _i, s in cands), reverse=True)
            pos.append(vals[cfg.num_sync - 1])
        return out, (pos[0], pos[1], pos[2])
    cands.sort(key=lambda c: (c[0], c[1]))
    chosen = cands[: cfg.num_sync]
    for _p, idx, _s in chosen:
        out[idx] = (out[idx][0], "sync")
    if len(chosen) < cfg.num_sync:
        return out, None
    return out, (min(s.write for _p, _i, s in chosen), min(s.flush for _p, _i, s in chosen),
                 min(s.apply for _p, _i, s in chosen))  # fmt: skip


_cache: dict[str, SyncConfig | None] = {}


def config_from(guc: Any) -> SyncConfig | None:
    text = str(guc.get("synchronous_standby_names"))
    if text not in _cache:
        try:
            _cache[text] = parse_names(text)
        except SyncNamesError:
            _cache[text] = None
    return _cache[text]


def snapshot_senders(shm: Any) -> list[Sender]:
    from node.ipc.shmem import WALSND_STATES

    out = []
    for i, ws in enumerate(shm.walsnd):
        if ws.pid:
            out.append(Sender(i, ws.application_name.decode("utf-8", "replace"), WALSND_STATES[ws.state],
                              int(ws.write_lsn), int(ws.flush_lsn), int(ws.apply_lsn)))  # fmt: skip
    return out


def release_waiters(shm: Any, locks: Any, guc: Any) -> None:
    """SyncRepReleaseWaiters: advance the released LSNs and wake the backends they cover."""
    from node.ipc.latch import set_latch
    from node.ipc.lwlock import LWLockId

    cfg = config_from(guc)
    sr = shm.syncrep
    sr.sync_standbys_defined = 1 if cfg is not None else 0
    if cfg is None:
        return
    _states, synced = sync_states(cfg, snapshot_senders(shm))
    if synced is None:
        return
    changed = False
    with locks.hold(LWLockId.SYNCREP):
        for m in range(3):
            if synced[m] > sr.lsn[m]:
                sr.lsn[m] = synced[m]
                changed = True
    if changed:
        for e in shm.procs:
            w = e.sync_wait_lsn
            if w and e.pid and w <= sr.lsn[e.sync_wait_mode]:
                set_latch(e)


def wait_mode(guc: Any) -> int | None:
    """The wait mode synchronous_commit asks for, None when a commit does not wait."""
    return _WAIT_MODE.get(str(guc.get("synchronous_commit")))


def wait_for_lsn(session: Any, me: Any, lsn: int, mode: int) -> None:
    """SyncRepWaitForLSN: wait until `mode`'s released LSN passes `lsn`. Cancel and
    terminate end the wait with PostgreSQL's WARNINGs; the commit itself stands."""
    from node import elog, events
    from node.ipc.latch import WL_POSTMASTER_DEATH
    from node.proc import process_config_reload, report_wait, report_wait_end

    shm = me.shm
    sr = shm.syncrep
    if config_from(me.guc) is None or sr.lsn[mode] >= lsn:
        return
    e = me.entry
    e.sync_wait_mode = mode
    e.sync_wait_lsn = lsn
    latch = me.latch
    report_wait("IPC", "SyncRep")
    try:
        while True:
            latch.reset()
            if sr.lsn[mode] >= lsn:
                return
            p = me.pending
            if p.proc_die:
                session.notice("WARNING", "canceling the wait for synchronous replication and terminating connection "
                               "due to administrator command", "57P01")  # fmt: skip
                elog.event(events.SYNCREP_CANCEL, "DEBUG1", "synchronous replication wait ended by terminate",
                           lsn=f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}")  # fmt: skip
                session.conn.flush()
                raise elog.fatal("terminating connection due to administrator command", "57P01")
            if p.query_cancel:
                p.query_cancel = False
                _cancel_warning(session, lsn)
                return
            if process_config_reload():
                if config_from(me.guc) is None:  # synchronous_standby_names emptied: waiters go
                    return
            rc = latch.wait(1.0)
            if rc & WL_POSTMASTER_DEATH:
                _cancel_warning(session, lsn)
                raise elog.fatal("terminating connection due to unexpected postmaster exit", "57P01")
    finally:
        e.sync_wait_lsn = 0
        report_wait_end()


def _cancel_warning(session: Any, lsn: int) -> None:
    from node import elog, events

    msg = "canceling wait for synchronous replication due to user request"
    detail = "The transaction has already committed locally, but might not have been replicated to the standby."
    elog.log("WARNING", msg, sqlstate="01000", detail=detail)
    elog.event(events.SYNCREP_CANCEL, "DEBUG1", "synchronous replication wait cancelled",
               lsn=f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}")  # fmt: skip
    from node import protocol as P

    session.conn.send(P.notice_response(P.ErrorFields(severity="WARNING", sqlstate="01000", message=msg,
                                                      detail=detail)))  # fmt: skip
