"""Hostile input against a live node (issue 3 point 5): random frames before and after startup,
truncated packets, huge lengths, invalid UTF-8. Each connection gets an error or is closed; no
other session is touched, no child crashes, and the node keeps serving. Seeded and bounded."""

from __future__ import annotations

import random
import socket
import struct
import time

from orchestrator.localnode import LocalNode

SEED = 20261125


def _startup() -> bytes:
    body = struct.pack("!I", 3 << 16) + b"user\0postgres\0database\0postgres\0\0"
    return struct.pack("!I", len(body) + 4) + body


def _drain(s: socket.socket, until: float) -> bytes:
    out = b""
    s.settimeout(0.3)
    while time.monotonic() < until:
        try:
            d = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not d:
            break
        out += d
    return out


def _case(rng: random.Random) -> tuple[bool, bytes]:
    kind = rng.randrange(6)
    body = rng.randbytes(rng.randrange(0, 48))
    if kind == 0:  # garbage instead of a startup packet
        return False, rng.randbytes(rng.randrange(1, 64))
    if kind == 1:  # a frame with a lying length
        return True, bytes([rng.randrange(256)]) + struct.pack("!I", rng.randrange(0, 2**32)) + body
    if kind == 2:  # a known message type with a random body
        t = rng.choice(b"QPBDECSHXfdcp")
        return True, bytes([t]) + struct.pack("!I", len(body) + 4) + body
    if kind == 3:  # a query with invalid UTF-8
        q = b"SELECT '" + b"\xff\xfe" + b"'\0"
        return True, b"Q" + struct.pack("!I", len(q) + 4) + q
    if kind == 4:  # a truncated frame, then the client goes away
        return True, b"Q" + struct.pack("!I", 100) + b"SELECT"
    return False, struct.pack("!I", rng.choice([0, 3, 7, 10005, 2**31])) + body  # bad startup lengths


def test_random_frames_never_hurt_other_sessions(node: LocalNode) -> None:
    rng = random.Random(SEED)
    bystander = node.connect()
    pid = bystander.info.backend_pid
    deadline = time.monotonic() + 25
    cases = 0
    while cases < 150 and time.monotonic() < deadline:
        after_startup, payload = _case(rng)
        with socket.create_connection((node.host, node.port), timeout=5) as s:
            if after_startup:
                s.sendall(_startup())
                buf = b""
                while not buf.endswith(b"Z\0\0\0\x05I"):
                    d = s.recv(65536)
                    assert d, "server closed a good connection during startup"
                    buf += d
            try:
                s.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass
            _drain(s, time.monotonic() + 0.5)
        cases += 1
    assert cases >= 50
    assert bystander.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
    bystander.close()
    assert node.sql("SELECT 1") == [(1,)]
    assert not node.events("crash"), node.events("crash")
    assert "Traceback" not in node.log_content()
