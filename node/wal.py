"""The write-ahead log: record format, segment files, writing, reading and removal.

What it does
- Names segment files as PostgreSQL does (`TTTTTTTTXXXXXXXXYYYYYYYY`, power-of-two segment size,
  1 MB … 1 GB) so pg_receivewal can archive them unchanged, and implements pg_walfile_name's
  naming rule (an LSN exactly on a segment boundary names the *previous* segment).
- Defines our private record format: a 24-byte header (`<IIQBBHI`: xl_tot_len, xl_xid, xl_prev,
  xl_info, xl_rmid, 2 zero bytes, xl_crc) followed by the payload; the next record starts at the
  MAXALIGN (8-byte) end. xl_crc is CRC-32C of the payload and then the header's first 20 bytes,
  PostgreSQL's order. The stream is continuous: no page headers, a record (even its header) may
  span segment files, and a record may be larger than a segment. The WAL starts at LSN = segsize
  (segment 0 is never used). An XLOG SWITCH record, as in PostgreSQL, ends its segment: the next
  record starts at the next segment boundary.
- `WalWriter` appends records with os.pwrite, creating each segment zero-filled to its full size
  under a temporary name and linking it into place (a crash never leaves a short segment), and
  fsyncs on `flush()`. `WalReader` reads records back and stops at the end of valid WAL, keeping
  PostgreSQL 15's wording for why in `end_reason` (the startup process logs it).
- `remove_old_segments()` deletes segments wholly before the oldest LSN still needed.

What it deliberately does not do
- Decide anything: where WAL starts after recovery, when to flush, what to keep, what a COMMIT
  payload means (opaque bytes here; node/storage.py owns it) all belong to the callers.
- Locking. One writer at a time is the caller's rule (the SQLite write lock is the WAL
  insertion lock, see node/storage.py).
- Recycle segments, write page headers, compress, or emulate PostgreSQL's on-disk WAL format:
  only the file names and the LSN arithmetic are PostgreSQL's.

Who owns which state
- The authoritative insert/prev/flush positions live in shared memory (XLogCtl) and are read and
  advanced by the caller under the lock. A `WalWriter` holds a private copy of them for the time
  it writes, plus open file descriptors, and never caches file contents: another process may
  write the same files in its turn, so everything is re-read from the files. The caller publishes
  `insert_lsn`/`prev_lsn`/`flush_lsn` back to shared memory after appending.
- A `WalReader` holds read-only descriptors and the outcome of its last read (`end_reason`,
  `missing_segment`, `end_of_wal`); it never writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Final

from node.protocol import format_lsn

# ---------------------------------------------------------------------------------------------
# CRC-32C: Google's C implementation (google-crc32c, Apache-2.0, a dependency) when importable;
# the pure-Python one in node/crc32c.py caps appends at ~15 MB/s, 15x slower for 1 KB records.
# Same results either way.

_Buffer = bytes | bytearray | memoryview


def _load_crc32c() -> tuple[Callable[[_Buffer, int], int], str]:
    try:
        import google_crc32c
    except ImportError:  # pragma: no cover - depends on the environment
        from node.crc32c import crc32c as py_impl

        return (lambda data, crc: py_impl(bytes(data), crc)), "node.crc32c"
    extend = google_crc32c.extend
    return (lambda data, crc: extend(crc, bytes(data) if isinstance(data, memoryview) else data)), "google-crc32c"


_crc32c, CRC_IMPLEMENTATION = _load_crc32c()


def crc32c(data: _Buffer, crc: int = 0) -> int:
    """CRC-32C of `data`, continuing from `crc` (the WAL's checksum)."""
    return _crc32c(data, crc)


# ---------------------------------------------------------------------------------------------
# Constants, resource managers and record types.

XLOGDIR: Final = "pg_wal"
MAXIMUM_ALIGNOF: Final = 8
MIN_SEGSIZE: Final = 1024 * 1024
MAX_SEGSIZE: Final = 1024 * 1024 * 1024
DEFAULT_SEGSIZE: Final = 16 * 1024 * 1024

_HEADER: Final = struct.Struct("<IIQBBHI")
SIZE_OF_XLOG_RECORD: Final = _HEADER.size  # 24
_HEADER_CRC_OFFSET: Final = 20  # offsetof(XLogRecord, xl_crc)
_HEAD20: Final = struct.Struct("<IIQBBH")
_CRC: Final = struct.Struct("<I")

# PostgreSQL's MaxAllocSize: no record can be longer (xl_tot_len is what the reader would have to
# allocate). A length beyond it is garbage, reported as "record length … too long".
MAX_RECORD_LEN: Final = 0x3FFFFFFF

# How much the reader fetches with the header, so that most records need a single pread.
_READAHEAD: Final = 8192


class Rmgr(IntEnum):
    """Resource managers (xl_rmid), PostgreSQL's ids for the ones we have."""

    XLOG = 0
    XACT = 1
    STANDBY = 8


RM_XLOG: Final = Rmgr.XLOG
RM_XACT: Final = Rmgr.XACT
RM_STANDBY: Final = Rmgr.STANDBY


class XlogInfo(IntEnum):
    """xl_info of RM_XLOG records (PostgreSQL's values)."""

    CHECKPOINT_SHUTDOWN = 0x00
    CHECKPOINT_ONLINE = 0x10
    NOOP = 0x20
    SWITCH = 0x40
    BACKUP_END = 0x50
    END_OF_RECOVERY = 0x90


class XactInfo(IntEnum):
    """xl_info of RM_XACT records. A COMMIT's payload is a transaction's changes (node/storage.py)."""

    COMMIT = 0x00


class StandbyInfo(IntEnum):
    """xl_info of RM_STANDBY records."""

    RUNNING_XACTS = 0x10


_INFO_ENUMS: Final[dict[int, type[IntEnum]]] = {Rmgr.XLOG: XlogInfo, Rmgr.XACT: XactInfo, Rmgr.STANDBY: StandbyInfo}
_VALID_RMIDS: Final = frozenset(int(r) for r in Rmgr)


def maxalign(n: int) -> int:
    """MAXALIGN: round up to a multiple of 8."""
    return (n + MAXIMUM_ALIGNOF - 1) & ~(MAXIMUM_ALIGNOF - 1)


# ---------------------------------------------------------------------------------------------
# Payloads with a fixed layout.

_CHECKPOINT: Final = struct.Struct("<QIIQdB7x")
_END_OF_RECOVERY: Final = struct.Struct("<dII")


@dataclass(frozen=True, slots=True)
class CheckPoint:
    """Payload of CHECKPOINT_SHUTDOWN / CHECKPOINT_ONLINE (cf. PostgreSQL's CheckPoint)."""

    redo: int
    timeline: int
    prev_timeline: int
    next_xid: int
    time: float
    full_page_writes: bool = False

    def pack(self) -> bytes:
        return _CHECKPOINT.pack(
            self.redo, self.timeline, self.prev_timeline, self.next_xid, self.time, int(self.full_page_writes)
        )

    @classmethod
    def unpack(cls, data: bytes) -> CheckPoint:
        if len(data) != _CHECKPOINT.size:
            raise ValueError(f"checkpoint record payload has {len(data)} bytes, expected {_CHECKPOINT.size}")
        redo, tli, prev_tli, next_xid, t, fpw = _CHECKPOINT.unpack(data)
        return cls(redo, tli, prev_tli, next_xid, t, bool(fpw))


_BACKUP_END: Final = struct.Struct("<Q")


def pack_backup_end(start_lsn: int) -> bytes:
    """Payload of BACKUP_END: the backup's start LSN (as xlog_redo reads it)."""
    return _BACKUP_END.pack(start_lsn)


def unpack_backup_end(data: bytes) -> int:
    if len(data) != _BACKUP_END.size:
        raise ValueError(f"backup-end payload has {len(data)} bytes, expected {_BACKUP_END.size}")
    return int(_BACKUP_END.unpack(data)[0])


@dataclass(frozen=True, slots=True)
class EndOfRecovery:
    """Payload of END_OF_RECOVERY (cf. xl_end_of_recovery: end_time, ThisTimeLineID, PrevTimeLineID)."""

    time: float
    timeline: int
    prev_timeline: int

    def pack(self) -> bytes:
        return _END_OF_RECOVERY.pack(self.time, self.timeline, self.prev_timeline)

    @classmethod
    def unpack(cls, data: bytes) -> EndOfRecovery:
        if len(data) != _END_OF_RECOVERY.size:
            raise ValueError(f"end-of-recovery payload has {len(data)} bytes, expected {_END_OF_RECOVERY.size}")
        return cls(*_END_OF_RECOVERY.unpack(data))


# ---------------------------------------------------------------------------------------------
# File names and LSN arithmetic.


def check_segsize(segsize: int) -> None:
    if segsize < MIN_SEGSIZE or segsize > MAX_SEGSIZE or segsize & (segsize - 1):
        raise ValueError(f"WAL segment size must be a power of two between 1 MB and 1 GB, not {segsize}")


def _segno_name(segno: int, timeline: int, segsize: int) -> str:
    per_id = 0x100000000 // segsize  # XLogSegmentsPerXLogId
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def segment_name(lsn: int, timeline: int, segsize: int) -> str:
    """File name of the segment holding byte `lsn` (XLByteToSeg + XLogFileName)."""
    return _segno_name(lsn // segsize, timeline, segsize)


def segment_start(lsn: int, segsize: int) -> int:
    """LSN of the first byte of the segment holding `lsn`."""
    return lsn - lsn % segsize


def walfile_name(lsn: int, tli: int, segsize: int) -> str:
    """pg_walfile_name(): PostgreSQL uses XLByteToPrevSeg here, so an LSN exactly on a segment
    boundary names the previous segment (the one that *ends* there). uint64 arithmetic, as in C."""
    return _segno_name(((lsn - 1) & 0xFFFFFFFFFFFFFFFF) // segsize, tli, segsize)


def walfile_name_offset(lsn: int, tli: int, segsize: int) -> tuple[str, int]:
    """pg_walfile_name_offset(): the same previous-segment rule, offset = lsn % segsize."""
    return walfile_name(lsn, tli, segsize), lsn % segsize


def is_segment_name(name: str) -> bool:
    return len(name) == 24 and all(c in "0123456789ABCDEF" for c in name)


def parse_segment_name(name: str, segsize: int) -> tuple[int, int]:
    """(timeline, segno) of a segment file name (XLogFromFileName)."""
    if not is_segment_name(name):
        raise ValueError(f'invalid WAL file name "{name}"')
    per_id = 0x100000000 // segsize
    return int(name[:8], 16), int(name[8:16], 16) * per_id + int(name[16:], 16)


def _missing_file_reason(name: str) -> str:
    # XLogFileReadAnyTLI's wording. PostgreSQL logs it at DEBUG2 when WAL simply runs out at a
    # segment that was never created, and the startup process raises it as FATAL when the
    # checkpoint record itself is in the missing file.
    return f'could not open file "{XLOGDIR}/{name}": {os.strerror(errno.ENOENT)}'


# ---------------------------------------------------------------------------------------------
# Records.


@dataclass(frozen=True, slots=True)
class Record:
    lsn: int
    end_lsn: int  # where the next record starts (MAXALIGN end; next segment for SWITCH)
    xid: int
    prev: int
    rmid: int
    info: int
    payload: bytes

    @property
    def rmgr_name(self) -> str:
        try:
            return Rmgr(self.rmid).name
        except ValueError:
            return str(self.rmid)

    @property
    def info_name(self) -> str:
        enum = _INFO_ENUMS.get(self.rmid)
        if enum is not None:
            try:
                return enum(self.info).name
            except ValueError:
                pass
        return f"UNKNOWN ({self.info:#x})"

    def describe(self) -> str:
        """pg_waldump-like one-liner, for logs and debugging."""
        return (
            f"rmgr: {self.rmgr_name} len (rec/tot): {len(self.payload)}/{SIZE_OF_XLOG_RECORD + len(self.payload)}, "
            f"tx: {self.xid}, lsn: {format_lsn(self.lsn)}, prev {format_lsn(self.prev)}, desc: {self.info_name}"
        )


def pack_record(rmid: int, info: int, xid: int, prev: int, payload: bytes | bytearray | memoryview) -> bytes:
    """Header + payload + zero padding up to the MAXALIGN end: the exact bytes a record occupies."""
    if int(rmid) not in _VALID_RMIDS:
        raise ValueError(f"invalid resource manager ID {rmid}")
    if not 0 <= info <= 0xFF:
        raise ValueError(f"xl_info out of range: {info}")
    if not 0 <= xid <= 0xFFFFFFFF:
        raise ValueError(f"xid out of range: {xid}")
    tot_len = SIZE_OF_XLOG_RECORD + len(payload)
    if tot_len > MAX_RECORD_LEN:
        raise ValueError(f"WAL record of {tot_len} bytes is too long")
    head = _HEAD20.pack(tot_len, xid, prev, info, rmid, 0)
    crc = _crc32c(head, _crc32c(payload, 0))
    return b"".join((head, _CRC.pack(crc), payload, bytes(maxalign(tot_len) - tot_len)))


def _next_record_lsn(lsn: int, tot_len: int, rmid: int, info: int, segsize: int) -> int:
    end = lsn + maxalign(tot_len)
    if rmid == Rmgr.XLOG and info == XlogInfo.SWITCH:
        # As in XLogDecodeNextRecord: a SWITCH pretends to extend to the end of its segment.
        end = -(-end // segsize) * segsize
    return end


class InvalidWalRecord(Exception):
    """read_record() found no valid record at the LSN; `reason` is PostgreSQL's wording."""

    def __init__(self, reason: str, lsn: int, missing_segment: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lsn = lsn
        self.missing_segment = missing_segment


# ---------------------------------------------------------------------------------------------
# Writing.


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _preallocate(fd: int, size: int) -> None:
    """Give the file its full size, reading as zeros. posix_fallocate also reserves the blocks, so
    a full disk fails here rather than in the middle of a commit; filesystems without it get a
    sparse file."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        os.ftruncate(fd, size)


class WalWriter:
    """Appends records at `insert_lsn` on `timeline`. See the module docstring for who owns the
    positions; this object only holds a copy of them and file descriptors."""

    # Descriptors kept open after a flush: the insert segment and the one before it. Older ones
    # are closed so a long-lived writer does not hold a descriptor per segment ever written.
    _KEEP_OPEN = 2

    def __init__(
        self,
        waldir: Path | str,
        segsize: int,
        timeline: int,
        insert_lsn: int,
        prev_lsn: int,
        *,
        flush_lsn: int | None = None,
        fsync: bool = True,
    ) -> None:
        """`flush_lsn`: how far WAL is known durable (default: `insert_lsn`, i.e. the previous
        writer flushed what it wrote); `flush()` fsyncs every segment from there on, including
        bytes another process wrote. `fsync=False` is the fsync=off setting: flush() then only
        advances flush_lsn."""
        check_segsize(segsize)
        self.waldir = Path(waldir)
        self.segsize = segsize
        self.timeline = timeline
        self.fsync_enabled = fsync
        self._fds: dict[int, int] = {}
        self._dirty: set[int] = set()  # segments written or zeroed by this writer since its last flush
        self._dir_dirty = False  # a segment was created or removed: the directory needs an fsync
        self.reposition(insert_lsn, prev_lsn, flush_lsn)

    def reposition(self, insert_lsn: int, prev_lsn: int, flush_lsn: int | None = None) -> None:
        """Take the shared positions again (a long-lived writer, at the start of its next turn)."""
        if insert_lsn < self.segsize or insert_lsn % MAXIMUM_ALIGNOF:
            raise ValueError(f"invalid WAL insert position {format_lsn(insert_lsn)}")
        if prev_lsn >= insert_lsn:
            raise ValueError(f"previous record {format_lsn(prev_lsn)} is not before {format_lsn(insert_lsn)}")
        self._insert = insert_lsn
        self._prev = prev_lsn
        self._flush = insert_lsn if flush_lsn is None else min(flush_lsn, insert_lsn)

    @property
    def insert_lsn(self) -> int:
        return self._insert

    @property
    def prev_lsn(self) -> int:
        return self._prev

    @property
    def flush_lsn(self) -> int:
        return self._flush

    # -- segment files --

    def _path(self, segno: int) -> Path:
        return self.waldir / _segno_name(segno, self.timeline, self.segsize)

    def _open(self, segno: int, *, create: bool) -> int | None:
        fd = self._fds.get(segno)
        if fd is not None:
            return fd
        path = self._path(segno)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                return None
            fd = self._create(path)
        else:
            # A segment someone shortened (or copied in short) is brought back to full size so
            # that the file layout stays "every segment is segsize bytes".
            if os.fstat(fd).st_size < self.segsize:
                _preallocate(fd, self.segsize)
                self._dirty.add(segno)
        self._fds[segno] = fd
        return fd

    def _create(self, path: Path) -> int:
        # Like XLogFileInit: build the zero-filled file under a temporary name, make it durable,
        # then link it into place. link() (not rename()) so an existing segment, which another
        # process may have open, is never replaced.
        tmp = self.waldir / f"xlogtemp.{os.getpid()}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _preallocate(fd, self.segsize)
            if self.fsync_enabled:
                os.fsync(fd)
            os.link(tmp, path)
        except FileExistsError:
            os.close(fd)
            return os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except BaseException:
            os.close(fd)
            raise
        else:
            self._dir_dirty = True
            return fd
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _write(self, lsn: int, data: bytes) -> None:
        # Open (create) every segment the bytes touch before writing any of them: a crash in the
        # middle then leaves a torn record followed by zeros, never a record whose tail segment
        # does not exist.
        first, last = lsn // self.segsize, (lsn + len(data) - 1) // self.segsize
        fds = {s: self._open(s, create=True) for s in range(first, last + 1)}
        view = memoryview(data)
        while view:
            segno, off = divmod(lsn, self.segsize)
            n = min(len(view), self.segsize - off)
            fd = fds[segno]
            assert fd is not None
            _pwrite_all(fd, view[:n], off)
            self._dirty.add(segno)
            view = view[n:]
            lsn += n

    # -- public API --

    def write_raw(self, lsn: int, data: bytes | memoryview) -> None:
        """Put streamed bytes at their LSN (a walreceiver's XLogWalRcvWrite); sync() makes them
        durable. The positions of this writer are not used."""
        if data:
            self._write(lsn, bytes(data))

    def _fsync_segments(self, segnos: set[int]) -> None:
        if self.fsync_enabled:
            for segno in sorted(segnos):
                fd = self._open(segno, create=False)
                if fd is not None:
                    os.fsync(fd)
            if self._dir_dirty:
                _fsync_dir(self.waldir)
        self._dirty.clear()
        self._dir_dirty = False

    def sync(self) -> None:
        """fsync every segment written since the last sync (XLogWalRcvFlush's issue_xlog_fsync)."""
        self._fsync_segments(self._dirty)
        if len(self._fds) > self._KEEP_OPEN:
            for segno in sorted(self._fds)[: -self._KEEP_OPEN]:
                os.close(self._fds.pop(segno))

    def append(self, rmid: int, info: int, xid: int, payload: bytes | bytearray | memoryview) -> tuple[int, int]:
        """Write one record at insert_lsn (no fsync). Returns (start LSN, end LSN); end is where the
        next record starts (the next segment boundary after a SWITCH)."""
        data = pack_record(rmid, info, xid, self._prev, payload)
        start = self._insert
        self._write(start, data)
        tot_len = SIZE_OF_XLOG_RECORD + len(payload)
        self._prev = start
        self._insert = _next_record_lsn(start, tot_len, int(rmid), info, self.segsize)
        return start, self._insert

    def flush(self, upto: int | None = None) -> int:
        """Make WAL durable up to at least `upto` (default: everything inserted) and return the
        flushed LSN, which is always insert_lsn after real work: we cannot fsync part of a file."""
        if upto is not None:
            if upto > self._insert:
                raise ValueError(
                    f"xlog flush request {format_lsn(upto)} is not satisfied --- "
                    f"flushed only to {format_lsn(self._insert)}"
                )
            if upto <= self._flush:
                return self._flush
        if self._flush >= self._insert and not self._dirty and not self._dir_dirty:
            return self._flush
        todo = set(self._dirty)
        if self._insert > self._flush:
            # Bytes written by earlier writers (other processes) that nobody flushed yet.
            todo.update(range(self._flush // self.segsize, (self._insert - 1) // self.segsize + 1))
        self._fsync_segments(todo)
        self._flush = self._insert
        self._close_old()
        return self._flush

    def _close_old(self) -> None:
        keep_from = self._insert // self.segsize - (self._KEEP_OPEN - 1)
        for segno in [s for s in self._fds if s < keep_from and s not in self._dirty]:
            os.close(self._fds.pop(segno))

    def zero_tail(self) -> None:
        """After recovery: zero from insert_lsn to the end of its segment, and remove this
        timeline's segment files beyond it. Without page headers nothing else would stop a reader
        from following stale bytes (a torn record's tail, an abandoned future) after the new end
        of WAL. Not fsynced until the next flush()."""
        segno, off = divmod(self._insert, self.segsize)
        fd = self._open(segno, create=False)
        if fd is not None:
            zeros = memoryview(bytes(1024 * 1024))
            pos = off
            while pos < self.segsize:
                n = min(len(zeros), self.segsize - pos)
                _pwrite_all(fd, zeros[:n], pos)
                pos += n
            self._dirty.add(segno)
        for name in sorted(os.listdir(self.waldir)):
            if not is_segment_name(name):
                continue
            tli, other = parse_segment_name(name, self.segsize)
            if tli == self.timeline and other > segno:
                old = self._fds.pop(other, None)
                if old is not None:
                    os.close(old)
                self._dirty.discard(other)
                os.unlink(self.waldir / name)
                self._dir_dirty = True

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> WalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Reading.


class _Missing(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


MissingSegment = _Missing  # raised by WalReader.read_raw: `.name` is the segment file looked for


class WalReader:
    """Reads records of `timeline` (and, given `history`, of its ancestors) from `waldir`.

    `history` is the parsed `.history` file of `timeline`: (parent timeline, switch LSN) pairs,
    oldest first. A segment is then looked for on the newest timeline that had begun by that
    segment and whose file exists, as XLogFileReadAnyTLI does."""

    _MAX_OPEN = 4

    def __init__(
        self, waldir: Path | str, segsize: int, timeline: int, *, history: Sequence[tuple[int, int]] = ()
    ) -> None:
        check_segsize(segsize)
        self.waldir = Path(waldir)
        self.segsize = segsize
        self.timeline = timeline
        # (tli, first LSN of that timeline), newest first.
        tles: list[tuple[int, int]] = [(timeline, history[-1][1] if history else 0)]
        for i in range(len(history) - 1, -1, -1):
            tles.append((history[i][0], history[i - 1][1] if i > 0 else 0))
        self._tles = tles
        self._fds: dict[int, int] = {}
        self.end_reason: str | None = None
        self.missing_segment: str | None = None
        self.end_of_wal: int | None = None

    def _fd(self, segno: int) -> int:
        fd = self._fds.get(segno)
        if fd is not None:
            return fd
        for tli, begin in self._tles:
            if segno < begin // self.segsize:
                continue
            try:
                fd = os.open(self.waldir / _segno_name(segno, tli, self.segsize), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            if len(self._fds) >= self._MAX_OPEN:
                os.close(self._fds.pop(min(self._fds)))
            self._fds[segno] = fd
            return fd
        # Only successful opens are cached: a segment that does not exist yet may appear later.
        raise _Missing(_segno_name(segno, self.timeline, self.segsize))

    def _read(self, lsn: int, n: int) -> bytes:
        """n bytes from lsn, across segments. Bytes past the end of a short file read as zeros
        (what a pre-allocated segment would hold); a missing file raises _Missing."""
        parts = []
        while n > 0:
            segno, off = divmod(lsn, self.segsize)
            k = min(n, self.segsize - off)
            chunk = os.pread(self._fd(segno), k, off)
            if len(chunk) < k:
                chunk += bytes(k - len(chunk))
            parts.append(chunk)
            lsn += k
            n -= k
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _evict_from(self, segno: int) -> None:
        for s in [s for s in self._fds if s >= segno]:
            os.close(self._fds.pop(s))

    def read_raw(self, lsn: int, n: int) -> bytes:
        """The stream's bytes [lsn, lsn+n), as a walsender sends them. Raises MissingSegment."""
        return self._read(lsn, n)

    def _decode(self, lsn: int, prev: int | None, upto: int | None = None) -> Record | str | None:
        """The record at lsn, or why there is none. `prev` None = random access (the prev-link
        only has to point backwards), else the exact LSN the prev-link must hold. The checks and
        their order are ValidXLogRecordHeader's, then the length limit, then ValidXLogRecord's."""
        off = lsn % self.segsize
        # Read ahead only within this segment, so that a record ending at the boundary does not
        # depend on the next segment existing; a header that itself spans the boundary is read
        # across it.
        first = self._read(lsn, max(SIZE_OF_XLOG_RECORD, min(_READAHEAD, self.segsize - off)))
        tot_len, xid, xl_prev, info, rmid, _pad, xl_crc = _HEADER.unpack_from(first)
        at = format_lsn(lsn)
        if tot_len < SIZE_OF_XLOG_RECORD:
            return f"invalid record length at {at}: wanted {SIZE_OF_XLOG_RECORD}, got {tot_len}"
        if rmid not in _VALID_RMIDS:
            return f"invalid resource manager ID {rmid} at {at}"
        if (xl_prev >= lsn) if prev is None else (xl_prev != prev):
            return f"record with incorrect prev-link {format_lsn(xl_prev)} at {at}"
        if tot_len > MAX_RECORD_LEN:
            return f"record length {tot_len} at {at} too long"
        if upto is not None and lsn + tot_len > upto:
            return None  # not all of it has arrived yet (a standby reading streamed WAL)
        if tot_len <= len(first):
            payload = first[SIZE_OF_XLOG_RECORD:tot_len]
        else:
            payload = first[SIZE_OF_XLOG_RECORD:] + self._read(lsn + len(first), tot_len - len(first))
        if _crc32c(first[:_HEADER_CRC_OFFSET], _crc32c(payload, 0)) != xl_crc:
            return f"incorrect resource manager data checksum in record at {at}"
        end = _next_record_lsn(lsn, tot_len, rmid, info, self.segsize)
        return Record(lsn, end, xid, xl_prev, rmid, info, payload)

    def _try(self, lsn: int, prev: int | None, upto: int | None = None) -> Record | None:
        if lsn < self.segsize or lsn % MAXIMUM_ALIGNOF:
            raise ValueError(f"invalid WAL record position {format_lsn(lsn)}")
        try:
            got = self._decode(lsn, prev, upto)
        except _Missing as m:
            self.missing_segment = m.name
            got = _missing_file_reason(m.name)
        if got is None or isinstance(got, str):
            # Forget the descriptors from here on: a later read must look the files up again
            # (a walreceiver may since have created this segment on a newer timeline).
            self._evict_from(lsn // self.segsize)
        if got is None:
            self.end_of_wal = lsn
            return None
        if isinstance(got, str):
            self.end_reason = got
            self.end_of_wal = lsn
            return None
        return got

    def _reset(self) -> None:
        self.end_reason = None
        self.missing_segment = None
        self.end_of_wal = None

    def read_record(self, lsn: int) -> Record:
        """The record at `lsn` (random access: its prev-link must only point backwards). Raises
        InvalidWalRecord, and sets end_reason/missing_segment, when there is none."""
        self._reset()
        rec = self._try(lsn, None)
        if rec is None:
            assert self.end_reason is not None
            raise InvalidWalRecord(self.end_reason, lsn, self.missing_segment)
        return rec

    def iter_from(self, lsn: int, prev: int | None = None, *, upto: int | None = None) -> Iterator[Record]:
        """Records from `lsn` on, each checked against its predecessor's LSN, until the end of
        valid WAL. Never raises for bad or missing WAL: when the iterator is exhausted,
        `end_reason` says why (PostgreSQL's wording), `end_of_wal` is where WAL ends (the next
        record would go there) and `missing_segment` names a segment file that did not exist.
        `prev`, if given, is checked exactly against the first record's prev-link too. `upto`
        (e.g. how far a standby has received WAL) stops before any record not wholly before it,
        without a reason: bytes past it may be in the middle of being written."""
        self._reset()
        expected = prev
        while upto is None or lsn < upto:
            if upto is not None and upto - lsn < SIZE_OF_XLOG_RECORD:
                break
            rec = self._try(lsn, expected, upto)
            if rec is None:
                return
            yield rec
            expected, lsn = rec.lsn, rec.end_lsn
        self.end_of_wal = lsn

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> WalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Removal.


def remove_old_segments(waldir: Path | str, segsize: int, timeline: int, keep_from_lsn: int) -> list[str]:
    """Delete the segment files that lie entirely before `keep_from_lsn`'s segment; returns their
    names, sorted. As RemoveOldXlogFiles does, the timeline part of a name is ignored when
    comparing (a parent timeline's segments are as old as their number), but segments of timelines
    newer than `timeline` are left alone. Only exact 24-hex-digit names are considered:
    `.history`, `.partial` and `.backup` files are never touched. A segment still marked
    `archive_status/NAME.ready` (not archived yet) is kept; its `.done` marker goes with it."""
    check_segsize(segsize)
    waldir = Path(waldir)
    cutoff = keep_from_lsn // segsize
    status = waldir / "archive_status"
    removed = []
    for name in sorted(os.listdir(waldir)):
        if not is_segment_name(name):
            continue
        tli, segno = parse_segment_name(name, segsize)
        if segno >= cutoff or tli > timeline:
            continue
        if (status / f"{name}.ready").exists():
            continue
        try:
            os.unlink(waldir / name)
        except FileNotFoundError:
            continue
        try:
            os.unlink(status / f"{name}.done")
        except FileNotFoundError:
            pass
        removed.append(name)
    return removed
