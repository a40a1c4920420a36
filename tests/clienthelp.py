"""Client-side helpers shared by node and chaos tests (drain_notices lives in
orchestrator/sessions.py, which the differential scenarios use too)."""

from __future__ import annotations

import os

from orchestrator.sessions import drain_notices

__all__ = ["drain_notices", "pid_alive"]


def pid_alive(pid: int) -> bool:
    """Whether a process exists (signal 0); a recycled pid would count, which tests accept."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
