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

4. where a Docker engine runs and the node image exists (`image`, default $PGBED_NODE_IMAGE or
   pgbed-node:test, as the chaos suite builds it), the same 3-node cluster in containers
   (orchestrator/dockercluster.py) from nothing to both standbys streaming: the goal is under
   10 s; and, where the postgres image exists too (`postgres_image`, default
   $PGBED_POSTGRES_IMAGE or pgbed-postgres:test), the same cluster of real PostgreSQL 15
   containers (`flavor="postgres"`), interleaved with pgbed's (the order alternates from run to
   run, so neither flavour always gets the warmer caches), for the pgbed/postgres ratio.

What it deliberately does not do: build the images (the chaos suite or `docker build` do; a
missing one leaves its figure out, with a note saying so).
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
# the chaos suite's tags (tests/chaos/conftest.py), with the same environment overrides
NODE_IMAGE = os.environ.get("PGBED_NODE_IMAGE", "pgbed-node:test")
POSTGRES_IMAGE = os.environ.get("PGBED_POSTGRES_IMAGE", "pgbed-postgres:test")


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


def docker_cluster_up(image: str, flavor: str = "pgbed") -> float | None:
    """Seconds from nothing to both standbys streaming in containers of `image` (a `flavor`
    image), or None without an engine or without the image."""
    try:
        import docker

        client = docker.from_env()
        client.images.get(image)
    except Exception:
        return None
    from orchestrator.dockercluster import DockerCluster

    try:
        t0 = time.perf_counter()
        c = DockerCluster(client, image, {"pgbed.run": "bench-chaos", "pgbed.worker": "bench"}, standbys=2,
                          flavor=flavor)  # fmt: skip
        dt = time.perf_counter() - t0
        c.teardown()
    finally:
        client.close()
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


def main(runs: int = 3, json_out: str | None = None, suite: bool = False, image: str = NODE_IMAGE,
         postgres_image: str = POSTGRES_IMAGE) -> int:  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="pgbed-bench-chaos-"))
    os.chmod(root, 0o755)
    have_pg = (PG_BIN / "initdb").exists()
    a: list[float] = []
    b: list[float] = []
    d: list[float] = []  # pgbed in containers
    e: list[float] = []  # PostgreSQL 15 in containers
    for i in range(runs):
        docker_runs = [("pgbed", image, d), ("postgres", postgres_image, e)]
        for flavor, tag, xs in docker_runs if i % 2 == 0 else docker_runs[::-1]:
            print(f"run {i + 1}/{runs}: {flavor} 3-node cluster in containers", file=sys.stderr, flush=True)
            got = docker_cluster_up(tag, flavor)
            if got is not None:
                xs.append(got)
        print(f"run {i + 1}/{runs}: pgbed 3-node cluster", file=sys.stderr, flush=True)
        a.append(pgbed_cluster_up(root / f"pgbed{i}"))
        if have_pg:
            print(f"run {i + 1}/{runs}: postgres 3-node cluster", file=sys.stderr, flush=True)
            b.append(postgres_cluster_up(root / f"pg{i}"))

    def fmt(xs: list[float]) -> str:
        return f"{statistics.median(xs) * 1000:.0f}" if xs else "-"

    def ratio(xs: list[float], ys: list[float]) -> float | None:
        return statistics.median(xs) / statistics.median(ys) if xs and ys else None

    def fmt_ratio(r: float | None) -> str:
        return f"{r:.2f}x" if r is not None else "-"

    local_ratio, docker_ratio = ratio(a, b), ratio(d, e)
    rows = [["figure", "pgbed median", "min", "max", "postgres median", "ratio"],
            ["3-node local cluster: nothing -> 2 standbys streaming (ms)", fmt(a), f"{min(a) * 1000:.0f}",
             f"{max(a) * 1000:.0f}", fmt(b), fmt_ratio(local_ratio)]]  # fmt: skip
    rows.append(["3-node Docker cluster: nothing -> 2 standbys streaming (ms)", fmt(d),
                 f"{min(d) * 1000:.0f}" if d else "-", f"{max(d) * 1000:.0f}" if d else "-", fmt(e),
                 fmt_ratio(docker_ratio)])  # fmt: skip
    out: dict[str, Any] = {"group": "chaos", "runs": runs,
                           "cluster_up_s": {"pgbed": a, "postgres": b, "pgbed_docker": d, "postgres_docker": e},
                           "ratio_pgbed_over_postgres": {"local": local_ratio, "docker": docker_ratio},
                           "images": {"pgbed": image, "postgres": postgres_image}}  # fmt: skip
    if suite:
        print("running the whole chaos suite under pytest -n auto ...", file=sys.stderr, flush=True)
        dt, n, tail = suite_wall_time(Path(__file__).resolve().parents[1])
        rows.append([f"chaos suite (-n auto, {n} scenarios passed): wall time (s)", f"{dt:.0f}", "-", "-", "-",
                     "goal < 600 s: " + ("met" if dt < 600 else "NOT met")])  # fmt: skip
        rows.append(["chaos suite: scenarios per minute", f"{n / dt * 60:.1f}", "-", "-", "-", "-"])
        out["suite"] = {"wall_s": dt, "passed": n, "pytest": tail}
    print()
    print(render_table(rows))
    print(f"\n{runs} run(s) per flavour, interleaved.")
    if d:
        print("Docker goal, pgbed median < 10 s: " + ("met." if statistics.median(d) < 10 else "NOT met."))
    else:
        print(f"No pgbed Docker figure: no engine or no {image}.")
    if not e:
        print(f"No postgres Docker figure: no engine or no {postgres_image} "
              "(docker build -f images/postgres/Dockerfile -t pgbed-postgres:test .).")  # fmt: skip
    if json_out:
        Path(json_out).write_text(json.dumps(out, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    return 0
