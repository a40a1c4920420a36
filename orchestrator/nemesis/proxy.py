"""A userspace TCP proxy that injects network faults into the connections passing through it.

What it does: `TcpProxy(upstream_host, upstream_port).start()` listens on `listen_host:port`
and forwards every accepted connection to the upstream. A standby's primary_conninfo points at
the proxy, so its walreceiver's connection to the primary crosses it; this machine's kernel has
no netem, and this is how we delay, cut and swallow that traffic instead. One of four modes
holds at any time, switched from any thread:

  pass       bytes are forwarded as they arrive (`heal()`).
  latency    each chunk, in each direction, is delivered no earlier than `ms` after it was read
             (`set_latency(ms)`); order is kept. Chunks wait in a per-direction timed queue that
             the selector loop releases by deadline, so one connection's delayed data never
             delays another's.
  reset      every open connection is closed with RST on both sides (SO_LINGER on, timeout 0),
             and while the mode holds, each new client is accepted and reset at once (`reset()`).
  blackhole  connections stay open and nothing crosses in either direction: bytes read are
             discarded, as dropped packets would be, and so are bytes already queued in the
             proxy when the mode begins. New clients are accepted but not connected upstream
             (`blackhole()`).

Leaving blackhole (heal, or a switch to latency) resets each connection that lost bytes or saw
one side die while blackholed, and lets the others carry on; a client that connected during the
blackhole and sent nothing is connected upstream then. Why reset rather than carry on: real TCP
retransmits what the network dropped, but the proxy has already acknowledged the discarded bytes
to their sender, so the stream it would go on delivering has a hole in it. A walreceiver fed a
byte stream with a gap could misparse it, and a checker would then blame the server for what
the test bed did. A reset is a fault TCP really has. The discarded bytes are never delivered.

Every mode change and every reset the proxy carries out is appended to `events` as
(epoch seconds, what it actually did), e.g. "reset 2 connections (was pass)". A call that
changes nothing (heal() when already passing) records nothing, so heal() is idempotent in both
effect and record. `stop()` closes everything and is idempotent too. A mode set before `start()`
holds from the first connection. When the upstream refuses a connection, the client's side is
closed cleanly (FIN).

What it deliberately does not do: parse the protocol it carries (bytes are opaque), emulate
bandwidth limits, packet loss rates or reordering, or retry the upstream for a client. Nor does
it follow the upstream to a new address: the upstream is resolved once, in start(), and a
re-pointed standby gets a new proxy. Which fault to inject, and when, is for the nemesis and the
campaign's schedule. Counters and events are plain in-memory values, not metrics.

NOTES -- ownership and threads. A background thread (the *loop*) owns every socket, the
selector, the per-connection buffers and timed queues, `_mode`/`_latency_ms` and the counters;
nothing else touches them while it runs. Other threads change the mode only by queueing a
command under `_lock` and writing a byte to the wakeup socketpair. The loop runs queued commands
between select() calls and sets each command's `done` event, so when heal(), reset() and the rest
return, the change has taken effect: after reset() returns, every connection that was open has
been reset. Before start() and after the loop has exited, commands run directly in the caller
under `_lock`. `_events` is appended under `_lock` and read as a copy. Counters are written by
the loop only, and other threads may read a value that is slightly stale.
"""

from __future__ import annotations

import errno
import math
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Self

Mode = Literal["pass", "latency", "reset", "blackhole"]

CHUNK = 65536  # bytes per recv
# Undelivered bytes per direction beyond which the proxy stops reading the source. Without it a
# slow reader behind a fast writer, or a long latency, would grow the queue without bound; with
# it, the sender's kernel buffers fill and TCP's flow control slows the sender, as a slow link would.
HIGH_WATER = 1 << 20
ACCEPTS_PER_WAKEUP = 64  # a burst of connects must not starve the established connections
CONTROL_TIMEOUT_S = 5.0  # how long a caller waits for the loop to apply a mode change
STOP_TIMEOUT_S = 5.0

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_RST_LINGER = struct.pack("ii", 1, 0)  # SO_LINGER on with timeout 0: close() sends RST, not FIN


