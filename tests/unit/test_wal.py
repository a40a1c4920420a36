"""node/wal.py: file names, record format, writer/reader round trips, end-of-WAL reasons, removal.

Uses 1 MB segments (the smallest allowed) so segment boundaries are crossed with little data."""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import struct
from pathlib import Path

import pytest

from node import wal
from node.crc32c import crc32c as py_crc32c
from node.protocol import format_lsn

MB = 1024 * 1024
SEG = MB
START = SEG  # the WAL starts at segment 1, offset 0


def _payload(i: int, n: int) -> bytes:
    return bytes((i * 31 + k) & 0xFF for k in range(n))


def _write(
    waldir: Path, sizes: list[int], *, segsize: int = SEG, tli: int = 1
) -> tuple[list[tuple[int, int, bytes]], wal.WalWriter]:
    """Append COMMIT records with the given payload sizes; returns [(start, end, payload)] and the
    (flushed, still open) writer."""
    w = wal.WalWriter(waldir, segsize, tli, START, 0)
    out = []
    for i, n in enumerate(sizes):
        p = _payload(i, n)
        s, e = w.append(wal.RM_XACT, wal.XactInfo.COMMIT, 1000 + i, p)
        out.append((s, e, p))
    w.flush()
    return out, w


def _read_all(
    waldir: Path, lsn: int = START, *, segsize: int = SEG, tli: int = 1
) -> tuple[list[wal.Record], wal.WalReader]:
    r = wal.WalReader(waldir, segsize, tli)
    recs = list(r.iter_from(lsn))
    r.close()
    return recs, r


def _seg_path(waldir: Path, lsn: int, tli: int = 1) -> Path:
    return waldir / wal.segment_name(lsn, tli, SEG)


def _pwrite(waldir: Path, lsn: int, data: bytes) -> None:
    """Overwrite WAL bytes at lsn (may cross segment files)."""
    while data:
        off = lsn % SEG
        n = min(len(data), SEG - off)
        fd = os.open(_seg_path(waldir, lsn), os.O_RDWR)
        try:
            os.pwrite(fd, data[:n], off)
        finally:
            os.close(fd)
        data, lsn = data[n:], lsn + n


# --- names -------------------------------------------------------------------------------------


def test_segment_names_match_postgresql() -> None:
    assert wal.segment_name(0x1000000, 1, 16 * MB) == "000000010000000000000001"
    assert wal.segment_name(0x4001EC8, 2, 16 * MB) == "000000020000000000000004"  # reference §4
    assert wal.segment_name(0x1500040, 1, MB) == "000000010000000000000015"  # reference §4
    assert wal.segment_name(0x1_0000_0000, 1, 16 * MB) == "000000010000000100000000"
    assert wal.segment_name(0x1_FF00_0000, 3, 16 * MB) == "0000000300000001000000FF"
    assert wal.segment_name(0x2_0000_0000 + 5 * MB, 1, MB) == "000000010000000200000005"
    assert wal.segment_start(0x4001EC8, 16 * MB) == 0x4000000
    assert wal.parse_segment_name("0000000300000001000000FF", 16 * MB) == (3, 0x1FF)
    assert wal.parse_segment_name("000000010000000200000005", MB) == (1, 2 * 4096 + 5)
    for bad in ("00000001000000000000001", "000000010000000000000001.partial", "00000002.history", "g" * 24):
        with pytest.raises(ValueError):
            wal.parse_segment_name(bad, MB)


def test_walfile_name_uses_previous_segment_at_a_boundary() -> None:
    # xlogfuncs.c: pg_walfile_name() does XLByteToPrevSeg, so 0/2000000 is the end of segment 1.
    assert wal.walfile_name(0x2000000, 1, 16 * MB) == "000000010000000000000001"
    assert wal.walfile_name(0x2000001, 1, 16 * MB) == "000000010000000000000002"
    assert wal.walfile_name(0x4001EC8, 2, 16 * MB) == "000000020000000000000004"
    assert wal.segment_name(0x2000000, 1, 16 * MB) == "000000010000000000000002"
    assert wal.walfile_name_offset(0x2000000, 1, 16 * MB) == ("000000010000000000000001", 0)
    # 0/0 underflows as uint64 in C.
    assert wal.walfile_name(0, 1, 16 * MB) == "00000001FFFFFFFF000000FF"


