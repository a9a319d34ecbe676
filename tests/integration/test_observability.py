"""The observability pack run for real: Prometheus scrapes every exporter, and every panel and alert gets series.

Started here, each on 127.0.0.1 and a free port (Feast's metrics server excepted: port 8000,
Feast's fixed choice), and stopped at the end:

* the prediction service (``python -m ctpipe.serving``) on a copy of the session's shop state,
  its champion and, in shadow, a challenger (the champion's model registered again: no
  training), with tokens, so Prometheus sends the bearer token from a file as compose does;
  and a second replica pointed at an empty MLflow server: it has no champion, so its
  ``/v1/predict`` answers 503 and the error-rate SLO has server errors to count;
* the Pushgateway, with the pipeline's gauges pushed by the package's own functions from real
  records of that state: a validation outcome per table, the online store's materialization
  (read from Feast), the newest drift check (its per-column distances from its MLflow run) and
  the live evaluation of the last day (``evaluate_day``, as the DAG's task runs it);
* statsd_exporter's stand-in (``tests/statsd_exporter.py``) with ``docker/statsd/mapping.yml``,
  fed by Airflow's own metrics code (its registry, legacy names, StatsD client) making the
  calls the scheduler and the task runner make;
* ``mlflow server --expose-prometheus`` and ``feast serve --metrics`` (through
  ``python -m ctpipe.feature_store serve --metrics``, as compose runs it);
* Alertmanager with ``docker/alertmanager/alertmanager.yml``, and Prometheus with
  ``docker/prometheus/prometheus.yml`` (every job's target moved here, a 1 s scrape and
  evaluation interval) and the rules of ``docker/prometheus/rules``.

Then every query of every dashboard panel and every alert rule's expression goes through
Prometheus's HTTP API and must return series, so no panel is empty because of a misspelt name.
An alert's expression is empty while all is well: it is evaluated with ``bool`` after its
comparison (``a > bool b``), which keeps every series both sides match. Last, a drift check
that asks for a retrain is pushed and its alert must reach Alertmanager.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from ctpipe.datasets import get_dataset
from ctpipe.serving.upstream import ServiceProcess

from ..conftest import free_port
from ..observability import (
    ALERTMANAGER_CONFIG,
    STATSD_MAPPING,
    alert_rules,
    dashboards,
    local_config,
    prometheus_config,
    tool,
    with_bool,
)
from ..statsd_exporter import StatsdExporter
from .conftest import SHOP, SHOP_DAYS

pytestmark = pytest.mark.integration

DATASET = get_dataset(SHOP)
TOKEN = "serving-token-for-observability-0123"
METRICS_TOKEN = "metrics-token-for-observability-0123"
LAST_DAY = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=SHOP_DAYS - 1)
NEXT_DAY = LAST_DAY + timedelta(days=1)
FEAST_METRICS_PORT = 8000  # feast serve --metrics: fixed by Feast
MULTIPROCESS = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR", "prometheus_multiproc_dir")
# What Airflow's scheduler, DAG processor, executor and task runner report, through Airflow's own metrics code.
AIRFLOW_CALLS = """
from datetime import timedelta
from airflow._shared.observability.metrics import stats
from airflow.observability.metrics import stats_utils

stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=True)
for _ in range(3):
    stats.incr("scheduler_heartbeat", 1, 1)
    stats.incr("dag_processor_heartbeat", 1, 1)
    stats.incr("triggerer_heartbeat", 1, 1)
for dag_id, task_id, state, seconds in [
    ("ingest", "extract_orders", "success", 4), ("ingest", "validate_orders", "success", 9),
    ("features", "materialize", "failed", 30),
]:
    tags = {"dag_id": dag_id, "task_id": task_id}
    stats.incr("ti.finish", tags={**tags, "state": state})
    stats.incr("ti_successes" if state == "success" else "ti_failures", tags=tags)
    stats.timing("task.duration", dt=timedelta(seconds=seconds), tags=tags)
