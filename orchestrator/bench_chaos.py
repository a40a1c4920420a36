"""`pgbed bench chaos`: what the chaos suite costs on this machine.

What it does:
1. a 3-node local cluster (primary + 2 streaming standbys, orchestrator/cluster.py) from
   nothing to every standby streaming, `--runs` times: median, min, max;
2. the same with Debian's PostgreSQL 15 (initdb, pg_ctl, pg_basebackup -R on 127.0.0.x, as
   the postgres OS user) in the same run, interleaved, for the ratio;
3. with `--suite`, the whole chaos suite (`pytest -n auto -m chaos tests/chaos`, the Docker
   scenarios included where an engine answers; the suite's (re)build of the node image is
   counted, seconds when its layers are cached): wall time, scenarios passed, and scenarios per
   minute. Goal: under 10 minutes.

4. where a Docker engine runs and the node image exists (`--image`, default pgbed-node:test, as
   the chaos suite builds it), the same 3-node cluster in containers (orchestrator/dockercluster.py)
   from nothing to both standbys streaming: the goal is under 10 s.

What it deliberately does not do: build the node image (the chaos suite or images/ do).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrator.bench import render_table
from orchestrator.cluster import Cluster, next_loopback_host
from orchestrator.localnode import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def pgbed_cluster_up(base: Path) -> float:
    t0 = time.perf_counter()
    c = Cluster.local(base, standbys=2)
    dt = time.perf_counter() - t0
    c.teardown()
    return dt


def _as_postgres(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True, **kw)


def postgres_cluster_up(base: Path) -> float:
    """initdb, start, two pg_basebackup -R standbys, until both stream: the same steps."""
    base.mkdir(parents=True, exist_ok=True)
    shutil.chown(base, "postgres") if os.geteuid() == 0 else None
    hosts = [next_loopback_host() for _ in range(3)]
    ports = [free_port(h) for h in hosts]
    dirs = [base / n for n in ("primary", "standby1", "standby2")]
    t0 = time.perf_counter()
    try:
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(dirs[0]), "-U", "postgres", "-A", "trust", "--no-sync"])
        with open(dirs[0] / "postgresql.conf", "a") as f:
            f.write(f"listen_addresses = '{hosts[0]}'\nport = {ports[0]}\nunix_socket_directories = '{base}'\n"
                    "synchronous_standby_names = 'ANY 1 (standby1, standby2)'\nfsync = on\n")  # fmt: skip
        with open(dirs[0] / "pg_hba.conf", "a") as f:
            f.write("host replication all 127.0.0.0/8 trust\n")
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(dirs[0]), "-w", "-l", str(base / "primary.log"), "start"])
        for i in (1, 2):
            _as_postgres([str(PG_BIN / "pg_basebackup"), "-h", hosts[0], "-p", str(ports[0]), "-U", "postgres",
                          "-D", str(dirs[i]), "-R", "-X", "stream", "-c", "fast", "-d",
                          f"host={hosts[0]} port={ports[0]} user=postgres application_name=standby{i}"])  # fmt: skip
            with open(dirs[i] / "postgresql.conf", "a") as f:
                f.write(f"listen_addresses = '{hosts[i]}'\nport = {ports[i]}\n")
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(dirs[i]), "-w", "-l", str(base / f"standby{i}.log"),
                          "start"])  # fmt: skip
        import psycopg

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with psycopg.connect(host=hosts[0], port=ports[0], user="postgres", dbname="postgres") as c:
                n = c.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()[0]
            if n == 2:
                break
            time.sleep(0.01)
        else:
            raise RuntimeError(f"PostgreSQL standbys not streaming within 60 s; logs in {base}")
        return time.perf_counter() - t0
    finally:
        for d in reversed(dirs):
            if (d / "postmaster.pid").exists():
                subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(d), "-m",
                                "immediate", "stop"], capture_output=True, timeout=60)  # fmt: skip


def docker_cluster_up(image: str) -> float | None:
    """Seconds from nothing to both standbys streaming in containers, or None without an engine
    or without the image."""
    try:
        import docker

        client = docker.from_env()
        client.images.get(image)
    except Exception:
        return None
    from orchestrator.dockercluster import DockerCluster

    t0 = time.perf_counter()
    c = DockerCluster(client, image, {"pgbed.run": "bench-chaos", "pgbed.worker": "bench"}, standbys=2)
    dt = time.perf_counter() - t0
    c.teardown()
    return dt


def suite_wall_time(root: Path) -> tuple[float, int, str]:
    """(wall seconds, scenarios passed, pytest's last line) of the whole chaos suite. pytest's
    output streams to stderr as it runs (the progress of a 10-minute command)."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-n", "auto", "-q", "-p", "no:cacheprovider", "-m", "chaos", "tests/chaos"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stderr.write(line)
        if line.strip():
            last = line.strip()
    proc.wait()
    dt = time.perf_counter() - t0
    m = re.search(r"(\d+) passed", last)
    return dt, int(m.group(1)) if m else 0, last


def main(runs: int = 3, json_out: str | None = None, suite: bool = False, image: str = "pgbed-node:test") -> int:
    root = Path(tempfile.mkdtemp(prefix="pgbed-bench-chaos-"))
    os.chmod(root, 0o755)
    have_pg = (PG_BIN / "initdb").exists()
    a: list[float] = []
    b: list[float] = []
    d: list[float] = []
    for i in range(runs):
        print(f"run {i + 1}/{runs}: pgbed 3-node cluster in containers", file=sys.stderr, flush=True)
        got = docker_cluster_up(image)
        if got is not None:
            d.append(got)
        print(f"run {i + 1}/{runs}: pgbed 3-node cluster", file=sys.stderr, flush=True)
        a.append(pgbed_cluster_up(root / f"pgbed{i}"))
        if have_pg:
            print(f"run {i + 1}/{runs}: postgres 3-node cluster", file=sys.stderr, flush=True)
            b.append(postgres_cluster_up(root / f"pg{i}"))

    def fmt(xs: list[float]) -> str:
        return f"{statistics.median(xs) * 1000:.0f}" if xs else "-"

    ratio = f"{statistics.median(a) / statistics.median(b):.2f}x" if a and b else "-"
    rows = [["figure", "pgbed median", "min", "max", "postgres median", "ratio"],
            ["3-node local cluster: nothing -> 2 standbys streaming (ms)", fmt(a), f"{min(a) * 1000:.0f}",
             f"{max(a) * 1000:.0f}", fmt(b), ratio]]  # fmt: skip
    rows.append(["3-node Docker cluster: nothing -> 2 standbys streaming (ms)", fmt(d),
                 f"{min(d) * 1000:.0f}" if d else "-", f"{max(d) * 1000:.0f}" if d else "-", "-",
                 "goal < 10 s: " + ("-" if not d else "met" if statistics.median(d) < 10 else "NOT met")])  # fmt: skip
    out: dict[str, Any] = {"group": "chaos", "runs": runs,
                           "cluster_up_s": {"pgbed": a, "postgres": b, "pgbed_docker": d}}  # fmt: skip
    if suite:
        print("running the whole chaos suite under pytest -n auto ...", file=sys.stderr, flush=True)
        dt, n, tail = suite_wall_time(Path(__file__).resolve().parents[1])
        rows.append([f"chaos suite (-n auto, {n} scenarios passed): wall time (s)", f"{dt:.0f}", "-", "-", "-",
                     "goal < 600 s: " + ("met" if dt < 600 else "NOT met")])
        rows.append(["chaos suite: scenarios per minute", f"{n / dt * 60:.1f}", "-", "-", "-", "-"])
        out["suite"] = {"wall_s": dt, "passed": n, "pytest": tail}
    print()
    print(render_table(rows))
    print(f"\n{runs} run(s) per flavour, interleaved." + ("" if d else f" No Docker figure: no engine or no {image}."))
    if json_out:
        Path(json_out).write_text(json.dumps(out, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    return 0
