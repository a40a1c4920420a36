"""Generate pgbed's Grafana dashboards (grafana/dashboards/*.json) from Python dicts.

What it does: builds four dashboards — cluster overview, background workers, replication, chaos
— as plain dicts in the shape Grafana 11 stores them (schemaVersion 39), and writes one JSON file
per dashboard with sorted keys and a 2-space indent, so a regenerated file differs from the
committed one only where a dashboard changed. Every metric name comes from node/metricnames.py,
every closed set of label values (PMState names, walreceiver states, fault kinds, chaos phases,
check results) from the module that defines it, so a renamed metric or a new state shows up as a
changed dashboard (or a build error) instead of an empty panel.

    python grafana/build.py            # regenerate grafana/dashboards/*.json
    python grafana/build.py --check    # exit 1 if a committed JSON differs from what it would write

What it deliberately does not do: talk to Grafana or Prometheus (neither needs to run; the
dashboards are checked offline by tests/unit/test_grafana_dashboards.py), depend on anything
outside the standard library and this repository (no grafanalib / grafana-foundation-sdk), or
provision anything (grafana/provisioning/ does, and compose mounts it).

NOTES

Layout: panels are placed left to right on Grafana's 24-column grid and wrap to a new row when
the next one does not fit (`Board.add`), so panels never overlap and ids follow reading order.

Queries: every node panel filters on the `node` template variable (`node=~"$node"`, "All" =
`.*`); panels about standbys seen from the primary (pg_stat_replication_*) filter on
`application_name`, which is the standby's node name. One-hot gauges (role, PMState, walreceiver
state, chaos phase) are folded into one number per node — `(max by (node) (m{state="X"} == 1) *
code) or ...` — and turned back into names by value mappings, which is what a state-timeline
needs; the codes are the position in the defining module's tuple or enum.

Faults: every dashboard carries the "Faults" annotation (a Prometheus query over
pgbed_chaos_faults_total), and Grafana draws dashboard annotations on every time-series and
state-timeline panel, so each fault shows up wherever its effects do.

Metric names: `metric_names(dashboards)` lists every metric a set of dashboards queries (as it
appears in a scrape, histogram suffixes included); the tests compare it with node/metricnames.py
and with a real scrape.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    # Run as a script, sys.path[0] is grafana/: put the checkout first, so its own node/ and
    # orchestrator/ are read rather than whichever copy of pgbed happens to be pip-installed.
    sys.path.insert(0, str(ROOT))

from node import metricnames as M  # noqa: E402
from node.bgwlist import StartTime  # noqa: E402
from node.ipc.shmem import WALRCV_STATES, WALSND_STATES  # noqa: E402
from node.pmlogic import ExitClass  # noqa: E402
from node.states import BackendKind, PMState  # noqa: E402
from orchestrator.chaos import Metrics as ChaosMetrics  # noqa: E402
from orchestrator.checker.base import INVALID, UNKNOWN  # noqa: E402
from orchestrator.faults import ALL_FAULTS  # noqa: E402
from orchestrator.history import FAIL, INFO, OK  # noqa: E402

DASHBOARD_DIR = HERE / "dashboards"
DATASOURCE_UID = "pgbed-prometheus"  # grafana/provisioning/datasources/prometheus.yaml
DS: dict[str, str] = {"type": "prometheus", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39  # Grafana 11.0
GRID_COLUMNS = 24
TAG = "pgbed"

NODE = 'node=~"$node"'  # the node template variable as a label matcher
STANDBY = 'application_name=~"$node"'  # a standby as pg_stat_replication names it
RATE = "$__rate_interval"
RUNNING = 'status="running"'
STREAMING = 'state="streaming"'
KIND_VAR = 'kind=~"$kind"'
CLIENT_BACKEND = f"backend_type={json.dumps(BackendKind.BACKEND.value)}"
REPL_BY = ", ".join((*M.REPL_LABELS, "node"))  # pg_stat_replication's labels and the primary's node

# node/metrics.py exports pgbed_node_role one-hot over these two (metricnames: role="primary|standby")
ROLES = ("primary", "standby")

GREY = "#8e8e8e"
PM_STATE_COLOURS: dict[PMState, str] = {
    PMState.INIT: GREY,
    PMState.STARTUP: "light-blue",
    PMState.RECOVERY: "blue",
    PMState.HOT_STANDBY: "light-green",
    PMState.RUN: "green",
    PMState.STOP_BACKENDS: "yellow",
    PMState.WAIT_BACKENDS: "yellow",
    PMState.WAIT_XLOG_SHUTDOWN: "orange",
    PMState.WAIT_XLOG_ARCHIVAL: "orange",
    PMState.WAIT_CHECKPOINTER: "orange",
    PMState.WAIT_DEAD_END: "dark-orange",
    PMState.NO_CHILDREN: "red",
}
WALRCV_COLOURS = {"stopped": GREY, "starting": "light-blue", "streaming": "green", "waiting": "yellow",
                  "restarting": "orange", "stopping": "dark-orange"}  # fmt: skip
WALSND_COLOURS = {"startup": "light-blue", "catchup": "yellow", "streaming": "green", "backup": "purple",
                  "stopping": "orange"}  # fmt: skip
ROLE_COLOURS = {"primary": "purple", "standby": "blue"}
# pgbed_bgworker_slots by status (metricnames: status=free|pending|running|stopped)
SLOT_COLOURS = {"free": GREY, "pending": "yellow", "running": "green", "stopped": "orange"}
PHASE_COLOURS = {"idle": GREY, "setup": "blue", "chaos": "red", "heal": "orange", "check": "yellow", "done": "green"}
# checker results and campaign verdicts: valid stays green, the others turn red/orange once counted
RESULT_ALARMS = {INVALID: "red", UNKNOWN: "orange"}
OP_COLOURS = {OK: "green", FAIL: "red", INFO: "orange"}


# -- PromQL helpers ------------------------------------------------------------------------------


def sel(metric: str, *matchers: str) -> str:
    """`metric{m1, m2}` (just `metric` without matchers)."""
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def one_hot(metric: str, label: str, values: Sequence[str], *matchers: str, by: str = "node") -> str:
    """One number per `by` group from a one-hot gauge: the position in `values` of the label
    value whose series is 1. Absent (not 0) while nothing is 1, so a node that stops answering
    leaves a gap in a state-timeline rather than a false state."""
    group = f"max by ({by})" if by else "max"
    terms = [f'({group} ({sel(metric, *matchers, f"{label}={json.dumps(v)}")} == 1) * {i})'
             for i, v in enumerate(values)]  # fmt: skip
    return " or ".join(terms)


def role_is(role: str) -> str:
    """A filter for `and on (node) (...)`: nodes whose current role is `role`."""
    return f"({sel(M.NODE_ROLE, f'role={json.dumps(role)}')} == 1)"


# The Faults annotation. increase() > 0 marks a fault of a kind injected before; the `unless ...
# offset` term marks a series born at a value above 0, which increase() cannot see (the
# orchestrator exports every kind at 0 from its start, so this is only for one that does not).
# The window spans four 5 s scrapes (prometheus/prometheus.yml); Grafana merges points closer
# than `step` into one region, so a fault shows as a region starting where it was injected.
FAULT_WINDOW = "20s"
FAULTS_EXPR = (f"sum by (kind) (increase({M.CHAOS_FAULTS}[{FAULT_WINDOW}]) > 0 "
               f"or ({M.CHAOS_FAULTS} > 0 unless {M.CHAOS_FAULTS} offset {FAULT_WINDOW}))")  # fmt: skip


# -- panels --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Q:
    """One query of a panel: a PromQL expression and its legend."""

    expr: str
    legend: str = ""
    instant: bool = False


def _targets(queries: Sequence[Q], table: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, q in enumerate(queries):
        t: dict[str, Any] = {"datasource": DS, "refId": chr(ord("A") + i), "expr": q.expr, "editorMode": "code",
                             "legendFormat": q.legend or "__auto", "range": not q.instant, "instant": q.instant}
        if table:
            t["format"] = "table"
        out.append(t)
    return out


def value_mappings(names: Mapping[int | str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Value mappings {value: (text, colour)} as Grafana stores them."""
    options = {str(v): {"text": text, "color": colour, "index": i}
               for i, (v, (text, colour)) in enumerate(names.items())}  # fmt: skip
    return [{"type": "value", "options": options}]


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    """Absolute thresholds; the first step's value is None (the base colour)."""
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def colour_by_name(colours: Mapping[str, str], regex: bool = False) -> list[dict[str, Any]]:
    """Overrides giving series (by display name, or by a regex on it) a fixed colour."""
    matcher = "byRegexp" if regex else "byName"
    return [{"matcher": {"id": matcher, "options": f".*\\b{name}$" if regex else name},
             "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}]}
            for name, colour in colours.items()]  # fmt: skip


def red_when_positive(colours: Mapping[str, str]) -> list[dict[str, Any]]:
    """Overrides for counts by name: green at 0, the given colour from 1 on (so a zero count of
    invalid results stays green)."""
    return [{"matcher": {"id": "byName", "options": name},
             "properties": [{"id": "thresholds", "value": thresholds((None, "green"), (1, colour))}]}
            for name, colour in colours.items()]  # fmt: skip


def _panel(kind: str, title: str, description: str, queries: Sequence[Q], defaults: dict[str, Any],
           options: dict[str, Any], overrides: Sequence[dict[str, Any]] = (), table: bool = False) -> dict[str, Any]:
    return {"type": kind, "title": title, "description": description, "datasource": DS,
            "targets": _targets(queries, table), "options": options,
            "fieldConfig": {"defaults": defaults, "overrides": list(overrides)}}  # fmt: skip


def timeseries(title: str, description: str, queries: Sequence[Q], unit: str = "short", *, stack: bool = False,
               steps: bool = False, bars: bool = False, overrides: Sequence[dict[str, Any]] = (),
               decimals: int | None = None) -> dict[str, Any]:
    custom = {"drawStyle": "bars" if bars else "line", "lineInterpolation": "stepAfter" if steps else "linear",
              "lineWidth": 1, "fillOpacity": 60 if bars else (30 if stack else 10), "showPoints": "never",
              "spanNulls": False, "axisSoftMin": 0,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}  # fmt: skip
    defaults: dict[str, Any] = {"unit": unit, "color": {"mode": "palette-classic"}, "custom": custom}
    if decimals is not None:
        defaults["decimals"] = decimals
    options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
               "tooltip": {"mode": "multi", "sort": "desc"}}
    return _panel("timeseries", title, description, queries, defaults, options, overrides)


