"""The metrics exporter (node/metrics.py): an auxiliary process of the postmaster serving
Prometheus metrics from shared memory, with names from node/metricnames.py.

- a primary and a streaming standby together export every name of metricnames.METRICS, with
  values that follow what the nodes do (role, PMState, WAL positions, per-standby lag rows,
  transactions, checkpoints); `promtool check metrics` accepts a real scrape of each;
- the exporter takes no background worker slot and no connection slot (PM-, BGW-4);
- counters survive a crash reinit (the postmaster re-seeds them: CRASH-7) and the crash itself
  is counted; signals are counted in the receiving process and flushed at its check points;
- SIGTERM: it exits 0 and the postmaster starts it again; a port that cannot be bound gives one
  FATAL and a pause before the next attempt (no fork loop), PostgreSQL's FATAL wording;
- background worker launches are counted per name, and a ConsistentState worker started
  before consistency (the historic bug `consistent_in_recovery` put back) shows in
  pgbed_bgworker_early_starts_total — the alert's metric; without the bug it stays 0.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from node import metricnames as M
from orchestrator.localnode import LocalNode

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(n: LocalNode) -> str:
    with urllib.request.urlopen(f"http://{n.host}:{n.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def value(text: str, metric: str, **labels: str) -> float | None:
    for n, ls, v in samples(text):
        if n == metric and all(ls.get(k) == want for k, want in labels.items()):
            return v
    return None


def scrape_when(n: LocalNode, pred: Any, what: str, timeout: float = 20.0) -> str:
    """Scrape until `pred(text)` holds; fail with the last scrape."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            last = scrape(n)
            if pred(last):
                return last
        except OSError as e:
            last = repr(e)
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:g} s; last scrape:\n{last[-3000:]}\nlog: {n.logfile}")


def exporter_pid(n: LocalNode) -> int | None:
    return next((pid for pid, title in n.children().items() if title.endswith("metrics exporter")), None)


def test_every_metric_exported_and_promtool_accepts(node_factory, standby_factory) -> None:
    """METRICS ⊆ names scraped from a primary and its standby; promtool lints both scrapes."""
    # a static worker and an armed injection point, so that their families have samples
    p = node_factory("p", metrics=True, shared_preload_libraries="'pgbed_test'",
                     pgbed_test__static_workers="'w:postmaster_start:1:run'",
                     injection_points="'checkpointer-loop:sleep:1'")  # fmt: skip
    s = standby_factory(p, "s", metrics=True)
    p.safe_sql("CREATE TABLE t (k int)")
    p.safe_sql("INSERT INTO t VALUES (1)")
    p.safe_sql("CHECKPOINT")
    p.wait_for_catchup(s, "replay", p.lsn("flush"))

    def lag_row(t: str) -> bool:
        if value(t, M.REPL_REPLAY_LAG, application_name="s", state="streaming") is not None:
            return True
        p.safe_sql("INSERT INTO t VALUES (2)")  # lag columns are NULL while nothing new was sent
        return False

    text_p = scrape_when(p, lag_row, "the standby's pg_stat_replication row with its lags exported")
    text_s = scrape_when(s, lambda t: value(t, M.WALRECEIVER_STATE, state="streaming") == 1.0,
                         "the standby's walreceiver streaming")  # fmt: skip
    names = {n for n, _, _ in samples(text_p) + samples(text_s)}
    names |= {n.removesuffix("_count") for n in names if n.removesuffix("_count") == M.CHECKPOINT_DURATION}
    missing = sorted(set(M.METRICS) - names)
    assert not missing, f"never exported: {missing}"

    assert value(text_p, M.NODE_ROLE, role="primary") == 1.0 and value(text_s, M.NODE_ROLE, role="standby") == 1.0
    assert value(text_p, M.PM_STATE, state="RUN") == 1.0 and value(text_s, M.PM_STATE, state="HOT_STANDBY") == 1.0
    assert value(text_p, M.IS_REPLICA) == 0.0 and value(text_s, M.IS_REPLICA) == 1.0
    assert value(text_p, M.WAL_LSN, kind="flush") == float(p.lsn("flush"))
    assert value(text_s, M.WAL_LSN, kind="replay") >= float(p.lsn("flush")) - 1  # type: ignore[operator]
    assert value(text_p, M.XACT_COMMIT, datname="postgres") >= 2  # type: ignore[operator]
    assert value(text_p, M.CHECKPOINTS, result="done") >= 1  # type: ignore[operator]
    assert value(text_p, M.CHECKPOINT_DURATION + "_count") >= 1  # type: ignore[operator]
    assert value(text_p, M.SYNC_STANDBYS) == 0.0  # no synchronous_standby_names
    assert value(text_p, M.WALSENDERS, state="streaming") == 1.0
    assert 0 < value(text_p, M.START_TO_READY) < 60  # type: ignore[operator]
    assert value(text_s, M.REPLICATION_LAG) is not None and value(text_p, M.REPLICATION_LAG) is None
    assert value(text_p, M.ACTIVITY_COUNT, backend_type="walsender", state="active") == 1.0
    assert value(text_p, M.BGW_STARTS, worker="w") == 1.0 and value(text_p, M.INJECTION_ARMED) == 1.0
    assert value(text_p, M.INJECTION_FIRES, name="checkpointer-loop") >= 1  # type: ignore[operator]

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus): the lint half of this test did not run")
    for text in (text_p, text_s):
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr


