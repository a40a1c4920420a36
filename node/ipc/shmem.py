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
- walsnd[i] (WALSND-1/2): claimed by a walsender under LWLockId.WALSND (pid written first by the
  claimer, cleared last by the owner on exit); the owner alone writes positions and state under
  the slot's seqlock; the primary's backends and the checkpointer only read, except
  `procsig_stopping`, which the checkpointer sets (PROCSIG_WALSND_INIT_STOPPING).
- walrcv (WALRCV-1/2): the startup process writes the request fields (state STOPPED→STARTING,
  WAITING→RESTARTING, start point, conninfo); the walreceiver writes everything else, under
  LWLockId.WALRCV for state changes.
- replslots[i]: created/dropped under LWLockId.REPLSLOT; restart_lsn advanced by the walsender
  that has the slot active.
- syncrep: the walsenders publish the released LSN per wait mode; committing backends read it.
- pmstats (metrics): the postmaster alone writes it, through node/pmstats.py's private mirror,
  which it writes again into every new segment (so the counters survive a crash reinit);
  the metrics exporter (node/metrics.py) only reads.
- signal_counts[kind][signal] (metrics): each process adds what it counted at its check points
  (node/proc.py report_signals) under LWLockId.METRICS — the postmaster adds its own row
  without the lock (it never waits on one, and nobody else writes that row); the postmaster
  copies the table into the new segment at a crash reinit, when no child is left to write it.
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
CONNINFO_LEN = 512
KIND_SLOTS = 16  # BackendKind members (node/proc.py KIND_ORDER), with room to spare
EXIT_CLASS_SLOTS = 4  # ExitClass members (node/pmlogic.py), with room
SIGNAL_SLOTS = 65  # signal numbers 0..64
BGW_STAT_SLOTS = 64  # distinct background worker names with statistics


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
        ("sync_wait_lsn", c_uint64),  # SyncRepWaitForLSN: 0 = not waiting (written by the owner)
        ("sync_wait_mode", c_uint8),
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
        ("replay_lsn", c_uint64),  # end of the last replayed record
        ("replay_start_lsn", c_uint64),  # start of the last replayed record
        ("redo_lsn", c_uint64),
        ("next_xid", c_uint64),
        ("segsize", c_uint64),
        ("replay_tli", c_uint32),  # timeline of the last replayed record
        ("recovery_target_tli", c_uint32),
        ("last_xact_replay_ts", c_double),  # commit time of the last replayed COMMIT (0 = none)
        ("last_ckpt_lsn", c_uint64),  # last checkpoint record replayed (restartpoint candidate)
        ("last_ckpt_redo", c_uint64),
        ("last_ckpt_tli", c_uint32),
        ("running_backups", c_uint32),  # BASE_BACKUPs in progress (they hold WAL from backup_hold_lsn)
        ("backup_hold_lsn", c_uint64),
        ("promote_generation", c_uint32),  # bumped when recovery ends (sessions report in_hot_standby)
        # InRecovery at this startup (crash or archive recovery ran): pg_last_wal_replay_lsn()
        # keeps reporting replay_lsn after recovery ends, and is NULL after a clean start
        ("recovery_ran", c_uint8),
    ]


WALSND_STATES = ("startup", "catchup", "streaming", "backup", "stopping")


class WalSndEntry(ctypes.Structure):
    """One WalSnd slot (WS: WalSnd). pid is written first on claim and cleared last (WALSND-2);
    `latch_slot` is the child slot whose ProcEntry holds the owner's latch (the latch pointer)."""

    _fields_ = [
        ("changecount", c_uint32),  # seqlock over the positions, odd while the owner writes
        ("pid", c_int32),
        ("state", c_uint8),  # index into WALSND_STATES
        ("procsig_stopping", c_uint8),  # PROCSIG_WALSND_INIT_STOPPING, set by the checkpointer
        ("is_sync_candidate", c_uint8),
        ("latch_slot", c_int32),  # -1 = no latch
        ("sync_priority", c_int32),
        ("sent_lsn", c_uint64),
        ("write_lsn", c_uint64),
        ("flush_lsn", c_uint64),
        ("apply_lsn", c_uint64),
        ("write_lag", c_double),  # seconds, -1 = NULL
        ("flush_lag", c_double),
        ("apply_lag", c_double),
        ("reply_time", c_double),  # 0 = never
        ("application_name", ctypes.c_char * NAME_LEN),
    ]


WALRCV_STATES = ("stopped", "starting", "streaming", "waiting", "restarting", "stopping")