class _Flow:
    """One direction of a connection: bytes read from one socket, waiting to be written to the other."""

    __slots__ = ("buf", "delayed", "eof", "held", "shut")

    def __init__(self) -> None:
        # (monotonic due time, chunk) read but not yet deliverable; released in FIFO order, so a
        # latency lowered mid-stream can never make a later chunk overtake an earlier one
        self.delayed: deque[tuple[float, bytes]] = deque()
        self.buf = bytearray()  # deliverable now; what the last send() could not take stays here
        self.held = 0  # len(buf) + the bytes in delayed; compared with HIGH_WATER
        self.eof = False  # the source sent FIN (or, in blackhole, a FIN held back until the heal)
        self.shut = False  # the FIN was passed on: shutdown(SHUT_WR) on the destination

    def drop(self) -> int:
        n = self.held
        self.delayed.clear()
        self.buf.clear()
        self.held = 0
        return n


class _Pair:
    """A client connection and the upstream connection made for it."""

    __slots__ = ("broken", "client", "closed", "connecting", "down", "lost", "peer", "up", "upstream")

    def __init__(self, client: socket.socket, peer: str) -> None:
        self.client: socket.socket | None = client
        self.upstream: socket.socket | None = None  # None until connected (and after a side died in blackhole)
        self.connecting = False  # non-blocking connect in progress: wait for writability, then SO_ERROR
        self.up = _Flow()  # client -> upstream
        self.down = _Flow()  # upstream -> client
        self.peer = peer
        self.lost = 0  # bytes discarded while blackholed: the pair is reset when the blackhole ends
        self.broken = False  # a side died while blackholed: the other side learns of it at the heal
        self.closed = False


