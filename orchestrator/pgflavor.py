"""The `postgres` flavour of a local node: real PostgreSQL 15 behind LocalNode's interface.

What it does: `PostgresNode` is a LocalNode whose data directory is made by PostgreSQL's own
`initdb`, cloned by `pg_basebackup -R -X stream`, and whose postmaster is the `postgres` binary
itself, run in the foreground as a child of this process (as `pgbed start` is for the pgbed
flavour), as the `postgres` OS user when we are root (PostgreSQL refuses root). Everything else
— readiness from postmaster.pid's status line, kill9, signals by role, promotion through
pg_promote(), catch-up through pg_stat_replication, the log — is LocalNode's and PgNode's
code, because PostgreSQL's files, signals and views are what pgbed models.

Stops go through `pg_ctl stop -m <mode> -W`. `pg_ctl start` is not used: it daemonises the
postmaster, so its exit status — which the differential runner compares — would be lost. The
flavours differ only where the servers do: no jsonlog (`events()` derives pgbed's events from
PostgreSQL's log, orchestrator/pgevents.py), no `pgbed.*` settings, process titles
`postgres: <cluster_name>: …`, and stray processes of a dead postmaster are found by their
working directory (PostgreSQL's processes chdir into the data directory) instead of pgbed's
interlock file.

`flavour_settings()` turns the settings a Cluster asks for into each flavour's spelling (the
pgbed_test module is `pgbed_test` on both; pgbed-only settings are dropped for PostgreSQL).

What it deliberately does not do: install PostgreSQL or the pgbed_test extension (.ci/run and
images/ do), or tune PostgreSQL beyond what pgbed's LocalNode sets (port, addresses, socket
directory, checkpoint_timeout = 1h, log_line_prefix with the backend type, as pgbed's default).

Ownership: a PostgresNode owns `<base>/<name>/`; the directories are handed to the postgres OS
user, and the base directory's ancestors are given search permission (o+x) where they lack it,
so that user can reach them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.localnode import DEFAULT_TIMEOUT, LocalNode, NodeError

FLAVOURS = ("pgbed", "postgres")
PG_FALLBACK_BINDIR = Path("/usr/lib/postgresql/15/bin")
INSTALL_HINT = "apt-get install -y postgresql-15"
# Settings only pgbed has; dropped when the same Cluster settings go to PostgreSQL.
PGBED_ONLY_PREFIXES = ("pgbed.", "pgbed__")
SUN_PATH_MAX = 107


def find_postgres(fallback: Path = PG_FALLBACK_BINDIR) -> tuple[Path | None, str]:
    """PostgreSQL's bin directory (pg_ctl's on PATH, else `fallback`) and `postgres --version`,
    or (None, why not)."""
    candidates = []
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        candidates.append(Path(os.path.realpath(pg_ctl)).parent)
    candidates.append(fallback)
    for bindir in candidates:
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            try:
                r = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True,
                                   timeout=10)  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as e:
                return None, f"{bindir / 'postgres'} --version failed: {e}"
            return bindir, r.stdout.strip()
    return None, f"no pg_ctl on PATH and no postgres/initdb in {fallback}"


def postgres_available() -> str | None:
    """None when the postgres flavour can run here, else why not (for skips and errors)."""
    bindir, why = find_postgres()
    if bindir is None:
        return f"PostgreSQL 15 not found ({why}); install it with `{INSTALL_HINT}`"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` OS user to run PostgreSQL as"
    return None


def pgbed_test_installed() -> bool:
    """Is ext/pgbed_test installed into this PostgreSQL (`make -C ext/pgbed_test install`)?"""
    bindir, _ = find_postgres()
    if bindir is None:
        return False
    try:
        r = subprocess.run([str(bindir / "pg_config"), "--pkglibdir"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return (Path(r.stdout.strip()) / "pgbed_test.so").exists()


def run_as_kw() -> dict[str, Any]:
    """Popen keyword arguments that run a PostgreSQL binary as the postgres OS user when we
    are root (Popen's own user switch: no `runuser` parent in between, so signals and exit
    statuses are the postmaster's own)."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [],
            "env": {**os.environ, "HOME": pw.pw_dir, "LC_ALL": "C.UTF-8"}}  # fmt: skip


