"""The metrics exporter: an auxiliary process serving the node's Prometheus metrics.

What it does: the postmaster starts it like the checkpointer (`pgbed.metrics_port`, default
9187, 0 = off; it takes no background worker slot and no connection slot) in every state before
shutdown, and again after a crash reinit. It serves `/metrics` on the first address of
`listen_addresses` with prometheus-client's HTTP server (a thread of this process), through a
custom collector that reads shared memory at each scrape: the PMState and role, recovery
progress and WAL positions (XLogCtl-lite, WalRcv), the postmaster's counters (node/pmstats.py:
crash restarts, child starts and exits, background worker launches by name), the signal
counters every process flushes at its check points, background worker slots, checkpoints, the
database statistics (pg_stat_database), pg_stat_activity, pg_stat_replication and the
injection points. Names and help texts come from node/metricnames.py.

Signals (the auxiliary processes' defaults): SIGTERM exits 0 at the next check (the
postmaster sends it at WAIT_DEAD_END, when everything else is gone); SIGQUIT _exit(2); SIGHUP
reloads the configuration (the port is a postmaster-context setting: a change needs a restart);
SIGUSR1 wakes it. It exits when the postmaster dies.

What it deliberately does not do: write shared memory (a scrape only reads, so a crash of the
exporter is handled like any process's — exit 0/1 is not a crash, anything else is — but
nothing it does can corrupt shared state), compute rates, or keep history: Prometheus does.
Exporting the first BGW_STAT_SLOTS worker names only (node/ipc/shmem.py) is a documented limit.

Ownership: reads every table; writes only its own ProcEntry (attach) and its signal counts.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from node import elog, injection
from node import metricnames as M
from node.ipc.latch import WL_POSTMASTER_DEATH
from node.ipc.shmem import EXIT_CLASS_SLOTS, WALRCV_STATES, WALSND_STATES
from node.pmstats import EXIT_CLASSES, KINDS, signal_counts
from node.proc import (
    die_handler,
    install_handler,
    me,
    process_config_reload,
    reload_handler,
    report_signals,
    wake_handler,
)
from node.states import PMState


def _quit(signum: int, frame: Any) -> None:
    os._exit(2)


class NodeCollector:
    """prometheus-client custom collector over this node's shared memory."""

    def __init__(self, shm: Any) -> None:
        self.shm = shm
        self.last_scrape_s = 0.0

    def describe(self) -> list[Any]:
        return []  # no registration-time collect (the registry must not scrape at register)

    def collect(self) -> Iterator[Any]:
        t0 = time.perf_counter()
        families = list(_families(self.shm))
        families.append(_gauge(M.SCRAPE_DURATION, [((), self.last_scrape_s)]))
        self.last_scrape_s = time.perf_counter() - t0
        yield from families


