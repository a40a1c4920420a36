"""The startup process: reads pg_control, runs recovery, and exits 0 when the node may run.

What it does (XR/XL: StartupXLOG, PerformWalRecovery, CheckRecoveryConsistency):
- clean shutdown, no signal file: marks pg_control "in production" and exits 0 (T4);
- not cleanly shut down: crash recovery. Sends PMSIGNAL_RECOVERY_STARTED where redo begins
  (T2; [M] sends it for crash recovery too), replays (the storage issue fills in redo), asks the
  checkpointer for an end-of-recovery checkpoint and exits 0. Crash recovery never reaches
  consistency (REC-1), so ConsistentState workers wait for RUN;
- standby.signal / recovery.signal: archive recovery. RECOVERY_STARTED, then, as there is no
  backup end pending and nothing to replay yet, consistency (`consistent recovery state reached
  at X/Y`), then BEGIN_HOT_STANDBY when hot_standby=on (REC-3, T3). Then it waits for WAL
  (replication issue), a promotion (SIGUSR2 + the `promote` file: REC-5) or shutdown.

What it deliberately does not do yet: read WAL or stream (storage and replication issues).

Signals: SIGHUP reload; SIGTERM → exit 1 at the next check (StartupProcShutdownHandler);
SIGUSR2 promote; SIGUSR1 wake; SIGQUIT _exit(2).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from node import elog, events, injection
from node.ipc.latch import WL_POSTMASTER_DEATH, set_latch
from node.ipc.pmsignal import send_pmsignal
from node.proc import count_signal, install_handler, me, report_signals, report_wait, report_wait_end
from node.states import DBState, PMSignalReason


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _hup(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.pending.config_reload = True
    me.latch.set()  # type: ignore[union-attr]


def _term(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.pending.proc_die = True
    me.latch.set()  # type: ignore[union-attr]


def _usr2(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.pending.promote = True
    me.latch.set()  # type: ignore[union-attr]


def _usr1(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.latch.set()  # type: ignore[union-attr]


def _quit(signum: int, frame: Any) -> None:
    os._exit(2)


def _handle_interrupts() -> None:
    report_signals()
    p = me.pending
    if p.config_reload:
        p.config_reload = False
        from node.config import reload_in_child

        reload_in_child()
    if p.proc_die:
        raise SystemExit(1)  # HandleStartupProcInterrupts: proc_exit(1)
    if me.latch is not None and not me.latch.postmaster_alive():
        raise SystemExit(1)


def request_checkpoint(flags: int, wait: bool, interrupts: Any = None) -> None:
    """RequestCheckpoint: bump the request counter and wake the checkpointer. `interrupts` is
    the caller's CHECK_FOR_INTERRUPTS (a backend's raises FATAL/ERROR; the default is ours)."""
    from node.ipc.lwlock import LWLockId

    ck = me.shm.ckpt
    with me.locks.hold(LWLockId.CHECKPOINT):
        ck.ckpt_flags = flags
        before = ck.ckpt_done
        failed_before = ck.ckpt_failed
        ck.ckpt_request += 1
    slot = ck.checkpointer_slot
    if ck.checkpointer_pid:
        set_latch(me.shm.procs[slot])
    if not wait:
        return
    latch = me.latch
    assert latch is not None
    check = interrupts or _handle_interrupts
    while ck.ckpt_done == before:
        if ck.ckpt_failed != failed_before:
            from node.elog import PGError

            raise PGError("checkpoint request failed", hint="Consult recent messages in the server log for details.")
        latch.reset()
        check()
        if ck.checkpointer_pid:
            set_latch(me.shm.procs[ck.checkpointer_slot])
        latch.wait(0.01)


def _last_known(cf: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cf.time))


def read_history(dd: Path, timeline: int) -> list[tuple[int, int]]:
    """(parent timeline, switch LSN) pairs of `timeline`'s history file, oldest first."""
    from node import protocol

    path = dd / "pg_wal" / f"{timeline:08X}.history"
    out: list[tuple[int, int]] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].strip().isdigit():
            out.append((int(parts[0]), protocol.parse_lsn(parts[1].strip())))
    return out