stats.timing("dagrun.duration.success", dt=timedelta(seconds=42), tags={"dag_id": "ingest"})
stats.timing("dagrun.duration.failed", dt=timedelta(seconds=95), tags={"dag_id": "features"})
stats.timing("dagrun.schedule_delay", dt=timedelta(seconds=3), tags={"dag_id": "ingest"})
stats.gauge("dag_processing.import_errors", 0)
stats.gauge("dag_processing.total_parse_time", 1.7)
for name, value in [("executor.open_slots", 31), ("executor.queued_tasks", 0), ("executor.running_tasks", 1)]:
    stats.gauge(name, value, tags={"executor_class_name": "LocalExecutor"})
stats.gauge("pool.open_slots", 127, tags={"pool_name": "default_pool"})
stats.gauge("pool.queued_slots", 0, tags={"pool_name": "default_pool"})
"""


class Processes:
    """Programs started for the module, each in a process group of its own, stopped with it at the module's end.

    The group takes what a program starts in turn (MLflow's uvicorn, Feast's gunicorn workers and
    metrics process): SIGTERM to the group, SIGKILL to whatever is left after 20 s.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("w")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.started.append((name, process))
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text()[-3000:]

    def stop(self) -> None:
        for _, process in reversed(self.started):
            signal_group(process, signal.SIGTERM)
        for _, process in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            signal_group(process, signal.SIGKILL)
            process.wait()


def signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def wait_until(check, what: str, timeout: float = 120.0, processes: Processes | None = None, name: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except (httpx.TransportError, OSError):
            found = None
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout:.0f} s" + (f":\n{processes.log(name)}" if processes else ""))


def answers(url: str, status: int = 200) -> bool:
    return httpx.get(url, timeout=2).status_code == status


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def child_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in MULTIPROCESS}
    env.pop("MLFLOW_TRACKING_URI", None)
    return {**env, **overrides}


def query(prometheus: str, expression: str) -> list[dict]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=30).json()
    assert answer["status"] == "success", (expression, answer)
    return answer["data"]["result"]


