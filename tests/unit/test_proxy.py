"""orchestrator.nemesis.proxy: the userspace TCP proxy's modes, against an echo server on 127.0.0.1.

Every wait has a timeout; each test stays under about 2 s."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from orchestrator.nemesis.proxy import TcpProxy

WAIT_S = 2.0  # upper bound of any single wait in these tests


class EchoServer:
    """Echoes every connection until EOF, one thread per connection; counts what it received."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)  # so the accept loop sees `closing`
        self.port: int = self.sock.getsockname()[1]
        self.received = 0
        self.accepted = 0
        self.lock = threading.Lock()
        self.closing = False
        self.threads: list[threading.Thread] = []
        self.conns: list[socket.socket] = []
        self.acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self.acceptor.start()

    def _accept_loop(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5.0)
            with self.lock:
                self.accepted += 1
                self.conns.append(conn)
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _echo(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                with self.lock:
                    self.received += len(data)
                conn.sendall(data)
        except OSError:
            pass  # reset by the proxy, or closed at teardown
        finally:
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.closing = True
        self.acceptor.join(WAIT_S)
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)  # wakes an echo thread blocked in recv
            except OSError:
                pass
        for t in self.threads:
            t.join(WAIT_S)
        for c in conns:
            c.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", echo.port) as p:
        yield p


@pytest.fixture
def connect(proxy: TcpProxy) -> Iterator[Callable[[], socket.socket]]:
    """Client connections to the proxy, closed at teardown."""
    socks: list[socket.socket] = []

    def make() -> socket.socket:
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S)
        socks.append(s)
        return s

    yield make
    for s in socks:
        s.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def assert_cut(sock: socket.socket) -> str:
    """The connection was reset or closed: recv gives ConnectionResetError or EOF within WAIT_S."""
    sock.settimeout(WAIT_S)
    try:
        sock.sendall(b"x")
        data = sock.recv(1)
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    assert data == b"", f"expected reset or EOF, got {data!r}"
    return "eof"