def main() -> int:
    from node import datadir
    from node.proc import attach

    install_handler(signal.SIGHUP, _hup)
    install_handler(signal.SIGTERM, _term)
    install_handler(signal.SIGQUIT, _quit)
    install_handler(signal.SIGUSR1, _usr1)
    install_handler(signal.SIGUSR2, _usr2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    injection.inject("startup-start")
    attach()
    shm = me.shm
    dd = Path(me.datadir)
    try:
        cf = datadir.read_control(dd)
    except (OSError, ValueError) as e:
        raise elog.PGError(f"could not read control file: {e}", "XX000", severity="PANIC") from None
    xl = shm.xlog
    xl.system_identifier = cf.system_identifier
    xl.timeline = cf.timeline
    xl.segsize = cf.wal_segment_size
    standby = (dd / "standby.signal").exists()
    archive = standby or (dd / "recovery.signal").exists()

    if cf.state == DBState.SHUTDOWNED and not archive:
        elog.log("LOG", f"database system was shut down at {_last_known(cf)}")
    elif cf.state == DBState.SHUTDOWNED_IN_RECOVERY:
        elog.log("LOG", f"database system was shut down in recovery at {_last_known(cf)}")
    elif cf.state == DBState.SHUTDOWNING:
        elog.log("LOG", f"database system shutdown was interrupted; last known up at {_last_known(cf)}")
    elif cf.state == DBState.IN_CRASH_RECOVERY:
        elog.log("LOG", f"database system was interrupted while in recovery at {_last_known(cf)}",
                 hint="This probably means that some data is corrupted and you will have to use the last "
                 "backup for recovery.")  # fmt: skip
    elif cf.state == DBState.IN_ARCHIVE_RECOVERY:
        elog.log("LOG", f"database system was interrupted while in recovery at log time {_last_known(cf)}")
    elif cf.state == DBState.IN_PRODUCTION:
        elog.log("LOG", f"database system was interrupted; last known up at {_last_known(cf)}")

    from node import xlog

    history = read_history(dd, cf.timeline)
    ck_rec, ckpt = xlog.read_checkpoint(dd, cf.wal_segment_size, cf.timeline, cf.checkpoint_lsn, history)
    xl.redo_lsn = ckpt.redo
    xl.next_xid = max(1, ckpt.next_xid)
    xl.replay_lsn = ck_rec.end_lsn
    injection.inject("startup-loop")

    if archive:
        return _archive_recovery(cf, standby, ck_rec, ckpt, history)
    crash = cf.state not in (DBState.SHUTDOWNED, DBState.SHUTDOWNED_IN_RECOVERY) or ckpt.redo < ck_rec.lsn
    if crash:
        elog.log("LOG", "database system was not properly shut down; automatic recovery in progress")
        cf.state = DBState.IN_CRASH_RECOVERY
        datadir.write_control(dd, cf)
        xl.in_recovery = 1
    end_of_wal, last = _redo(cf, ck_rec, ckpt, history, crash=crash)
    _open_wal(end_of_wal, last)
    xl.in_recovery = 0
    if crash:
        from node.checkpointer import CHECKPOINT_END_OF_RECOVERY, CHECKPOINT_IMMEDIATE, CHECKPOINT_WAIT

        request_checkpoint(CHECKPOINT_END_OF_RECOVERY | CHECKPOINT_IMMEDIATE | CHECKPOINT_WAIT, wait=True)
        cf = datadir.read_control(dd)
    cf.state = DBState.IN_PRODUCTION
    datadir.write_control(dd, cf)
    elog.event(events.STARTUP_DONE, "DEBUG1", "startup process done")
    return 0


def _redo(cf: Any, ck_rec: Any, ckpt: Any, history: list[tuple[int, int]], *, crash: bool) -> tuple[int, int]:
    """PerformWalRecovery: replay from the checkpoint's redo point to the end of valid WAL.
    Returns (end of WAL = where writing resumes, start LSN of the last valid record).

    Crash recovery signals RECOVERY_STARTED when the first record is replayed (T2, [M]); archive
    recovery has signalled it already, before reading anything (consistency may come first)."""
    from node import storage, wal

    xl = me.shm.xlog
    dd = Path(me.datadir)
    reader = wal.WalReader(dd / wal.XLOGDIR, cf.wal_segment_size, cf.timeline, history=history)
    # A shutdown checkpoint is its own redo point: replay starts with the record after it.
    start = ck_rec.end_lsn if ckpt.redo >= ck_rec.lsn else ckpt.redo
    conn = storage.connect(dd)
    conn.set_busy_timeout(5000)
    t0, c0 = time.monotonic(), os.times()
    last = ck_rec.lsn
    end_of_wal = ck_rec.end_lsn
    replayed = 0
    last_commit_time = None
    applied, applied_start, applied_xid = storage.applied_state(conn)
    xl.next_xid = max(int(xl.next_xid), applied_xid + 1)
    first_prev: int | None = None if start == ckpt.redo else ck_rec.lsn
    if applied > start:
        # The heap holds every transaction up to `applied` (SQLite commits applied_lsn with the
        # data), and `applied` is a record boundary: reading the already-applied records between
        # the redo point and it would only skip them. Resume there, prev-link checked exactly.
        if crash:
            send_pmsignal(me.shm, me.postmaster_pid, PMSignalReason.RECOVERY_STARTED)
        elog.event(events.RECOVERY_STARTED, "LOG", f"redo starts at {format_lsn(start)}", crash=crash)
        injection.inject("startup-redo")
        replayed = 1
        last = applied_start
        end_of_wal = applied
        start, first_prev = applied, applied_start
    for rec in reader.iter_from(start, prev=first_prev):
        if replayed == 0:
            if crash:
                send_pmsignal(me.shm, me.postmaster_pid, PMSignalReason.RECOVERY_STARTED)
            elog.event(events.RECOVERY_STARTED, "LOG", f"redo starts at {format_lsn(rec.lsn)}", crash=crash)
            injection.inject("startup-redo")
        replayed += 1
        if rec.rmid == wal.Rmgr.XACT and rec.info == wal.XactInfo.COMMIT:
            if storage.apply_commit(conn, rec.end_lsn, rec.payload, applied, start_lsn=rec.lsn, xid=rec.xid):
                applied = rec.end_lsn
            last_commit_time = storage.decode_xact(rec.payload)[0]
            xl.next_xid = max(int(xl.next_xid), rec.xid + 1)
        elif rec.rmid == wal.Rmgr.XLOG and rec.info in (wal.XlogInfo.CHECKPOINT_ONLINE,
                                                          wal.XlogInfo.CHECKPOINT_SHUTDOWN):  # fmt: skip
            xl.next_xid = max(int(xl.next_xid), wal.CheckPoint.unpack(rec.payload).next_xid)
        last = rec.lsn
        end_of_wal = rec.end_lsn
        xl.replay_lsn = rec.end_lsn
        if replayed % 256 == 0:
            _handle_interrupts()
    if reader.end_of_wal is not None:
        end_of_wal = reader.end_of_wal
    if reader.end_reason:
        # A segment that does not exist yet is the ordinary end of WAL (PostgreSQL says so at DEBUG2).
        elog.log("DEBUG2" if reader.missing_segment else "LOG", reader.end_reason)
    if replayed:
        ct, c1 = time.monotonic() - t0, os.times()
        elog.log("LOG", f"redo done at {format_lsn(last)} system usage: CPU: user: {c1.user - c0.user:.2f} s, "
                 f"system: {c1.system - c0.system:.2f} s, elapsed: {ct:.2f} s")  # fmt: skip
        if last_commit_time is not None:
            elog.log("LOG", "last completed transaction was at log time "
                     + time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(last_commit_time))
                     + f".{int(last_commit_time * 1e6) % 1000000:06d}+00")  # fmt: skip
    elif crash:
        elog.log("LOG", "redo is not required")
    conn.close()
    return end_of_wal, last


