"""The postmaster: supervises every process of the node (PM: postmaster.c).

What it does: creates shared memory, forks the checkpointer and the startup process (T1),
accepts connections and forks a backend (or a dead-end child) for each, reaps children,
classifies their exits (CRASH-1), handles crashes (CRASH-4..10: SIGQUIT all, SIGKILL after 5 s,
rebuild shared memory, crash recovery), runs the PMState machine (T1..T15) and the shutdown
modes (SHUT-1..9), and forwards SIGHUP.

What it deliberately does not do: startup work, SQL, or anything that could wedge it. It never
waits on a lock, never sleeps except in its selector, and does no work in signal handlers.
After creating shared memory it writes only the fields it owns (dead-man switch at fork and
reap, pmsignal clears, quit reason, the setting injection table) and validates what it reads.

NOTES
- Loop shape (PM-0, STYLE 5): wait on selectors (listen sockets + the signal wakeup fd), then
  process pending shutdown, reload, child-exit and pmsignal flags in that order, accept
  connections, launch missing children, then timed chores (SIGKILL escalation, lock-file check).
- One setter for the state, `_set_state`, logs every transition as an event; `state_machine()`
  runs after every event (PostmasterStateMachine).
- The reaper `_reap` is the only place a death is recorded (P-10, STYLE 10).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import os
import selectors
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from node import datadir, elog, events, injection
from node.ipc.lwlock import LWLocks
from node.ipc.pmsignal import check_pmsignal
from node.ipc.shmem import ShmemSegment, ShmemSizes
from node.launch import fork_child, set_cluster_name, set_title
from node.pmchild import ChildTable, PMChild
from node.pmlogic import (
    ExitClass,
    can_accept_connections,
    classify_exit,
    describe_exit,
    procname,
    wait_backends_done,
)
from node.pmstats import PmStatsMirror, carry_signal_counts
from node.proc import ChildInfo, count_signal, historic_bug, install_handler, me, report_signals
from node.states import (
    BackendKind,
    ChildSlotState,
    PidfileStatus,
    PMSignalReason,
    PMState,
    QuitReason,
    ShutdownMode,
    StartupStatus,
)

SIGKILL_CHILDREN_AFTER_SECS = 5.0
METRICS_RESTART_SECS = 5.0
METRICS_RESTART_MAX_SECS = 300.0
IDLE_PRELOAD_AFTER_S = 0.05
LOCKFILE_CHECK_SECS = 60.0


class _Pending:
    """Flags written only by the postmaster's signal handlers (SIG-1). Signal counts go to
    node/proc.py's counters like every other process's, reported from the loop."""

    shutdown = ShutdownMode.NONE
    reload = False
    child_exit = False
    pmsignal = False


pending = _Pending()


def _settle_heap() -> None:
    """After the imports every child inherits: move the objects into the collector's permanent
    generation (a collection in a child would otherwise write to every inherited object's
    header and copy-on-write the whole heap: gc.freeze, as pre-fork servers do) and give freed
    malloc memory back, which fork() would otherwise copy page-table entries for. fork() costs
    in proportion to the postmaster's anonymous memory (~35 us per MB on a 2-core VM)."""
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _on_shutdown_signal(signum: int, frame: Any) -> None:
    count_signal(signum)
    mode = {signal.SIGTERM: ShutdownMode.SMART, signal.SIGINT: ShutdownMode.FAST,
            signal.SIGQUIT: ShutdownMode.IMMEDIATE}[signal.Signals(signum)]  # fmt: skip
    if mode > pending.shutdown:
        pending.shutdown = mode


def _on_hup(signum: int, frame: Any) -> None:
    count_signal(signum)
    pending.reload = True


def _on_chld(signum: int, frame: Any) -> None:
    count_signal(signum)
    pending.child_exit = True


def _on_usr1(signum: int, frame: Any) -> None:
    count_signal(signum)
    pending.pmsignal = True