def _reduce(calc: str = "lastNotNull") -> dict[str, Any]:
    return {"calcs": [calc], "fields": "", "values": False}


def stat(title: str, description: str, queries: Sequence[Q], unit: str = "short", *,
         mappings: list[dict[str, Any]] | None = None, steps: dict[str, Any] | None = None,
         overrides: Sequence[dict[str, Any]] = (), graph: bool = False, decimals: int | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "color": {"mode": "thresholds"}, "mappings": mappings or [],
                                "thresholds": steps or thresholds((None, "blue"))}
    if decimals is not None:
        defaults["decimals"] = decimals
    options = {"reduceOptions": _reduce(), "colorMode": "background", "graphMode": "area" if graph else "none",
               "justifyMode": "auto", "orientation": "auto", "textMode": "value_and_name", "wideLayout": True,
               "showPercentChange": False}  # fmt: skip
    return _panel("stat", title, description, queries, defaults, options, overrides)


def state_timeline(title: str, description: str, queries: Sequence[Q],
                   mappings: list[dict[str, Any]]) -> dict[str, Any]:
    defaults = {"color": {"mode": "thresholds"}, "thresholds": thresholds((None, GREY)), "mappings": mappings,
                "custom": {"fillOpacity": 80, "lineWidth": 0, "hideFrom": {"legend": False, "tooltip": False,
                                                                           "viz": False}}}  # fmt: skip
    options = {"mergeValues": True, "showValue": "auto", "alignValue": "left", "rowHeight": 0.85,
               "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
               "tooltip": {"mode": "single", "sort": "none"}}  # fmt: skip
    return _panel("state-timeline", title, description, queries, defaults, options)


