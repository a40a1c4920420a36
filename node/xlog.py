"""WAL access for the node's processes: positions in shared memory, one writer per process.

What it does: `XLog` appends records for the calling process — a backend's COMMIT records, the
checkpointer's checkpoint records — at the shared insert position (XLogCtl in shared memory),
flushes them when asked, and publishes the new insert/prev/flush positions. `bootstrap_wal()`
writes the first checkpoint record at initdb. `read_checkpoint()` reads the record pg_control
points at, with PostgreSQL's FATAL wording when it cannot.

What it deliberately does not do: lock. Every append happens while the caller holds SQLite's
write lock (node/storage.py: BEGIN IMMEDIATE), which is the WAL insertion lock: so LSN order is
commit order, and nothing here can interleave.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from node import wal
from node.elog import PGError


class XLog:
    def __init__(self, datadir: str | Path, xlogctl: Any, *, fsync: bool = True) -> None:
        self.waldir = Path(datadir) / wal.XLOGDIR
        self.ctl = xlogctl
        self.fsync = fsync
        self._writer: wal.WalWriter | None = None

    def _writer_at_shared_position(self) -> wal.WalWriter:
        c = self.ctl
        if not c.wal_ready:
            raise PGError("cannot write WAL before recovery has finished", "55000")
        w = self._writer
        if w is None or w.timeline != c.timeline:
            if w is not None:
                w.close()
            w = wal.WalWriter(self.waldir, int(c.segsize), int(c.timeline), int(c.insert_lsn), int(c.prev_lsn),
                              flush_lsn=int(c.flush_lsn), fsync=self.fsync)  # fmt: skip
            self._writer = w
        else:
            w.reposition(int(c.insert_lsn), int(c.prev_lsn), int(c.flush_lsn))
        return w

    def append(self, rmid: int, info: int, xid: int, payload: bytes, *, flush: bool) -> tuple[int, int]:
        """Append one record at the shared insert position; returns (start, end) LSNs."""
        w = self._writer_at_shared_position()
        start, end = w.append(rmid, info, xid, payload)
        c = self.ctl
        c.prev_lsn = start
        c.insert_lsn = end
        if flush:
            c.flush_lsn = w.flush(end)
            wakeup_walsenders()
        return start, end

    def append_commit(self, xid: int, payload: bytes, *, flush: bool) -> tuple[int, int]:
        return self.append(wal.Rmgr.XACT, wal.XactInfo.COMMIT, xid, payload, flush=flush)

    def flush(self) -> int:
        w = self._writer_at_shared_position()
        before = int(self.ctl.flush_lsn)
        self.ctl.flush_lsn = w.flush(int(self.ctl.insert_lsn))
        if self.ctl.flush_lsn != before:
            wakeup_walsenders()
        return int(self.ctl.flush_lsn)

    def next_xid(self) -> int:
        c = self.ctl
        xid = int(c.next_xid) or 1
        c.next_xid = xid + 1
        return xid

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def wakeup_walsenders() -> None:
    """WalSndWakeup after a flush: set the latch of every walsender (their latch pointers)."""
    from node.ipc.latch import set_latch
    from node.proc import me

    shm = me.shm
    if shm is None:
        return
    procs = shm.procs
    for ws in shm.walsnd:
        if ws.pid and ws.latch_slot >= 0:
            set_latch(procs[ws.latch_slot])


def bootstrap_wal(datadir: str | Path, segsize: int, timeline: int = 1) -> int:
    """initdb: the first record, a shutdown checkpoint at the start of segment 1. Returns its LSN."""
    waldir = Path(datadir) / wal.XLOGDIR
    ck = wal.CheckPoint(redo=segsize, timeline=timeline, prev_timeline=timeline, next_xid=1, time=time.time())
    w = wal.WalWriter(waldir, segsize, timeline, segsize, 0)
    try:
        start, _end = w.append(wal.Rmgr.XLOG, wal.XlogInfo.CHECKPOINT_SHUTDOWN, 0, ck.pack())
        w.flush()
    finally:
        w.close()
    return start


def read_checkpoint(datadir: str | Path, segsize: int, timeline: int, lsn: int,
                    history: Any = ()) -> tuple[wal.Record, wal.CheckPoint]:  # fmt: skip
    """The checkpoint record pg_control points at (XR: ReadCheckpointRecord)."""
    reader = wal.WalReader(Path(datadir) / wal.XLOGDIR, segsize, timeline, history=history)
    try:
        rec = reader.read_record(lsn)
    except wal.InvalidWalRecord as e:
        if e.missing_segment:
            raise PGError(f'could not open file "{wal.XLOGDIR}/{e.missing_segment}": No such file or directory',
                          "58P01", severity="PANIC",
                          detail="could not locate a valid checkpoint record") from None  # fmt: skip
        raise PGError("could not locate a valid checkpoint record", "XX000", severity="PANIC",
                      detail=e.reason) from None  # fmt: skip
    if rec.rmid != wal.Rmgr.XLOG or rec.info not in (wal.XlogInfo.CHECKPOINT_SHUTDOWN,
                                                      wal.XlogInfo.CHECKPOINT_ONLINE):  # fmt: skip
        raise PGError("could not locate a valid checkpoint record", "XX000", severity="PANIC",
                      detail=f"invalid xl_info in checkpoint record at {wal.format_lsn(lsn)}")  # fmt: skip
    return rec, wal.CheckPoint.unpack(rec.payload)
