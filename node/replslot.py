"""Physical replication slots (repl/slot.c, slotfuncs.c): create, acquire, advance, drop, persist.

What it does: keeps the slots in shared memory (`shm.replslots`), persists each permanent slot
as `pg_replslot/<name>/state` (written to a temporary file, fsynced, renamed, as
SaveSlotToPath does) and loads them again at startup (StartupReplicationSlots). A slot holds
WAL from its restart_lsn: `min_restart_lsn()` is what the checkpointer must keep.

What it deliberately does not do: logical slots (catalog_xmin, output plugins, two-phase),
xmin (hot_standby_feedback is accepted and ignored), slot synchronisation to standbys.

Ownership: creating and dropping happen under LWLockId.REPLSLOT; a slot's restart_lsn is
advanced only by the process that has it active (`active_pid`), and `dirty` tells the
checkpointer to write it at the next checkpoint (CheckPointReplicationSlots).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.elog import PGError
from node.ipc.lwlock import LWLockId

SLOT_DIR = "pg_replslot"
_NAME_RE = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True, slots=True)
class SlotInfo:
    name: str
    temporary: bool
    active_pid: int
    restart_lsn: int
    restart_tli: int


def check_name(name: str) -> None:
    """ReplicationSlotValidateName, with PostgreSQL's messages and SQLSTATEs."""
    if not name:
        raise PGError(f'replication slot name "{name}" is too short', "42602")
    if len(name) >= 64:
        raise PGError(f'replication slot name "{name}" is too long', "42622")
    if not _NAME_RE.match(name):
        raise PGError(f'replication slot name "{name}" contains invalid character', "42602",
                      hint="Replication slot names may only contain lower case letters, numbers, "
                      "and the underscore character.")  # fmt: skip


def _find(shm: Any, name: str) -> Any:
    for s in shm.replslots:
        if s.in_use and s.name.decode() == name:
            return s
    return None


def get(shm: Any, name: str) -> SlotInfo | None:
    s = _find(shm, name)
    if s is None:
        return None
    return SlotInfo(s.name.decode(), bool(s.temporary), int(s.active_pid), int(s.restart_lsn), int(s.restart_tli))


def all_slots(shm: Any) -> list[SlotInfo]:
    return [SlotInfo(s.name.decode(), bool(s.temporary), int(s.active_pid), int(s.restart_lsn), int(s.restart_tli))
            for s in shm.replslots if s.in_use]  # fmt: skip


def create(shm: Any, locks: Any, datadir: str | Path, name: str, *, temporary: bool, reserve_lsn: int,
           tli: int, owner_pid: int) -> SlotInfo:  # fmt: skip
    """ReplicationSlotCreate. A temporary slot is active for its creator until it exits."""
    check_name(name)
    with locks.hold(LWLockId.REPLSLOT):
        if _find(shm, name) is not None:
            raise PGError(f'replication slot "{name}" already exists', "42710")
        free = next((s for s in shm.replslots if not s.in_use), None)
        if free is None or len(shm.replslots) == 0:
            raise PGError("all replication slots are in use", "53400",
                          hint='Free one or increase "max_replication_slots".')  # fmt: skip
        free.name = name.encode()
        free.temporary = 1 if temporary else 0
        free.active_pid = owner_pid if temporary else 0
        free.restart_lsn = reserve_lsn
        free.restart_tli = tli
        free.dirty = 0
        free.in_use = 1  # published last (P-11)
    if not temporary:
        save(free, datadir)
    return SlotInfo(name, temporary, int(free.active_pid), reserve_lsn, tli)


def acquire(shm: Any, locks: Any, name: str, pid: int) -> None:
    """ReplicationSlotAcquire (nowait): 42704 unknown, 55006 active elsewhere."""
    with locks.hold(LWLockId.REPLSLOT):
        s = _find(shm, name)
        if s is None:
            raise PGError(f'replication slot "{name}" does not exist', "42704")
        _check_not_active(s, name, pid)
        s.active_pid = pid


def release(shm: Any, locks: Any, datadir: str | Path, name: str, pid: int) -> None:
    """ReplicationSlotRelease: a temporary slot goes away with its owner."""
    with locks.hold(LWLockId.REPLSLOT):
        s = _find(shm, name)
        if s is None or s.active_pid != pid:
            return
        if s.temporary:
            s.in_use = 0
            s.active_pid = 0
            return
        s.active_pid = 0
    if s.dirty:
        save(s, datadir)


