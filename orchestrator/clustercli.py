"""`pgbed cluster up|status|down --dir D`: a local 3-node cluster that outlives the command.

What it does: `up` brings up a primary and N streaming standbys under D (orchestrator/
cluster.py's Cluster.local: each node on its own 127.0.0.x address, with its metrics exporter on
a free port, and the settings a campaign's own cluster gets: pgbed_test's static workers of every
start time, worker_spi, a 1 s WAL retrieve retry), saves D/cluster.json and exits, leaving the
postmasters running. psql can then connect to any node, and `pgbed chaos --cluster-dir D` runs
campaigns against it one after another (each adopts the postmasters, and saves the roles its
failovers changed). `status` prints each node's role, address, pid and metrics URL; `down` stops
every node (fast shutdown).

`up --flavor postgres` makes the same cluster of Debian's PostgreSQL 15 (orchestrator/
pgflavor.py; no metrics exporter, no worker_spi), which campaigns attach to as well.

What it deliberately does not do: supervise the nodes (a node a campaign leaves stopped stays
stopped until the next campaign or `up` again starts it) or delete D (`rm -rf D` after `down`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.cluster import Cluster
from orchestrator.pgnode import NodeError


def _print_nodes(c: Cluster) -> None:
    for name, n in c.nodes.items():
        role = "primary" if name == c.primary_name else "standby"
        state = f"pid {n.pid}" if n.is_running() else "not running"
        metrics = f"  metrics http://{n.host}:{n.metrics_port}/metrics" if getattr(n, "metrics_port", 0) else ""
        print(f"{name:10s} {role:8s} {state:14s} psql -h {n.host} -p {n.port} -U postgres postgres{metrics}")


def main(argv: list[str] | None = None) -> int:
    from orchestrator.chaos import campaign_settings

    ap = argparse.ArgumentParser(prog="pgbed cluster", description="A local cluster that stays up between commands.")
    ap.add_argument("action", choices=["up", "status", "down"])
    ap.add_argument("--dir", required=True, type=Path, help="the cluster's directory (cluster.json and one per node)")
    ap.add_argument("--standbys", type=int, default=2, help="for up: how many standbys (default 2)")
    ap.add_argument("--flavor", choices=["pgbed", "postgres"], default="pgbed",
                    help="for up: postgres runs Debian's PostgreSQL 15 (no metrics exporter; pgbed_test's static "
                         "workers when the extension is installed)")  # fmt: skip
    args = ap.parse_args(argv)
    base: Path = args.dir.resolve()
    try:
        if args.action == "up":
            if (base / Cluster.MANIFEST).exists():
                c = Cluster.attach(base)  # starts whatever is stopped
                print(f"cluster at {base} is up")
            else:
                flavor = args.flavor
                print(f"bringing up a primary and {args.standbys} standbys ({flavor}) under {base} ...",
                      file=sys.stderr)  # fmt: skip
                settings = campaign_settings(flavor=flavor, say=lambda msg: print(msg, file=sys.stderr))
                c = Cluster.local(base, standbys=args.standbys, settings=settings, metrics=flavor == "pgbed",
                                  flavor=flavor)  # fmt: skip
                print(f"cluster at {base} is up; stop it with `pgbed cluster down --dir {base}`")
            c.save()
            _print_nodes(c)
        elif args.action == "status":
            c = Cluster.attach(base, start=False)
            running = [n for n in c.nodes.values() if n.is_running()]
            if running:
                c.primary_name = c.find_primary(timeout=10)
            _print_nodes(c)
            return 0 if len(running) == len(c.nodes) else 3
        else:
            c = Cluster.attach(base, start=False)
            for n in c.nodes.values():
                if n.is_running():
                    print(f"stopping {n.name} (pid {n.pid}) ...", file=sys.stderr)
                    n.stop("fast")
            print(f"cluster at {base} is down")
    except NodeError as e:
        print(f"pgbed cluster {args.action}: {e}", file=sys.stderr)
        return 1
    return 0