def poll_until(cond: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


# -- pass-through ------------------------------------------------------------------------------


def test_pass_through_more_than_a_megabyte_each_way(proxy: TcpProxy, connect: Callable[[], socket.socket]) -> None:
    payload = os.urandom(3 * 1024 * 1024 // 2)  # 1.5 MB up, and the echo brings it back down
    sock = connect()
    errors: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(payload)
        except BaseException as e:
            errors.append(e)

    sender = threading.Thread(target=send)
    sender.start()  # concurrently: reading only after sending everything would deadlock on full buffers
    got = recv_exactly(sock, len(payload))
    sender.join(WAIT_S)
    assert not errors
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert proxy.mode == "pass"
    assert proxy.connections_total == 1
    poll_until(lambda: proxy.bytes_up == len(payload) == proxy.bytes_down, "byte counters")


def test_half_close_passes_through(echo: EchoServer, connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    sock.sendall(b"last words")
    sock.shutdown(socket.SHUT_WR)  # the echo sees EOF, replies, then closes its side
    assert recv_exactly(sock, 10) == b"last words"
    assert sock.recv(1) == b""


# -- latency -----------------------------------------------------------------------------------


def test_latency_delays_each_direction(proxy: TcpProxy, connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    assert roundtrip(sock, b"warm") == b"warm"
    proxy.set_latency(150)
    assert proxy.mode == "latency" and proxy.latency_ms == 150
    t0 = time.monotonic()
    assert roundtrip(sock, b"ping") == b"ping"
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.300, elapsed  # 150 ms up, 150 ms down
    assert elapsed < 0.300 + 0.5, elapsed
    proxy.heal()
    t0 = time.monotonic()
    assert roundtrip(sock, b"pong") == b"pong"
    assert time.monotonic() - t0 < 0.1


def test_latency_keeps_order_and_does_not_block_other_connections(
        proxy: TcpProxy, connect: Callable[[], socket.socket]) -> None:  # fmt: skip
    lat = 0.2
    proxy.set_latency(lat * 1000)
    first = connect()
    messages = [f"m{i};".encode() for i in range(5)]
    for m in messages:  # separate chunks: a proxy sleeping per chunk would need 5 x 2 x 200 ms
        first.sendall(m)
        time.sleep(0.02)
    t0 = time.monotonic()
    second = connect()
    assert roundtrip(second, b"second") == b"second"
    elapsed = time.monotonic() - t0
    assert 2 * lat <= elapsed < 2 * lat + 0.3, elapsed
    assert recv_exactly(first, sum(map(len, messages))) == b"".join(messages)


def test_latency_validation(proxy: TcpProxy) -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="latency"):
            proxy.set_latency(bad)
    assert proxy.mode == "pass"


# -- reset -------------------------------------------------------------------------------------


def test_reset_cuts_open_and_new_connections_until_heal(
        proxy: TcpProxy, connect: Callable[[], socket.socket]) -> None:  # fmt: skip
    a, b = connect(), connect()
    assert roundtrip(a, b"a") == b"a"
    assert roundtrip(b, b"b") == b"b"
    t0 = time.monotonic()
    assert proxy.reset() == 2
    assert proxy.mode == "reset"
    assert_cut(a)
    assert_cut(b)
    assert time.monotonic() - t0 < 1.0
    for _ in range(3):  # accepted, then reset at once: so fast that connect() itself may see the RST
        try:
            late = connect()
        except ConnectionResetError:
            continue
        assert assert_cut(late) in ("reset", "eof")
    poll_until(lambda: proxy.connections_total == 5, "the proxy to accept the late clients")
    proxy.heal()
    assert proxy.mode == "pass"
    assert roundtrip(connect(), b"again") == b"again"
    whats = [w for _, w in proxy.events]
    assert whats[0] == "reset 2 connections (was pass)"
    assert all(w.startswith("reset new connection from 127.0.0.1:") for w in whats[1:4]), whats
    assert whats[4:] == ["pass (was reset)"]
    assert proxy.connections_total == 6


def test_reset_sends_rst_not_fin(proxy: TcpProxy, connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    assert roundtrip(sock, b"x") == b"x"
    proxy.reset()
    sock.settimeout(WAIT_S)
    with pytest.raises(ConnectionResetError):
        sock.recv(1)


# -- blackhole ---------------------------------------------------------------------------------


def test_blackhole_forwards_nothing_and_heal_does_not_deliver_it(
        echo: EchoServer, proxy: TcpProxy, connect: Callable[[], socket.socket]) -> None:  # fmt: skip
    old = connect()
    assert roundtrip(old, b"before") == b"before"
    poll_until(lambda: echo.received == 6, "echo to count the first bytes")
    proxy.blackhole()
    assert proxy.mode == "blackhole"
    old.sendall(b"swallowed")
    old.settimeout(0.3)
    with pytest.raises(TimeoutError):
        old.recv(1)
    during = connect()  # accepted, but never connected upstream
    during.sendall(b"also swallowed")
    silent = connect()  # accepted during the blackhole, sends nothing
    during.settimeout(0.2)
    with pytest.raises(TimeoutError):
        during.recv(1)
    poll_until(lambda: proxy.connections_total == 3, "the proxy to accept both")
    assert echo.accepted == 1
    proxy.heal()
    # The connections that lost bytes are reset: their streams have a hole the proxy cannot fill.
    assert assert_cut(old) == "reset"
    assert assert_cut(during) == "reset"
    # A connection that lost nothing is connected upstream at the heal and works.
    assert roundtrip(silent, b"late") == b"late"
    assert roundtrip(connect(), b"after") == b"after"
    assert echo.received == 6 + 4 + 5  # nothing sent during the blackhole ever reached the server
    whats = [w for _, w in proxy.events]
    assert whats == [
        "blackhole (was pass); holding 1 connection, dropped 0 bytes in flight",
        "pass (was blackhole); reset 2 connections that lost data while blackholed; "
        "connected 1 held connection upstream",
    ]


def test_blackhole_drops_bytes_queued_under_latency(proxy: TcpProxy, connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    assert roundtrip(sock, b"x") == b"x"
    proxy.set_latency(500)
    sock.sendall(b"in flight")
    time.sleep(0.1)  # the proxy reads at once and holds the chunk for 500 ms
    proxy.blackhole()
    assert proxy.events[-1][1] == "blackhole (was latency 500 ms); holding 1 connection, dropped 9 bytes in flight"
    sock.settimeout(0.6)  # past the 500 ms the bytes would have taken
    with pytest.raises(TimeoutError):
        sock.recv(1)
    proxy.heal()
    assert assert_cut(sock) == "reset"


# -- idempotence, lifecycle --------------------------------------------------------------------


def test_heal_and_stop_are_idempotent(echo: EchoServer) -> None:
    p = TcpProxy("127.0.0.1", echo.port)
    p.heal()  # before start: nothing to do, nothing recorded
    p.stop()  # before start
    assert p.events == []
    with pytest.raises(RuntimeError, match="not started"):
        _ = p.port

    p = TcpProxy("127.0.0.1", echo.port).start()
    p.heal()
    p.heal()
    assert p.events == []
    p.set_latency(10)
    p.set_latency(10)  # same latency: no change, no record
    p.heal()
    p.heal()
    p.blackhole()
    p.blackhole()
    p.heal()
    p.heal()
    assert [w for _, w in p.events] == [
        "latency 10 ms (was pass)",
        "pass (was latency 10 ms)",
        "blackhole (was pass); holding 0 connections, dropped 0 bytes in flight",
        "pass (was blackhole)",
    ]
    port = p.port
    p.stop()
    p.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_S).close()
    p.heal()  # after stop: harmless
    with pytest.raises(RuntimeError):
        p.start()


def test_mode_set_before_start_holds(echo: EchoServer) -> None:
    p = TcpProxy("127.0.0.1", echo.port)
    p.set_latency(100)
    with p, socket.create_connection(("127.0.0.1", p.port), timeout=WAIT_S) as s:
        t0 = time.monotonic()
        assert roundtrip(s, b"x") == b"x"
        assert time.monotonic() - t0 >= 0.2


def test_stop_closes_open_connections(proxy: TcpProxy, connect: Callable[[], socket.socket]) -> None:
    sock = connect()
    assert roundtrip(sock, b"x") == b"x"
    proxy.stop()
    assert assert_cut(sock) in ("reset", "eof")


def test_upstream_down_closes_client_cleanly() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        dead_port = probe.getsockname()[1]  # nothing listens here once closed
    with TcpProxy("127.0.0.1", dead_port) as p, socket.create_connection(("127.0.0.1", p.port), timeout=WAIT_S) as s:
        assert s.recv(1) == b""  # FIN, not RST
        poll_until(lambda: p.upstream_failures == 1, "the failure to be counted")
        assert p.connections_total == 1
