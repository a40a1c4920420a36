"""The postmaster's state machine driven with a fake OS: no fork, no signals, no sockets.

The Postmaster takes its `fork`, `kill` and `exit` from attributes (STYLE 14), so these tests
replay event sequences — child exits with given wait statuses, PMSignal flags, shutdown
requests, timer expiry — and check every transition T1..T15 and the crash/shutdown rules
against reference/process-model.md. The same code paths run for real in tests/node.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from node import config, datadir
from node.postmaster import Postmaster, pending
from node.proc import me
from node.states import BackendKind, PMSignalReason, PMState, QuitReason, ShutdownMode, StartupStatus


class Exited(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class FakeOS:
    def __init__(self) -> None:
        self.next_pid = 1000
        self.forked: list[BackendKind] = []
        self.kills: list[tuple[int, int]] = []
        self.fail_kinds: set[BackendKind] = set()

    def fork(self, info: Any, main: Any, close_fds: Any) -> int:
        if info.kind in self.fail_kinds:
            raise OSError(11, "Resource temporarily unavailable")
        self.next_pid += 1
        self.forked.append(info.kind)
        return self.next_pid

    def kill(self, pid: int, sig: int) -> None:
        self.kills.append((pid, sig))

    def exit(self, code: int) -> None:
        raise Exited(code)

    def signals_to(self, pid: int) -> list[int]:
        return [s for p, s in self.kills if p == pid]


def exit_status(code: int) -> int:
    return code << 8


def killed(sig: int) -> int:
    return sig


@pytest.fixture
def pm(tmp_path: Path) -> tuple[Postmaster, FakeOS]:
    dd = tmp_path / "data"
    datadir.initdb(dd, wal_segsize_mb=1)
    datadir.create_pidfile(dd, port=1, socket_dir="", listen_addr="", start_time=time.time())
    g = config.new_state()
    g.startup_from_file(str(dd / "postgresql.conf"), [("log_min_messages", "fatal")])
    config.apply_logging(g, str(dd))
    p = Postmaster(str(dd), g)
    fake = FakeOS()
    p.fork, p.kill, p.exit = fake.fork, fake.kill, fake.exit
    me.postmaster_pid = 1
    me.datadir = str(dd)
    me.guc = g
    pending.shutdown = ShutdownMode.NONE
    p._create_shmem()
    p.begin()
    return p, fake


def pid_of(p: Postmaster, kind: BackendKind) -> int:
    return next(c.pid for c in p.children.values() if c.kind is kind)


def add_backend(p: Postmaster, fake: FakeOS) -> int:
    """What _backend_startup records for an accepted connection."""
    from node.pmchild import PMChild

    fake.next_pid += 1
    slot = p._assign_slot(BackendKind.BACKEND)
    assert slot is not None
    p.children.add(PMChild(fake.next_pid, BackendKind.BACKEND, slot, time.time()))
    return fake.next_pid


def reap(p: Postmaster, pid: int, status: int) -> None:
    p._child_exited(pid, status)
    p.state_machine()


def to_run(p: Postmaster) -> None:
    reap(p, p.startup_pid, exit_status(0))


def shutdown(p: Postmaster, mode: ShutdownMode) -> None:
    pending.shutdown = mode
    p.process_shutdown_request()


def test_t1_forks_checkpointer_then_startup(pm: Any) -> None:
    """T1 ([M]): checkpointer first, then the startup process; state STARTUP."""
    p, fake = pm
    assert fake.forked == [BackendKind.CHECKPOINTER, BackendKind.STARTUP]
    assert p.state == PMState.STARTUP
    assert p.startup_status == StartupStatus.RUNNING


def test_t4_startup_exit_0_runs(pm: Any) -> None:
    """T4: startup exits 0 → RUN, FatalError cleared, pidfile ready."""
    p, _ = pm
    to_run(p)
    assert p.state == PMState.RUN and not p.fatal_error
    assert datadir.read_pidfile(p.datadir)[7].strip() == "ready"  # type: ignore[index]


def test_t2_t3_recovery_and_hot_standby(pm: Any) -> None:
    """T2 needs STARTUP and no shutdown; T3 needs RECOVERY; BEGIN_HOT_STANDBY elsewhere is ignored."""
    p, _ = pm
    s = p.seg.s  # type: ignore[union-attr]
    s.pmsignal_flags[PMSignalReason.BEGIN_HOT_STANDBY] = 1
    p.process_pmsignal()
    assert p.state == PMState.STARTUP  # ignored outside RECOVERY
    s.pmsignal_flags[PMSignalReason.RECOVERY_STARTED] = 1
    p.process_pmsignal()
    assert p.state == PMState.RECOVERY
    s.pmsignal_flags[PMSignalReason.BEGIN_HOT_STANDBY] = 1
    p.process_pmsignal()
    assert p.state == PMState.HOT_STANDBY
    assert datadir.read_pidfile(p.datadir)[7].strip() == "ready"  # type: ignore[index]
    to_run(p)
    assert p.state == PMState.RUN  # T4 from HOT_STANDBY


def test_recovery_with_hot_standby_off_sets_pidfile_standby(pm: Any) -> None:
    """T2 with hot_standby=off: pidfile `standby`."""
    p, _ = pm
    p.guc.startup_from_file(str(Path(p.datadir) / "postgresql.conf"),
                            [("hot_standby", "off"), ("log_min_messages", "fatal")])
    p.seg.s.pmsignal_flags[PMSignalReason.RECOVERY_STARTED] = 1  # type: ignore[union-attr]
    p.process_pmsignal()
    assert datadir.read_pidfile(p.datadir)[7].strip() == "standby"  # type: ignore[index]


def test_backend_crash_full_cycle(pm: Any) -> None:
    """CRASH-4 → T14 → T8 → T12 → T13(3)/CRASH-7: SIGQUIT to all with reason crash, wait, reinit."""
    p, fake = pm
    to_run(p)
    b1, b2 = add_backend(p, fake), add_backend(p, fake)
    ckpt = p.checkpointer_pid
    old_gen = p.seg.s.generation  # type: ignore[union-attr]
    reap(p, b1, killed(signal.SIGKILL))
    assert p.fatal_error and p.state == PMState.WAIT_BACKENDS
    assert p.seg.s.quit_reason == QuitReason.FOR_CRASH  # type: ignore[union-attr]
    assert signal.SIGQUIT in fake.signals_to(b2) and signal.SIGQUIT in fake.signals_to(ckpt)
    reap(p, b2, exit_status(2))
    assert p.state == PMState.WAIT_BACKENDS  # the checkpointer is awaited in a crash
    forks_before = len(fake.forked)
    reap(p, ckpt, exit_status(2))
    # WAIT_DEAD_END → NO_CHILDREN → reinit in the same pass
    assert p.state == PMState.STARTUP
    assert p.seg.s.generation == old_gen + 1  # type: ignore[union-attr]
    assert fake.forked[forks_before:] == [BackendKind.CHECKPOINTER, BackendKind.STARTUP]
    assert p.fatal_error  # cleared only at T2/T4
    to_run(p)
    assert not p.fatal_error


def test_second_crash_only_bookkeeping(pm: Any) -> None:
    """CRASH-4: while FatalError is set a further crash sends nothing new."""
    p, fake = pm
    to_run(p)
    b1, b2 = add_backend(p, fake), add_backend(p, fake)
    reap(p, b1, killed(signal.SIGKILL))
    n = len(fake.kills)
    reap(p, b2, killed(signal.SIGSEGV))
    assert len(fake.kills) == n


def test_dead_man_switch_exit_0_attached(pm: Any) -> None:
    """CRASH-3: a backend reaped with exit 0 while its slot is ACTIVE is a crash."""
    p, fake = pm
    to_run(p)
    b = add_backend(p, fake)
    from node.states import ChildSlotState

    p.seg.s.child_state[p.children.get(b).slot] = ChildSlotState.ACTIVE  # type: ignore[union-attr]
    reap(p, b, exit_status(0))
    assert p.fatal_error


def test_backend_exit_1_is_not_a_crash(pm: Any) -> None:
    """CRASH-1: exit 1 of a detached backend is FATAL, not a crash."""
    p, fake = pm
    to_run(p)
    b = add_backend(p, fake)
    reap(p, b, exit_status(1))
    assert not p.fatal_error and p.state == PMState.RUN


def test_checkpointer_exit_0_in_run_is_a_crash(pm: Any) -> None:
    """CRASH-1: the checkpointer's exit 0 is clean only in WAIT_CHECKPOINTER."""
    p, _ = pm
    to_run(p)
    reap(p, p.checkpointer_pid, exit_status(0))
    assert p.fatal_error


