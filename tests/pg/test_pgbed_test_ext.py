"""The pgbed_test scenarios against real PostgreSQL 15 with ext/pgbed_test (the C twin of
node/contrib/pgbed_test.py): static workers per start time, dynamic registration, status words,
terminate, restart after exit 1, the 22023 errors, and a crash restart.

Needs /usr/lib/postgresql/15/bin/postgres and an installed extension
(`make -C ext/pgbed_test install`); otherwise the module is skipped. One cluster serves the whole
module; the crash test runs last because it restarts that cluster.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _pkglibdir() -> Path | None:
    try:
        out = subprocess.run([str(PG_BIN / "pg_config"), "--pkglibdir"], capture_output=True, text=True,
                             timeout=30, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.stdout.strip())


if not (PG_BIN / "postgres").exists():
    pytest.skip(f"PostgreSQL 15 is not installed ({PG_BIN / 'postgres'} missing)", allow_module_level=True)
_LIB = _pkglibdir()
if _LIB is None or not (_LIB / "pgbed_test.so").exists():
    pytest.skip("the pgbed_test extension is not installed for PostgreSQL 15 (no pgbed_test.so in "
                "`pg_config --pkglibdir`; run `make -C ext/pgbed_test install`)", allow_module_level=True)  # fmt: skip
try:
    pwd.getpwnam("postgres")
except KeyError:
    pytest.skip("no `postgres` OS account to run PostgreSQL as", allow_module_level=True)

psycopg = pytest.importorskip("psycopg")

STATIC = {  # name → start time (all 'run', never restarted)
    "pgbed_s_pm": "postmaster_start",
    "pgbed_s_cs": "consistent_state",
    "pgbed_s_rf": "recovery_finished",
}
STATIC_SPEC = ";".join(f"{n}:{st}:-1:run" for n, st in STATIC.items())


def _as_postgres(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL binary as the postgres OS user (PostgreSQL refuses root)."""
    extra: dict[str, Any] = {}
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        extra = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": {**os.environ, "HOME": pw.pw_dir}}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True, **extra, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.log = base / "server.log"
        self.port = _free_port()

    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=10"

    def connect(self) -> Any:
        return psycopg.connect(self.conninfo(), autocommit=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"],
                     cwd=self.base)  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.base}'\n"
                    "shared_preload_libraries = 'pgbed_test'\n"
                    f"pgbed_test.static_workers = '{STATIC_SPEC}'\n"
                    "max_worker_processes = 16\nfsync = off\nrestart_after_crash = on\n"
                    "log_min_messages = info\n")  # fmt: skip
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "-l", str(self.log), "start"],
                     cwd=self.base)  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "-m", "immediate",
                              "stop"], cwd=self.base)  # fmt: skip
            except subprocess.SubprocessError:
                pass


@pytest.fixture(scope="module")
def pg() -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="pgbed_pg15_"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", grp.getgrgid(pwd.getpwnam("postgres").pw_gid).gr_name)
    c = Cluster(base)
    try:
        try:
            c.start()
        except subprocess.CalledProcessError as e:
            pytest.fail(f"PostgreSQL 15 did not start: {e.stderr}\n{c.log_text()[-3000:]}")
        with c.connect() as conn:
            conn.execute("CREATE EXTENSION pgbed_test")
        yield c
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


def _wait(pred: Any, timeout: float = 20.0, step: float = 0.1) -> Any:
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _status(conn: Any, fn: str, slot: int, gen: int) -> tuple[str, int | None]:
    row = conn.execute(f"SELECT status, pid FROM {fn}(%s, %s)", (slot, gen)).fetchone()
    return row[0], row[1]


def _postmaster_pid(pg: Cluster) -> int:
    return int((pg.data / "postmaster.pid").read_text().split()[0])


