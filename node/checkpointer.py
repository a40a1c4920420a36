"""The checkpointer process (CKPT: checkpointer.c), started at T1 and alive until T11.

What it does: timed checkpoints every checkpoint_timeout (skipped while nothing was written, as
PostgreSQL skips them "because system is idle"), requested checkpoints (CHECKPOINT, the
startup process's end-of-recovery checkpoint), and the shutdown checkpoint of SHUT-5: on SIGINT
it writes the shutdown checkpoint into pg_control, sends PMSIGNAL_XLOG_IS_SHUTDOWN (T9), then
waits for SIGUSR2 and exits 0 (T10/T11). Any other exit is a crash (CRASH-1).

What it deliberately does not do (yet): flush buffers or WAL; the storage issue fills in
`create_checkpoint`'s write and sync phases. It ignores SIGTERM, as PostgreSQL's does.

Signals: SIGHUP reload; SIGINT shutdown checkpoint; SIGUSR2 exit after it; SIGUSR1 wake;
SIGQUIT _exit(2); SIGTERM ignored.

Shared state: writes `ckpt.checkpointer_pid`/`checkpointer_slot` (at attach), bumps
`ckpt_started`/`ckpt_done`/`ckpt_failed` and adds to `ckpt_duration_sum`; reads `ckpt_request`/`ckpt_flags`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from node import elog, events, injection
from node.ipc.latch import WL_POSTMASTER_DEATH
from node.ipc.pmsignal import send_pmsignal
from node.proc import (
    count_signal,
    install_handler,
    me,
    process_config_reload,
    report_signals,
    report_wait,
    report_wait_end,
)
from node.states import DBState, PMSignalReason

CHECKPOINT_IMMEDIATE = 0x4
CHECKPOINT_FORCE = 0x8
CHECKPOINT_WAIT = 0x20
CHECKPOINT_END_OF_RECOVERY = 0x2
CHECKPOINT_IS_SHUTDOWN = 0x1


def _hup(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.pending.config_reload = True
    me.latch.set()  # type: ignore[union-attr]


def _int(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.pending.shutdown_request = True
    me.latch.set()  # type: ignore[union-attr]


def _usr2(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.pending.shutdown_exit = True
    me.latch.set()  # type: ignore[union-attr]


def _usr1(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.latch.set()  # type: ignore[union-attr]


def _quit(signum: int, frame: Any) -> None:
    os._exit(2)  # SignalHandlerForCrashExit: no cleanup, shared memory is suspect


def describe_flags(flags: int, reason: str) -> str:
    words = [reason] if reason else []
    if flags & CHECKPOINT_IMMEDIATE:
        words.append("immediate")
    if flags & CHECKPOINT_FORCE:
        words.append("force")
    if flags & CHECKPOINT_WAIT:
        words.append("wait")
    return " ".join(words)


_heap: Any = None


def _get_heap() -> Any:
    global _heap
    if _heap is None:
        from node.storage import Heap

        _heap = Heap(me.datadir)
    return _heap


def create_checkpoint(reason: str, flags: int) -> None:
    """CreateCheckPoint (or, in recovery, CreateRestartPoint).

    1. Under the WAL insertion lock (SQLite's write lock) note the redo point: no commit is half
       done then, so every transaction whose record ends before it is in the heap.
    2. Make the heap durable (SQLite checkpoint + fsync) — it now holds everything up to redo.
    3. Append the checkpoint record (shutdown checkpoints and end-of-recovery ones are
       CHECKPOINT_SHUTDOWN records, as in PostgreSQL), flush it, point pg_control at it.
    4. Remove the segments before the redo point that wal_keep_size does not hold.
    """
    from node import datadir, wal
    from node.storage import checkpoint_heap
    from node.xlog import XLog

    shm = me.shm
    xl = shm.xlog
    in_recovery = bool(xl.in_recovery) or not xl.wal_ready
    shutdown = reason == "shutdown" or bool(flags & CHECKPOINT_END_OF_RECOVERY)
    cf = datadir.read_control(me.datadir)
    if not in_recovery and not (shutdown or flags & CHECKPOINT_FORCE) and xl.prev_lsn == cf.checkpoint_lsn:
        elog.log("DEBUG1", "checkpoint skipped because system is idle")
        return
    kind = "restartpoint" if in_recovery else "checkpoint"
    label = describe_flags(flags, reason)
    shm.ckpt.ckpt_started += 1
    start = time.monotonic()
    level = "LOG" if me.guc.get("log_checkpoints") else "DEBUG1"
    elog.event(events.CHECKPOINT_START, level, f"{kind} starting: {label}", reason=reason)
    injection.inject("checkpointer-checkpoint")
    removed = 0
    distance = 0
    if in_recovery:
        # A restartpoint (CreateRestartPoint): the heap is made durable (it holds everything
        # replayed so far), then pg_control points at the last checkpoint record replayed, so a
        # restart resumes from there, and minRecoveryPoint covers what the heap now holds.
        from node import replslot
        from node.ipc.lwlock import LWLockId

        t_sync = time.monotonic()
        ck_lsn, ck_redo, ck_tli = int(xl.last_ckpt_lsn), int(xl.last_ckpt_redo), int(xl.last_ckpt_tli)
        replayed = int(xl.replay_lsn)
        if xl.wal_ready == 0 and ck_lsn:
            checkpoint_heap(_get_heap().conn, me.datadir)
        sync_s = time.monotonic() - t_sync
        with me.locks.hold(LWLockId.CONTROL):
            cf = datadir.read_control(me.datadir)
            if ck_lsn and ck_lsn > cf.checkpoint_lsn:
                distance = max(0, ck_redo - cf.redo_lsn) // 1024
                cf.checkpoint_lsn, cf.redo_lsn, cf.timeline = ck_lsn, ck_redo, ck_tli or cf.timeline
                cf.min_recovery_point = max(cf.min_recovery_point, replayed)
            elif ck_lsn:
                elog.log("DEBUG2", f"skipping restartpoint, already performed at {wal.format_lsn(cf.checkpoint_lsn)}")
            if shutdown:
                cf.state = DBState.SHUTDOWNED_IN_RECOVERY
            cf.checkpoint_time = time.time()
            datadir.write_control(me.datadir, cf)
        replslot.checkpoint_slots(shm, me.datadir)
        if ck_lsn and cf.redo_lsn:
            keep_from = _keep_from(cf.redo_lsn, replayed)
            removed = len(wal.remove_old_segments(Path(me.datadir) / wal.XLOGDIR, int(xl.segsize),
                                                  int(xl.replay_tli or xl.timeline), keep_from))  # fmt: skip
        write_s = 0.0
    else:
        heap = _get_heap()
        heap.begin_write()
        try:
            redo = int(xl.insert_lsn)
            next_xid = int(xl.next_xid)
        finally:
            heap.rollback()
        t_sync = time.monotonic()
        checkpoint_heap(heap.conn, me.datadir)
        sync_s = time.monotonic() - t_sync
        heap.begin_write()
        try:
            ck = wal.CheckPoint(redo=redo, timeline=int(xl.timeline), prev_timeline=cf.prev_timeline,
                                next_xid=next_xid, time=time.time())  # fmt: skip
            info = wal.XlogInfo.CHECKPOINT_SHUTDOWN if shutdown else wal.XlogInfo.CHECKPOINT_ONLINE
            rec_start, _end = XLog(me.datadir, xl, fsync=bool(me.guc.get("fsync"))).append(
                wal.Rmgr.XLOG, info, 0, ck.pack(), flush=True)
        finally:
            heap.rollback()
        distance = max(0, redo - cf.redo_lsn) // 1024
        cf.checkpoint_lsn = rec_start
        cf.redo_lsn = redo
        cf.timeline = int(xl.timeline)
        cf.checkpoint_time = ck.time
        cf.state = DBState.SHUTDOWNED if reason == "shutdown" else DBState.IN_PRODUCTION
        datadir.write_control(me.datadir, cf)
        xl.redo_lsn = redo
        from node import replslot

        replslot.checkpoint_slots(shm, me.datadir)
        keep_from = _keep_from(redo, int(xl.insert_lsn))
        removed = len(wal.remove_old_segments(Path(me.datadir) / wal.XLOGDIR, int(xl.segsize), int(xl.timeline),
                                              keep_from))  # fmt: skip
        write_s = time.monotonic() - start - sync_s
    total = time.monotonic() - start
    shm.ckpt.last_checkpoint_time = time.time()
    shm.ckpt.ckpt_duration_sum += total  # before ckpt_done: a reader never sees a count without its time
    shm.ckpt.ckpt_done += 1
    msg = (
        f"{kind} complete: wrote 0 buffers (0.0%); 0 WAL file(s) added, {removed} removed, 0 recycled; "
        f"write={write_s:.3f} s, sync={sync_s:.3f} s, total={total:.3f} s; sync files=1, longest={sync_s:.3f} s, "
        f"average={sync_s:.3f} s; distance={distance} kB, estimate={distance} kB"
    )
    elog.event(events.CHECKPOINT_DONE, level, msg, reason=reason, duration_s=round(total, 6))


def _keep_from(redo: int, current: int) -> int:
    """KeepLogSeg: the oldest LSN whose segment must stay: the redo point, wal_keep_size back
    from the current position, the replication slots' restart_lsn, running base backups."""
    from node import replslot

    xl = me.shm.xlog
    keep = int(me.guc.get("wal_keep_size")) * 1024 * 1024
    keep_from = min(redo, current - keep)
    slot_min = replslot.min_restart_lsn(me.shm)
    if slot_min:
        keep_from = min(keep_from, slot_min)
    if xl.running_backups and xl.backup_hold_lsn:
        keep_from = min(keep_from, int(xl.backup_hold_lsn))
    return max(int(xl.segsize), keep_from)


def walsnd_init_stopping_and_wait() -> None:
    """WalSndInitStopping + WalSndWaitStopping (WALSND-5): before the shutdown checkpoint,
    every walsender is told to stop; wait until each is in state `stopping` or gone."""
    from node.ipc.shmem import WALSND_STATES

    stopping = WALSND_STATES.index("stopping")
    shm = me.shm
    for ws in shm.walsnd:
        pid = int(ws.pid)
        if pid:
            ws.procsig_stopping = 1
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass
    latch = me.latch
    assert latch is not None
    while any(ws.pid and ws.state != stopping for ws in shm.walsnd):
        latch.reset()
        report_signals()
        rc = latch.wait(0.01)
        if rc & WL_POSTMASTER_DEATH:
            raise SystemExit(1)


def background_flush() -> None:
    """XLogBackgroundFlush: pgbed has no walwriter, so the checkpointer flushes WAL that
    asynchronous commits left unflushed, every wal_writer_delay (walsenders only send flushed WAL)."""
    xl = me.shm.xlog
    if not xl.wal_ready or xl.in_recovery or xl.flush_lsn >= xl.insert_lsn:
        return
    from node.xlog import XLog

    heap = _get_heap()
    try:
        heap.begin_write()
    except Exception:
        return
    try:
        global _bg_xlog
        if _bg_xlog is None:
            _bg_xlog = XLog(me.datadir, xl, fsync=bool(me.guc.get("fsync")))
        _bg_xlog.flush()
    finally:
        heap.rollback()


_bg_xlog: Any = None
_next_bg_flush = [0.0]


def main() -> int:
    from node.proc import attach

    install_handler(signal.SIGHUP, _hup)
    install_handler(signal.SIGINT, _int)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    install_handler(signal.SIGQUIT, _quit)
    install_handler(signal.SIGUSR1, _usr1)
    install_handler(signal.SIGUSR2, _usr2)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    injection.inject("checkpointer-start")
    attach()
    shm = me.shm
    shm.ckpt.checkpointer_pid = me.pid
    shm.ckpt.checkpointer_slot = me.slot
    latch = me.latch
    assert latch is not None
    last_timed = time.monotonic()
    shutdown_done = False
    while True:
        latch.reset()
        injection.inject("checkpointer-loop")
        report_signals()
        p = me.pending
        process_config_reload()
        if p.shutdown_request and not shutdown_done:
            # SHUT-5: the walsender handshake comes with the replication issue; with none
            # running, write the shutdown checkpoint at once.
            elog.log("LOG", "shutting down")
            walsnd_init_stopping_and_wait()
            create_checkpoint("shutdown", CHECKPOINT_IS_SHUTDOWN | CHECKPOINT_IMMEDIATE)
            shutdown_done = True
            elog.event(events.XLOG_SHUTDOWN, "DEBUG1", "shutdown checkpoint written")
            send_pmsignal(shm, me.postmaster_pid, PMSignalReason.XLOG_IS_SHUTDOWN)
        if p.shutdown_exit:
            return 0
        if not shutdown_done:
            # Served-request bookkeeping lives in shared memory, so a checkpointer forked after
            # a request (a crash reinit, a failed fork) still serves it.
            req = shm.ckpt.ckpt_request
            if req != shm.ckpt.ckpt_served:
                shm.ckpt.ckpt_served = req
                flags = shm.ckpt.ckpt_flags
                reason = "end-of-recovery" if flags & CHECKPOINT_END_OF_RECOVERY else ""
                try:
                    create_checkpoint(reason, flags)  # the requester chose FORCE or not, as in PostgreSQL
                except (OSError, elog.PGError) as e:
                    # The checkpointer's error recovery (its sigsetjmp block): log, count the
                    # failure so waiters raise "checkpoint request failed", and carry on.
                    shm.ckpt.ckpt_failed += 1
                    elog.log("ERROR", getattr(e, "message", None) or str(e))
                last_timed = time.monotonic()
                continue
            timeout = float(me.guc.get("checkpoint_timeout"))
            if time.monotonic() - last_timed >= timeout:
                last_timed = time.monotonic()
                create_checkpoint("time", 0)
            wait = max(0.0, timeout - (time.monotonic() - last_timed))
            xl = shm.xlog
            if xl.wal_ready and not xl.in_recovery and xl.flush_lsn < xl.insert_lsn:
                # Asynchronous commits wake us (XLogSetAsyncXactLSN); flush at most every
                # wal_writer_delay, as the walwriter would.
                now = time.monotonic()
                if now >= _next_bg_flush[0]:
                    _next_bg_flush[0] = now + int(me.guc.get("wal_writer_delay")) / 1000.0
                    background_flush()
                if xl.flush_lsn < xl.insert_lsn:
                    wait = min(wait, int(me.guc.get("wal_writer_delay")) / 1000.0)
        else:
            wait = None
        report_wait("Activity", "CheckpointerMain")
        rc = latch.wait(wait)
        report_wait_end()
        if rc & WL_POSTMASTER_DEATH:
            return 1  # CRASH-10
