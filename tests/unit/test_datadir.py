"""node.datadir: initdb, pg_control, postmaster.pid and the incarnation interlock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node import datadir
from node.datadir import ControlFile, LockFileError
from node.states import DBState, PidfileStatus

# ---- pg_control -----------------------------------------------------------------------------


def sample_control() -> ControlFile:
    return ControlFile(
        system_identifier=7_300_000_000_123_456_789,
        state=DBState.IN_PRODUCTION,
        time=1_700_000_000.5,
        checkpoint_lsn=0x1_0000_0028,
        redo_lsn=0x1_0000_0010,
        timeline=3,
        prev_timeline=2,
        checkpoint_time=1_699_999_999.25,
        min_recovery_point=0x2000,
        min_recovery_tli=2,
        backup_start_lsn=0x3000,
        backup_end_lsn=0x4000,
        end_of_backup_required=True,
        wal_segment_size=64 * 1024 * 1024,
    )


def test_control_round_trip() -> None:
    cf = sample_control()
    assert ControlFile.unpack(cf.pack()) == cf
    assert ControlFile.unpack(ControlFile(system_identifier=1).pack()) == ControlFile(system_identifier=1)


@pytest.mark.parametrize("offset", [0, 12, 20, -5, -1])
def test_control_crc_mismatch(offset: int) -> None:
    """A flipped byte anywhere (body or CRC) is detected, as ReadControlFile does."""
    data = bytearray(sample_control().pack())
    data[offset] ^= 0x01
    with pytest.raises(ValueError) as ei:
        ControlFile.unpack(bytes(data))
    assert str(ei.value) == "incorrect checksum in control file"


def test_control_too_short() -> None:
    with pytest.raises(ValueError, match="too short"):
        ControlFile.unpack(sample_control().pack()[:-1])


def test_write_read_control(tmp_path: Path) -> None:
    (tmp_path / "global").mkdir()
    cf = sample_control()
    datadir.write_control(tmp_path, cf)
    back = datadir.read_control(tmp_path)
    assert back == cf  # write_control stamps cf.time, and the stamp is what was written
    assert not list((tmp_path / "global").glob("*.tmp"))


def test_new_system_identifier_distinct() -> None:
    ids = {datadir.new_system_identifier() for _ in range(200)}
    assert len(ids) == 200
    assert all(0 < i < 2**64 for i in ids)


# ---- initdb ---------------------------------------------------------------------------------


def test_initdb_layout(tmp_path: Path) -> None:
    d = tmp_path / "data"
    cf = datadir.initdb(d, wal_segsize_mb=32)
    assert (d / "PG_VERSION").read_text() == "15\n"
    assert (d / "postgresql.conf").stat().st_size > 0
    assert "trust" in (d / "pg_hba.conf").read_text()
    assert (d / "pg_wal" / "archive_status").is_dir()
    assert (d / "global" / "pg_control").is_file()
    assert oct(d.stat().st_mode & 0o777) == "0o700"
    back = datadir.read_control(d)
    assert back.system_identifier == cf.system_identifier
    assert back.state is DBState.SHUTDOWNED
    assert back.wal_segment_size == 32 * 1024 * 1024


def test_initdb_auth_reject(tmp_path: Path) -> None:
    datadir.initdb(tmp_path / "d", auth="reject")
    text = (tmp_path / "d" / "pg_hba.conf").read_text()
    assert "reject" in text and "trust" not in text.split("# METHOD")[1].split("\n", 1)[1]


def test_initdb_empty_existing_dir_ok(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    datadir.initdb(d)
    assert (d / "PG_VERSION").exists()


def test_initdb_refuses_non_empty(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "junk").write_text("x")
    with pytest.raises(FileExistsError, match="exists but is not empty"):
        datadir.initdb(d)
    assert not (d / "PG_VERSION").exists()


@pytest.mark.parametrize("size", [0, 3, 24, 2048, -16])
def test_initdb_rejects_bad_wal_segsize(tmp_path: Path, size: int) -> None:
    with pytest.raises(ValueError, match="power of two between 1 and 1024"):
        datadir.initdb(tmp_path / "d", wal_segsize_mb=size)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("size", [1, 2, 1024])
def test_initdb_accepts_power_of_two(tmp_path: Path, size: int) -> None:
    assert datadir.initdb(tmp_path / "d", wal_segsize_mb=size).wal_segment_size == size << 20


# ---- postmaster.pid -------------------------------------------------------------------------


def make_pidfile(d: Path) -> None:
    datadir.create_pidfile(
        d, port=5433, socket_dir="/tmp/sock", listen_addr="0.0.0.0", start_time=1700000000.9
    )


def test_pidfile_layout(tmp_path: Path) -> None:
    """PostgreSQL's 8-line layout (miscadmin.h LOCK_FILE_LINE_*), status padded to 8 chars."""
    make_pidfile(tmp_path)
    raw = (tmp_path / "postmaster.pid").read_text()
    assert raw.endswith("\n")
    lines = raw.split("\n")[:-1]
    assert lines == [
        str(os.getpid()),
        str(tmp_path.resolve()),
        "1700000000",
        "5433",
        "/tmp/sock",
        "0.0.0.0",
        "        0         0",
        "starting",
    ]
    assert datadir.read_pidfile(tmp_path) == [*lines, ""]


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (PidfileStatus.READY, "ready   "),
        (PidfileStatus.STANDBY, "standby "),
        (PidfileStatus.STOPPING, "stopping"),
    ],
)
def test_set_pidfile_status(tmp_path: Path, status: PidfileStatus, line: str) -> None:
    make_pidfile(tmp_path)
    before = (tmp_path / "postmaster.pid").read_text().split("\n")
    datadir.set_pidfile_status(tmp_path, status)
    after = (tmp_path / "postmaster.pid").read_text().split("\n")
    assert after[7] == line
    assert after[:7] == before[:7] and after[8:] == [""]