def _open_wal(end_of_wal: int, last: int) -> None:
    """Publish where writing resumes, and clear anything after it (a torn tail must not be
    mistaken for records once new ones are written in front of it)."""
    from node import wal

    xl = me.shm.xlog
    w = wal.WalWriter(Path(me.datadir) / wal.XLOGDIR, int(xl.segsize), int(xl.timeline), end_of_wal, last)
    try:
        w.zero_tail()
    finally:
        w.close()
    xl.insert_lsn = end_of_wal
    xl.prev_lsn = last
    xl.flush_lsn = end_of_wal
    xl.wal_ready = 1


def _archive_recovery(cf: Any, standby: bool, ck_rec: Any, ckpt: Any, history: list[tuple[int, int]]) -> int:
    from node import datadir

    dd = Path(me.datadir)
    xl = me.shm.xlog
    if standby:
        elog.log("LOG", "entering standby mode")
    xl.in_recovery = 1
    xl.standby_mode = 1 if standby else 0
    cf.state = DBState.IN_ARCHIVE_RECOVERY
    datadir.write_control(dd, cf)
    send_pmsignal(me.shm, me.postmaster_pid, PMSignalReason.RECOVERY_STARTED)
    end_of_wal, last = _redo(cf, ck_rec, ckpt, history, crash=False)
    # REC-1: no backup end pending and everything local replayed: consistent. (The replication
    # issue streams more WAL here and checks minRecoveryPoint.)
    xl.consistent = 1
    elog.event(events.CONSISTENT, "LOG", f"consistent recovery state reached at {format_lsn(end_of_wal)}",
               lsn=format_lsn(end_of_wal))  # fmt: skip
    if me.guc.get("hot_standby"):
        send_pmsignal(me.shm, me.postmaster_pid, PMSignalReason.BEGIN_HOT_STANDBY)
        elog.event(events.HOT_STANDBY, "DEBUG1", "hot standby opened")
    latch = me.latch
    assert latch is not None
    while True:
        latch.reset()
        injection.inject("startup-loop")
        _handle_interrupts()
        if me.pending.promote or not standby:
            if (dd / "promote").exists() or not standby:
                break
            me.pending.promote = False
        report_wait("Activity", "RecoveryWalStream")
        rc = latch.wait(5.0)
        report_wait_end()
        if rc & WL_POSTMASTER_DEATH:
            return 1
    return _end_archive_recovery(cf, standby, end_of_wal, last)


