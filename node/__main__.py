"""`pgbed` command line: initdb, start, stop, reload, status, promote, controldata, basebackup,
bench, and the orchestrator's `chaos` and `cluster` (handed to orchestrator/chaos.py and
orchestrator/clustercli.py with the rest of the arguments).

What it does: the pg_ctl/initdb/pg_controldata analogues. `start` runs the postmaster in the
foreground (container mode) or, with --background, detaches it and waits until postmaster.pid
says ready or standby, as `pg_ctl start -w` does. `stop` signals the postmaster (SIGTERM smart,
SIGINT fast, SIGQUIT immediate) and waits for postmaster.pid to go away.

What it deliberately does not do: import the server before it is needed. argparse and the
datadir module are all `pgbed stop` pays for; the postmaster's modules are imported by `start`.
Exit codes follow pg_ctl: 0 ok, 1 failure, 3 for `status` when no server is running.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path


def _parse_c(values: list[str] | None) -> list[tuple[str, str]]:
    out = []
    for v in values or []:
        if "=" not in v:
            raise SystemExit(f'pgbed: -c {v} requires a value')
        name, value = v.split("=", 1)
        out.append((name.strip().replace("-", "_"), value))
    return out


def _pm_pid(datadir: str) -> int | None:
    from node.datadir import read_pidfile

    lines = read_pidfile(datadir)
    if not lines or not lines[0].strip():
        return None
    try:
        pid = int(lines[0])
    except ValueError:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def cmd_initdb(a: argparse.Namespace) -> int:
    from node.datadir import initdb

    t0 = time.monotonic()
    print(f"The files belonging to this database system will be owned by user \"{_user()}\".")
    try:
        password = Path(a.pwfile).read_text().splitlines()[0] if a.pwfile else None
        cf = initdb(a.pgdata, wal_segsize_mb=a.wal_segsize, auth=a.auth, settings=dict(_parse_c(a.set)),
                    superuser=a.username, password=password)  # fmt: skip
    except (FileExistsError, ValueError) as e:
        print(f"pgbed initdb: error: {e}", file=sys.stderr)
        return 1
    print(f"Database system identifier: {cf.system_identifier}")
    print(f"Success ({time.monotonic() - t0:.2f} s). You can now start the database server using:\n\n"
          f"    pgbed start -D {a.pgdata} -l logfile --background\n")  # fmt: skip
    return 0


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def cmd_start(a: argparse.Namespace) -> int:
    settings = _parse_c(a.set)
    if _pm_pid(a.pgdata):
        # pg_ctl's behaviour: warn, and let the postmaster's lock-file check decide.
        print("pgbed start: another server might be running; trying to start server anyway", file=sys.stderr)
    if not a.background:
        if a.log:
            fd = os.open(a.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        from node import postmaster

        postmaster.main(a.pgdata, settings)
        return 0
    pid = os.fork()
    if pid == 0:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        if a.log:
            fd = os.open(a.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
        try:
            from node import postmaster

            postmaster.main(a.pgdata, settings)
        finally:
            os._exit(1)
    print("waiting for server to start....", end="", flush=True)
    deadline = time.monotonic() + a.timeout
    from node.datadir import read_pidfile

    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            print(" stopped waiting\npgbed start: error: could not start server" +
                  (f"\nExamine the log output in {a.log}." if a.log else ""), file=sys.stderr)  # fmt: skip
            return 1
        lines = read_pidfile(a.pgdata)
        if lines and len(lines) > 7 and lines[0].strip() == str(pid) and lines[7].strip() in ("ready", "standby"):
            print(" done\nserver started")
            return 0
        time.sleep(0.005)
    print(" stopped waiting\npgbed start: error: server did not start in time", file=sys.stderr)
    return 1


def cmd_stop(a: argparse.Namespace) -> int:
    pid = _pm_pid(a.pgdata)
    if pid is None:
        print(f'pgbed stop: PID file "{Path(a.pgdata) / "postmaster.pid"}" does not exist\n'
              "Is server running?", file=sys.stderr)  # fmt: skip
        return 1
    sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[a.mode]
    os.kill(pid, sig)
    if a.no_wait:
        print("server shutting down")
        return 0
    print("waiting for server to shut down....", end="", flush=True)
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        if not (Path(a.pgdata) / "postmaster.pid").exists() or _pm_pid(a.pgdata) != pid:
            print(" done\nserver stopped")
            return 0
        time.sleep(0.005)
    print(" failed\npgbed stop: error: server does not shut down", file=sys.stderr)
    return 1


def cmd_reload(a: argparse.Namespace) -> int:
    pid = _pm_pid(a.pgdata)
    if pid is None:
        print("pgbed reload: error: no server running", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGHUP)
    print("server signaled")
    return 0


def cmd_basebackup(a: argparse.Namespace) -> int:
    from node.basebackup import run_client

    return run_client(a.host, a.port, a.pgdata, user=a.username, write_recovery_conf=a.write_recovery_conf,
                      progress=a.progress, password=os.environ.get("PGPASSWORD"),
                      application_name=a.application_name, slot=a.slot)  # fmt: skip


def cmd_promote(a: argparse.Namespace) -> int:
    pid = _pm_pid(a.pgdata)
    if pid is None:
        print("pgbed promote: error: no server running", file=sys.stderr)
        return 1
    if not (Path(a.pgdata) / "standby.signal").exists():
        print("pgbed promote: error: cannot promote server; server is not in standby mode", file=sys.stderr)
        return 1
    (Path(a.pgdata) / "promote").write_text("")
    os.kill(pid, signal.SIGUSR1)
    print("server promoting")
    return 0


def cmd_status(a: argparse.Namespace) -> int:
    pid = _pm_pid(a.pgdata)
    if pid is None:
        print("pgbed status: no server running")
        return 3
    from node.datadir import read_pidfile

    lines = read_pidfile(a.pgdata) or []
    status = lines[7].strip() if len(lines) > 7 else "?"
    print(f"pgbed status: server is running (PID: {pid}), status {status}, port {lines[3] if len(lines) > 3 else '?'}")
    return 0


def cmd_controldata(a: argparse.Namespace) -> int:
    from node.datadir import read_control

    cf = read_control(a.pgdata)
    t = time.strftime("%a %d %b %Y %H:%M:%S UTC", time.gmtime(cf.time))
    fmt = lambda lsn: f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"  # noqa: E731
    print(f"pg_control version number:            1300\n"
          f"Database system identifier:           {cf.system_identifier}\n"
          f"Database cluster state:               {cf.state.text}\n"
          f"pg_control last modified:             {t}\n"
          f"Latest checkpoint location:           {fmt(cf.checkpoint_lsn)}\n"
          f"Latest checkpoint's REDO location:    {fmt(cf.redo_lsn)}\n"
          f"Latest checkpoint's TimeLineID:       {cf.timeline}\n"
          f"Bytes per WAL segment:                {cf.wal_segment_size}")  # fmt: skip
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from orchestrator import bench

    if a.group == "all":
        if a.suite:
            print("pgbed bench all: --suite is for the chaos and metrics groups alone", file=sys.stderr)
            return 2
        from orchestrator import bench_all

        return bench_all.main(runs=a.runs, json_out=a.json)
    return bench.main(a.group, **({"runs": a.runs} if a.runs else {}), json_out=a.json, suite=a.suite)


def cmd_diff(a: argparse.Namespace) -> int:
    from orchestrator import diff

    return diff.main(a.scenarios, seed=a.seed, json_out=a.json, keep=a.keep, verbose=a.verbose, list_only=a.list)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["chaos"]:  # the orchestrator's own parser takes the rest
        from orchestrator.chaos import main as chaos_main

        return chaos_main(args[1:])
    if args[:1] == ["cluster"]:
        from orchestrator.clustercli import main as cluster_main

        return cluster_main(args[1:])
    p = argparse.ArgumentParser(prog="pgbed", description="pgbed node control (initdb / pg_ctl analogue)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("chaos", help="run a seeded chaos campaign (see `pgbed chaos --help`)")
    sub.add_parser("cluster", help="a local primary + standbys that stays up: up|status|down --dir D")

    def with_d(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("-D", "--pgdata", required=True, help="data directory")
        return sp

    sp = with_d(sub.add_parser("initdb", help="create a new data directory"))
    sp.add_argument("--wal-segsize", type=int, default=16, help="WAL segment size in MB (power of two)")
    sp.add_argument("-A", "--auth", default="trust", choices=["trust", "reject", "scram-sha-256", "md5", "password"])
    sp.add_argument("-U", "--username", default="postgres",
                    help="bootstrap superuser (default postgres; PostgreSQL's initdb defaults to the OS user)")
    sp.add_argument("--pwfile", help="read the bootstrap superuser's password from the first line of this file")
    sp.add_argument("-c", "--set", action="append", metavar="NAME=VALUE", help="setting written to postgresql.conf")
    sp.set_defaults(fn=cmd_initdb)
    sp = with_d(sub.add_parser("start", help="start the postmaster (foreground unless --background)"))
    sp.add_argument("-l", "--log", help="log file (stderr of the server)")
    sp.add_argument("--background", action="store_true", help="detach and wait until ready, like pg_ctl -w")
    sp.add_argument("-c", "--set", action="append", metavar="NAME=VALUE", help="run-time setting")
    sp.add_argument("-t", "--timeout", type=float, default=60.0)
    sp.set_defaults(fn=cmd_start)
    sp = with_d(sub.add_parser("stop", help="stop the server"))
    sp.add_argument("-m", "--mode", choices=["smart", "fast", "immediate"], default="fast")
    sp.add_argument("-t", "--timeout", type=float, default=60.0)
    sp.add_argument("-W", "--no-wait", action="store_true")
    sp.set_defaults(fn=cmd_stop)
    with_d(sub.add_parser("reload", help="send SIGHUP to the postmaster")).set_defaults(fn=cmd_reload)
    with_d(sub.add_parser("status", help="is a server running?")).set_defaults(fn=cmd_status)
    with_d(sub.add_parser("promote", help="promote a standby")).set_defaults(fn=cmd_promote)
    with_d(sub.add_parser("controldata", help="show pg_control")).set_defaults(fn=cmd_controldata)
    sp = with_d(sub.add_parser("basebackup", help="take a base backup of a running server over BASE_BACKUP",
                               add_help=False))  # fmt: skip
    sp.add_argument("--help", action="help", help="show this help message and exit")
    sp.add_argument("-h", "--host", default=os.environ.get("PGHOST", "127.0.0.1"))
    sp.add_argument("-p", "--port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    sp.add_argument("-U", "--username", default=None)
    sp.add_argument("-R", "--write-recovery-conf", action="store_true",
                    help="write standby.signal and primary_conninfo")
    sp.add_argument("-P", "--progress", action="store_true")
    sp.add_argument("-S", "--slot", default=None, help="primary_slot_name to write with -R")
    sp.add_argument("--application-name", default=None, help="application_name to put in primary_conninfo")
    sp.set_defaults(fn=cmd_basebackup)
    sp = sub.add_parser("bench", help="benchmarks, side by side with PostgreSQL 15")
    sp.add_argument("group", choices=["startup", "sql", "replication", "bgworker", "chaos", "metrics", "all"],
                    help="all: every group in turn, one JSON (--json) with each group's report")  # fmt: skip
    sp.add_argument("--suite", action="store_true",
                    help="chaos: also time the whole chaos suite under -n auto; metrics: also time a cold "
                         "`docker compose up` to all healthy")  # fmt: skip
    sp.add_argument("--runs", type=int, default=None,
                    help="runs per flavour (default: the group's own: startup 7, sql 5, the others 3)")  # fmt: skip
    sp.add_argument("--json", help="write results as JSON to this file")
    sp.set_defaults(fn=cmd_bench)
    sp = sub.add_parser("diff", help="run scenarios on pgbed and on PostgreSQL 15 and compare what they show")
    sp.add_argument("scenarios", nargs="*", help="scenario names (default: all; --list shows them)")
    sp.add_argument("--seed", type=int, default=1, help="the seed both flavours' runs share")
    sp.add_argument("--json", help="write outcomes and verdicts as JSON to this file")
    sp.add_argument("--keep", action="store_true", help="keep every run's directory (logs) even when all agree")
    sp.add_argument("-v", "--verbose", action="store_true", help="print every outcome, not only divergences")
    sp.add_argument("--list", action="store_true", help="list the scenarios and exit")
    sp.set_defaults(fn=cmd_diff)
    a = p.parse_args(args)
    return int(a.fn(a))


if __name__ == "__main__":
    sys.exit(main())
