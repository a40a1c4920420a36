"""The data directory: initdb, pg_control, postmaster.pid and the incarnation interlock.

What it does: creates a data directory as initdb does (PG_VERSION, postgresql.conf listing every
setting with its default, postgresql.auto.conf, pg_hba.conf, global/pg_control with a fresh
64-bit system identifier, pg_wal/ and pg_wal/archive_status/, log/); reads and writes
pg_control (our own fixed binary layout with a CRC-32C, holding the fields PostgreSQL's
pg_controldata shows that pgbed uses); writes postmaster.pid with PostgreSQL's line layout and
updates its status line; holds the interlock.

The interlock (DESIGN "interlock"): the postmaster takes an exclusive flock on
`global/pgbed.interlock` and every child inherits the descriptor, so the lock stays held while
any process of this incarnation is alive, even after the postmaster is SIGKILLed. A new
postmaster that cannot take it refuses to start (PostgreSQL checks the attach count of the old
shared-memory segment for the same reason).

What it deliberately does not do: WAL (the storage issue writes pg_wal/ and the redo fields).
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from node.crc32c import crc32c
from node.states import DBState, PidfileStatus

PG_VERSION = "15"
PG_CONTROL_VERSION = 1300
CATALOG_VERSION = 202209061
PIDFILE = "postmaster.pid"
INTERLOCK = "global/pgbed.interlock"

# magic, version, catversion, sysid, state, time, checkpoint, redo, tli, prev_tli,
# checkpoint_time, min_recovery_point, min_recovery_tli, backup_start, backup_end,
# end_of_backup_required, wal_segment_size, crc
_CONTROL = struct.Struct("<4sIIQIdQQIIdQIQQBI")
_CONTROL_MAGIC = b"PGBC"


@dataclass
class ControlFile:
    system_identifier: int
    state: DBState = DBState.SHUTDOWNED
    time: float = 0.0
    checkpoint_lsn: int = 0
    redo_lsn: int = 0
    timeline: int = 1
    prev_timeline: int = 1
    checkpoint_time: float = 0.0
    min_recovery_point: int = 0
    min_recovery_tli: int = 0
    backup_start_lsn: int = 0
    backup_end_lsn: int = 0
    end_of_backup_required: bool = False
    wal_segment_size: int = 16 * 1024 * 1024

    def pack(self) -> bytes:
        body = _CONTROL.pack(
            _CONTROL_MAGIC, PG_CONTROL_VERSION, CATALOG_VERSION, self.system_identifier, int(self.state),
            self.time, self.checkpoint_lsn, self.redo_lsn, self.timeline, self.prev_timeline,
            self.checkpoint_time, self.min_recovery_point, self.min_recovery_tli, self.backup_start_lsn,
            self.backup_end_lsn, int(self.end_of_backup_required), self.wal_segment_size,
        )  # fmt: skip
        return body + struct.pack("<I", crc32c(body))

    @classmethod
    def unpack(cls, data: bytes) -> ControlFile:
        n = _CONTROL.size
        if len(data) < n + 4:
            raise ValueError("pg_control file is too short")
        body, (crc,) = data[:n], struct.unpack("<I", data[n : n + 4])
        if crc32c(body) != crc:
            raise ValueError("incorrect checksum in control file")
        f = _CONTROL.unpack(body)
        if f[0] != _CONTROL_MAGIC or f[1] != PG_CONTROL_VERSION:
            raise ValueError("database files are incompatible with server")
        return cls(
            system_identifier=f[3], state=DBState(f[4]), time=f[5], checkpoint_lsn=f[6], redo_lsn=f[7],
            timeline=f[8], prev_timeline=f[9], checkpoint_time=f[10], min_recovery_point=f[11],
            min_recovery_tli=f[12], backup_start_lsn=f[13], backup_end_lsn=f[14],
            end_of_backup_required=bool(f[15]), wal_segment_size=f[16],
        )  # fmt: skip


def control_path(datadir: str | Path) -> Path:
    return Path(datadir) / "global" / "pg_control"


def read_control(datadir: str | Path) -> ControlFile:
    return ControlFile.unpack(control_path(datadir).read_bytes())


def write_control(datadir: str | Path, cf: ControlFile) -> None:
    """Write pg_control durably: temp file, fsync, rename, fsync the directory."""
    cf.time = time.time()
    path = control_path(datadir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, cf.pack())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def new_system_identifier() -> int:
    """PostgreSQL's layout (seconds << 32 | microseconds << 12 | 12 low bits), with the low bits
    random instead of the pid so two initdbs in the same microsecond still differ."""
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return ((sec << 32) | (usec << 12) | (int.from_bytes(os.urandom(2), 'big') & 0xFFF)) & 0xFFFFFFFFFFFFFFFF


DEFAULT_HBA = """\
# PostgreSQL Client Authentication Configuration File (pgbed)
# ===================================================
#
# TYPE  DATABASE        USER            ADDRESS                 METHOD
#
# METHOD can be "trust" or "reject" in pgbed for now.

