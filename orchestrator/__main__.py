"""`python -m orchestrator <command>`: `chaos` runs a seeded campaign (orchestrator/chaos.py)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m orchestrator chaos [--seed N] [--duration S] [--faults a,b,c] [--standbys N] "
              "[--rundir DIR] [--metrics-port P]")  # fmt: skip
        return 0 if args else 2
    if args[0] == "chaos":
        from orchestrator.chaos import main as chaos_main

        return chaos_main(args[1:])
    print(f"unknown command {args[0]!r}; known: chaos", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
