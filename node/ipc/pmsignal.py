"""PMSignal: coalescing child → postmaster requests (PMS: pmsignal.c; STYLE 12; SIG-5).

What it does: a child sets the shm flag for a `PMSignalReason` and sends SIGUSR1 to the
postmaster; the postmaster's loop checks and clears each flag it saw set. Several requests for
the same reason coalesce into one, so the postmaster always rescans everything it owns.

What it deliberately does not do: carry payloads. Whatever the postmaster needs to act on
(a bgworker slot, a walreceiver request) is in shared memory already; the flag only says
"look again".

Ownership: children only ever write 1; the postmaster only ever writes 0, and only to a flag
it has just read as 1 (so a request set between the read and the clear is never lost).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from node.states import PMSignalReason


def send_pmsignal(shm: Any, postmaster_pid: int, reason: PMSignalReason) -> None:
    shm.pmsignal_flags[reason] = 1
    try:
        os.kill(postmaster_pid, signal.SIGUSR1)
    except ProcessLookupError:
        pass  # the postmaster is gone; our next wait sees the death pipe


def check_pmsignal(shm: Any, reason: PMSignalReason) -> bool:
    """Postmaster only: check-and-clear (clears only a flag it saw set)."""
    if shm.pmsignal_flags[reason]:
        shm.pmsignal_flags[reason] = 0
        return True
    return False
