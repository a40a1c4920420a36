"""The campaign command line (orchestrator/chaos.py main): PGBED_CHAOS=off serves the
pgbed_chaos_* metrics (phase idle, every fault kind at 0) without touching any cluster and exits 0
on SIGTERM — what the compose stack's orchestrator does with campaigns switched off; bad
arguments are refused before anything starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from node import metricnames as M
from orchestrator import faults as F
from orchestrator.localnode import free_port


def test_chaos_off_serves_idle_metrics_and_stops_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "PGBED_CHAOS": "off"}
    p = subprocess.Popen([sys.executable, "-m", "orchestrator", "chaos", "--compose-project", "nonexistent",
                          "--forever", "--metrics-port", str(port)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert f'{M.CHAOS_PHASE}{{phase="idle"}} 1.0' in body, body[-2000:]
        for kind in F.ALL_FAULTS:
            assert f'{M.CHAOS_FAULTS}{{kind="{kind}"}} 0.0' in body
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=10)
        assert p.returncode == 0 and "PGBED_CHAOS=off" in err, err
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_bad_arguments_are_refused() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator", "chaos", *args], capture_output=True, text=True,
                              timeout=30)  # fmt: skip

    r = run("--faults", "kill9,nonsense")
    assert r.returncode == 2 and "unknown fault kind(s) nonsense" in r.stderr
    r = run("--faults", "partition")
    assert r.returncode == 2 and "need --backend docker or --compose-project" in r.stderr
    r = run("--forever")
    assert r.returncode == 2 and "--forever runs against a running cluster" in r.stderr
    r = run("--interval", "3,1")
    assert r.returncode == 2 and "MIN,MAX" in r.stderr
