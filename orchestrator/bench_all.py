"""`pgbed bench all`: every benchmark group in one process, one after another, with one JSON.

What it does: runs the groups startup, sql, replication, bgworker, chaos and metrics in that
order (each interleaves pgbed and PostgreSQL 15 A/B itself and prints its own table of medians
and pgbed/postgres ratios), each with its own default number of runs unless `--runs` is given,
shows which group is running and how long the whole took so far, and with `--json` writes one
document: per group its exit status, wall time, its own JSON report and the text it printed.
Exit status 1 when any group failed (the others still run).

What it deliberately does not do: run `--suite` variants (the whole chaos suite, a cold compose
up: minutes each, and not pgbed-vs-PostgreSQL figures), or compute new figures: the groups'
reports are kept as they are.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

GROUPS = ("startup", "sql", "replication", "bgworker", "chaos", "metrics")


class _Tee(io.TextIOBase):
    """Writes through to the terminal and keeps a copy (the group's printed tables)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.copy = io.StringIO()

    def write(self, s: str) -> int:
        self.out.write(s)
        self.copy.write(s)
        return len(s)

    def flush(self) -> None:
        self.out.flush()


def main(runs: int | None = None, json_out: str | None = None, groups: tuple[str, ...] = GROUPS) -> int:
    from orchestrator import bench

    doc: dict[str, Any] = {"bench": "all", "schema": 1, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "runs": runs, "groups": {}}  # fmt: skip
    t0 = time.monotonic()
    failed = []
    with tempfile.TemporaryDirectory(prefix="pgbed-bench-all-") as tmp:
        for i, group in enumerate(groups, 1):
            print(f"\n=== [{i}/{len(groups)}] pgbed bench {group}"
                  f"{f' --runs {runs}' if runs else ''} (all: {time.monotonic() - t0:.0f} s so far) ===", flush=True)
            part = Path(tmp) / f"{group}.json"
            tee = _Tee(sys.stdout)
            g0 = time.monotonic()
            try:
                with contextlib.redirect_stdout(tee):
                    rc = bench.main(group, **({"runs": runs} if runs else {}), json_out=str(part))
            except Exception as e:  # one group's crash must not lose the others' figures
                print(f"pgbed bench all: {group} failed: {type(e).__name__}: {e}", file=sys.stderr)
                rc = 1
            took = time.monotonic() - g0
            report = json.loads(part.read_text()) if part.exists() and part.stat().st_size else None
            doc["groups"][group] = {"exit": rc, "seconds": round(took, 1), "report": report,
                                    "output": tee.copy.getvalue()}  # fmt: skip
            if rc != 0:
                failed.append(group)
            if json_out:  # after every group, so an interrupted run keeps what it measured
                Path(json_out).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    doc["seconds"] = round(time.monotonic() - t0, 1)
    print(f"\n=== pgbed bench all: {len(groups) - len(failed)} of {len(groups)} groups ran "
          f"in {doc['seconds']:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else "") + " ===")  # fmt: skip
    for group, g in doc["groups"].items():
        print(f"  {group:<12} exit {g['exit']}  {g['seconds']:>6.0f} s")
    if json_out:
        Path(json_out).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"JSON written to {json_out}")
    return 1 if failed else 0
