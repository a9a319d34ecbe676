"""The failure alert through Airflow itself: a task run by ``dag.test()`` alerts after its last try, never before.

A tiny DAG, written to a DAG bundle of its own, takes the project's ``DEFAULT_ARGS`` (so the
notifier under test is the one every DAG gets) with one retry and no delay. One task fails
every try, one only its first, and one fails as the validation gate fails a run. The alerts
go to a real HTTP endpoint and to the JSON-lines file.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from ctpipe.alerts import read_alerts

from ..alert_receivers import receiving

pytestmark = pytest.mark.integration

AIRFLOW = "https://airflow.lab.example.com"

PROBE_DAG = '''
"""Tasks that fail for the failure alert's test."""

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from ctpipe.dag_policy import DEFAULT_ARGS


@task
def fails_every_try():
    raise RuntimeError("could not reach the source\\nthe database at db:5432 refused the connection")


@task
def fails_its_first_try(ti=None):
    if ti.try_number == 1:
        raise ConnectionError("a blip")
    return "fine on the retry"


@task
def gate_rejects():
    from airflow.sdk.exceptions import AirflowFailException

    from ctpipe.records import Interval, ValidationOutcome
    from ctpipe.validation import ValidationGateError

    outcome = ValidationOutcome(
        table="lab_samples",
        interval=Interval.parse("2026-02-14T00:00:00+00:00", "2026-02-15T00:00:00+00:00"),
        status="schema_changed",
        rows_in=12,
        rows_passed=0,
        rows_quarantined=12,
        validated_uri=None,
        quarantine_uri="lake/quarantine/lab_samples/x.parquet",
        report_uri="reports/validation/lab_samples/x.json",
        data_docs_uri=None,
        message="lab_samples: the source schema changed: missing column(s) ['courier']",
    )
    try:  # as the ingest DAG's validate task does
        raise ValidationGateError(outcome.message + " (report: ...)", outcome)
    except ValidationGateError as error:
        raise AirflowFailException(str(error)) from error


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={**DEFAULT_ARGS, "retries": 1, "retry_delay": timedelta(0), "retry_exponential_backoff": False},
    tags=["test"],
)
def alert_probe():
    fails_every_try()
    fails_its_first_try()
    gate_rejects()


alert_probe()
'''


@pytest.fixture
def probe_dag(tmp_path, monkeypatch, airflow_db):
    """The probe DAG in a bundle of its own (``dag.test()`` runs only DAGs a bundle holds), beside the project's."""
    from airflow.dag_processing.dagbag import DagBag

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "alert_probe.py").write_text(PROBE_DAG)
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    monkeypatch.setenv(
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        json.dumps(
            [
                {"name": "alert-probe", "classpath": local, "kwargs": {"path": str(bundle)}},
                {"name": "dags-folder", "classpath": local, "kwargs": {}},
            ]
        ),
    )
    bag = DagBag(dag_folder=str(bundle))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["alert_probe"]


def test_a_task_alerts_once_after_its_last_try_and_the_gate_alerts_as_the_gate(tmp_path, monkeypatch, probe_dag):
    alerts_file = tmp_path / "alerts.jsonl"
    with receiving() as webhook:
        monkeypatch.setenv("CTPIPE_ALERT_WEBHOOK_URL", f"{webhook.url}/alerts")
        monkeypatch.setenv("CTPIPE_ALERT_FILE", str(alerts_file))
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", AIRFLOW)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")

        run = probe_dag.test()

    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert states == {
        "fails_every_try": ("failed", 2),
        "fails_its_first_try": ("success", 2),
        "gate_rejects": ("failed", 1),  # the gate fails at once: no retry fixes the data
    }
    sent = sorted(read_alerts(alerts_file), key=lambda alert: alert.fields["task_id"])
    assert [(a.event, a.fields["task_id"]) for a in sent] == [
        ("task_failed", "fails_every_try"),  # once, after try 2 of 2; the retried first try alerted nobody
        ("gate_failed", "gate_rejects"),  # the gate's own alert, not a second, generic one
    ]
    failed, gate = sent
    assert failed.fields["try"] == "2 of 2"
    assert failed.text == "RuntimeError: the database at db:5432 refused the connection"
    run_link = f"{AIRFLOW}/dags/alert_probe/runs/{quote(run.run_id)}"
    assert failed.dag_run_url == gate.dag_run_url == run_link
    assert failed.fields["log"] == f"{run_link}/tasks/fails_every_try"
    assert gate.text == "lab_samples: the source schema changed: missing column(s) ['courier']"
    assert gate.fields["table"] == "lab_samples" and gate.fields["status"] == "schema_changed"
    # The same two alerts reached the webhook, as their JSON.
    posted = sorted((json.loads(r.body) for r in webhook.requests), key=lambda body: body["fields"]["task_id"])
    assert posted == [alert.to_dict() for alert in sent]
    assert {r.path for r in webhook.requests} == {"/alerts"}


def test_every_task_of_every_dag_alerts_on_its_final_failure_and_not_on_a_retry():
    from ctpipe.alert_notifier import FailureAlert
    from ctpipe.local_run import load_dags

    dags = load_dags()
    assert {"ingest", "features", "monitoring", "training"} <= set(dags)
    for dag in dags.values():
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert [type(c) for c in callbacks] == [FailureAlert], (dag.dag_id, task.task_id)
            assert not task.on_retry_callback, (dag.dag_id, task.task_id)