# "local" is for Unix domain socket connections only
local   all             all                                     {auth}
# IPv4 local connections:
host    all             all             127.0.0.1/32            {auth}
# IPv6 local connections:
host    all             all             ::1/128                 {auth}
# Allow replication connections from localhost, by a user with the
# replication privilege.
local   replication     all                                     {auth}
host    replication     all             127.0.0.1/32            {auth}
host    replication     all             ::1/128                 {auth}
"""


def initdb(
    datadir: str | Path,
    *,
    wal_segsize_mb: int = 16,
    auth: str = "trust",
    settings: dict[str, str] | None = None,
    superuser: str = "postgres",
    password: str | None = None,
) -> ControlFile:
    """Create a new data directory (initdb). Raises FileExistsError if it is not empty."""
    from node import guc

    d = Path(datadir)
    if d.exists() and any(d.iterdir()):
        raise FileExistsError(f'directory "{d}" exists but is not empty')
    if wal_segsize_mb < 1 or wal_segsize_mb > 1024 or wal_segsize_mb & (wal_segsize_mb - 1):
        raise ValueError("argument of --wal-segsize must be a power of two between 1 and 1024")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    for sub in ("global", "pg_wal", "pg_wal/archive_status", "log", "base", "pg_tblspc"):
        (d / sub).mkdir(mode=0o700, exist_ok=True)
    (d / "PG_VERSION").write_text(PG_VERSION + "\n")
    guc.write_default_conf(d / "postgresql.conf", settings or {})
    (d / "postgresql.auto.conf").write_text(
        "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n"
    )
    (d / "pg_hba.conf").write_text(DEFAULT_HBA.format(auth=auth))
    segsize = wal_segsize_mb * 1024 * 1024
    # Bootstrap mode: the heap's initial contents are not WAL-logged; the first checkpoint
    # record, a shutdown checkpoint at the start of segment 1, covers them.
    from node.storage import bootstrap_heap
    from node.xlog import bootstrap_wal

    bootstrap_heap(d, superuser, password)
    ckpt = bootstrap_wal(d, segsize)
    cf = ControlFile(system_identifier=new_system_identifier(), wal_segment_size=segsize,
                     checkpoint_lsn=ckpt, redo_lsn=segsize, checkpoint_time=time.time())  # fmt: skip
    write_control(d, cf)
    return cf


# -- postmaster.pid ---------------------------------------------------------------------------


class LockFileError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_pidfile(datadir: str | Path) -> None:
    """The first half of CreateLockFile: refuse when postmaster.pid names a live process."""
    path = Path(datadir) / PIDFILE
    try:
        other = int(path.read_text().split("\n", 1)[0].strip() or "0")
    except (OSError, ValueError):
        return
    if other and other != os.getpid() and _pid_alive(other):
        raise LockFileError(
            f'lock file "{PIDFILE}" already exists',
            f'Is another postmaster (PID {other}) running in data directory "{datadir}"?',
        )


def create_pidfile(
    datadir: str | Path, *, port: int, socket_dir: str, listen_addr: str, start_time: float
) -> None:
    """CreateLockFile: refuse when a live postmaster owns the directory."""
    path = Path(datadir) / PIDFILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            other = int(path.read_text().split("\n", 1)[0].strip() or "0")
        except (OSError, ValueError):
            other = 0
        if other and other != os.getpid() and _pid_alive(other):
            raise LockFileError(
                f'lock file "{PIDFILE}" already exists',
                f'Is another postmaster (PID {other}) running in data directory "{datadir}"?',
            ) from None
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    lines = [
        str(os.getpid()), str(Path(datadir).resolve()), str(int(start_time)), str(port), socket_dir,
        listen_addr, f"{0:>9} {0:>9}", f"{PidfileStatus.STARTING.value:<8}",
    ]  # fmt: skip
    try:
        os.write(fd, ("\n".join(lines) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def set_pidfile_status(datadir: str | Path, status: PidfileStatus) -> None:
    """AddToDataDirLockFile(LOCK_FILE_LINE_PM_STATUS, ...): rewrite line 8 in place."""
    path = Path(datadir) / PIDFILE
    try:
        lines = path.read_text().split("\n")
    except OSError:
        return
    while len(lines) < 9:
        lines.append("")
    lines[7] = f"{status.value:<8}"
    data = "\n".join(lines[:8]) + "\n"
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_pidfile(datadir: str | Path) -> list[str] | None:
    try:
        return (Path(datadir) / PIDFILE).read_text().split("\n")
    except OSError:
        return None


def remove_pidfile(datadir: str | Path) -> None:
    (Path(datadir) / PIDFILE).unlink(missing_ok=True)


def take_interlock(datadir: str | Path) -> int:
    """Take the incarnation interlock; the returned fd must be inherited by every child."""
    path = Path(datadir) / INTERLOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockFileError(
            "pre-existing shared memory block is still in use",
            "Terminate any old server processes associated with data directory "
            f'"{Path(datadir).resolve()}".',
        ) from None
    os.set_inheritable(fd, True)
    return fd
