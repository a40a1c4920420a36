"""The node image: the postmaster runs as a non-root user under tini, and the HEALTHCHECK works.

Marked `docker`; skipped, with the reason printed, only where no Docker engine answers.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.chaos]

DATA_DIR = "/var/lib/pgbed/data"


def _exec(container: Any, *cmd: str) -> str:
    code, output = container.get_wrapped_container().exec_run(list(cmd))
    text = output.decode(errors="replace") if output else ""
    assert code == 0, f"`{' '.join(cmd)}` in the container exited {code}: {text}"
    return text


def _tail(container: Any, n: int = 60) -> str:
    try:
        out, err = container.get_logs()
    except Exception as exc:
        return f"<no container log: {exc}>"
    return "\n".join((out.decode(errors="replace") + err.decode(errors="replace")).splitlines()[-n:])


def test_postmaster_non_root_under_tini_and_healthy(node_container: Any) -> None:
    """The image runs the postmaster as user pgbed, as tini's child, and its HEALTHCHECK passes."""
    pm_pid = _exec(node_container, "sh", "-c", f"head -n1 {DATA_DIR}/postmaster.pid").strip()
    assert pm_pid.isdigit(), f"postmaster.pid line 1 is {pm_pid!r}"
    user, uid, ppid = _exec(node_container, "ps", "-o", "user=,uid=,ppid=", "-p", pm_pid).split()
    assert uid != "0" and user != "root", f"postmaster {pm_pid} runs as {user} (uid {uid})"
    assert user == "pgbed", user
    assert ppid == "1", f"postmaster {pm_pid} has parent {ppid}, expected tini (PID 1)"
    assert _exec(node_container, "cat", "/proc/1/comm").strip() == "tini"

    wrapped = node_container.get_wrapped_container()
    wrapped.reload()
    check = wrapped.attrs["Config"].get("Healthcheck") or {}
    assert "pg_isready" in " ".join(check.get("Test", [])), check

    deadline = time.monotonic() + 40
    status = None
    while True:
        wrapped.reload()
        health = wrapped.attrs["State"].get("Health") or {}
        status = health.get("Status")
        if status == "healthy":
            break
        if time.monotonic() >= deadline:
            pytest.fail(
                f"health status is {status!r} 40 s after start; last probes: "
                f"{health.get('Log', [])[-3:]}\ncontainer log tail:\n{_tail(node_container)}",
                pytrace=False,
            )
        time.sleep(0.5)