def bargauge(title: str, description: str, queries: Sequence[Q], unit: str = "short", *,
             steps: dict[str, Any] | None = None) -> dict[str, Any]:
    defaults = {"unit": unit, "min": 0, "color": {"mode": "thresholds"},
                "thresholds": steps or thresholds((None, "blue"))}  # fmt: skip
    options = {"reduceOptions": _reduce(), "displayMode": "gradient", "orientation": "horizontal",
               "showUnfilled": True, "valueMode": "color", "namePlacement": "left", "sizing": "auto",
               "minVizHeight": 16, "minVizWidth": 8, "maxVizHeight": 300}  # fmt: skip
    return _panel("bargauge", title, description, queries, defaults, options)


def table(title: str, description: str, queries: Sequence[Q], columns: Mapping[str, str],
          unit: str = "short") -> dict[str, Any]:
    """A table of instant queries merged on their labels; `columns` renames fields (e.g.
    "Value #A" → "starts"); Time and the job/instance labels are hidden."""
    defaults = {"unit": unit, "custom": {"align": "auto", "cellOptions": {"type": "auto"}}}
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    p = _panel("table", title, description, queries, defaults, options, table=True)
    p["transformations"] = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {"Time": True, "job": True, "instance": True,
                                                         "__name__": True},
                                       "renameByName": dict(columns), "indexByName": {}}},
    ]  # fmt: skip
    return p


# -- dashboards ----------------------------------------------------------------------------------


NODE_VARIABLE: dict[str, Any] = {
    "type": "query", "name": "node", "label": "Node", "datasource": DS,
    "query": f"label_values({M.PG_UP}, node)", "definition": f"label_values({M.PG_UP}, node)",
    "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*", "regex": "",
    "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "hide": 0,
}  # fmt: skip


def _custom_variable(name: str, label: str, values: Sequence[str]) -> dict[str, Any]:
    options = [{"selected": True, "text": "All", "value": "$__all"}]
    options += [{"selected": False, "text": v, "value": v} for v in values]
    return {"type": "custom", "name": name, "label": label, "query": ",".join(values), "multi": True,
            "includeAll": True, "allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": options, "hide": 0}  # fmt: skip


FAULTS_ANNOTATION: dict[str, Any] = {
    "name": "Faults", "datasource": DS, "enable": True, "hide": False, "iconColor": "red",
    "expr": FAULTS_EXPR, "step": "5s", "titleFormat": "Fault: {{kind}}",
    "textFormat": "{{kind}} injected by the chaos orchestrator (" + M.CHAOS_FAULTS + ")",
    "tagKeys": "kind", "useValueForTime": False,
    # Newer front-ends move expr/step into `target` when they load a dashboard (the Prometheus
    # plugin's prepareAnnotation), older ones read them at the top level: both, the same query.
    "target": {"expr": FAULTS_EXPR, "interval": "5s", "refId": "Anno"},
}  # fmt: skip

BUILT_IN_ANNOTATION: dict[str, Any] = {
    "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
}  # fmt: skip


class Board:
    """One dashboard being built: panels are placed in reading order, wrapping at 24 columns."""

    def __init__(self, uid: str, title: str, description: str, tags: Sequence[str],
                 variables: Sequence[dict[str, Any]] = (NODE_VARIABLE,)) -> None:
        assert len(uid) <= 40, uid
        self.uid, self.title, self.description = uid, title, description
        self.tags = [TAG, *tags]
        self.variables = list(variables)
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = self._row_h = 0

    def row(self) -> None:
        """Start a new row of panels."""
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        assert 0 < w <= GRID_COLUMNS and h > 0
        if self._x + w > GRID_COLUMNS:
            self.row()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_h = max(self._row_h, h)
        self.panels.append(panel)

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": self.tags,
            "schemaVersion": SCHEMA_VERSION, "version": 1, "id": None, "editable": True, "graphTooltip": 1,
            "fiscalYearStartMonth": 0, "weekStart": "", "liveNow": False,
            "time": {"from": "now-30m", "to": "now"}, "timezone": "browser", "refresh": "5s",
            "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m"]},
            "annotations": {"list": [BUILT_IN_ANNOTATION, FAULTS_ANNOTATION]},
            "templating": {"list": self.variables},
            "links": [{"type": "dashboards", "title": "pgbed", "tags": [TAG], "asDropdown": False, "includeVars": True,
                       "keepTime": True, "targetBlank": False, "icon": "external link", "tooltip": "", "url": ""}],
            "panels": self.panels,
        }  # fmt: skip


# value mappings shared by several dashboards
UP_MAP = value_mappings({0: ("down", "red"), 1: ("up", "green")})
ROLE_MAP = value_mappings({i: (r, ROLE_COLOURS[r]) for i, r in enumerate(ROLES)})
PM_STATES = sorted(PMState)
PM_STATE_MAP = value_mappings({i: (s.name, PM_STATE_COLOURS[s]) for i, s in enumerate(PM_STATES)})
CONSISTENT_MAP = value_mappings({0: ("not consistent", "orange"), 1: ("consistent", "green")})
REPLICA_MAP = value_mappings({0: ("not in recovery", "purple"), 1: ("in recovery", "blue")})
WALRCV_MAP = value_mappings({i: (s, WALRCV_COLOURS[s]) for i, s in enumerate(WALRCV_STATES)})
PHASE_MAP = value_mappings({i: (p, PHASE_COLOURS[p]) for i, p in enumerate(ChaosMetrics.PHASES)})
ZERO_GOOD = thresholds((None, "green"), (1, "red"))

PM_STATE_EXPR = one_hot(M.PM_STATE, "state", [s.name for s in PM_STATES], NODE)
ROLE_EXPR = one_hot(M.NODE_ROLE, "role", ROLES, NODE)