def test_restart_after_crash_off_exits_1(pm: Any) -> None:
    """CRASH-8, T13(2)."""
    p, fake = pm
    p.guc.startup_from_file(str(Path(p.datadir) / "postgresql.conf"),
                            [("restart_after_crash", "off"), ("log_min_messages", "fatal")])
    to_run(p)
    b = add_backend(p, fake)
    ckpt = p.checkpointer_pid
    reap(p, b, killed(signal.SIGKILL))
    with pytest.raises(Exited) as ei:
        reap(p, ckpt, exit_status(2))
    assert ei.value.code == 1


def test_startup_failure_in_startup_exits_1(pm: Any) -> None:
    """CRASH-9: non-zero exit in STARTUP that we did not cause → exit 1 at once."""
    p, _ = pm
    with pytest.raises(Exited) as ei:
        reap(p, p.startup_pid, exit_status(1))
    assert ei.value.code == 1


def test_startup_crash_later_no_reinit(pm: Any) -> None:
    """CRASH-9, T13(2): a startup crash after STARTUP → crash handling, then exit 1 at NO_CHILDREN."""
    p, _ = pm
    p.seg.s.pmsignal_flags[PMSignalReason.RECOVERY_STARTED] = 1  # type: ignore[union-attr]
    p.process_pmsignal()
    ckpt = p.checkpointer_pid
    reap(p, p.startup_pid, killed(signal.SIGKILL))
    assert p.startup_status == StartupStatus.CRASHED and p.fatal_error
    with pytest.raises(Exited) as ei:
        reap(p, ckpt, exit_status(2))
    assert ei.value.code == 1