class _Command:
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:  # handed to the caller's thread, which re-raises it
            self.error = e
        finally:
            self.done.set()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class TcpProxy:
    """Forward TCP connections to one upstream, with switchable faults (see the module header)."""

    def __init__(self, upstream_host: str, upstream_port: int, *, listen_host: str = "127.0.0.1",
                 listen_port: int = 0) -> None:  # fmt: skip
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.listen_port = listen_port
        # RLock: a command run directly (loop not running) appends to _events under the same lock
        self._lock = threading.RLock()
        self._cmds: deque[_Command] = deque()
        self._events: list[tuple[float, str]] = []
        self._thread: threading.Thread | None = None
        self._running = False  # the loop is taking commands; written under _lock
        self._stop_requested = False
        self._stopped = False
        self._port: int | None = None
        # loop-owned from start() on
        self._mode: Mode = "pass"
        self._latency_ms = 0.0
        self._sel: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._upstream_family = socket.AF_INET
        self._upstream_addr: Any = None
        self._pairs: list[_Pair] = []
        self._masks: dict[socket.socket, int] = {}
        self._connections_total = 0
        self._bytes_up = 0
        self._bytes_down = 0
        self._upstream_failures = 0

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        """Bind, start the loop thread and return self. A proxy starts once."""
        with self._lock:
            if self._thread is not None or self._stopped:
                raise RuntimeError("TcpProxy.start() called twice (or after stop())")
            # Resolved here and not per connection: getaddrinfo may block, and the loop must not.
            info = socket.getaddrinfo(self.upstream_host, self.upstream_port, type=socket.SOCK_STREAM)
            self._upstream_family, self._upstream_addr = info[0][0], info[0][4]
            family = socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET
            listener = socket.create_server((self.listen_host, self.listen_port), family=family, backlog=128)
            try:
                listener.setblocking(False)
                wake_r, wake_w = socket.socketpair()
                wake_r.setblocking(False)
                wake_w.setblocking(False)
            except BaseException:
                listener.close()
                raise
            sel = selectors.DefaultSelector()
            sel.register(listener, _READ, "accept")
            sel.register(wake_r, _READ, "wake")
            self._listener, self._wake_r, self._wake_w, self._sel = listener, wake_r, wake_w, sel
            self._port = listener.getsockname()[1]
            self._running = True
            self._thread = threading.Thread(
                target=self._loop, daemon=True,  # a proxy a test forgot to stop must not hang the interpreter
                name=f"tcpproxy:{self._port}->{self.upstream_host}:{self.upstream_port}")  # fmt: skip
            self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listener, and join the loop thread. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            thread = self._thread
            if thread is None:
                return
            self._stop_requested = True
            self._wake()
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            raise TimeoutError(f"{thread.name}: loop did not exit within {STOP_TIMEOUT_S} s")

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()

    # -- faults -----------------------------------------------------------------------------------

    def heal(self) -> None:
        """Pass bytes through again. Idempotent: healing a healed proxy does and records nothing."""
        self._control(lambda: self._switch("pass", 0.0))

    def set_latency(self, ms: float) -> None:
        """Deliver each chunk no earlier than `ms` milliseconds after it was read, in both directions."""
        if not math.isfinite(ms) or ms < 0:
            raise ValueError(f"latency must be a finite number of milliseconds >= 0, not {ms!r}")
        self._control(lambda: self._switch("latency", float(ms)))

    def blackhole(self) -> None:
        """Keep connections open but forward nothing; bytes read (and those queued) are discarded."""
        self._control(lambda: self._switch("blackhole", 0.0))

    def reset(self) -> int:
        """RST every open connection on both sides, then reset each new one until the mode changes.
        Returns how many connections were reset."""
        result: int = self._control(self._do_reset)
        return result

    # -- state ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("TcpProxy not started: no port yet")
        return self._port

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def latency_ms(self) -> float:
        return self._latency_ms

    @property
    def connections_total(self) -> int:
        """Client connections accepted, including those reset on arrival."""
        return self._connections_total

    @property
    def bytes_up(self) -> int:
        """Bytes written to the upstream."""
        return self._bytes_up

    @property
    def bytes_down(self) -> int:
        """Bytes written to clients."""
        return self._bytes_down

    @property
    def upstream_failures(self) -> int:
        """Upstream connects that failed (each closed its client cleanly)."""
        return self._upstream_failures

    @property
    def events(self) -> list[tuple[float, str]]:
        """(epoch seconds, what was done) for every mode change and reset, oldest first (a copy)."""
        with self._lock:
            return list(self._events)

    # -- control plumbing -------------------------------------------------------------------------

    def _control(self, fn: Callable[[], Any]) -> Any:
        cmd = _Command(fn)
        with self._lock:
            if not self._running:
                cmd.run()
            else:
                self._cmds.append(cmd)
                self._wake()
        if not cmd.done.wait(CONTROL_TIMEOUT_S):
            raise TimeoutError(f"proxy loop did not apply the change within {CONTROL_TIMEOUT_S} s")
        if cmd.error is not None:
            raise cmd.error
        return cmd.result

    def _wake(self) -> None:
        # Called under _lock, so it cannot race the loop's exit closing the socket.
        if self._wake_w is None:
            return
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full of wakeups already: the loop will wake
        except OSError:
            pass  # closed by an exiting loop, which runs the leftover commands itself

    def _note(self, what: str) -> None:
        with self._lock:
            self._events.append((time.time(), what))

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._cmds:
                    return
                cmd = self._cmds.popleft()
            cmd.run()

    # -- mode changes (loop thread, or the caller when the loop is not running) -------------------

    def _describe_mode(self) -> str:
        return f"latency {self._latency_ms:g} ms" if self._mode == "latency" else self._mode

    def _switch(self, mode: Mode, latency_ms: float) -> None:
        if mode == self._mode and (mode != "latency" or latency_ms == self._latency_ms):
            return
        was, left_blackhole = self._describe_mode(), self._mode == "blackhole"
        # The new mode is set first: an upstream connect that fails while leaving the blackhole
        # must be handled as outside it.
        self._mode, self._latency_ms = mode, latency_ms
        notes: list[str] = []
        if left_blackhole:
            notes.extend(self._leave_blackhole())
        if mode == "blackhole":
            dropped = 0
            for p in self._pairs:
                n = p.up.drop() + p.down.drop()  # queued in the proxy = in flight: lost with the rest
                p.lost += n
                dropped += n
            notes.append(f"holding {_plural(len(self._pairs), 'connection')}, dropped {dropped} bytes in flight")
        self._note("; ".join([f"{self._describe_mode()} (was {was})", *notes]))

    def _do_reset(self) -> int:
        was = self._describe_mode()
        pairs = list(self._pairs)
        for p in pairs:
            self._reset_pair(p)
        self._mode, self._latency_ms = "reset", 0.0
        self._note(f"reset {_plural(len(pairs), 'connection')} (was {was})")
        return len(pairs)

    def _leave_blackhole(self) -> list[str]:
        reset = held = 0
        for p in list(self._pairs):
            if p.lost or p.broken:
                self._reset_pair(p)
                reset += 1
            elif p.upstream is None:
                self._connect(p)
                held += 1
        notes = []
        if reset:
            notes.append(f"reset {_plural(reset, 'connection')} that lost data while blackholed")
        if held:
            notes.append(f"connected {_plural(held, 'held connection')} upstream")
        return notes

    # -- the loop ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        assert self._sel is not None
        try:
            while not self._stop_requested:
                for key, mask in self._sel.select(self._timeout()):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wakeups()
                    else:
                        pair, client_side = key.data
                        self._on_ready(pair, client_side, mask)
                self._run_commands()
                self._pump()
        finally:
            for p in list(self._pairs):
                self._close_pair(p)
            with self._lock:
                self._running = False
                assert self._listener and self._wake_r and self._wake_w
                for s in (self._listener, self._wake_r, self._wake_w):
                    s.close()
                self._wake_w = None
                self._sel.close()
                leftover = list(self._cmds)
                self._cmds.clear()
                for cmd in leftover:
                    cmd.run()

    def _timeout(self) -> float | None:
        due = [f.delayed[0][0] for p in self._pairs for f in (p.up, p.down) if f.delayed]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _drain_wakeups(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE, ECONNABORTED …: the client retries; nothing of ours to clean up
            self._connections_total += 1
            peer = f"{addr[0]}:{addr[1]}"
            if self._mode == "reset":
                _rst_close(sock)
                self._note(f"reset new connection from {peer}")
                continue
            sock.setblocking(False)
            _nodelay(sock)
            pair = _Pair(sock, peer)
            self._pairs.append(pair)
            if self._mode != "blackhole":
                self._connect(pair)

    def _connect(self, pair: _Pair) -> None:
        sock = socket.socket(self._upstream_family, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(self._upstream_addr)
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            sock.close()
            self._upstream_failed(pair)
            return
        _nodelay(sock)
        pair.upstream = sock
        pair.connecting = err != 0

    def _upstream_failed(self, pair: _Pair) -> None:
        self._upstream_failures += 1
        if self._mode == "blackhole":
            pair.broken = True  # the client hears of it at the heal, not across the blackhole
            return
        client = pair.client
        if client is not None:
            # Read what the client already sent: closing a socket with unread input sends RST,
            # and a refused upstream should look like a clean close (FIN).
            try:
                while client.recv(CHUNK):
                    pass
            except OSError:
                pass
            try:
                client.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self._close_pair(pair)

    def _on_ready(self, pair: _Pair, client_side: bool, mask: int) -> None:
        if pair.closed:
            return  # closed earlier in this select() batch
        if not client_side and pair.connecting:
            if mask & _WRITE:
                self._finish_connect(pair)
            return
        if mask & _READ:
            self._read(pair, client_side)
        # writes happen in _pump, which runs after every batch

    def _finish_connect(self, pair: _Pair) -> None:
        sock = pair.upstream
        assert sock is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._forget(sock)
            sock.close()
            pair.upstream = None
            pair.connecting = False
            self._upstream_failed(pair)
            return
        pair.connecting = False

    def _read(self, pair: _Pair, client_side: bool) -> None:
        src = pair.client if client_side else pair.upstream
        flow = pair.up if client_side else pair.down
        if src is None:
            return  # died in blackhole earlier in this select() batch
        try:
            data = src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._side_died(pair, client_side)
            return
        if not data:
            flow.eof = True  # in blackhole the FIN waits for the heal, as a retransmitted FIN would
            return
        if self._mode == "blackhole":
            pair.lost += len(data)
            return
        flow.delayed.append((time.monotonic() + self._latency_ms / 1000.0, data))
        flow.held += len(data)

    def _pump(self) -> None:
        """Release due chunks, write what can be written, pass FINs on, close finished pairs, and
        bring each socket's selector interest up to date."""
        now = time.monotonic()
        for pair in list(self._pairs):
            for flow, client_side in ((pair.up, False), (pair.down, True)):
                while flow.delayed and flow.delayed[0][0] <= now:
                    flow.buf += flow.delayed.popleft()[1]
                if pair.closed or self._mode == "blackhole":
                    continue
                self._flush(pair, flow, client_side)
            if pair.closed:
                continue
            if pair.up.shut and pair.down.shut:
                self._close_pair(pair)
                continue
            self._sync(pair)

    def _flush(self, pair: _Pair, flow: _Flow, to_client: bool) -> None:
        dst = pair.client if to_client else pair.upstream
        if dst is None or (not to_client and pair.connecting):
            return
        while flow.buf:
            try:
                n = dst.send(flow.buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._side_died(pair, to_client)
                return
            del flow.buf[:n]
            flow.held -= n
            if to_client:
                self._bytes_down += n
            else:
                self._bytes_up += n
        if flow.eof and not flow.shut and not flow.held:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                self._side_died(pair, to_client)
                return
            flow.shut = True

    def _side_died(self, pair: _Pair, client_side: bool) -> None:
        if self._mode != "blackhole":
            self._reset_pair(pair)  # pass the reset on: the other end must not wait for a dead peer
            return
        sock = pair.client if client_side else pair.upstream
        if sock is not None:
            self._forget(sock)
            sock.close()
        if client_side:
            pair.client = None
        else:
            pair.upstream = None
        pair.broken = True

    def _sync(self, pair: _Pair) -> None:
        hole = self._mode == "blackhole"  # reading on to discard: nothing queues, so no backpressure
        if pair.client is not None:
            mask = 0
            if not pair.up.eof and (hole or pair.up.held < HIGH_WATER):
                mask |= _READ
            if pair.down.buf and not hole:
                mask |= _WRITE
            self._interest(pair.client, mask, (pair, True))
        if pair.upstream is not None:
            if pair.connecting:
                mask = _WRITE
            else:
                mask = 0
                if not pair.down.eof and (hole or pair.down.held < HIGH_WATER):
                    mask |= _READ
                if pair.up.buf and not hole:
                    mask |= _WRITE
            self._interest(pair.upstream, mask, (pair, False))

    def _interest(self, sock: socket.socket, mask: int, data: object) -> None:
        assert self._sel is not None
        cur = self._masks.get(sock, 0)
        if mask == cur:
            return
        if not cur:
            self._sel.register(sock, mask, data)
        elif not mask:
            self._sel.unregister(sock)
        else:
            self._sel.modify(sock, mask, data)
        if mask:
            self._masks[sock] = mask
        else:
            del self._masks[sock]

    def _forget(self, sock: socket.socket) -> None:
        self._interest(sock, 0, None)

    def _reset_pair(self, pair: _Pair) -> None:
        for sock in (pair.client, pair.upstream):
            if sock is not None:
                self._forget(sock)
                _rst_close(sock)
        self._discard(pair)

    def _close_pair(self, pair: _Pair) -> None:
        for sock in (pair.client, pair.upstream):
            if sock is not None:
                self._forget(sock)
                sock.close()
        self._discard(pair)

    def _discard(self, pair: _Pair) -> None:
        pair.client = pair.upstream = None
        pair.closed = True
        pair.up.drop()
        pair.down.drop()
        self._pairs.remove(pair)


def _rst_close(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER)
    except OSError:
        pass  # already dead: close() is all that is left
    sock.close()


def _nodelay(sock: socket.socket) -> None:
    # The proxy re-chunks the stream; Nagle on its sends would add delays nobody asked for.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