@pytest.fixture(scope="module")
def stack(shop_run, tmp_path_factory):
    """Everything above, started and fed; yields the URLs; stops it all."""
    for name in ("prometheus", "alertmanager", "pushgateway"):
        tool(name)
    if not port_is_free(FEAST_METRICS_PORT):
        message = f"port {FEAST_METRICS_PORT} is taken: `feast serve --metrics` serves its metrics there, always"
        pytest.fail(message) if os.environ.get("CI", "").lower() == "true" else pytest.skip(message)
    root = tmp_path_factory.mktemp("observability")
    state = root / "state"
    shutil.copytree(shop_run.state, state)
    env = {**shop_run.env, "CTPIPE_STATE_DIR": str(state)}
    processes = Processes(root)
    exporter = StatsdExporter(STATSD_MAPPING)
    services: list[ServiceProcess] = []
    try:
        ports = {name: free_port() for name in ("pushgateway", "alertmanager", "prometheus", "mlflow", "feast")}
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        processes.start("pushgateway", [tool("pushgateway"), f"--web.listen-address=127.0.0.1:{ports['pushgateway']}"])
        processes.start(
            "alertmanager",
            [
                tool("alertmanager"),
                f"--config.file={ALERTMANAGER_CONFIG}",
                f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                "--cluster.listen-address=",  # one instance: no gossip port on every interface
                f"--storage.path={root / 'alertmanager'}",
            ],
        )
        # An MLflow server of its own (an empty store): scraped, and the registry of the replica with no champion.
        processes.start(
            "mlflow",
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow-server.db'}",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["mlflow"]),
                "--workers",
                "1",
                "--expose-prometheus",
                str(root / "mlflow-metrics"),
            ],
            child_env(),
        )
        processes.start(
            "feast",
            [sys.executable, "-m", "ctpipe.feature_store", "serve", "--port", str(ports["feast"]), "--metrics"],
            child_env(**env),
        )
        exporter.start()
        emitted = subprocess.run(
            [sys.executable, "-c", AIRFLOW_CALLS],
            env=child_env(
                AIRFLOW__METRICS__STATSD_ON="True",
                AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
                AIRFLOW__METRICS__STATSD_PORT=str(exporter.statsd_port),
                AIRFLOW__METRICS__STATSD_PREFIX="airflow",
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert emitted.returncode == 0, emitted.stderr[-3000:]

        # The registry of the copy: the champion's model again as a challenger, in shadow.
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {**env, "CTPIPE_PUSHGATEWAY_URL": url["pushgateway"]}.items():
                patch.setenv(name, value)
            patch.delenv("MLFLOW_TRACKING_URI", raising=False)
            champion = add_shadow_challenger()
            wait_until(
                lambda: answers(f"{url['pushgateway']}/-/ready"),
                "the Pushgateway",
                processes=processes,
                name="pushgateway",
            )
            published = publish_records()

        secrets = {"serving_metrics_token": root / "serving_metrics_token", "mlflow_admin_password": root / "mlflow_pw"}
        secrets["serving_metrics_token"].write_text(METRICS_TOKEN + "\n")
        secrets["mlflow_admin_password"].write_text("not-asked-by-this-server\n")
        serving_env = child_env(
            **env,
            CTPIPE_SERVING_TOKEN=TOKEN,
            CTPIPE_SERVING_METRICS_TOKEN=METRICS_TOKEN,
            CTPIPE_SERVING_POLL_SECONDS="1",
            CTPIPE_PREDICTION_LOG_FLUSH_SECONDS="0.5",
        )
        wait_until(lambda: answers(f"{url['mlflow']}/health"), "MLflow's server", 180, processes, "mlflow")
        healthy = ServiceProcess(serving_env, root / "serving.log")
        degraded = ServiceProcess({**serving_env, "MLFLOW_TRACKING_URI": url["mlflow"]}, root / "serving-degraded.log")
        services += [healthy, degraded]
        healthy.start()
        degraded.start(probe="/healthz")  # alive, never ready: no champion in that registry
        wait_until(lambda: answers(f"{url['feast']}/health"), "the feature server", 180, processes, "feast")
        wait_until(lambda: answers(f"http://127.0.0.1:{FEAST_METRICS_PORT}/metrics"), "Feast's metrics", 60)

        targets = {
            "ctpipe-serving": [healthy.url.removeprefix("http://"), degraded.url.removeprefix("http://")],
            "pushgateway": [f"127.0.0.1:{ports['pushgateway']}"],
            "airflow": [f"127.0.0.1:{exporter.metrics_port}"],
            "mlflow": [f"127.0.0.1:{ports['mlflow']}"],
            "feast": [f"127.0.0.1:{FEAST_METRICS_PORT}"],
            "prometheus": [f"127.0.0.1:{ports['prometheus']}"],
            "alertmanager": [f"127.0.0.1:{ports['alertmanager']}"],
        }
        config = local_config(prometheus_config(), targets, secrets, f"127.0.0.1:{ports['alertmanager']}", "1s")
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        processes.start(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={root / 'prometheus.yml'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                f"--storage.tsdb.path={root / 'prometheus-data'}",
            ],
        )
        wait_until(lambda: answers(f"{url['prometheus']}/-/ready"), "Prometheus", 60, processes, "prometheus")
        wait_until(lambda: answers(f"{url['alertmanager']}/-/ready"), "Alertmanager", 60, processes, "alertmanager")
        send_traffic(healthy, degraded, url)
        expected = sum(len(t) for t in targets.values())
        # Every target scraped a few times since the traffic: rates over [5m] need two samples at least.
        wait_until(
            lambda: len(query(url["prometheus"], "count_over_time(up[8s]) >= 4")) == expected,
            "four scrapes of every target",
            60,
        )
        yield {
            "prometheus": url["prometheus"],
            "alertmanager": url["alertmanager"],
            "targets": targets,
            "champion": champion,
            "published": published,
            "exporter": exporter,
        }
    finally:
        for service in services:
            service.stop()
        exporter.stop()
        processes.stop()


def add_shadow_challenger() -> str:
    from ctpipe.registry import CHALLENGER, CHAMPION, alias_version
    from ctpipe.serving.traffic import set_policy
    from ctpipe.tracking import connect

    client = connect().client
    champion = alias_version(client, DATASET.model_name, CHAMPION)
    again = client.create_model_version(DATASET.model_name, champion.source, champion.run_id)
    client.set_registered_model_alias(DATASET.model_name, CHALLENGER, again.version)
    set_policy(client, DATASET.model_name, "shadow", "person: tests", "observability test")
    return str(champion.version)


def publish_records() -> dict[str, bool]:
    """The pipeline's records of the copied state, published by the package's functions as the DAG tasks do."""
    from ctpipe.monitoring import recorded_check
    from ctpipe.online_evaluation import evaluate_day
    from ctpipe.pipeline_metrics import (
        publish_drift,
        publish_live,
        publish_materialization,
        publish_validation,
    )
    from ctpipe.records import Interval, Publication, ValidationOutcome

    interval = Interval.ending(NEXT_DAY)
    published = {}
    for table in DATASET.tables:
        # The gate's report of the last interval is its outcome, stamped with when it was written.
        report = json.loads((state_dir() / "reports" / "validation" / table.name / f"{interval.key}.json").read_text())
        report.pop("validated_at")
        published[f"validation {table.name}"] = publish_validation(ValidationOutcome.from_dict(report))
    publication = Publication(feature_view=DATASET.feature_view, materialized=interval, registered=())
    published["materialization"] = publish_materialization(publication)
    check = recorded_check(interval)
    assert check is not None and check.mlflow_run_id, "the shop run checked drift on its last day"
    published["drift"] = publish_drift(check)
    evaluation = evaluate_day(NEXT_DAY)
    assert evaluation.figures, "the shop run served predictions"
    published["live"] = publish_live(evaluation)
    return published


def state_dir() -> Path:
    return Path(os.environ["CTPIPE_STATE_DIR"])


def send_traffic(healthy: ServiceProcess, degraded: ServiceProcess, url: dict[str, str]) -> None:
    """A few seconds of callers: answered batches, a malformed event (422), no token (401), 503s, feature reads."""
    from ctpipe.records import Interval
    from ctpipe.serving.upstream import as_json, send_events, source_events
    from ctpipe.settings import Settings

    settings = Settings(
        {**os.environ, "CTPIPE_DATASET": SHOP, "CTPIPE_STATE_DIR": str(Path(healthy.env["CTPIPE_STATE_DIR"]))}
    )
    events = [as_json(event) for event in source_events(settings, Interval.ending(NEXT_DAY))[:100]]
    assert events, "the last day's raw partition has events"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    feature_request = {"feature_service": DATASET.feature_service, "entities": {DATASET.entity: ["seller-01"]}}
    deadline = time.monotonic() + 6
    with httpx.Client(timeout=60) as http:
        while time.monotonic() < deadline:
            sent = send_events(http, healthy.url, events[:50], TOKEN)
            assert sent.served, sent
            assert (
                http.post(f"{healthy.url}/v1/predict", json={"events": [{"amount": "a lot"}]}, headers=auth).status_code
                == 422
            )
            assert http.post(f"{healthy.url}/v1/predict", json={"events": events[:1]}).status_code == 401
            assert http.post(f"{degraded.url}/v1/predict", json={"events": events[:1]}, headers=auth).status_code == 503
            assert http.post(f"{url['feast']}/get-online-features", json=feature_request).status_code == 200
            assert (
                http.get(f"{url['mlflow']}/api/2.0/mlflow/experiments/search", params={"max_results": 5}).status_code
                == 200
            )
            time.sleep(0.5)


# ---------------------------------------------------------------- the checks


def test_the_pipeline_published_every_record(stack):
    assert stack["published"] and all(stack["published"].values()), stack["published"]
    assert not stack["exporter"].unmatched  # the last rule drops what no rule names: nothing falls through


def test_every_scrape_job_is_up_on_every_target(stack):
    up = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1] for r in query(stack["prometheus"], "up")}
    expected = {(job, target) for job, targets in stack["targets"].items() for target in targets}
    assert set(up) == expected
    assert all(value == "1" for value in up.values()), up


