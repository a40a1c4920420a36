"""The WAL sender: a replication connection's process after authentication (repl/walsender.c).

What it does
- WALSND-1: claims the first free WalSnd slot under LWLockId.WALSND (pid first, then state
  `startup`, cleared positions, lags -1, the latch pointer), marks its child slot WALSENDER and
  sends PMSIGNAL_ADVANCE_STATE_MACHINE, so the postmaster keeps it out of the stop set; with
  every slot taken the connection gets WALSND-1's FATAL (53300).
- WALSND-2 / P-6 on exit: signals blocked, the local pointer cleared, the latch pointer cleared
  under the lock, pid = 0 last. `pgbed.historic_bugs = walsndkill_order` puts back the 2013
  order (pid first), for the orchestrator's checkers to catch.
- Commands (node/replcmd.py): IDENTIFY_SYSTEM, SHOW, TIMELINE_HISTORY, CREATE/READ/DROP
  _REPLICATION_SLOT, START_REPLICATION (CopyBoth `w`/`k` out, `r`/`h`/CopyDone in, the
  end-of-timeline handshake), BASE_BACKUP (node/basebackup.py). Plain SQL gets 0A000.
- Streaming (WalSndLoop, XLogSendPhysical): sends flushed WAL in messages of at most 128 KiB
  cut at segment ends, moves catchup → streaming when caught up, tracks the standby's
  write/flush/apply positions and lags from `r` replies, advances its slot, releases
  synchronous-replication waiters (node/syncrep.py), keepalives at half of wal_sender_timeout
  and the timeout itself, all with non-blocking output so a standby that stops reading (SIGSTOP)
  cannot wedge it.
- Signals (WALSND-4, [M]): SIGHUP reload; SIGINT cancels the running command; SIGTERM FATAL at
  the next check (exit 1); SIGQUIT exit 2; SIGUSR1 procsignal (PROCSIG_WALSND_INIT_STOPPING:
  WALSND-5) + latch; SIGUSR2 last cycle (WALSND-6). Handlers only set flags and the latch
  (SIG-1), unless `pgbed.historic_bugs = signal_handler_work` puts back handlers that do work.

What it deliberately does not do: logical replication, cascading replication from a standby,
compression, or reading WAL that is not flushed.

Shared state: its WalSnd slot (owner: this process), its replication slot's restart_lsn (while
active), the sync-rep released LSNs (under LWLockId.SYNCREP).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from pathlib import Path
from typing import Any

from node import elog, events, injection, replcmd, replslot, wal
from node import protocol as P
from node.elog import PGError
from node.ipc.latch import WL_POSTMASTER_DEATH, set_latch
from node.ipc.lwlock import LWLockId
from node.ipc.pmsignal import send_pmsignal
from node.ipc.shmem import WALSND_STATES
from node.proc import (
    count_signal,
    historic_bug,
    install_handler,
    me,
    process_config_reload,
    report_activity,
    report_signals,
)
from node.states import ActivityState, BackendKind, ChildSlotState, PMSignalReason

MAX_SEND_SIZE = 128 * 1024  # XLOG_BLCKSZ * 16
STARTUP, CATCHUP, STREAMING, BACKUP, STOPPING = range(5)


def state_index(name: str) -> int:
    return WALSND_STATES.index(name)


# -- signal handlers (SIG-1: flags and the latch only) -------------------------------------------


class _Flags:
    got_sigusr2 = False
    got_stopping = False
    replication_active = False
    my_walsnd: Any = None  # MyWalSnd: the handlers' way to our slot (cleared first at exit)
    slot_no = -1  # its index, for the events


flags = _Flags()


def _set_my_latch() -> None:
    """SetLatch(MyWalSnd->latch) as the C handlers do: through the slot's latch pointer."""
    ws = flags.my_walsnd
    if ws is not None and ws.latch_slot >= 0:
        set_latch(me.shm.procs[ws.latch_slot])
    elif me.latch is not None:
        me.latch.set()


def _usr2(signum: int, frame: Any) -> None:
    count_signal(signum)
    flags.got_sigusr2 = True
    _set_my_latch()


