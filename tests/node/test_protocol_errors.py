"""Bad input on the wire gets PostgreSQL's error, and never takes more down than it should.

Rules: wire-protocol §1 (SSL/GSS refusal, unsupported version 0A000, invalid length 08P01,
invalid frontend message type 08P01), CRASH-1 (a FATAL exit 1 is not a crash).
"""

from __future__ import annotations

import socket
import struct

from orchestrator.localnode import LocalNode


def _raw(node: LocalNode, payload: bytes) -> bytes:
    with socket.create_connection((node.host, node.port), timeout=10) as s:
        s.sendall(payload)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not d:
                break
            out += d
        return out


def _fields(msg: bytes) -> dict[str, str]:
    assert msg[:1] == b"E", msg
    (n,) = struct.unpack("!I", msg[1:5])
    return {chr(p[0]): p[1:].decode() for p in msg[5 : 1 + n].split(b"\0") if p}


def test_gssenc_request_refused_with_N(node: LocalNode) -> None:
    with socket.create_connection((node.host, node.port), timeout=10) as s:
        s.sendall(struct.pack("!II", 8, 80877104))
        assert s.recv(1) == b"N"


def test_unsupported_protocol_version(node: LocalNode) -> None:
    out = _raw(node, struct.pack("!II", 8, 2 << 16))
    f = _fields(out)
    assert (f["S"], f["C"]) == ("FATAL", "0A000")
    assert f["M"] == "unsupported frontend protocol 2.0: server supports 3.0 to 3.0"


def test_invalid_startup_length(node: LocalNode) -> None:
    out = _raw(node, struct.pack("!I", 3) + b"xxxx")
    f = _fields(out)
    assert (f["C"], f["M"]) == ("08P01", "invalid length of startup packet")


def _after_startup(node: LocalNode, payload: bytes) -> bytes:
    """Complete a normal startup, send `payload`, return everything the server sends back
    until it closes the connection."""
    with socket.create_connection((node.host, node.port), timeout=10) as s:
        body = struct.pack("!I", 3 << 16) + b"user\0postgres\0database\0postgres\0\0"
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        buf = b""
        while not buf.endswith(b"Z\0\0\0\x05I"):
            buf += s.recv(65536)
        s.sendall(payload)
        out = b""
        while d := s.recv(65536):
            out += d
    return out


def test_invalid_message_type_after_startup(node: LocalNode) -> None:
    f = _fields(_after_startup(node, b"~\0\0\0\x04"))
    assert (f["S"], f["C"], f["M"]) == ("FATAL", "08P01", "invalid frontend message type 126")
    assert node.sql("SELECT 1") == [(1,)]
    assert not node.events("crash")


def test_unterminated_query_string(node: LocalNode) -> None:
    """A Query message whose string has no terminator is a protocol violation (FATAL 08P01)."""
    f = _fields(_after_startup(node, b"Q" + struct.pack("!I", 4 + 5) + b"abcde"))
    assert (f["S"], f["C"]) == ("FATAL", "08P01")
    assert node.sql("SELECT 1") == [(1,)]
    assert not node.events("crash")


def _msg(t: bytes, body: bytes) -> bytes:
    return t + struct.pack("!I", len(body) + 4) + body


def test_execute_with_row_limit_suspends_the_portal(node: LocalNode) -> None:
    """Extended protocol: Execute(max_rows) sends that many rows and PortalSuspended; the next
    Execute of the same portal continues (what JDBC's fetch size uses)."""
    node.sql("CREATE TABLE pr (a int)")
    node.sql("INSERT INTO pr SELECT g FROM generate_series(1, 5) g")
    with socket.create_connection((node.host, node.port), timeout=10) as s:
        body = struct.pack("!I", 3 << 16) + b"user\0postgres\0database\0postgres\0\0"
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        buf = b""
        while not buf.endswith(b"Z\0\0\0\x05I"):
            buf += s.recv(65536)
        s.sendall(_msg(b"Q", b"BEGIN\0"))
        buf = b""
        while not buf.endswith(b"Z\0\0\0\x05T"):
            buf += s.recv(65536)
        s.sendall(_msg(b"P", b"st\0SELECT a FROM pr ORDER BY a\0\0\0")
                  + _msg(b"B", b"cur\0st\0\0\0\0\0\0\0")
                  + _msg(b"E", b"cur\0" + struct.pack("!I", 2)) + _msg(b"S", b""))
        buf = b""
        while not buf.endswith(b"Z\0\0\0\x05T"):
            buf += s.recv(65536)
        assert buf.count(b"D\0") == 2 and b"s\0\0\0\x04" in buf
        s.sendall(_msg(b"E", b"cur\0" + struct.pack("!I", 0)) + _msg(b"S", b""))
        buf = b""
        while not buf.endswith(b"Z\0\0\0\x05T"):
            buf += s.recv(65536)
        assert buf.count(b"D\0") == 3 and b"SELECT 3\0" in buf
