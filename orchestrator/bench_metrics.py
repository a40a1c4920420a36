"""`pgbed bench metrics`: what the metrics exporter costs, and how long the compose stack takes.

What it does:
1. a local primary and a streaming standby, each with its exporter (LocalNode metrics=True),
   scraped `--runs` x 20 times each: scrape wall time as the client sees it (median, p99), the
   exporter's own collect time (pgbed_exporter_scrape_duration_seconds) and the exposition size;
2. the exporter's CPU at Prometheus's interval here (a scrape every 5 s) over a 60 s window, from
   /proc/<pid>/stat (user + system), as a share of one core, and over 60 s without scrapes;
3. the same figures for PostgreSQL 15 with Debian's prometheus-postgres-exporter (a separate
   process that runs SQL at each scrape) when both are installed, for the ratio;
4. with `--compose`, a cold `docker compose up -d` (images built beforehand: `docker compose
   build`; no container or volume of the project) until every service is healthy, `--runs`
   times, each followed by `docker compose down -v`.

What it deliberately does not do: build images, or count the first scrape (imports): one
untimed scrape warms each exporter up.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from orchestrator.bench import render_table

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_EXPORTER = Path("/usr/bin/prometheus-postgres-exporter")
ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _scrape(url: str) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read().decode()
    return time.perf_counter() - t0, len(body.encode()), body


def _own_duration(body: str) -> float | None:
    for line in body.splitlines():
        if line.startswith("pgbed_exporter_scrape_duration_seconds "):
            return float(line.split()[1])
    return None


def _p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]


def _cpu_window(pid: int, url: str | None, seconds: float, every: float = 5.0) -> float:
    """CPU share of one core used by `pid` over `seconds`, scraping `url` every `every` s."""
    c0, t0 = _cpu_s(pid), time.monotonic()
    while time.monotonic() - t0 < seconds:
        if url:
            _scrape(url)
        time.sleep(min(every, max(0.0, seconds - (time.monotonic() - t0))))
    return (_cpu_s(pid) - c0) / (time.monotonic() - t0)


def pgbed_figures(runs: int, window_s: float) -> dict[str, Any]:
    from orchestrator.localnode import LocalNode

    base = Path(tempfile.mkdtemp(prefix="pgbed-bench-metrics-"))
    p = LocalNode(base, "primary", metrics=True).init()
    out: dict[str, Any] = {}
    s = None
    try:
        p.start()
        s = LocalNode(base, "standby", metrics=True).init_from_backup(p)
        s.start()
        p.safe_sql("CREATE TABLE t (k int)")
        for node in (p, s):
            url = f"http://{node.host}:{node.metrics_port}/metrics"
            _scrape(url)  # warm-up
            wall, own, size = [], [], []
            for _ in range(runs * 20):
                dt, n, body = _scrape(url)
                wall.append(dt)
                size.append(n)
                d = _own_duration(body)
                if d is not None:
                    own.append(d)
            pid = next(pid for pid, t in node.children().items() if t.endswith("metrics exporter"))
            print(f"  {node.name}: CPU over {window_s:g} s with a scrape every 5 s, then idle ...", file=sys.stderr)
            cpu = _cpu_window(pid, url, window_s)
            idle = _cpu_window(pid, None, window_s)
            out[node.name] = {"wall_s": wall, "own_s": own, "bytes": size, "cpu_share_5s": cpu, "cpu_share_idle": idle}
    finally:
        for n in (s, p):
            if n is not None:
                n.teardown()
        shutil.rmtree(base, ignore_errors=True)
    return out


def postgres_figures(runs: int, window_s: float) -> dict[str, Any] | None:
    """PostgreSQL 15 with prometheus-postgres-exporter (as the postgres OS user), or None."""
    if not (PG_BIN / "initdb").exists() or not PG_EXPORTER.exists():
        return None
    import pwd

    from orchestrator.localnode import free_port

    pw = pwd.getpwnam("postgres")
    base = Path(tempfile.mkdtemp(prefix="pgbed-bench-pgexp-"))
    os.chown(base, pw.pw_uid, pw.pw_gid)
    data = base / "data"
    port, mport = free_port(), free_port()

    def as_pg(cmd: list[str], **kw: Any) -> Any:
        return subprocess.Popen(cmd, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], **kw)

    as_pg([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait(120)  # fmt: skip
    srv = as_pg([str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={base}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    exp = None
    try:
        env = {**os.environ, "DATA_SOURCE_NAME": f"host=127.0.0.1 port={port} user=postgres dbname=postgres "
                                                  "sslmode=disable"}  # fmt: skip
        deadline = time.monotonic() + 30
        while subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:  # fmt: skip
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL 15 did not start within 30 s")
            time.sleep(0.1)
        exp = as_pg([str(PG_EXPORTER), f"--web.listen-address=127.0.0.1:{mport}"], env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        url = f"http://127.0.0.1:{mport}/metrics"
        deadline = time.monotonic() + 30
        while True:
            try:
                _scrape(url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        wall, size = [], []
        for _ in range(runs * 20):
            dt, n, _body = _scrape(url)
            wall.append(dt)
            size.append(n)
        print(f"  postgres_exporter: CPU over {window_s:g} s with a scrape every 5 s, then idle ...", file=sys.stderr)
        cpu = _cpu_window(exp.pid, url, window_s)
        idle = _cpu_window(exp.pid, None, window_s)
        return {"wall_s": wall, "bytes": size, "cpu_share_5s": cpu, "cpu_share_idle": idle}
    finally:
        for proc in (exp, srv):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        shutil.rmtree(base, ignore_errors=True)


def compose_up_times(runs: int) -> list[float]:
    """Cold `docker compose up -d` → every service healthy (Grafana left out where no registry:
    images/setup.sh's compose.override.yaml is used when present)."""
    import docker

    from orchestrator.composecluster import service_health, wait_healthy

    client = docker.from_env()
    files = ["-f", str(ROOT / "compose.yaml")]
    if (ROOT / "compose.override.yaml").exists():
        files += ["-f", str(ROOT / "compose.override.yaml")]
    env = {**os.environ, "PGBED_PORT": "0", "PGBED_STANDBY1_PORT": "0", "PGBED_STANDBY2_PORT": "0",
           "PGBED_PROMETHEUS_PORT": "0", "PGBED_GRAFANA_PORT": "0", "PGBED_CHAOS": "off"}  # fmt: skip
    out = []
    for i in range(runs):
        project = f"pgbedbench{os.getpid()}x{i}"
        base = ["docker", "compose", "-p", project, *files]
        try:
            t0 = time.monotonic()
            subprocess.run([*base, "up", "-d", "--no-build"], env=env, check=True, capture_output=True, cwd=ROOT)
            states = wait_healthy(client, project, tuple(service_health(client, project)), 300)
            if not states or not all(v == "healthy" for v in states.values()):
                raise RuntimeError(f"compose stack not healthy within 300 s: {states}")
            out.append(time.monotonic() - t0)
            print(f"  compose run {i + 1}/{runs}: all {len(states)} services healthy in {out[-1]:.1f} s",
                  file=sys.stderr)  # fmt: skip
        finally:
            subprocess.run([*base, "down", "-v", "--timeout", "30"], env=env, capture_output=True, cwd=ROOT)
    return out


def main(runs: int = 3, json_out: str | None = None, compose: bool = False, window_s: float = 60.0) -> int:
    print("pgbed: a primary and a standby with exporters ...", file=sys.stderr, flush=True)
    a = pgbed_figures(runs, window_s)
    print("PostgreSQL 15 with prometheus-postgres-exporter ...", file=sys.stderr, flush=True)
    b = postgres_figures(runs, window_s)

    def ms(xs: list[float]) -> str:
        return f"{statistics.median(xs) * 1000:.2f}" if xs else "-"

    rows = [["figure", "pgbed primary", "pgbed standby", "postgres_exporter + PG 15", "ratio (primary)"]]

    def ratio(x: float, y: float | None) -> str:
        return f"{x / y:.2f}x" if y else "-"

    pw, sw = a["primary"], a["standby"]
    bw = statistics.median(b["wall_s"]) if b else None
    rows.append(["scrape wall time median (ms)", ms(pw["wall_s"]), ms(sw["wall_s"]), ms(b["wall_s"]) if b else "-",
                 ratio(statistics.median(pw["wall_s"]), bw)])  # fmt: skip
    rows.append(["scrape wall time p99 (ms)", f"{_p99(pw['wall_s']) * 1000:.2f}", f"{_p99(sw['wall_s']) * 1000:.2f}",
                 f"{_p99(b['wall_s']) * 1000:.2f}" if b else "-", "-"])  # fmt: skip
    rows.append(["exporter's own collect time median (ms)", ms(pw["own_s"]), ms(sw["own_s"]), "-", "-"])
    bb = statistics.median(b["bytes"]) if b else None
    rows.append(["exposition size (bytes)", f"{statistics.median(pw['bytes']):.0f}",
                 f"{statistics.median(sw['bytes']):.0f}", f"{bb:.0f}" if bb else "-",
                 ratio(statistics.median(pw["bytes"]), bb)])  # fmt: skip
    rows.append(["exporter CPU, scrape every 5 s (% of a core)", f"{pw['cpu_share_5s'] * 100:.3f}",
                 f"{sw['cpu_share_5s'] * 100:.3f}", f"{b['cpu_share_5s'] * 100:.3f}" if b else "-",
                 ratio(pw["cpu_share_5s"], b["cpu_share_5s"] if b else None)])  # fmt: skip
    rows.append(["exporter CPU, no scrapes (% of a core)", f"{pw['cpu_share_idle'] * 100:.3f}",
                 f"{sw['cpu_share_idle'] * 100:.3f}", f"{b['cpu_share_idle'] * 100:.3f}" if b else "-", "-"])
    report: dict[str, Any] = {"group": "metrics", "runs": runs, "pgbed": a, "postgres_exporter": b}
    if compose:
        print("cold docker compose up -> all healthy ...", file=sys.stderr, flush=True)
        ups = compose_up_times(runs)
        report["compose_up_s"] = ups
        rows.append(["cold `docker compose up` -> all healthy (s)", f"{statistics.median(ups):.1f}",
                     f"min {min(ups):.1f}", f"max {max(ups):.1f}", "-"])  # fmt: skip
    print()
    print(render_table(rows))
    print(f"\n{runs * 20} scrapes per node; CPU windows of {window_s:g} s."
          + ("" if b else " No PostgreSQL figure: install postgresql-15 and prometheus-postgres-exporter."))
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2))
    return 0