def _usr1(signum: int, frame: Any) -> None:
    count_signal(signum)
    ws = flags.my_walsnd
    if ws is not None and ws.procsig_stopping:
        # HandleWalSndInitStopping (WALSND-5): only flags here; an idle walsender is told to
        # die by raising SIGTERM at itself, which its own handler turns into a pending die.
        if not flags.replication_active:
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            flags.got_stopping = True
    if me.latch is not None:
        me.latch.set()


def _die_with_work(signum: int, frame: Any) -> None:
    """signal_handler_work: the [13]-style handler that ends the process from inside the
    handler, running the exit path (slot teardown included) wherever the main loop was."""
    count_signal(signum)
    from node.proc import proc_exit

    proc_exit(1)


def install_signals() -> None:
    from node import backend

    install_handler(signal.SIGUSR1, _usr1)
    install_handler(signal.SIGUSR2, _usr2)
    if historic_bug("signal_handler_work"):
        install_handler(signal.SIGTERM, _die_with_work)
    else:
        install_handler(signal.SIGTERM, backend._die)
    install_handler(signal.SIGINT, backend._cancel)
    install_handler(signal.SIGHUP, backend._hup)


# -- slot claim and release -----------------------------------------------------------------------


def claim_slot() -> Any:
    """InitWalSenderSlot (WALSND-1)."""
    shm = me.shm
    n = int(me.guc.get("max_wal_senders"))
    with me.locks.hold(LWLockId.WALSND):
        ws = None
        for i in range(min(n, len(shm.walsnd))):
            if shm.walsnd[i].pid == 0:
                ws = shm.walsnd[i]
                flags.slot_no = i
                break
        if ws is None:
            raise elog.fatal('number of requested standby connections exceeds "max_wal_senders" '
                             f"(currently {n})", "53300")  # fmt: skip
        ws.pid = me.pid
        injection.inject("walsender-claim")  # between taking the slot and owning its latch
        ws.changecount += 1
        ws.state = STARTUP
        ws.procsig_stopping = 0
        ws.sent_lsn = ws.write_lsn = ws.flush_lsn = ws.apply_lsn = 0
        ws.write_lag = ws.flush_lag = ws.apply_lag = -1.0
        ws.reply_time = 0.0
        ws.sync_priority = 0
        ws.application_name = str(me.guc.show("application_name")).encode()[:63]
        ws.latch_slot = me.slot
        ws.changecount += 1
    flags.my_walsnd = ws
    me.exit_callbacks.append(_walsnd_kill)
    shm.child_state[me.slot] = ChildSlotState.WALSENDER  # MarkPostmasterChildWalSender
    send_pmsignal(shm, me.postmaster_pid, PMSignalReason.ADVANCE_STATE_MACHINE)
    return ws


def _walsnd_kill(code: int) -> None:
    """WalSndKill, WALSND-2 / P-6: local pointer, latch pointer, pid last."""
    ws = flags.my_walsnd
    if ws is None:
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM,
                                              signal.SIGINT})  # fmt: skip
    if historic_bug("walsndkill_order"):
        # The 2013 order: the slot is freed first, and a new walsender may claim it (and set its
        # latch pointer) before this process clears "its" latch pointer and its local pointer.
        ws.pid = 0
        injection.inject("walsender-kill-after-free")
        with me.locks.hold(LWLockId.WALSND):
            ws.latch_slot = -1
        flags.my_walsnd = None
        return
    flags.my_walsnd = None
    with me.locks.hold(LWLockId.WALSND):  # [M]: latch pointer and pid under the slot's lock
        ws.latch_slot = -1
        injection.inject("walsender-kill-before-free")
        ws.pid = 0


def set_state(ws: Any, state: int) -> None:
    if ws.state != state:
        ws.changecount += 1
        ws.state = state
        ws.changecount += 1
        elog.event(events.WALSND_STATE, "DEBUG1", f"walsender state {WALSND_STATES[state]}",
                   state=WALSND_STATES[state], slot=flags.slot_no)  # fmt: skip


# -- timelines -------------------------------------------------------------------------------------


def read_history_file(datadir: Path, tli: int) -> list[tuple[int, int]]:
    from node.startup import read_history

    return read_history(datadir, tli)


