"""grafana/: the provisioning files and the generated dashboards, validated offline (Grafana cannot
run here).

What it checks
- `python grafana/build.py --check` passes: the committed JSON is what build.py generates (and
  --check does fail on a changed, missing or stray file);
- JSON shape: uids present, unique and at most 40 characters; titles unique; schemaVersion 39;
  panel ids unique per dashboard; every gridPos has h, w, x, y inside the 24 columns and no two
  panels overlap; every panel has a title and a description; every panel, target and variable
  datasource is the provisioned Prometheus uid; every target has a refId unique in its panel and
  a non-empty expr; every template variable an expression uses is defined; the `node` variable is
  label_values(pg_up, node), multi and includeAll;
- every dashboard has the "Faults" annotation (Prometheus, over pgbed_chaos_faults_total, titled
  by `kind`), so faults show on every time-series panel;
- provisioning: one default Prometheus datasource with the uid the dashboards use, and a file
  provider whose path is where compose mounts grafana/dashboards;
- every PromQL expression (targets, annotations, variable selectors) parses, by
  `promtool check rules` on a generated file of recording rules (skipped without promtool);
- every metric name the dashboards use is in the contract, node/metricnames.py (METRICS or
  CHAOS_METRICS, plus _bucket/_sum/_count of histograms and summaries), and every contract metric
  is on some dashboard.

Each check is also run on a deliberately broken copy, so a check that can no longer fail shows
up as a failing test. `dashboard_metric_names()` is for the end-to-end test that compares the
names with a real scrape.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from node.metricnames import CHAOS_METRICS, METRICS

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
BUILD = GRAFANA / "build.py"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "pgbed.yaml"
COMPOSE = ROOT / "compose.yaml"
DASHBOARD_MOUNT = "/var/lib/grafana/dashboards"  # where compose mounts grafana/dashboards
PROVISIONING_MOUNT = "/etc/grafana/provisioning"

Dashboard = dict[str, Any]


def _load_build() -> ModuleType:
    """grafana/build.py as a module (grafana/ is not a package)."""
    spec = importlib.util.spec_from_file_location("pgbed_grafana_build", BUILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


build = _load_build()


def committed() -> dict[str, Dashboard]:
    """File name → the committed dashboard JSON."""
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def dashboard_metric_names() -> set[str]:
    """Every metric name the committed dashboards query, as it appears in a scrape."""
    return build.metric_names(committed().values())


# -- the checks, as functions returning what is wrong (so they can be tried on broken copies) -----


def provisioned_datasource_uids() -> set[str]:
    uids = set()
    for path in sorted(DATASOURCES.glob("*.y*ml")):
        for ds in yaml.safe_load(path.read_text(encoding="utf-8")).get("datasources", []):
            uids.add(ds["uid"])
    return uids


def _overlap(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """Whether two gridPos rectangles share any cell."""
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])  # fmt: skip


def _variables_used(expr: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in re.finditer(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", expr)} - {
        "__rate_interval", "__interval", "__range", "__interval_ms", "__range_s", "__range_ms"}  # fmt: skip


def shape_problems(dashboards: Mapping[str, Dashboard], datasource_uids: set[str]) -> list[str]:
    """What is wrong with the dashboards' JSON structure (empty: nothing)."""
    problems: list[str] = []
    uids: dict[str, str] = {}
    titles: dict[str, str] = {}
    for name, d in dashboards.items():
        uid, title = d.get("uid"), d.get("title")
        if not uid or not isinstance(uid, str) or len(uid) > 40:
            problems.append(f"{name}: uid {uid!r} missing or longer than 40 characters")
        elif uid in uids:
            problems.append(f"{name}: uid {uid!r} also used by {uids[uid]}")
        else:
            uids[uid] = name
        if not title:
            problems.append(f"{name}: no title")
        elif title in titles:
            problems.append(f"{name}: title {title!r} also used by {titles[title]}")
        else:
            titles[title] = name
        if d.get("schemaVersion") != build.SCHEMA_VERSION:
            problems.append(f"{name}: schemaVersion {d.get('schemaVersion')} (want {build.SCHEMA_VERSION})")
        variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
        for v in variables.values():
            if v.get("type") == "query" and v.get("datasource", {}).get("uid") not in datasource_uids:
                problems.append(f"{name}: variable {v.get('name')}: datasource {v.get('datasource')} not provisioned")
        ids: set[Any] = set()
        placed: list[tuple[str, Mapping[str, int]]] = []
        for p in d.get("panels", []):
            where = f"{name}: panel {p.get('id')} {p.get('title')!r}"
            if p.get("id") in ids or not isinstance(p.get("id"), int):
                problems.append(f"{where}: id missing or not unique")
            ids.add(p.get("id"))
            if not p.get("title") or not p.get("description"):
                problems.append(f"{where}: no title or no description")
            pos = p.get("gridPos", {})
            if not all(isinstance(pos.get(k), int) for k in ("h", "w", "x", "y")):
                problems.append(f"{where}: gridPos {pos} lacks one of h, w, x, y")
                continue
            if pos["x"] < 0 or pos["y"] < 0 or pos["w"] <= 0 or pos["h"] <= 0 or pos["x"] + pos["w"] > 24:
                problems.append(f"{where}: gridPos {pos} outside the 24-column grid")
            problems += [f"{where}: overlaps {other}" for other, opos in placed if _overlap(pos, opos)]
            placed.append((where, pos))
            if p.get("datasource", {}).get("uid") not in datasource_uids:
                problems.append(f"{where}: datasource {p.get('datasource')} not provisioned")
            targets = p.get("targets") or []
            if not targets:
                problems.append(f"{where}: no targets")
            refids: set[str] = set()
            for t in targets:
                what = f"{where}: target {t.get('refId')}"
                if not t.get("refId") or t["refId"] in refids:
                    problems.append(f"{where}: target refId {t.get('refId')!r} missing or not unique")
                refids.add(t.get("refId", ""))
                if not str(t.get("expr", "")).strip():
                    problems.append(f"{what} has no expr")
                if t.get("datasource", {}).get("uid") not in datasource_uids:
                    problems.append(f"{what}: datasource {t.get('datasource')} not provisioned")
                for var in _variables_used(str(t.get("expr", ""))) - variables.keys():
                    problems.append(f"{what} uses undefined variable ${var}")
        uses_node = any("$node" in e or "${node" in e for e in build.expressions(d))
        node = variables.get("node")
        if uses_node and not (node and node.get("multi") and node.get("includeAll")
                              and re.fullmatch(r"label_values\(pg_up,\s*node\)", str(node.get("query")))):  # fmt: skip
            problems.append(f"{name}: uses $node without a multi, includeAll label_values(pg_up, node) variable")
        for a in d.get("annotations", {}).get("list", []):
            if not a.get("builtIn") and a.get("datasource", {}).get("uid") not in datasource_uids:
                problems.append(f"{name}: annotation {a.get('name')!r}: datasource {a.get('datasource')} "
                                "not provisioned")  # fmt: skip
    return problems