def pm_state_panel(title: str = "Postmaster state (PMState)") -> dict[str, Any]:
    return state_timeline(title, f"The postmaster's PMState per node ({M.PM_STATE}, one-hot over state, folded "
                          "into one value per node). Green = RUN/HOT_STANDBY, blue = startup and recovery, "
                          "yellow/orange = shutdown steps, red = NO_CHILDREN (all children gone: exit or crash "
                          "reinitialisation). A gap means the exporter did not answer.",
                          [Q(PM_STATE_EXPR, "{{node}}")], PM_STATE_MAP)  # fmt: skip


def up_timeline_panel() -> dict[str, Any]:
    return state_timeline("Node up (pg_up)", f"{M.PG_UP} per node over time: 1 while the node's shared memory "
                          "answers and its postmaster lives. The series disappears (gap) while the exporter "
                          "itself cannot be scraped, e.g. during a container kill or pause.",
                          [Q(sel(M.PG_UP, NODE), "{{node}}")], UP_MAP)  # fmt: skip


def cluster() -> dict[str, Any]:
    b = Board("pgbed-cluster", "pgbed / Cluster overview",
              "Every node at a glance: role, postmaster state, WAL positions, replication lag, crashes, "
              "child processes, signals, connections, transactions and checkpoints. Red regions: chaos faults.",
              ["cluster"])  # fmt: skip
    b.add(stat("Up", f"{M.PG_UP} now, per node: up when the node's shared memory answers and its postmaster "
               "lives. No value: the node's exporter is not being scraped at all.",
               [Q(sel(M.PG_UP, NODE), "{{node}}")], mappings=UP_MAP,
               steps=thresholds((None, "red"), (1, "green"))), 6, 4)  # fmt: skip
    b.add(stat("Uptime", f"Time since the postmaster started (time() - {M.POSTMASTER_START}); a crash "
               "reinitialisation keeps the postmaster, a restart or kill9 does not.",
               [Q(f"time() - {sel(M.POSTMASTER_START, NODE)}", "{{node}}")], "s", decimals=0), 6, 4)  # fmt: skip
    b.add(stat("Timeline", f"The node's current timeline ({M.TIMELINE}); a promotion moves the new primary "
               "to the next timeline and the standbys follow it.",
               [Q(sel(M.TIMELINE, NODE), "{{node}}")], decimals=0), 6, 4)  # fmt: skip
    b.add(stat("Crash restarts (time range)", f"Crash reinitialisations in the dashboard's time range "
               f"(increase of {M.CRASH_RESTARTS}). Red when any happened: expected only after a fault.",
               [Q(f"increase({sel(M.CRASH_RESTARTS, NODE)}[$__range])", "{{node}}", instant=True)],
               steps=ZERO_GOOD, decimals=0), 6, 4)  # fmt: skip
    b.row()
    b.add(state_timeline("Role", f"Each node's role over time ({M.NODE_ROLE}, one-hot over role): primary or "
                         "standby. A failover shows as a standby turning primary.",
                         [Q(ROLE_EXPR, "{{node}}")], ROLE_MAP), 12, 6)  # fmt: skip
    b.add(pm_state_panel(), 12, 6)
    b.add(up_timeline_panel(), 12, 6)
    b.add(state_timeline("In recovery", f"{M.IS_REPLICA} per node: in recovery (a standby, or a node replaying "
                         "WAL after a crash) or not.",
                         [Q(sel(M.IS_REPLICA, NODE), "{{node}}")], REPLICA_MAP), 12, 6)  # fmt: skip
    b.add(timeseries("WAL positions", f"WAL positions as byte offsets ({M.WAL_LSN}): insert and flush on a "
                     "primary, receive and replay on a standby. Lines that stop rising while others rise are "
                     "a node falling behind.",
                     [Q(sel(M.WAL_LSN, NODE), "{{node}} {{kind}}")], "bytes"), 8, 8)  # fmt: skip
    b.add(timeseries("Replication lag (bytes)", f"Bytes between the primary's WAL position and each standby's "
                     f"replay position, as the primary sees it ({M.REPL_LSN_DIFF}), per standby.",
                     [Q(f"max by (application_name) ({sel(M.REPL_LSN_DIFF, STANDBY)})", "{{application_name}}")],
                     "bytes"), 8, 8)  # fmt: skip
    b.add(timeseries("Replication lag (seconds)", f"On each standby, seconds since the last replayed "
                     f"transaction's commit, 0 once replay has caught up with what was received "
                     f"({M.REPLICATION_LAG}).",
                     [Q(sel(M.REPLICATION_LAG, NODE), "{{node}}")], "s"), 8, 8)  # fmt: skip
    b.add(timeseries("Crash restarts", f"Crash reinitialisations per node (increase of {M.CRASH_RESTARTS} per "
                     "interval): a child crashed, every child got SIGQUIT and shared memory was rebuilt.",
                     [Q(f"increase({sel(M.CRASH_RESTARTS, NODE)}[{RATE}])", "{{node}}")], bars=True,
                     decimals=0), 8, 8)  # fmt: skip
    crash_red = colour_by_name({ExitClass.CRASH.value: "red", ExitClass.FATAL.value: "orange"}, regex=True)
    b.add(timeseries("Child exits by kind and class", f"Child exits the postmaster reaped per second "
                     f"({M.CHILD_EXITS}), by process kind and exit class (clean, fatal = exit 1, crash = "
                     "crash restart). Crash lines are red.",
                     [Q(f"sum by (node, kind, exit_class) (rate({sel(M.CHILD_EXITS, NODE)}[{RATE}]))",
                        "{{node}} {{kind}} {{exit_class}}")], "ops", overrides=crash_red), 8, 8)  # fmt: skip
    b.add(timeseries("Child starts by kind", f"Processes the postmaster forked per second ({M.CHILD_STARTS}), "
                     "by process kind.",
                     [Q(f"sum by (node, kind) (rate({sel(M.CHILD_STARTS, NODE)}[{RATE}]))", "{{node}} {{kind}}")],
                     "ops"), 8, 8)  # fmt: skip
    b.add(timeseries("Signals received by process kind", f"Signals received per second ({M.SIGNALS}), by the "
                     "receiving process kind and signal; counted in the process and flushed at its next check "
                     "point, so a burst may show up a little late.",
                     [Q(f"sum by (node, process_kind, signal) (rate({sel(M.SIGNALS, NODE)}[{RATE}]))",
                        "{{node}} {{process_kind}} {{signal}}")], "ops"), 12, 8)  # fmt: skip
    b.add(timeseries("Connections by state", f"Client backends in pg_stat_activity by state "
                     f"({M.ACTIVITY_COUNT}{{{CLIENT_BACKEND}}}), stacked per node.",
                     [Q(f"sum by (node, state) ({sel(M.ACTIVITY_COUNT, NODE, CLIENT_BACKEND)})",
                        "{{node}} {{state}}")], stack=True, decimals=0), 12, 8)  # fmt: skip
    b.add(timeseries("Commits and rollbacks", f"Transactions committed ({M.XACT_COMMIT}) and rolled back "
                     f"({M.XACT_ROLLBACK}) per second, per node, all databases.",
                     [Q(f"sum by (node) (rate({sel(M.XACT_COMMIT, NODE)}[{RATE}]))", "{{node}} commit"),
                      Q(f"sum by (node) (rate({sel(M.XACT_ROLLBACK, NODE)}[{RATE}]))", "{{node}} rollback")],
                     "ops", overrides=colour_by_name({"rollback": "orange"}, regex=True)), 8, 8)  # fmt: skip
    b.add(timeseries("Checkpoints", f"Checkpoints and restartpoints finished per interval ({M.CHECKPOINTS}), "
                     "by result (done, failed).",
                     [Q(f"sum by (node, result) (increase({sel(M.CHECKPOINTS, NODE)}[{RATE}]))",
                        "{{node}} {{result}}")], bars=True, decimals=0,
                     overrides=colour_by_name({"failed": "red"}, regex=True)), 8, 8)  # fmt: skip
    b.add(timeseries("Checkpoint duration (average)", f"Average checkpoint duration per interval "
                     f"({M.CHECKPOINT_DURATION}_sum / _count).",
                     [Q(f"sum by (node) (rate({sel(M.CHECKPOINT_DURATION + '_sum', NODE)}[{RATE}])) / "
                        f"sum by (node) (rate({sel(M.CHECKPOINT_DURATION + '_count', NODE)}[{RATE}]))", "{{node}}")],
                     "s"), 8, 8)  # fmt: skip
    b.add(timeseries("Exporter scrape duration", f"Seconds the previous scrape of each node's exporter took "
                     f"({M.SCRAPE_DURATION}); a slow exporter delays every other figure here.",
                     [Q(sel(M.SCRAPE_DURATION, NODE), "{{node}}")], "s"), 24, 6)  # fmt: skip
    return b.to_json()


