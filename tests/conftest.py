"""Suite-wide options.

- `--backend=auto|local|docker` picks where backend-agnostic scenarios run (DESIGN "Tests"):
  `local` runs them on local processes only (pgbed's, and PostgreSQL 15's for the `postgres`
  variants), `docker` in containers only, `auto` (the default) on all, the Docker variant skipping
  with its reason where no engine answers.
- `--chaos-seeds=11,23` the seeds the chaos suite's per-fault-kind campaigns run with (local
  backend: every seed; Docker: the first, as its clusters cost more to bring up). A failing
  campaign prints its seed and replay command; rerun it alone with `--chaos-seeds=N`."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=("auto", "local", "docker"), default="auto",
                     help="where backend-agnostic scenarios run (default: auto = both)")  # fmt: skip
    parser.addoption("--chaos-seeds", default="11,23", type=_seeds,
                     help="comma-separated seeds for the per-fault-kind chaos campaigns (default 11,23)")  # fmt: skip


def _seeds(spec: str) -> list[int]:
    try:
        seeds = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise pytest.UsageError(f"--chaos-seeds: not a list of integers: {spec!r}") from None
    if not seeds:
        raise pytest.UsageError("--chaos-seeds: at least one seed")
    return seeds


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    choice = config.getoption("--backend")
    if choice == "auto":
        return
    # the postgres variant runs as local processes, so it goes with `local`
    others = {"docker"} if choice == "local" else {"local", "postgres"}
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("scenario_backend") if callspec else None
        (drop if backend in others else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