def test_startup_signaled_by_us_reinits(pm: Any) -> None:
    """CRASH-9: if the startup process died of our SIGQUIT, reinit proceeds normally."""
    p, fake = pm
    startup = p.startup_pid
    reap(p, p.checkpointer_pid, killed(signal.SIGKILL))  # crash during STARTUP: T14 leaves state
    assert p.state == PMState.STARTUP and p.startup_status == StartupStatus.SIGNALED
    reap(p, startup, exit_status(2))
    assert p.state == PMState.STARTUP and p.startup_status == StartupStatus.RUNNING  # reinitialised
    assert fake.forked.count(BackendKind.STARTUP) == 2


def test_fast_shutdown_sequence(pm: Any) -> None:
    """SHUT-3..6, T5..T12, T13(1): the whole fast shutdown with one backend."""
    p, fake = pm
    to_run(p)
    b = add_backend(p, fake)
    ckpt = p.checkpointer_pid
    shutdown(p, ShutdownMode.FAST)
    assert p.state == PMState.WAIT_BACKENDS  # T5 → STOP_BACKENDS → T6 in one pass
    assert fake.signals_to(b) == [signal.SIGTERM]
    assert signal.SIGTERM not in fake.signals_to(ckpt)  # not in the stop set (SHUT-4)
    reap(p, b, exit_status(1))
    assert p.state == PMState.WAIT_XLOG_SHUTDOWN and fake.signals_to(ckpt) == [signal.SIGINT]  # T7
    p.seg.s.pmsignal_flags[PMSignalReason.XLOG_IS_SHUTDOWN] = 1  # type: ignore[union-attr]
    p.process_pmsignal()  # T9 → T10 in the same pass (no walsenders)
    assert p.state == PMState.WAIT_CHECKPOINTER and fake.signals_to(ckpt)[-1] == signal.SIGUSR2
    with pytest.raises(Exited) as ei:
        reap(p, ckpt, exit_status(0))  # T11 → T12 → exit 0
    assert ei.value.code == 0


def test_smart_shutdown_waits_for_clients(pm: Any) -> None:
    """SHUT-2: smart in RUN only refuses connections until the last client backend exits."""
    p, fake = pm
    to_run(p)
    b = add_backend(p, fake)
    shutdown(p, ShutdownMode.SMART)
    assert p.state == PMState.RUN and not p.conns_allowed
    assert fake.signals_to(b) == []
    reap(p, b, exit_status(0))
    assert p.state == PMState.WAIT_XLOG_SHUTDOWN


def test_shutdown_requests_only_escalate(pm: Any) -> None:
    """SHUT-1: a request not stronger than the current mode is ignored."""
    p, fake = pm
    to_run(p)
    add_backend(p, fake)
    shutdown(p, ShutdownMode.FAST)
    n = len(fake.kills)
    shutdown(p, ShutdownMode.SMART)
    assert p.shutdown == ShutdownMode.FAST and len(fake.kills) == n
    shutdown(p, ShutdownMode.IMMEDIATE)
    assert p.shutdown == ShutdownMode.IMMEDIATE
    assert p.seg.s.quit_reason == QuitReason.FOR_STOP  # type: ignore[union-attr]


