"""The client side of a replication connection: what libpqwalreceiver gives PostgreSQL.

What it does: parses a libpq connection string (`key=value` with quoting, or a
`postgresql://` URI), connects over TCP or a Unix socket, sends the startup packet with
`replication=true`, authenticates (trust, password, md5, SCRAM-SHA-256 with server-signature
check), and then runs simple queries and the CopyBoth stream of START_REPLICATION. Used by the
walreceiver and by `pgbed basebackup`. All waiting goes through a caller-supplied `wait`
function, so a walreceiver keeps honouring its latch and signals while it connects.

What it deliberately does not do: SSL/GSS (the server answers `N` anyway), the extended query
protocol, target_session_attrs or multiple hosts (a standby has one primary).

Errors: `ReplClientError` carries the server's ErrorResponse fields, or a libpq-style message
("could not connect to server: ...", "server closed the connection unexpectedly").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from node import protocol as P


class ReplClientError(Exception):
    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}

    @property
    def sqlstate(self) -> str | None:
        return self.fields.get("C")


def parse_conninfo(text: str) -> dict[str, str]:
    """conninfo_parse / conninfo_uri_parse: keyword/value pairs (values may be single-quoted
    with backslash escapes), or a postgresql:// URI."""
    text = text.strip()
    if text.startswith(("postgresql://", "postgres://")):
        u = urlsplit(text)
        out: dict[str, str] = {}
        if u.hostname:
            out["host"] = unquote(u.hostname)
        if u.port:
            out["port"] = str(u.port)
        if u.username:
            out["user"] = unquote(u.username)
        if u.password:
            out["password"] = unquote(u.password)
        if u.path and u.path != "/":
            out["dbname"] = unquote(u.path[1:])
        # conninfo_uri_decode: %XX only ('+' stays a plus, unlike form decoding)
        for part in u.query.split("&"):
            if part:
                k, _, v = part.partition("=")
                out[unquote(k)] = unquote(v)
        return out
    out = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        j = i
        while j < n and text[j] not in "= \t\n":
            j += 1
        key = text[i:j]
        while j < n and text[j].isspace():
            j += 1
        if j >= n or text[j] != "=":
            raise ReplClientError(f'missing "=" after "{key}" in connection info string')
        j += 1
        while j < n and text[j].isspace():
            j += 1
        val = []
        if j < n and text[j] == "'":
            j += 1
            while True:
                if j >= n:
                    raise ReplClientError("unterminated quoted string in connection info string")
                ch = text[j]
                if ch == "\\" and j + 1 < n:
                    val.append(text[j + 1])
                    j += 2
                    continue
                if ch == "'":
                    j += 1
                    break
                val.append(ch)
                j += 1
        else:
            while j < n and not text[j].isspace():
                if text[j] == "\\" and j + 1 < n:
                    val.append(text[j + 1])
                    j += 2
                    continue
                val.append(text[j])
                j += 1
        out[key] = "".join(val)
        i = j
    return out


def quote_conninfo_value(v: str) -> str:
    if v and all(c.isalnum() or c in "._-/:" for c in v):
        return v
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pgpass_lookup(host: str, port: str, user: str) -> str | None:
    path = os.environ.get("PGPASSFILE") or os.path.join(os.path.expanduser("~"), ".pgpass")
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 5:
            continue
        h, p, _db, u, pw = parts[0], parts[1], parts[2], parts[3], ":".join(parts[4:])
        if h in ("*", host) and p in ("*", port) and u in ("*", user):
            return pw
    return None


@dataclass
class Result:
    columns: list[str]
    rows: list[list[str | None]]
    tag: str