def bgworkers() -> dict[str, Any]:
    b = Board("pgbed-bgworkers", "pgbed / Background workers",
              "Background worker slots, launches, crashes and restarts per worker, and the launches a start "
              "time does not allow (early starts, which must stay 0) next to when each node became consistent "
              "and ready. Red regions: chaos faults.", ["bgworkers"])  # fmt: skip
    b.add(stat("Early starts (time range)", f"Background worker launches in a PMState the worker's start time "
               f"does not allow ({M.BGW_EARLY_STARTS}), e.g. a ConsistentState worker before consistency "
               "(BGW-3). Highest value seen in the time range, so a reset by a restart does not hide one. "
               "Must stay 0 (green); red means the start-time rule was broken.",
               [Q(f"sum by (node) (max_over_time({sel(M.BGW_EARLY_STARTS, NODE)}[$__range]))", "{{node}}",
                  instant=True)], steps=ZERO_GOOD, decimals=0), 6, 5)  # fmt: skip
    b.add(stat("Running workers", f"Background worker slots whose worker runs now ({M.BGW_SLOTS}{{{RUNNING}}}).",
               [Q(f"sum by (node) ({sel(M.BGW_SLOTS, NODE, RUNNING)})", "{{node}}")],
               decimals=0), 6, 5)  # fmt: skip
    b.add(stat("Start → consistent", f"Seconds from the current incarnation's start to a consistent state "
               f"({M.START_TO_CONSISTENT}); ConsistentState workers may start only after it.",
               [Q(sel(M.START_TO_CONSISTENT, NODE), "{{node}}")], "s"), 6, 5)  # fmt: skip
    b.add(stat("Start → ready", f"Seconds from the current incarnation's start to accepting connections "
               f"({M.START_TO_READY}).",
               [Q(sel(M.START_TO_READY, NODE), "{{node}}")], "s"), 6, 5)  # fmt: skip
    b.row()
    b.add(timeseries("Slots by status", f"Background worker slots by status ({M.BGW_SLOTS}): free, pending "
                     "(registered, not launched yet), running, stopped. Stacked per node.",
                     [Q(f"sum by (node, status) ({sel(M.BGW_SLOTS, NODE)})", "{{node}} {{status}}")],
                     stack=True, steps=True, decimals=0,
                     overrides=colour_by_name(SLOT_COLOURS, regex=True)), 12, 8)  # fmt: skip
    b.add(timeseries("Early starts by worker", f"{M.BGW_EARLY_STARTS} by worker and start time "
                     f"({', '.join(t.sql_name for t in sorted(StartTime))}): every line must stay at 0. Compare "
                     "with the start → consistent and PMState panels below.",
                     [Q(f"sum by (node, worker, start_time) ({sel(M.BGW_EARLY_STARTS, NODE)})",
                        "{{node}} {{worker}} ({{start_time}})")], steps=True, decimals=0), 12, 8)  # fmt: skip
    for title, metric, what in (("Worker starts", M.BGW_STARTS, "launches"),
                                ("Worker crashes", M.BGW_CRASHES, "exits other than 0 and 1 (crashes)"),
                                ("Worker restarts", M.BGW_RESTARTS, "launches after an earlier exit")):
        b.add(timeseries(title, f"Background worker {what} per second, by worker ({metric}).",
                         [Q(f"sum by (node, worker) (rate({sel(metric, NODE)}[{RATE}]))", "{{node}} {{worker}}")],
                         "ops"), 8, 8)  # fmt: skip
    b.add(table("Totals by worker (time range)", f"Launches ({M.BGW_STARTS}), crashes ({M.BGW_CRASHES}) and "
                f"restarts ({M.BGW_RESTARTS}) per node and worker over the dashboard's time range (increase; a "
                "worker's first launch after a counter reset is not counted).",
                [Q(f"sum by (node, worker) (increase({sel(m, NODE)}[$__range]))", instant=True)
                 for m in (M.BGW_STARTS, M.BGW_CRASHES, M.BGW_RESTARTS)],
                {"Value #A": "starts", "Value #B": "crashes", "Value #C": "restarts"}), 12, 8)  # fmt: skip
    b.add(timeseries("Start → consistent / ready", f"Per node: seconds from the incarnation's start to a "
                     f"consistent state ({M.START_TO_CONSISTENT}) and to accepting connections "
                     f"({M.START_TO_READY}). A worker launched before the consistent time with start time "
                     "consistent_state is an early start.",
                     [Q(sel(M.START_TO_CONSISTENT, NODE), "{{node}} consistent"),
                      Q(sel(M.START_TO_READY, NODE), "{{node}} ready")], "s", steps=True), 12, 8)  # fmt: skip
    b.add(pm_state_panel(), 12, 6)
    b.add(state_timeline("Consistent", f"{M.CONSISTENT} per node: 1 once recovery reached a consistent state (or "
                         "the node runs normally). ConsistentState workers must not run while it is 0.",
                         [Q(sel(M.CONSISTENT, NODE), "{{node}}")], CONSISTENT_MAP), 12, 6)  # fmt: skip
    return b.to_json()