def test_segsize_must_be_a_power_of_two_in_range(tmp_path: Path) -> None:
    for bad in (MB // 2, 3 * MB, 2 * 1024 * MB):
        with pytest.raises(ValueError):
            wal.WalWriter(tmp_path, bad, 1, bad, 0)


def test_maxalign() -> None:
    assert [wal.maxalign(n) for n in (0, 1, 7, 8, 9, 24, 25, 31, 32)] == [0, 8, 8, 8, 16, 24, 32, 32, 32]


# --- format --------------------------------------------------------------------------------------


def test_record_layout_alignment_and_crc_order(tmp_path: Path) -> None:
    recs, w = _write(tmp_path, list(range(18)))
    w.close()
    prev = 0
    for s, e, p in recs:
        assert s % 8 == 0
        assert e - s == wal.maxalign(24 + len(p))
        raw = os.pread(os.open(_seg_path(tmp_path, s), os.O_RDONLY), e - s, s % SEG)
        tot, xid, xl_prev, info, rmid, pad, crc = struct.unpack_from("<IIQBBHI", raw)
        assert (tot, xid, xl_prev, info, rmid, pad) == (24 + len(p), 1000 + recs.index((s, e, p)), prev, 0, 1, 0)
        assert raw[24 : 24 + len(p)] == p
        assert raw[24 + len(p) :] == bytes(e - s - tot)  # alignment padding is zeros
        # PostgreSQL's order: the payload first, then the header up to xl_crc.
        assert crc == py_crc32c(raw[:20], py_crc32c(p))
        prev = s
    assert recs[0][0] == START


def test_crc_implementation_agrees_with_pure_python() -> None:
    data = random.Random(1).randbytes(5000)
    assert wal.crc32c(data) == py_crc32c(data)
    assert wal.crc32c(data[100:], wal.crc32c(data[:100])) == py_crc32c(data)


def test_checkpoint_and_end_of_recovery_payloads() -> None:
    cp = wal.CheckPoint(
        redo=0x1000028, timeline=2, prev_timeline=1, next_xid=742, time=1700000000.25, full_page_writes=True
    )
    data = cp.pack()
    assert len(data) == 40
    assert wal.CheckPoint.unpack(data) == cp
    assert wal.CheckPoint.unpack(wal.CheckPoint(1, 1, 1, 3, 0.0).pack()).full_page_writes is False
    eor = wal.EndOfRecovery(time=1700000001.5, timeline=3, prev_timeline=2)
    assert wal.EndOfRecovery.unpack(eor.pack()) == eor
    with pytest.raises(ValueError):
        wal.CheckPoint.unpack(data[:-1])
    assert int(wal.XlogInfo.END_OF_RECOVERY) == 0x90 and int(wal.StandbyInfo.RUNNING_XACTS) == 0x10
    assert (int(wal.RM_XLOG), int(wal.RM_XACT), int(wal.RM_STANDBY)) == (0, 1, 8)


# --- round trips ---------------------------------------------------------------------------------


def test_round_trip_across_segment_boundaries(tmp_path: Path) -> None:
    rng = random.Random(7)
    w = wal.WalWriter(tmp_path, SEG, 1, START, 0)
    written = []
    i = 0
    while w.insert_lsn < START + 2 * SEG + 1000:
        p = _payload(i, rng.randrange(0, 6000))
        written.append((*w.append(wal.RM_XACT, 0, i, p), p))
        i += 1
    # Make the next header straddle the boundary into segment 4: end a record at boundary - 8.
    boundary = wal.segment_start(w.insert_lsn, SEG) + SEG
    p = _payload(i, boundary - 8 - w.insert_lsn - 24)
    written.append((*w.append(wal.RM_XACT, 0, i, p), p))
    assert w.insert_lsn == boundary - 8
    p = _payload(i + 1, 100)
    written.append((*w.append(wal.RM_STANDBY, wal.StandbyInfo.RUNNING_XACTS, 0, p), p))
    end = w.insert_lsn
    w.flush()
    w.close()

    recs, r = _read_all(tmp_path)
    assert [(x.lsn, x.end_lsn, x.payload) for x in recs] == written
    assert [x.prev for x in recs] == [0] + [x.lsn for x in recs[:-1]]
    assert all(x.end_lsn == y.lsn for x, y in itertools.pairwise(recs))
    assert recs[-1].rmid == wal.RM_STANDBY and recs[-1].info == 0x10
    assert r.end_of_wal == end
    assert r.end_reason == f"invalid record length at {format_lsn(end)}: wanted 24, got 0"
    assert r.missing_segment is None
    # Every segment written is pre-allocated to full size.
    names = sorted(n for n in os.listdir(tmp_path) if wal.is_segment_name(n))
    assert names == [wal.segment_name(START + k * SEG, 1, SEG) for k in range(4)]
    assert all((tmp_path / n).stat().st_size == SEG for n in names)
    # Random access to a record whose header spans two segments.
    straddler = wal.WalReader(tmp_path, SEG, 1).read_record(boundary - 8)
    assert straddler.payload == p and straddler.prev == written[-2][0]


def test_record_larger_than_a_segment(tmp_path: Path) -> None:
    big = 2 * SEG + SEG // 2
    recs, w = _write(tmp_path, [10, big, 10])
    w.close()
    got, r = _read_all(tmp_path)
    assert len(got) == 3 and got[1].payload == _payload(1, big)
    assert got[2].lsn - got[1].lsn == wal.maxalign(24 + big)
    assert wal.segment_name(got[1].lsn, 1, SEG) == "000000010000000000000001"
    assert wal.segment_name(got[2].lsn, 1, SEG) == "000000010000000000000003"  # spans 1, 2 and 3
    # Losing the last part of the big record: a checksum failure, not an exception.
    _pwrite(tmp_path, recs[1][1] - 1000, bytes(1000 + 100))
    got, r = _read_all(tmp_path)
    assert len(got) == 1
    assert r.end_reason == f"incorrect resource manager data checksum in record at {format_lsn(recs[1][0])}"


def test_switch_record_ends_its_segment(tmp_path: Path) -> None:
    w = wal.WalWriter(tmp_path, SEG, 1, START, 0)
    a = w.append(wal.RM_XACT, 0, 5, b"x" * 10)
    sw = w.append(wal.RM_XLOG, wal.XlogInfo.SWITCH, 0, b"")
    assert sw == (a[1], 2 * SEG)
    c = w.append(wal.RM_XLOG, wal.XlogInfo.NOOP, 0, b"after")
    assert c[0] == 2 * SEG
    w.flush()
    w.close()
    recs, _ = _read_all(tmp_path)
    assert [x.lsn for x in recs] == [a[0], sw[0], c[0]]
    assert recs[1].end_lsn == 2 * SEG and recs[1].info_name == "SWITCH" and recs[2].prev == sw[0]


def test_two_writers_taking_turns_make_one_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w1 = wal.WalWriter(tmp_path, SEG, 1, START, 0)
    first = [w1.append(wal.RM_XACT, 0, i, _payload(i, 3000)) for i in range(400)]  # ~1.2 MB, no flush
    pos = (w1.insert_lsn, w1.prev_lsn, w1.flush_lsn)
    assert pos[2] == START  # nothing flushed yet
    w1.close()
    assert pos[0] // SEG == 2
    # The second process starts from the shared positions and writes only in segments 2 and 3;
    # segment 1, which w1 wrote and nobody flushed, must still be fsynced by w2's flush.
    w2 = wal.WalWriter(tmp_path, SEG, 1, pos[0], pos[1], flush_lsn=pos[2])
    synced: list[int] = []  # inode numbers (a new segment's descriptor was opened under a temporary name)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    second = [w2.append(wal.RM_XACT, 0, 400 + i, _payload(400 + i, 3000)) for i in range(300)]
    assert second[0][0] == first[-1][1]
    assert w2.flush() == w2.insert_lsn
    w2.close()
    names = {n for n in os.listdir(tmp_path) if (tmp_path / n).stat().st_ino in synced}
    assert {"000000010000000000000001", "000000010000000000000002", "000000010000000000000003"} <= names
    recs, r = _read_all(tmp_path)
    assert [(x.lsn, x.end_lsn) for x in recs] == first + second
    assert r.end_of_wal == second[-1][1]


def test_flush_returns_the_flushed_lsn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    w = wal.WalWriter(tmp_path, SEG, 1, START, 0)
    assert w.flush() == START and not calls  # nothing to do
    s, e = w.append(wal.RM_XACT, 0, 1, b"abc")
    assert w.flush_lsn == START
    n_create = len(calls)  # the new segment was fsynced once before being linked in
    assert w.flush(s + 8) == e == w.flush_lsn
    assert len(calls) == n_create + 2  # the segment and pg_wal/ (a segment was created)
    assert w.flush(e) == e and len(calls) == n_create + 2  # already flushed: no fsync
    s2, e2 = w.append(wal.RM_XACT, 0, 2, b"def")
    assert w.flush() == e2 and len(calls) == n_create + 3
    with pytest.raises(ValueError, match="not satisfied"):
        w.flush(e2 + 8)
    w.close()
    calls.clear()
    w = wal.WalWriter(tmp_path, SEG, 1, e2, s2, fsync=False)
    _, e3 = w.append(wal.RM_XACT, 0, 3, b"x" * (2 * SEG))
    assert w.flush() == e3 and not calls
    w.close()


# --- end of WAL ----------------------------------------------------------------------------------


def test_torn_last_record_ends_wal_cleanly(tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.mkdir()
    recs, w = _write(template, [50, 70, 1200, 100])
    w.close()
    last, last_end, _ = recs[-1]
    tot = 24 + 100
    at = format_lsn(last)
    # What a torn header can say: PostgreSQL's header checks, in order, on whatever bytes are left.
    header_reason = re.compile(
        rf"invalid record length at {at}: wanted 24, got \d+"
        rf"|record with incorrect prev-link [0-9A-F]+/[0-9A-F]+ at {at}"
        rf"|incorrect resource manager data checksum in record at {at}"
    )
    for mode in ("zero", "truncate"):
        for cut in (0, 1, 2, 3, 4, 8, 12, 15, 16, 20, 23, 24, 25, 60, 123):
            d = tmp_path / f"{mode}{cut}"
            shutil.copytree(template, d)
            if mode == "zero":
                _pwrite(d, last + cut, bytes(wal.maxalign(tot) - cut))
            else:
                os.truncate(_seg_path(d, last), last % SEG + cut)
            got, r = _read_all(d)
            assert [(x.lsn, x.end_lsn) for x in got] == [(s, e) for s, e, _ in recs[:-1]], (mode, cut)
            assert r.end_of_wal == last and r.missing_segment is None, (mode, cut)
            assert r.end_reason is not None
            if cut == 0:
                assert r.end_reason == f"invalid record length at {at}: wanted 24, got 0"
            elif cut >= 24:
                assert r.end_reason == f"incorrect resource manager data checksum in record at {at}", cut
            else:
                assert header_reason.fullmatch(r.end_reason), (mode, cut, r.end_reason)
    # Sanity: the intact copy reads all four records.
    got, r = _read_all(template)
    assert len(got) == 4 and r.end_of_wal == last_end


def test_flipped_payload_byte_gives_checksum_message(tmp_path: Path) -> None:
    recs, w = _write(tmp_path, [40, 40, 40, 40])
    w.close()
    s = recs[2][0]
    fd = os.open(_seg_path(tmp_path, s), os.O_RDWR)
    b = os.pread(fd, 1, s % SEG + 30)
    os.pwrite(fd, bytes([b[0] ^ 0x01]), s % SEG + 30)
    os.close(fd)
    got, r = _read_all(tmp_path)
    assert [x.lsn for x in got] == [recs[0][0], recs[1][0]]
    assert r.end_reason == f"incorrect resource manager data checksum in record at {format_lsn(s)}"
    with pytest.raises(wal.InvalidWalRecord, match="checksum"):
        wal.WalReader(tmp_path, SEG, 1).read_record(s)


def test_wrong_prev_link(tmp_path: Path) -> None:
    recs, w = _write(tmp_path, [40, 40, 40])
    w.close()
    a, b, c = (x[0] for x in recs)
    # A well-formed record (valid CRC) at b whose prev-link points at the WAL start, not at a.
    _pwrite(tmp_path, b, wal.pack_record(wal.RM_XACT, 0, 1001, 0, recs[1][2]))
    got, r = _read_all(tmp_path)
    assert [x.lsn for x in got] == [a]
    assert r.end_reason == f"record with incorrect prev-link 0/0 at {format_lsn(b)}"
    # Random access only requires the prev-link to point backwards (as PostgreSQL's randAccess).
    assert wal.WalReader(tmp_path, SEG, 1).read_record(b).prev == 0
    _pwrite(tmp_path, b, wal.pack_record(wal.RM_XACT, 0, 1001, c, recs[1][2]))
    with pytest.raises(wal.InvalidWalRecord) as ei:
        wal.WalReader(tmp_path, SEG, 1).read_record(b)
    assert ei.value.reason == f"record with incorrect prev-link {format_lsn(c)} at {format_lsn(b)}"
    # iter_from with an explicit expected prev checks the first record exactly.
    got = list(wal.WalReader(tmp_path, SEG, 1).iter_from(c, prev=b))
    assert [x.lsn for x in got] == [c]


def test_invalid_rmid_and_too_long_messages(tmp_path: Path) -> None:
    recs, w = _write(tmp_path, [40, 40])
    w.close()
    b = recs[1][0]
    head = struct.pack("<IIQBBH", 24 + 40, 7, recs[0][0], 0, 7, 0)
    crc = py_crc32c(head, py_crc32c(recs[1][2]))
    _pwrite(tmp_path, b, head + struct.pack("<I", crc))
    got, r = _read_all(tmp_path)
    assert len(got) == 1 and r.end_reason == f"invalid resource manager ID 7 at {format_lsn(b)}"
    _pwrite(tmp_path, b, struct.pack("<IIQBBH", 0x40000000, 7, recs[0][0], 0, 1, 0) + bytes(4))
    got, r = _read_all(tmp_path)
    assert r.end_reason == f"record length 1073741824 at {format_lsn(b)} too long"


def test_missing_middle_segment(tmp_path: Path) -> None:
    recs, w = _write(tmp_path, [3000] * 1100)  # ~3.2 segments: files 1..4
    w.close()
    gone = "000000010000000000000002"
    os.unlink(tmp_path / gone)
    got, r = _read_all(tmp_path)
    expected = [(s, e) for s, e, _ in recs if e <= 2 * SEG]
    assert [(x.lsn, x.end_lsn) for x in got] == expected
    assert r.missing_segment == gone
    assert r.end_reason == f'could not open file "pg_wal/{gone}": No such file or directory'
    assert r.end_of_wal == recs[len(expected)][0]
    # Random access beyond the hole still works; into the hole it raises with the file name.
    later = next(s for s, e, _ in recs if s >= 3 * SEG)
    assert wal.WalReader(tmp_path, SEG, 1).read_record(later).lsn == later
    inside = next(s for s, e, _ in recs if s >= 2 * SEG)
    with pytest.raises(wal.InvalidWalRecord) as ei:
        wal.WalReader(tmp_path, SEG, 1).read_record(inside)
    assert ei.value.missing_segment == gone and ei.value.reason.startswith("could not open file")


def test_wal_ending_exactly_at_a_segment_boundary(tmp_path: Path) -> None:
    w = wal.WalWriter(tmp_path, SEG, 1, START, 0)
    s, e = w.append(wal.RM_XACT, 0, 1, bytes(SEG - 24))
    assert e == 2 * SEG
    w.flush()
    w.close()
    got, r = _read_all(tmp_path)
    assert [x.lsn for x in got] == [s]
    assert r.end_of_wal == 2 * SEG and r.missing_segment == "000000010000000000000002"


def test_upto_stops_without_a_reason(tmp_path: Path) -> None:
    recs, w = _write(tmp_path, [10, 10, 10])
    w.close()
    r = wal.WalReader(tmp_path, SEG, 1)
    got = list(r.iter_from(START, upto=recs[2][0]))
    assert len(got) == 2 and r.end_reason is None and r.end_of_wal == recs[2][0]


def test_zero_tail_after_recovery(tmp_path: Path) -> None:
    recs, w = _write(tmp_path, [3000] * 400)  # into segment 2
    w.close()
    # Recovery decided WAL ends after record 10 (say the rest was torn): a new writer there.
    cut = recs[10]
    w = wal.WalWriter(tmp_path, SEG, 1, cut[1], cut[0])
    w.zero_tail()
    assert not (tmp_path / "000000010000000000000002").exists()
    w.flush()
    got, r = _read_all(tmp_path)
    assert len(got) == 11 and r.end_reason == f"invalid record length at {format_lsn(cut[1])}: wanted 24, got 0"
    with open(_seg_path(tmp_path, cut[1]), "rb") as f:
        f.seek(cut[1] % SEG)
        assert f.read() == bytes(SEG - cut[1] % SEG)
    # New records continue the chain from there.
    _, e = w.append(wal.RM_XLOG, wal.XlogInfo.END_OF_RECOVERY, 0, wal.EndOfRecovery(1.0, 1, 1).pack())
    w.flush()
    w.close()
    got, r = _read_all(tmp_path)
    assert len(got) == 12 and got[-1].prev == cut[0] and r.end_of_wal == e


def test_reader_follows_timeline_history(tmp_path: Path) -> None:
    recs, w = _write(tmp_path, [3000] * 400)  # TL1: segments 1 and 2
    w.close()
    switch = recs[380][1]  # promotion point, in segment 2
    assert switch // SEG == 2
    # As at promotion: the new timeline's first segment starts as a copy of the old one.
    shutil.copy(tmp_path / "000000010000000000000002", tmp_path / "000000020000000000000002")
    w = wal.WalWriter(tmp_path, SEG, 2, switch, recs[380][0])
    w.zero_tail()
    new = [w.append(wal.RM_XACT, 0, i, _payload(i, 3000)) for i in range(400)]  # into segment 3
    w.flush()
    w.close()
    r = wal.WalReader(tmp_path, SEG, 2, history=[(1, switch)])
    got = list(r.iter_from(START))
    assert [(x.lsn, x.end_lsn) for x in got] == [(s, e) for s, e, _ in recs[:381]] + new
    plain = wal.WalReader(tmp_path, SEG, 2)
    assert list(plain.iter_from(START)) == [] and plain.missing_segment == "000000020000000000000001"


# --- removal ---------------------------------------------------------------------------------------


def test_remove_old_segments(tmp_path: Path) -> None:
    status = tmp_path / "archive_status"
    status.mkdir()
    keep = [
        "00000002.history",
        "000000010000000000000002.partial",
        "000000010000000000000001.00000028.backup",
        "000000010000000000000004",
        "000000010000000000000005",
        "000000020000000000000001",  # newer timeline than the one asked about: left alone
        "000000010000000000000003",  # not archived yet (.ready)
    ]
    old = ["000000010000000000000001", "000000010000000000000002"]
    for n in keep + old:
        (tmp_path / n).write_bytes(b"x")
    (status / "000000010000000000000003.ready").write_text("")
    (status / "000000010000000000000002.done").write_text("")
    removed = wal.remove_old_segments(tmp_path, SEG, 1, 4 * SEG + 123)
    assert removed == old
    assert sorted(os.listdir(tmp_path)) == sorted([*keep, "archive_status"])
    assert os.listdir(status) == ["000000010000000000000003.ready"]
    # A parent timeline's old segments go too (the timeline part is ignored, as in PostgreSQL).
    (tmp_path / "000000010000000000000001").write_bytes(b"x")
    assert wal.remove_old_segments(tmp_path, SEG, 2, 4 * SEG) == [
        "000000010000000000000001",
        "000000020000000000000001",
    ]
    assert wal.remove_old_segments(tmp_path, SEG, 2, 4 * SEG) == []


def test_reader_looks_again_for_a_segment_that_appears_on_a_newer_timeline(tmp_path: Path) -> None:
    """A standby that switched to timeline 2 may first find only timeline 1's copy of the switch
    segment (its walreceiver has not written timeline 2's yet) and stop at the switch point; once
    timeline 2's segment exists, the same reader must read it, not the cached timeline-1 file."""
    recs, w = _write(tmp_path, [100, 100])
    w.close()
    switch = recs[-1][1]
    # Timeline 2's segment: a copy of timeline 1's up to the switch point, then one more record.
    r = wal.WalReader(tmp_path, SEG, 2, history=[(1, switch)])
    assert [x.lsn for x in r.iter_from(START)] == [s for s, _e, _p in recs]
    assert r.end_of_wal == switch
    shutil.copyfile(_seg_path(tmp_path, START), _seg_path(tmp_path, START, tli=2))
    w2 = wal.WalWriter(tmp_path, SEG, 2, switch, recs[-1][0])
    s2, _e2 = w2.append(wal.RM_XACT, wal.XactInfo.COMMIT, 7, b"timeline two")
    w2.flush()
    w2.close()
    got = list(r.iter_from(switch, prev=recs[-1][0]))
    assert [(x.lsn, x.payload) for x in got] == [(s2, b"timeline two")]
    r.close()
