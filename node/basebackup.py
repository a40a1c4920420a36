"""Base backups: the BASE_BACKUP command on a walsender and the `pgbed basebackup` client.

What it does (repl/basebackup.c, xlog.c do_pg_backup_start/stop; bin/pg_basebackup)
- Server: requests a checkpoint (immediate with CHECKPOINT 'fast'), holds WAL from its redo
  point while the backup runs (the checkpointer's KeepLogSeg), sends the start position, the
  tablespace list and a tar archive in PostgreSQL 15's CopyData format (`n` archive name, `d`
  data, `p` progress), then writes a BACKUP_END record (payload: the start LSN), flushes it and
  sends the end position. The archive holds `backup_label` (START WAL LOCATION, CHECKPOINT
  LOCATION, START TIMELINE: what the standby's startup process reads), every file of the data
  directory except those PostgreSQL excludes (postmaster.pid/opts, signal files, pg_wal and
  pg_replslot contents, temporary files, logs), the heap as one consistent snapshot taken with
  SQLite's backup API, pg_control last, and with the WAL option the segments from the start
  segment to the end (bytes past the end zeroed) plus timeline history files.
- Client: `pgbed basebackup -h HOST -p PORT -D DIR [-R] [-U USER] [--progress]`: runs
  BASE_BACKUP (LABEL, CHECKPOINT 'fast', WAL, PROGRESS), extracts the archive into DIR and,
  with -R, writes standby.signal and primary_conninfo (postgresql.auto.conf), as pg_basebackup
  -R does.

With MANIFEST 'yes' a PostgreSQL 15 backup manifest (CRC-32C file checksums, WAL range,
SHA-256 manifest checksum) follows the archive, so pg_basebackup 15 works against pgbed too.

What it deliberately does not do: tablespaces, compression, MAX_RATE throttling, incremental
backups, backups from a standby.

Shared state: XLogCtl.running_backups / backup_hold_lsn (incremented and decremented here by the
walsender running the backup).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from node import protocol as P
from node import wal
from node.elog import PGError

EXCLUDE_FILES = frozenset({"postmaster.pid", "postmaster.opts", "standby.signal", "recovery.signal", "promote",
                           "backup_label", "backup_label.old", "tablespace_map", "pgbed_lwlocks",
                           "pgbed.interlock", "pgbed.db-wal", "pgbed.db-shm", "pgbed.db"})  # fmt: skip
EXCLUDE_DIR_CONTENTS = frozenset({"pg_wal", "pg_replslot", "pgsql_tmp", "log", "pg_stat_tmp"})
CHUNK = 256 * 1024


def _label_text(start: int, ck: int, tli: int, label: str, segsize: int) -> str:
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (f"START WAL LOCATION: {P.format_lsn(start)} (file {wal.segment_name(start, tli, segsize)})\n"
            f"CHECKPOINT LOCATION: {P.format_lsn(ck)}\n"
            "BACKUP METHOD: streamed\n"
            "BACKUP FROM: primary\n"
            f"START TIME: {now}\n"
            f"LABEL: {label}\n"
            f"START TIMELINE: {tli}\n")  # fmt: skip


class _TarSink(io.RawIOBase):
    """A file object that sends what tarfile writes as CopyData `d` messages."""

    def __init__(self, sender: Any) -> None:
        self.sender = sender
        self.buf = bytearray()
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.buf += b
        self.total += len(b)
        if len(self.buf) >= CHUNK:
            self.push()
        return len(b)

    def push(self) -> None:
        if self.buf:
            self.sender.send(P.copy_data(b"d" + bytes(self.buf)))
            self.buf.clear()
            self.sender.flush_blocking()
            self.sender.check_interrupts()


def send_backup(sender: Any, options: dict[str, Any]) -> None:
    """BASE_BACKUP on walsender `sender` (node/walsender.py's WalSender)."""
    from node import injection, xlog
    from node.checkpointer import CHECKPOINT_FORCE, CHECKPOINT_IMMEDIATE, CHECKPOINT_WAIT
    from node.proc import me
    from node.startup import request_checkpoint
    from node.storage import Heap

    known = {"label", "progress", "checkpoint", "wait", "wal", "manifest", "manifest_checksums", "target",
             "max_rate", "tablespace_map", "verify_checksums", "incremental", "compression",
             "compression_detail"}  # fmt: skip
    for k in options:
        if k not in known:
            raise PGError(f'unrecognized base backup option: "{k}"', "42601")
    if options.get("target") not in (None, "client"):
        raise PGError(f'unrecognized target: "{options["target"]}"', "22023")
    xl = me.shm.xlog
    if xl.in_recovery:
        raise PGError("base backups from a standby are not supported by pgbed", "0A000")
    label = str(options.get("label") or "base backup")
    fast = str(options.get("checkpoint") or "").lower() == "fast"
    dd = Path(me.datadir)
    segsize = int(xl.segsize)
    # do_pg_backup_start: a checkpoint whose redo point starts the backup.
    flags = CHECKPOINT_FORCE | CHECKPOINT_WAIT | (CHECKPOINT_IMMEDIATE if fast else 0)
    xl.running_backups += 1
    xl.backup_hold_lsn = int(xl.redo_lsn) or segsize
    try:
        request_checkpoint(flags, wait=True, interrupts=sender.check_interrupts)
        from node import datadir

        cf = datadir.read_control(dd)
        start, ck_lsn, tli = cf.redo_lsn, cf.checkpoint_lsn, cf.timeline
        xl.backup_hold_lsn = start
        c = sender.conn
        c.send(P.row_description([P.Column.for_type("recptr", P.TEXT), P.Column.for_type("tli", P.INT8)]))
        c.send(P.data_row([P.format_lsn(start).encode(), str(tli).encode()]))
        c.send(P.command_complete("SELECT"))
        size_kb = sum(f.stat().st_size for f in dd.rglob("*") if f.is_file()) // 1024
        c.send(P.row_description([P.Column.for_type("spcoid", P.OID), P.Column.for_type("spclocation", P.TEXT),
                                  P.Column.for_type("size", P.INT8)]))  # fmt: skip
        c.send(P.data_row([None, None, str(size_kb).encode() if options.get("progress", False) is not False else None]))
        c.send(P.command_complete("SELECT"))
        c.send(P.copy_out_response())
        c.send(P.copy_data(b"n" + b"base.tar\0" + b"\0"))
        sender.flush_blocking()
        injection.inject("walsender-backup")
        sink = _TarSink(sender)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[call-overload]
            arch = _Archive(tar)
            arch.add_bytes("backup_label", _label_text(start, ck_lsn, tli, label, segsize).encode())
            _add_tree(arch, dd, sender)
            heap_copy = _snapshot_heap(dd)
            try:
                arch.add_file(heap_copy, "base/pgbed.db")
            finally:
                heap_copy.unlink(missing_ok=True)
            # do_pg_backup_stop: the BACKUP_END record marks where the copy is consistent.
            heap = Heap(dd, interrupts=sender.check_interrupts)
            heap.begin_write()
            try:
                xw = xlog.XLog(dd, xl, fsync=bool(me.guc.get("fsync")))
                _s, end = xw.append(wal.Rmgr.XLOG, wal.XlogInfo.BACKUP_END, 0, wal.pack_backup_end(start), flush=True)
                xw.close()
            finally:
                heap.rollback()
                heap.close()
            if options.get("wal", False) is not False:
                _add_wal(arch, dd, start, end, tli, segsize)
            arch.add_file(dd / "global" / "pg_control", "global/pg_control")
            if options.get("progress", False) is not False:
                sink.push()
                sender.send(P.copy_data(b"p" + struct.pack("!q", sink.total // 1024)))
        sink.push()
        if str(options.get("manifest") or "no").lower() in ("yes", "force-encode"):
            # `m`, then the manifest in `d` messages (pg_basebackup writes backup_manifest).
            c.send(P.copy_data(b"m"))
            data = arch.manifest(tli, start, end)
            for i in range(0, len(data), CHUNK):
                c.send(P.copy_data(b"d" + data[i : i + CHUNK]))
        c.send(P.copy_done())
        c.send(P.row_description([P.Column.for_type("recptr", P.TEXT), P.Column.for_type("tli", P.INT8)]))
        c.send(P.data_row([P.format_lsn(end).encode(), str(tli).encode()]))
        c.send(P.command_complete("SELECT"))
        c.send(P.command_complete("BASE_BACKUP"))
    finally:
        xl.running_backups = max(0, int(xl.running_backups) - 1)


class _Hashing(io.RawIOBase):
    """Reads a file for tarfile while computing the manifest checksum (CRC-32C)."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.crc = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.crc = wal.crc32c(data, self.crc)
        return data


class _Archive:
    """The tar stream plus the backup manifest's file list (backup_manifest.c)."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        tar.copybufsize = 1 << 20  # bigger reads: the checksum runs once per read
        self.files: list[tuple[str, int, float, int]] = []  # path, size, mtime, crc32c

    def _note(self, name: str, size: int, mtime: float, crc: int) -> None:
        if not name.startswith("pg_wal/"):  # WAL is described by WAL-Ranges, not listed
            self.files.append((name, size, mtime, crc))

    def add_bytes(self, name: str, data: bytes, mode: int = 0o600) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.mtime = int(time.time())
        self.tar.addfile(info, io.BytesIO(data))
        self._note(name, len(data), info.mtime, wal.crc32c(data))

    def add_file(self, path: Path | str, name: str) -> None:
        with open(path, "rb") as f:
            info = self.tar.gettarinfo(fileobj=f, arcname=name)
            h = _Hashing(f)
            self.tar.addfile(info, h)  # type: ignore[arg-type]
        self._note(name, info.size, info.mtime, h.crc)

    def manifest(self, tli: int, start: int, end: int) -> bytes:
        """PostgreSQL 15's backup_manifest, CRC-32C checksums, with its SHA-256 manifest checksum."""
        import hashlib

        parts = ['{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [']
        for i, (name, size, mtime, crc) in enumerate(self.files):
            when = time.strftime("%Y-%m-%d %H:%M:%S GMT", time.gmtime(mtime))
            esc = name.replace("\\", "\\\\").replace('"', '\\"')
            checksum = crc.to_bytes(4, "little").hex()
            sep = "\n" if i == 0 else ",\n"
            parts.append(f'{sep}{{ "Path": "{esc}", "Size": {size}, "Last-Modified": "{when}", '
                         f'"Checksum-Algorithm": "CRC32C", "Checksum": "{checksum}" }}')  # fmt: skip
        parts.append("\n],\n\"WAL-Ranges\": [\n")
        parts.append(f'{{ "Timeline": {tli}, "Start-LSN": "{P.format_lsn(start)}", "End-LSN": "{P.format_lsn(end)}" }}')
        parts.append("\n],\n")
        body = "".join(parts).encode()
        return body + b'"Manifest-Checksum": "' + hashlib.sha256(body).hexdigest().encode() + b'"}\n'


def _add_tree(arch: _Archive, dd: Path, sender: Any) -> None:
    for root, dirs, files in os.walk(dd):
        rel = Path(root).relative_to(dd)
        dirs.sort()
        for d in dirs:
            arch.tar.add(str(Path(root) / d), arcname=str(rel / d), recursive=False)
        if rel.name in EXCLUDE_DIR_CONTENTS or any(p in EXCLUDE_DIR_CONTENTS for p in rel.parts):
            dirs[:] = []
            continue
        for f in sorted(files):
            if f in EXCLUDE_FILES or f.startswith("pgsql_tmp") or (rel == Path("global") and f == "pg_control"):
                continue
            path = Path(root) / f
            try:
                arch.add_file(path, str(rel / f))
            except FileNotFoundError:
                continue  # removed while we copied (PostgreSQL skips such files too)
        sender.check_interrupts()


def _snapshot_heap(dd: Path) -> Path:
    """One consistent copy of the heap (SQLite's online backup)."""
    import apsw

    from node.storage import heap_path

    tmpdir = dd / "base" / "pgsql_tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    dest = tmpdir / f"pgsql_tmp_backup.{os.getpid()}"
    src = apsw.Connection(str(heap_path(dd)), flags=apsw.SQLITE_OPEN_READONLY)
    src.set_busy_timeout(5000)
    out = apsw.Connection(str(dest))
    try:
        with out.backup("main", src, "main") as b:
            while not b.done:
                b.step(1024)
        out.execute("PRAGMA journal_mode=DELETE")
    finally:
        out.close()
        src.close()
    return dest


def _add_wal(arch: _Archive, dd: Path, start: int, end: int, tli: int, segsize: int) -> None:
    """The WAL a restore needs (BASE_BACKUP's WAL option): start segment to end segment."""
    from node.startup import read_history

    reader = wal.WalReader(dd / wal.XLOGDIR, segsize, tli, history=read_history(dd, tli))
    try:
        first, last = start // segsize, (end - 1) // segsize
        for segno in range(first, last + 1):
            seg_start = segno * segsize
            n = min(segsize, end - seg_start)
            try:
                data = reader.read_raw(seg_start, n)
            except wal.MissingSegment as m:
                raise PGError(f"requested WAL segment {m.name} has already been removed", "58P01") from None
            data += bytes(segsize - len(data))
            arch.add_bytes(f"pg_wal/{wal.segment_name(seg_start, tli, segsize)}", data)
    finally:
        reader.close()
    for h in sorted((dd / wal.XLOGDIR).glob("*.history")):
        arch.add_bytes(f"pg_wal/{h.name}", h.read_bytes())


# -- the client ---------------------------------------------------------------------------------


def run_client(host: str, port: int, datadir: str, *, user: str | None, write_recovery_conf: bool,
               progress: bool, password: str | None = None, application_name: str | None = None,
               slot: str | None = None) -> int:  # fmt: skip
    """`pgbed basebackup`. Returns an exit code (0 ok, 1 error), printing pg_basebackup-style errors."""
    from node.replclient import ReplClientError, ReplConnection, quote_conninfo_value

    d = Path(datadir)
    if d.exists() and any(d.iterdir()):
        print(f'pgbed basebackup: error: directory "{datadir}" exists but is not empty', file=sys.stderr)
        return 1
    params = {"host": host, "port": str(port)}
    if user:
        params["user"] = user
    if password:
        params["password"] = password
    t0 = time.monotonic()
    conn = ReplConnection(params, application_name="pgbed_basebackup")
    try:
        conn.connect()
        conn.query("IDENTIFY_SYSTEM")
        t = conn.start_copy("BASE_BACKUP ( LABEL 'pgbed basebackup', PROGRESS, CHECKPOINT 'fast', WAIT 0, WAL, "
                            "MANIFEST 'no', TARGET 'client')", timeout=600)  # fmt: skip
        if t != b"H":
            raise ReplClientError("unexpected response to BASE_BACKUP")
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(d, 0o700)
        buf = io.BytesIO()
        got = 0
        last_print = 0.0
        while True:
            m = conn._next(time.monotonic() + 600)
            mt, body = m
            if mt == b"d":
                tag = body[:1]
                if tag == b"d":
                    buf.write(body[1:])
                    got += len(body) - 1
                    if progress and time.monotonic() - last_print > 0.5:
                        last_print = time.monotonic()
                        print(f"{got // 1024} kB received", file=sys.stderr)
            elif mt == b"c":
                break
            elif mt == b"E":
                raise conn._error(body)
        results = conn.read_results_after_copy(timeout=600)
        end = results[0].rows[0][0] if results and results[0].rows else "?"
        buf.seek(0)
        with tarfile.open(fileobj=buf, mode="r|") as tar:
            if hasattr(tarfile, "data_filter"):  # extraction filters exist from 3.11.4 (PEP 706)
                tar.extractall(d, filter="fully_trusted")
            else:  # an older 3.11 (Debian bookworm's 3.11.2 in the node image) has no filter keyword
                tar.extractall(d)
    except ReplClientError as e:
        print(f"pgbed basebackup: error: {e.message}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    for sub in ("pg_wal", "pg_replslot", "log", "base/pgsql_tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    if write_recovery_conf:
        (d / "standby.signal").write_text("")
        parts = {"user": conn.user, "host": host, "port": str(port)}
        if password:
            parts["password"] = password
        if application_name:
            parts["application_name"] = application_name
        info = " ".join(f"{k}={quote_conninfo_value(v)}" for k, v in parts.items())
        lines = [f"primary_conninfo = '{info.replace(chr(39), chr(39) * 2)}'\n"]
        if slot:
            lines.append(f"primary_slot_name = '{slot}'\n")
        with open(d / "postgresql.auto.conf", "a") as f:
            f.writelines(lines)
    if progress:
        print(f"pgbed basebackup: base backup completed in {time.monotonic() - t0:.2f} s (end {end})", file=sys.stderr)
    return 0
