"""The startup process: reads pg_control, runs recovery, and exits 0 when the node may run.

What it does (XR/XL: StartupXLOG, PerformWalRecovery, CheckRecoveryConsistency,
WaitForWALToBecomeAvailable):
- loads the replication slots (StartupReplicationSlots) and reads `backup_label` when a base
  backup left one: its checkpoint is where redo starts, and the backup end becomes pending;
- clean shutdown, no signal file: marks pg_control "in production" and exits 0 (T4);
- not cleanly shut down: crash recovery. RECOVERY_STARTED where redo begins (T2), replay to the
  end of valid WAL, an end-of-recovery checkpoint, exit 0. Crash recovery never reaches
  consistency (REC-1), so ConsistentState workers wait for RUN;
- standby.signal / recovery.signal: archive recovery (`StandbyReplay`). RECOVERY_STARTED, then
  replay of local WAL and, on a standby with primary_conninfo, of streamed WAL as the
  walreceiver flushes it (WALRCV-1: the startup process asks the postmaster for a walreceiver,
  again no sooner than wal_retrieve_retry_interval after the last request, WALRCV-6). After
  every record, REC-1..3: consistent once no backup end is pending (REC-2: the BACKUP_END
  record of the base backup) and minRecoveryPoint is replayed; `consistent recovery state
  reached at X/Y`, then BEGIN_HOT_STANDBY with hot_standby=on (T3). The injection point
  `startup-before-consistent` sits just before that. recovery_min_apply_delay holds COMMIT
  records once consistent. When the primary ends our timeline, a newer timeline history file
  that forks at or after our replay position becomes the target (recovery_target_timeline =
  'latest'); one that forked earlier is refused (`new timeline N forked off ...`).
- promotion (REC-5): SIGUSR2 + the `promote` file: the file is removed, the walreceiver
  stopped, the rest of the received WAL replayed, a new timeline with its history file and an
  end-of-recovery record, a checkpoint requested, exit 0 (T4).

What it deliberately does not do: restore_command/archives, recovery targets other than the end
of WAL and the timeline, standby-side cascading.

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
from node.ipc.lwlock import LWLockId
from node.ipc.pmsignal import send_pmsignal
from node.proc import (
    count_signal,
    die_handler,
    install_handler,
    me,
    process_config_reload,
    reload_handler,
    report_signals,
    report_wait,
    report_wait_end,
    wake_handler,
)
from node.states import DBState, PMSignalReason


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _usr2(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.pending.promote = True
    me.latch.set()  # type: ignore[union-attr]


def _quit(signum: int, frame: Any) -> None:
    os._exit(2)


def _handle_interrupts() -> None:
    report_signals()
    p = me.pending
    process_config_reload()
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


def read_backup_label(dd: Path) -> dict[str, Any] | None:
    """read_backup_label: START WAL LOCATION, CHECKPOINT LOCATION and START TIMELINE."""
    from node import protocol

    path = dd / "backup_label"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == "START WAL LOCATION":
            out["start"] = protocol.parse_lsn(value.split()[0])
        elif key == "CHECKPOINT LOCATION":
            out["checkpoint"] = protocol.parse_lsn(value.strip())
        elif key == "START TIMELINE":
            out["timeline"] = int(value.strip())
    if "start" not in out or "checkpoint" not in out:
        raise elog.PGError('invalid data in file "backup_label"', "XX000", severity="FATAL")
    out.setdefault("timeline", 1)
    return out


def main() -> int:
    from node import datadir
    from node.proc import attach

    install_handler(signal.SIGHUP, reload_handler)
    install_handler(signal.SIGTERM, die_handler)
    install_handler(signal.SIGQUIT, _quit)
    install_handler(signal.SIGUSR1, wake_handler)
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

    from node import replslot, xlog

    replslot.startup_slots(shm, dd)
    label = read_backup_label(dd)
    ck_lsn, ck_tli = cf.checkpoint_lsn, cf.timeline
    if label is not None:
        ck_lsn, ck_tli = label["checkpoint"], label["timeline"]
    history = read_history(dd, ck_tli)
    ck_rec, ckpt = xlog.read_checkpoint(dd, cf.wal_segment_size, ck_tli, ck_lsn, history)
    xl.redo_lsn = ckpt.redo
    xl.next_xid = max(1, ckpt.next_xid)
    xl.replay_lsn = ck_rec.end_lsn
    injection.inject("startup-loop")

    if archive:
        return _archive_recovery(cf, standby, ck_rec, ckpt, history, label)
    crash = cf.state not in (DBState.SHUTDOWNED, DBState.SHUTDOWNED_IN_RECOVERY) or ckpt.redo < ck_rec.lsn
    if crash:
        elog.log("LOG", "database system was not properly shut down; automatic recovery in progress")
        cf.state = DBState.IN_CRASH_RECOVERY
        datadir.write_control(dd, cf)
        xl.in_recovery = 1
        xl.recovery_ran = 1
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


def _open_wal(end_of_wal: int, last: int, *, zero_tail: bool = True) -> None:
    """Publish where writing resumes, and clear anything after it (a torn tail must not be
    mistaken for records once new ones are written in front of it)."""
    from node import wal

    xl = me.shm.xlog
    w = wal.WalWriter(Path(me.datadir) / wal.XLOGDIR, int(xl.segsize), int(xl.timeline), end_of_wal, last)
    try:
        if zero_tail:
            w.zero_tail()
    finally:
        w.close()
    xl.insert_lsn = end_of_wal
    xl.prev_lsn = last
    xl.flush_lsn = end_of_wal
    xl.wal_ready = 1


def _archive_recovery(cf: Any, standby: bool, ck_rec: Any, ckpt: Any, history: list[tuple[int, int]],
                      label: dict[str, Any] | None = None) -> int:  # fmt: skip
    from node import datadir

    dd = Path(me.datadir)
    xl = me.shm.xlog
    if standby:
        elog.log("LOG", "entering standby mode")
    xl.in_recovery = 1
    xl.recovery_ran = 1
    xl.standby_mode = 1 if standby else 0
    target = _target_timeline(dd, cf.timeline)
    if target != cf.timeline:
        history = read_history(dd, target)
    xl.recovery_target_tli = target
    with me.locks.hold(LWLockId.CONTROL):
        cf.state = DBState.IN_ARCHIVE_RECOVERY
        if label is not None:
            cf.backup_start_lsn = label["start"]
            cf.end_of_backup_required = True
            cf.min_recovery_point = max(cf.min_recovery_point, label["start"])
        datadir.write_control(dd, cf)
    if label is not None:
        os.replace(dd / "backup_label", dd / "backup_label.old")
    send_pmsignal(me.shm, me.postmaster_pid, PMSignalReason.RECOVERY_STARTED)
    rp = StandbyReplay(cf, ck_rec, ckpt, history, target, standby)
    try:
        return rp.run()
    finally:
        rp.close()


def _target_timeline(dd: Path, current: int) -> int:
    """recovery_target_timeline: 'latest' follows the newest history file that descends from
    our timeline (findNewestTimeLine), 'current' stays, a number is taken as given."""
    setting = str(me.guc.get("recovery_target_timeline"))
    if setting == "current":
        return current
    if setting != "latest":
        return int(setting, 0)
    best = current
    for p in (dd / "pg_wal").glob("*.history"):
        try:
            tli = int(p.stem, 16)
        except ValueError:
            continue
        if tli > best and any(parent == current for parent, _ in read_history(dd, tli)):
            best = tli
    return best


class StandbyReplay:
    """Archive recovery's redo loop (XR: PerformWalRecovery + WaitForWALToBecomeAvailable):
    replays local WAL, then streamed WAL as the walreceiver flushes it, checks consistency
    after every record (REC-1), follows new timelines, and stops for promotion."""

    def __init__(self, cf: Any, ck_rec: Any, ckpt: Any, history: list[tuple[int, int]], target: int,
                 standby: bool) -> None:  # fmt: skip
        from node import storage, wal

        self.cf = cf
        self.standby = standby
        self.dd = Path(me.datadir)
        self.xl = me.shm.xlog
        self.segsize = int(cf.wal_segment_size)
        self.tli = target
        self.history = history
        self.conn = storage.connect(self.dd)
        self.conn.set_busy_timeout(5000)
        applied, applied_start, applied_xid = storage.applied_state(self.conn)
        self.applied = applied
        self.xl.next_xid = max(int(self.xl.next_xid), applied_xid + 1)
        start = ck_rec.end_lsn if ckpt.redo >= ck_rec.lsn else ckpt.redo
        self.next: int = start
        self.prev: int | None = None if start == ckpt.redo else ck_rec.lsn
        self.last = ck_rec.lsn
        if applied > start:
            self.next, self.prev, self.last = applied, applied_start, applied_start
        self.xl.replay_lsn = self.next
        self.xl.replay_start_lsn = self.last
        self.xl.replay_tli = target
        self.xl.last_ckpt_lsn = ck_rec.lsn
        self.xl.last_ckpt_redo = ckpt.redo
        self.xl.last_ckpt_tli = ckpt.timeline
        self.reader = wal.WalReader(self.dd / wal.XLOGDIR, self.segsize, target, history=history)
        self.replayed = 0
        self.started = False
        self.last_request = -1e9
        self.promote_pending = False
        target = str(me.guc.get("recovery_target_lsn") or "")
        from node import protocol

        self.target_lsn: int | None = protocol.parse_lsn(target) if target else None
        self.target_inclusive = bool(me.guc.get("recovery_target_inclusive"))
        self.reached_target = False
        self.last_invalid = 0

    def close(self) -> None:
        self.reader.close()
        self.conn.close()

    # -- consistency --------------------------------------------------------------------------

    def check_consistency(self) -> None:
        """CheckRecoveryConsistency (REC-1..3)."""
        xl = self.xl
        if xl.consistent:
            return
        cf = self.cf
        if cf.end_of_backup_required or cf.backup_start_lsn:
            return  # REC-2: the backup end has not been replayed yet
        if cf.min_recovery_point > self.next:
            return
        injection.inject("startup-before-consistent")
        xl.consistent = 1
        elog.event(events.CONSISTENT, "LOG", f"consistent recovery state reached at {format_lsn(self.next)}",
                   lsn=format_lsn(self.next))  # fmt: skip
        if me.guc.get("hot_standby"):
            send_pmsignal(me.shm, me.postmaster_pid, PMSignalReason.BEGIN_HOT_STANDBY)
            elog.event(events.HOT_STANDBY, "DEBUG1", "hot standby opened")

    # -- redo ---------------------------------------------------------------------------------

    def _promote_requested(self) -> bool:
        if self.promote_pending:
            return True
        if me.pending.promote:
            me.pending.promote = False
            if (self.dd / "promote").exists():  # CheckForStandbyTrigger
                elog.event(events.PROMOTE, "LOG", "received promote request")
                (self.dd / "promote").unlink(missing_ok=True)
                self.promote_pending = True
        return self.promote_pending

    def replay_available(self, upto: int | None, *, delay: bool = True) -> int:
        """Replay the complete records from self.next (up to `upto` if given). Returns how many."""
        from node import storage, wal

        n = 0
        xl = self.xl
        if self.reached_target:
            return 0
        for rec in self.reader.iter_from(self.next, prev=self.prev, upto=upto):
            if self.target_lsn is not None and not self.target_inclusive and rec.lsn >= self.target_lsn:
                # recoveryStopsBefore
                elog.log("LOG", f'recovery stopping before WAL location (LSN) "{format_lsn(rec.lsn)}"')
                self.reached_target = True
                break
            if not self.started:
                self.started = True
                elog.event(events.RECOVERY_STARTED, "LOG", f"redo starts at {format_lsn(rec.lsn)}", crash=False)
                injection.inject("startup-redo")
            if rec.rmid == wal.Rmgr.XACT and rec.info == wal.XactInfo.COMMIT:
                commit_time = storage.decode_xact(rec.payload)[0]
                if delay and not self._apply_delay(commit_time):
                    return n  # promotion ends the delay; the record stays unapplied for now
                if storage.apply_commit(self.conn, rec.end_lsn, rec.payload, self.applied, start_lsn=rec.lsn,
                                        xid=rec.xid):  # fmt: skip
                    self.applied = rec.end_lsn
                xl.last_xact_replay_ts = commit_time
                xl.next_xid = max(int(xl.next_xid), rec.xid + 1)
            elif rec.rmid == wal.Rmgr.XLOG:
                self._xlog_record(rec)
            self.next, self.prev, self.last = rec.end_lsn, rec.lsn, rec.lsn
            xl.replay_start_lsn = rec.lsn
            xl.replay_lsn = rec.end_lsn
            self.replayed += 1
            n += 1
            self.check_consistency()
            if self.target_lsn is not None and self.target_inclusive and rec.lsn >= self.target_lsn:
                # recoveryStopsAfter
                elog.log("LOG", f'recovery stopping after WAL location (LSN) "{format_lsn(rec.lsn)}"')
                self.reached_target = True
                break
            if n % 64 == 0:
                _handle_interrupts()
                if self._promote_requested():
                    break
        if n:
            w = me.shm.walrcv
            if w.pid and w.latch_slot >= 0:
                w.force_reply = 1  # the primary learns the new apply position (remote_apply)
                set_latch(me.shm.procs[w.latch_slot])
        return n

    def _xlog_record(self, rec: Any) -> None:
        from node import datadir, wal

        xl = self.xl
        if rec.info in (wal.XlogInfo.CHECKPOINT_ONLINE, wal.XlogInfo.CHECKPOINT_SHUTDOWN):
            ck = wal.CheckPoint.unpack(rec.payload)
            xl.next_xid = max(int(xl.next_xid), ck.next_xid)
            xl.last_ckpt_lsn = rec.lsn
            xl.last_ckpt_redo = ck.redo if ck.redo < rec.lsn else rec.lsn
            xl.last_ckpt_tli = ck.timeline
        elif rec.info == wal.XlogInfo.BACKUP_END:
            start = wal.unpack_backup_end(rec.payload)
            cf = self.cf
            if cf.backup_start_lsn and start == cf.backup_start_lsn:
                with me.locks.hold(LWLockId.CONTROL):
                    cf.backup_start_lsn = 0
                    cf.end_of_backup_required = False
                    cf.backup_end_lsn = rec.end_lsn
                    cf.min_recovery_point = max(cf.min_recovery_point, rec.end_lsn)
                    cf.min_recovery_tli = self.tli
                    current = datadir.read_control(self.dd)
                    cf.checkpoint_lsn, cf.redo_lsn = current.checkpoint_lsn, current.redo_lsn
                    datadir.write_control(self.dd, cf)
                elog.event(events.BACKUP_END, "DEBUG1", "end of backup reached", lsn=format_lsn(rec.end_lsn))

    def _apply_delay(self, commit_time: float) -> bool:
        """recovery_min_apply_delay (recoveryApplyDelay): only once consistent, as in PostgreSQL.
        False when a promotion request ended the wait."""
        delay_ms = int(me.guc.get("recovery_min_apply_delay"))
        if delay_ms <= 0 or not self.xl.consistent:
            return True
        latch = me.latch
        assert latch is not None
        while True:
            latch.reset()
            _handle_interrupts()
            if self._promote_requested():
                return False
            left = commit_time + int(me.guc.get("recovery_min_apply_delay")) / 1000.0 - time.time()
            if left <= 0:
                return True
            report_wait("Timeout", "RecoveryApplyDelay")
            rc = latch.wait(left)
            report_wait_end()
            if rc & WL_POSTMASTER_DEATH:
                raise SystemExit(1)

    # -- the loop ------------------------------------------------------------------------------

    def _streaming_upto(self) -> int | None:
        """How far WAL may be read: the walreceiver's flush position while it streams our
        timeline (a segment may be half written past it), else the end of valid local WAL."""
        w = me.shm.walrcv
        if w.state != 0 and w.received_tli == self.tli:
            return int(w.flushed_lsn)
        return None

    def _maybe_request_streaming(self) -> None:
        from node import walreceiver

        conninfo = str(me.guc.get("primary_conninfo") or "")
        if not self.standby or not conninfo:
            return
        shm = me.shm
        w = shm.walrcv
        interval = int(me.guc.get("wal_retrieve_retry_interval")) / 1000.0
        now = time.monotonic()
        if not walreceiver.running(shm, me.locks):
            if now - self.last_request >= interval:
                self.last_request = now
                walreceiver.request_streaming(shm, me.locks, conninfo, str(me.guc.get("primary_slot_name") or ""),
                                              self.next, self.tli)  # fmt: skip
        elif w.state == walreceiver.WAITING:
            # The primary ended our timeline: look for the timeline that follows (rescanLatestTimeLine).
            if self._rescan_timelines() or now - self.last_request >= interval:
                self.last_request = now
                walreceiver.request_streaming(shm, me.locks, conninfo, str(me.guc.get("primary_slot_name") or ""),
                                              self.next, self.tli)  # fmt: skip

    def _next_wakeup(self) -> float:
        interval = int(me.guc.get("wal_retrieve_retry_interval")) / 1000.0
        return max(0.01, min(5.0, self.last_request + interval - time.monotonic() + 0.001))

    def _rescan_timelines(self) -> bool:
        from node import wal

        if str(me.guc.get("recovery_target_timeline")) != "latest":
            return False
        newest = _highest_timeline(self.dd, self.tli)
        if newest <= self.tli:
            return False
        hist = read_history(self.dd, newest)
        switch = next((lsn for parent, lsn in hist if parent == self.tli), None)
        if switch is None:
            return False
        if switch < self.next:
            elog.log("LOG", f"new timeline {newest} forked off current database system timeline {self.tli} before "
                     f"current recovery point {format_lsn(self.next)}")  # fmt: skip
            return False
        old = self.tli
        self.tli = newest
        self.history = hist
        self.reader.close()
        self.reader = wal.WalReader(self.dd / wal.XLOGDIR, self.segsize, newest, history=hist)
        self.xl.recovery_target_tli = newest
        self.xl.replay_tli = newest
        elog.event(events.TIMELINE_SWITCH, "LOG", f"new target timeline is {newest}", old=old, new=newest)
        return True

    def run(self) -> int:
        latch = me.latch
        assert latch is not None
        w = me.shm.walrcv
        w.startup_slot = me.slot
        self.check_consistency()  # REC-1: may hold before the first record
        while True:
            latch.reset()
            injection.inject("startup-loop")
            _handle_interrupts()
            if self.standby and self._promote_requested():
                break
            upto = self._streaming_upto()
            n = self.replay_available(upto)
            if self.reached_target:
                action = self._at_recovery_target()
                if action == "promote":
                    break
                if action == "shutdown":
                    return 3  # REC-8: T15
                self.standby = True  # pause: wait for a promotion request like a standby
                self._paused_wait()
                break
            if n:
                continue
            if not self.standby:
                break  # recovery.signal without a restore_command: the end of local WAL ends recovery
            self._invalid_record(upto)
            self._maybe_request_streaming()
            report_wait("Activity", "RecoveryWalStream")
            rc = latch.wait(self._next_wakeup())
            report_wait_end()
            if rc & WL_POSTMASTER_DEATH:
                return 1
        return self.finish()

    def _invalid_record(self, upto: int | None) -> None:
        """A record that is not valid although its bytes are there (a torn or corrupt local
        segment, or bad bytes streamed): log it once per position (emode_for_corrupt_record)
        and, if it lies inside what the walreceiver flushed, restart streaming from that
        segment so the primary's bytes replace it (XLogPageRead's lastSourceFailed)."""
        r = self.reader
        if not r.end_reason or r.missing_segment or r.end_of_wal is None:
            return
        at = r.end_of_wal
        if at != self.last_invalid:
            self.last_invalid = at
            elog.log("LOG", r.end_reason)
        if upto is not None and at < upto:
            from node import walreceiver

            walreceiver.shutdown_walrcv(me.shm, me.locks)
            self.last_request = -1e9  # ask again at once: the failure was the data, not the link

    def _at_recovery_target(self) -> str:
        """What to do at the recovery target (recovery_target_action); FATAL before consistency."""
        if not self.xl.consistent:
            raise elog.PGError("requested recovery stop point is before consistent recovery point", "XX000",
                               severity="FATAL")  # fmt: skip
        from node import walreceiver

        walreceiver.shutdown_walrcv(me.shm, me.locks)
        return str(me.guc.get("recovery_target_action"))

    def _paused_wait(self) -> None:
        """recovery_target_action = pause: stay paused until promoted (pg_wal_replay_resume is
        not implemented; a promotion ends the pause, as in PostgreSQL)."""
        elog.log("LOG", "pausing at the end of recovery", hint="Execute pg_wal_replay_resume() to promote.")
        latch = me.latch
        assert latch is not None
        while not self._promote_requested():
            latch.reset()
            _handle_interrupts()
            report_wait("IPC", "RecoveryPause")
            rc = latch.wait(5.0)
            report_wait_end()
            if rc & WL_POSTMASTER_DEATH:
                raise SystemExit(1)

    def finish(self) -> int:
        """Promotion (REC-5 (3)): stop the walreceiver, replay what arrived, then end recovery."""
        from node import walreceiver

        walreceiver.shutdown_walrcv(me.shm, me.locks)
        upto = int(me.shm.walrcv.flushed_lsn) if me.shm.walrcv.received_tli == self.tli else None
        self.replay_available(upto, delay=False)  # nothing once the recovery target was reached
        if self.reader.end_reason and self.replayed:
            elog.log("DEBUG2" if self.reader.missing_segment else "LOG", self.reader.end_reason)
        return _end_archive_recovery(self.cf, self.standby, self.next, self.last, self.tli, self.history)


def _end_archive_recovery(cf: Any, standby: bool, end_of_wal: int, last: int, replay_tli: int,
                          replay_history: list[tuple[int, int]]) -> int:  # fmt: skip
    """Promotion (REC-5): a new timeline starting at the end of replayed WAL."""
    from node import datadir, wal

    dd = Path(me.datadir)
    xl = me.shm.xlog
    if standby:
        (dd / "promote").unlink(missing_ok=True)
    elog.log("LOG", f"redo done at {format_lsn(last)} system usage: CPU: user: 0.00 s, "
             "system: 0.00 s, elapsed: 0.00 s")  # fmt: skip
    new_tli = _highest_timeline(dd, replay_tli) + 1
    elog.log("LOG", f"selected new timeline ID: {new_tli}")
    segsize = int(xl.segsize)
    # XLogInitNewTimeline: the new timeline's first segment starts as a copy of the old one up to
    # the switch point, so readers of the new timeline find the records before it there too.
    old_seg = dd / wal.XLOGDIR / wal.segment_name(end_of_wal, replay_tli, segsize)
    new_seg = dd / wal.XLOGDIR / wal.segment_name(end_of_wal, new_tli, segsize)
    fresh = False
    if old_seg.exists() and not new_seg.exists():
        # Only the bytes before the switch point are copied; the rest of the new segment is
        # preallocated zeros (a 16 MB copy would be most of the promotion's time).
        tmp = new_seg.with_suffix(".tmp")
        off = end_of_wal % segsize
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            wal._preallocate(fd, segsize)
            with open(old_seg, "rb") as src:
                data = src.read(off)
            wal._pwrite_all(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, new_seg)
        fresh = True
    hist = dd / "pg_wal" / f"{new_tli:08X}.history"
    prev = dd / "pg_wal" / f"{replay_tli:08X}.history"
    content = prev.read_text() if prev.exists() else ""
    content += f"{replay_tli}\t{format_lsn(end_of_wal)}\tno recovery target specified\n"
    tmp = hist.with_suffix(".tmp")
    tmp.write_text(content)
    os.replace(tmp, hist)
    elog.log("LOG", "archive recovery complete")
    for name in ("standby.signal", "recovery.signal"):
        (dd / name).unlink(missing_ok=True)
    xl.timeline = new_tli
    _open_wal(end_of_wal, last, zero_tail=not fresh)
    # Fast promotion: an end-of-recovery record instead of a checkpoint we would wait for.
    from node.storage import Heap
    from node.xlog import XLog

    heap = Heap(dd)
    heap.begin_write()
    try:
        XLog(dd, xl, fsync=bool(me.guc.get("fsync"))).append(
            wal.Rmgr.XLOG, wal.XlogInfo.END_OF_RECOVERY, 0,
            wal.EndOfRecovery(time.time(), new_tli, replay_tli).pack(), flush=True)
    finally:
        heap.rollback()
        heap.close()
    cf = datadir.read_control(dd)
    cf.prev_timeline = replay_tli
    cf.timeline = new_tli
    cf.min_recovery_point = 0
    cf.min_recovery_tli = 0
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
