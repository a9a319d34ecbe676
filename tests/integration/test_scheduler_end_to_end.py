"""Production mode end to end: the real Airflow scheduler on PostgreSQL, Redis, and an MLflow server.

The same DAGs and package as the embedded default, switched by environment alone:

- Airflow metadata on PostgreSQL; api-server, scheduler, dag-processor and triggerer run
  as separate processes with LocalExecutor, so every task runs in its own process and
  XCom, asset events and Params really are serialized;
- the source is PostgreSQL, reached through the postgres provider's hook, with a canary
  password in the connection;
- Feast keeps its registry in PostgreSQL and serves online values from Redis;
- MLflow is an ``mlflow server`` on PostgreSQL with served artifacts, used over HTTP.

The scheduler catches up the seeded days on its own (``ingest`` is unpaused with a start
date N days back), asset events chain ``features`` and ``monitoring``; then the test
triggers ``training`` through the REST API with the trigger form's Params, and
``monitoring`` with ``force_retrain``, whose retrain request triggers ``training`` again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ctpipe import artifacts
from ctpipe.datasets import get_dataset
from ctpipe.datasets.synthetic import GeneratorConfig
from ctpipe.lake import Lake
from ctpipe.records import Interval

from ..conftest import REPORTS, free_port
from ..services import (
    RUN_ID,
    delete_redis_keys,
    feast_project,
    mlflow_server,
    postgres_database,
    redis_address,
)
from .airflow_stack import AirflowStack, production_environment

pytestmark = [pytest.mark.services, pytest.mark.integration]

DATASET = get_dataset("lab_qc")
DAYS = 7
SERVING_TOKEN = "serving-token-e2e-5b0d7c"  # the prediction service's bearer token
CANARY = "canary-Pw-7f3a9c1e"  # the source connection's password; trust auth ignores it, logs must too
TRAINING_FORM = {"family": "sklearn", "days": 5, "holdout_days": 2, "max_iter": 60, "approval_mode": "auto"}


@pytest.fixture(scope="module")
def intervals() -> list[Interval]:
    """The last DAYS complete daily intervals, fixed when the deployment starts: catchup runs exactly these."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=DAYS)
    return [Interval(first + timedelta(days=i), first + timedelta(days=i + 1)) for i in range(DAYS)]