def timeline_switch_point(history: list[tuple[int, int]], tli: int) -> int | None:
    """tliSwitchPoint: where `tli` ended in our history; None if it is our current timeline."""
    for parent, lsn in history:
        if parent == tli:
            return lsn
    return None


# -- the session ---------------------------------------------------------------------------------


class WalSender:
    def __init__(self, session: Any) -> None:
        self.s = session
        self.conn = session.conn
        self.sock: socket.socket = session.conn.sock
        self.datadir = Path(me.datadir)
        self.ws: Any = None
        self.out = session.conn.out  # one output buffer: results and CopyData stay in order
        self.slot_name: str | None = None
        self.reader: wal.WalReader | None = None
        self.reader_tli = 0
        self.last_reply = time.monotonic()
        self.waiting_for_ping = False
        self.lag_samples: list[tuple[int, float]] = []
        self.last_positions = (0, 0, 0)

    # -- I/O ----------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.out += data

    def try_flush(self) -> bool:
        """Send what the socket takes now; True when nothing is pending (pq_is_send_pending)."""
        while self.out:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                raise SystemExit(0) from None  # the standby went away
            del self.out[:n]
        return True

    def flush_blocking(self) -> None:
        """pq_flush outside streaming: wait until sent, handling interrupts."""
        while not self.try_flush():
            self.check_interrupts()
            select.select([], [self.sock], [], 0.2)

    # -- interrupts --------------------------------------------------------------------------------

    def check_interrupts(self) -> None:
        """The backend's CHECK_FOR_INTERRUPTS (terminate, postmaster death, cancel), plus the
        reload a walsender does in its loop (WalSndLoop's ConfigReloadPending)."""
        report_signals()
        self.s.check_for_interrupts()
        process_config_reload()

    # -- main loop -----------------------------------------------------------------------------------

    def run(self) -> int:
        self.ws = claim_slot()
        elog.event(events.WALSND_START, "DEBUG1", "walsender started", slot=flags.slot_no,
                   application_name=str(me.guc.show("application_name")))  # fmt: skip
        c = self.conn
        send_ready = True
        while True:
            if send_ready:
                c.send(P.ready_for_query("I"))
                send_ready = False
            report_activity(ActivityState.IDLE)
            try:
                mtype, body = c.next_message(self._idle_interrupts)
            except EOFError:
                return 0
            t = mtype.decode()
            if t == "X":
                return 0
            try:
                if t == "Q":
                    self.exec_command(P.parse_query(body))
                elif t in "PBDEHCF":
                    what = "fastpath function calls" if t == "F" else "extended query protocol"
                    raise PGError(f"{what} not supported in a replication connection", "08P01")
                elif t == "S":
                    pass
                else:
                    raise P.ProtocolViolation("08P01", f"invalid frontend message type {ord(t)}")
                send_ready = True
            except PGError as e:
                if e.severity in ("FATAL", "PANIC"):
                    raise
                if flags.got_sigusr2 or flags.got_stopping:
                    raise SystemExit(0) from None  # WALSND-6: any error after a stop request
                self.s._report_error(e)
                set_state(self.ws, STARTUP)  # WalSndErrorCleanup
                flags.replication_active = False
                send_ready = True

    def _idle_interrupts(self) -> None:
        self.s._idle_interrupts()
        if flags.got_sigusr2 or flags.got_stopping:
            # Idle in a command loop and told to stop: nothing to stream, so leave (WALSND-5).
            raise SystemExit(0)

    def exec_command(self, text: str) -> None:
        injection.inject("walsender-command")
        cmd = replcmd.parse(text)
        if cmd is None:
            if not text.strip() or text.strip() == ";":
                self.conn.send(P.empty_query_response())
                return
            raise PGError("cannot execute SQL commands in WAL sender for physical replication", "0A000")
        if self.ws.state == STOPPING:
            raise PGError("cannot execute new commands while WAL sender is in stopping mode", "55000")
        report_activity(ActivityState.ACTIVE, text)
        if me.guc.get("log_replication_commands"):
            elog.log("LOG", f"received replication command: {text}")
        if isinstance(cmd, replcmd.IdentifySystem):
            self.identify_system()
        elif isinstance(cmd, replcmd.Show):
            self.show(cmd.name)
        elif isinstance(cmd, replcmd.TimelineHistory):
            self.timeline_history(cmd.timeline)
        elif isinstance(cmd, replcmd.CreateSlot):
            self.create_slot(cmd)
        elif isinstance(cmd, replcmd.DropSlot):
            replslot.drop(me.shm, me.locks, self.datadir, cmd.name, me.pid)
            self.conn.send(P.command_complete("DROP_REPLICATION_SLOT"))
        elif isinstance(cmd, replcmd.ReadSlot):
            self.read_slot(cmd.name)
        elif isinstance(cmd, replcmd.StartReplication):
            if cmd.logical:
                raise PGError("logical replication is not supported by pgbed", "0A000")
            self.start_replication(cmd)
        elif isinstance(cmd, replcmd.BaseBackup):
            from node import basebackup

            set_state(self.ws, BACKUP)
            try:
                basebackup.send_backup(self, cmd.options)
            finally:
                set_state(self.ws, STARTUP)
        self.flush_blocking()

    # -- simple commands ---------------------------------------------------------------------------

    def _current(self) -> tuple[int, int]:
        """(timeline, flush LSN): what IDENTIFY_SYSTEM reports (a standby: replay position)."""
        xl = me.shm.xlog
        if xl.in_recovery:
            return int(xl.replay_tli or xl.timeline), int(xl.replay_lsn)
        return int(xl.timeline), int(xl.flush_lsn)

    def _rows(self, cols: list[tuple[str, int]], rows: list[list[bytes | None]], tag: str) -> None:
        self.conn.send(P.row_description([P.Column.for_type(n, oid) for n, oid in cols]))
        for r in rows:
            self.conn.send(P.data_row(r))
        self.conn.send(P.command_complete(tag))

    def identify_system(self) -> None:
        tli, lsn = self._current()
        self._rows([("systemid", P.TEXT), ("timeline", P.INT4), ("xlogpos", P.TEXT), ("dbname", P.TEXT)],
                   [[str(me.shm.xlog.system_identifier).encode(), str(tli).encode(),
                     P.format_lsn(lsn).encode(), None]], "IDENTIFY_SYSTEM")  # fmt: skip

    def show(self, name: str) -> None:
        from node.guc import GucError

        try:
            value = me.guc.show(name)
            canonical = me.guc.setting(name).name
        except GucError as e:
            raise PGError(e.message, e.sqlstate) from None
        self._rows([(canonical, P.TEXT)], [[str(value).encode()]], "SHOW")

    def timeline_history(self, tli: int) -> None:
        name = f"{tli:08X}.history"
        path = self.datadir / wal.XLOGDIR / name
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise PGError(f'could not open file "{wal.XLOGDIR}/{name}": No such file or directory', "58P01") from None
        self.conn.send(P.row_description([P.Column.for_type("filename", P.TEXT),
                                          P.Column.for_type("content", P.TEXT)]))  # fmt: skip
        self.conn.send(P.data_row([name.encode(), content]))
        self.conn.send(P.command_complete("TIMELINE_HISTORY"))

    def create_slot(self, cmd: replcmd.CreateSlot) -> None:
        if cmd.logical:
            raise PGError("logical replication slots are not supported by pgbed", "0A000")
        lsn = 0
        tli, flush = self._current()
        if cmd.reserve_wal:
            lsn = flush  # ReplicationSlotReserveWal: the current insert position on a primary
        replslot.create(me.shm, me.locks, self.datadir, cmd.name, temporary=cmd.temporary, reserve_lsn=lsn,
                        tli=tli if lsn else 0, owner_pid=me.pid)  # fmt: skip
        if cmd.temporary:
            me.exit_callbacks.append(lambda code: replslot.release_all(me.shm, me.locks, self.datadir, me.pid))
        self._rows([("slot_name", P.TEXT), ("consistent_point", P.TEXT), ("snapshot_name", P.TEXT),
                    ("output_plugin", P.TEXT)],
                   [[cmd.name.encode(), P.format_lsn(lsn).encode(), None, None]],
                   "CREATE_REPLICATION_SLOT")  # fmt: skip

    def read_slot(self, name: str) -> None:
        replslot.check_name(name)
        info = replslot.get(me.shm, name)
        cols = [("slot_type", P.TEXT), ("restart_lsn", P.TEXT), ("restart_tli", P.INT8)]
        if info is None:
            self._rows(cols, [[None, None, None]], "READ_REPLICATION_SLOT")
            return
        restart = P.format_lsn(info.restart_lsn).encode() if info.restart_lsn else None
        tli = str(info.restart_tli).encode() if info.restart_lsn else None
        self._rows(cols, [[b"physical", restart, tli]], "READ_REPLICATION_SLOT")

    # -- START_REPLICATION ---------------------------------------------------------------------------

    def start_replication(self, cmd: replcmd.StartReplication) -> None:
        xl = me.shm.xlog
        if xl.in_recovery:
            raise PGError("cascading replication is not supported by pgbed", "0A000")
        if cmd.slot:
            replslot.acquire(me.shm, me.locks, cmd.slot, me.pid)
            self.slot_name = cmd.slot
            me.exit_callbacks.append(lambda code: replslot.release_all(me.shm, me.locks, self.datadir, me.pid))
        try:
            self._stream(cmd)
        finally:
            if self.slot_name:
                replslot.release(me.shm, me.locks, self.datadir, self.slot_name, me.pid)
                self.slot_name = None

    def _stream(self, cmd: replcmd.StartReplication) -> None:
        xl = me.shm.xlog
        cur_tli = int(xl.timeline)
        segsize = int(xl.segsize)
        history = read_history_file(self.datadir, cur_tli)
        req_tli = cmd.timeline or cur_tli
        valid_upto: int | None = None
        next_tli = 0
        if req_tli != cur_tli:
            switch = timeline_switch_point(history, req_tli)
            if switch is None:
                raise PGError(f"requested timeline {req_tli} is not in this server's history", "XX000")
            valid_upto = switch
            # The timeline that followed req_tli in our history.
            tlis = [t for t, _ in history] + [cur_tli]
            next_tli = tlis[tlis.index(req_tli) + 1]
            if cmd.lsn > switch:
                raise PGError(
                    f"requested starting point {P.format_lsn(cmd.lsn)} on timeline {req_tli} is not in this "
                    "server's history", "XX000",
                    detail=f"This server's history forked from timeline {req_tli} at "
                    f"{P.format_lsn(switch)}.")  # fmt: skip
        flags.replication_active = True
        set_state(self.ws, CATCHUP)
        self.send(P.copy_both_response())
        self.flush_blocking()
        flush = int(xl.flush_lsn)
        if valid_upto is None and cmd.lsn > flush:
            raise PGError(f"requested starting point {P.format_lsn(cmd.lsn)} is ahead of the WAL flush position "
                          f"of this server {P.format_lsn(flush)}", "XX000")  # fmt: skip
        reader = wal.WalReader(self.datadir / wal.XLOGDIR, segsize, cur_tli, history=history)
        self.reader = reader
        try:
            if cmd.lsn < (valid_upto or flush):  # the first segment must still exist
                reader.read_raw(cmd.lsn, 1)
        except wal.MissingSegment:
            raise PGError(f"requested WAL segment {wal.segment_name(cmd.lsn, req_tli, segsize)} has already been "
                          "removed", "58P01") from None  # fmt: skip
        ws = self.ws
        ws.changecount += 1
        ws.sent_lsn = cmd.lsn
        ws.changecount += 1
        sent = cmd.lsn
        self.last_reply = time.monotonic()
        self.waiting_for_ping = False
        client_done = False
        try:
            end = self._loop(reader, sent, valid_upto)
        finally:
            reader.close()
            self.reader = None
        client_done = end is None
        flags.replication_active = False
        if valid_upto is not None and not client_done:
            # End of an old timeline: CopyDone, wait for the client's, then the next timeline.
            self.send(P.copy_done())
            self.flush_blocking()
            self._wait_client_copy_done()
            self.conn.send(P.row_description([P.Column.for_type("next_tli", P.INT8),
                                              P.Column.for_type("next_tli_startpos", P.TEXT)]))  # fmt: skip
            self.conn.send(P.data_row([str(next_tli).encode(), P.format_lsn(valid_upto).encode()]))
            self.conn.send(P.command_complete("START_STREAMING"))
        elif client_done:
            self.send(P.copy_done())
        self.conn.send(P.command_complete("START_REPLICATION"))
        set_state(ws, STARTUP)

    def _wait_client_copy_done(self) -> None:
        c = self.conn
        while True:
            mtype, body = c.next_message(self._stream_idle_check)
            if mtype == b"c":
                return
            if mtype == b"d":
                self._process_copy_data(body)
            elif mtype == b"X":
                raise SystemExit(0)
            else:
                raise P.ProtocolViolation("08P01", f"unexpected message type 0x{mtype[0]:02X} during COPY from stdin")

    def _stream_idle_check(self) -> None:
        report_signals()
        if me.pending.proc_die:
            raise elog.fatal("terminating connection due to administrator command", "57P01")

    def _read_available(self) -> bool:
        """Read and process what the standby sent; True when it sent CopyDone."""
        c = self.conn
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                raise SystemExit(0)  # EOF: the standby closed the connection
            if data:
                c.reader.feed(data)
            while True:
                m = c.reader.next_message()
                if m is None:
                    break
                mtype, body = m
                if mtype == b"d":
                    self._process_copy_data(body)
                elif mtype == b"c":
                    return True
                elif mtype == b"X":
                    raise SystemExit(0)
                else:
                    raise P.ProtocolViolation("08P01", f'invalid standby message type "{mtype.decode("latin-1")}"')
            if data is None:
                return False

    def _process_copy_data(self, body: bytes) -> None:
        self.last_reply = time.monotonic()
        self.waiting_for_ping = False
        if not body:
            raise P.ProtocolViolation("08P01", "unexpected end of standby message")
        kind = body[:1]
        if kind == b"r":
            self._process_reply(P.parse_standby_status(body))
        elif kind == b"h":
            if len(body) not in (1 + 8 + 4 + 4, 1 + 8 + 4 + 4 + 4 + 4):
                raise P.ProtocolViolation("08P01", "invalid standby message type or length")
        else:
            raise P.ProtocolViolation("08P01", f'unexpected message type "{kind.decode("latin-1")}"')

    def _process_reply(self, st: P.StandbyStatus) -> None:
        """ProcessStandbyReplyMessage (WALSND-8)."""
        ws = self.ws
        now = time.time()
        write, flush, apply = st.write_lsn, st.flush_lsn, st.apply_lsn
        clear_lags = (write, flush, apply) == self.last_positions and apply == int(ws.sent_lsn)
        self.last_positions = (write, flush, apply)
        lags = [self._lag(write, now), self._lag(flush, now), self._lag(apply, now)]
        ws.changecount += 1
        ws.write_lsn = write
        ws.flush_lsn = flush
        ws.apply_lsn = apply
        for i, name in enumerate(("write_lag", "flush_lag", "apply_lag")):
            if clear_lags:
                setattr(ws, name, -1.0)
            elif lags[i] is not None:
                setattr(ws, name, lags[i])
        ws.reply_time = P.pg_epoch_us_to_unix(st.send_time) if st.send_time else now
        ws.changecount += 1
        self._prune_lag_samples(min(write, flush or write, apply or write))
        from node import syncrep

        syncrep.release_waiters(me.shm, me.locks, me.guc)
        if self.slot_name and (flush or write):
            replslot.advance(me.shm, self.slot_name, me.pid, flush or write)
        if st.reply_requested:
            self.send(P.primary_keepalive(int(me.shm.xlog.flush_lsn), P.pg_epoch_us(), False))

    def _lag(self, lsn: int, now: float) -> float | None:
        """LagTrackerRead, simplified: time since the newest sent position this LSN covers."""
        best = None
        for pos, t in self.lag_samples:
            if pos <= lsn:
                best = t
            else:
                break
        return None if best is None else max(0.0, now - best)

    def _prune_lag_samples(self, upto: int) -> None:
        keep = [s for s in self.lag_samples if s[0] > upto]
        if len(keep) != len(self.lag_samples):
            self.lag_samples = keep

    def _loop(self, reader: wal.WalReader, sent: int, valid_upto: int | None) -> int | None:
        """WalSndLoop + XLogSendPhysical. Returns the end LSN when an old timeline was sent
        entirely, or None when the client ended streaming with CopyDone."""
        ws = self.ws
        xl = me.shm.xlog
        segsize = int(xl.segsize)
        latch = me.latch
        assert latch is not None
        latch.watch_socket(self.sock)
        timeout_ms = int(me.guc.get("wal_sender_timeout"))
        while True:
            latch.reset()
            self.check_interrupts()
            injection.inject("walsender-loop")
            if flags.got_stopping and ws.state != STOPPING:
                set_state(ws, STOPPING)
            if self._read_available():
                return None
            end = valid_upto if valid_upto is not None else int(xl.flush_lsn)
            caught_up = sent >= end
            if not caught_up and len(self.out) < MAX_SEND_SIZE:
                n = min(MAX_SEND_SIZE, end - sent, segsize - sent % segsize)
                try:
                    data = reader.read_raw(sent, n)
                except wal.MissingSegment as m:
                    raise PGError(f"requested WAL segment {m.name} has already been removed", "58P01") from None
                self.send(P.xlog_data(sent, end, P.pg_epoch_us(), data))
                sent += n
                self.lag_samples.append((sent, time.time()))
                if len(self.lag_samples) > 1000:
                    del self.lag_samples[:500]
                ws.changecount += 1
                ws.sent_lsn = sent
                ws.changecount += 1
                caught_up = sent >= end
            pending = not self.try_flush()
            if caught_up and not pending:
                if valid_upto is not None:
                    return sent
                if ws.state == CATCHUP:
                    set_state(ws, STREAMING)
                    elog.event(events.WALSND_CAUGHT_UP, "DEBUG1",
                               f'"{ws.application_name.decode()}" has now caught up with upstream server',
                               application_name=ws.application_name.decode())  # fmt: skip
                if flags.got_sigusr2:
                    self._walsnd_done(sent)
            now = time.monotonic()
            timeout_ms = int(me.guc.get("wal_sender_timeout"))
            wait: float | None = None if caught_up and not pending else 0.0
            if timeout_ms > 0:
                deadline = self.last_reply + timeout_ms / 1000.0
                if now >= deadline:
                    elog.event(events.WALSND_TIMEOUT, "LOG", "terminating walsender process due to replication "
                               "timeout")  # fmt: skip
                    raise SystemExit(0)  # WalSndShutdown
                ping_at = self.last_reply + timeout_ms / 2000.0
                if not self.waiting_for_ping and now >= ping_at:
                    self.send(P.primary_keepalive(int(xl.flush_lsn), P.pg_epoch_us(), True))
                    self.waiting_for_ping = True
                    self.try_flush()
                next_event = deadline if self.waiting_for_ping else ping_at
                wait = max(0.0, next_event - now) if wait is None else min(wait, max(0.0, next_event - now))
            if wait == 0.0 and not pending:
                continue
            rc = latch.wait(wait, socket_readable=True, socket_writable=pending)
            if rc & WL_POSTMASTER_DEATH:
                raise SystemExit(1)

    def _walsnd_done(self, sent: int) -> None:
        """WalSndDone (WALSND-6): exit 0 once the standby confirmed everything we sent."""
        ws = self.ws
        replicated = int(ws.flush_lsn) or int(ws.write_lsn)
        if sent == replicated and not self.out:
            self.send(P.command_complete("COPY 0"))
            self.flush_blocking()
            elog.event(events.WALSND_DONE, "DEBUG1", "walsender finished sending WAL at shutdown",
                       lsn=P.format_lsn(sent))  # fmt: skip
            raise SystemExit(0)
        if not self.waiting_for_ping:
            self.send(P.primary_keepalive(int(me.shm.xlog.flush_lsn), P.pg_epoch_us(), True))
            self.waiting_for_ping = True


def run(session: Any) -> int:
    """Entry from the backend once a replication connection has authenticated."""
    me.kind = BackendKind.WALSENDER
    elog.set_process("walsender")
    install_signals()
    from node.launch import set_title

    set_title(f"walsender {session.user} {session.host}" + ("" if session.local else f"({session.port})"))
    e = me.entry
    if e is not None:
        e.changecount += 1
        e.backend_type = b"walsender"
        e.changecount += 1
    return WalSender(session).run()
