"""What the observability tests share: the pack's files as data, and Prometheus's tools found or refused.

Prometheus (with promtool), Alertmanager (with amtool) and the Pushgateway are Debian packages;
``make test`` installs them as root. A test that needs one fails without it under ``CI=true``,
and skips otherwise, saying what to install.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT

DOCKER = ROOT / "docker"
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((DOCKER / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = DOCKER / "prometheus" / "tests" / "rules_test.yml"
ALERTMANAGER_CONFIG = DOCKER / "alertmanager" / "alertmanager.yml"
STATSD_MAPPING = DOCKER / "statsd" / "mapping.yml"
DASHBOARD_FILES = sorted((DOCKER / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DOCKER / "grafana" / "provisioning" / "dashboards" / "ctpipe.yml"
PACKAGES = "prometheus prometheus-alertmanager prometheus-pushgateway"
# The tool, by the names Debian's packages (and upstream's archives) give it.
TOOLS = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "amtool": ("amtool",),
    "pushgateway": ("prometheus-pushgateway", "pushgateway"),
}


def tool(name: str) -> str:
    """The path of one of Prometheus's tools; missing, a failure under CI and a skip elsewhere."""
    for candidate in TOOLS[name]:
        found = shutil.which(candidate)
        if found:
            return found
    message = (
        f"{name} is missing: `make test` installs it as root; otherwise run `apt-get install {PACKAGES}` (as root)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load(PROMETHEUS_CONFIG.read_text())


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of every rule file."""
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARD_FILES}


def datasource_uid() -> str:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return source["uid"]


def local_config(
    config: dict[str, Any],
    targets: dict[str, list[str]],
    credentials: dict[str, Path],
    alertmanager: str | None,
    interval: str | None = None,
) -> dict[str, Any]:
    """The compose config for processes on this machine: each job's targets, its credential files, the rules.

    ``targets`` must name every job: a job without a target here would go untested. The
    credential files are looked up by the file name compose mounts (``serving_metrics_token``).
    """
    config = json.loads(json.dumps(config))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    if jobs != set(targets):
        raise ValueError(f"the config's jobs {sorted(jobs)} are not the ones given targets {sorted(targets)}")
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
        for section, key in (("authorization", "credentials_file"), ("basic_auth", "password_file")):
            if section in job:
                job[section][key] = str(credentials[Path(job[section][key]).name])
        if interval:
            job["scrape_interval"] = interval
    if interval:
        config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(path) for path in RULE_FILES]
    if alertmanager:
        config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    else:
        config.pop("alerting")
    return config


def with_bool(expression: str) -> str:
    """``expression`` with ``bool`` after its outermost comparison: every pair it compares, as 0 or 1.

    An alert's expression is empty while all is well; ``a > bool b`` still returns every series
    that ``a`` and ``b`` match, so a misspelt name on either side shows as an empty result.
    """
    depth, quoted, found = 0, None, None
    i = 0
    while i < len(expression):
        char = expression[i]
        if quoted:
            quoted = None if char == quoted and expression[i - 1] != "\\" else quoted
        elif char in "\"'`":
            quoted = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and expression[i : i + 2] in ("==", "!=", ">=", "<="):
            found = (i, 2)
            i += 1
        elif depth == 0 and char in "<>":
            found = (i, 1)
        i += 1
    if found is None:
        raise ValueError(f"no comparison at the top of {expression!r}")
    at, width = found
    return f"{expression[: at + width]} bool{expression[at + width :]}"