class ReplConnection:
    def __init__(self, conninfo: str | dict[str, str], *, application_name: str = "walreceiver",
                 wait: Callable[[socket.socket, float], None] | None = None,
                 connect_timeout: float = 10.0, replication: str = "true") -> None:  # fmt: skip
        self.params = parse_conninfo(conninfo) if isinstance(conninfo, str) else dict(conninfo)
        self.application_name = self.params.get("application_name") or application_name
        self._wait = wait
        self.connect_timeout = float(self.params.get("connect_timeout") or connect_timeout)
        self.replication = replication
        self.sock: socket.socket | None = None
        self.reader = P.MessageReader()
        self.server_params: dict[str, str] = {}
        self.host = self.params.get("host") or os.environ.get("PGHOST") or "/var/run/postgresql"
        self.port = int(self.params.get("port") or os.environ.get("PGPORT") or 5432)
        self.user = self.params.get("user") or os.environ.get("PGUSER") or _os_user()
        self.backend_pid = 0
        self.pre_copy: list[tuple[bytes, bytes]] = []

    # -- connection -----------------------------------------------------------------------------

    def connect(self) -> None:
        deadline = time.monotonic() + self.connect_timeout
        try:
            if self.host.startswith("/"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                target: Any = os.path.join(self.host, f".s.PGSQL.{self.port}")
            else:
                infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
                fam, _, _, _, target = infos[0]
                sock = socket.socket(fam, socket.SOCK_STREAM)
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.connect(target)
        except OSError as e:
            where = (f'socket "{target}"' if self.host.startswith("/") else
                     f'server at "{self.host}", port {self.port}')  # fmt: skip
            raise ReplClientError(f"connection to {where} failed: {e.strerror or e}") from None
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        params = {"user": self.user, "database": self.params.get("dbname") or "replication",
                  "replication": self.replication, "application_name": self.application_name}  # fmt: skip
        body = struct.pack("!I", 196608) + b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                                                    for k, v in params.items()) + b"\0"  # fmt: skip
        self._send(struct.pack("!I", len(body) + 4) + body)
        self._authenticate(deadline)
        while True:
            t, m = self._next(deadline)
            if t == b"S":
                k, _, rest = m.partition(b"\0")
                self.server_params[k.decode()] = rest.rstrip(b"\0").decode()
            elif t == b"K":
                self.backend_pid = struct.unpack("!I", m[:4])[0]
            elif t == b"Z":
                return
            elif t == b"E":
                raise self._error(m)
            elif t == b"N":
                continue

    def _authenticate(self, deadline: float) -> None:
        password = self.params.get("password") or os.environ.get("PGPASSWORD")
        scram: dict[str, Any] = {}
        while True:
            t, m = self._next(deadline)
            if t == b"E":
                raise self._error(m)
            if t != b"R":
                raise ReplClientError(f"expected authentication request from server, but received {t!r}")
            code = struct.unpack("!I", m[:4])[0]
            if code == 0:
                return
            if password is None:
                password = _pgpass_lookup(self.host, str(self.port), self.user)
            if code in (3, 5, 10) and password is None:
                raise ReplClientError("fe_sendauth: no password supplied")
            if code == 3:
                self._send_msg(b"p", password.encode() + b"\0")  # type: ignore[union-attr]
            elif code == 5:
                salt = m[4:8]
                inner = hashlib.md5(password.encode() + self.user.encode()).hexdigest()  # type: ignore[union-attr]
                outer = "md5" + hashlib.md5(inner.encode() + salt).hexdigest()
                self._send_msg(b"p", outer.encode() + b"\0")
            elif code == 10:
                mechs = [x.decode() for x in m[4:].split(b"\0") if x]
                if "SCRAM-SHA-256" not in mechs:
                    raise ReplClientError("none of the server's SASL authentication mechanisms are supported")
                nonce = base64.b64encode(os.urandom(18)).decode()
                first_bare = f"n=,r={nonce}"
                scram.update(nonce=nonce, first_bare=first_bare)
                data = ("n,," + first_bare).encode()
                self._send_msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(data)) + data)
            elif code == 11:
                server_first = m[4:].decode()
                attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
                if not attrs["r"].startswith(scram["nonce"]):
                    raise ReplClientError("invalid SCRAM response (nonce mismatch)")
                from node.auth import saslprep

                prepared = saslprep(password)  # type: ignore[arg-type]  # libpq's scram_init: pg_saslprep
                raw = prepared if prepared is not None else password.encode()  # type: ignore[union-attr]
                salted = hashlib.pbkdf2_hmac("sha256", raw, base64.b64decode(attrs["s"]), int(attrs["i"]))
                without_proof = f"c=biws,r={attrs['r']}"
                auth_msg = f"{scram['first_bare']},{server_first},{without_proof}".encode()
                client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
                stored = hashlib.sha256(client_key).digest()
                sig = hmac.new(stored, auth_msg, hashlib.sha256).digest()
                proof = bytes(a ^ b for a, b in zip(client_key, sig, strict=True))
                server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
                scram["server_sig"] = hmac.new(server_key, auth_msg, hashlib.sha256).digest()
                self._send_msg(b"p", f"{without_proof},p={base64.b64encode(proof).decode()}".encode())
            elif code == 12:
                final = dict(kv.split("=", 1) for kv in m[4:].decode().split(","))
                if base64.b64decode(final.get("v", "")) != scram.get("server_sig"):
                    raise ReplClientError("invalid SCRAM server signature")
            else:
                raise ReplClientError(f"authentication method {code} not supported")

    # -- I/O ------------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        view = memoryview(data)
        while view:
            try:
                n = self.sock.send(view)
                view = view[n:]
            except (BlockingIOError, InterruptedError):
                self._do_wait(1.0, writable=True)
            except OSError as e:
                raise ReplClientError(f"could not send data to server: {e.strerror or e}") from None

    def _send_msg(self, t: bytes, body: bytes) -> None:
        self._send(t + struct.pack("!I", len(body) + 4) + body)

    def _do_wait(self, timeout: float, writable: bool = False) -> None:
        assert self.sock is not None
        if self._wait is not None and not writable:
            self._wait(self.sock, timeout)
        else:
            import select

            select.select([] if writable else [self.sock], [self.sock] if writable else [], [], timeout)

    def _fill(self) -> bool:
        """Read what is available; False if nothing was. Raises on EOF."""
        assert self.sock is not None
        try:
            data = self.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            raise ReplClientError(f"could not receive data from server: {e.strerror or e}") from None
        if not data:
            raise ReplClientError("server closed the connection unexpectedly\n\tThis probably means the server "
                                  "terminated abnormally\n\tbefore or while processing the request.")  # fmt: skip
        self.reader.feed(data)
        return True

    def poll(self) -> tuple[bytes, bytes] | None:
        """The next complete message if one is buffered or readable now, else None."""
        m = self.reader.next_message()
        if m is not None:
            return m
        while self._fill():
            m = self.reader.next_message()
            if m is not None:
                return m
        return None

    def _next(self, deadline: float | None) -> tuple[bytes, bytes]:
        while True:
            m = self.poll()
            if m is not None:
                return m
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ReplClientError("timeout expired")
            self._do_wait(1.0 if left is None else min(1.0, left))

    def _error(self, body: bytes) -> ReplClientError:
        fields: dict[str, str] = {}
        for part in body.split(b"\0"):
            if part:
                fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
        sev = fields.get("S", "ERROR")
        return ReplClientError(f"{sev}:  {fields.get('M', '')}", fields)

    # -- commands -------------------------------------------------------------------------------

    def query(self, sql: str, timeout: float | None = 60.0) -> Result:
        """A simple query returning at most one result set; raises on ErrorResponse."""
        self._send_msg(b"Q", sql.encode() + b"\0")
        deadline = None if timeout is None else time.monotonic() + timeout
        cols: list[str] = []
        rows: list[list[str | None]] = []
        tag = ""
        err: ReplClientError | None = None
        while True:
            t, m = self._next(deadline)
            if t == b"T":
                cols = _row_description(m)
            elif t == b"D":
                rows.append(_data_row(m))
            elif t == b"C":
                tag = m.rstrip(b"\0").decode()
            elif t == b"E":
                err = self._error(m)
            elif t == b"Z":
                if err is not None:
                    raise err
                return Result(cols, rows, tag)

    def start_copy(self, sql: str, timeout: float = 60.0) -> bytes:
        """Send a command that enters COPY mode; returns the response type (W, H, G)."""
        self._send_msg(b"Q", sql.encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            t, m = self._next(deadline)
            if t in (b"W", b"H", b"G"):
                return t
            if t == b"E":
                err = self._error(m)
                self._drain_until_ready(deadline)
                raise err
            if t in (b"T", b"D", b"C", b"N", b"S"):
                self.pre_copy.append((t, m))
                continue
            raise ReplClientError(f"unexpected message {t!r} before COPY")

    def _drain_until_ready(self, deadline: float) -> None:
        while True:
            try:
                t, _ = self._next(deadline)
            except ReplClientError:
                return
            if t == b"Z":
                return

    def send_copy_data(self, payload: bytes) -> None:
        self._send_msg(b"d", payload)

    def send_copy_done(self) -> None:
        self._send_msg(b"c", b"")

    def read_results_after_copy(self, timeout: float = 30.0) -> list[Result]:
        """After CopyDone both ways: the result sets until ReadyForQuery (end of timeline)."""
        deadline = time.monotonic() + timeout
        out: list[Result] = []
        cur = Result([], [], "")
        err = None
        while True:
            t, m = self._next(deadline)
            if t == b"T":
                cur = Result(_row_description(m), [], "")
            elif t == b"D":
                cur.rows.append(_data_row(m))
            elif t == b"C":
                cur.tag = m.rstrip(b"\0").decode()
                out.append(cur)
                cur = Result([], [], "")
            elif t == b"E":
                err = self._error(m)
            elif t == b"Z":
                if err is not None:
                    raise err
                return out

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.setblocking(True)
                self.sock.settimeout(0.2)
                self.sock.send(b"X\0\0\0\4")
            except OSError:
                pass
            self.sock.close()
            self.sock = None


def _row_description(m: bytes) -> list[str]:
    n = struct.unpack("!H", m[:2])[0]
    pos = 2
    cols = []
    for _ in range(n):
        end = m.index(b"\0", pos)
        cols.append(m[pos:end].decode())
        pos = end + 1 + 18
    return cols


def _data_row(m: bytes) -> list[str | None]:
    n = struct.unpack("!H", m[:2])[0]
    pos = 2
    out: list[str | None] = []
    for _ in range(n):
        ln = struct.unpack("!i", m[pos : pos + 4])[0]
        pos += 4
        if ln < 0:
            out.append(None)
        else:
            out.append(m[pos : pos + ln].decode("utf-8", "replace"))
            pos += ln
    return out


def _os_user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "postgres"
