"""Client backends and dead-end children: one forked process per connection.

What it does (BS: BackendInitialize, ProcessStartupPacket; tcop/postgres.c: PostgresMain):
1. Reads the startup packet within authentication_timeout, answering SSLRequest and
   GSSENCRequest with `N`; a CancelRequest is looked up in the postmaster's child table as it was
   at fork (pid → key) and turned into SIGINT on that backend, as PostgreSQL 15 does.
2. Refuses with 57P03 before any authentication when the postmaster said it cannot accept
   connections (starting up, not consistent, hot standby off, shutting down, in crash recovery)
   and 53300 when the postmaster is out of child slots: these are the dead-end children.
3. InitProcess: attaches to shared memory and claims one of max_connections (53300 otherwise),
   checks pg_hba.conf (28000), the database (3D000), sends AuthenticationOk, the 13
   ParameterStatus values, BackendKeyData (real pid, random key) and ReadyForQuery.
4. Runs the simple- and extended-query protocol over node/sysquery.py until Terminate or EOF.

Interrupts (SIG-6: handlers only mark; CHECK_FOR_INTERRUPTS acts): SIGTERM → FATAL 57P01 at
the next check, including while idle; SIGINT → 57014 for a running statement, ignored while
idle; SIGHUP → reload at the next idle point; SIGQUIT → quickdie: a WARNING to the client
(57P02 for a crash, 57P01 for an immediate shutdown) and _exit(2), done inside the handler as
PostgreSQL's quickdie does, because the process must die even while blocked; postmaster death →
FATAL at the next wait (CRASH-10).

A connection with `replication=true` turns into a walsender after authentication
(node/walsender.py); `replication=database` (logical) is refused with 0A000.

What it deliberately does not do: SQL (node/statements.py, node/sqlexec.py) or the
replication protocol (node/walsender.py).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from node import elog, events, injection
from node import protocol as P
from node.elog import PGError
from node.ipc.latch import WL_POSTMASTER_DEATH, WL_SOCKET_READABLE
from node.proc import (
    attach,
    count_signal,
    install_handler,
    me,
    process_config_reload,
    report_activity,
    report_signals,
    report_wait,
    report_wait_end,
)
from node.sqlexec import SqlOwner
from node.states import ActivityState, BackendKind, QuitReason

# canAcceptConnections results (PM: CAC_state)
CAC_OK = "ok"
CAC_STARTUP = "startup"
CAC_SHUTDOWN = "shutdown"
CAC_RECOVERY = "recovery"
CAC_NOTCONSISTENT = "notconsistent"
CAC_NOTHOTSTANDBY = "nothotstandby"
CAC_TOOMANY = "toomany"

_sending = False  # quickdie must not write into a half-sent message


class Conn:
    """Buffered protocol I/O on the client socket, waiting through the latch."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()
        self.reader = P.MessageReader()
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.out += data

    def flush(self) -> None:
        global _sending
        if not self.out:
            return
        data = bytes(self.out)
        self.out.clear()
        _sending = True
        try:
            self.sock.sendall(data)
        except OSError:
            raise SystemExit(0) from None  # client gone: like PostgreSQL, exit quietly
        finally:
            _sending = False

    def recv_some(self, deadline: float | None, on_idle: Any) -> bytes:
        """Wait for socket data, handling interrupts at each wake (ProcessClientReadInterrupt)."""
        latch = me.latch
        assert latch is not None
        while True:
            latch.reset()
            on_idle()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if deadline is not None and timeout == 0:
                raise TimeoutError
            report_wait("Client", "ClientRead")
            rc = latch.wait(timeout, socket_readable=True)
            report_wait_end()
            if rc & WL_POSTMASTER_DEATH:
                raise elog.fatal("terminating connection due to unexpected postmaster exit", "57P01")
            if rc & WL_SOCKET_READABLE:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                return data

    def read_exact(self, n: int, deadline: float | None, on_idle: Any) -> bytes:
        while len(self.buf) < n:
            data = self.recv_some(deadline, on_idle)
            if not data:
                raise EOFError
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def next_message(self, on_idle: Any) -> tuple[bytes, bytes]:
        if self.buf:
            self.reader.feed(self.buf)
            self.buf = b""
        while True:
            m = self.reader.next_message()
            if m is not None:
                return m
            self.flush()  # only before we would block: one send per flight (pq_flush at ReadCommand)
            data = self.recv_some(None, on_idle)
            if not data:
                raise EOFError
            self.reader.feed(data)


