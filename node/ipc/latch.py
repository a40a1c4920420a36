"""Latches: the one way a pgbed process sleeps (LATCH; SIG-3; P-2, P-3, P-9).

Contract (as in PostgreSQL's latch.h). The only correct loop is:

    while True:
        latch.reset()
        if work_to_do():      # check flags set by handlers / other processes
            do_work()
        latch.wait(timeout)   # returns at once if the latch was set after reset()

A waker sets its own flag first (a pending_* global, a shm field) and the latch second, so the
waiter either sees the flag in its check or finds the latch set when it waits: no lost wakeup.

How it works here. Each process has a non-blocking self-pipe registered with
`signal.set_wakeup_fd`: CPython's C-level handler writes a byte for every signal that has a
Python handler, so a signal wakes `selectors` even though PEP 475 would otherwise resume the
wait (P-3). `is_set`/`owner_pid` live in the process's ProcEntry in shared memory; `set_latch`
on another process's entry writes `latch_is_set = 1` and sends SIGURG to the owner, whose no-op
SIGURG handler only exists to trigger the wakeup byte. Every wait also watches the read end of
the postmaster-death pipe (EOF = the postmaster is gone; P-9).

What it deliberately does not do: decide what to do on postmaster death. `wait()` reports it;
the caller exits with its own message (CRASH-10).

Ownership: only the owner resets or waits on its latch; anyone may set it, including signal
handlers (set() is a flag write plus at most one write()/kill()).
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
from typing import Any

WL_LATCH_SET = 1
WL_SOCKET_READABLE = 2
WL_TIMEOUT = 4
WL_POSTMASTER_DEATH = 8
WL_SOCKET_WRITEABLE = 16


def _noop_handler(signum: int, frame: Any) -> None:
    """SIGURG exists only to make CPython write the wakeup byte."""


class Latch:
    """This process's latch. `entry` is its ProcEntry in shm, or None before attaching
    (the postmaster and dead-end children use a process-local flag)."""

    def __init__(self, death_fd: int | None) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        signal.signal(signal.SIGURG, _noop_handler)
        self.death_fd = death_fd
        self.entry: Any = None
        self.local_set = False
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.read_fd, selectors.EVENT_READ, "latch")
        if death_fd is not None:
            self.sel.register(death_fd, selectors.EVENT_READ, "death")
        self._sock: socket.socket | int | None = None

    def own(self, entry: Any) -> None:
        """OwnLatch: take the latch in our ProcEntry (SIG-3: only on an unowned latch)."""
        pid = os.getpid()
        if entry.latch_owner not in (0, pid):
            raise RuntimeError("latch already owned")
        entry.latch_is_set = 1 if self.local_set else 0
        entry.latch_owner = pid
        self.entry = entry

    def disown(self) -> None:
        if self.entry is not None:
            self.entry.latch_owner = 0
            self.entry = None

    def set(self) -> None:
        """SetLatch on our own latch; safe in a signal handler (flag write + one write())."""
        if self.entry is not None:
            self.entry.latch_is_set = 1
        else:
            self.local_set = True
        try:
            os.write(self.write_fd, b"\0")
        except (BlockingIOError, OSError):
            pass

    def is_set(self) -> bool:
        return bool(self.entry.latch_is_set) if self.entry is not None else self.local_set

    def reset(self) -> None:
        if self.entry is not None:
            self.entry.latch_is_set = 0
        self.local_set = False
        self._drain()

    def _drain(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def watch_socket(self, sock: socket.socket | int | None) -> None:
        """Include a socket in every wait (a backend's client connection)."""
        if self._sock is not None:
            self.sel.unregister(self._sock)
        self._sock = sock
        if sock is not None:
            self.sel.register(sock, selectors.EVENT_READ, "socket")

    def postmaster_alive(self) -> bool:
        if self.death_fd is None:
            return True
        import select

        r, _, _ = select.select([self.death_fd], [], [], 0)
        return not r

    def wait(self, timeout: float | None, *, socket_readable: bool = False, socket_writable: bool = False) -> int:
        """Sleep until the latch is set, the socket (if watched and asked for) is readable (or
        writable), the postmaster dies, or `timeout` seconds pass. Returns a WL_* bit mask."""
        if self.is_set():
            return WL_LATCH_SET
        if socket_writable and self._sock is not None:
            self.sel.modify(self._sock, selectors.EVENT_READ | selectors.EVENT_WRITE, "socket")
        try:
            events = self.sel.select(timeout)
        finally:
            if socket_writable and self._sock is not None:
                self.sel.modify(self._sock, selectors.EVENT_READ, "socket")
        result = 0
        for key, mask in events:
            if key.data == "latch":
                self._drain()
            elif key.data == "death":
                result |= WL_POSTMASTER_DEATH
            elif key.data == "socket":
                if socket_readable and mask & selectors.EVENT_READ:
                    result |= WL_SOCKET_READABLE
                if socket_writable and mask & selectors.EVENT_WRITE:
                    result |= WL_SOCKET_WRITEABLE
        if self.is_set():
            result |= WL_LATCH_SET
        if not events and not result:
            result = WL_TIMEOUT
        return result


def set_latch(entry: Any) -> None:
    """SetLatch on another process's latch: flag first, then wake the owner (SIG-3).

    The owner pid is read once; a dead or recycled pid is ignored (P-7) — a recycled pid
    only gets a stray SIGURG, which every pgbed process treats as a no-op wakeup.
    """
    if entry.latch_is_set:
        return  # already set: its owner has not reset it yet, so it will see our flag (SIG-3)
    entry.latch_is_set = 1
    owner = entry.latch_owner
    if owner and owner != os.getpid():
        try:
            os.kill(owner, signal.SIGURG)
        except (ProcessLookupError, PermissionError):
            pass
