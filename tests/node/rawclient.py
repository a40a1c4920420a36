"""A deliberately independent, minimal protocol client for wire-level assertions.

psycopg reports connection failures without their SQLSTATE, and cannot show *when* an error
arrives relative to authentication; this client sends a StartupMessage and returns every
message up to ReadyForQuery or the connection's end, with ErrorResponse fields decoded.
It shares no code with node/protocol.py, so it is a second opinion on the server's bytes.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field


@dataclass
class Reply:
    messages: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def types(self) -> str:
        return "".join(t for t, _ in self.messages)

    def error(self) -> dict[str, str] | None:
        for t, body in self.messages:
            if t == "E":
                return _fields(body)
        return None

    def notices(self) -> list[dict[str, str]]:
        return [_fields(b) for t, b in self.messages if t == "N"]


def _fields(body: bytes) -> dict[str, str]:
    out = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode()
    return out


def startup(host: str, port: int, *, user: str = "postgres", database: str = "postgres",
            minor: int = 0, extra: dict[str, str] | None = None, ssl_first: bool = False,
            timeout: float = 10.0) -> Reply:  # fmt: skip
    params = {"user": user, "database": database, **(extra or {})}
    body = struct.pack("!I", (3 << 16) | minor)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    reply = Reply()
    with socket.create_connection((host, port), timeout=timeout) as s:
        if ssl_first:
            s.sendall(struct.pack("!II", 8, 80877103))
            reply.messages.append(("ssl", s.recv(1)))
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        buf = b""
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            buf += data
            while len(buf) >= 5:
                t = chr(buf[0])
                (n,) = struct.unpack("!I", buf[1:5])
                if len(buf) < 1 + n:
                    break
                reply.messages.append((t, buf[5 : 1 + n]))
                buf = buf[1 + n :]
                if t == "Z":
                    s.sendall(b"X\0\0\0\4")
                    return reply
    return reply


def cancel(host: str, port: int, pid: int, key: int) -> None:
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(struct.pack("!IIII", 16, 80877102, pid, key))
        s.recv(1)