def error_fields(e: PGError, severity: str | None = None) -> P.ErrorFields:
    return P.ErrorFields(
        severity=severity or e.severity, sqlstate=e.sqlstate, message=e.message, detail=e.detail,
        hint=e.hint, position=e.position,
    )  # fmt: skip


# -- signal handlers ----------------------------------------------------------------------------


def _die(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.pending.proc_die = True
    me.pending.interrupt = True
    me.latch.set()  # type: ignore[union-attr]


def _cancel(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.pending.query_cancel = True
    me.pending.interrupt = True
    me.latch.set()  # type: ignore[union-attr]


def _hup(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.pending.config_reload = True
    me.latch.set()  # type: ignore[union-attr]


def _usr1(signum: int, frame: Any) -> None:
    count_signal(signum)
    me.latch.set()  # type: ignore[union-attr]


_client_sock: socket.socket | None = None


def _quickdie(signum: int, frame: Any) -> None:
    """CRASH-6. Runs in the handler on purpose (PostgreSQL's quickdie does too): the process
    must leave now, and nothing it would do at a check point is safe after a crash."""
    reason = me.shm.quit_reason if me.shm is not None else QuitReason.NOT_SENT
    if reason == QuitReason.FOR_CRASH:
        fields = P.ErrorFields(
            severity="WARNING", sqlstate="57P02",
            message="terminating connection because of crash of another server process",
            detail="The postmaster has commanded this server process to roll back the current transaction "
            "and exit, because another server process exited abnormally and possibly corrupted shared memory.",
            hint="In a moment you should be able to reconnect to the database and repeat your command.",
        )  # fmt: skip
    elif reason == QuitReason.FOR_STOP:
        fields = P.ErrorFields(severity="WARNING", sqlstate="57P01",
                               message="terminating connection due to immediate shutdown command")  # fmt: skip
    else:
        fields = P.ErrorFields(severity="WARNING", sqlstate="57P01",
                               message="terminating connection because of unexpected SIGQUIT signal")  # fmt: skip
    if _client_sock is not None and not _sending:
        try:
            _client_sock.setblocking(False)
            _client_sock.send(P.notice_response(fields))
        except OSError:
            pass
    os._exit(2)


def install_signals() -> None:
    install_handler(signal.SIGTERM, _die)
    install_handler(signal.SIGINT, _cancel)
    install_handler(signal.SIGHUP, _hup)
    install_handler(signal.SIGUSR1, _usr1)
    install_handler(signal.SIGQUIT, _quickdie)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


# -- startup ------------------------------------------------------------------------------------


def _startup_die_check() -> None:
    """During authentication a SIGTERM ends the process at once (process_startup_packet_die)."""
    if me.pending.proc_die:
        raise SystemExit(1)


def read_startup_packet(conn: Conn, deadline: float) -> P.StartupPacket | None:
    """Returns None when the client went away before sending anything complete."""
    while True:
        try:
            first = conn.read_exact(4, deadline, _startup_die_check)
        except EOFError:
            return None  # PostgreSQL is silent about a connection that sends nothing
        try:
            length = P.read_startup_length(first)
            body = conn.read_exact(length - 4, deadline, _startup_die_check)
        except EOFError:
            elog.log("LOG", "incomplete startup packet", sqlstate="08P01")
            return None
        pkt = P.parse_startup_packet(body)
        if pkt.kind in ("ssl", "gss"):
            conn.send(P.SSL_NOT_SUPPORTED)
            conn.flush()
            continue
        return pkt


def process_cancel(pkt: P.StartupPacket, cancel_keys: dict[int, int]) -> None:
    key = cancel_keys.get(pkt.cancel_pid)
    if key is None:
        elog.log("LOG", f"PID {pkt.cancel_pid} in cancel request did not match any process")
        return
    import hmac

    if not hmac.compare_digest(key.to_bytes(4, "big"), (pkt.cancel_key & 0xFFFFFFFF).to_bytes(4, "big")):
        elog.log("LOG", f"wrong key in cancel request for process {pkt.cancel_pid}")
        return
    elog.event(events.CANCEL, "DEBUG2", f"processing cancel request: sending SIGINT to process {pkt.cancel_pid}",
               target_pid=pkt.cancel_pid)  # fmt: skip
    try:
        os.kill(pkt.cancel_pid, signal.SIGINT)
    except ProcessLookupError:
        pass


def cac_error(cac: str) -> PGError:
    if cac == CAC_STARTUP:
        return elog.fatal("the database system is starting up", "57P03")
    if cac == CAC_SHUTDOWN:
        return elog.fatal("the database system is shutting down", "57P03")
    if cac == CAC_NOTCONSISTENT:
        return elog.fatal("the database system is not yet accepting connections", "57P03",
                          detail="Consistent recovery state has not been yet reached.")  # fmt: skip
    if cac == CAC_NOTHOTSTANDBY:
        return elog.fatal("the database system is not accepting connections", "57P03",
                          detail="Hot standby mode is disabled.")  # fmt: skip
    if cac == CAC_RECOVERY:
        return elog.fatal("the database system is in recovery mode", "57P03")
    if cac == CAC_TOOMANY:
        return elog.fatal("sorry, too many clients already", "53300")
    raise AssertionError(cac)


def send_fatal(conn: Conn, e: PGError) -> None:
    try:
        conn.send(P.error_response(error_fields(e, "FATAL")))
        conn.flush()
    except SystemExit:
        pass


def main(sock: socket.socket, addr: Any, cac: str, cancel_keys: dict[int, int], hba_rules: list[Any],
         cancel_key: int) -> int:  # fmt: skip
    """Entry point of a forked connection child (client backend or dead-end child)."""
    global _client_sock
    _client_sock = sock
    install_signals()
    if sock.family != socket.AF_UNIX:
        # As PostgreSQL's StreamConnection does: without it, Nagle holds each reply of a
        # pipelined extended-query flight until the client's delayed ACK (~40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    conn = Conn(sock)
    me.latch.watch_socket(sock)  # type: ignore[union-attr]
    local = sock.family == socket.AF_UNIX
    host = "[local]" if local else str(addr[0])
    port = 0 if local else int(addr[1])
    elog.ctx.remote = host if local else f"{host}({port})"
    dead_end = me.kind is BackendKind.DEAD_END
    injection.inject(f"{me.kind.point_prefix}-start")
    deadline = time.monotonic() + float(me.guc.get("authentication_timeout"))
    try:
        try:
            pkt = read_startup_packet(conn, deadline)
        except TimeoutError:
            return 1  # authentication_timeout: exit quietly, as PostgreSQL does
        if pkt is None:
            return 0
        if pkt.kind == "cancel":
            process_cancel(pkt, cancel_keys)
            return 0
        if P.needs_negotiation(pkt):
            conn.send(P.negotiate_protocol_version(pkt))
        if me.guc.get("log_connections"):
            elog.log("LOG", f"connection received: host={host}" + ("" if local else f" port={port}"))
        if cac != CAC_OK:
            elog.event(events.CONNECTION_REFUSED, "DEBUG1", f"connection refused: {cac}", reason=cac)
            raise cac_error(cac)
        if dead_end:
            raise AssertionError("dead-end child with CAC_OK")
        return Session(conn, pkt, host, port, local, hba_rules, cancel_key).run()
    except P.ProtocolViolation as e:
        err = elog.fatal(e.message, e.sqlstate, hint=e.hint)
        elog.log("FATAL", e.message, sqlstate=e.sqlstate)
        send_fatal(conn, err)
        return 1
    except PGError as e:
        if e.severity == "PANIC":
            raise  # node/launch.py logs it and aborts: the postmaster must see a crash (CRASH-1)
        if e.severity == "ERROR":
            e.severity = "FATAL"
        elog.log(e.severity, e.message, sqlstate=e.sqlstate, detail=e.detail, hint=e.hint)
        send_fatal(conn, e)
        return 1
    except EOFError:
        return 0


class Session(SqlOwner):
    """A client session after startup: GUCs, transaction state, the query loop."""

    def __init__(self, conn: Conn, pkt: P.StartupPacket, host: str, port: int, local: bool,
                 hba_rules: list[Any], cancel_key: int) -> None:  # fmt: skip
        self.conn = conn
        self.pkt = pkt
        self.host = host
        self.port = port
        self.local = local
        self.hba_rules = hba_rules
        self.cancel_key = cancel_key
        self.guc = me.guc
        self.user = pkt.user
        self.database = pkt.database
        self.tx = "I"  # ReadyForQuery status: I, T, E
        self.xact_start = 0.0
        self.stmt_start = 0.0
        self.stmt_deadline: float | None = None
        self.prepared: dict[str, tuple[str, list[int]]] = {}
        self.portals: dict[str, tuple[str, list[Any], list[int]]] = {}
        self.ignore_till_sync = False
        self.portal_oids: dict[str, list[int]] = {}
        self.param_oids: list[int] = []  # declared parameter types of the running statement
        self.portal_results: dict[str, Any] = {}  # SQL-layer portals run at Describe
        self.sql: Any = None  # node.sqlexec.SqlSession, opened at the first statement needing the heap
        self.in_hot_standby = False

    # -- startup ---------------------------------------------------------------------------------

    def init_process(self) -> None:
        """InitProcess + InitPostgres: attach, claim a connection, authenticate."""
        from node.ipc.lwlock import LWLockId

        attach()
        replication = self.pkt.replication
        if not replication:  # walsenders have their own pool (max_wal_senders), as in PG 12+
            with me.locks.hold(LWLockId.PROC_ARRAY):
                used = sum(1 for e in me.shm.procs if e.pid and e.counted)
                if used >= int(self.guc.get("max_connections")):
                    raise elog.fatal("sorry, too many clients already", "53300")
                me.entry.counted = 1
        e = me.entry
        e.changecount += 1
        e.client_addr = b"" if self.local else self.host.encode()[:47]
        e.client_port = self.port
        e.cancel_key = self.cancel_key
        e.changecount += 1
        from node import hba

        if replication == "logical":
            raise elog.fatal("logical replication connections are not supported by pgbed", "0A000")
        rule = hba.find_rule(self.hba_rules, local=self.local, address=None if self.local else self.host,
                             user=self.user, database=self.database, replication=bool(replication))  # fmt: skip
        enc = "no encryption"
        where = "" if self.local else f'host "{self.host}", '
        what = "replication connection" if replication else f'database "{self.database}"'
        if rule is None:
            if replication:
                msg = f'no pg_hba.conf entry for replication connection from {where}user "{self.user}", {enc}'
            else:
                msg = f'no pg_hba.conf entry for {where}user "{self.user}", {what}, {enc}'
            raise elog.fatal(msg, "28000")
        if rule.method == "reject":
            if replication:
                msg = f'pg_hba.conf rejects replication connection for {where}user "{self.user}", {enc}'
            else:
                msg = f'pg_hba.conf rejects connection for {where}user "{self.user}", {what}, {enc}'
            raise elog.fatal(msg, "28000")
        role = self._authenticate(rule)
        from node import auth

        auth.check_login(role, self.user)  # InitializeSessionUserId: the role must exist and may log in
        self.guc.set_internal("is_superuser", "on" if role is not None and role.rolsuper else "off")
        if replication and not (role is not None and role.rolsuper):
            # The REPLICATION attribute is not stored (node/auth.py), so only superusers qualify.
            raise elog.fatal("must be superuser or replication role to start walsender", "42501")
        if self.database != "postgres" and not replication:
            raise elog.fatal(f'database "{self.database}" does not exist', "3D000")
        from node.guc import GucError

        startup_settings = [(k, v) for k, v in self.pkt.params.items()
                            if k not in ("user", "database", "options", "replication")]  # fmt: skip
        for name, value in startup_settings + self.pkt.option_settings:
            try:
                self.guc.set_startup_option(name, value)
            except GucError as err:
                raise elog.fatal(err.message, err.sqlstate, detail=err.detail, hint=err.hint) from None
        self.guc.set_internal("session_authorization", self.user)
        self.in_hot_standby = bool(me.shm.xlog.in_recovery)
        self.guc.set_internal("in_hot_standby", "on" if self.in_hot_standby else "off")
        self.guc.set_internal("default_transaction_read_only", "on" if me.shm.xlog.in_recovery else "off")
        elog.ctx.user = self.user
        elog.ctx.dbname = self.database
        self._sync_entry_names()
        if self.guc.get("log_connections"):
            elog.log("LOG", f"connection authorized: user={self.user} database={self.database} "
                     f"application_name={self.guc.show('application_name')}")  # fmt: skip

    def _lookup_role(self) -> Any:
        """The role's row from the heap (read-only: hot standbys authenticate too)."""
        from node import auth

        return auth.lookup_role(me.datadir, self.user)

    def _authenticate(self, rule: Any) -> Any:
        """ClientAuthentication for the matched pg_hba.conf rule; returns the role row (or None)."""
        from node import auth

        role = self._lookup_role()
        if rule.method == "trust":
            return role
        verifier, why = auth.role_password(role, self.user)
        nonce = int(me.shm.xlog.system_identifier).to_bytes(8, "big")  # per cluster, for the mock exchange
        ex = auth.start_exchange(rule.method, verifier, self.user, log_detail=why,
                                 password_encryption=str(self.guc.show("password_encryption")),
                                 mock_nonce=nonce)  # fmt: skip
        c = self.conn
        try:
            c.send(ex.initial_message())
            c.flush()
            c.reader.max_length = ex.max_message_length
            while not ex.done:
                try:
                    mtype, body = c.next_message(_startup_die_check)
                except EOFError:
                    raise SystemExit(0) from None  # the client gave up (psql asking for a password)
                ex.expect_message(mtype)
                out = ex.handle(body)
                if out:
                    c.send(out)
                    c.flush()
        except auth.AuthFailed as e:
            elog.log("FATAL", e.message, sqlstate=e.sqlstate,
                     detail=auth.hba_log_detail(e.log_detail, rule.line_number, rule.raw_line))  # fmt: skip
            send_fatal(c, elog.fatal(e.message, e.sqlstate, detail=e.detail))
            raise SystemExit(1) from None
        except P.ProtocolViolation as pv:
            raise elog.fatal(pv.message, pv.sqlstate) from None
        finally:
            c.reader.max_length = P.MAX_MESSAGE_LENGTH
        return role

    def _sync_entry_names(self) -> None:
        e = me.entry
        e.changecount += 1
        e.usename = self.user.encode()[:63]
        e.datname = self.database.encode()[:63]
        e.application_name = str(self.guc.show("application_name")).encode()[:63]
        e.changecount += 1
        elog.ctx.application_name = str(self.guc.show("application_name"))

    def title(self, what: str) -> None:
        from node.launch import set_title

        if what == getattr(self, "_title", None):
            return  # setproctitle costs ~10 us: not again for the same text
        self._title = what
        set_title(f"{self.user} {self.database} {self.host}" + ("" if self.local else f"({self.port})") + f" {what}")

    def run(self) -> int:
        self.init_process()
        c = self.conn
        c.send(P.authentication_ok())
        for name, value in self.guc.reported().items():
            c.send(P.parameter_status(name, value))
        self.guc.take_report_changes()
        c.send(P.backend_key_data(me.pid, self.cancel_key))
        injection.inject("backend-after-auth")
        if self.pkt.replication:
            from node import walsender

            return walsender.run(self)
        send_ready = True
        while True:
            if send_ready:
                self._report_param_changes()
                c.send(P.ready_for_query(self.tx))  # type: ignore[arg-type]
                send_ready = False
            state = {"I": ActivityState.IDLE, "T": ActivityState.IDLE_IN_TRANSACTION,
                     "E": ActivityState.IDLE_IN_TRANSACTION_ABORTED}[self.tx]  # fmt: skip
            report_activity(state)
            self.title({"I": "idle", "T": "idle in transaction", "E": "idle in transaction (aborted)"}[self.tx])
            me.pending.query_cancel = False  # a cancel that arrives while idle is ignored
            try:
                mtype, body = c.next_message(self._idle_interrupts)
            except EOFError:
                if self.tx != "I":
                    elog.log("LOG", "unexpected EOF on client connection with an open transaction", sqlstate="08P01")
                return 0
            t = mtype.decode()
            if t == "X":
                return 0
            if self.ignore_till_sync and t != "S":
                continue
            self._check_recovery_ended()
            try:
                injection.inject("backend-loop")
                try:
                    send_ready = self.dispatch(t, body)
                except P.ProtocolViolation as pv:
                    # A broken frame ends the connection (08P01, FATAL); a well-formed message
                    # with bad contents (invalid UTF-8: 22021, a bad binary parameter: 22P03) is an
                    # ordinary ERROR, as in PostgreSQL.
                    if pv.sqlstate == "08P01":
                        raise
                    raise PGError(pv.message, pv.sqlstate, hint=pv.hint) from None
            except PGError as e:
                if e.severity in ("FATAL", "PANIC"):
                    raise
                self._report_error(e)
                if t in "PBDECH":
                    self.ignore_till_sync = True
                else:
                    send_ready = True

    def _check_recovery_ended(self) -> None:
        if self.in_hot_standby and not me.shm.xlog.in_recovery:
            # Recovery ended under this session (promotion): in_hot_standby goes off with a
            # ParameterStatus, and the session may write without reconnecting.
            self.in_hot_standby = False
            self.guc.set_internal("in_hot_standby", "off")
            self.guc.set_internal("default_transaction_read_only", "off")

    def _report_param_changes(self) -> None:
        self._check_recovery_ended()
        for name, value in self.guc.take_report_changes().items():
            self.conn.send(P.parameter_status(name, value))
        if self.guc.show("application_name") != elog.ctx.application_name:
            self._sync_entry_names()

    def _report_error(self, e: PGError, query: str | None = None) -> None:
        elog.log("ERROR", e.message, sqlstate=e.sqlstate, detail=e.detail, hint=e.hint, statement=query)
        self.conn.send(P.error_response(error_fields(e)))
        if self.tx == "T":
            self.tx = "E"

    def _idle_interrupts(self) -> None:
        report_signals()
        p = me.pending
        if p.proc_die:
            raise elog.fatal("terminating connection due to administrator command", "57P01")
        p.query_cancel = False
        process_config_reload()

    def check_for_interrupts(self) -> None:
        """CHECK_FOR_INTERRUPTS while a statement runs."""
        p = me.pending
        if p.proc_die:
            raise elog.fatal("terminating connection due to administrator command", "57P01")
        if me.latch is not None and not me.latch.postmaster_alive():
            raise elog.fatal("terminating connection due to unexpected postmaster exit", "57P01")
        if p.query_cancel:
            p.query_cancel = False
            raise PGError("canceling statement due to user request", "57014")
        if self.stmt_deadline is not None and time.monotonic() >= self.stmt_deadline:
            raise PGError("canceling statement due to statement timeout", "57014")

    def sleep(self, seconds: float, wait_event: tuple[str, str] = ("Timeout", "PgSleep")) -> None:
        """pg_sleep: a latch wait, interruptible by cancel, terminate and postmaster death."""
        end = time.monotonic() + seconds
        report_wait(*wait_event)
        try:
            self._sleep_until(end)
        finally:
            report_wait_end()

    def _sleep_until(self, end: float) -> None:
        latch = me.latch
        assert latch is not None
        while True:
            latch.reset()
            self.check_for_interrupts()
            left = end - time.monotonic()
            if left <= 0:
                return
            if self.stmt_deadline is not None:
                left = min(left, max(0.0, self.stmt_deadline - time.monotonic()))
            rc = latch.wait(left)
            if rc & WL_POSTMASTER_DEATH:
                raise elog.fatal("terminating connection due to unexpected postmaster exit", "57P01")

    def notice(self, severity: str, message: str, sqlstate: str = "01000") -> None:
        if severity == "WARNING":
            elog.log("WARNING", message, sqlstate=sqlstate)
        self.conn.send(P.notice_response(P.ErrorFields(severity=severity, sqlstate=sqlstate, message=message)))

    def set_guc(self, name: str, value: str | None, *, local: bool = False) -> None:
        from node.guc import GucError

        try:
            if local and self.tx == "I":
                self.notice("WARNING", "SET LOCAL can only be used in transaction blocks", "25P01")
                return
            self.guc.set(name, value, local=local)
        except GucError as e:
            raise PGError(e.message, e.sqlstate, detail=e.detail, hint=e.hint) from None

    # -- dispatch --------------------------------------------------------------------------------

    def dispatch(self, t: str, body: bytes) -> bool:
        """Handle one frontend message; return True when ReadyForQuery is due."""
        c = self.conn
        if t == "Q":
            self.simple_query(P.parse_query(body))
            return True
        if t == "P":
            msg = P.parse_parse(body)
            from node.statements import split_statements

            if len(split_statements(msg.query)) > 1:
                raise PGError("cannot insert multiple commands into a prepared statement", "42601")
            self.prepared[msg.name] = (msg.query, list(msg.param_oids))
            c.send(P.parse_complete())
            return False
        if t == "B":
            b = P.parse_bind(body)
            if b.statement not in self.prepared:
                raise PGError(f'prepared statement "{b.statement}" does not exist', "26000")
            query, oids = self.prepared[b.statement]
            params = [P.decode_param(v, oids[i] if i < len(oids) else 0, b.param_format(i), i + 1)
                      for i, v in enumerate(b.params)]  # fmt: skip
            self.portals[b.portal] = (query, params, list(b.result_formats))
            self.portal_oids[b.portal] = oids
            c.send(P.bind_complete())
            return False
        if t == "D":
            kind, name = P.parse_describe(body)
            if kind == "S":
                if name not in self.prepared:
                    raise PGError(f'prepared statement "{name}" does not exist', "26000")
                query, oids = self.prepared[name]
                c.send(P.parameter_description(oids))
                self.param_oids = oids
                self._describe(query, [])
            else:
                if name not in self.portals:
                    raise PGError(f'portal "{name}" does not exist', "34000")
                query, params, fmts = self.portals[name]
                self.param_oids = self.portal_oids.get(name, [])
                self._describe(query, params, portal=name, formats=fmts)
            return False
        if t == "E":
            portal, max_rows = P.parse_execute(body)
            if portal not in self.portals:
                raise PGError(f'portal "{portal}" does not exist', "34000")
            query, params, fmts = self.portals[portal]
            self.param_oids = self.portal_oids.get(portal, [])
            try:
                self.execute(query, params, send_description=False, result_formats=fmts, portal=portal,
                             max_rows=max_rows)  # fmt: skip
            finally:
                self.param_oids = []
            return False
        if t == "C":
            kind, name = P.parse_close(body)
            (self.prepared if kind == "S" else self.portals).pop(name, None)
            c.send(P.close_complete())
            return False
        if t == "S":
            self.ignore_till_sync = False
            self.portals.pop("", None)
            self.portal_results.pop("", None)
            if self.tx == "I":  # named portals live until the end of their transaction
                self.portal_results.clear()
            return True
        if t == "H":
            c.flush()
            return False
        if t in ("d", "c", "f"):
            return False  # COPY data outside COPY: ignored, as PostgreSQL does
        raise elog.fatal(f"invalid frontend message type {ord(t)}", "08P01")

    def _describe(self, query: str, params: list[Any], *, portal: str | None = None,
                  formats: list[int] | None = None) -> None:  # fmt: skip
        from node.statements import describe

        cols = describe(self, query, params, portal)
        if formats:
            cols = [P.Column(c.name, c.type_oid, c.typlen, c.typmod, formats[0] if len(formats) == 1 else formats[i])
                    for i, c in enumerate(cols)]  # fmt: skip
        self.conn.send(P.row_description(cols) if cols else P.no_data())

    def simple_query(self, sql: str) -> None:
        from node.statements import split_statements

        stmts = split_statements(sql)
        if not stmts:
            self.conn.send(P.empty_query_response())
            return
        for stmt in stmts:
            try:
                self.execute(stmt, [], send_description=True, result_formats=[])
            except PGError as e:
                if e.severity in ("FATAL", "PANIC"):
                    raise
                self._report_error(e, stmt)
                return

    def execute(self, sql: str, params: list[Any], *, send_description: bool, result_formats: list[int],
                portal: str | None = None, max_rows: int = 0) -> None:  # fmt: skip
        from node.statements import run_statement

        self.stmt_start = time.time()
        timeout_ms = int(self.guc.get("statement_timeout"))
        self.stmt_deadline = time.monotonic() + timeout_ms / 1000.0 if timeout_ms > 0 else None
        report_activity(ActivityState.ACTIVE, sql, xact_start=self.xact_start or self.stmt_start)
        self.title(sql.split(None, 1)[0].upper() if sql.strip() else "idle")
        try:
            self.check_for_interrupts()
            run_statement(self, sql, params, send_description=send_description, result_formats=result_formats,
                          portal=portal, max_rows=max_rows)  # fmt: skip
        finally:
            self.stmt_deadline = None
            if self.tx == "I":
                self.xact_start = 0.0
                report_activity(ActivityState.IDLE, xact_start=0.0)