def _end_archive_recovery(cf: Any, standby: bool, end_of_wal: int, last: int) -> int:
    """Promotion (REC-5): a new timeline starting at the end of replayed WAL."""
    import shutil

    from node import datadir, wal

    dd = Path(me.datadir)
    xl = me.shm.xlog
    if standby:
        elog.event(events.PROMOTE, "LOG", "received promotion request")
        (dd / "promote").unlink(missing_ok=True)
    elog.log("LOG", f"redo done at {format_lsn(last)} system usage: CPU: user: 0.00 s, "
             "system: 0.00 s, elapsed: 0.00 s")  # fmt: skip
    new_tli = _highest_timeline(dd, cf.timeline) + 1
    elog.log("LOG", f"selected new timeline ID: {new_tli}")
    segsize = int(xl.segsize)
    # XLogInitNewTimeline: the new timeline's first segment starts as a copy of the old one up to
    # the switch point, so readers of the new timeline find the records before it there too.
    old_seg = dd / wal.XLOGDIR / wal.segment_name(end_of_wal, cf.timeline, segsize)
    new_seg = dd / wal.XLOGDIR / wal.segment_name(end_of_wal, new_tli, segsize)
    if old_seg.exists() and not new_seg.exists():
        tmp = new_seg.with_suffix(".tmp")
        shutil.copyfile(old_seg, tmp)
        with open(tmp, "r+b") as f:
            off = end_of_wal % segsize
            f.seek(off)
            f.write(b"\0" * (segsize - off))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, new_seg)
    hist = dd / "pg_wal" / f"{new_tli:08X}.history"
    prev = dd / "pg_wal" / f"{cf.timeline:08X}.history"
    content = prev.read_text() if prev.exists() else ""
    content += f"{cf.timeline}\t{format_lsn(end_of_wal)}\tno recovery target specified\n"
    tmp = hist.with_suffix(".tmp")
    tmp.write_text(content)
    os.replace(tmp, hist)
    elog.log("LOG", "archive recovery complete")
    for name in ("standby.signal", "recovery.signal"):
        (dd / name).unlink(missing_ok=True)
    xl.timeline = new_tli
    _open_wal(end_of_wal, last)
    # Fast promotion: an end-of-recovery record instead of a checkpoint we would wait for.
    from node.storage import Heap
    from node.xlog import XLog

    heap = Heap(dd)
    heap.begin_write()
    try:
        XLog(dd, xl, fsync=bool(me.guc.get("fsync"))).append(
            wal.Rmgr.XLOG, wal.XlogInfo.END_OF_RECOVERY, 0,
            wal.EndOfRecovery(time.time(), new_tli, cf.timeline).pack(), flush=True)
    finally:
        heap.rollback()
        heap.close()
    cf.prev_timeline = cf.timeline
    cf.timeline = new_tli
    cf.state = DBState.IN_PRODUCTION
    datadir.write_control(dd, cf)
    xl.in_recovery = 0
    xl.standby_mode = 0
    from node.checkpointer import CHECKPOINT_FORCE

    request_checkpoint(CHECKPOINT_FORCE, wait=False)
    elog.event(events.STARTUP_DONE, "DEBUG1", "startup process done")
    return 0


def _highest_timeline(dd: Path, current: int) -> int:
    best = current
    for p in (dd / "pg_wal").glob("*.history"):
        try:
            best = max(best, int(p.stem, 16))
        except ValueError:
            continue
    return best