def release_all(shm: Any, locks: Any, datadir: str | Path, pid: int) -> None:
    """At exit (ReplicationSlotCleanup): release what we hold, drop our temporary slots."""
    for s in list(shm.replslots):
        if s.in_use and s.active_pid == pid:
            release(shm, locks, datadir, s.name.decode(), pid)


def advance(shm: Any, name: str, pid: int, lsn: int) -> None:
    """PhysicalConfirmReceivedLocation: the standby flushed up to lsn; never moves backwards."""
    s = _find(shm, name)
    if s is not None and s.active_pid == pid and lsn > s.restart_lsn:
        s.restart_lsn = lsn
        s.dirty = 1


def drop(shm: Any, locks: Any, datadir: str | Path, name: str, pid: int) -> None:
    """ReplicationSlotDrop (nowait)."""
    with locks.hold(LWLockId.REPLSLOT):
        s = _find(shm, name)
        if s is None:
            raise PGError(f'replication slot "{name}" does not exist', "42704")
        _check_not_active(s, name, pid)
        s.in_use = 0
        s.active_pid = 0
        temporary = bool(s.temporary)
    if not temporary:
        path = Path(datadir) / SLOT_DIR / name
        shutil.rmtree(path, ignore_errors=True)
        _fsync_dir(Path(datadir) / SLOT_DIR)


def min_restart_lsn(shm: Any) -> int:
    """ReplicationSlotsComputeRequiredLSN: 0 when no slot holds WAL."""
    lsns = [int(s.restart_lsn) for s in shm.replslots if s.in_use and s.restart_lsn]
    return min(lsns) if lsns else 0


def save(s: Any, datadir: str | Path) -> None:
    name = s.name.decode()
    d = Path(datadir) / SLOT_DIR / name
    d.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"name": name, "type": "physical", "restart_lsn": int(s.restart_lsn),
                       "restart_tli": int(s.restart_tli), "version": 1})  # fmt: skip
    tmp = d / "state.tmp"
    with open(tmp, "w") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, d / "state")
    _fsync_dir(d)
    s.dirty = 0


def checkpoint_slots(shm: Any, datadir: str | Path) -> None:
    """CheckPointReplicationSlots: write the slots whose restart_lsn moved."""
    for s in shm.replslots:
        if s.in_use and not s.temporary and s.dirty:
            save(s, datadir)


def startup_slots(shm: Any, datadir: str | Path) -> list[str]:
    """StartupReplicationSlots: load every saved slot (leftover temporary state files and
    half-written directories are removed, as PostgreSQL does). Returns the loaded names."""
    root = Path(datadir) / SLOT_DIR
    root.mkdir(exist_ok=True)
    loaded = []
    for d in sorted(root.iterdir()):
        state = d / "state"
        if not d.is_dir() or not state.exists():
            shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)
            continue
        try:
            data = json.loads(state.read_text())
            name = str(data["name"])
            check_name(name)
        except (ValueError, KeyError, PGError):
            continue
        free = next((s for s in shm.replslots if not s.in_use), None)
        if free is None:
            raise PGError("too many replication slots active before shutdown", "53400", severity="FATAL",
                          hint='Increase "max_replication_slots" and try again.')  # fmt: skip
        free.name = name.encode()
        free.temporary = 0
        free.active_pid = 0
        free.restart_lsn = int(data.get("restart_lsn", 0))
        free.restart_tli = int(data.get("restart_tli", 0))
        free.dirty = 0
        free.in_use = 1
        loaded.append(name)
    return loaded


def _check_not_active(s: Any, name: str, pid: int) -> None:
    """55006 when another live process has the slot (a dead holder's claim is void)."""
    from node.datadir import _pid_alive

    if s.active_pid and s.active_pid != pid and _pid_alive(int(s.active_pid)):
        raise PGError(f'replication slot "{name}" is active for PID {s.active_pid}', "55006")


def _fsync_dir(path: Path) -> None:
    from node.wal import _fsync_dir as fsync_dir

    if path.exists():
        fsync_dir(path)
