"""The WAL receiver (repl/walreceiver.c, walreceiverfuncs.c): streams WAL from the primary into
pg_wal for the startup process to replay.

What it does
- WALRCV-1 (`request_streaming`, run by the startup process): STOPPED → STARTING plus
  PMSIGNAL_START_WALRECEIVER; WAITING → RESTARTING plus the walreceiver's latch. The start point
  is rounded down to a segment boundary.
- WALRCV-2/3 at start: a walreceiver that finds the state STOPPED or STOPPING exits 1 without
  connecting; STARTING → STREAMING; a STARTING that nobody took up within 10 s is forced back to
  STOPPED (`running()`, used by the startup process).
- Connects with primary_conninfo (node/replclient.py), checks the system identifier and the
  primary's timeline, fetches missing timeline history files, START_REPLICATION [SLOT] on the
  requested timeline; writes `w` payloads at their LSN, flushes when no more data is at hand
  (WALRCV-7: flushedUpto, receivedTLI, wakes the startup process, sends `r`), answers keepalives
  that ask for a reply, sends status every wal_receiver_status_interval, pings at half of
  wal_receiver_timeout and gives up at the timeout (WALRCV-6).
- End of timeline: CopyDone both ways, the next-timeline result, `replication terminated by
  primary server`, state WAITING until the startup process picks a new start (RESTARTING).
- WALRCV-4 signals: SIGHUP reload (a changed conninfo or slot ends this walreceiver; the startup
  process starts another), SIGTERM die (exit 1 at the next check), SIGQUIT exit 2, SIGUSR1
  latch; the rest ignored. Handlers only set flags and the latch.
- WalRcvDie at exit: flush, state STOPPED, pid 0, latch pointer cleared, startup woken.

What it deliberately does not do: archive (archive_mode), hot_standby_feedback xmins, create
temporary slots, cascade.

Shared state: `shm.walrcv` (see node/ipc/shmem.py for the field owners); XLogCtl replay
position (read only).
"""

from __future__ import annotations

import os
import signal
import struct
import time
from pathlib import Path
from typing import Any

from node import elog, events, injection, wal
from node import protocol as P
from node.elog import PGError
from node.ipc.latch import WL_POSTMASTER_DEATH, set_latch
from node.ipc.lwlock import LWLockId
from node.ipc.pmsignal import send_pmsignal
from node.ipc.shmem import WALRCV_STATES
from node.proc import (
    count_signal,
    die_handler,
    historic_bug,
    install_handler,
    me,
    process_config_reload,
    reload_handler,
    report_signals,
    report_wait,
    report_wait_end,
    wake_handler,
)
from node.states import PMSignalReason

STOPPED, STARTING, STREAMING, WAITING, RESTARTING, STOPPING = range(6)
STARTUP_TIMEOUT_S = 10.0  # WALRCV-3


def _lsn(v: int) -> str:
    return P.format_lsn(v)


# -- the startup process's side (walreceiverfuncs.c) --------------------------------------------


def _set_state(w: Any, new: int) -> None:
    old = w.state
    if old != new:
        w.state = new
        elog.event(events.WALRCV_STATE, "DEBUG1", f"walreceiver state {WALRCV_STATES[old]} -> {WALRCV_STATES[new]}",
                   old=WALRCV_STATES[old], new=WALRCV_STATES[new])  # fmt: skip


def running(shm: Any, locks: Any) -> bool:
    """WalRcvRunning: STARTING for too long is forced to STOPPED (WALRCV-3)."""
    w = shm.walrcv
    if w.state == STARTING and time.time() - w.start_time > STARTUP_TIMEOUT_S:
        with locks.hold(LWLockId.WALRCV):
            if w.state == STARTING:
                _set_state(w, STOPPED)
    return w.state != STOPPED


def request_streaming(shm: Any, locks: Any, conninfo: str, slot: str, lsn: int, tli: int) -> None:
    """RequestXLogStreaming (WALRCV-1)."""
    w = shm.walrcv
    segsize = int(shm.xlog.segsize)
    start = lsn - lsn % segsize
    launch = False
    with locks.hold(LWLockId.WALRCV):
        if w.state in (STOPPED, WAITING):
            w.changecount += 1
            if w.state == STOPPED:
                w.conninfo = conninfo.encode()[:511]
                w.slot_name = slot.encode()[:63]
                w.start_time = time.time()
                launch = True
            if w.receive_start_lsn == 0 or w.received_tli != tli:
                w.flushed_lsn = start
                w.written_lsn = start
                w.received_tli = tli
            w.receive_start_lsn = start
            w.receive_start_tli = tli
            w.startup_slot = me.slot
            w.changecount += 1
            _set_state(w, STARTING if launch else RESTARTING)
    elog.event(events.WALRCV_REQUEST, "DEBUG1", f"requesting streaming from {_lsn(start)} on timeline {tli}",
               lsn=_lsn(start), timeline=tli, state="starting" if launch else "restarting")  # fmt: skip
    if launch:
        send_pmsignal(shm, me.postmaster_pid, PMSignalReason.START_WALRECEIVER)
    elif w.latch_slot >= 0:
        set_latch(shm.procs[w.latch_slot])