def replication() -> dict[str, Any]:
    b = Board("pgbed-replication", "pgbed / Replication",
              "Walsenders on the primary, walreceivers on the standbys, pg_stat_replication lag per standby, "
              "synchronous standbys, timelines. Red regions: chaos faults.", ["replication"])  # fmt: skip
    primary = role_is("primary")
    b.add(stat("Sync standbys", f"Standbys whose sync_state is sync or quorum, on the current primary "
               f"({M.SYNC_STANDBYS}). 0 (red) with synchronous_standby_names set means commits wait.",
               [Q(f"{sel(M.SYNC_STANDBYS, NODE)} and on (node) {primary}", "{{node}}")],
               steps=thresholds((None, "red"), (1, "green")), decimals=0), 6, 5)  # fmt: skip
    b.add(stat("Streaming walsenders", f"Walsenders in state streaming on the current primary ({M.WALSENDERS}).",
               [Q(f"sum by (node) ({sel(M.WALSENDERS, NODE, STREAMING)}) and on (node) {primary}",
                  "{{node}}")], steps=thresholds((None, "orange"), (1, "green")), decimals=0), 6, 5)  # fmt: skip
    b.add(stat("Max replay lag", f"Largest replay lag over the standbys ({M.REPL_REPLAY_LAG}, from the "
               "primary's pg_stat_replication).",
               [Q(f"max({sel(M.REPL_REPLAY_LAG, STANDBY)})", "replay lag")], "s",
               steps=thresholds((None, "green"), (1, "orange"), (10, "red"))), 6, 5)  # fmt: skip
    b.add(stat("Max LSN diff", f"Largest byte distance between the primary's WAL position and a standby's "
               f"replay position ({M.REPL_LSN_DIFF}).",
               [Q(f"max({sel(M.REPL_LSN_DIFF, STANDBY)})", "bytes behind")], "bytes",
               steps=thresholds((None, "green"), (16 * 1024 * 1024, "orange"))), 6, 5)  # fmt: skip
    b.row()
    b.add(state_timeline("Walreceiver state", f"The walreceiver's state on each standby ({M.WALRECEIVER_STATE}, "
                         f"one-hot over {', '.join(WALRCV_STATES)}), folded into one row per node; nodes whose "
                         "role is primary are left out.",
                         [Q(f"({one_hot(M.WALRECEIVER_STATE, 'state', WALRCV_STATES, NODE)}) and on (node) "
                            f"{role_is('standby')}", "{{node}}")], WALRCV_MAP), 12, 6)  # fmt: skip
    b.add(state_timeline("In recovery", f"{M.IS_REPLICA} per node (pg_is_in_recovery()).",
                         [Q(sel(M.IS_REPLICA, NODE), "{{node}}")], REPLICA_MAP), 12, 6)  # fmt: skip
    b.add(timeseries("Walsenders by state (primary)", f"Walsenders by state ({M.WALSENDERS}: "
                     f"{', '.join(WALSND_STATES)}) on the node(s) whose role is primary, stacked.",
                     [Q(f"sum by (node, state) ({sel(M.WALSENDERS, NODE)}) and on (node) {primary}",
                        "{{node}} {{state}}")], stack=True, steps=True, decimals=0,
                     overrides=colour_by_name(WALSND_COLOURS, regex=True)), 12, 8)  # fmt: skip
    b.add(timeseries("LSN diff per standby", f"Bytes between the primary's current WAL position and each "
                     f"standby's replay position ({M.REPL_LSN_DIFF}), by application_name (= the standby's "
                     "node name).",
                     [Q(f"max by (application_name) ({sel(M.REPL_LSN_DIFF, STANDBY)})", "{{application_name}}")],
                     "bytes"), 12, 8)  # fmt: skip
    b.add(timeseries("Write / flush / replay lag", f"pg_stat_replication's write_lag, flush_lag and replay_lag "
                     f"per standby ({M.REPL_WRITE_LAG}, {M.REPL_FLUSH_LAG}, {M.REPL_REPLAY_LAG}).",
                     [Q(f"max by (application_name) ({sel(m, STANDBY)})", "{{application_name}} " + what)
                      for m, what in ((M.REPL_WRITE_LAG, "write"), (M.REPL_FLUSH_LAG, "flush"),
                                      (M.REPL_REPLAY_LAG, "replay"))], "s"), 12, 8)  # fmt: skip
    b.add(timeseries("Standby replay delay", f"On each standby: seconds since the last replayed transaction's "
                     f"commit, 0 when replay has caught up with what was received ({M.REPLICATION_LAG}).",
                     [Q(f"{sel(M.REPLICATION_LAG, NODE)} and on (node) {role_is('standby')}", "{{node}}")],
                     "s"), 12, 8)  # fmt: skip
    b.add(timeseries("Timeline per node", f"Each node's current timeline ({M.TIMELINE}); after a promotion "
                     "the new primary moves to the next one and the standbys must follow.",
                     [Q(sel(M.TIMELINE, NODE), "{{node}}")], steps=True, decimals=0), 12, 8)  # fmt: skip
    b.add(timeseries("WAL receive / replay positions", f"WAL positions on each node ({M.WAL_LSN}): what "
                     "standbys received and replayed next to the primary's flush position.",
                     [Q(sel(M.WAL_LSN, NODE, 'kind=~"flush|receive|replay"'), "{{node}} {{kind}}")],
                     "bytes"), 12, 8)  # fmt: skip
    b.add(table("pg_stat_replication", f"The primary's view of each standby now: state, sync_state, client "
                f"address, bytes behind ({M.REPL_LSN_DIFF}) and replay lag ({M.REPL_REPLAY_LAG}).",
                [Q(f"max by ({REPL_BY}) ({sel(m, STANDBY)})", instant=True)
                 for m in (M.REPL_LSN_DIFF, M.REPL_REPLAY_LAG)],
                {"node": "primary", "Value #A": "bytes behind", "Value #B": "replay lag (s)"}), 24, 7)  # fmt: skip
    return b.to_json()


