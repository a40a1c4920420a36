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
from node.proc import count_signal, install_handler, me, report_signals
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
    cf = datadir.read_control(dd)
    xl = shm.xlog
    xl.system_identifier = cf.system_identifier
    xl.timeline = cf.timeline
    xl.redo_lsn = cf.redo_lsn
    xl.insert_lsn = xl.flush_lsn = xl.replay_lsn = cf.checkpoint_lsn
    standby = (dd / "standby.signal").exists()
    archive = standby or (dd / "recovery.signal").exists()
    injection.inject("startup-loop")

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

    if archive:
        return _archive_recovery(cf, standby)
    if cf.state not in (DBState.SHUTDOWNED, DBState.SHUTDOWNED_IN_RECOVERY):
        elog.log("LOG", "database system was not properly shut down; automatic recovery in progress")
        cf.state = DBState.IN_CRASH_RECOVERY
        datadir.write_control(dd, cf)
        xl.in_recovery = 1
        _redo(crash=True)
        xl.in_recovery = 0
        from node.checkpointer import CHECKPOINT_END_OF_RECOVERY, CHECKPOINT_IMMEDIATE, CHECKPOINT_WAIT

        request_checkpoint(CHECKPOINT_END_OF_RECOVERY | CHECKPOINT_IMMEDIATE | CHECKPOINT_WAIT, wait=True)
        cf = datadir.read_control(dd)
    cf.state = DBState.IN_PRODUCTION
    datadir.write_control(dd, cf)
    elog.event(events.STARTUP_DONE, "DEBUG1", "startup process done")
    return 0


def _redo(*, crash: bool) -> None:
    """Where redo runs. Signals RECOVERY_STARTED first (T2), as PerformWalRecovery does."""
    xl = me.shm.xlog
    send_pmsignal(me.shm, me.postmaster_pid, PMSignalReason.RECOVERY_STARTED)
    elog.event(events.RECOVERY_STARTED, "LOG", f"redo starts at {format_lsn(xl.redo_lsn)}", crash=crash)
    injection.inject("startup-redo")
    _handle_interrupts()
    # The storage issue replays records here; there are none to replay yet.
    elog.log("LOG", f"redo done at {format_lsn(xl.replay_lsn)} system usage: CPU: user: 0.00 s, "
             "system: 0.00 s, elapsed: 0.00 s")  # fmt: skip


def _archive_recovery(cf: Any, standby: bool) -> int:
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
    elog.event(events.RECOVERY_STARTED, "LOG", f"redo starts at {format_lsn(xl.redo_lsn)}", crash=False)
    # REC-1: no backup end pending and minRecoveryPoint <= replayed: consistent at once.
    xl.consistent = 1
    elog.event(events.CONSISTENT, "LOG", f"consistent recovery state reached at {format_lsn(xl.replay_lsn)}",
               lsn=format_lsn(xl.replay_lsn))  # fmt: skip
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
        rc = latch.wait(5.0)
        if rc & WL_POSTMASTER_DEATH:
            return 1
    return _end_archive_recovery(cf, standby)


def _end_archive_recovery(cf: Any, standby: bool) -> int:
    from node import datadir

    dd = Path(me.datadir)
    xl = me.shm.xlog
    if standby:
        elog.event(events.PROMOTE, "LOG", "received promotion request")
        (dd / "promote").unlink(missing_ok=True)
    elog.log("LOG", f"redo done at {format_lsn(xl.replay_lsn)} system usage: CPU: user: 0.00 s, "
             "system: 0.00 s, elapsed: 0.00 s")  # fmt: skip
    new_tli = _highest_timeline(dd, cf.timeline) + 1
    elog.log("LOG", f"selected new timeline ID: {new_tli}")
    hist = dd / "pg_wal" / f"{new_tli:08X}.history"
    prev = dd / "pg_wal" / f"{cf.timeline:08X}.history"
    content = prev.read_text() if prev.exists() else ""
    content += f"{cf.timeline}\t{format_lsn(xl.replay_lsn)}\tno recovery target specified\n"
    tmp = hist.with_suffix(".tmp")
    tmp.write_text(content)
    os.replace(tmp, hist)
    elog.log("LOG", "archive recovery complete")
    for name in ("standby.signal", "recovery.signal"):
        (dd / name).unlink(missing_ok=True)
    cf.prev_timeline = cf.timeline
    cf.timeline = new_tli
    cf.state = DBState.IN_PRODUCTION
    datadir.write_control(dd, cf)
    xl.timeline = new_tli
    xl.in_recovery = 0
    xl.standby_mode = 0
    from node.checkpointer import CHECKPOINT_FORCE

    request_checkpoint(CHECKPOINT_FORCE, wait=False)  # fast promotion: do not wait
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