class Postmaster:
    def __init__(self, data_dir: str, guc: Any) -> None:
        self.datadir = data_dir
        self.guc = guc
        self.state = PMState.INIT
        self.shutdown = ShutdownMode.NONE
        self.fatal_error = False
        self.abort_start: float | None = None
        self.conns_allowed = True
        self.startup_status = StartupStatus.NOT_RUNNING
        self.children = ChildTable.for_settings(
            int(guc.get("max_connections")), int(guc.get("max_worker_processes")), int(guc.get("max_wal_senders"))
        )
        self.startup_pid = 0
        self.checkpointer_pid = 0
        self.walreceiver_pid = 0
        self.walreceiver_requested = False
        self.metrics_pid = 0
        self.metrics_next_start = 0.0  # monotonic: a failed exporter is started again after a pause
        self.metrics_failures = 0  # exits other than 0 in a row, each doubling the pause
        self.bgworkers: list[Any] = []  # RegisteredWorker (node/bgwlist.py), oldest first
        self.bgw_next_wakeup: float | None = None
        self.bgw_more_due = False
        self.listen: list[socket.socket] = []
        self.socket_files: list[str] = []
        self.sel = selectors.DefaultSelector()
        self.seg: ShmemSegment | None = None
        self.generation = 0
        self.hba_rules: list[Any] = []
        self.start_time = time.time()
        self.stats = PmStatsMirror(incarnation_start=self.start_time)  # node/pmstats.py: for the exporter
        self.next_lockfile_check = time.monotonic() + LOCKFILE_CHECK_SECS
        # The OS is injected (STYLE 14): unit tests drive the state machine with fakes.
        self.kill: Any = os.kill
        self.fork: Any = fork_child
        self.exit: Any = os._exit
        self.wake_r = self.wake_w = self.death_w = -1
        self.injection_setting = ""
        self.sql_preloaded = False

    # -- state ------------------------------------------------------------------------------------

    def _set_state(self, new: PMState) -> None:
        old = self.state
        if old == new:
            return
        self.state = new
        self.stats.set_state(new, time.time())
        elog.event(events.PM_STATE, "DEBUG1", f"updating PMState from {old.name} to {new.name}",
                   old=old.name, new=new.name)  # fmt: skip

    # -- setup ------------------------------------------------------------------------------------

    def _create_shmem(self) -> None:
        g = self.guc
        sizes = ShmemSizes(n_procs=self.children.n_slots, n_walsenders=int(g.get("max_wal_senders")),
                           n_replslots=int(g.get("max_replication_slots")),
                           n_bgworkers=int(g.get("max_worker_processes")))  # fmt: skip
        old = self.seg
        self.generation += 1
        self.seg = ShmemSegment.create(sizes, self.generation)
        s = self.seg.s
        if old is not None:
            carry_signal_counts(old.s, s)  # no child is left to write the old table
            old.release()
        s.postmaster_start_time = self.start_time
        self.stats.publish(s)
        for w in s.walsnd:
            w.latch_slot = -1
        s.walrcv.latch_slot = -1
        self._bgw_shmem_init(s)
        me.seg = self.seg
        me.shm = s
        injection.attach(s, None)
        self.injection_setting = str(g.get("injection_points"))
        try:
            injection.apply_setting(s, self.injection_setting)
        except ValueError as e:
            elog.log("LOG", str(e))

    def _open_listen_sockets(self) -> None:
        g = self.guc
        port = int(g.get("port"))
        addrs = [a.strip() for a in str(g.get("listen_addresses")).split(",") if a.strip()]
        for a in addrs:
            targets: list[tuple[int, str]] = []
            if a == "*":
                targets = [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
            elif a == "localhost":
                targets = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
            else:
                targets = [(socket.AF_INET6 if ":" in a else socket.AF_INET, a)]
            for fam, host in targets:
                try:
                    s = socket.socket(fam, socket.SOCK_STREAM)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if fam == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.bind((host, port))
                    s.listen(min(2 * int(g.get("max_connections")), 1000))
                except OSError as e:
                    s.close()
                    if fam == socket.AF_INET6 and a in ("*", "localhost") and e.errno in (
                            errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):  # fmt: skip
                        continue
                    elog.log("LOG", f'could not bind {"IPv6" if fam == socket.AF_INET6 else "IPv4"} address '
                             f'"{host}": {e.strerror}',
                             hint="Is another postmaster already running on port "
                             f"{port}? If not, wait a few seconds and retry.")  # fmt: skip
                    continue
                s.setblocking(False)
                elog.log("LOG", f'listening on {"IPv6" if fam == socket.AF_INET6 else "IPv4"} address '
                         f'"{host}", port {port}')  # fmt: skip
                self.listen.append(s)
        for d in [x.strip() for x in str(g.get("unix_socket_directories")).split(",") if x.strip()]:
            path = os.path.join(d, f".s.PGSQL.{port}")
            try:
                if os.path.exists(path):
                    os.unlink(path)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(path)
                os.chmod(path, int(g.get("unix_socket_permissions")))
                s.listen(min(2 * int(g.get("max_connections")), 1000))
            except OSError as e:
                elog.log("LOG", f'could not create Unix socket for address "{path}": {e.strerror}')
                continue
            s.setblocking(False)
            elog.log("LOG", f'listening on Unix socket "{path}"')
            self.listen.append(s)
            self.socket_files.append(path)
        tcp = [s for s in self.listen if s.family != socket.AF_UNIX]
        if addrs and not tcp:
            raise elog.fatal("could not create any TCP/IP sockets")
        if not self.listen:
            raise elog.fatal("no socket created for listening")
        for s in self.listen:
            self.sel.register(s, selectors.EVENT_READ, "listen")

    def _stop_listening(self) -> None:
        """ConfigurePostmasterWaitSet(false): keep the sockets, stop accepting on them."""
        for s in self.listen:
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass

    def _resume_listening(self) -> None:
        for s in self.listen:
            try:
                self.sel.register(s, selectors.EVENT_READ, "listen")
            except (KeyError, ValueError):
                pass

    def _load_hba(self, at_start: bool) -> bool:
        from node import hba

        try:
            self.hba_rules = hba.parse_hba(Path(self.datadir) / "pg_hba.conf")
            return True
        except (hba.HbaError, OSError) as e:
            if at_start:
                raise elog.fatal("could not load pg_hba.conf", detail=str(e)) from None
            elog.log("LOG", str(e))
            elog.log("LOG", f"{Path(self.datadir) / 'pg_hba.conf'} was not reloaded")
            return False

    # -- children ---------------------------------------------------------------------------------

    def _close_fds_for_child(self) -> list[int]:
        fds = [s.fileno() for s in self.listen]
        fds += [self.wake_r, self.wake_w, self.death_w]
        try:
            fds.append(self.sel.fileno())  # type: ignore[attr-defined]
        except (AttributeError, OSError):
            pass
        return fds

    def _assign_slot(self, kind: BackendKind) -> int | None:
        """A child slot from the kind's pool, marked ASSIGNED for the dead-man switch."""
        slot = self.children.assign(kind)
        if slot is not None and slot >= 0:
            self.seg.s.child_state[slot] = ChildSlotState.ASSIGNED  # type: ignore[union-attr]
        return slot

    def _unassign_slot(self, kind: BackendKind, slot: int) -> None:
        """Give back a slot whose fork failed."""
        if slot >= 0:
            self.seg.s.child_state[slot] = ChildSlotState.UNUSED  # type: ignore[union-attr]
        self.children.release(kind, slot)

    def _release_slot(self, child: PMChild) -> bool:
        """ReleasePostmasterChildSlot: False when the child never detached (CRASH-3)."""
        if child.slot < 0:
            return True
        s = self.seg.s  # type: ignore[union-attr]
        st = s.child_state[child.slot]
        ok = st in (ChildSlotState.ASSIGNED, ChildSlotState.UNUSED)
        s.child_state[child.slot] = ChildSlotState.UNUSED
        entry = s.procs[child.slot]
        if entry.pid == child.pid:  # a child that died attached leaves its row behind
            entry.changecount += 1
            entry.pid = 0
            entry.counted = 0
            entry.latch_owner = 0
            entry.changecount += 1
        self.children.release(child.kind, child.slot)
        return ok

    def start_child(self, kind: BackendKind, main: Any, **extra: Any) -> int:
        """StartChildProcess: fork an auxiliary process. Returns 0 when the fork failed."""
        point = injection.armed(f"postmaster-fork-{kind.point_prefix}")
        slot = self._assign_slot(kind)
        if slot is None:
            elog.event(events.FORK_FAILED, "LOG", f"no free child slot for {procname(kind)}", kind=kind.value,
                       error="no free slot")  # fmt: skip
            return 0
        try:
            if point is not None and point.action in (injection.Action.FAIL, injection.Action.SLEEP):
                # fail: the fork fails; sleep: a slow fork (the postmaster loop is held meanwhile)
                injection.run(f"postmaster-fork-{kind.point_prefix}", point)
            pid = self.fork(ChildInfo(kind, slot), main, self._close_fds_for_child())
        except (OSError, elog.PGError) as e:
            self._unassign_slot(kind, slot)
            msg = getattr(e, "strerror", None) or getattr(e, "message", str(e))
            what = "background worker process" if kind is BackendKind.BGWORKER else procname(kind)
            elog.event(events.FORK_FAILED, "LOG", f"could not fork {what}: {msg}", kind=kind.value,
                       error=msg)  # fmt: skip
            return 0
        self.children.add(PMChild(pid, kind, slot, time.time(), extra=extra))
        self.stats.child_start(kind)
        elog.event(events.CHILD_START, "DEBUG2", f"started {procname(kind)} (PID {pid})", kind=kind.value,
                   child_pid=pid, child_slot=slot)  # fmt: skip
        return pid

    def _start_startup(self) -> None:
        from node import startup

        pid = self.start_child(BackendKind.STARTUP, startup.main)
        if not pid:
            raise elog.fatal("could not fork startup process")
        self.startup_pid = pid
        self.startup_status = StartupStatus.RUNNING

    def _start_checkpointer(self) -> int:
        from node import checkpointer

        self.checkpointer_pid = self.start_child(BackendKind.CHECKPOINTER, checkpointer.main)
        return self.checkpointer_pid

    def _maybe_start_metrics(self) -> None:
        """The metrics exporter (node/metrics.py) runs from startup until shutdown begins, in
        every incarnation. After an exit other than 0 it waits METRICS_RESTART_SECS, doubled at
        each failure in a row up to METRICS_RESTART_MAX_SECS: a port that cannot be bound (two
        nodes on one address with the default port) must not fork it in a loop or fill the log."""
        if self.metrics_pid or not int(self.guc.get("pgbed.metrics_port")) or self.fatal_error \
                or self.shutdown > ShutdownMode.NONE or time.monotonic() < self.metrics_next_start \
                or self.state not in (PMState.STARTUP, PMState.RECOVERY, PMState.HOT_STANDBY, PMState.RUN):  # fmt: skip
            return
        from node import metrics

        self.metrics_pid = self.start_child(BackendKind.METRICS, metrics.main)
        if not self.metrics_pid:
            self.metrics_next_start = time.monotonic() + METRICS_RESTART_SECS

    def signal_child(self, child: PMChild, sig: int) -> None:
        try:
            self.kill(child.pid, sig)
        except ProcessLookupError:
            pass  # the reaper will see it (STYLE 10: only the reaper records a death)

    def _refresh_walsenders(self) -> None:
        """A backend that became a walsender says so in its dead-man switch slot (WALSND-1 (4));
        from then on it is a WALSENDER here: out of the stop set and the client counts."""
        s = self.seg.s  # type: ignore[union-attr]
        for child in self.children.of_kinds(frozenset({BackendKind.BACKEND})):
            if child.slot >= 0 and s.child_state[child.slot] == ChildSlotState.WALSENDER:
                child.kind = BackendKind.WALSENDER

    def _maybe_start_walreceiver(self) -> None:
        """MaybeStartWalReceiver: only while recovering, and not once a shutdown has begun."""
        if not self.walreceiver_requested or self.walreceiver_pid or self.fatal_error:
            return
        if self.state not in (PMState.STARTUP, PMState.RECOVERY, PMState.HOT_STANDBY) \
                or self.shutdown > ShutdownMode.SMART:  # fmt: skip
            return
        from node import walreceiver

        pid = self.start_child(BackendKind.WALRECEIVER, walreceiver.main)
        if pid:
            self.walreceiver_pid = pid
            self.walreceiver_requested = False

    # -- background workers (BGW-5..17; decisions in node/bgwlist.py) -----------------------------

    def _bgw_event(self, event: str, level: str, msg: str, rw: Any, pid: int, **extra: Any) -> None:
        w = rw.worker
        elog.event(event, level, msg, name=w.name, type=w.type, start_time=w.start_time.sql_name, pid=pid,
                   slot=rw.shmem_slot, generation=rw.generation, restart_time=w.restart_time, **extra)  # fmt: skip

    def _notify(self, pid: int) -> None:
        if pid > 0:
            try:
                self.kill(pid, signal.SIGUSR1)
            except (ProcessLookupError, PermissionError):
                pass  # P-7

    def _bgw_shmem_init(self, s: Any) -> None:
        """BackgroundWorkerShmemInit (BGW-5): registered workers fill the slots in list order,
        generation 0, pid -1."""
        from node import bgworker

        n = min(len(s.bgw), int(self.guc.get("max_worker_processes")))
        s.bgw_count = n
        for i, rw in enumerate(self.bgworkers[:n]):
            slot = s.bgw[i]
            bgworker.write_slot(slot, rw.worker, generation=0, pid=-1)
            slot.in_use = 1
            rw.shmem_slot = i
            rw.generation = 0

    def _bgw_state_change(self) -> None:
        """BackgroundWorkerStateChange (BGW-6): adopt new slots, pass on terminate requests.
        No lock is taken; every string is copied."""
        from node import bgwlist, bgworker

        s = self.seg.s  # type: ignore[union-attr]
        if int(s.bgw_count) != min(len(s.bgw), int(self.guc.get("max_worker_processes"))):
            elog.log("LOG", "inconsistent background worker state",
                     detail=f"max_worker_processes={self.guc.get('max_worker_processes')}, "
                     f"total_slots={int(s.bgw_count)}")  # fmt: skip
            return
        by_slot = {rw.shmem_slot: rw for rw in self.bgworkers}
        for i in range(int(s.bgw_count)):
            slot = s.bgw[i]
            if not slot.in_use:
                continue
            rw = by_slot.get(i)
            if rw is not None and rw.generation == int(slot.generation):
                if slot.terminate and not rw.terminate:
                    rw.terminate = True
                    if rw.pid:
                        self.signal_child_pid(rw.pid, signal.SIGTERM)
                    else:
                        slot.pid = 0  # never started: publish STOPPED so the waiter wakes
                        self._notify(rw.worker.notify_pid)
                continue
            w = bgworker.read_slot(slot)
            if slot.terminate or self.state >= PMState.STOP_BACKENDS:
                notify = w.notify_pid
                slot.pid = 0
                slot.in_use = 0  # freed at once, then the waiter is told
                self._notify(notify)
                continue
            if w.notify_pid and w.notify_pid not in self.children:
                elog.log("DEBUG1", f"worker notification PID {w.notify_pid} is not valid")
                w.notify_pid = 0
                slot.notify_pid = 0  # the slot is ours now (BGW-5)
            new = bgwlist.RegisteredWorker(w, i, generation=int(slot.generation))
            if i in by_slot:  # a stale entry for a slot that was freed and reused
                self.bgworkers.remove(by_slot[i])
            self.bgworkers.append(new)
            by_slot[i] = new
            self._bgw_event(events.BGW_REGISTER, "DEBUG1", f'registering background worker "{w.name}"', new, 0)

    def _bgw_forget(self, rw: Any, reason: str) -> None:
        """ForgetBackgroundWorker: free the slot first, then tell the waiter."""
        s = self.seg.s  # type: ignore[union-attr]
        slot = s.bgw[rw.shmem_slot] if 0 <= rw.shmem_slot < len(s.bgw) else None
        if slot is not None and int(slot.generation) == rw.generation:
            slot.pid = 0
            slot.in_use = 0
        self.bgworkers = [x for x in self.bgworkers if x is not rw]
        self._bgw_event(events.BGW_FORGET, "DEBUG1", f'unregistering background worker "{rw.worker.name}"', rw,
                        0, reason=reason)  # fmt: skip
        self._notify(rw.worker.notify_pid)

    def _maybe_start_bgworkers(self) -> None:
        """maybe_start_bgworkers (BGW-7/8/9): at most MAX_PER_PASS forks per loop pass."""
        from node import bgwlist

        self.bgw_more_due = False
        self.bgw_next_wakeup = None
        if not self.bgworkers or self.seg is None:
            return
        plan = bgwlist.launch_plan(self.bgworkers, self.state, self.fatal_error, time.monotonic(),
                                   consistent_in_recovery=historic_bug("consistent_in_recovery"))  # fmt: skip
        for rw in plan.forget:
            self._bgw_forget(rw, "terminated" if rw.terminate else "crashed, never restart")
        self.bgw_next_wakeup = plan.next_wakeup
        self.bgw_more_due = plan.more_due
        for rw in plan.start:
            if not self._bgw_start(rw):
                self.bgw_more_due = False
                break  # BGW-8: a failure ends the pass

    def _bgw_start(self, rw: Any) -> bool:
        from node import bgworker

        w = rw.worker
        s = self.seg.s  # type: ignore[union-attr]
        rw.crashed_at = None
        if self.children.used("bgworker") >= self.children.pool_sizes["bgworker"]:
            elog.event(events.FORK_FAILED, "LOG", "no slot available for new background worker process",
                       kind=BackendKind.BGWORKER.value, error="no free slot")  # fmt: skip
            rw.crashed_at = time.monotonic()
            return False
        snapshot = bgworker.WorkerDef(w.name, w.type, w.flags, w.start_time, w.restart_time, w.function,
                                      w.main_arg, w.extra, w.notify_pid)  # fmt: skip
        slot_no = rw.shmem_slot
        pid = self.start_child(BackendKind.BGWORKER, lambda: bgworker.worker_main(snapshot, slot_no))
        if not pid:
            rw.crashed_at = time.monotonic()  # BGW-8: counts as a crash
            return False
        child = self.children.get(pid)
        rw.pid = pid
        rw.child_slot = child.slot if child is not None else -1
        slot = s.bgw[rw.shmem_slot]
        if int(slot.generation) == rw.generation:
            slot.pid = pid  # BGW-9: STARTED means forked
            slot.starts += 1
            slot.last_start = time.time()
        from node import bgwlist

        # the reference start-time table, without any historic bug: what the launch should have obeyed
        early = not bgwlist.should_start_now(self.state, w.start_time)
        self.stats.bgw_start(w.name, int(w.start_time), restart=rw.launches > 0, early=early)
        rw.launches += 1
        self._bgw_event(events.BGW_START, "DEBUG1", f'starting background worker process "{w.name}"', rw, pid)
        self._notify(w.notify_pid)
        return True

    def _bgw_exited(self, child: PMChild, code: int, detached: bool) -> None:
        """CleanupBackend for a bgworker (BGW-10/11)."""
        from node import bgwlist

        rw = next((x for x in self.bgworkers if x.pid == child.pid), None)
        if rw is None:
            if code not in (0, 1) or not detached:
                self.handle_child_crash(child.pid, code, "background worker", child)
            return
        name = f'background worker "{rw.worker.type}"'
        action = bgwlist.exit_policy(rw, code, detached=detached)
        s = self.seg.s  # type: ignore[union-attr]
        slot = s.bgw[rw.shmem_slot]
        mine = int(slot.generation) == rw.generation
        if mine:
            slot.has_exited = 1
            slot.last_exit = time.time()
            slot.last_exit_code = code
            if action is bgwlist.ExitAction.CRASH:
                slot.crashes += 1
        if action is bgwlist.ExitAction.CRASH:
            self.stats.bgw_crash(rw.worker.name, int(rw.worker.start_time))
        if action is not bgwlist.ExitAction.CRASH:
            # A crashed worker keeps its pid here: the crash reinit clears it (BGW-17), or, with the
            # historic bug `bgw17_pid_not_reset`, does not, and the worker is never started again.
            rw.pid = 0
        rw.child_slot = -1
        # CleanupBackgroundWorker logs the exit once: LOG, or DEBUG1 for exit 0; for a crash the
        # line is HandleChildCrash's (which logs only the first crash of a cycle)
        self._bgw_event(events.BGW_EXIT, "DEBUG1" if code == 0 else "LOG", describe_exit(name, child.pid, code), rw,
                        child.pid, log_text=action is not bgwlist.ExitAction.CRASH, exit_code=code,
                        action=action.value)  # fmt: skip
        if action is bgwlist.ExitAction.CRASH:
            rw.crashed_at = time.monotonic()
            if mine:
                slot.pid = 0
            self.handle_child_crash(child.pid, code, name, child)
            return
        if action is bgwlist.ExitAction.UNREGISTER:
            self._bgw_forget(rw, "exited" if code == 0 else "exited 1, never restart")
            return
        rw.crashed_at = time.monotonic()  # restart restart_time seconds after the reap
        if mine:
            slot.pid = 0
        self._notify(rw.worker.notify_pid)

    def _bgw_reset_after_crash(self) -> None:
        """BGW-17 at reinit: NEVER_RESTART entries are forgotten, the others reset."""
        from node import bgwlist

        forgotten = bgwlist.reset_after_crash(self.bgworkers, pid_not_reset=historic_bug("bgw17_pid_not_reset"))
        for rw in forgotten:
            self.bgworkers = [x for x in self.bgworkers if x is not rw]
            self._bgw_event(events.BGW_FORGET, "DEBUG1", f'unregistering background worker "{rw.worker.name}"',
                            rw, 0, reason="crash reinit, never restart")  # fmt: skip

    def _bgw_forget_unstarted(self) -> None:
        """ForgetUnstartedBackgroundWorkers (BGW-16): unstarted workers with a waiter go."""
        for rw in list(self.bgworkers):
            if not rw.pid and rw.worker.notify_pid:
                self._bgw_forget(rw, "shutdown, not started")

    def signal_child_pid(self, pid: int, sig: int) -> None:
        try:
            self.kill(pid, sig)
        except ProcessLookupError:
            pass

    def signal_children(self, sig: int, kinds: frozenset[BackendKind] | None = None,
                        exclude: frozenset[BackendKind] = frozenset()) -> None:  # fmt: skip
        self._refresh_walsenders()
        for child in self.children.of_kinds(kinds, exclude):
            self.signal_child(child, sig)

    def count_children(self, kinds: frozenset[BackendKind]) -> int:
        return self.children.count(kinds)

    def terminate_children(self, sig: int) -> None:
        """TerminateChildren: everything (no syslogger here); mark the startup process."""
        self.signal_children(sig)
        if self.startup_pid and sig in (signal.SIGQUIT, signal.SIGKILL, signal.SIGABRT):
            self.startup_status = StartupStatus.SIGNALED

    # -- connections ------------------------------------------------------------------------------

    def _accept(self, lsock: socket.socket) -> None:
        for _ in range(64):
            try:
                csock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                elog.log("LOG", f"could not accept new connection: {e.strerror}")
                return
            try:
                self._backend_startup(csock, addr)
            finally:
                csock.close()

    def _backend_startup(self, csock: socket.socket, addr: Any) -> None:
        from node import backend

        g = self.guc
        cac = can_accept_connections(
            self.state, self.shutdown, self.fatal_error, self.conns_allowed, bool(g.get("hot_standby")),
            n_children=self.children.used("backend"), max_children=self.children.pool_sizes["backend"],
        )  # fmt: skip
        slot = -1
        if cac == backend.CAC_OK:
            assigned = self._assign_slot(BackendKind.BACKEND)
            if assigned is None:  # pool exhausted: refused as "too many clients" by a dead-end child
                cac = backend.CAC_TOOMANY
            else:
                slot = assigned
        dead_end = cac != backend.CAC_OK
        kind = BackendKind.DEAD_END if dead_end else BackendKind.BACKEND
        key = int.from_bytes(os.urandom(4), "big")
        cancel_keys = self.children.cancel_keys()
        point = injection.armed("postmaster-fork-backend")
        rules = self.hba_rules
        try:
            if point is not None and point.action == injection.Action.FAIL and not dead_end:
                injection.run("postmaster-fork-backend", point)
            pid = self.fork(
                ChildInfo(kind, slot, key),
                lambda: backend.main(csock, addr, cac, cancel_keys, rules, key),
                self._close_fds_for_child(),
            )
        except (OSError, elog.PGError) as e:
            self._unassign_slot(kind, slot)
            msg = getattr(e, "strerror", None) or getattr(e, "message", str(e))
            elog.event(events.FORK_FAILED, "LOG", f"could not fork new process for connection: {msg}",
                       kind=kind.value, error=msg)  # fmt: skip
            try:  # report_fork_failure_to_client: best effort, old-style error
                csock.send(b"E" + f"could not fork new process for connection: {msg}\n".encode() + b"\0")
            except OSError:
                pass
            return
        self.children.add(PMChild(pid, kind, slot, time.time(), cancel_key=key))
        elog.event(events.CHILD_START, "DEBUG2", f"forked new backend, pid={pid} socket={csock.fileno()}",
                   kind=kind.value, child_pid=pid, child_slot=slot)  # fmt: skip

    # -- event processing -------------------------------------------------------------------------

    def process_shutdown_request(self) -> None:
        mode = pending.shutdown
        pending.shutdown = ShutdownMode.NONE
        if mode <= self.shutdown:
            return  # SHUT-1: not stronger than the current mode
        self.shutdown = mode
        name = mode.name.lower()
        elog.event(events.SHUTDOWN_REQUEST, "LOG", f"received {name} shutdown request", mode=name)
        datadir.set_pidfile_status(self.datadir, PidfileStatus.STOPPING)
        st = self.state
        if mode is ShutdownMode.SMART:
            if st in (PMState.RUN, PMState.HOT_STANDBY):
                self.conns_allowed = False  # SHUT-2
            elif st in (PMState.STARTUP, PMState.RECOVERY):
                self._set_state(PMState.STOP_BACKENDS)  # T5
        elif mode is ShutdownMode.FAST:
            if st in (PMState.STARTUP, PMState.RECOVERY, PMState.HOT_STANDBY, PMState.RUN):
                if st in (PMState.RUN, PMState.HOT_STANDBY):
                    elog.log("LOG", "aborting any active transactions")  # SHUT-3
                self._set_state(PMState.STOP_BACKENDS)  # T5
        else:  # SHUT-7
            self.seg.s.quit_reason = QuitReason.FOR_STOP  # type: ignore[union-attr]
            self.terminate_children(signal.SIGQUIT)
            self._set_state(PMState.WAIT_BACKENDS)
            self.abort_start = time.monotonic()
        self.state_machine()

    def process_reload_request(self) -> None:
        pending.reload = False
        if self.shutdown > ShutdownMode.SMART:
            return  # SHUT-8
        elog.event(events.RELOAD, "LOG", "received SIGHUP, reloading configuration files")
        from node import config

        config.reload(in_postmaster=True)
        value = str(self.guc.get("injection_points"))
        if value != self.injection_setting:
            try:
                injection.apply_setting(self.seg.s, value)  # type: ignore[union-attr]
                self.injection_setting = value
            except ValueError as e:
                elog.log("LOG", str(e))
        set_cluster_name(str(self.guc.get("cluster_name")))
        self.signal_children(signal.SIGHUP, exclude=frozenset({BackendKind.DEAD_END}))
        self._load_hba(at_start=False)

    def _reap(self) -> None:
        """The only place a death is recorded (P-10): clear the flag, then drain waitpid."""
        pending.child_exit = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            self._child_exited(pid, status)
        self.state_machine()

    def _child_exited(self, pid: int, status: int) -> None:
        child = self.children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if child is None:
            elog.log("DEBUG1", f"untracked child process (PID {pid}) exited")
            if code not in (0, 1):
                self.handle_child_crash(pid, code, "untracked child process", None)
            return
        detached = self._release_slot(child)
        cls = classify_exit(child.kind, code, self.state, detached)
        self.stats.child_exit(child.kind, cls.value)
        sig = -code if code < 0 else None
        elog.event(events.CHILD_EXIT, "DEBUG2", describe_exit(procname(child.kind), pid, code),
                   kind=child.kind.value, child_pid=pid, exit_code=None if sig else code,
                   signal=signal.Signals(sig).name if sig else None, classification=cls.value)  # fmt: skip
        if child.kind is BackendKind.STARTUP:
            self._startup_exited(pid, code)
            return
        if child.kind is BackendKind.WALRECEIVER:
            self.walreceiver_pid = 0  # WALRCV-5: exit 0/1 is forgotten; the startup process asks again
        if child.kind is BackendKind.METRICS:
            self.metrics_pid = 0
            ran_s = time.time() - child.started_at
            self.metrics_failures = 0 if code == 0 or ran_s > METRICS_RESTART_MAX_SECS else self.metrics_failures + 1
            if self.metrics_failures:
                pause = min(METRICS_RESTART_MAX_SECS, METRICS_RESTART_SECS * 2 ** (self.metrics_failures - 1))
                self.metrics_next_start = time.monotonic() + pause
        if child.kind is BackendKind.BGWORKER:
            self._bgw_exited(child, code, detached)
            return
        if child.kind is BackendKind.BACKEND and code == 0:
            for rw in self.bgworkers:  # BGW-15: BackgroundWorkerStopNotifications
                if rw.worker.notify_pid == pid:
                    rw.worker.notify_pid = 0
                    slot = self.seg.s.bgw[rw.shmem_slot]  # type: ignore[union-attr]
                    if int(slot.generation) == rw.generation:
                        slot.notify_pid = 0  # so pg_stat_bgworker shows it
        if child.kind is BackendKind.CHECKPOINTER:
            self.checkpointer_pid = 0
            if cls is ExitClass.CLEAN:  # T11: exit 0 in WAIT_CHECKPOINTER only
                self._set_state(PMState.WAIT_DEAD_END)
                self._stop_listening()
                self.signal_children(signal.SIGTERM)
            else:
                self.handle_child_crash(pid, code, procname(child.kind), child)
            return
        if cls is ExitClass.CRASH:
            self.handle_child_crash(pid, code, procname(child.kind), child)
            return
        if code != 0 and child.kind is not BackendKind.DEAD_END:
            elog.log("DEBUG2", describe_exit(procname(child.kind), pid, code))

    def _startup_exited(self, pid: int, code: int) -> None:
        self.startup_pid = 0
        if self.shutdown > ShutdownMode.NONE and code in (0, 1):  # T15
            self.startup_status = StartupStatus.NOT_RUNNING
            self._set_state(PMState.WAIT_BACKENDS)
            return
        if code == 3:  # T15, REC-8
            elog.log("LOG", "shutdown at recovery target")
            self.startup_status = StartupStatus.NOT_RUNNING
            self.shutdown = max(self.shutdown, ShutdownMode.SMART)
            self.terminate_children(signal.SIGTERM)
            self._set_state(PMState.WAIT_BACKENDS)
            return
        if self.state == PMState.STARTUP and self.startup_status != StartupStatus.SIGNALED and code != 0:
            elog.log("LOG", describe_exit("startup process", pid, code))  # CRASH-9
            elog.log("LOG", "aborting startup due to startup process failure")
            self.exit_postmaster(1)
        if code != 0:
            if self.startup_status == StartupStatus.SIGNALED:
                self.startup_status = StartupStatus.NOT_RUNNING
                if self.state == PMState.STARTUP:
                    self._set_state(PMState.WAIT_BACKENDS)
            else:
                self.startup_status = StartupStatus.CRASHED
            self.handle_child_crash(pid, code, "startup process", None)
            return
        # A RECOVERY_STARTED the startup process sent before exiting may still be pending when
        # its exit is handled (child exits are handled before pmsignals in a loop pass): take T2
        # first, in the order the events happened, so the state sequence shows the recovery.
        if self.state == PMState.STARTUP and self.seg.s.pmsignal_flags[PMSignalReason.RECOVERY_STARTED]:  # type: ignore[union-attr]
            self.process_pmsignal()
        # T4: startup succeeded, commence normal operations
        self.startup_status = StartupStatus.NOT_RUNNING
        self.fatal_error = False
        self.abort_start = None
        self._set_state(PMState.RUN)
        self.conns_allowed = True
        if not self.checkpointer_pid:
            self._start_checkpointer()
        # reaper: "workers may be scheduled to start now", then "really open for business": the
        # RecoveryFinished workers are forked (at PM_RUN) before `ready` is logged
        self._maybe_start_bgworkers()
        self.stats.ready(time.time())
        elog.event(events.READY, "LOG", "database system is ready to accept connections", read_only=False)
        datadir.set_pidfile_status(self.datadir, PidfileStatus.READY)

    def handle_child_crash(self, pid: int, code: int, name: str, child: PMChild | None) -> None:
        """HandleChildCrash (CRASH-4): only the first crash logs and signals."""
        if self.fatal_error or self.shutdown == ShutdownMode.IMMEDIATE:
            return
        detail = None
        if child is not None and child.slot >= 0:
            q = self.seg.s.procs[child.slot].query.decode("utf-8", "replace")  # type: ignore[union-attr]
            if q and child.kind is BackendKind.BACKEND:
                detail = f"Failed process was running: {q}"
        elog.event(events.CRASH, "LOG", describe_exit(name, pid, code), detail=detail,
                   kind=child.kind.value if child else "untracked", child_pid=pid)  # fmt: skip
        elog.log("LOG", "terminating any other active server processes")
        self.handle_fatal_error(QuitReason.FOR_CRASH, consider_sigabrt=True)

    def handle_fatal_error(self, reason: QuitReason, *, consider_sigabrt: bool) -> None:
        self.seg.s.quit_reason = reason  # type: ignore[union-attr]
        sig = signal.SIGABRT if consider_sigabrt and self.guc.get("send_abort_for_crash") else signal.SIGQUIT
        self.terminate_children(sig)
        self.fatal_error = True
        st = self.state
        if st in (PMState.RECOVERY, PMState.HOT_STANDBY, PMState.RUN, PMState.STOP_BACKENDS):
            self._set_state(PMState.WAIT_BACKENDS)  # T14
        elif st in (PMState.WAIT_XLOG_SHUTDOWN, PMState.WAIT_XLOG_ARCHIVAL, PMState.WAIT_CHECKPOINTER):
            self._stop_listening()
            self._set_state(PMState.WAIT_DEAD_END)  # T14
        if self.abort_start is None:
            self.abort_start = time.monotonic()

    def process_pmsignal(self) -> None:
        pending.pmsignal = False
        s = self.seg.s  # type: ignore[union-attr]
        if check_pmsignal(s, PMSignalReason.RECOVERY_STARTED) and self.state == PMState.STARTUP \
                and self.shutdown == ShutdownMode.NONE:  # fmt: skip
            self.fatal_error = False  # T2
            self.abort_start = None
            if not self.guc.get("hot_standby"):
                datadir.set_pidfile_status(self.datadir, PidfileStatus.STANDBY)
            self._set_state(PMState.RECOVERY)
        if check_pmsignal(s, PMSignalReason.BEGIN_HOT_STANDBY) and self.state == PMState.RECOVERY \
                and self.shutdown == ShutdownMode.NONE:  # fmt: skip
            self.stats.ready(time.time())
            elog.event(events.READY, "LOG", "database system is ready to accept read-only connections",
                       read_only=True)  # fmt: skip
            datadir.set_pidfile_status(self.datadir, PidfileStatus.READY)
            self._set_state(PMState.HOT_STANDBY)  # T3
            self.conns_allowed = True
        if check_pmsignal(s, PMSignalReason.XLOG_IS_SHUTDOWN):
            if self.state == PMState.WAIT_XLOG_SHUTDOWN:
                self._set_state(PMState.WAIT_XLOG_ARCHIVAL)  # T9: SIGUSR2 archiver + walsenders
                self.signal_children(signal.SIGUSR2, kinds=frozenset({BackendKind.WALSENDER}))
            elif not self.fatal_error and self.shutdown != ShutdownMode.IMMEDIATE:
                elog.log("LOG", "WAL was shut down unexpectedly")  # CRASH-11
                self.handle_fatal_error(QuitReason.FOR_CRASH, consider_sigabrt=False)
        check_pmsignal(s, PMSignalReason.ADVANCE_STATE_MACHINE)
        self._refresh_walsenders()
        if check_pmsignal(s, PMSignalReason.BACKGROUND_WORKER_CHANGE):
            self._bgw_state_change()
        if check_pmsignal(s, PMSignalReason.START_WALRECEIVER):
            self.walreceiver_requested = True  # WALRCV-1
            self._maybe_start_walreceiver()
        promote = check_pmsignal(s, PMSignalReason.PROMOTE) or (Path(self.datadir) / "promote").exists()
        if promote and self.startup_pid and self.state in (PMState.STARTUP, PMState.RECOVERY, PMState.HOT_STANDBY):
            self.kill(self.startup_pid, signal.SIGUSR2)  # REC-5: the startup process unlinks the file
        self.state_machine()

    def state_machine(self) -> None:
        """PostmasterStateMachine: advance as far as the current facts allow.

        Repeated until nothing changes, because one step can enable another with no further
        event to come (a failed checkpointer fork at T7 sets FatalError in WAIT_BACKENDS with
        nothing left to reap)."""
        for _ in range(20):
            before = (self.state, self.fatal_error, self.shutdown)
            self._state_machine_pass()
            if (self.state, self.fatal_error, self.shutdown) == before:
                return

    def _state_machine_pass(self) -> None:
        from node.pmlogic import STOP_SET

        if self.state in (PMState.RUN, PMState.HOT_STANDBY) and not self.conns_allowed:
            if self.count_children(frozenset({BackendKind.BACKEND})) == 0:
                self._set_state(PMState.STOP_BACKENDS)  # SHUT-2 → T5
        if self.state == PMState.STOP_BACKENDS:
            self._bgw_forget_unstarted()  # BGW-16
            self.signal_children(signal.SIGTERM, kinds=STOP_SET)  # T6, SHUT-4
            self._set_state(PMState.WAIT_BACKENDS)
        if self.state == PMState.WAIT_BACKENDS:
            self._refresh_walsenders()
            live = self.children.kinds()
            immediate_or_crash = self.shutdown >= ShutdownMode.IMMEDIATE or self.fatal_error
            if wait_backends_done(live, immediate_or_crash):
                if immediate_or_crash:
                    self._set_state(PMState.WAIT_DEAD_END)  # T8
                    self._stop_listening()
                    self.signal_children(signal.SIGQUIT, kinds=frozenset({BackendKind.DEAD_END}))
                else:
                    if not self.checkpointer_pid:  # T7
                        self._start_checkpointer()
                    if self.checkpointer_pid:
                        self.kill(self.checkpointer_pid, signal.SIGINT)
                        self._set_state(PMState.WAIT_XLOG_SHUTDOWN)
                    else:
                        self.handle_fatal_error(QuitReason.FOR_CRASH, consider_sigabrt=False)
        if self.state == PMState.WAIT_XLOG_ARCHIVAL:
            # walsenders (and an archiver) finish here; the metrics exporter, like PostgreSQL's
            # syslogger, is not waited for: it is told to go at WAIT_DEAD_END
            others = self.children.kinds() - {BackendKind.CHECKPOINTER, BackendKind.DEAD_END, BackendKind.METRICS}
            if not others:
                self._set_state(PMState.WAIT_CHECKPOINTER)  # T10
                if self.checkpointer_pid:
                    self.kill(self.checkpointer_pid, signal.SIGUSR2)
        if self.state == PMState.WAIT_DEAD_END and not len(self.children):
            self._set_state(PMState.NO_CHILDREN)  # T12
        if self.shutdown > ShutdownMode.NONE and self.state == PMState.NO_CHILDREN:  # T13 (1), SHUT-9
            if self.fatal_error:
                elog.log("LOG", "abnormal database system shutdown")
                self.exit_postmaster(1)
            self.exit_postmaster(0)
        if self.state == PMState.NO_CHILDREN:
            if self.startup_status == StartupStatus.CRASHED:  # T13 (2), CRASH-9
                elog.log("LOG", "shutting down due to startup process failure")
                self.exit_postmaster(1)
            if not self.guc.get("restart_after_crash"):  # CRASH-8
                elog.log("LOG", 'shutting down because "restart_after_crash" is off')
                self.exit_postmaster(1)
        if self.fatal_error and self.state == PMState.NO_CHILDREN:  # T13 (3), CRASH-7
            elog.event(events.REINIT, "LOG", "all server processes terminated; reinitializing",
                       generation=self.generation + 1)  # fmt: skip
            self._remove_temp_files()
            self.walreceiver_requested = False
            self._bgw_reset_after_crash()
            self.stats.incarnation(time.time(), reinit=True)
            self._create_shmem()
            self._set_state(PMState.STARTUP)
            self._start_checkpointer()
            self._start_startup()
            self.abort_start = None
            self._resume_listening()

    def _remove_temp_files(self) -> None:
        if not self.guc.get("remove_temp_files_after_crash"):
            return
        tmp = Path(self.datadir) / "base" / "pgsql_tmp"
        if tmp.is_dir():
            for p in tmp.iterdir():
                try:
                    p.unlink()
                except OSError:
                    pass

    # -- main loop --------------------------------------------------------------------------------

    def _timeout(self) -> float:
        """DetermineSleepTime (PM-0): 0 while bgworker launches are due, else until the next
        crashed worker's restart time or the metrics exporter's restart, at most 60 s; the
        SIGKILL countdown in a crash."""
        if self.abort_start is not None and (self.shutdown >= ShutdownMode.IMMEDIATE or self.fatal_error):
            return max(0.0, self.abort_start + SIGKILL_CHILDREN_AFTER_SECS - time.monotonic())
        if self.bgw_more_due:
            return 0.0
        limit = 60.0
        if not self.metrics_pid and self.metrics_next_start > time.monotonic():
            limit = self.metrics_next_start - time.monotonic()  # the exporter's pause after a failure
        if self.bgw_next_wakeup is not None:
            return max(0.0, min(limit, self.bgw_next_wakeup - time.monotonic()))
        return limit

    def _timed_chores(self) -> None:
        now = time.monotonic()
        if (self.shutdown >= ShutdownMode.IMMEDIATE or self.fatal_error) and self.abort_start is not None \
                and now - self.abort_start >= SIGKILL_CHILDREN_AFTER_SECS:  # fmt: skip
            kill_sig = signal.SIGABRT if self.guc.get("send_abort_for_kill") else signal.SIGKILL
            elog.event(events.SIGKILL_ESCALATION, "LOG",
                       f"issuing {signal.Signals(kill_sig).name} to recalcitrant children")  # fmt: skip
            self.terminate_children(kill_sig)
            self.abort_start = None  # CRASH-5: once
        if now >= self.next_lockfile_check:
            self.next_lockfile_check = now + LOCKFILE_CHECK_SECS
            lines = datadir.read_pidfile(self.datadir)
            if not lines or lines[0].strip() != str(os.getpid()):
                elog.log("LOG", "performing immediate shutdown because data directory lock file is invalid")
                self.kill(os.getpid(), signal.SIGQUIT)

    def server_loop(self) -> None:
        while True:
            timeout = self._timeout()
            if not self.sql_preloaded and self.state in (PMState.RUN, PMState.HOT_STANDBY):
                timeout = min(timeout, IDLE_PRELOAD_AFTER_S)
            events_ = self.sel.select(timeout)
            if not events_ and not self.sql_preloaded and self.state in (PMState.RUN, PMState.HOT_STANDBY):
                self._preload_sql()
            ready_listen = []
            for key, _ in events_:
                if key.data == "wake":
                    try:
                        while os.read(self.wake_r, 4096):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                elif key.data == "listen":
                    ready_listen.append(key.fileobj)
            report_signals()
            if pending.shutdown:
                self.process_shutdown_request()
            if pending.reload:
                self.process_reload_request()
            if pending.child_exit:
                self._reap()
            if pending.pmsignal:
                self.process_pmsignal()
            injection.inject("postmaster-loop")
            for lsock in ready_listen:
                self._accept(lsock)  # type: ignore[arg-type]
            self.launch_missing()
            self._timed_chores()

    def launch_missing(self) -> None:
        """LaunchMissingBackgroundProcesses. The checkpointer is active from the start until
        shutdown begins, FatalError or not: crash recovery itself waits for its end-of-recovery
        checkpoint. (What FatalError holds back is bgworkers and connections.)"""
        if self.state in (PMState.STARTUP, PMState.RECOVERY, PMState.HOT_STANDBY, PMState.RUN) \
                and not self.checkpointer_pid:  # fmt: skip
            self._start_checkpointer()
        self._maybe_start_walreceiver()
        self._maybe_start_metrics()
        self._maybe_start_bgworkers()

    def exit_postmaster(self, code: int) -> None:
        try:
            injection.inject("postmaster-before-exit")
        except (SystemExit, elog.PGError):
            pass
        if code == 0:
            elog.log("LOG", "database system is shut down")
        elog.event(events.PM_EXIT, "DEBUG1", f"postmaster exiting with code {code}", exit_code=code)
        for path in self.socket_files:
            try:
                os.unlink(path)
            except OSError:
                pass
        datadir.remove_pidfile(self.datadir)
        sys.stdout.flush()
        self.exit(code)

    def run(self) -> None:
        g = self.guc
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        for sig, h in ((signal.SIGTERM, _on_shutdown_signal), (signal.SIGINT, _on_shutdown_signal),
                       (signal.SIGQUIT, _on_shutdown_signal), (signal.SIGHUP, _on_hup),
                       (signal.SIGCHLD, _on_chld), (signal.SIGUSR1, _on_usr1)):  # fmt: skip
            install_handler(sig, h)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        # The death pipe: we keep the write end; children watch the read end (P-9).
        death_r, self.death_w = os.pipe()
        os.set_inheritable(death_r, True)
        me.death_fd = death_r
        me.postmaster_pid = os.getpid()
        me.datadir = self.datadir
        me.guc = g
        me.kind = BackendKind.POSTMASTER
        me.pid = os.getpid()
        me.locks = LWLocks(os.path.join(self.datadir, "global", "pgbed_lwlocks"))
        set_cluster_name(str(g.get("cluster_name")))
        set_title(f"postmaster -D {self.datadir}")
        self._load_hba(at_start=True)
        (Path(self.datadir) / "promote").unlink(missing_ok=True)  # REC-6
        self._open_listen_sockets()
        first = [x.strip() for x in str(g.get("unix_socket_directories")).split(",") if x.strip()]
        la = [x.strip() for x in str(g.get("listen_addresses")).split(",") if x.strip()]
        datadir.create_pidfile(self.datadir, port=int(g.get("port")), socket_dir=first[0] if first else "",
                               listen_addr=la[0] if la else "", start_time=self.start_time)  # fmt: skip
        from node import bgwlist, bgworker

        bgworker.load_preload_libraries(g)
        self.bgworkers = [bgwlist.RegisteredWorker(w, i) for i, w in enumerate(bgworker.STATIC_WORKERS)]
        self._create_shmem()
        bgworker.mark_shmem_initialized()
        cf = datadir.read_control(self.datadir)
        elog.event(events.PM_START, "DEBUG1", "postmaster started", port=int(g.get("port")),
                   data_directory=str(self.datadir), system_identifier=str(cf.system_identifier))  # fmt: skip
        injection.inject("postmaster-start")
        self._preload_recovery()
        self.begin()
        self._preload()
        self.server_loop()

    def _preload_recovery(self) -> None:
        """What the startup process and the checkpointer need for recovery and checkpoints
        (WAL, heap, the SQL functions every heap connection registers): imported once here, before
        T1, so both children — and those of every crash reinit — inherit it instead of each
        importing it after fork."""
        import apsw  # noqa: F401

        from node import storage, wal, xlog  # noqa: F401
        from node.sql import functions  # noqa: F401

    def _preload_sql(self) -> None:
        """The SQL stack (sqlglot, APSW, node/sql) costs ~100 ms to import: imported here, once,
        the first time the postmaster has been idle for a moment in RUN or HOT_STANDBY (a hot
        standby's read-only sessions need it as much), every later backend
        inherits it at fork instead of importing it at its first statement. Not at start-up:
        that would delay the first connection by the same amount."""
        self.sql_preloaded = True
        import apsw  # noqa: F401

        from node import sqlexec, storage, wal, xlog  # noqa: F401
        from node.sql import catalog, execute, functions, translate  # noqa: F401

        gc.collect()  # idle here, so the 10-15 ms of a full collection cost nobody a connection
        _settle_heap()

    def _preload(self) -> None:
        """Import what every backend needs, once, here: children inherit it at fork instead of
        each importing it after fork. Done after forking the startup process so that it
        overlaps with recovery (no connection can be served before that ends anyway)."""
        from node import backend, hba, pgcatalog, protocol, statements, sysfuncs, sysquery  # noqa: F401

        _settle_heap()

    def begin(self) -> None:
        """T1: checkpointer first ([M]), then the startup process; then, as PostmasterMain does
        before its first loop pass, the workers whose start time already allows (PostmasterStart,
        BGW-7): not after the first event wakes the loop, which may be consistency."""
        self._set_state(PMState.STARTUP)
        self._start_checkpointer()
        self._start_startup()
        self._maybe_start_bgworkers()


def main(data_dir: str, argv_settings: list[tuple[str, str]]) -> None:
    """Postmaster entry: never returns."""
    from node import config
    from node.guc import GucError

    elog.set_process("postmaster")
    data_dir = str(Path(data_dir).resolve())
    if not (Path(data_dir) / "PG_VERSION").exists():
        elog.log("FATAL", f'"{data_dir}" is not a valid data directory',
                 detail=f'File "{data_dir}/PG_VERSION" is missing.')  # fmt: skip
        sys.exit(1)
    try:
        g = config.load_startup(data_dir, argv_settings)
    except GucError as e:
        for ln in e.log_lines or []:
            elog.log(ln.level, ln.message, sqlstate=ln.sqlstate, detail=ln.detail, hint=ln.hint)
        elog.log("FATAL", e.message, sqlstate=e.sqlstate, detail=e.detail, hint=e.hint)
        sys.exit(1)
    from node.sysfuncs import SERVER_VERSION

    g.set_internal("server_version", SERVER_VERSION)
    config.apply_logging(g, data_dir)
    try:
        cf0 = datadir.read_control(data_dir)  # LocalProcessControlFile: a bad pg_control is FATAL here
        g.set_internal("wal_segment_size", str(cf0.wal_segment_size))
    except (OSError, ValueError) as e:
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        if isinstance(e, OSError):
            msg = f'could not open file "{datadir.control_path(data_dir)}": {msg}'
        elog.log("FATAL", msg)
        sys.exit(1)
    try:
        datadir.check_pidfile(data_dir)
        interlock = datadir.take_interlock(data_dir)
    except datadir.LockFileError as e:
        elog.log("FATAL", e.message, hint=e.hint)
        sys.exit(1)
    try:
        pm = Postmaster(data_dir, g)
        pm.interlock_fd = interlock  # type: ignore[attr-defined]
        pm.run()
    except datadir.LockFileError as e:
        elog.log("FATAL", e.message, hint=e.hint)
        sys.exit(1)
    except elog.PGError as e:
        elog.log("FATAL", e.message, sqlstate=e.sqlstate, detail=e.detail, hint=e.hint)
        datadir.remove_pidfile(data_dir)
        sys.exit(1)
