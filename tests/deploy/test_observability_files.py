"""The observability pack's files, checked without running it: Prometheus's own tools, and the pack's rules.

- ``promtool check config`` on ``docker/prometheus/prometheus.yml`` (with its rules),
  ``promtool check rules`` and ``promtool test rules`` (every alert fires on crafted data and
  stays quiet short of it), ``amtool check-config`` on ``docker/alertmanager/alertmanager.yml``.
- Every alert has a severity, a summary and a description, and a unit test that fires it.
- The Grafana dashboards, structurally (Grafana cannot run here): uid, title, panels with
  unique ids on the grid without overlaps, each target an expression on the provisioned data
  source.
- Every ``ctpipe_*`` name a dashboard or a rule reads is defined by the package, and every
  rule of the StatsD mapping names a metric Airflow's own registry declares; the Helm chart's
  mapping is the same file's.

Each check is a plain function, also shown to catch a planted mistake. Prometheus evaluating
all of it on live targets: ``tests/integration/test_observability.py``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..observability import (
    ALERTMANAGER_CONFIG,
    DASHBOARD_FILES,
    DASHBOARD_PROVIDERS,
    DOCKER,
    PROMETHEUS_CONFIG,
    RULE_FILES,
    RULE_TESTS,
    STATSD_MAPPING,
    alert_rules,
    dashboards,
    datasource_uid,
    local_config,
    prometheus_config,
    tool,
    with_bool,
)

ROOT = DOCKER.parent
SEVERITIES = {"critical", "warning"}


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)


def checkable_config(tmp_path: Path, config: dict) -> Path:
    """The compose config with its credential files (compose secrets) as files here, for promtool."""
    credentials = {}
    for name in ("serving_metrics_token", "mlflow_admin_password"):
        credentials[name] = tmp_path / name
        credentials[name].write_text("a-credential-for-the-check\n")
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
    local = local_config(config, jobs, credentials, alertmanager=targets)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(local))
    return path


# ---------------------------------------------------------------- Prometheus and Alertmanager


def test_the_prometheus_config_passes_promtool(tmp_path):
    promtool = tool("promtool")
    done = run(promtool, "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    done = run(promtool, "check", "config", str(checkable_config(tmp_path, prometheus_config())))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in done.stdout  # the rules were read and checked too
    planted = prometheus_config()
    planted["scrape_configs"][0]["scrape_intervall"] = "15s"
    done = run(promtool, "check", "config", str(checkable_config(tmp_path, planted)))
    assert done.returncode != 0 and "scrape_intervall" in done.stdout + done.stderr


def test_the_alert_rules_pass_promtool_and_their_unit_tests(tmp_path):
    promtool = tool("promtool")
    done = run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr
    done = run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    planted = tmp_path / "planted.yml"
    planted.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum(rate(x[5m])"}]}]})
    )
    done = run(promtool, "check", "rules", str(planted))
    assert done.returncode != 0 and "parse error" in done.stdout + done.stderr


def test_the_alertmanager_config_passes_amtool(tmp_path):
    amtool = tool("amtool")
    done = run(amtool, "check-config", str(ALERTMANAGER_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    planted = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    planted["route"]["routes"][0]["receiver"] = "ctpipe-pager"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(planted))
    done = run(amtool, "check-config", str(path))
    assert done.returncode != 0 and "ctpipe-pager" in done.stdout + done.stderr


def rule_problems(rules: list[dict[str, Any]], tested: set[str]) -> list[str]:
    """Every alert: a Ctpipe* name, a known severity, a summary and a description, and a unit test that fires it."""
    problems = []
    for rule in rules:
        name = rule["alert"]
        if not re.fullmatch(r"Ctpipe[A-Z][A-Za-z0-9]+", name):
            problems.append(f"{name}: not a Ctpipe* CamelCase name")
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity not one of {sorted(SEVERITIES)}")
        if not {"summary", "description"} <= rule.get("annotations", {}).keys():
            problems.append(f"{name}: needs a summary and a description")
        if name not in tested:
            problems.append(f"{name}: no unit test makes it fire")
    return problems


def fired_in_unit_tests() -> set[str]:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    return {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}


def test_every_alert_says_how_bad_what_and_why_and_is_unit_tested():
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules) >= 10
    assert not rule_problems(rules, fired_in_unit_tests())
    planted = copy.deepcopy(rules)
    planted[0]["labels"]["severity"] = "page"
    del planted[1]["annotations"]["description"]
    planted.append({"alert": "ctpipe_untested", "labels": {"severity": "warning"}, "annotations": {}})
    assert rule_problems(planted, fired_in_unit_tests()) == [
        f"{rules[0]['alert']}: severity not one of ['critical', 'warning']",
        f"{rules[1]['alert']}: needs a summary and a description",
        "ctpipe_untested: not a Ctpipe* CamelCase name",
        "ctpipe_untested: needs a summary and a description",
        "ctpipe_untested: no unit test makes it fire",
    ]


def test_an_alert_expression_is_read_with_bool_after_its_outermost_comparison():
    """How the live test evaluates an alert that is quiet: every series it compares, as 0 or 1."""
    assert with_bool("up == 0") == "up == bool 0"
    assert with_bool("a > 0.5 * b") == "a > bool 0.5 * b"
    assert (
        with_bool('max by (d) (x{decision=~"retrain|skip"}) == 1')
        == 'max by (d) (x{decision=~"retrain|skip"}) == bool 1'
    )
    assert with_bool('sum(rate(r{status=~"5.."}[5m])) / sum(rate(r[5m]))\n  > 0.01') == (
        'sum(rate(r{status=~"5.."}[5m])) / sum(rate(r[5m]))\n  > bool 0.01'
    )
    assert with_bool("histogram_quantile(0.99, sum by (le) (rate(b[5m]))) >= 0.25").endswith(">= bool 0.25")
    with pytest.raises(ValueError, match="no comparison"):
        with_bool('rate(x{a!="b"}[5m])')


# ---------------------------------------------------------------- Grafana


def dashboard_problems(dashboard: dict[str, Any], uid: str) -> list[str]:
    """What Grafana needs to provision a dashboard whose every panel asks the provisioned data source."""
    problems = [f"no {key}" for key in ("uid", "title") if not dashboard.get(key)]
    panels = dashboard.get("panels") or []
    if not panels:
        problems.append("no panels")
    ids = [panel.get("id") for panel in panels]
    if len(set(ids)) != len(ids) or not all(isinstance(i, int) for i in ids):
        problems.append(f"panel ids not unique integers: {ids}")
    cells: dict[tuple[int, int], Any] = {}
    for panel in panels:
        name = f"panel {panel.get('id')} ({panel.get('title')})"
        if not panel.get("title") or not panel.get("type"):
            problems.append(f"{name}: no title or type")
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in "hwxy") or grid["w"] < 1 or grid["h"] < 1:
            problems.append(f"{name}: no grid position")
            continue
        if grid["x"] + grid["w"] > 24:
            problems.append(f"{name}: wider than the grid's 24 columns")
        for cell in (
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        ):
            if cell in cells:
                problems.append(f"{name}: overlaps panel {cells[cell]}")
                break
            cells[cell] = panel.get("id")
        if panel.get("datasource", {}).get("uid") != uid:
            problems.append(f"{name}: data source is not {uid}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{name}: no targets")
        ref_ids = [t.get("refId") for t in targets]
        if len(set(ref_ids)) != len(ref_ids):
            problems.append(f"{name}: refIds not unique")
        for target in targets:
            if not (target.get("expr") or "").strip():
                problems.append(f"{name} {target.get('refId')}: no expression")
            if target.get("datasource", {}).get("uid") != uid:
                problems.append(f"{name} {target.get('refId')}: data source is not {uid}")
    return problems


def test_the_dashboards_are_provisionable_and_ask_the_provisioned_data_source():
    uid = datasource_uid()
    found = dashboards()
    assert set(found) == {"serving.json", "pipeline.json", "models.json"}
    for name, dashboard in found.items():
        assert not dashboard_problems(dashboard, uid), name
    assert len({d["uid"] for d in found.values()}) == len(found)
    planted = copy.deepcopy(found["serving.json"])
    planted["panels"][1]["id"] = planted["panels"][0]["id"]
    planted["panels"][2]["gridPos"] = dict(planted["panels"][0]["gridPos"])
    planted["panels"][3]["targets"][0]["datasource"]["uid"] = "prometheus"
    planted["panels"][4]["targets"][0]["expr"] = ""
    problems = dashboard_problems(planted, uid)
    assert len(problems) == 4 and "panel ids not unique" in problems[0], problems
    assert "overlaps panel" in problems[1] and "data source is not" in problems[2] and "no expression" in problems[3]


def test_grafana_provisioning_loads_the_dashboards_compose_mounts():
    (provider,) = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    assert all(path.parent == DOCKER / "grafana" / "dashboards" for path in DASHBOARD_FILES)


# ---------------------------------------------------------------- names


def expressions() -> list[str]:
    found = [rule["expr"] for rule in alert_rules()]
    for dashboard in dashboards().values():
        found += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return found


def undefined_names(exprs: list[str], source: str) -> set[str]:
    """``ctpipe_*`` names read by ``exprs`` that ``source`` (the package's code) never defines."""
    undefined = set()
    for name in {n for expr in exprs for n in re.findall(r"\bctpipe_[a-z0-9_]+", expr)}:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        candidates = {name, base, base.removesuffix("_total")}
        if not any(re.search(rf"[\"']{re.escape(c)}[\"']", source) for c in candidates):
            undefined.add(name)
    return undefined


def test_every_ctpipe_name_a_panel_or_rule_reads_is_defined_by_the_package():
    package = ROOT / "include" / "ctpipe"
    source = (package / "pipeline_metrics.py").read_text() + (package / "serving" / "metrics.py").read_text()
    assert not undefined_names(expressions(), source)
    assert undefined_names(["rate(ctpipe_serving_request_total[5m])", "ctpipe_ingest_bad_row_ratio"], source) == {
        "ctpipe_serving_request_total",
        "ctpipe_ingest_bad_row_ratio",
    }


def airflow_metric_names() -> set[str]:
    """Every StatsD name Airflow's metrics registry declares, its ``{variables}`` as ``*``, prefixed ``airflow.``."""
    airflow = Path(importlib.util.find_spec("airflow").submodule_search_locations[0])
    registry = yaml.safe_load((airflow / "_shared" / "observability" / "metrics" / "metrics_template.yaml").read_text())
    names = set()
    for metric in registry["metrics"]:
        for name in (metric["name"], metric.get("legacy_name", "-")):
            if name != "-":
                names.add("airflow." + re.sub(r"\{\w+\}", "*", name))
    return names


def mapping_problems(mappings: list[dict[str, Any]], declared: set[str]) -> list[str]:
    """Each rule names a metric Airflow declares and uses each part it captures; the last drops the rest."""
    problems = []
    for rule in mappings[:-1]:
        if rule["match"] not in declared:
            problems.append(f"{rule['match']}: no such metric in Airflow's registry")
        captured = {f"${i}" for i in range(1, rule["match"].count("*") + 1)}
        used = {v for v in (rule.get("labels") or {}).values() if str(v).startswith("$")}
        if captured != used:
            problems.append(f"{rule['match']}: captures {sorted(captured)} but labels use {sorted(used)}")
        if rule.get("observer_type") == "histogram" and not rule["name"].endswith("_seconds"):
            problems.append(f"{rule['match']}: a timer's name ends in _seconds")
    last = mappings[-1]
    if (last.get("match"), last.get("match_type"), last.get("action")) != (".", "regex", "drop"):
        problems.append("the last rule must drop whatever no rule named")
    return problems


def test_the_statsd_mapping_names_what_airflow_emits_and_helm_uses_the_same():
    mappings = yaml.safe_load(STATSD_MAPPING.read_text())["mappings"]
    declared = airflow_metric_names()
    assert not mapping_problems(mappings, declared)
    planted = copy.deepcopy(mappings)
    planted[3]["match"] = "airflow.ti.finnish.*.*.*"
    planted[3]["labels"].pop("state")
    planted[-1] = {"match": "airflow.scheduler_heartbeat", "name": "x"}  # nothing dropped
    assert mapping_problems(planted, declared) == [
        "airflow.ti.finnish.*.*.*: no such metric in Airflow's registry",
        "airflow.ti.finnish.*.*.*: captures ['$1', '$2', '$3'] but labels use ['$1', '$2']",
        "the last rule must drop whatever no rule named",
    ]
    values = yaml.safe_load((DOCKER / "helm" / "values.yaml").read_text())
    assert values["statsd"]["enabled"] is True
    assert json.dumps(values["statsd"]["overrideMappings"]) == json.dumps(mappings)


@pytest.mark.parametrize("name", ["ctpipe-resources.yaml", "ctpipe-monitoring.yaml"])
def test_kubernetes_finds_the_prediction_services_metrics(name):
    resources = {r["kind"]: r for r in yaml.safe_load_all((DOCKER / "helm" / name).read_text())}
    if name == "ctpipe-resources.yaml":
        annotations = resources["Deployment"]["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "8000",
            "prometheus.io/path": "/metrics",
        }
        (container,) = resources["Deployment"]["spec"]["template"]["spec"]["containers"]
        token = next(e for e in container["env"] if e["name"] == "CTPIPE_SERVING_METRICS_TOKEN")
        assert token["valueFrom"]["secretKeyRef"] == {"name": "ctpipe-serving", "key": "metrics-token"}
    else:
        monitors = list(yaml.safe_load_all((DOCKER / "helm" / name).read_text()))
        serving = next(m for m in monitors if m["metadata"]["name"] == "ctpipe-serving")
        (endpoint,) = serving["spec"]["endpoints"]
        assert endpoint["authorization"]["credentials"] == {"name": "ctpipe-serving", "key": "metrics-token"}
        assert serving["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "ctpipe-serving"}