def _workers(pg: Cluster) -> dict[str, int]:
    """Title → pid of the postmaster's children whose title is a pgbed_test worker name. PostgreSQL 15
    lists bgworkers without a database connection nowhere in pg_stat_activity (pgbed does), so the
    process title (init_ps_display(bgw_name)) is what identifies them."""
    ppid, out = _postmaster_pid(pg), {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == ppid:
                title = _cmdline(int(d.name)).strip()
                if title.startswith("postgres: "):
                    out[title.removeprefix("postgres: ")] = int(d.name)
    return out


def test_static_workers_run_per_start_time(pg: Cluster) -> None:
    got = _wait(lambda: set(STATIC) <= set(_workers(pg)) and _workers(pg))
    assert got and set(STATIC) <= set(got), f"children: {got}\n{pg.log_text()[-2000:]}"
    with pg.connect() as conn:  # PG15: no pg_stat_activity row for a worker without a database connection
        n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgbed_test'").fetchone()[0]
    assert n == 0


def test_register_start_terminate(pg: Cluster) -> None:
    with pg.connect() as conn:
        rows = conn.execute("SELECT slot, generation FROM pgbed_test_register('dyn_run', 'recovery_finished', -1, "
                            "ARRAY['shmem'], 'run')").fetchall()  # fmt: skip
        assert len(rows) == 1
        slot, gen = rows[0]
        assert isinstance(slot, int) and isinstance(gen, int)
        st, pid = _status(conn, "pgbed_test_wait_startup", slot, gen)
        assert st == "started" and pid and pid > 0
        assert _status(conn, "pgbed_test_status", slot, gen) == ("started", pid)
        # STARTED means forked (BGW-9): the title (init_ps_display) follows a moment later
        assert _wait(lambda: _workers(pg).get("dyn_run") == pid), _workers(pg)
        conn.execute("SELECT pgbed_test_terminate(%s, %s)", (slot, gen))
        assert _status(conn, "pgbed_test_wait_shutdown", slot, gen) == ("stopped", None)
        assert _status(conn, "pgbed_test_status", slot, gen) == ("stopped", None)
    assert 'terminating background worker "pgbed_test" due to administrator command' in pg.log_text()


def test_sleep_exits_clean_and_unregisters(pg: Cluster) -> None:
    with pg.connect() as conn:
        slot, gen = conn.execute("SELECT * FROM pgbed_test_register('dyn_sleep', 'postmaster_start', 1, "
                                 "'{shmem}', 'sleep:200')").fetchone()  # fmt: skip
        assert _status(conn, "pgbed_test_wait_startup", slot, gen)[0] == "started"
        assert _status(conn, "pgbed_test_wait_shutdown", slot, gen) == ("stopped", None)
        time.sleep(1.5)  # exit 0 unregisters: not relaunched although restart_s is 1
        assert _status(conn, "pgbed_test_status", slot, gen) == ("stopped", None)


def test_exit_1_with_restart_restarts(pg: Cluster) -> None:
    pattern = re.compile(r'background worker "pgbed_test" \(PID (\d+)\) exited with exit code 1')
    before = set(pattern.findall(pg.log_text()))
    with pg.connect() as conn:
        slot, gen = conn.execute("SELECT * FROM pgbed_test_register('dyn_exit1', 'recovery_finished', 1, "
                                 "ARRAY['shmem'], 'exit:1')").fetchone()  # fmt: skip
        assert _status(conn, "pgbed_test_wait_startup", slot, gen)[0] in ("started", "stopped")
        assert _status(conn, "pgbed_test_wait_shutdown", slot, gen) == ("stopped", None)
        pids = _wait(lambda: len(set(pattern.findall(pg.log_text())) - before) >= 2 and
                     set(pattern.findall(pg.log_text())) - before, timeout=15)  # fmt: skip
        assert pids and len(pids) >= 2, pg.log_text()[-2000:]
        conn.execute("SELECT pgbed_test_terminate(%s, %s)", (slot, gen))
    assert "terminating any other active server processes" not in pg.log_text()


def test_ignore_sigterm_then_run(pg: Cluster) -> None:
    with pg.connect() as conn:
        slot, gen = conn.execute("SELECT * FROM pgbed_test_register('dyn_ign', 'postmaster_start', -1, "
                                 "ARRAY['shmem'], 'ignore:SIGTERM')").fetchone()  # fmt: skip
        st, pid = _status(conn, "pgbed_test_wait_startup", slot, gen)
        assert st == "started"
        conn.execute("SELECT pgbed_test_terminate(%s, %s)", (slot, gen))
        time.sleep(1.0)
        assert _status(conn, "pgbed_test_status", slot, gen) == ("started", pid)


@pytest.mark.parametrize(("args", "message"), [
    (("w", "recovery_finished", -1, ["shmem"], "bogus"), 'invalid behaviour "bogus"'),
    (("w", "recovery_finished", -1, ["shmem"], "sleep:x"), 'behaviour "sleep:x" needs a number'),
    (("w", "recovery_finished", -1, ["shmem"], "ignore:NOPE"), 'invalid signal in behaviour "ignore:NOPE"'),
    (("w", "sometime", -1, ["shmem"], "run"), 'invalid start time "sometime"'),
    (("w", "recovery_finished", -1, ["shmem", "bogus"], "run"), 'invalid flag "bogus"'),
])  # fmt: skip
def test_invalid_arguments_are_22023(pg: Cluster, args: tuple[Any, ...], message: str) -> None:
    with pg.connect() as conn, pytest.raises(psycopg.Error) as ei:
        conn.execute("SELECT * FROM pgbed_test_register(%s, %s, %s, %s::text[], %s)", args)
    assert ei.value.sqlstate == "22023"
    assert ei.value.diag.message_primary == message


def test_invalid_slot_is_22023(pg: Cluster) -> None:
    with pg.connect() as conn, pytest.raises(psycopg.Error) as ei:
        conn.execute("SELECT * FROM pgbed_test_status(9999, 1)")
    assert ei.value.sqlstate == "22023"
    assert ei.value.diag.message_primary == "invalid background worker slot 9999"


def test_crash_restarts_the_cluster(pg: Cluster) -> None:  # last: restarts the cluster
    with pg.connect() as conn:
        row = conn.execute("SELECT * FROM pgbed_test_register('dyn_crash', 'recovery_finished', -1, "
                           "ARRAY['shmem'], 'crash')").fetchone()  # fmt: skip
        assert row is not None
    reinit = _wait(lambda: "all server processes terminated; reinitializing" in pg.log_text(), timeout=30)
    assert reinit, pg.log_text()[-3000:]
    log = pg.log_text()
    assert re.search(r'background worker "pgbed_test" \(PID \d+\) was terminated by signal 11', log), log[-3000:]
    assert "terminating any other active server processes" in log

    def back() -> bool:
        try:
            with pg.connect() as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    assert _wait(back, timeout=30), pg.log_text()[-3000:]
    time.sleep(1.0)
    # BGW-17: every NEVER_RESTART worker (the static 'run' ones too) is forgotten at the crash restart.
    assert not set(STATIC) & set(_workers(pg))
