"""node.events: the JSON-log event names, the contract between the node and the checkers."""

from __future__ import annotations

import re

from node import events

CONSTANTS = {k: v for k, v in vars(events).items() if k.isupper() and k != "ALL_EVENTS"}


def test_all_events_contains_every_constant() -> None:
    assert set(CONSTANTS.values()) == events.ALL_EVENTS
    assert all(isinstance(v, str) for v in CONSTANTS.values())
    assert len(CONSTANTS) >= 20


def test_names_unique() -> None:
    assert len(set(CONSTANTS.values())) == len(CONSTANTS), sorted(CONSTANTS.values())


def test_values_are_snake_case() -> None:
    bad = [v for v in CONSTANTS.values() if not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", v)]
    assert bad == []


def test_names_used_by_the_postmaster() -> None:
    """Names the checkers rely on (CRASH-4 crash, T3/T4 ready, PM state changes)."""
    assert events.CRASH == "crash"
    assert events.READY == "ready"
    assert events.PM_STATE == "pm_state"
    assert events.CHILD_EXIT in events.ALL_EVENTS
