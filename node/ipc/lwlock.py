"""Cross-process locks for the few shm fields with several writers.

What it does: each named lock is one byte of a lock file in the data directory, taken with
POSIX record locks (`fcntl.lockf`). The kernel releases a record lock when its holder dies,
so a backend killed with SIGKILL never leaves a lock behind (a semaphore would stay taken).

What it deliberately does not do: be used by the postmaster. The postmaster never waits on
a lock (PostgreSQL's rule: a child that corrupts or wedges shared state must not be able to
take the postmaster down with it).

The file is opened once by the postmaster when it creates shared memory and inherited by
every child. POSIX record locks are per process, so sharing the fd is correct; the one trap
is that closing *any* fd of that file drops the process's locks, so nothing ever reopens it.
"""

from __future__ import annotations

import enum
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager


class LWLockId(enum.IntEnum):
    PROC_ARRAY = 0  # claiming one of max_connections
    INJECTION = 1  # the SQL-armed injection-point table
    CHECKPOINT = 2  # checkpoint request counters
    BGWORKER = 3  # bgworker slots (bgworker issue)
    WALSND = 4  # claiming and freeing WalSnd slots
    WALRCV = 5  # WalRcv state transitions
    REPLSLOT = 6  # creating and dropping replication slots
    SYNCREP = 7  # the released-LSN triple of synchronous replication
    CONTROL = 8  # ControlFileLock: read-modify-write of pg_control by the startup process/checkpointer
    AUTOCONF = 9  # AutoFileLock: ALTER SYSTEM's rewrite of postgresql.auto.conf
    METRICS = 10  # shared signal counters (node/proc.py report_signals)


class LWLocks:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.set_inheritable(self.fd, True)

    @contextmanager
    def hold(self, lock: LWLockId) -> Iterator[None]:
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, int(lock))
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, int(lock))
