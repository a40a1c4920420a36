"""The node's shared memory: one anonymous mmap laid out as ctypes structures.

What it does: the postmaster creates the segment (`ShmemSegment.create`) before forking any
child, and creates a new one at every crash reinit (CRASH-7); children inherit the mapping by
fork and never map anything themselves. The layout is built once per size configuration by
`make_layout()` and exposes: the process array (pg_stat_activity rows and latches), the
dead-man switch flags (CRASH-3), PMSignal flags and the quit reason, XLogCtl-lite (timeline,
recovery state, LSNs), the checkpointer request block, the injection-point tables and counters.

What it deliberately does not do: locking. Fields are written by exactly one owner (documented
on each struct); the few multi-writer places use `node.ipc.lwlock`. The postmaster never waits
on a lock and treats what it reads as untrusted (STYLE 11).

Ownership NOTES
- ProcEntry[i]: slot i is handed to a child by the postmaster at fork (child slot number). The
  child writes every field of its own entry; other processes only read it (seqlock
  `changecount`: odd while the owner writes) or set its latch (`latch_is_set`, then SIGURG).
- child_state[i] (dead-man switch): the postmaster writes ASSIGNED at fork and UNUSED at reap;
  the child writes ACTIVE on attach, WALSENDER when it becomes one, ASSIGNED at clean exit.
- pmsignal_flags[r]: any child sets 1, only the postmaster clears (and only flags it saw set).
- quit_reason: the postmaster writes before sending SIGQUIT; children read in quickdie.
- xlog: the startup process writes recovery fields; backends read.
- ckpt_*: requesters bump `ckpt_request`/`ckpt_flags` under the checkpoint lock; the
  checkpointer bumps `ckpt_started`/`ckpt_done`.
- injection tables: see node/injection.py.
"""

from __future__ import annotations

import ctypes
import mmap
from dataclasses import dataclass
from typing import Any

c_double = ctypes.c_double
c_int32 = ctypes.c_int32
c_uint8 = ctypes.c_uint8
c_uint32 = ctypes.c_uint32
c_uint64 = ctypes.c_uint64

QUERY_LEN = 1024
NAME_LEN = 64
INJ_NAME_LEN = 64
INJ_ARG_LEN = 32
INJ_SLOTS = 32
PMSIGNAL_SLOTS = 16
COUNTER_SLOTS = 64


class ProcEntry(ctypes.Structure):
    """One process's pg_stat_activity row and latch. Owner: the process in that child slot."""

    _fields_ = [
        ("changecount", c_uint32),  # seqlock: odd while the owner writes
        ("pid", c_int32),  # 0 = free
        ("kind", c_uint8),  # index into KIND_ORDER
        ("counted", c_uint8),  # 1 = holds one of max_connections (ProcArrayLock)
        ("state", c_uint8),  # index into ACTIVITY_ORDER
        ("latch_is_set", c_uint8),  # SetLatch: write 1, then wake the owner
        ("latch_owner", c_int32),  # pid to SIGURG; 0 = unowned
        ("backend_start", c_double),
        ("xact_start", c_double),
        ("query_start", c_double),
        ("state_change", c_double),
        ("client_port", c_int32),
        ("cancel_key", c_uint32),
        ("backend_type", ctypes.c_char * NAME_LEN),
        ("application_name", ctypes.c_char * NAME_LEN),
        ("client_addr", ctypes.c_char * 48),
        ("usename", ctypes.c_char * NAME_LEN),
        ("datname", ctypes.c_char * NAME_LEN),
        ("wait_event_type", ctypes.c_char * 32),
        ("wait_event", ctypes.c_char * 32),
        ("query", ctypes.c_char * QUERY_LEN),
    ]


class InjEntry(ctypes.Structure):
    """One armed injection point. See node/injection.py for who writes which table."""

    _fields_ = [
        ("generation", c_uint32),  # seqlock word, written last (P-11)
        ("armed", c_uint8),
        ("detached", c_uint8),  # the one field a non-owner may set (SQL detach of a setting point)
        ("action", c_uint8),
        ("name", ctypes.c_char * INJ_NAME_LEN),
        ("arg", ctypes.c_char * INJ_ARG_LEN),
        ("fired", c_uint32),
    ]