def chaos() -> dict[str, Any]:
    kinds = list(ALL_FAULTS)
    b = Board("pgbed-chaos", "pgbed / Chaos",
              "The orchestrator's campaigns: current phase, faults injected by kind, checker results and "
              "verdicts, seconds to recover after each heal, client operations, and the injection points armed "
              "and fired on the nodes. Red regions: chaos faults.", ["chaos"],
              [NODE_VARIABLE, _custom_variable("kind", "Fault kind", kinds)])  # fmt: skip
    b.add(state_timeline("Campaign phase", f"The running campaign's phase ({M.CHAOS_PHASE}, one-hot over "
                         f"{', '.join(ChaosMetrics.PHASES)}). Nothing while no orchestrator is scraped.",
                         [Q(one_hot(M.CHAOS_PHASE, "phase", ChaosMetrics.PHASES, by=""), "phase")],
                         PHASE_MAP), 24, 4)  # fmt: skip
    b.add(stat("Checker results", f"Checker results of the orchestrator's campaigns ({M.CHAOS_CHECKS}) by "
               "result: valid (green), unknown (orange once any), invalid (red once any: a property was violated).",
               [Q(f"sum by (result) ({M.CHAOS_CHECKS})", "{{result}}")], steps=thresholds((None, "green")),
               overrides=red_when_positive(RESULT_ALARMS), decimals=0), 8, 5)  # fmt: skip
    b.add(stat("Campaigns by verdict", f"Campaigns finished ({M.CHAOS_CAMPAIGNS}) by verdict: valid (green), "
               "unknown (orange once any), invalid (red once any).",
               [Q(f"sum by (verdict) ({M.CHAOS_CAMPAIGNS})", "{{verdict}}")], steps=thresholds((None, "green")),
               overrides=red_when_positive(RESULT_ALARMS), decimals=0), 8, 5)  # fmt: skip
    b.add(stat("Recovery (time range)", f"Seconds from a heal until every node answers again "
               f"({M.CHAOS_RECOVERY}), over the dashboard's time range: 90th percentile and average.",
               [Q(f"histogram_quantile(0.9, sum by (le) (increase({M.CHAOS_RECOVERY}_bucket[$__range])))", "p90",
                  instant=True),
                Q(f"sum(increase({M.CHAOS_RECOVERY}_sum[$__range])) / "
                  f"sum(increase({M.CHAOS_RECOVERY}_count[$__range]))", "average", instant=True)], "s",
               steps=thresholds((None, "green"), (10, "orange"), (30, "red"))), 8, 5)  # fmt: skip
    b.add(timeseries("Faults injected by kind", f"Faults injected per minute ({M.CHAOS_FAULTS}), by kind "
                     "(filtered by the Fault kind variable).",
                     [Q(f"sum by (kind) (rate({sel(M.CHAOS_FAULTS, KIND_VAR)}[{RATE}])) * 60", "{{kind}}")],
                     "opm", bars=True), 12, 8)  # fmt: skip
    b.add(bargauge("Faults by kind (total)", f"Faults injected since the orchestrator process started "
                   f"({M.CHAOS_FAULTS}; it exports every kind of orchestrator/faults.py at 0 from its start), "
                   "filtered by the Fault kind variable.",
                   [Q(f"sum by (kind) ({sel(M.CHAOS_FAULTS, KIND_VAR)})", "{{kind}}", instant=True)]),
          12, 8)  # fmt: skip
    b.add(timeseries("Recovery seconds", f"Seconds from a heal until every node answers again "
                     f"({M.CHAOS_RECOVERY}): median and 90th percentile over the last 5 minutes (histogram), and "
                     "the average (_sum / _count).",
                     [Q(f"histogram_quantile({q}, sum by (le) (rate({M.CHAOS_RECOVERY}_bucket[5m])))", f"p{p}")
                      for q, p in (("0.5", "50"), ("0.9", "90"))]
                     + [Q(f"sum(rate({M.CHAOS_RECOVERY}_sum[5m])) / sum(rate({M.CHAOS_RECOVERY}_count[5m]))",
                          "average")], "s"), 12, 8)  # fmt: skip
    b.add(timeseries("Client operations by result", f"Completed client operations per second ({M.CHAOS_OPS}) by "
                     "result: ok, fail (definitely not applied), info (outcome unknown).",
                     [Q(f"sum by (result) (rate({M.CHAOS_OPS}[{RATE}]))", "{{result}}")], "ops", stack=True,
                     overrides=colour_by_name(OP_COLOURS)), 12, 8)  # fmt: skip
    b.add(table("Checker results by checker", f"Every checker's results ({M.CHAOS_CHECKS}) by result.",
                [Q(f"sum by (checker, result) ({M.CHAOS_CHECKS})", instant=True)],
                {"Value": "count", "Value #A": "count"}), 12, 8)  # fmt: skip
    b.add(timeseries("Injection points armed", f"Injection points armed now on each node ({M.INJECTION_ARMED}); "
                     "a fault-hook fault arms one and its heal detaches it.",
                     [Q(sel(M.INJECTION_ARMED, NODE), "{{node}}")], steps=True, decimals=0), 6, 8)  # fmt: skip
    b.add(timeseries("Injection point fires", f"Times an injection point fired per second "
                     f"({M.INJECTION_FIRES}), by node and point name.",
                     [Q(f"sum by (node, name) (rate({sel(M.INJECTION_FIRES, NODE)}[{RATE}]))", "{{node}} {{name}}")],
                     "ops"), 6, 8)  # fmt: skip
    b.add(up_timeline_panel(), 12, 6)
    b.add(pm_state_panel(), 12, 6)
    return b.to_json()