def _family(name: str, kind: str, samples: list[tuple[tuple[str, ...], float]]) -> Any:
    """A metric family of `name` (its help and labels from metricnames.METRICS) with samples."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, UntypedMetricFamily

    declared, help_, labels = M.METRICS[name]
    assert declared == kind, (name, declared, kind)
    cls = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "untyped": UntypedMetricFamily}[kind]
    # CounterMetricFamily wants the name without `_total`; the exposition adds it back
    fam = cls(name.removesuffix("_total") if kind == "counter" else name, help_, labels=list(labels))
    for values, v in samples:
        fam.add_metric(list(values), v)
    return fam


def _gauge(name: str, samples: list[tuple[tuple[str, ...], float]]) -> Any:
    return _family(name, "gauge", samples)


def _counter(name: str, samples: list[tuple[tuple[str, ...], float]]) -> Any:
    return _family(name, "counter", samples)


def _untyped(name: str, samples: list[tuple[tuple[str, ...], float]]) -> Any:
    return _family(name, "untyped", samples)


def _one_hot(name: str, values: tuple[str, ...], current: str | None) -> Any:
    return _gauge(name, [((v,), 1.0 if v == current else 0.0) for v in values])


def _families(shm: Any) -> Iterator[Any]:
    from prometheus_client.core import SummaryMetricFamily

    from node import pgcatalog, replviews
    from node.bgwlist import StartTime
    from node.proc import read_entry

    xl, ps, now = shm.xlog, shm.pmstats, time.time()
    alive = os.getppid() == me.postmaster_pid
    yield _gauge(M.PG_UP, [((), 1.0 if alive else 0.0)])
    in_recovery = bool(xl.in_recovery)
    yield _one_hot(M.NODE_ROLE, ("primary", "standby"), "standby" if in_recovery else "primary")
    try:
        state = PMState(int(ps.pm_state)).name
    except ValueError:
        state = None
    yield _one_hot(M.PM_STATE, tuple(s.name for s in PMState), state)
    yield _gauge(M.IS_REPLICA, [((), float(in_recovery))])
    yield _gauge(M.CONSISTENT, [((), float(bool(xl.consistent) or (not in_recovery and bool(xl.wal_ready))))])
    tli = int(xl.replay_tli) if in_recovery and int(xl.replay_tli) else int(xl.timeline)
    yield _gauge(M.TIMELINE, [((), float(tli))])
    lsns: list[tuple[tuple[str, ...], float]] = []
    if xl.wal_ready and not in_recovery:
        lsns += [(("insert",), float(xl.insert_lsn)), (("flush",), float(xl.flush_lsn))]
    if in_recovery:
        lsns.append((("replay",), float(xl.replay_lsn)))
        received = int(shm.walrcv.flushed_lsn)
        if received:
            lsns.append((("receive",), float(received)))
    yield _gauge(M.WAL_LSN, lsns)
    yield _gauge(M.POSTMASTER_START, [((), float(shm.postmaster_start_time))])
    start = float(ps.incarnation_start)
    yield _gauge(M.START_TO_CONSISTENT, [((), float(ps.consistent_at) - start)] if ps.consistent_at else [])
    yield _gauge(M.START_TO_READY, [((), float(ps.ready_at) - start)] if ps.ready_at else [])

    # -- process model
    yield _counter(M.CRASH_RESTARTS, [((), float(ps.crash_restarts))])
    yield _counter(M.CHILD_STARTS, [((k.value,), float(ps.child_starts[i])) for i, k in enumerate(KINDS)
                                    if ps.child_starts[i]])  # fmt: skip
    exits = []
    for i, k in enumerate(KINDS):
        for j, cls in enumerate(EXIT_CLASSES):
            v = int(ps.child_exits[i * EXIT_CLASS_SLOTS + j])
            if v:
                exits.append(((k.value, cls), float(v)))
    yield _counter(M.CHILD_EXITS, exits)
    sigs = []
    for (kind, n), v in sorted(signal_counts(shm).items(), key=lambda x: (x[0][0].value, x[0][1])):
        try:
            name = signal.Signals(n).name
        except ValueError:
            name = str(n)
        sigs.append(((kind.value, name), float(v)))
    yield _counter(M.SIGNALS, sigs)

    # -- background workers
    slots = {"free": 0, "pending": 0, "running": 0, "stopped": 0}
    for i in range(min(int(shm.bgw_count), len(shm.bgw))):
        b = shm.bgw[i]
        pid = int(b.pid)
        slots["free" if not b.in_use else "pending" if pid == -1 else "stopped" if pid == 0 else "running"] += 1
    yield _gauge(M.BGW_SLOTS, [((k,), float(v)) for k, v in slots.items()])
    stats = [ps.bgw_stats[i] for i in range(min(int(ps.bgw_stat_count), len(ps.bgw_stats)))]
    names = [e.name.decode("utf-8", "replace") for e in stats]
    yield _counter(M.BGW_STARTS, [((n,), float(e.starts)) for n, e in zip(names, stats, strict=True)])
    yield _counter(M.BGW_CRASHES, [((n,), float(e.crashes)) for n, e in zip(names, stats, strict=True)])
    yield _counter(M.BGW_RESTARTS, [((n,), float(e.restarts)) for n, e in zip(names, stats, strict=True)])
    early = []
    for n, e in zip(names, stats, strict=True):
        try:
            st = StartTime(int(e.start_time)).sql_name
        except ValueError:
            st = str(int(e.start_time))
        early.append(((n, st), float(e.early_starts)))
    yield _counter(M.BGW_EARLY_STARTS, early)

    # -- checkpoints, transactions, connections
    ck = shm.ckpt
    done = int(ck.ckpt_done)  # read before the sum: the checkpointer adds the time first
    yield _counter(M.CHECKPOINTS, [(("done",), float(done)), (("failed",), float(ck.ckpt_failed))])
    _kind, help_, _labels = M.METRICS[M.CHECKPOINT_DURATION]
    summ = SummaryMetricFamily(M.CHECKPOINT_DURATION, help_, labels=[])
    summ.add_metric([], count_value=done, sum_value=float(ck.ckpt_duration_sum))
    yield summ
    commits = float(shm.counters[int(pgcatalog.StatCounter.XACT_COMMIT)])
    rollbacks = float(shm.counters[int(pgcatalog.StatCounter.XACT_ROLLBACK)])
    yield _counter(M.XACT_COMMIT, [(("postgres",), commits)])
    yield _counter(M.XACT_ROLLBACK, [(("postgres",), rollbacks)])
    activity: dict[tuple[str, str], int] = {}
    for e in shm.procs:
        if not e.pid:
            continue
        r = read_entry(e)
        if r is None:
            continue
        key = (r["state"].value if r["state"] is not None else "", r["backend_type"])
        activity[key] = activity.get(key, 0) + 1
    yield _untyped(M.ACTIVITY_COUNT, [(k, float(v)) for k, v in sorted(activity.items())])

    # -- replication
    rows = replviews._replication_rows(None) if not in_recovery else []
    current = int(xl.flush_lsn)
    diff, wlag, flag, rlag = [], [], [], []
    for r in rows:
        labels = (r["application_name"], str(r["client_addr"] or ""), r["state"], r["sync_state"])
        diff.append((labels, float(max(0, current - int(r["replay_lsn"] or 0)))))
        for out, col in ((wlag, "write_lag"), (flag, "flush_lag"), (rlag, "replay_lag")):
            if r[col] is not None:
                out.append((labels, r[col].total_seconds()))
    yield _gauge(M.REPL_LSN_DIFF, diff)
    yield _gauge(M.REPL_WRITE_LAG, wlag)
    yield _gauge(M.REPL_FLUSH_LAG, flag)
    yield _gauge(M.REPL_REPLAY_LAG, rlag)
    yield _gauge(M.SYNC_STANDBYS, [((), float(sum(1 for r in rows if r["sync_state"] in ("sync", "quorum"))))])
    senders = dict.fromkeys(WALSND_STATES, 0)
    for w in shm.walsnd:
        if w.pid and 0 <= int(w.state) < len(WALSND_STATES):
            senders[WALSND_STATES[int(w.state)]] += 1
    yield _gauge(M.WALSENDERS, [((k,), float(v)) for k, v in senders.items()])
    rcv = int(shm.walrcv.state)
    yield _one_hot(M.WALRECEIVER_STATE, WALRCV_STATES, WALRCV_STATES[rcv] if 0 <= rcv < len(WALRCV_STATES) else None)
    if in_recovery:
        received, replayed = int(shm.walrcv.flushed_lsn), int(xl.replay_lsn)
        last = float(xl.last_xact_replay_ts)
        # postgres_exporter's formula: caught up with what was received means no lag
        lag = 0.0 if received <= replayed or not last else max(0.0, now - last)
        yield _gauge(M.REPLICATION_LAG, [((), lag)])
    else:
        yield _gauge(M.REPLICATION_LAG, [])

    # -- fault hooks
    armed, fires = 0, {}
    for table in (shm.inj_setting, shm.inj_sql):
        for e in table:
            name = e.name.decode("utf-8", "replace")
            if not name:
                continue
            if e.armed and not e.detached:
                armed += 1
            fires[name] = fires.get(name, 0) + int(e.fired)
    yield _gauge(M.INJECTION_ARMED, [((), float(armed))])
    yield _counter(M.INJECTION_FIRES, [((k,), float(v)) for k, v in sorted(fires.items())])


def _bind_address() -> str:
    addrs = [a.strip() for a in str(me.guc.get("listen_addresses")).split(",") if a.strip()]
    first = addrs[0] if addrs else "localhost"
    return {"*": "0.0.0.0", "localhost": "127.0.0.1"}.get(first, first)


def main() -> int:
    from node.proc import attach

    install_handler(signal.SIGHUP, reload_handler)
    install_handler(signal.SIGTERM, die_handler)
    install_handler(signal.SIGUSR1, wake_handler)
    install_handler(signal.SIGQUIT, _quit)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    injection.inject("metrics-start")
    attach()
    from prometheus_client import CollectorRegistry, start_http_server

    port, addr = int(me.guc.get("pgbed.metrics_port")), _bind_address()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(me.shm))  # type: ignore[arg-type]
    # The HTTP server's thread must never take a signal: the kernel may deliver a process signal
    # to any thread that does not block it, and Python runs handlers in the main thread only when
    # that thread wakes — blocked in its latch's select(), it would not, and a SIGTERM would be
    # lost (the postmaster would wait for this process forever). Threads inherit the mask.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP})
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as e:
        raise elog.fatal(f'could not create metrics listen socket for "{addr}" port {port}: '
                         f"{e.strerror or e}") from None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    elog.log("DEBUG1", f'metrics exporter listening on "{addr}" port {port}')
    latch = me.latch
    assert latch is not None
    try:
        while True:
            latch.reset()
            injection.inject("metrics-loop")
            report_signals()
            p = me.pending
            process_config_reload()
            if p.proc_die:
                return 0
            rc = latch.wait(None)
            if rc & WL_POSTMASTER_DEATH:
                return 1  # the postmaster is gone: nothing to export
    finally:
        server.shutdown()