class XLogCtl(ctypes.Structure):
    """Recovery and WAL position state.

    Writers: the startup process sets everything before the node opens (recovery fields,
    positions after redo); afterwards insert_lsn/prev_lsn/flush_lsn/next_xid are advanced only
    by a process holding SQLite's write lock, which is the WAL insertion lock (node/xlog.py).
    Readers: everyone, without a lock (a torn read of a 64-bit position is not possible on the
    platforms we run on, and readers only report positions)."""

    _fields_ = [
        ("system_identifier", c_uint64),
        ("timeline", c_uint32),
        ("in_recovery", c_uint8),
        ("consistent", c_uint8),
        ("standby_mode", c_uint8),
        ("wal_ready", c_uint8),  # positions below are valid (set by the startup process)
        ("insert_lsn", c_uint64),  # where the next record starts
        ("prev_lsn", c_uint64),  # start of the last record written
        ("flush_lsn", c_uint64),  # WAL durable up to here
        ("replay_lsn", c_uint64),
        ("redo_lsn", c_uint64),
        ("next_xid", c_uint64),
        ("segsize", c_uint64),
    ]


class CheckpointCtl(ctypes.Structure):
    """Checkpoint requests (CKPT: CheckpointerShmem). Requesters set flags and bump
    ckpt_request under the checkpoint lwlock; the checkpointer bumps started/done/failed."""

    _fields_ = [
        ("checkpointer_pid", c_int32),
        ("checkpointer_slot", c_int32),
        ("ckpt_flags", c_uint32),
        ("ckpt_request", c_uint32),
        ("ckpt_served", c_uint32),  # last request number a checkpointer took up
        ("ckpt_started", c_uint32),
        ("ckpt_done", c_uint32),
        ("ckpt_failed", c_uint32),
        ("last_checkpoint_time", c_double),
    ]


@dataclass(frozen=True, slots=True)
class ShmemSizes:
    """Array sizes, fixed for the life of one segment (postmaster-context settings).

    n_procs is the number of child slots of node/pmchild.py's ChildTable: one ProcEntry and one
    dead-man switch flag per slot."""

    n_procs: int


def make_layout(sizes: ShmemSizes) -> type[ctypes.Structure]:
    class ShmemLayout(ctypes.Structure):
        _fields_ = [
            ("magic", c_uint32),
            ("generation", c_uint32),  # bumped by the postmaster at each (re)creation
            ("postmaster_start_time", c_double),  # written once per segment by the postmaster
            ("quit_reason", c_uint8),
            ("pmsignal_flags", c_uint8 * PMSIGNAL_SLOTS),
            ("child_state", c_uint8 * sizes.n_procs),
            ("procs", ProcEntry * sizes.n_procs),
            ("xlog", XLogCtl),
            ("ckpt", CheckpointCtl),
            ("inj_version", c_uint32),  # bumped after every change to either injection table
            ("inj_setting_count", c_uint32),
            ("inj_sql_count", c_uint32),
            ("inj_setting", InjEntry * INJ_SLOTS),
            ("inj_sql", InjEntry * INJ_SLOTS),
            ("counters", c_uint64 * COUNTER_SLOTS),
        ]

    return ShmemLayout


SHMEM_MAGIC = 0x50474244  # "PGBD"


class ShmemSegment:
    """An anonymous shared mapping plus the typed view over it."""

    def __init__(self, sizes: ShmemSizes, mm: mmap.mmap, layout: Any) -> None:
        self.sizes = sizes
        self.mm = mm
        self.s = layout  # the ShmemLayout instance (typed fields)

    @classmethod
    def create(cls, sizes: ShmemSizes, generation: int) -> ShmemSegment:
        layout_type = make_layout(sizes)
        size = ctypes.sizeof(layout_type)
        mm = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        layout = layout_type.from_buffer(mm)
        layout.magic = SHMEM_MAGIC
        layout.generation = generation
        return cls(sizes, mm, layout)

    @property
    def size(self) -> int:
        return ctypes.sizeof(self.s)

    def release(self) -> None:
        """Drop the postmaster's mapping (children that still map it keep theirs).

        ctypes keeps an export of the buffer alive, so the mmap cannot be closed while the
        layout object exists; dropping both references lets the kernel free it once no child
        maps it either.
        """
        self.s = None
        self.mm = None  # type: ignore[assignment]
