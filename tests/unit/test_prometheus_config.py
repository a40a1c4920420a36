"""prometheus/: the compose stack's Prometheus configuration, recording rules and alerts.

What it checks
- `promtool check config prometheus/prometheus.yml` passes (it checks the rule files it names too),
  and the scrape targets come out with the `node` label the rules and dashboards use
  (`promtool check service-discovery`);
- `promtool check rules prometheus/rules/*.yml` and `promtool test rules
  prometheus/tests/alerts_test.yml` pass;
- every metric name a rule expression uses is in the contract, node/metricnames.py (METRICS or
  CHAOS_METRICS, with _bucket/_sum/_count for histograms and summaries), apart from the recording
  rules' own names and Prometheus's `up`;
- every alert has `for`, a severity and summary/description annotations, and test cases in
  alerts_test.yml where it fires and where it does not; at least two recording rules are tested.

The promtool tests skip when promtool is not installed (Debian's `prometheus` package has it;
.ci/run installs it).
"""

from __future__ import annotations

import glob
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.metricnames import CHAOS_METRICS, METRICS

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "prometheus"
CONFIG = PROM / "prometheus.yml"
ALERTS = PROM / "rules" / "alerts.yml"
RECORDING = PROM / "rules" / "recording.yml"
RULE_FILES = (ALERTS, RECORDING)
RULE_TESTS = PROM / "tests" / "alerts_test.yml"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")

# Series Prometheus makes itself, not exported by pgbed.
PROMETHEUS_SERIES = frozenset({"up"})
# PromQL words that look like identifiers but are not metric names (functions and aggregations
# are recognised by the parenthesis that follows them).
PROMQL_KEYWORDS = frozenset({"and", "or", "unless", "bool", "group_left", "group_right", "inf", "nan"})
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9][0-9a-z]*")
_AT = re.compile(r"@\s*[0-9.]+")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool from the repository root (relative paths as in the README)."""
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def rules(path: Path) -> list[dict[str, Any]]:
    """Every rule (recording and alerting) of a rule file, in file order."""
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [r for r in rules(ALERTS) if "alert" in r]


def recorded_names() -> set[str]:
    return {r["record"] for path in RULE_FILES for r in rules(path) if "record" in r}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords, label names, strings,
    durations or numbers)."""
    assert "__name__" not in expr, f"select metrics by name, not by __name__ matchers: {expr}"
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers (strings are gone, so no nested braces)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _LABEL_LIST.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _AT.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def contract_name(name: str) -> str | None:
    """The node/metricnames.py name a scraped series name belongs to, or None."""
    contract: dict[str, tuple[str, str, tuple[str, ...]]] = {**METRICS, **CHAOS_METRICS}
    if name in contract:
        return name
    for kind, suffixes in SUFFIXES.items():
        for suffix in suffixes:
            base = name.removesuffix(suffix)
            if base != name and contract.get(base, ("",))[0] == kind:
                return base
    return None


# ---- promtool -------------------------------------------------------------------------------