def test_set_pidfile_status_twice_keeps_eight_lines(tmp_path: Path) -> None:
    make_pidfile(tmp_path)
    datadir.set_pidfile_status(tmp_path, PidfileStatus.STOPPING)
    datadir.set_pidfile_status(tmp_path, PidfileStatus.READY)
    assert (tmp_path / "postmaster.pid").read_text().split("\n")[7:] == ["ready   ", ""]


def test_set_pidfile_status_without_file_is_noop(tmp_path: Path) -> None:
    datadir.set_pidfile_status(tmp_path, PidfileStatus.READY)
    assert not (tmp_path / "postmaster.pid").exists()


def test_pidfile_owned_by_live_process(tmp_path: Path) -> None:
    """CreateLockFile: a live foreign pid owns the directory -> refuse, file untouched."""
    other = os.getppid()
    (tmp_path / "postmaster.pid").write_text(f"{other}\n/x\n")
    with pytest.raises(LockFileError) as ei:
        make_pidfile(tmp_path)
    assert ei.value.message == 'lock file "postmaster.pid" already exists'
    assert str(ei.value) == ei.value.message
    assert ei.value.hint == f'Is another postmaster (PID {other}) running in data directory "{tmp_path}"?'
    assert (tmp_path / "postmaster.pid").read_text() == f"{other}\n/x\n"
    with pytest.raises(LockFileError, match="already exists"):
        datadir.check_pidfile(tmp_path)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_pidfile_replaced(tmp_path: Path) -> None:
    """A pid that no longer exists is a stale lock file: replaced."""
    (tmp_path / "postmaster.pid").write_text(f"{dead_pid()}\n/old\n")
    datadir.check_pidfile(tmp_path)  # no error
    make_pidfile(tmp_path)
    assert datadir.read_pidfile(tmp_path)[0] == str(os.getpid())  # type: ignore[index]


def test_own_pid_and_garbage_replaced(tmp_path: Path) -> None:
    (tmp_path / "postmaster.pid").write_text(f"{os.getpid()}\n")
    make_pidfile(tmp_path)
    (tmp_path / "postmaster.pid").write_text("not a pid\n")
    make_pidfile(tmp_path)
    assert datadir.read_pidfile(tmp_path)[7] == "starting"  # type: ignore[index]
    datadir.remove_pidfile(tmp_path)
    assert datadir.read_pidfile(tmp_path) is None
    datadir.remove_pidfile(tmp_path)  # idempotent


# ---- interlock ------------------------------------------------------------------------------

TRY_LOCK = """
import sys
from node import datadir
try:
    datadir.take_interlock(sys.argv[1])
except datadir.LockFileError as e:
    print("REFUSED", e.message, e.hint, sep="|")
else:
    print("TAKEN")
"""


def try_in_other_process(d: Path) -> str:
    out = subprocess.run([sys.executable, "-c", TRY_LOCK, str(d)], capture_output=True, text=True, timeout=30,
                         check=True)  # fmt: skip
    return out.stdout.strip()


def test_interlock_refuses_second_holder(tmp_path: Path) -> None:
    """DESIGN interlock: while one process holds it, another cannot take it; released on close."""
    (tmp_path / "global").mkdir()
    fd = datadir.take_interlock(tmp_path)
    try:
        assert os.get_inheritable(fd)
        out = try_in_other_process(tmp_path)
        status, message, hint = out.split("|")
        assert (status, message) == ("REFUSED", "pre-existing shared memory block is still in use")
        assert (
            hint
            == f'Terminate any old server processes associated with data directory "{tmp_path.resolve()}".'
        )
    finally:
        os.close(fd)
    assert try_in_other_process(tmp_path) == "TAKEN"


def test_control_wrong_version_with_valid_crc() -> None:
    """A well-formed file of another layout version is refused, not misread."""
    from node.crc32c import crc32c

    body = bytearray(sample_control().pack()[:-4])
    body[4:8] = (datadir.PG_CONTROL_VERSION + 1).to_bytes(4, "little")
    data = bytes(body) + crc32c(bytes(body)).to_bytes(4, "little")
    with pytest.raises(ValueError, match="incompatible with server"):
        ControlFile.unpack(data)
