"""Event names and fields of the JSON log: the contract between the node and the checkers.

What it does: names every event the node emits into the jsonlog (`log/postgresql.json` in the
data directory) and the fields each carries. The orchestrator's checkers import these names
from here; nothing else may spell them.

What it deliberately does not do: write anything (node/elog.py does) or filter. Event lines
are written to the jsonlog whatever log_min_messages says, because checkers must see every
state change; the text log on stderr still honours log_min_messages.

Every JSON line has: timestamp (PostgreSQL's `%m` form), ts (epoch seconds, float), pid,
backend_type, error_severity, message; event lines add `event` and the fields below.
"""

from __future__ import annotations

# postmaster
PM_STATE = "pm_state"  # old, new (PMState names)
PM_START = "postmaster_start"  # port, data_directory, system_identifier
PM_EXIT = "postmaster_exit"  # exit_code
SHUTDOWN_REQUEST = "shutdown_request"  # mode: smart|fast|immediate
RELOAD = "reload"  # (SIGHUP honoured)
CHILD_START = "child_start"  # kind, child_pid, child_slot
CHILD_EXIT = "child_exit"  # kind, child_pid, exit_code|None, signal|None, classification
CRASH = "crash"  # kind, child_pid (first crash only: CRASH-4)
SIGKILL_ESCALATION = "sigkill_escalation"
REINIT = "reinit"  # generation
READY = "ready"  # read_only: bool
FORK_FAILED = "fork_failed"  # kind, error
CONNECTION_REFUSED = "connection_refused"  # reason (CAC_* name), sqlstate

# every process
PROCESS_START = "process_start"  # kind
PROCESS_EXIT = "process_exit"  # kind, exit_code
SIGNAL = "signal"  # signal name, count (counted in the process, logged at a check point)
SETTING_CHANGED = "setting_changed"  # name, value
INJECTION_FIRED = "injection_fired"  # name, action, arg

# startup process
RECOVERY_STARTED = "recovery_started"  # crash: bool
CONSISTENT = "consistent"  # lsn
HOT_STANDBY = "hot_standby"
STARTUP_DONE = "startup_done"
PROMOTE = "promote"

# replication (walsender, walreceiver, startup process streaming)
WALSND_START = "walsnd_start"  # slot, application_name
WALSND_STATE = "walsnd_state"  # state (WALSND-3 name), slot
WALSND_CAUGHT_UP = "walsnd_caught_up"  # application_name
WALSND_TIMEOUT = "walsnd_timeout"
WALSND_DONE = "walsnd_done"  # lsn (WALSND-6: exit 0 after the standby confirmed)
WALRCV_STATE = "walrcv_state"  # old, new (WALRCV-2 names)
WALRCV_STREAMING = "walrcv_streaming"  # lsn, timeline
WALRCV_END = "walrcv_end"  # lsn, timeline (the primary ended the stream)
WALRCV_TIMEOUT = "walrcv_timeout"
WALRCV_REQUEST = "walrcv_request"  # lsn, timeline, state (WALRCV-1, by the startup process)
TIMELINE_SWITCH = "timeline_switch"  # old, new (recovery target timeline followed)
BACKUP_END = "backup_end"  # lsn (REC-2)
SYNCREP_CANCEL = "syncrep_cancel"  # lsn (a cancelled wait: committed locally only)

# background workers (name, type, start_time, pid, slot, generation on each)
BGW_REGISTER = "bgw_register"  # a dynamic registration adopted by the postmaster
BGW_START = "bgw_start"  # forked (BGW-9)
BGW_MAIN = "bgw_main"  # the worker's main function is about to run (in the worker)
BGW_EXIT = "bgw_exit"  # exit_code, action (unregister / restart later / crash)
BGW_FORGET = "bgw_forget"  # reason

# checkpointer
CHECKPOINT_START = "checkpoint_start"  # reason: time|immediate|shutdown|end-of-recovery
CHECKPOINT_DONE = "checkpoint_done"  # reason, duration_s
XLOG_SHUTDOWN = "xlog_shutdown"

# backends
BACKEND_FATAL = "backend_fatal"  # sqlstate
CANCEL = "cancel"  # target_pid
QUICKDIE = "quickdie"  # reason

ALL_EVENTS = frozenset(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and k != "ALL_EVENTS"
)