def test_immediate_exits_0(pm: Any) -> None:
    """SHUT-7: SIGQUIT to all, WAIT_BACKENDS, and exit 0 (FatalError stays false)."""
    p, fake = pm
    to_run(p)
    b = add_backend(p, fake)
    ckpt = p.checkpointer_pid
    shutdown(p, ShutdownMode.IMMEDIATE)
    assert p.state == PMState.WAIT_BACKENDS and p.abort_start is not None
    assert fake.signals_to(b) == [signal.SIGQUIT]
    reap(p, b, exit_status(2))
    with pytest.raises(Exited) as ei:
        reap(p, ckpt, exit_status(2))
    assert ei.value.code == 0


def test_shutdown_during_crash_is_abnormal(pm: Any) -> None:
    """SHUT-9 / F21: a shutdown request while FatalError is set → no reinit, exit 1."""
    p, fake = pm
    to_run(p)
    b1, b2 = add_backend(p, fake), add_backend(p, fake)
    ckpt = p.checkpointer_pid
    reap(p, b1, killed(signal.SIGKILL))
    shutdown(p, ShutdownMode.SMART)
    reap(p, b2, exit_status(2))
    with pytest.raises(Exited) as ei:
        reap(p, ckpt, exit_status(2))
    assert ei.value.code == 1


def test_sigkill_escalation_after_5s(pm: Any) -> None:
    """CRASH-5: 5 s after the crash the chores send SIGKILL once."""
    p, fake = pm
    to_run(p)
    b1, b2 = add_backend(p, fake), add_backend(p, fake)
    reap(p, b1, killed(signal.SIGKILL))
    p._timed_chores()
    assert signal.SIGKILL not in fake.signals_to(b2)
    p.abort_start = time.monotonic() - 5.01
    p._timed_chores()
    assert fake.signals_to(b2).count(signal.SIGKILL) == 1
    p._timed_chores()
    assert fake.signals_to(b2).count(signal.SIGKILL) == 1


def test_t15_recovery_target_exit_3(pm: Any) -> None:
    """T15 / REC-8: startup exit 3 → smart shutdown, SIGTERM all, WAIT_BACKENDS."""
    p, _ = pm
    p.seg.s.pmsignal_flags[PMSignalReason.RECOVERY_STARTED] = 1  # type: ignore[union-attr]
    p.process_pmsignal()
    reap(p, p.startup_pid, exit_status(3))
    assert p.shutdown == ShutdownMode.SMART
    assert p.state == PMState.WAIT_XLOG_SHUTDOWN  # nothing else left: straight on to the checkpoint


def test_unexpected_xlog_shutdown_is_a_crash(pm: Any) -> None:
    """CRASH-11: XLOG_IS_SHUTDOWN outside WAIT_XLOG_SHUTDOWN → HandleFatalError."""
    p, _ = pm
    to_run(p)
    p.seg.s.pmsignal_flags[PMSignalReason.XLOG_IS_SHUTDOWN] = 1  # type: ignore[union-attr]
    p.process_pmsignal()
    assert p.fatal_error and p.state == PMState.WAIT_BACKENDS


def test_checkpointer_fork_failure_at_t7(pm: Any) -> None:
    """T7: the checkpointer is restarted if missing; if that fork fails → HandleFatalError."""
    p, fake = pm
    to_run(p)
    p.children.pop(p.checkpointer_pid)
    p.checkpointer_pid = 0
    fake.fail_kinds.add(BackendKind.CHECKPOINTER)
    with pytest.raises(Exited) as ei:
        shutdown(p, ShutdownMode.FAST)
    assert ei.value.code == 1  # nothing left to wait for: abnormal shutdown at once


def test_lock_file_check_triggers_immediate_shutdown(pm: Any) -> None:
    """PM-0 timed chores: a postmaster.pid that no longer names us → SIGQUIT to ourselves."""
    p, fake = pm
    to_run(p)
    lines = datadir.read_pidfile(p.datadir)
    assert lines is not None
    lines[0] = "1"
    (Path(p.datadir) / "postmaster.pid").write_text("\n".join(lines))
    p.next_lockfile_check = 0.0
    p._timed_chores()
    import os

    assert (os.getpid(), signal.SIGQUIT) in fake.kills


def test_recovery_started_before_startup_exit_is_taken_first(pm: Any) -> None:
    """T2 then T4 even when the startup process's RECOVERY_STARTED and its exit are handled in
    the same loop pass (exit first by PM-0's order): the recovery still shows in the states."""
    p, _ = pm
    p.seg.s.pmsignal_flags[PMSignalReason.RECOVERY_STARTED] = 1  # type: ignore[union-attr]
    seen: list[PMState] = []
    orig = p._set_state
    p._set_state = lambda new: (seen.append(new), orig(new))  # type: ignore[method-assign]
    to_run(p)
    assert seen == [PMState.RECOVERY, PMState.RUN]
