"""fork() and child bootstrap: the only way a pgbed process comes to exist.

What it does: blocks signals around fork so no postmaster handler runs in the child; in the
child, starts a new session (setsid, so the postmaster can signal it alone and a terminal's
Ctrl-C reaches only the postmaster), restores default dispositions, closes the postmaster's
descriptors (listen sockets, its wakeup pipe, the write end of the death pipe: P-8), creates
the child's own latch, runs the kind's main and always ends in proc_exit → os._exit, even on
an unexpected exception (STYLE 3.5: code after fork ends in _exit inside a finally).

Exit codes: main's return value; SystemExit(code); FATAL → 1; PANIC → abort (crash); an
unexpected Python exception is reported as FATAL and exits 1 — a bug in one session must not
restart the cluster, just as an ERROR would not.

What it deliberately does not do: unblock signals. Each kind's main installs its handlers
first and unblocks them itself (a bgworker only in unblock_signals()).
"""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable

from node import elog
from node.proc import ChildInfo, init_child, me, proc_exit

_ALL_SIGNALS = set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP}
_title_prefix = "pgbed: "


def set_title(what: str) -> None:
    try:
        import setproctitle

        setproctitle.setproctitle(_title_prefix + what)
    except ImportError:  # the title is a convenience, never a reason to fail
        pass


def set_cluster_name(name: str) -> None:
    global _title_prefix
    _title_prefix = f"pgbed: {name}: " if name else "pgbed: "


def fork_child(info: ChildInfo, main: Callable[[], int], close_fds: list[int]) -> int:
    """Fork a child running `main`. Returns its pid in the parent; raises OSError on failure."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return pid
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
                    signal.SIGUSR2, signal.SIGCHLD, signal.SIGURG):  # fmt: skip
            signal.signal(sig, signal.SIG_DFL)
        for fd in close_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        init_child(info, set_title=set_title)
        code = main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except elog.PGError as e:
        if e.severity == "PANIC":
            elog.log("PANIC", e.message, sqlstate=e.sqlstate, detail=e.detail)
            os.abort()
        elog.log("FATAL", e.message, sqlstate=e.sqlstate, detail=e.detail, hint=e.hint)
        code = 1
    except BaseException as e:
        elog.log("FATAL", f"unexpected internal error in {me.kind.value}: {e!r}", sqlstate="XX000",
                 detail="".join(traceback.format_exc()).strip())  # fmt: skip
        code = 1
    finally:
        try:
            proc_exit(code)
        finally:
            os._exit(127)