def faults_annotation_problems(dashboards: Mapping[str, Dashboard]) -> list[str]:
    """Dashboards without a working "Faults" annotation."""
    problems = []
    for name, d in dashboards.items():
        faults = [a for a in d.get("annotations", {}).get("list", []) if a.get("name") == "Faults"]
        if len(faults) != 1:
            problems.append(f"{name}: {len(faults)} annotations named Faults (want 1)")
            continue
        a = faults[0]
        exprs = {a.get("expr"), a.get("target", {}).get("expr")}
        if not a.get("enable") or a.get("hide") or a.get("datasource", {}).get("type") != "prometheus":
            problems.append(f"{name}: Faults annotation disabled, hidden or not a Prometheus query")
        if len(exprs) != 1 or not all(e and build.promql_metric_names(e) == {build.M.CHAOS_FAULTS} for e in exprs):
            problems.append(f"{name}: Faults annotation expr {exprs} does not query {build.M.CHAOS_FAULTS} alone")
        if "{{kind}}" not in a.get("titleFormat", "") or a.get("step") != "5s" or a.get("useValueForTime"):
            problems.append(f"{name}: Faults annotation title/step/useValueForTime wrong: {a}")
    return problems


def contract_names() -> set[str]:
    """Every series name the contract allows: the names, and _bucket/_sum/_count of histograms and
    summaries."""
    names = set()
    for name, (kind, _help, _labels) in {**METRICS, **CHAOS_METRICS}.items():
        names.add(name)
        if kind in ("histogram", "summary"):
            names |= {f"{name}_sum", f"{name}_count"}
        if kind == "histogram":
            names.add(f"{name}_bucket")
    return names


def unknown_metric_names(dashboards: Iterable[Dashboard]) -> set[str]:
    return build.metric_names(dashboards) - contract_names()


