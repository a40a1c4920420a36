"""Checkers: pure functions from histories, node event logs and view snapshots to a
`CheckResult` (orchestrator/checker/base.py). See each module's header for its properties."""

from orchestrator.checker.base import INVALID, UNKNOWN, VALID, CheckResult, check_safe, merge

__all__ = ["INVALID", "UNKNOWN", "VALID", "CheckResult", "check_safe", "merge"]