@needs_promtool
def test_promtool_check_config() -> None:
    """`promtool check config` accepts prometheus.yml and the rule files it names."""
    r = promtool("check", "config", "prometheus/prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 rule files found" in r.stdout, r.stdout


@needs_promtool
def test_scrape_targets_and_node_label() -> None:
    """The pgbed-node job scrapes primary, standby1 and standby2 on 9187 with node=<host>; the
    orchestrator job scrapes orchestrator:9188."""
    got: dict[str, list[dict[str, str]]] = {}
    for job in ("pgbed-node", "pgbed-orchestrator"):
        # static targets are there at once; promtool waits out the whole timeout regardless
        r = promtool("check", "service-discovery", "--timeout=2s", "prometheus/prometheus.yml", job)
        assert r.returncode == 0, r.stdout + r.stderr
        got[job] = [t["labels"] for t in json.loads(r.stdout)]
    nodes = {t["instance"]: t.get("node") for t in got["pgbed-node"]}
    assert nodes == {"primary:9187": "primary", "standby1:9187": "standby1", "standby2:9187": "standby2"}
    assert all(t["__metrics_path__"] == "/metrics" for t in got["pgbed-node"])
    assert [t["instance"] for t in got["pgbed-orchestrator"]] == ["orchestrator:9188"]


@needs_promtool
def test_promtool_check_rules() -> None:
    """`promtool check rules` accepts every rule file."""
    files = sorted(glob.glob("prometheus/rules/*.yml", root_dir=ROOT))
    assert files == ["prometheus/rules/alerts.yml", "prometheus/rules/recording.yml"]
    r = promtool("check", "rules", *files)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    """`promtool test rules prometheus/tests/alerts_test.yml` passes."""
    r = promtool("test", "rules", "prometheus/tests/alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout, r.stdout


# ---- metric names -----------------------------------------------------------------------------


def test_metric_name_extraction() -> None:
    """metric_names() finds the metrics of an expression and nothing else (the name check below
    relies on it)."""
    expr = """
        sum by (node, kind) (rate(pgbed_child_exits_total{kind="backend", exit_class=~"crash|.*"}[5m]))
          / on (node) group_left (role) max without (instance) (pgbed_node_role offset 1h30m)
        or label_replace(up{job="pgbed-node"} == bool 0, "reason", "pg_up", "", "")
        unless histogram_quantile(0.95, sum by (le) (rate(pgbed_chaos_recovery_seconds_bucket[15m:1m]))) > 1e3
        and pgbed:replication_lag_seconds:max > Inf
    """
    assert metric_names(expr) == {
        "pgbed_child_exits_total",
        "pgbed_node_role",
        "up",
        "pgbed_chaos_recovery_seconds_bucket",
        "pgbed:replication_lag_seconds:max",
    }


def test_contract_name_suffixes() -> None:
    """Histogram and summary series map to their contract name; other suffixed names do not."""
    assert contract_name("pgbed_chaos_recovery_seconds_bucket") == "pgbed_chaos_recovery_seconds"
    assert contract_name("pgbed_checkpoint_duration_seconds_count") == "pgbed_checkpoint_duration_seconds"
    assert contract_name("pgbed_checkpoint_duration_seconds_bucket") is None  # a summary has no buckets
    assert contract_name("pgbed_crash_restarts_total") == "pgbed_crash_restarts_total"
    assert contract_name("pgbed_crash_restarts") is None
    assert contract_name("pg_up_count") is None


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_metric_names_are_in_the_contract(path: Path) -> None:
    """Every metric name a rule expression selects is in node/metricnames.py (or is `up`, or a
    recording rule defined in prometheus/rules/)."""
    own = recorded_names()
    unknown: dict[str, list[str]] = {}
    for rule in rules(path):
        name = rule.get("alert") or rule["record"]
        used = metric_names(rule["expr"])
        assert used, f"{name}: no metric name found in {rule['expr']!r}"
        bad = sorted(n for n in used if n not in own and n not in PROMETHEUS_SERIES and contract_name(n) is None)
        if bad:
            unknown[name] = bad
    assert not unknown, f"metric names not in node/metricnames.py: {unknown}"


# ---- alerts and their tests -------------------------------------------------------------------


def test_alerts_have_for_severity_and_annotations() -> None:
    """Each alert has `for`, labels.severity (critical or warning) and summary/description."""
    alerts = alert_rules()
    assert len(alerts) >= 6
    for rule in alerts:
        name = rule["alert"]
        assert "for" in rule, name
        assert rule.get("labels", {}).get("severity") in ("critical", "warning"), name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name


def test_every_alert_has_firing_and_quiet_cases() -> None:
    """alerts_test.yml has, for every alert of alerts.yml, a case where it fires (with expected
    labels and annotations) and one where it does not, names no unknown alert, and tests at least
    two recording rules."""
    alerts = {r["alert"] for r in alert_rules()}
    firing: set[str] = set()
    quiet: set[str] = set()
    tested_records: set[str] = set()
    records = recorded_names()
    doc = load(RULE_TESTS)
    for case in doc["tests"]:
        for t in case.get("alert_rule_test", []):
            name = t["alertname"]
            assert name in alerts, f"alerts_test.yml tests an unknown alert {name}"
            expected = t.get("exp_alerts") or []
            if expected:
                assert all(e.get("exp_labels") and e.get("exp_annotations") for e in expected), name
                firing.add(name)
            else:
                quiet.add(name)
        for t in case.get("promql_expr_test", []):
            tested_records |= metric_names(t["expr"]) & records
    assert not alerts - firing, f"alerts without a case where they fire: {sorted(alerts - firing)}"
    assert not alerts - quiet, f"alerts without a case where they do not fire: {sorted(alerts - quiet)}"
    assert len(tested_records) >= 2, f"recording rules tested: {sorted(tested_records)}"
    assert {str(Path(f)) for f in doc["rule_files"]} == {"../rules/alerts.yml", "../rules/recording.yml"}