def test_prometheus_loaded_every_rule_and_evaluates_it_cleanly(stack):
    def evaluated():
        groups = httpx.get(f"{stack['prometheus']}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(rule["health"] != "unknown" for rule in rules) else None

    rules = wait_until(evaluated, "every rule evaluated", 30)
    assert {r["name"] for r in rules if r["type"] == "alerting"} == {r["alert"] for r in alert_rules()}
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


PANEL_QUERIES = [
    (name, panel["title"], target["refId"], target["expr"])
    for name, dashboard in dashboards().items()
    for panel in dashboard["panels"]
    for target in panel["targets"]
]


@pytest.mark.parametrize(
    ("dashboard", "panel", "ref_id", "expression"), PANEL_QUERIES, ids=[f"{d}:{p}:{r}" for d, p, r, _ in PANEL_QUERIES]
)
def test_every_dashboard_query_returns_series(stack, dashboard, panel, ref_id, expression):
    assert query(stack["prometheus"], expression), f"{dashboard} / {panel} / {ref_id}: no series for {expression}"


RULES = alert_rules()


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_every_alert_expression_matches_series(stack, rule):
    """Without its threshold's verdict (``bool``): the series it compares exist, whether or not it fires now."""
    assert query(stack["prometheus"], with_bool(rule["expr"])), f"{rule['alert']}: no series for {rule['expr']}"


def test_a_misspelt_name_leaves_its_query_empty(stack):
    """The checks above are not vacuous: one letter off, and Prometheus has no series to show."""
    assert not query(stack["prometheus"], "sum by (status) (rate(ctpipe_serving_request_total[5m]))")
    assert not query(stack["prometheus"], with_bool("time() - max(ctpipe_ingest_last_succes_timestamp_seconds) > 3600"))


def test_a_drift_alert_reaches_alertmanager(stack):
    """The last check: the newest drift check now asks for a retrain; Prometheus fires, Alertmanager has it."""
    from ctpipe.pipeline_metrics import publish_drift
    from ctpipe.records import DriftCheck, Interval
    from ctpipe.settings import Settings

    check = DriftCheck(
        interval=Interval.ending(NEXT_DAY + timedelta(days=1)),
        retrain=True,
        reason="crafted: 3 of 8 inputs drifted",
        champion_version=stack["champion"],
        drifted_share=0.375,
        prediction_score=0.2,
        decision="retrain",
    )
    gateway = stack["targets"]["pushgateway"][0]
    assert publish_drift(check, Settings({"CTPIPE_DATASET": SHOP, "CTPIPE_PUSHGATEWAY_URL": f"http://{gateway}"}))

    def received():
        alerts = httpx.get(f"{stack['alertmanager']}/api/v2/alerts", timeout=10).json()
        return [a for a in alerts if a["labels"]["alertname"] == "CtpipeDriftDetected"]

    (alert,) = wait_until(received, "CtpipeDriftDetected at Alertmanager", 60)
    assert alert["labels"]["decision"] == "retrain" and alert["labels"]["version"] == stack["champion"]
    assert alert["labels"]["severity"] == "warning"
    assert [r["name"] for r in alert["receivers"]] == ["ctpipe-warning"]