class WalRcvCtl(ctypes.Structure):
    """The WalRcv struct (WR/WRF). See the module notes for who writes which field."""

    _fields_ = [
        ("changecount", c_uint32),
        ("pid", c_int32),
        ("state", c_uint8),  # index into WALRCV_STATES
        ("ready_to_display", c_uint8),
        ("force_reply", c_uint8),
        ("latch_slot", c_int32),
        ("startup_slot", c_int32),  # the startup process's latch, woken at each flush and at exit
        ("start_time", c_double),  # when STARTING was requested (WALRCV-3)
        ("receive_start_lsn", c_uint64),
        ("receive_start_tli", c_uint32),
        ("received_tli", c_uint32),
        ("written_lsn", c_uint64),
        ("flushed_lsn", c_uint64),
        ("latest_end_lsn", c_uint64),
        ("latest_end_time", c_double),
        ("last_msg_send_time", c_double),
        ("last_msg_receipt_time", c_double),
        ("sender_port", c_int32),
        ("end_of_timeline_lsn", c_uint64),  # where the primary ended the stream (WAITING)
        ("end_of_timeline_tli", c_uint32),
        ("next_tli", c_uint32),
        ("conninfo", ctypes.c_char * CONNINFO_LEN),
        ("slot_name", ctypes.c_char * NAME_LEN),
        ("sender_host", ctypes.c_char * NAME_LEN),
    ]


class ReplSlotEntry(ctypes.Structure):
    """One physical replication slot (repl/slot.c: ReplicationSlot)."""

    _fields_ = [
        ("in_use", c_uint8),
        ("temporary", c_uint8),
        ("active_pid", c_int32),
        ("restart_lsn", c_uint64),
        ("restart_tli", c_uint32),
        ("dirty", c_uint8),
        ("name", ctypes.c_char * NAME_LEN),
    ]


class BgwSlot(ctypes.Structure):
    """BackgroundWorkerSlot (BGW-4/5): a free slot is written by a registrant holding
    LWLockId.BGWORKER, which sets `in_use` last; a slot in use belongs to the postmaster (it
    writes pid; others may only set `terminate`). The statistics are the postmaster's too."""

    _fields_ = [
        ("in_use", c_uint8),
        ("terminate", c_uint8),
        ("start_time", c_uint8),
        ("flags", c_uint32),
        ("generation", c_uint64),
        ("pid", c_int32),  # -1 not yet started, 0 stopped
        ("restart_time", c_int32),
        ("notify_pid", c_int32),
        ("main_arg", ctypes.c_int64),
        ("name", ctypes.c_char * 96),
        ("type", ctypes.c_char * 96),
        ("function", ctypes.c_char * 128),
        ("extra", ctypes.c_ubyte * 128),
        ("extra_len", c_uint32),
        ("starts", c_uint32),
        ("crashes", c_uint32),
        ("last_start", c_double),
        ("last_exit", c_double),
        ("last_exit_code", c_int32),
        ("has_exited", c_uint8),
    ]


SYNC_REP_MODES = ("remote_write", "on", "remote_apply")  # WalSndCtl->lsn[] index: write, flush, apply


class SyncRepCtl(ctypes.Structure):
    """WalSndCtl's sync part: LSNs up to which waiters may be released, per wait mode."""

    _fields_ = [
        ("lsn", c_uint64 * 3),
        ("sync_standbys_defined", c_uint8),
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
        ("ckpt_duration_sum", c_double),  # seconds over the ckpt_done checkpoints (the checkpointer's)
    ]


class BgwStatEntry(ctypes.Structure):
    """Per background worker name: launches and crashes (written by the postmaster only)."""

    _fields_ = [
        ("name", ctypes.c_char * 96),
        ("start_time", c_uint8),  # node/bgwlist.py StartTime
        ("starts", c_uint64),
        ("crashes", c_uint64),
        ("restarts", c_uint64),  # launches of a registration that had run before
        ("early_starts", c_uint64),  # launches the start-time table does not allow in the state at the fork
    ]


class PmStats(ctypes.Structure):
    """The postmaster's statistics for the metrics exporter (see the module notes)."""

    _fields_ = [
        ("pm_state", c_uint8),  # node/states.py PMState
        ("incarnation_start", c_double),  # postmaster start, or the last crash reinit (Unix time)
        ("consistent_at", c_double),  # 0 = not yet in this incarnation
        ("ready_at", c_double),
        ("crash_restarts", c_uint64),
        ("child_starts", c_uint64 * KIND_SLOTS),
        ("child_exits", c_uint64 * (KIND_SLOTS * EXIT_CLASS_SLOTS)),
        ("bgw_stat_count", c_uint32),
        ("bgw_stats", BgwStatEntry * BGW_STAT_SLOTS),
    ]


@dataclass(frozen=True, slots=True)
class ShmemSizes:
    """Array sizes, fixed for the life of one segment (postmaster-context settings).

    n_procs is the number of child slots of node/pmchild.py's ChildTable: one ProcEntry and one
    dead-man switch flag per slot."""

    n_procs: int
    n_walsenders: int = 10
    n_replslots: int = 10
    n_bgworkers: int = 8


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
            ("walsnd", WalSndEntry * max(1, sizes.n_walsenders)),
            ("walrcv", WalRcvCtl),
            ("replslots", ReplSlotEntry * max(1, sizes.n_replslots)),
            ("syncrep", SyncRepCtl),
            ("bgw_count", c_uint32),  # total slots, written once at creation (BGW-6's consistency check)
            ("bgw", BgwSlot * max(1, sizes.n_bgworkers)),
            ("pmstats", PmStats),
            ("signal_counts", c_uint64 * (KIND_SLOTS * SIGNAL_SLOTS)),
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
