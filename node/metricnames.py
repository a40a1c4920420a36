"""Every Prometheus metric name pgbed exports, in one place: the nodes' exporter
(node/metrics.py), the orchestrator's campaign metrics (orchestrator/chaos.py), the Prometheus
rules (prometheus/) and the Grafana dashboards (grafana/) all spell names through here, and the
tests check the dashboards and rules against these constants and against a real scrape.

Naming: postgres_exporter's name where it has one for the same figure (pg_up,
pg_postmaster_start_time_seconds, pg_replication_is_replica, pg_replication_lag_seconds,
pg_stat_replication_*, pg_stat_activity_count, pg_stat_database_*), otherwise `pgbed_*`; base
units (`_seconds`, `_bytes`); counters end in `_total` (the exposition name; prometheus-client's
CounterMetricFamily is given the name without it). Node-down alerts use Prometheus's own `up`.

Each constant is the name as it appears in a scrape. METRICS maps it to (type, help, labels)
for the exporter and for the checks; label values that are closed sets (PMState names, fault
kinds, exit classes) come from the modules that define them.

What it deliberately does not do: collect anything (node/metrics.py does).
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["gauge", "counter", "summary", "histogram", "untyped"]

# -- node identity and state ---------------------------------------------------------------------
PG_UP = "pg_up"
NODE_ROLE = "pgbed_node_role"  # one-hot over role="primary|standby"
PM_STATE = "pgbed_pm_state"  # one-hot over state=<PMState name>
IS_REPLICA = "pg_replication_is_replica"  # pg_is_in_recovery()
CONSISTENT = "pgbed_consistent"
TIMELINE = "pgbed_timeline_id"
WAL_LSN = "pgbed_wal_lsn_bytes"  # kind=insert|flush|replay|receive
POSTMASTER_START = "pg_postmaster_start_time_seconds"
START_TO_CONSISTENT = "pgbed_start_to_consistent_seconds"
START_TO_READY = "pgbed_start_to_ready_seconds"

# -- process model ------------------------------------------------------------------------------
CRASH_RESTARTS = "pgbed_crash_restarts_total"
CHILD_STARTS = "pgbed_child_starts_total"  # kind
CHILD_EXITS = "pgbed_child_exits_total"  # kind, exit_class
SIGNALS = "pgbed_signals_received_total"  # process_kind, signal

# -- background workers -------------------------------------------------------------------------
BGW_SLOTS = "pgbed_bgworker_slots"  # status=free|pending|running|stopped
BGW_STARTS = "pgbed_bgworker_starts_total"  # worker
BGW_CRASHES = "pgbed_bgworker_crashes_total"  # worker
BGW_RESTARTS = "pgbed_bgworker_restarts_total"  # worker
# launches the start-time table (BGW-3, node/bgwlist.py) does not allow in the state the
# postmaster was in at the fork: always 0 unless a historic bug is put back
BGW_EARLY_STARTS = "pgbed_bgworker_early_starts_total"  # worker, start_time

# -- checkpoints, transactions, connections -------------------------------------------------------
CHECKPOINTS = "pgbed_checkpoints_total"  # result=done|failed
CHECKPOINT_DURATION = "pgbed_checkpoint_duration_seconds"  # summary: _count, _sum
XACT_COMMIT = "pg_stat_database_xact_commit_total"  # datname
XACT_ROLLBACK = "pg_stat_database_xact_rollback_total"  # datname
ACTIVITY_COUNT = "pg_stat_activity_count"  # state, backend_type

# -- replication ----------------------------------------------------------------------------------
REPL_LSN_DIFF = "pg_stat_replication_pg_wal_lsn_diff"  # bytes behind, per standby
REPL_WRITE_LAG = "pg_stat_replication_write_lag_seconds"
REPL_FLUSH_LAG = "pg_stat_replication_flush_lag_seconds"
REPL_REPLAY_LAG = "pg_stat_replication_replay_lag_seconds"
REPLICATION_LAG = "pg_replication_lag_seconds"  # on a standby
WALSENDERS = "pgbed_walsenders"  # state
WALRECEIVER_STATE = "pgbed_walreceiver_state"  # one-hot over state
SYNC_STANDBYS = "pgbed_sync_standbys"

# -- fault hooks ----------------------------------------------------------------------------------
INJECTION_ARMED = "pgbed_injection_points_armed"
INJECTION_FIRES = "pgbed_injection_point_fires_total"  # name

# -- the exporter itself ----------------------------------------------------------------------------
SCRAPE_DURATION = "pgbed_exporter_scrape_duration_seconds"

REPL_LABELS = ("application_name", "client_addr", "state", "sync_state")

METRICS: dict[str, tuple[Kind, str, tuple[str, ...]]] = {
    PG_UP: ("gauge", "1 when the node's shared memory answers and its postmaster lives", ()),
    NODE_ROLE: ("gauge", "1 for the node's current role", ("role",)),
    PM_STATE: ("gauge", "1 for the postmaster's current PMState", ("state",)),
    IS_REPLICA: ("gauge", "1 while the node is in recovery (pg_is_in_recovery())", ()),
    CONSISTENT: ("gauge", "1 once recovery reached a consistent state (or the node runs normally)", ()),
    TIMELINE: ("gauge", "The current timeline", ()),
    WAL_LSN: ("gauge", "WAL positions as byte offsets (insert and flush on a primary, receive and replay on a "
                       "standby)", ("kind",)),
    POSTMASTER_START: ("gauge", "When the postmaster started, Unix time", ()),
    START_TO_CONSISTENT: ("gauge", "Seconds from the current incarnation's start to a consistent state", ()),
    START_TO_READY: ("gauge", "Seconds from the current incarnation's start to accepting connections", ()),
    CRASH_RESTARTS: ("counter", "Crash reinitialisations since the postmaster started", ()),
    CHILD_STARTS: ("counter", "Processes the postmaster forked, by kind", ("kind",)),
    CHILD_EXITS: ("counter", "Child exits the postmaster reaped, by kind and exit class", ("kind", "exit_class")),
    SIGNALS: ("counter", "Signals received, by process kind and signal (counted in the process, flushed at its "
                         "next check point)", ("process_kind", "signal")),
    BGW_SLOTS: ("gauge", "Background worker slots by status", ("status",)),
    BGW_STARTS: ("counter", "Background worker launches, by worker name", ("worker",)),
    BGW_CRASHES: ("counter", "Background worker exits other than 0 and 1 (crashes), by worker name", ("worker",)),
    BGW_RESTARTS: ("counter", "Background worker launches after an earlier exit, by worker name", ("worker",)),
    BGW_EARLY_STARTS: ("counter", "Background worker launches in a PMState its start time does not allow (e.g. a "
                                  "ConsistentState worker before consistency)", ("worker", "start_time")),
    CHECKPOINTS: ("counter", "Checkpoints (and restartpoints) finished, by result", ("result",)),
    CHECKPOINT_DURATION: ("summary", "Checkpoint durations", ()),
    XACT_COMMIT: ("counter", "Transactions committed", ("datname",)),
    XACT_ROLLBACK: ("counter", "Transactions rolled back", ("datname",)),
    # untyped: postgres_exporter's name ends in _count, which promtool's lint reserves for
    # histograms and summaries unless the metric is untyped
    ACTIVITY_COUNT: ("untyped", "Processes in pg_stat_activity by state and backend type", ("state", "backend_type")),
    REPL_LSN_DIFF: ("gauge", "Bytes between the primary's current WAL position and the standby's replay position",
                    REPL_LABELS),
    REPL_WRITE_LAG: ("gauge", "pg_stat_replication.write_lag in seconds", REPL_LABELS),
    REPL_FLUSH_LAG: ("gauge", "pg_stat_replication.flush_lag in seconds", REPL_LABELS),
    REPL_REPLAY_LAG: ("gauge", "pg_stat_replication.replay_lag in seconds", REPL_LABELS),
    REPLICATION_LAG: ("gauge", "On a standby: seconds since the last replayed transaction's commit, 0 when replay "
                               "has caught up with what was received", ()),
    WALSENDERS: ("gauge", "Walsenders by state", ("state",)),
    WALRECEIVER_STATE: ("gauge", "1 for the walreceiver's current state", ("state",)),
    SYNC_STANDBYS: ("gauge", "Standbys whose sync_state is sync or quorum", ()),
    INJECTION_ARMED: ("gauge", "Injection points armed now", ()),
    INJECTION_FIRES: ("counter", "Times an injection point fired, by name", ("name",)),
    SCRAPE_DURATION: ("gauge", "Seconds the previous scrape of this exporter took", ()),
}  # fmt: skip

# -- the orchestrator's campaign (orchestrator/chaos.py) ---------------------------------------------
CHAOS_FAULTS = "pgbed_chaos_faults_total"  # kind (orchestrator/faults.py)
CHAOS_CHECKS = "pgbed_chaos_checks_total"  # checker, result
CHAOS_PHASE = "pgbed_chaos_phase"  # one-hot over phase
CHAOS_RECOVERY = "pgbed_chaos_recovery_seconds"  # histogram
CHAOS_OPS = "pgbed_chaos_ops_total"  # result
CHAOS_CAMPAIGNS = "pgbed_chaos_campaigns_total"  # verdict

CHAOS_METRICS: dict[str, tuple[Kind, str, tuple[str, ...]]] = {
    CHAOS_FAULTS: ("counter", "Faults injected, by kind", ("kind",)),
    CHAOS_CHECKS: ("counter", "Checker results, by checker and result", ("checker", "result")),
    CHAOS_PHASE: ("gauge", "1 for the campaign's current phase", ("phase",)),
    CHAOS_RECOVERY: ("histogram", "Seconds from a heal until every node answers again", ()),
    CHAOS_OPS: ("counter", "Completed client operations, by result", ("result",)),
    CHAOS_CAMPAIGNS: ("counter", "Campaigns finished, by verdict", ("verdict",)),
}