def give_to_postgres(path: Path) -> None:
    """Make `path` (a directory we create) the postgres user's, and let that user search every
    ancestor (o+x only: nothing becomes readable)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam("postgres")
    os.chown(path, pw.pw_uid, pw.pw_gid)
    for parent in path.resolve().parents:
        try:
            st = parent.stat()
        except OSError:
            continue
        if not st.st_mode & stat.S_IXOTH and st.st_uid == os.geteuid():
            os.chmod(parent, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def flavour_settings(flavor: str, settings: dict[str, Any]) -> dict[str, Any]:
    if flavor == "pgbed":
        return dict(settings)
    return {k: v for k, v in settings.items() if not k.startswith(PGBED_ONLY_PREFIXES)}


class PostgresNode(LocalNode):
    flavor = "postgres"

    def __init__(self, base: Path, name: str = "node", *, port: int | None = None, host: str = "127.0.0.1",
                 metrics: bool = False) -> None:  # fmt: skip
        super().__init__(base, name, port=port, host=host, metrics=False)
        if metrics:
            raise NodeError("the postgres flavour has no built-in metrics exporter (pgbed.metrics_port); "
                            "use prometheus-postgres-exporter beside it")  # fmt: skip
        bindir, why = find_postgres()
        if bindir is None:
            raise NodeError(f"postgres flavour: PostgreSQL 15 not found ({why}); install it with `{INSTALL_HINT}`")
        self.bindir = bindir
        # PostgreSQL refuses a socket path longer than sun_path (107 bytes) and then will not
        # start; pytest's temporary directories get there. TCP is what clients use, so a short
        # directory of this node's own (by its port, unique while the node lives) is enough.
        if len(f"{self.sockdir}/.s.PGSQL.{self.port}") > SUN_PATH_MAX:
            self.sockdir = Path(tempfile.gettempdir()) / f"pgbed-pgsock-{self.port}"
            self.own_short_sockdir = True
        else:
            self.own_short_sockdir = False

    def teardown(self) -> None:
        super().teardown()
        if self.own_short_sockdir:
            shutil.rmtree(self.sockdir, ignore_errors=True)

    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    def _prepare_dirs(self) -> None:
        give_to_postgres(self.base / self.name)
        give_to_postgres(self.sockdir)
        if not self.logfile.exists():
            self.logfile.touch()

    def _run(self, cmd: list[str], what: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **run_as_kw())
        except subprocess.TimeoutExpired:
            raise NodeError(f"{what} did not finish within {timeout:g} s: {' '.join(cmd)}") from None
        if r.returncode != 0:
            raise NodeError(f"{what} failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")

    def _base_conf(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "listen_addresses": f"'{self.host}'",
            "unix_socket_directories": f"'{self.sockdir}'",
            "log_line_prefix": "'%m [%p] %b '",  # pgbed's default prefix: the backend type in each line
            "log_timezone": "'UTC'",
        }

    def init(self, *, wal_segsize_mb: int = 1, **settings: Any) -> PostgresNode:
        self._prepare_dirs()
        # -A trust -U postgres: what `pgbed initdb` sets up; the WAL segment size is PostgreSQL's
        # smallest (1 MB), as LocalNode's default.
        self._run([self._bin("initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "--no-sync",
                   "--wal-segsize", str(wal_segsize_mb)], "initdb")  # fmt: skip
        self.append_conf(**self._base_conf(), checkpoint_timeout="'1h'", **flavour_settings("postgres", settings))
        with open(self.datadir / "pg_hba.conf", "a") as f:  # the loopback addresses other nodes use
            f.write("host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n")
        return self

    def init_from_backup(self, primary: LocalNode, *, standby: bool = True, slot: str | None = None,
                         **settings: Any) -> PostgresNode:  # fmt: skip
        self._prepare_dirs()
        cmd = [self._bin("pg_basebackup"), "-h", primary.host, "-p", str(primary.port), "-U", "postgres",
               "-D", str(self.datadir), "-X", "stream", "-c", "fast", "--no-sync",
               "-d", f"application_name={self.name}"]  # fmt: skip
        if standby:
            cmd.append("-R")
        if slot:
            cmd += ["-S", slot]
        try:
            self._run(cmd, "pg_basebackup")
        except NodeError as e:
            raise NodeError(f"{e}\n{primary._evidence('backup')}") from None
        self.append_conf(**self._base_conf(), cluster_name=f"'{self.name}'", **flavour_settings("postgres", settings))
        return self

    def append_conf(self, **settings: Any) -> None:
        super().append_conf(**flavour_settings("postgres", settings))

    def set_auto_conf(self, **settings: Any) -> None:
        super().set_auto_conf(**settings)
        if os.geteuid() == 0:
            shutil.chown(self.datadir / "postgresql.auto.conf", "postgres", "postgres")

    def _server_cmd(self) -> list[str]:
        return [self._bin("postgres"), "-D", str(self.datadir)]

    def _server_popen_kw(self) -> dict[str, Any]:
        return run_as_kw()

    def _request_stop(self, mode: str) -> None:
        """`pg_ctl stop -m <mode> -W`: PostgreSQL's own tool sends the signal; without waiting,
        because the exit status is our child's, which wait_exit() reads."""
        if mode not in ("smart", "fast", "immediate"):
            raise NodeError(f"stop: unknown mode {mode!r}")
        self._run([self._bin("pg_ctl"), "stop", "-D", str(self.datadir), "-m", mode, "-W"], f"pg_ctl stop -m {mode}")

    def backup(self, name: str, target_base: Path | None = None) -> Path:
        dest = Path(target_base or self.base) / "backups" / name
        if dest.exists():
            raise NodeError(f"backup {name!r} already exists at {dest}")
        give_to_postgres(dest.parent)
        self._run([self._bin("pg_basebackup"), "-h", self.host, "-p", str(self.port), "-U", "postgres",
                   "-D", str(dest), "-X", "stream", "-c", "fast", "--no-sync"], "pg_basebackup")  # fmt: skip
        return dest

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """pgbed's events as derived from PostgreSQL's log (orchestrator/pgevents.py): the state
        changes PostgreSQL logs, not those it does not (no child_start, bgw_register, pm_exit)."""
        from orchestrator.pgevents import events_from_log

        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return []
        evs = events_from_log(text, self.setting_in_files("pgbed_test.static_workers") or "")
        return [e for e in evs if name is None or e["event"] == name]

    def setting_in_files(self, name: str) -> str | None:
        """A setting's value as postgresql.conf and postgresql.auto.conf give it (the last one
        wins, as in PostgreSQL; node/conffile.py reads them as guc-file.l does); None when
        neither sets it."""
        from node.conffile import parse_config_file

        value = None
        for f in ("postgresql.conf", "postgresql.auto.conf"):
            for item in parse_config_file(self.datadir / f, strict=False):
                if item.name.lower() == name:
                    value = item.value
        return value

    def orphans(self) -> list[int]:
        """Processes whose working directory is this data directory: every PostgreSQL process
        chdirs there, and children outlive a SIGKILLed postmaster until they notice."""
        target = str(self.datadir.resolve())
        out = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    if os.readlink(p / "cwd") == target:
                        out.append(int(p.name))
                except OSError:
                    continue
        return out


def node_class(flavor: str) -> type[LocalNode]:
    if flavor == "pgbed":
        return LocalNode
    if flavor == "postgres":
        return PostgresNode
    raise NodeError(f"unknown flavour {flavor!r} (expected one of {', '.join(FLAVOURS)})")
