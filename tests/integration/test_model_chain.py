"""The whole chain through dag.test(): data, features, first model, drift, retrain, promotion, rollback.

A short scenario: 52 days of data with covariate and concept drift from day 44. The
first model is trained after day 36 (once the 28-day feature windows are full), so the
checks of days 37 to 44 watch it on stationary data: the generator draws each day on its
own, so those days are exactly those of a source seeded with no drift at all, and no check
may flag them.
GX, Feast, MLflow (SQLite) and Evidently are real; training runs as the local
process the Kubernetes pod would run.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta

import mlflow
import numpy as np
import pytest

from ctpipe import artifacts
from ctpipe.datasets import get_dataset
from ctpipe.lake import Lake
from ctpipe.local_run import has_model_versions, load_dags, run_dag, run_day
from ctpipe.records import Interval
from ctpipe.settings import Settings
from ctpipe.tracking import connect

from ..unit.sources import seeded_sqlite

pytestmark = pytest.mark.integration

DATASET = get_dataset("lab_qc")
START = datetime(2026, 1, 1, tzinfo=UTC)
DRIFT_START = date(2026, 2, 13)  # day 44
DAYS = [Interval(START + timedelta(days=i), START + timedelta(days=i + 1)) for i in range(52)]
FIRST_MODEL_AFTER = 36


@pytest.fixture(scope="module")
def chain(tmp_path_factory, airflow_db):
    from ctpipe.monitoring import recorded_check

    root = tmp_path_factory.mktemp("chain")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CTPIPE_STATE_DIR", str(root / "state"))
        env.setenv("AIRFLOW_CONN_CTPIPE_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(root / "source.db")}))
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        engine, _, _ = seeded_sqlite(
            root / "source.db", start=date(2026, 1, 1), days=len(DAYS), rows_per_day=150, drift_start=DRIFT_START
        )
        engine.dispose()
        dags = load_dags()
        checks = {}
        for number, interval in enumerate(DAYS, start=1):
            run_day(dags, interval, number >= FIRST_MODEL_AFTER and not has_model_versions())
            checks[interval.start.date()] = recorded_check(interval)
        yield Settings.from_env(), dags, checks


def versions():
    from ctpipe.registry import versions as registered

    return registered(connect().client, DATASET.model_name)


def test_a_first_model_is_trained_registered_and_promoted(chain):
    first = versions()[0]
    assert first.tags["trigger"] == "first model"
    assert first.tags["promotion_decision"] == "promote"
    for tag in ("data_interval_start", "data_interval_end", "metric.roc_auc", "validation_status", "run_id"):
        assert first.tags[tag], tag
    assert first.tags["validation_status"] == "passed"
    assert "**Decision: promote**" in first.description and "| roc_auc |" in first.description


def test_drift_is_flagged_after_it_starts_and_not_before(chain):
    _, _, checks = chain
    monitored = {day: c for day, c in checks.items() if c is not None}
    before = [day for day, c in monitored.items() if day < DRIFT_START and c.reason.startswith("drift")]
    after = [day for day, c in monitored.items() if day >= DRIFT_START and c.reason.startswith("drift")]
    assert len([d for d in monitored if d < DRIFT_START]) >= 7  # the champion was watched on stationary data
    assert before == [], {str(d): monitored[d].reason for d in before}
    assert after, {str(d): c.reason for d, c in monitored.items()}


def test_drift_triggers_a_retrain_with_a_recorded_decision(chain):
    _, _, checks = chain
    settings, _, _ = chain
    retrains = [c for c in checks.values() if c and c.retrain]
    assert len(retrains) >= 1
    drift_versions = [v for v in versions() if v.tags["trigger"].startswith("drift")]
    assert drift_versions, [v.tags["trigger"] for v in versions()]
    retrained = drift_versions[0]
    assert retrained.tags["promotion_decision"] in ("promote", "keep_champion")
    assert retrained.tags["compared_with_version"] == "1"
    assert "holdout.roc_auc" in retrained.tags and "champion_holdout.roc_auc" in retrained.tags
    assert retrained.tags["evidence.drift_report"].endswith(".html")
    # The report is on disk and logged with its check in MLflow, where the retrain request points.
    first = retrains[0]
    on_disk = artifacts.drift_report(settings, first.interval)
    assert "drift" in on_disk.read_text().lower()
    assert first.report_uri == artifacts.run_artifact_uri(
        first.mlflow_run_id, artifacts.drift_report_artifact(first.interval)
    )
    logged = connect().client.list_artifacts(first.mlflow_run_id, artifacts.DRIFT_REPORT_DIR)
    assert [a.path for a in logged] == [artifacts.drift_report_artifact(first.interval)]
    assert open(mlflow.artifacts.download_artifacts(first.report_uri)).read() == on_disk.read_text()
    # Within the cooldown no check retrains again; one that sees drift says why it does not.
    cooldown_end = first.interval.end + timedelta(days=settings.drift.cooldown_days)
    within = [c for c in checks.values() if c and first.interval.end < c.interval.end < cooldown_end]
    assert not any(c.retrain for c in within), [c.reason for c in within]
    assert all("cooldown" in c.reason for c in within if c.reason.startswith("drift")), [c.reason for c in within]
    # The day after the request, checked again with a policy that calls most noise drift. A retrained
    # champion may see none (its reference is the drifted days, its window one day); the old one does.
    from ctpipe.monitoring import check

    strict = Settings(
        {
            **os.environ,
            "CTPIPE_DRIFT_FALSE_ALARM_RATE": "0.5",
            "CTPIPE_DRIFT_MIN_EFFECT": "0",
            "CTPIPE_DRIFT_FEATURE_SHARE": "0.01",
        }
    )
    again = check(Interval(first.interval.end, first.interval.end + timedelta(days=1)), strict)
    assert not again.retrain and again.decision == "skip", again.reason
    if again.champion_version == first.champion_version:
        assert again.reason.startswith("drift") and "cooldown" in again.reason, again.reason
    else:
        assert again.reason.startswith(("no drift", "drift")), again.reason
        assert "cooldown" in again.reason or again.reason.startswith("no drift"), again.reason


def test_the_champion_loads_by_alias_and_predicts(chain):
    from ctpipe.models import failure_probability
    from ctpipe.training_set import model_input

    settings, _, _ = chain
    reference = mlflow.artifacts.download_artifacts(
        run_id=versions()[0].run_id, artifact_path=artifacts.REFERENCE_SAMPLE
    )
    import pandas as pd

    rows = pd.read_parquet(reference).head(20)
    model = mlflow.pyfunc.load_model(f"models:/{DATASET.model_name}@champion")
    probability = failure_probability(model, model_input(DATASET, rows))
    assert probability.shape == (20,) and ((probability >= 0) & (probability <= 1)).all()
    assert Lake(settings.lake_dir).partitions("features", DATASET.feature_view)


def test_a_manual_torch_run_from_the_trigger_form_and_a_rollback(chain):
    from ctpipe.models import failure_probability
    from ctpipe.registry import CHAMPION, PREVIOUS, alias_version, audit_trail, set_champion
    from ctpipe.training_set import model_input

    _, dags, _ = chain
    before = {v.version for v in versions()}
    run_dag(dags["training"], DAYS[-1].end, {"family": "torch", "epochs": 3, "hidden_units": 16})
    torch_version = next(v for v in versions() if v.version not in before)
    assert torch_version.tags["family"] == "torch" and torch_version.tags["trigger"] == "manual"

    reference = mlflow.artifacts.download_artifacts(
        run_id=torch_version.run_id, artifact_path=artifacts.REFERENCE_SAMPLE
    )
    import pandas as pd

    rows = pd.read_parquet(reference).head(10)
    model = mlflow.pyfunc.load_model(f"models:/{DATASET.model_name}/{torch_version.version}")
    assert np.isfinite(failure_probability(model, model_input(DATASET, rows))).all()

    mlflow_client = connect().client
    champion = alias_version(mlflow_client, DATASET.model_name, CHAMPION)
    previous = alias_version(mlflow_client, DATASET.model_name, PREVIOUS)
    if previous is None:  # make sure there is something to roll back to
        set_champion(mlflow_client, DATASET.model_name, torch_version.version, "the test", "something to roll back")
        champion = alias_version(mlflow_client, DATASET.model_name, CHAMPION)
        previous = alias_version(mlflow_client, DATASET.model_name, PREVIOUS)
    run_dag(dags["rollback_champion"], DAYS[-1].end, {"reason": "the torch model misbehaves"})
    restored = alias_version(mlflow_client, DATASET.model_name, CHAMPION)
    assert restored.version == previous.version != champion.version
    demoted = mlflow_client.get_model_version(DATASET.model_name, champion.version)
    assert demoted.tags["rolled_back"] == f"replaced by {restored.version}: the torch model misbehaves"
    last = audit_trail(mlflow_client, DATASET.model_name)[-2:]
    assert [(m.alias, m.from_version, m.to_version) for m in last] == [
        (CHAMPION, str(champion.version), str(restored.version)),
        (PREVIOUS, str(restored.version), None),
    ]
    assert last[0].by.startswith("Airflow rollback_champion / ") and "the torch model misbehaves" in last[0].reason


def test_a_model_trained_on_the_champions_data_window_is_never_registered(chain):
    from ctpipe.registry import CHAMPION, alias_version

    _, dags, _ = chain
    tracking = connect()
    champion = alias_version(tracking.client, DATASET.model_name, CHAMPION)
    theirs = tracking.training_set(champion.run_id)
    before = {v.version for v in versions()}
    form = {"cutoff": theirs.cutoff.isoformat(), "days": theirs.days, "holdout_days": theirs.holdout_days}
    run = run_dag(dags["training"], DAYS[-1].end, form)
    assert {v.version for v in versions()} == before  # no new version, no challenger
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["train_model"] == "success" and states["register_model"] == "skipped", states
    trained = tracking.client.search_runs(
        [tracking.experiment_id("training")], order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    assert trained.data.tags["registration"] == (
        f"not registered: trained on the same data window as champion version {champion.version} "
        f"({theirs.window.start:%Y-%m-%d} .. {theirs.window.end:%Y-%m-%d}, {theirs.feature_service})"
    )


def test_the_exact_training_set_can_be_rebuilt_from_the_run(chain):
    import pandas as pd

    from ctpipe.feature_store import load_store
    from ctpipe.records import TrainingSetSpec
    from ctpipe.training_set import EVENT_TIMESTAMP, LABEL, build_training_set

    settings, _, _ = chain
    run = mlflow.get_run(versions()[0].run_id)
    contexts = sorted(t.value for i in run.inputs.dataset_inputs for t in i.tags if t.key == "mlflow.data.context")
    assert contexts == ["holdout", "training"]
    lineage = json.loads(
        open(
            mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=artifacts.LINEAGE_TRAINING_SET)
        ).read()
    )
    logged = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=artifacts.LINEAGE_ENTITY_ROWS)
    )
    assert lineage["validated_partitions"]["lab_samples"]  # the data intervals it read

    spec = TrainingSetSpec.from_dict({k: v for k, v in lineage.items() if k != "validated_partitions"})
    rebuilt = build_training_set(DATASET, Lake(settings.lake_dir), load_store(settings), spec)
    columns = [DATASET.events.key, DATASET.entity, EVENT_TIMESTAMP, LABEL]
    pd.testing.assert_frame_equal(rebuilt[columns].reset_index(drop=True), logged[columns], check_dtype=False)
    assert int(float(run.data.metrics["train_rows"])) + int(float(run.data.metrics["rows"])) == len(logged)


def test_the_evidence_of_a_decision_opens_in_the_mlflow_ui(chain, tmp_path):
    """Every evidence link of a version's description opens in the UI `make mlflow` serves, from another folder."""
    import subprocess
    import sys
    import urllib.parse

    import requests

    from ctpipe.records import TrainingPlan

    from ..conftest import free_port
    from ..services import stop, wait_for_http

    settings, _, _ = chain
    retrained = next(v for v in versions() if v.tags["trigger"].startswith("drift"))
    links = {k.removeprefix("evidence."): v for k, v in retrained.tags.items() if k.startswith("evidence.")}
    assert set(links) == {"validation_reports", "data_docs_lab_samples", "data_docs_qc_results", "drift_report"}
    for label, link in links.items():
        assert f"[{label}]({link})" in retrained.description
        assert link.startswith(f"{settings.mlflow_ui_url}/#/experiments/")
        assert str(settings.state_dir) not in link  # a link into the UI, not a path on the worker

    port = free_port()
    log = tmp_path / "mlflow-ui.log"
    ui = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.mlflow_tracking_uri,
        "--port",
        str(port),
    ]
    with open(log, "w") as out:
        server = subprocess.Popen(ui, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health", server, timeout=120, log=log)
        assert "<html" in requests.get(base, timeout=30).text.lower()
        opened = {}
        for label, link in links.items():
            route = link.removeprefix(settings.mlflow_ui_url + "/#")
            _, experiment_id, _, run_id, _, path = route.strip("/").split("/", 5)
            run = requests.get(f"{base}/ajax-api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30)
            assert run.json()["run"]["info"]["experiment_id"] == experiment_id, label
            # What the UI's artifact view fetches for that route.
            answer = requests.get(
                f"{base}/get-artifact", params={"path": urllib.parse.unquote(path), "run_uuid": run_id}, timeout=30
            )
            assert answer.status_code == 200, (label, answer.text[:300])
            opened[label] = answer.text
    finally:
        stop(server)
    reports = json.loads(opened["validation_reports"])["reports"]
    assert set(reports) == {"lab_samples", "qc_results"}
    assert len(reports["lab_samples"]) == len(reports["qc_results"]) == TrainingPlan.days  # the training window
    assert all(r["status"] == "passed" for table in reports.values() for r in table.values())
    assert "expectation" in opened["data_docs_lab_samples"].lower()
    assert "drift" in opened["drift_report"].lower()