def for_promtool(expr: str) -> str:
    """Grafana's variables replaced by something Prometheus parses: time ranges by 1m, any other
    `$var`/`${var}`/`${var:format}` (label matchers) by `.*`."""
    expr = re.sub(r"\$\{?__(?:rate_interval|interval|range)\}?(?!\w)", "1m", expr)
    return re.sub(r"\$\{\w+(?::\w+)?\}|\$\w+", ".*", expr)


def promtool_check(exprs: Iterable[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on one recording rule `check:expr_N` per expression."""
    rules = [{"record": f"check:expr_{i}", "expr": for_promtool(e)} for i, e in enumerate(exprs)]
    path = tmp / "dashboard_exprs.rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "grafana-dashboards", "rules": rules}]}, indent=1))  # JSON is YAML
    return subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def all_expressions(dashboards: Mapping[str, Dashboard]) -> dict[str, list[str]]:
    """Expression → where it is used (dashboard file names), in a stable order."""
    out: dict[str, list[str]] = {}
    for name, d in dashboards.items():
        for e in build.expressions(d):
            out.setdefault(e, []).append(name)
    return out


needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (apt-get install prometheus)")  # fmt: skip


# -- generated == committed -----------------------------------------------------------------------


def test_build_check_passes() -> None:
    """`python grafana/build.py --check` exits 0: the committed JSON is what build.py generates now."""
    r = subprocess.run([sys.executable, str(BUILD), "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{r.stdout}{r.stderr}"


def test_build_check_fails_on_drift(tmp_path: Path) -> None:
    """--check exits 1 when a dashboard file was edited by hand, is missing, or is not generated."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(BUILD), *args, "--dir", str(tmp_path)], capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    def check() -> subprocess.CompletedProcess[str]:
        return run("--check")

    assert run().returncode == 0  # generate into tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(build.dashboards())
    assert check().returncode == 0
    edited = tmp_path / "cluster.json"
    original = edited.read_text(encoding="utf-8")
    edited.write_text(original.replace('"pgbed-cluster"', '"pgbed-edited"', 1), encoding="utf-8")
    r = check()
    assert r.returncode == 1 and "cluster.json: differs" in r.stderr
    edited.unlink()
    r = check()
    assert r.returncode == 1 and "cluster.json: missing" in r.stderr
    edited.write_text(original, encoding="utf-8")
    (tmp_path / "old.json").write_text("{}")
    r = check()
    assert r.returncode == 1 and "old.json: not generated" in r.stderr


def test_render_is_stable() -> None:
    """Two builds give byte-identical files (sorted keys, 2-space indent, newline at the end)."""
    first = {n: build.render(d) for n, d in build.dashboards().items()}
    second = {n: build.render(d) for n, d in build.dashboards().items()}
    assert first == second
    for text in first.values():
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- JSON shape -----------------------------------------------------------------------------------


def test_dashboard_shape() -> None:
    """Every committed dashboard passes the shape checks (uids, titles, ids, gridPos, datasources,
    targets, variables)."""
    dashboards = committed()
    assert set(dashboards) == set(build.dashboards()), "run python grafana/build.py"
    assert len(dashboards) >= 4
    assert shape_problems(dashboards, provisioned_datasource_uids()) == []


def _first_panel(d: Dashboard) -> dict[str, Any]:
    return d["panels"][0]


BREAKAGES: dict[str, Callable[[dict[str, Dashboard]], None]] = {
    "uid too long": lambda ds: ds["cluster.json"].update(uid="x" * 41),
    "uid missing": lambda ds: ds["cluster.json"].pop("uid"),
    "uid duplicate": lambda ds: ds["chaos.json"].update(uid=ds["cluster.json"]["uid"]),
    "title duplicate": lambda ds: ds["chaos.json"].update(title=ds["cluster.json"]["title"]),
    "panel id duplicate": lambda ds: ds["cluster.json"]["panels"][1].update(id=ds["cluster.json"]["panels"][0]["id"]),
    "gridPos key missing": lambda ds: _first_panel(ds["cluster.json"])["gridPos"].pop("h"),
    "gridPos past 24 columns": lambda ds: _first_panel(ds["cluster.json"])["gridPos"].update(x=20, w=6),
    "panels overlap": lambda ds: ds["cluster.json"]["panels"][1]["gridPos"].update(
        _first_panel(ds["cluster.json"])["gridPos"]),
    "no description": lambda ds: _first_panel(ds["bgworkers.json"]).pop("description"),
    "panel datasource unknown": lambda ds: _first_panel(ds["chaos.json"]).update(datasource={"uid": "nope"}),
    "target datasource unknown": lambda ds: _first_panel(ds["chaos.json"])["targets"][0].update(
        datasource={"type": "prometheus", "uid": "nope"}),
    "refId missing": lambda ds: _first_panel(ds["replication.json"])["targets"][0].pop("refId"),
    "refId duplicate": lambda ds: _first_panel(ds["replication.json"])["targets"].append(
        dict(_first_panel(ds["replication.json"])["targets"][0])),
    "expr empty": lambda ds: _first_panel(ds["replication.json"])["targets"][0].update(expr=" "),
    "undefined variable": lambda ds: _first_panel(ds["cluster.json"])["targets"][0].update(expr='pg_up{x=~"$nope"}'),
    "node variable missing": lambda ds: ds["cluster.json"]["templating"].update(list=[]),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_shape_check_catches(breakage: str) -> None:
    """The shape check reports each kind of breakage on an otherwise valid copy."""
    dashboards = copy.deepcopy(committed())
    BREAKAGES[breakage](dashboards)
    assert shape_problems(dashboards, provisioned_datasource_uids()) != []


def test_faults_annotation_on_every_dashboard() -> None:
    """Every dashboard has exactly one enabled "Faults" Prometheus annotation over
    pgbed_chaos_faults_total, titled by kind, step 5s (and the check fails without it)."""
    dashboards = committed()
    assert faults_annotation_problems(dashboards) == []
    broken = copy.deepcopy(dashboards)
    broken["chaos.json"]["annotations"]["list"] = [a for a in broken["chaos.json"]["annotations"]["list"]
                                                   if a.get("name") != "Faults"]  # fmt: skip
    assert faults_annotation_problems(broken) == ["chaos.json: 0 annotations named Faults (want 1)"]


# -- provisioning ---------------------------------------------------------------------------------


def test_datasource_provisioning() -> None:
    """One default Prometheus datasource, uid as build.DATASOURCE_UID, at http://prometheus:9090 through
    the Grafana server (access proxy), with the 5 s scrape interval as timeInterval."""
    files = sorted(DATASOURCES.glob("*.y*ml"))
    assert [f.name for f in files] == ["prometheus.yaml"]
    doc = yaml.safe_load(files[0].read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus" and ds["uid"] == build.DATASOURCE_UID
    assert ds["url"] == "http://prometheus:9090" and ds["access"] == "proxy" and ds["isDefault"] is True
    assert ds["jsonData"]["timeInterval"] == "5s"


def test_dashboard_provider_path() -> None:
    """The file provider reads the directory compose mounts grafana/dashboards at, into folder pgbed."""
    doc = yaml.safe_load(PROVIDER.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["folder"] == "pgbed"
    assert provider["options"]["path"] == DASHBOARD_MOUNT
    assert not provider["options"].get("foldersFromFilesStructure")  # it would override `folder`


def test_compose_mounts_grafana() -> None:
    """compose.yaml's grafana service mounts grafana/dashboards where the provider reads them and
    grafana/provisioning where Grafana looks for provisioning."""
    services = (yaml.safe_load(COMPOSE.read_text(encoding="utf-8")) or {}).get("services") or {}
    grafana = services.get("grafana")
    if grafana is None:
        pytest.skip("compose.yaml has no grafana service yet")
    mounts = {}
    for v in grafana.get("volumes", []):
        source, target = (v.split(":")[:2] if isinstance(v, str) else (v.get("source"), v.get("target")))
        mounts[str(Path(source)).removeprefix("./")] = target
    provider_path = yaml.safe_load(PROVIDER.read_text(encoding="utf-8"))["providers"][0]["options"]["path"]
    assert mounts.get("grafana/dashboards") == provider_path, mounts
    assert mounts.get("grafana/provisioning") == PROVISIONING_MOUNT, mounts


# -- PromQL -----------------------------------------------------------------------------------------


def test_for_promtool_substitutions() -> None:
    """Grafana variables become parseable PromQL: ranges 1m, label-matcher variables `.*`."""
    assert (for_promtool('rate(x{node=~"$node", a=~"${kind}", b=~"${node:regex}"}[$__rate_interval])')
            == 'rate(x{node=~".*", a=~".*", b=~".*"}[1m])')  # fmt: skip
    assert for_promtool("increase(x[$__range]) + y[$__interval] + z[${__range}]") == (
        "increase(x[1m]) + y[1m] + z[1m]")


@needs_promtool
def test_promql_parses(tmp_path: Path) -> None:
    """Every expression of every dashboard (targets, annotations, variable selectors) parses:
    `promtool check rules` accepts one recording rule per expression."""
    exprs = all_expressions(committed())
    r = promtool_check(exprs, tmp_path)
    index = "\n".join(f"check:expr_{i} ({', '.join(sorted(set(w)))}): {e}" for i, (e, w) in enumerate(exprs.items()))
    assert r.returncode == 0, f"{r.stdout}{r.stderr}\n{index}"
    assert f"{len(exprs)} rules found" in r.stdout


@needs_promtool
def test_promql_check_catches_bad_expression(tmp_path: Path) -> None:
    """The promtool check fails on an expression that does not parse (a missing parenthesis)."""
    r = promtool_check(["pg_up", f"sum by (node) (rate({build.M.CHILD_EXITS}[$__rate_interval])"], tmp_path)
    assert r.returncode != 0 and "check:expr_1" in f"{r.stdout}{r.stderr}"


# -- metric names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (node, state) (rate(foo_total{node=~"$node", kind="a b", le="0.5"}[$__rate_interval])) '
     '/ on (node) group_left (role) bar', {"foo_total", "bar"}),
    ("histogram_quantile(0.9, sum by (le) (rate(h_seconds_bucket[5m])))", {"h_seconds_bucket"}),
    ('label_replace(vector(0), "kind", "signal", "", "") or x offset 1m > bool 1e3', {"x"}),
    ("max(y) without (instance) + topk(3, z) @ start() - count_values(\"v\", w)", {"y", "z", "w"}),
    ('a and on(node) (b{role="primary"} == 1) unless ignoring(x) c', {"a", "b", "c"}),
    ("sum(rate(m:rec[5m:1m])) * -Inf + NaN + 0x1f + .5 + 1h30m", {"m:rec"}),
    ('time() - {__name__="by_name", job="x"} # a comment naming not_a_metric', {"by_name"}),
    ("(max by (node) (pm{state=\"RUN\"} == 1) * 4) or (max (pm == 1) * 5)", {"pm"}),
    ("sum by (kind) (increase(f_total[20s]) > 0 or (f_total > 0 unless f_total offset 20s))", {"f_total"}),
])  # fmt: skip
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    """build.promql_metric_names keeps metric names and drops functions, keywords, aggregations,
    label names (in matchers and by/on lists), strings, numbers, durations and comments."""
    assert build.promql_metric_names(expr) == names


def test_metric_names_from_dashboard_parts() -> None:
    """build.metric_names reads targets, annotations and label_values() variables."""
    d = {"panels": [{"targets": [{"expr": "rate(a_total[1m])"}]}],
         "annotations": {"list": [{"expr": "changes(b_total[1m]) > 0", "target": {"expr": "c"}}]},
         "templating": {"list": [{"type": "query", "name": "v", "query": "label_values(d{x=\"1\"}, node)"},
                                 {"type": "custom", "name": "k", "query": "label_values(e, node)"}]}}  # fmt: skip
    assert build.metric_names([d]) == {"a_total", "b_total", "c", "d"}


def test_dashboard_metric_names_in_contract() -> None:
    """Every metric name the dashboards use is in node/metricnames.py (METRICS or CHAOS_METRICS,
    with _bucket/_sum/_count of histograms and summaries); an unknown name is caught."""
    assert unknown_metric_names(committed().values()) == set()
    broken = copy.deepcopy(committed())
    _first_panel(broken["cluster.json"])["targets"][0]["expr"] = "rate(pgbed_no_such_metric_total[5m]) + pg_up"
    assert unknown_metric_names(broken.values()) == {"pgbed_no_such_metric_total"}


def test_every_contract_metric_on_a_dashboard() -> None:
    """Every metric in the contract is shown somewhere (a histogram or summary through any of its
    series)."""
    used = dashboard_metric_names()
    missing = [name for name in {**METRICS, **CHAOS_METRICS}
               if not used & {name, f"{name}_sum", f"{name}_count", f"{name}_bucket"}]  # fmt: skip
    assert missing == []


def test_dashboard_metric_names_helper() -> None:
    """dashboard_metric_names() (for the end-to-end scrape test) lists node and orchestrator names."""
    names = dashboard_metric_names()
    assert {build.M.PG_UP, build.M.PM_STATE, build.M.CHAOS_FAULTS, f"{build.M.CHAOS_RECOVERY}_bucket"} <= names
    assert all(re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", n) for n in names)
