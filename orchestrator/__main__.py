"""`python -m orchestrator <command>`: `chaos` runs a seeded campaign (orchestrator/chaos.py),
`cluster up|status|down` keeps a local cluster running between commands (clustercli.py)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m orchestrator chaos [--seed N] [--duration S] [--faults a,b,c] [--standbys N] "
              "[--rundir DIR] [--metrics-port P] [--cluster-dir DIR | --compose-project P]\n"
              "       python -m orchestrator cluster up|status|down --dir DIR [--standbys N]")  # fmt: skip
        return 0 if args else 2
    if args[0] == "chaos":
        from orchestrator.chaos import main as chaos_main

        return chaos_main(args[1:])
    if args[0] == "cluster":
        from orchestrator.clustercli import main as cluster_main

        return cluster_main(args[1:])
    print(f"unknown command {args[0]!r}; known: chaos, cluster", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