def test_exporter_takes_no_worker_or_connection_slot(node_factory) -> None:
    n = node_factory("n", metrics=True, max_worker_processes="2", max_connections="2")
    text = scrape_when(n, lambda t: value(t, M.BGW_SLOTS, status="free") is not None, "a scrape")
    assert value(text, M.BGW_SLOTS, status="free") == 2.0
    assert exporter_pid(n)
    with n.connect() as a, n.connect() as b:  # both connection slots are still there for clients
        assert a.execute("SELECT 1").fetchone() == (1,) and b.execute("SELECT 1").fetchone() == (1,)


def test_counters_survive_a_crash_reinit_and_signals_are_counted(node_factory) -> None:
    """CRASH-7 re-seeding: child starts and signal counts carry over; the reinit is counted."""
    n = node_factory("n", metrics=True)
    n.reload()  # SIGHUP to the postmaster, which passes it on to its children
    before = scrape_when(n, lambda t: (value(t, M.SIGNALS, process_kind="checkpointer", signal="SIGHUP") or 0) >= 1,
                         "the checkpointer's SIGHUP counted")  # fmt: skip
    starts_before = value(before, M.CHILD_STARTS, kind="checkpointer")
    hup_before = value(before, M.SIGNALS, process_kind="postmaster", signal="SIGHUP")
    assert value(before, M.CRASH_RESTARTS) == 0.0 and starts_before == 1.0 and hup_before == 1.0
    with n.connect() as c:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        os.kill(pid, signal.SIGKILL)
    n.wait_for_log("all server processes terminated; reinitializing")

    def after_reinit(t: str) -> bool:
        return value(t, M.CRASH_RESTARTS) == 1.0 and value(t, M.PM_STATE, state="RUN") == 1.0

    after = scrape_when(n, after_reinit, "the reinit counted, RUN again")
    assert value(after, M.CHILD_STARTS, kind="checkpointer") == 2.0  # one more, none forgotten
    assert value(after, M.SIGNALS, process_kind="postmaster", signal="SIGHUP") == hup_before
    assert value(after, M.SIGNALS, process_kind="checkpointer", signal="SIGHUP") >= 1  # type: ignore[operator]
    assert value(after, M.CHILD_EXITS, kind="client backend", exit_class="crash") == 1.0
    assert (value(after, M.CHILD_STARTS, kind="metrics exporter") or 0) >= 2  # restarted after the reinit


def test_sigterm_restarts_and_a_taken_port_pauses(node_factory, tmp_path) -> None:
    n = node_factory("n", metrics=True)
    scrape_when(n, bool, "a first scrape")
    first = exporter_pid(n)
    assert first
    # only the main thread may take signals (its latch wakes for them); the HTTP thread blocks all
    threads = sorted(int(t) for t in os.listdir(f"/proc/{first}/task"))
    assert len(threads) >= 2, threads
    for tid in threads:
        status = Path(f"/proc/{first}/task/{tid}/status").read_text()
        blocked = int(re.search(r"SigBlk:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
        term = bool(blocked & (1 << (signal.SIGTERM - 1)))
        assert term == (tid != first), (tid, hex(blocked))
    os.kill(first, signal.SIGTERM)
    n.poll_until(lambda: (exporter_pid(n) or first) != first, what="a new exporter after SIGTERM")
    scrape_when(n, bool, "a scrape from the new exporter")

    # a port someone else holds: one FATAL, then a pause of METRICS_RESTART_SECS (5 s)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        m = LocalNode(tmp_path, "taken")
        m.init(pgbed__metrics_port=blocker.getsockname()[1])
        m.start()
        try:
            m.wait_for_log('could not create metrics listen socket for "127.0.0.1" port')
            time.sleep(3.0)
            fatals = re.findall(r"FATAL:\s+could not create metrics listen socket", m.log_content())
            assert len(fatals) == 1, m.log_content()[-2000:]
            assert m.sql("SELECT 1") == [(1,)]  # the node itself is unaffected
        finally:
            m.teardown()
    finally:
        blocker.close()
    # a fast shutdown ends the exporter too (SIGTERM at WAIT_DEAD_END), while it is being scraped
    scrape_when(n, bool, "a scrape before the shutdown")
    assert n.stop("fast", timeout=20) == 0


def test_bgworker_counts_and_early_starts(node_factory, standby_factory) -> None:
    """Launches per worker name; the ConsistentState worker of a standby held before
    consistency is an early start only with `consistent_in_recovery` put back."""
    n = node_factory("n", metrics=True, shared_preload_libraries="'pgbed_test'",
                     pgbed_test__static_workers="'svc:postmaster_start:1:exit:1'")  # fmt: skip
    text = scrape_when(n, lambda t: (value(t, M.BGW_RESTARTS, worker="svc") or 0) >= 1,
                       "svc relaunched after its exit 1 (restart_time 1 s)")  # fmt: skip
    assert value(text, M.BGW_STARTS, worker="svc") >= 2  # type: ignore[operator]
    assert value(text, M.BGW_EARLY_STARTS, worker="svc", start_time="postmaster_start") == 0.0

    for bug in (True, False):
        p = node_factory(f"p{int(bug)}")
        s = standby_factory(p, f"s{int(bug)}", metrics=True, shared_preload_libraries="'pgbed_test'",
                            pgbed_test__static_workers="'cons:consistent_state:-1:run'",
                            injection_points="'startup-before-consistent:sleep:1000'",
                            pgbed__historic_bugs="'consistent_in_recovery'" if bug else "''")  # fmt: skip
        text = scrape_when(s, lambda t: (value(t, M.BGW_STARTS, worker="cons") or 0) >= 1, "cons started")
        early = value(text, M.BGW_EARLY_STARTS, worker="cons", start_time="consistent_state")
        assert early == (1.0 if bug else 0.0), (bug, early)
        s.teardown()
        p.teardown()
