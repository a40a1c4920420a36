"""`pgbed diff [scenario…]`: run scenarios on pgbed and on real PostgreSQL 15 and say where
they differ.

What it does: for each selected scenario (orchestrator/diffscen.py; all by default) and each
flavour it can run on, a fresh local cluster of that flavour runs the scenario with the same
seed; the outcome is each node's normalised log events plus the scenario's recorded steps
(orchestrator/diffnorm.py). The two outcomes are compared after the intended differences
(orchestrator/intended_differences.toml) are applied, and a table prints one row per scenario:
`same`, `differs` (how: the first difference of each facet), `pgbed-only`, `postgres-only`, or
`error` (the scenario itself failed on a flavour). With `--verbose` (and always for a
divergence) both sequences are printed side by side. `--json` writes every outcome, verdict and
the intended differences used. Exit status 1 when a scenario differs or failed, 0 otherwise.

What it deliberately does not do: run Docker clusters (the local backend runs both flavours,
which is what the comparison needs), or retry a scenario until it agrees.

Ownership: each scenario run owns a directory under the run's temp dir (kept with --keep or
when a scenario fails, for its logs).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.diffnorm import Intended, Outcome, Verdict, compare, load_intended, log_events
from orchestrator.diffscen import SCENARIOS, Run, Scenario
from orchestrator.pgflavor import pgbed_test_installed, postgres_available


def run_one(scen: Scenario, flavor: str, seed: int, base: Path,
            extra_settings: dict[str, Any] | None = None) -> Outcome:  # fmt: skip
    """One scenario on one flavour: its steps and every node's events (retired nodes too)."""
    base.mkdir(parents=True, exist_ok=True)
    r = Run(flavor, base, seed, extra_settings)
    out = Outcome(scen.name, flavor)
    t0 = time.monotonic()
    try:
        scen.fn(r)
    except Exception as e:
        out.error = f"{type(e).__name__}: {e}\n{''.join(traceback.format_exc(limit=4))}"
    finally:
        out.seconds = time.monotonic() - t0
        if r.cluster is not None:
            for name, node in sorted(r.cluster.nodes.items()):
                out.facets[f"events:{name}"] = log_events(node.log_content())
            for k, node in enumerate(r.cluster.retired, 1):
                out.facets[f"events:retired{k}"] = log_events(node.log_content())
        r.teardown()
    out.facets["steps"] = r.steps
    return out


@dataclass
class Result:
    scenario: Scenario
    verdict: Verdict
    outcomes: dict[str, Outcome]


def why_not(scen: Scenario, flavor: str) -> str | None:
    """Why this scenario cannot run on this flavour here, or None."""
    if flavor == "postgres":
        missing = postgres_available()
        if missing:
            return missing
        if scen.needs_pgbed_test and not pgbed_test_installed():
            return "the pgbed_test extension is not installed (make -C ext/pgbed_test install)"
    return None


def diff_scenario(scen: Scenario, seed: int, root: Path, intended: list[Intended],
                  pgbed_settings: dict[str, Any] | None = None) -> Result:  # fmt: skip
    """Both flavours (or the one the scenario has) and their verdict. `pgbed_settings` go to the
    pgbed runs only: a meta-test puts a historic bug back into pgbed this way."""
    outcomes = {}
    for flavor in scen.flavours:
        missing = why_not(scen, flavor)
        if missing:
            o = Outcome(scen.name, flavor, error=f"cannot run here: {missing}")
        else:
            o = run_one(scen, flavor, seed, root / scen.name / flavor, pgbed_settings if flavor == "pgbed" else None)
        outcomes[flavor] = o
    if len(scen.flavours) == 1:
        (o,) = outcomes.values()
        status = "error" if o.error else scen.kind
        how = [o.error.splitlines()[0]] if o.error else []
        return Result(scen, Verdict(scen.name, status, how, o.error or ""), outcomes)
    return Result(scen, compare(outcomes["pgbed"], outcomes["postgres"], intended), outcomes)


def render_table(results: list[Result]) -> str:
    rows = [("scenario", "rules", "verdict", "how")]
    for res in results:
        how = "; ".join(res.verdict.how) or ("intended: " + ", ".join(sorted(res.verdict.intended_used))
                                             if res.verdict.intended_used else "")  # fmt: skip
        rows.append((res.scenario.name, " ".join(res.scenario.rules), res.verdict.status, how))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
    lines.insert(1, "-" * min(160, sum(widths) + 6 + max(len(r[3]) for r in rows)))
    return "\n".join(lines)


def main(names: list[str], *, seed: int = 1, json_out: str | None = None, keep: bool = False,
         verbose: bool = False, list_only: bool = False) -> int:  # fmt: skip
    if list_only:
        for s in SCENARIOS.values():
            print(f"{s.name:<26} {s.kind:<14} {' '.join(s.rules):<40} {s.summary}")
        return 0
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"pgbed diff: unknown scenario(s) {', '.join(unknown)}; `pgbed diff --list` lists them", file=sys.stderr)
        return 2
    try:
        intended = load_intended()
    except (OSError, ValueError) as e:
        print(f"pgbed diff: {e}", file=sys.stderr)
        return 2
    selected = [SCENARIOS[n] for n in names] if names else list(SCENARIOS.values())
    root = Path(tempfile.mkdtemp(prefix="pgbed-diff-"))
    root.chmod(0o755)
    print(f"pgbed diff: {len(selected)} scenario(s), seed {seed}, temp dir {root}", flush=True)
    results: list[Result] = []
    t0 = time.monotonic()
    for i, scen in enumerate(selected, 1):
        res = diff_scenario(scen, seed, root, intended)
        results.append(res)
        took = ", ".join(f"{f} {o.seconds:.1f} s" for f, o in res.outcomes.items())
        print(f"[{i}/{len(selected)}] {scen.name}: {res.verdict.status} ({took})", flush=True)
        if res.verdict.status in ("differs", "error") or verbose:
            for line in res.verdict.how:
                print(f"    {line}")
            if res.verdict.detail:
                print("\n".join("    " + ln for ln in res.verdict.detail.splitlines()))
        if verbose and res.verdict.status not in ("differs", "error"):
            # one flavour's outcome stands for both when they are the same
            o = res.outcomes["pgbed" if "pgbed" in res.outcomes else "postgres"]
            for facet, lines in o.facets.items():
                print(f"    {facet}: {' → '.join(lines)}")
    bad = [r for r in results if r.verdict.status in ("differs", "error")]
    print()
    print(render_table(results))
    counts = {k: sum(r.verdict.status == k for r in results)
              for k in ("same", "differs", "pgbed-only", "postgres-only", "error")}  # fmt: skip
    used = sorted(set().union(*(r.verdict.intended_used for r in results)))
    print(f"\n{', '.join(f'{v} {k}' for k, v in counts.items() if v)} in {time.monotonic() - t0:.0f} s; "
          f"intended differences applied: {len(used)} of {len(intended)}")  # fmt: skip
    if json_out:
        Path(json_out).write_text(json.dumps({
            "seed": seed, "counts": counts, "intended_used": used,
            "intended": [vars(x) for x in intended],
            "results": [{"scenario": r.scenario.name, "rules": r.scenario.rules, "kind": r.scenario.kind,
                         "verdict": r.verdict.status, "how": r.verdict.how,
                         "intended_used": sorted(r.verdict.intended_used),
                         "outcomes": {f: o.to_json() for f, o in r.outcomes.items()}} for r in results],
        }, indent=2) + "\n")  # fmt: skip
        print(f"JSON written to {json_out}")
    if keep or bad:
        print(f"logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if bad else 0