def dashboards() -> dict[str, dict[str, Any]]:
    """File name → dashboard, every dashboard this script writes."""
    return {"cluster.json": cluster(), "bgworkers.json": bgworkers(), "replication.json": replication(),
            "chaos.json": chaos()}  # fmt: skip


def render(dashboard: Mapping[str, Any]) -> str:
    """A dashboard as it is committed: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- what the dashboards query -------------------------------------------------------------------


def expressions(dashboard: Mapping[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: panel targets, Prometheus annotations (top level and
    `target`), and the metric selector of `label_values(<selector>, <label>)` variables."""
    out: list[str] = []
    for p in dashboard.get("panels", []):
        out += [t["expr"] for t in p.get("targets", []) if t.get("expr")]
        for sub in p.get("panels", []):  # collapsed rows
            out += [t["expr"] for t in sub.get("targets", []) if t.get("expr")]
    for a in dashboard.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append(a["expr"])
        if a.get("target", {}).get("expr"):
            out.append(a["target"]["expr"])
    for v in dashboard.get("templating", {}).get("list", []):
        query = v.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query
        m = re.fullmatch(r"\s*label_values\((.+),\s*\w+\s*\)\s*", query or "") if v.get("type") == "query" else None
        if m:
            out.append(m.group(1))
    return out


# Words in PromQL that are not metric names: binary/set operators and modifiers, aggregation
# operators (whether followed by `(` or by a by/without clause), literals.
PROMQL_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "atan2", "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio", "inf", "nan",
})  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"((?:[^"\\]|\\.)*)"')
_COMMENT = re.compile(r"#[^\n]*")
_BRACES = re.compile(r"\{[^{}]*\}")  # label matchers (strings already removed)
_BRACKETS = re.compile(r"\[[^\[\]]*\]")  # ranges and subqueries
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_TOKEN = re.compile(r"\$\{[^}]*\}|\$\w+|\d[\w.]*|\.\d[\w.]*|(?P<name>[A-Za-z_:][\w:]*)(?P<call>\s*\()?")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions (followed by
    `(`), keywords, aggregation operators, label names (inside `{...}` or by/without/on/ignoring/
    group_left/group_right lists), durations, numbers or template variables. `{__name__="x"}`
    counts as x. Not a parser: it relies on the expression being valid PromQL (promtool checks)."""
    names = set(_NAME_MATCHER.findall(expr))
    text = _COMMENT.sub(" ", _STRING.sub('""', expr))
    for pattern in (_BRACES, _BRACKETS, _LABEL_LIST):
        while True:  # innermost first, so nesting (subqueries in ranges, none in PromQL braces) cannot fool us
            stripped = pattern.sub(" ", text)
            if stripped == text:
                break
            text = stripped
    for m in _TOKEN.finditer(text):
        name = m.group("name")
        if name and not m.group("call") and name.lower() not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def metric_names(dashboards: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every metric name the dashboards query, spelled as in a scrape (histogram `_bucket`/`_sum`/
    `_count` series included)."""
    return {n for d in dashboards for e in expressions(d) for n in promql_metric_names(e)}


# -- command line --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if a JSON file in the directory differs from what would be "
                         "generated, is missing, or is not generated by this script")  # fmt: skip
    ap.add_argument("--dir", type=Path, default=DASHBOARD_DIR,
                    help=f"where the JSON files live (default {DASHBOARD_DIR})")  # fmt: skip
    args = ap.parse_args(argv)
    wanted = {name: render(d) for name, d in dashboards().items()}
    present = {p.name for p in args.dir.glob("*.json")} if args.dir.is_dir() else set()
    if args.check:
        bad = [f"{name}: missing" for name in sorted(wanted.keys() - present)]
        bad += [f"{name}: differs from what grafana/build.py generates" for name in sorted(wanted.keys() & present)
                if (args.dir / name).read_text(encoding="utf-8") != wanted[name]]  # fmt: skip
        bad += [f"{name}: not generated by grafana/build.py (stale?)" for name in sorted(present - wanted.keys())]
        for line in bad:
            print(f"{args.dir / line}", file=sys.stderr)
        if bad:
            print("run `python grafana/build.py` and commit the result", file=sys.stderr)
            return 1
        print(f"{len(wanted)} dashboards up to date in {args.dir}")
        return 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, text in wanted.items():
        path = args.dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    for name in sorted(present - wanted.keys()):
        print(f"warning: {args.dir / name} is not generated by grafana/build.py; remove it if it is stale",
              file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