def shutdown_walrcv(shm: Any, locks: Any, timeout: float = 10.0) -> None:
    """ShutdownWalRcv: STOPPING + SIGTERM, then wait for STOPPED."""
    w = shm.walrcv
    pid = 0
    with locks.hold(LWLockId.WALRCV):
        if w.state in (STREAMING, WAITING, RESTARTING):
            _set_state(w, STOPPING)
            pid = int(w.pid)
        elif w.state == STARTING:
            _set_state(w, STOPPED)
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    latch = me.latch
    while w.state != STOPPED and time.monotonic() < deadline:
        if latch is not None:
            latch.reset()
            latch.wait(0.05)
        else:
            time.sleep(0.05)


# -- the walreceiver process ----------------------------------------------------------------------


def _term_with_work(signum: int, frame: Any) -> None:
    """signal_handler_work: the [13] handler that could exit from inside the handler."""
    count_signal(signum)
    from node.proc import proc_exit

    proc_exit(1)


def _quit(signum: int, frame: Any) -> None:
    os._exit(2)


class WalReceiver:
    def __init__(self) -> None:
        self.shm = me.shm
        self.w = me.shm.walrcv
        self.segsize = int(me.shm.xlog.segsize)
        self.datadir = Path(me.datadir)
        self.writer: wal.WalWriter | None = None
        self.writer_tli = 0
        self.conn: Any = None
        self.written = 0
        self.flushed = 0
        self.last_recv = time.monotonic()
        self.last_reply = 0.0
        self.ping_sent = False
        self.send_error: str | None = None

    def check_interrupts(self) -> None:
        report_signals()
        p = me.pending
        if p.proc_die:
            raise elog.fatal("terminating walreceiver process due to administrator command", "57P01")
        if me.latch is not None and not me.latch.postmaster_alive():
            raise SystemExit(1)
        if process_config_reload():
            if str(me.guc.get("primary_conninfo")) != self.w.conninfo.decode() or \
                    str(me.guc.get("primary_slot_name")) != self.w.slot_name.decode():  # fmt: skip
                # WALRCV-4: the startup process restarts the walreceiver with the new settings.
                raise elog.fatal("terminating walreceiver process due to change of primary_conninfo", "57P01")

    def _wait_sock(self, sock: Any, timeout: float) -> None:
        latch = me.latch
        assert latch is not None
        latch.watch_socket(sock)
        latch.reset()
        self.check_interrupts()
        rc = latch.wait(timeout, socket_readable=True)
        if rc & WL_POSTMASTER_DEATH:
            raise SystemExit(1)
        self.check_interrupts()

    def run(self) -> int:
        from node.replclient import ReplClientError, ReplConnection

        w = self.w
        with me.locks.hold(LWLockId.WALRCV):
            if w.state in (STOPPED, STOPPING):  # WALRCV-3
                return 1
            w.changecount += 1
            w.pid = me.pid
            w.latch_slot = me.slot
            w.ready_to_display = 0
            w.last_msg_send_time = w.last_msg_receipt_time = 0.0
            w.latest_end_lsn = 0
            w.latest_end_time = 0.0
            w.changecount += 1
            _set_state(w, STREAMING)
            start, tli = int(w.receive_start_lsn), int(w.receive_start_tli)
            conninfo = w.conninfo.decode()
            slot = w.slot_name.decode()
        me.exit_callbacks.append(self._die)
        injection.inject("walreceiver-before-connect")
        appname = str(me.guc.get("cluster_name") or "") or "walreceiver"
        try:
            conn = ReplConnection(conninfo, application_name=appname, wait=self._wait_sock)
            self.conn = conn
            conn.connect()
        except ReplClientError as e:
            raise elog.fatal(f"could not connect to the primary server: {e.message}", "08006") from None
        w.changecount += 1
        w.sender_host = conn.host.encode()[:63]
        w.sender_port = conn.port
        w.ready_to_display = 1
        w.changecount += 1
        try:
            res = conn.query("IDENTIFY_SYSTEM")
        except ReplClientError as e:
            raise elog.fatal(f"could not receive database system identifier and timeline ID from the primary "
                             f"server: {e.fields.get('M', e.message)}", "08006") from None  # fmt: skip
        sysid, primary_tli = int(res.rows[0][0] or 0), int(res.rows[0][1] or 0)
        if sysid != int(self.shm.xlog.system_identifier):
            raise elog.fatal("database system identifier differs between the primary and standby", "XX000",
                             detail=f"The primary's identifier is {sysid}, the standby's identifier is "
                             f"{int(self.shm.xlog.system_identifier)}.")  # fmt: skip
        first_stream = True
        while True:
            if primary_tli < tli:
                raise elog.fatal(f"highest timeline {primary_tli} of the primary is behind recovery timeline {tli}",
                                 "XX000")  # fmt: skip
            self._fetch_histories(tli, primary_tli)
            cmd = f"START_REPLICATION {'SLOT ' + chr(34) + slot + chr(34) + ' ' if slot else ''}" \
                  f"{_lsn(start)} TIMELINE {tli}"  # fmt: skip
            try:
                t = conn.start_copy(cmd)
            except ReplClientError as e:
                raise elog.fatal(f"could not start WAL streaming: {e.fields.get('M', e.message)}",
                                 e.sqlstate or "XX000",
                                 detail=e.fields.get("D")) from None  # fmt: skip
            if t != b"W":
                raise elog.fatal("unexpected response to START_REPLICATION", "08P01")
            # WalReceiverMain's first_stream: the second START_REPLICATION of one walreceiver
            # (after a timeline switch) is a restart, whatever the timelines
            elog.event(events.WALRCV_STREAMING, "LOG",
                       f"started streaming WAL from primary at {_lsn(start)} on timeline {tli}"
                       if first_stream else f"restarted WAL streaming at {_lsn(start)} on timeline {tli}",
                       lsn=_lsn(start), timeline=tli)  # fmt: skip
            first_stream = False
            self.written = self.flushed = start
            self._open_writer(tli)
            w.changecount += 1
            w.receive_start_lsn = start
            w.receive_start_tli = tli
            w.changecount += 1
            self._send_hs_feedback()
            self._send_reply(force=True)
            end = self._stream(tli)
            # End of the timeline: the primary has moved on.
            next_tli, _next_start = end
            elog.event(events.WALRCV_END, "LOG", "replication terminated by primary server",
                       detail=f"End of WAL reached on timeline {tli} at {_lsn(self.flushed)}.",
                       lsn=_lsn(self.flushed), timeline=tli)  # fmt: skip
            with me.locks.hold(LWLockId.WALRCV):
                w.changecount += 1
                w.end_of_timeline_lsn = self.flushed
                w.end_of_timeline_tli = tli
                w.next_tli = next_tli
                w.changecount += 1
                if w.state == STREAMING:
                    _set_state(w, WAITING)
            self._wake_startup()
            start, tli = self._wait_for_start_position()
            primary_tli = max(primary_tli, tli)

    def _fetch_histories(self, tli: int, primary_tli: int) -> None:
        """WalRcvFetchTimeLineHistoryFiles."""
        for t in range(max(2, tli), primary_tli + 1):
            path = self.datadir / wal.XLOGDIR / f"{t:08X}.history"
            if path.exists():
                continue
            elog.log("LOG", f"fetching timeline history file for timeline {t} from primary server")
            res = self.conn.query(f"TIMELINE_HISTORY {t}")
            if len(res.rows) != 1 or len(res.rows[0]) != 2:
                raise elog.fatal("unexpected result set after TIMELINE_HISTORY", "08P01")
            content = (res.rows[0][1] or "").encode()
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

    def _open_writer(self, tli: int) -> None:
        if self.writer is not None and self.writer_tli == tli:
            return
        if self.writer is not None:
            self.writer.sync()
            self.writer.close()
        self.writer = wal.WalWriter(self.datadir / wal.XLOGDIR, self.segsize, tli, self.segsize, 0,
                                    fsync=bool(me.guc.get("fsync")))  # fmt: skip
        self.writer_tli = tli

    def _wait_for_start_position(self) -> tuple[int, int]:
        """WalRcvWaitForStartPosition: WAITING until the startup process sets RESTARTING."""
        w = self.w
        latch = me.latch
        assert latch is not None
        latch.watch_socket(None)
        while True:
            latch.reset()
            self.check_interrupts()
            with me.locks.hold(LWLockId.WALRCV):
                if w.state == RESTARTING:
                    _set_state(w, STREAMING)
                    return int(w.receive_start_lsn), int(w.receive_start_tli)
                if w.state == STOPPING:
                    raise SystemExit(1)
            report_wait("Activity", "WalReceiverWaitStart")
            rc = latch.wait(1.0)
            report_wait_end()
            if rc & WL_POSTMASTER_DEATH:
                raise SystemExit(1)

    def _stream(self, tli: int) -> tuple[int, int]:
        """The receive loop. Returns (next timeline, its start) at the end of a timeline."""
        from node.replclient import ReplClientError

        conn = self.conn
        latch = me.latch
        assert latch is not None
        latch.watch_socket(conn.sock)
        w = self.w
        self.last_recv = time.monotonic()
        self.ping_sent = False
        while True:
            latch.reset()
            self.check_interrupts()
            injection.inject("walreceiver-loop")
            if w.state == STOPPING:
                raise SystemExit(1)
            got_any = False
            try:
                while True:
                    m = conn.poll()
                    if m is None:
                        break
                    got_any = True
                    t, body = m
                    if t == b"d":
                        self._process(body)
                    elif t == b"c":
                        # End of timeline: answer with CopyDone, read the next timeline.
                        self._flush()
                        conn.send_copy_done()
                        results = conn.read_results_after_copy()
                        for r in results:
                            if r.rows and len(r.rows[0]) == 2:
                                return int(r.rows[0][0] or 0), P.parse_lsn(r.rows[0][1] or "0/0")
                        return 0, 0
                    elif t == b"C":
                        # The primary stopped streaming (WALSND-6: `COPY 0` at its shutdown).
                        self._flush()
                        elog.event(events.WALRCV_END, "LOG", "replication terminated by primary server",
                                   detail=f"End of WAL reached on timeline {tli} at {_lsn(self.flushed)}.",
                                   lsn=_lsn(self.flushed), timeline=tli)  # fmt: skip
                        raise elog.fatal("could not send end-of-streaming message to primary: no COPY in progress",
                                         "08006")  # fmt: skip
                    elif t == b"E":
                        err = conn._error(body)
                        raise elog.fatal(f"could not receive data from WAL stream: {err.fields.get('M', '')}",
                                         err.sqlstate or "XX000")  # fmt: skip
                    elif t in (b"N", b"S"):
                        continue
                    else:
                        raise elog.fatal(f"unexpected message type {t!r} in WAL stream", "08P01")
                    if self.written - self.flushed >= 1024 * 1024:
                        self._flush()
            except ReplClientError as e:
                self._flush()
                raise elog.fatal(f"could not receive data from WAL stream: {e.message}", "08006") from None
            if self.send_error is not None and not got_any:
                # Nothing more to read and we cannot write: the connection is gone.
                raise elog.fatal(f"could not send data to WAL stream: {self.send_error}", "08006")
            if got_any:
                self.last_recv = time.monotonic()
                self.ping_sent = False
            # No more data at hand: flush what was written, tell the primary (XLogWalRcvFlush).
            if self.written > self.flushed:
                self._flush()
                self._send_reply(force=False)
            now = time.monotonic()
            timeout_ms = int(me.guc.get("wal_receiver_timeout"))
            wait = 1.0
            if timeout_ms > 0:
                deadline = self.last_recv + timeout_ms / 1000.0
                if now >= deadline:
                    elog.event(events.WALRCV_TIMEOUT, "ERROR", "terminating walreceiver due to timeout")
                    raise SystemExit(1)
                if not self.ping_sent and now >= self.last_recv + timeout_ms / 2000.0:
                    self._send_reply(force=True, request_reply=True)
                    self.ping_sent = True
                wait = min(wait, max(0.01, (self.last_recv + timeout_ms / 2000.0) - now)
                           if not self.ping_sent else max(0.01, deadline - now))  # fmt: skip
            if w.force_reply:
                w.force_reply = 0
                self._send_reply(force=True)
            status_s = int(me.guc.get("wal_receiver_status_interval"))
            if status_s > 0:
                if now - self.last_reply >= status_s:
                    self._send_reply(force=True)
                wait = min(wait, max(0.01, self.last_reply + status_s - now))
            report_wait("Activity", "WalReceiverMain")
            rc = latch.wait(wait, socket_readable=True)
            report_wait_end()
            if rc & WL_POSTMASTER_DEATH:
                raise SystemExit(1)

    def _process(self, body: bytes) -> None:
        kind = body[:1]
        now = time.time()
        if kind == b"w":
            if len(body) < 25:
                raise elog.fatal("invalid WAL message received from primary", "08P01")
            start, wal_end, send_time = struct.unpack_from("!QQq", body, 1)
            data = memoryview(body)[25:]
            if start != self.written:
                # XLogWalRcvWrite takes the primary's word for the position.
                self.written = start
            assert self.writer is not None
            self.writer.write_raw(start, data)
            self.written = start + len(data)
            self._note_message(wal_end, send_time, now)
        elif kind == b"k":
            if len(body) != 18:
                raise elog.fatal("invalid keepalive message received from primary", "08P01")
            wal_end, send_time, reply = struct.unpack_from("!Qq?", body, 1)
            self._note_message(wal_end, send_time, now)
            if reply:
                self._flush()
                self._send_reply(force=True)
        else:
            raise elog.fatal(f"invalid replication message type {body[:1]!r}", "08P01")

    def _note_message(self, wal_end: int, send_time: int, now: float) -> None:
        """ProcessWalSndrMessage: times and the primary's WAL end, under our seqlock."""
        w = self.w
        w.changecount += 1
        w.written_lsn = self.written
        w.last_msg_send_time = P.pg_epoch_us_to_unix(send_time)
        w.last_msg_receipt_time = now
        if wal_end > w.latest_end_lsn:
            w.latest_end_lsn = wal_end
            w.latest_end_time = P.pg_epoch_us_to_unix(send_time)
        w.changecount += 1

    def _flush(self) -> None:
        """XLogWalRcvFlush (WALRCV-7)."""
        if self.written <= self.flushed or self.writer is None:
            return
        injection.inject("walreceiver-before-flush")
        self.writer.sync()
        w = self.w
        w.changecount += 1
        w.flushed_lsn = self.written
        w.received_tli = self.writer_tli
        w.changecount += 1
        self.flushed = self.written
        self._wake_startup()

    def _wake_startup(self) -> None:
        slot = self.w.startup_slot
        if slot >= 0 and self.shm.procs[slot].pid:
            set_latch(self.shm.procs[slot])

    def _send_reply(self, *, force: bool, request_reply: bool = False) -> None:
        """XLogWalRcvSendReply: write, flush and apply positions, our clock, reply-requested."""
        if self.conn is None:
            return
        now = time.monotonic()
        apply = int(self.shm.xlog.replay_lsn)
        msg = b"r" + struct.pack(
            "!QQQqB", self.written, self.flushed, apply, P.pg_epoch_us(), 1 if request_reply else 0
        )
        self._send(msg)
        self.last_reply = now

    def _send(self, payload: bytes) -> None:
        """A failed send is not the end yet: the primary may have ended the stream (`COPY 0`)
        and closed the connection, with that message still unread in our socket buffer. The
        receive loop reads it (or the EOF) next and decides."""
        from node.replclient import ReplClientError

        try:
            self.conn.send_copy_data(payload)
        except ReplClientError as e:
            self.send_error = e.message

    def _send_hs_feedback(self) -> None:
        """PG15 sends one all-zero hot-standby feedback message even with the feature off."""
        self._send(b"h" + struct.pack("!qIIII", P.pg_epoch_us(), 0, 0, 0, 0))

    def _die(self, code: int) -> None:
        """WalRcvDie: flush, STOPPED, pid 0, latch pointer cleared, wake the startup process."""
        try:
            self._flush()
        except BaseException:
            pass
        w = self.w
        with me.locks.hold(LWLockId.WALRCV):
            _set_state(w, STOPPED)
            w.changecount += 1
            w.ready_to_display = 0
            w.latch_slot = -1
            w.pid = 0
            w.changecount += 1
        self._wake_startup()
        if self.conn is not None:
            try:
                self.conn.close()
            except BaseException:
                pass


def main() -> int:
    from node.proc import attach

    install_handler(signal.SIGHUP, reload_handler)
    install_handler(signal.SIGUSR1, wake_handler)
    install_handler(signal.SIGQUIT, _quit)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    install_handler(signal.SIGTERM, die_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    injection.inject("walreceiver-start")
    attach()
    if historic_bug("signal_handler_work"):
        install_handler(signal.SIGTERM, _term_with_work)
    try:
        return WalReceiver().run()
    except PGError as e:
        if e.severity == "ERROR":
            e.severity = "FATAL"  # a walreceiver has no error recovery: ERROR ends it
        elog.log(e.severity, e.message, sqlstate=e.sqlstate, detail=e.detail, hint=e.hint)
        return 1