@contextmanager
def source_reader(database_url: sa.URL, password: str) -> Iterator[str]:
    """A login role of this run's own, with ``password``, that may read the tables created in the database."""
    role = f"ctpipe_reader_{RUN_ID}"
    assert re.fullmatch(r"[\w-]+", password)  # safe to write into the statement
    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        conn.execute(sa.text(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {role}"))
    try:
        yield role
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        engine.dispose()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, intervals):
    """Every service and Airflow component for this module; all stopped and dropped afterwards."""
    from ctpipe.seed import seed

    first = intervals[0].start
    root = tmp_path_factory.mktemp("production")
    project = feast_project("e2e")
    with (
        postgres_database("airflow") as metadata_url,
        postgres_database("source") as source_url,
        # Ingestion logs in as a reader whose password is the canary.
        source_reader(source_url, CANARY) as reader,
        postgres_database("feast") as feast_url,
        postgres_database("mlflow") as mlflow_url,
        mlflow_server(mlflow_url, root / "mlartifacts", free_port(), root / "mlflow.log") as tracking_uri,
        pytest.MonkeyPatch.context() as monkeypatch,
    ):
        redis = redis_address()
        seed(
            source_url.render_as_string(hide_password=False),
            GeneratorConfig(start=first.date(), days=DAYS, rows_per_day=150),
        )
        source = {
            "conn_type": "postgres",
            "host": source_url.host,
            "port": source_url.port or 5432,
            "login": reader,
            "password": CANARY,
            "schema": source_url.database,
        }
        ctpipe_env = {
            "AIRFLOW_CONN_CTPIPE_SOURCE": json.dumps(source),
            "CTPIPE_STATE_DIR": str(root / "state"),
            "CTPIPE_START_DATE": first.isoformat(),
            "CTPIPE_FEAST_PROJECT": project,
            "CTPIPE_FEAST_REGISTRY": json.dumps(
                {
                    "registry_type": "sql",
                    "path": feast_url.render_as_string(hide_password=False),
                    "cache_ttl_seconds": 5,
                }
            ),
            "CTPIPE_FEAST_ONLINE_STORE": json.dumps({"type": "redis", "connection_string": redis}),
            "MLFLOW_TRACKING_URI": tracking_uri,
            # Few days of data make a weak model; the first one must still become champion.
            "CTPIPE_PROMOTION_MIN_ROC_AUC": "0.5",
        }
        metadata = metadata_url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
        api_port = free_port()
        stack = AirflowStack(
            home=root / "airflow",
            env=production_environment(root / "airflow", metadata, api_port, ctpipe_env),
            api_port=api_port,
        )
        for name, value in ctpipe_env.items():  # the test reads the same stores the tasks wrote
            monkeypatch.setenv(name, value)
        try:
            stack.start()
            yield stack, root
        finally:
            try:
                alive = stack.stop()
            finally:
                delete_redis_keys(project)
            assert not alive, f"still running after stop: {alive}"


@pytest.fixture(scope="module")
def pipeline(deployment, intervals):
    """Catch up the seeded days on the scheduler, then train and retrain through the REST API."""
    stack, _ = deployment
    stack.wait_for_dags(["ingest", "features", "monitoring", "training"])
    for dag_id in ("features", "monitoring", "training", "ingest"):  # downstream first, so no event is missed
        stack.unpause(dag_id)

    def caught_up():
        runs = [r for r in stack.dag_runs("ingest") if r["data_interval_end"]]
        finished = [r for r in runs if r["state"] in ("success", "failed")]
        return runs if len(finished) >= DAYS and len(finished) == len(runs) else None

    ingest_runs = stack.wait_until(caught_up, f"{DAYS} scheduled ingest runs", timeout=1200)

    def materialized_to_end():
        # Read in this order: with nothing queued first, then every run finished, then no event of
        # the last interval, nothing can still bring it (a run made in between is seen finished).
        queued = {
            dag_id: stack.api("GET", f"/dags/{dag_id}/assets/queuedEvents")["total_entries"]
            for dag_id in ("features", "monitoring")
        }
        runs = {d: stack.dag_runs(d) for d in ("features", "monitoring")}
        events = stack.api("GET", "/assets/events", params={"source_dag_id": "features", "limit": 100})
        if failed := [(d, r["dag_run_id"]) for d, rs in runs.items() for r in rs if r["state"] == "failed"]:
            raise AssertionError(f"a chained run failed: {failed}\n{stack.diagnosis(*failed[0])}")
        ends = sorted(e["extra"]["materialized"]["end"] for e in events["asset_events"] if e["extra"])
        done = bool(ends) and datetime.fromisoformat(ends[-1]) >= intervals[-1].end
        idle = all(r["state"] in ("success", "failed") for rs in runs.values() for r in rs)
        pending = any(queued.values())  # both DAGs run on any one event
        if idle and not pending and not done:
            raise AssertionError(
                f"nothing runs and nothing is queued, but features were materialized only to {ends[-1:]}\n"
                f"{stack.diagnosis('features')}"
            )
        return done and idle and not pending

    stack.wait_until(
        materialized_to_end,
        "features materialized through the last interval",
        timeout=900,
        on_timeout=lambda: stack.diagnosis("features"),
    )

    training_run = stack.trigger("training", TRAINING_FORM)
    trained = stack.wait_for_run("training", training_run, timeout=900)

    before = {r["dag_run_id"] for r in stack.dag_runs("training")}
    monitoring_run = stack.trigger("monitoring", {"interval_end": intervals[-1].end.isoformat(), "force_retrain": True})
    monitored = stack.wait_for_run("monitoring", monitoring_run, timeout=900)

    def retrained():
        new = [r for r in stack.dag_runs("training") if r["dag_run_id"] not in before]
        return new if new and all(r["state"] in ("success", "failed") for r in new) else None

    retrain_runs = stack.wait_until(retrained, "the asset-triggered training run", timeout=900)
    return {
        "ingest": ingest_runs,
        "training": trained,
        "monitoring": monitored,
        "retraining": retrain_runs,
    }


def all_runs(stack: AirflowStack) -> list[tuple[str, dict]]:
    return [(d, r) for d in ("ingest", "features", "monitoring", "training") for r in stack.dag_runs(d)]


def test_the_scheduler_catches_up_every_interval_through_ingest_and_features(deployment, pipeline, intervals):
    stack, _ = deployment
    from ctpipe.settings import Settings

    settings = Settings.from_env()
    runs = {(r["data_interval_start"][:10], r["run_type"]): r["state"] for r in pipeline["ingest"]}
    for interval in intervals:
        assert runs[(f"{interval.start:%Y-%m-%d}", "scheduled")] == "success", runs
    lake = Lake(settings.lake_dir)
    for table in DATASET.tables:
        assert {i.key for i, _ in lake.partitions("validated", table.name)} >= {i.key for i in intervals}
        for interval in intervals:
            report = json.loads(artifacts.validation_report(settings, table.name, interval).read_text())
            # Outcomes whose sample is not validated yet wait in held/ (labels only).
            counted = report["rows_passed"] + report["rows_quarantined"] + report["rows_held"]
            assert report["rows_in"] == counted > 0
    quarantined = sum(
        json.loads(artifacts.validation_report(settings, DATASET.events.name, i).read_text())["rows_quarantined"]
        for i in intervals
    )
    assert quarantined > 0  # the generator's broken rows were caught, not lost
    # Asset events chained the DAGs: features ran because of validated data, monitoring because of features.
    features_runs = stack.dag_runs("features")
    assert features_runs and {r["run_type"] for r in features_runs} == {"asset_triggered"}
    assert all(r["state"] == "success" for r in features_runs)
    assert any(r["run_type"] == "asset_triggered" for r in stack.dag_runs("monitoring"))
    events = stack.api("GET", "/assets/events", params={"source_dag_id": "ingest", "limit": 100})["asset_events"]
    validated = [e for e in events if e["extra"] and "rows_passed" in e["extra"]]
    assert len(validated) >= DAYS * len(DATASET.tables)


def test_online_features_come_from_redis_and_match_the_offline_store(deployment, pipeline, intervals):
    import pandas as pd

    from ctpipe.feature_store import historical_features, load_store, online_features

    store = load_store()
    assert store.config.online_store.type == "redis" and store.config.registry.registry_type == "sql"
    labs = [f"LAB-{i:03d}" for i in range(1, 6)]
    online = pd.DataFrame(online_features(store, DATASET.feature_service, DATASET.entity, labs, intervals[-1].end))
    entity_rows = pd.DataFrame({DATASET.entity: labs, "event_timestamp": [intervals[-1].end] * len(labs)})
    offline = historical_features(store, DATASET.feature_service, entity_rows).set_index(DATASET.entity).loc[labs]
    features = [a.name for a in DATASET.aggregates]
    assert online[features].notna().all().all()
    pd.testing.assert_frame_equal(
        online.set_index(DATASET.entity)[features].astype("float64"),
        offline[features].astype("float64"),
        check_names=False,
    )


def test_training_from_the_trigger_form_registers_and_promotes_on_the_mlflow_server(deployment, pipeline):
    import mlflow

    from ctpipe.registry import CHAMPION, alias_version, audit_trail
    from ctpipe.tracking import connect

    stack, _ = deployment
    run = pipeline["training"]
    states = stack.task_states("training", run["dag_run_id"])
    assert run["state"] == "success", states
    assert run["conf"] == TRAINING_FORM
    # XCom carries references, not data: the plan, and an MLflow run id with small metrics.
    plan = stack.xcom("training", run["dag_run_id"], "plan_training")
    assert plan["family"] == "sklearn" and plan["params"] == {"max_iter": 60} and plan["days"] == 5
    result = stack.xcom("training", run["dag_run_id"], "train_model")
    assert result["run_id"] and len(json.dumps(result)) < 5000

    tracking = connect()
    mlflow_client = tracking.client
    assert mlflow_client.tracking_uri.startswith("http://")
    champion = alias_version(mlflow_client, DATASET.model_name, CHAMPION)
    assert champion is not None and champion.version == "1"
    assert champion.tags["promotion_decision"] == "promote" and champion.tags["run_id"] == result["run_id"]
    assert champion.tags["validation_status"] == "passed"
    # The model's artifacts went through the server (mlflow-artifacts:), and load back by alias.
    assert mlflow.get_run(result["run_id"]).info.artifact_uri.startswith("mlflow-artifacts:")
    model = mlflow.pyfunc.load_model(f"models:/{DATASET.model_name}@champion")
    assert model.metadata.run_id == result["run_id"]
    # The evidence went to the server with the model's run; the description links into the server's UI.
    evidence = {a.path for a in mlflow_client.list_artifacts(result["run_id"], "evidence")}
    assert "evidence/validation_reports.json" in evidence and "evidence/data_docs" in evidence
    links = {k: v for k, v in champion.tags.items() if k.startswith("evidence.")}
    assert links and all(v.startswith(f"{tracking.ui_url}/#/experiments/") for v in links.values())
    assert tracking.ui_url == mlflow_client.tracking_uri.rstrip("/")
    # The promotion is on the audit trail, by the task that made it.
    [move] = [m for m in audit_trail(mlflow_client, DATASET.model_name) if m.alias == CHAMPION]
    assert (move.from_version, move.to_version) == (None, "1")
    assert move.by == f"Airflow training / {run['dag_run_id']} / promote_champion"


def test_a_forced_retrain_request_triggers_training_through_its_asset(deployment, pipeline, intervals):
    from ctpipe.registry import versions as registered
    from ctpipe.tracking import connect

    stack, _ = deployment
    monitoring = pipeline["monitoring"]
    states = stack.task_states("monitoring", monitoring["dag_run_id"])
    assert monitoring["state"] == "success", states
    assert states["request_retraining"] == "success" and states["skip_retraining"] == "skipped"
    drift = stack.xcom("monitoring", monitoring["dag_run_id"], "check_drift")
    assert drift["champion_version"] == "1" and drift["report_uri"].endswith(".html")
    assert drift["report_uri"].startswith(f"runs:/{drift['mlflow_run_id']}/")

    [retrain] = pipeline["retraining"]
    assert retrain["run_type"] == "asset_triggered" and retrain["state"] == "success"
    versions = registered(connect().client, DATASET.model_name)
    assert [v.version for v in versions] == ["1", "2"]
    second = versions[1]
    # The request's reason (real drift, or "forced from the trigger form") travelled through the asset event.
    request = stack.xcom("monitoring", monitoring["dag_run_id"], "request_retraining")
    assert second.tags["trigger"] == request["reason"] and request["cutoff"] == intervals[-1].end.isoformat()
    assert second.tags["promotion_decision"] in ("promote", "keep_champion")
    assert second.tags["compared_with_version"] == "1"
    assert "**Decision:" in second.description
    assert second.tags["evidence.drift_report"].endswith(".html")  # the forced check's report, in the UI


def test_the_prediction_service_serves_on_redis_and_the_mlflow_server(deployment, pipeline, intervals):
    """The last day's events, sent as an upstream system would, to the service behind its token."""
    import math
    import os
    import time

    import httpx
    import pandas as pd

    from ctpipe.feature_store import load_store, online_features
    from ctpipe.registry import CHAMPION, alias_version, set_champion
    from ctpipe.serving.upstream import ServiceProcess, as_json, send_events, source_events
    from ctpipe.settings import Settings
    from ctpipe.tracking import connect

    _, root = deployment
    settings = Settings.from_env()
    champion = alias_version(connect(settings).client, DATASET.model_name, CHAMPION)
    env = {**os.environ, "CTPIPE_SERVING_TOKEN": SERVING_TOKEN, "CTPIPE_SERVING_POLL_SECONDS": "0.5"}
    service = ServiceProcess(env, root / "serving.log").start()
    events = source_events(settings, intervals[-1])
    auth = {"Authorization": f"Bearer {SERVING_TOKEN}"}
    try:
        with httpx.Client(timeout=120) as client:
            anonymous = client.post(f"{service.url}/v1/predict", json={"events": [as_json(events[0])]})
            assert anonymous.status_code == 401
            models = client.get(f"{service.url}/v1/models", headers=auth).json()
            sent = send_events(client, service.url, events, SERVING_TOKEN)
            # The service follows an alias moved on the MLflow server, and back.
            other = {"1": "2", "2": "1"}[str(champion.version)]
            # A well-formed event: the seeded days hold malformed ones on purpose, and which day is last
            # (so which event comes first) follows today's date.
            probe = next(
                body
                for body in ({"events": [as_json(event)]} for event in events)
                if client.post(
                    f"{service.url}/v1/predict", json=body, headers={**auth, "X-Request-ID": "follow-probe"}
                ).status_code
                == 200
            )
            for version, why in ((other, "e2e: the service follows"), (str(champion.version), "e2e: and back")):
                set_champion(connect(settings).client, DATASET.model_name, version, "person: e2e test", why)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    follow = {**auth, "X-Request-ID": f"follow-{version}"}
                    answer = client.post(f"{service.url}/v1/predict", json=probe, headers=follow)
                    if answer.json()["predictions"][0]["version"] == version:
                        break
                    time.sleep(0.2)
                else:
                    raise AssertionError(f"the service did not follow the champion to version {version}")
    finally:
        assert service.stop() in (0, -15), service.log_text()[-3000:]
    loaded = {m["variant"]: m["version"] for m in models["loaded"]}
    assert loaded["champion"] == champion.version
    served, refused = sum(sent.served.values()), sum(sent.refused.values())
    assert events and served + refused == len(events) and served > 0
    assert {version for version, variant in sent.served} == {champion.version}

    # Every answer is in the prediction log, and its features are what Redis serves for the event's time.
    logged = pd.read_parquet(settings.predictions_dir)
    logged = logged[~logged.request_id.str.startswith("follow-")]  # the alias probes
    returned = logged[logged.returned]
    assert len(returned) == served and set(returned.model_version) == {champion.version}
    assert not returned.unknown_entity.any()
    store = load_store()
    features = [a.name for a in DATASET.aggregates]
    for _, row in returned.drop_duplicates(DATASET.entity).iterrows():
        stamp = row.event_timestamp.to_pydatetime()
        online = online_features(store, DATASET.feature_service, DATASET.entity, [row[DATASET.entity]], stamp)
        for name in features:
            expected = online[name][0]
            got = row[f"input.{name}"]
            assert (math.isnan(got) and expected is None) or got == pytest.approx(expected), (name, row)


def test_the_canary_password_is_in_no_log_and_no_xcom(deployment, pipeline):
    stack, root = deployment
    leaks = [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and path.suffix in (".log", ".json", ".txt", "") and CANARY in path.read_text(errors="ignore")
    ]
    assert not leaks, leaks
    for dag_id, run in all_runs(stack):
        for ti in stack.task_instances(dag_id, run["dag_run_id"]):
            if ti["state"] != "success":
                continue
            path = f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances/{ti['task_id']}/xcomEntries"
            for entry in stack.api("GET", path, params={"map_index": ti["map_index"]})["xcom_entries"]:
                value = stack.xcom(dag_id, run["dag_run_id"], ti["task_id"], entry["key"], ti["map_index"])
                assert CANARY not in json.dumps(value, default=str), (dag_id, ti["task_id"], entry["key"])
    # The logs are really there: the password is absent, not the logs.
    extract_logs = list((root / "airflow" / "logs").rglob("*extract_lab_samples*/*.log"))
    assert extract_logs and any("lab_samples" in p.read_text() for p in extract_logs)


def test_the_api_requires_authentication(deployment, pipeline):
    import requests

    stack, _ = deployment
    assert requests.get(f"{stack.url}/api/v2/dags", timeout=30).status_code == 401
    wrong = requests.post(f"{stack.url}/auth/token", json={"username": "admin", "password": "wrong"}, timeout=30)
    assert wrong.status_code == 401
    assert requests.get(f"{stack.url}/auth/token", timeout=30).status_code == 403  # no all-admins shortcut


def busy_seconds(spans: list[tuple[datetime, datetime]]) -> float:
    """Seconds during which at least one of ``spans`` was running (tasks of a run may overlap)."""
    total, reach = 0.0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            total += (end - start).total_seconds()
            reach = end
        elif end > reach:
            total += (end - reach).total_seconds()
            reach = end
    return total


def test_scheduler_overhead_is_measured(deployment, pipeline, request):
    """Wall time of the runs and the scheduler's share of it, reported at the end of the session.

    Per task: the run's wall time minus its tasks' durations, over its tasks. Tasks of one run
    overlap, so the sum of durations can exceed the wall time; the time no task was running
    (wall minus the union of task spans) is reported beside it, and so is the delay from a
    task being scheduled to its process starting it.
    """
    stack, _ = deployment
    tasks, task_seconds, run_seconds, idle_seconds, start_delays = 0, 0.0, 0.0, 0.0, []
    first_start, last_end = None, None
    runs = all_runs(stack)
    for dag_id, run in runs:
        start, end = datetime.fromisoformat(run["start_date"]), datetime.fromisoformat(run["end_date"])
        first_start, last_end = min(first_start or start, start), max(last_end or end, end)
        ran = [
            ti
            for ti in stack.task_instances(dag_id, run["dag_run_id"])
            if ti["state"] in ("success", "failed") and ti["start_date"]
        ]
        spans = [(datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"])) for ti in ran]
        tasks += len(ran)
        task_seconds += sum(ti["duration"] or 0.0 for ti in ran)
        run_seconds += (end - start).total_seconds()
        idle_seconds += (end - start).total_seconds() - busy_seconds(spans)
        start_delays += [
            (datetime.fromisoformat(ti["start_date"]) - datetime.fromisoformat(ti["scheduled_when"])).total_seconds()
            for ti in ran
            if ti["scheduled_when"]
        ]
    assert tasks >= 60 and task_seconds > 0 and idle_seconds > 0
    summary = {
        "dag_runs": len(runs),
        "tasks": tasks,
        "wall_s_first_run_start_to_last_run_end": round((last_end - first_start).total_seconds(), 1),
        "sum_run_wall_s": round(run_seconds, 1),
        "sum_task_durations_s": round(task_seconds, 1),
        "overhead_per_task_s": round((run_seconds - task_seconds) / tasks, 2),
        "idle_per_task_s": round(idle_seconds / tasks, 2),
        "mean_scheduled_to_start_s": round(sum(start_delays) / len(start_delays), 2),
    }
    request.config.stash.setdefault(REPORTS, []).append(("scheduler end-to-end", summary))
