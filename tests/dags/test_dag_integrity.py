"""Every DAG file imports cleanly and cheaply, and every DAG follows the house policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"


def probe(folder: Path, tmp_path: Path) -> tuple[dict, list[str]]:
    """Parse ``folder`` in a fresh interpreter with the recording secrets backend in front."""
    log = tmp_path / "lookups.log"
    log.touch()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AIRFLOW__SECRETS__BACKEND": "tests.dags.recording_backend.RecordingSecretsBackend",
        "CTPIPE_LOOKUP_LOG": str(log),
    }
    out = subprocess.run(
        [sys.executable, "-m", "tests.dags.parse_probe", str(folder)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(row for row in out.stdout.splitlines() if row.startswith("PROBE "))
    return json.loads(line.removeprefix("PROBE ")), log.read_text().split()


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> tuple[dict, list[str]]:
    return probe(DAGS, tmp_path_factory.mktemp("probe"))


def test_every_dag_file_imports_without_errors(parsed):
    report, _ = parsed
    assert report["import_errors"] == {}
    assert {"ingest", "features"} <= set(report["dags"])
    files = {Path(p).name for p in report["files"].values()}
    assert files == {p.name for p in DAGS.glob("*.py")}, "a DAG file defines no DAG"


def test_parsing_fetches_no_connection_or_variable(parsed):
    _, lookups = parsed
    assert lookups == []


def test_parsing_imports_no_heavy_library(parsed):
    report, _ = parsed
    assert report["heavy_modules"] == []


def test_the_probe_catches_what_it_looks_for(tmp_path):
    """A DAG file that breaks every rule is caught, so the tests above can fail."""
    bad = tmp_path / "dags"
    bad.mkdir()
    (bad / "bad.py").write_text(
        "import sklearn\n"
        "from airflow.sdk import Variable, BaseHook, dag\n"
        "Variable.get('threshold', default=None)\n"
        "try:\n    BaseHook.get_connection('warehouse')\nexcept Exception:\n    pass\n"
        "@dag(schedule=None)\ndef bad():\n    pass\nbad()\n"
    )
    report, lookups = probe(bad, tmp_path)
    assert "sklearn" in report["heavy_modules"]
    assert "variable:threshold" in lookups and "connection:warehouse" in lookups


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert not bag.import_errors
    return bag.dags


def test_every_dag_declares_its_policy(dags):
    for dag_id, dag in dags.items():
        assert Path(dag.fileloc).stem == dag_id, f"{dag_id}: dag_id must match its file"
        assert dag.tags, f"{dag_id}: no tags"
        assert dag.doc_md and len(dag.doc_md) > 100, f"{dag_id}: no doc_md"
        assert dag.start_date is not None and dag.start_date.utcoffset() == timedelta(0), (
            f"{dag_id}: start_date not UTC"
        )
        assert dag.max_active_runs is not None
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id}: no retries"
            assert task.retry_exponential_backoff, f"{dag_id}.{task.task_id}: no backoff"
            assert task.execution_timeout is not None, f"{dag_id}.{task.task_id}: no execution_timeout"


def test_every_task_hands_its_record_on_as_one_xcom(dags):
    """A TaskFlow task annotated ``-> dict`` would push every key of its record as an XCom of its own
    (Airflow infers ``multiple_outputs``): a dozen writes to the metadata database a task instead of one,
    for keys nothing reads. Each task that returns a record says ``multiple_outputs=False``."""
    for dag_id, dag in dags.items():
        for task in dag.tasks:
            assert not getattr(task, "multiple_outputs", False), f"{dag_id}.{task.task_id}: multiple_outputs"


def test_ingest_has_real_data_intervals(dags):
    from airflow.sdk import CronDataIntervalTimetable

    ingest = dags["ingest"]
    assert isinstance(ingest.timetable, CronDataIntervalTimetable)
    assert ingest.catchup is True


def test_features_runs_on_validated_data_and_offers_a_trigger_form(dags):
    features = dags["features"]
    assets = {asset.name for asset in features.timetable.asset_condition.objects}
    assert assets == {"validated_lab_samples", "validated_qc_results"}
    params = features.params
    for name in ("interval_start", "interval_end"):
        assert params.get_param(name).schema["format"] == "date-time"
        assert params.get_param(name).description


def test_training_offers_a_typed_trigger_form(dags):
    params = dags["training"].params
    assert params.get_param("family").schema["enum"] == ["sklearn", "torch"]
    assert params.get_param("approval_mode").schema["enum"] == ["auto", "human"]
    for name in ("max_iter", "learning_rate", "hidden_units", "epochs"):
        assert "null" in params.get_param(name).schema["type"] and params.get_param(name).description
    assert params["family"] == "sklearn" and params["approval_mode"] == "auto"


def test_monitoring_can_force_a_retrain_and_feeds_training(dags):
    monitoring, training = dags["monitoring"], dags["training"]
    assert monitoring.params.get_param("force_retrain").schema["type"] == "boolean"
    assert monitoring.params["force_retrain"] is False
    published = {asset.name for asset in monitoring.get_task("request_retraining").outlets}
    assert published == {training.timetable.asset_condition.name}


def test_promotion_waits_for_approval_only_on_its_branch(dags):
    training = dags["training"]
    assert training.get_task("route").downstream_task_ids == {
        "await_approval",
        "promote_champion",
        "keep_champion",
        "start_live_experiment",
    }
    assert training.get_task("await_approval").downstream_task_ids == {"promote_champion"}
    assert training.get_task("promote_champion").trigger_rule == "none_failed_min_one_success"


def test_the_live_experiment_is_decided_daily_and_promotes_only_on_its_branch(dags):
    from airflow.sdk import CronDataIntervalTimetable

    live = dags["online_evaluation"]
    assert isinstance(live.timetable, CronDataIntervalTimetable)
    assert live.get_task("evaluate_live").downstream_task_ids == {"decide_experiment"}
    assert live.get_task("route_experiment").downstream_task_ids == {
        "await_live_approval",
        "promote_challenger",
        "no_promotion",
    }
    assert live.get_task("await_live_approval").downstream_task_ids == {"promote_challenger"}
    assert live.get_task("promote_challenger").trigger_rule == "none_failed_min_one_success"
    assert live.get_task("promote_challenger").downstream_task_ids == {"close_experiment"}
    assert live.get_task("close_experiment").trigger_rule == "all_done"
