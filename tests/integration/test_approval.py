"""Human approval before promotion: Airflow's ApprovalOperator answered through the REST API, as the UI does."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from ctpipe.datasets import get_dataset
from ctpipe.local_run import load_dags, params_restored, run_dag
from ctpipe.records import Interval

from ..unit.sources import seeded_sqlite

pytestmark = pytest.mark.integration

DATASET = get_dataset("lab_qc")
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = [Interval(START + timedelta(days=i), START + timedelta(days=i + 1)) for i in range(14)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, airflow_db):
    root = tmp_path_factory.mktemp("approval")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CTPIPE_STATE_DIR", str(root / "state"))
        env.setenv("AIRFLOW_CONN_CTPIPE_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(root / "source.db")}))
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        # Let every challenger "pass" and "beat" the champion, so that the approval path always runs.
        env.setenv("CTPIPE_PROMOTION_MARGIN", "-1")
        env.setenv("CTPIPE_PROMOTION_MIN_ROC_AUC", "0")
        seeded_sqlite(root / "source.db", start=date(2026, 1, 1), days=len(DAYS), rows_per_day=200)[0].dispose()
        dags = load_dags()
        for interval in DAYS:
            run_dag(dags["ingest"], interval.end)
            run_dag(
                dags["features"],
                interval.end,
                {"interval_start": interval.start.isoformat(), "interval_end": interval.end.isoformat()},
            )
        yield dags


def answer_when_asked(choice: str, answers: list, finished: threading.Event, meanwhile=None) -> None:
    """Wait for the approval task to ask, then answer through the public REST API, as the UI does."""
    from airflow.api_fastapi.app import create_app
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from fastapi.testclient import TestClient

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not finished.is_set():
        with create_session() as session:
            waiting = (
                session.query(TaskInstance)
                .filter(
                    TaskInstance.dag_id == "training",
                    TaskInstance.task_id == "await_approval",
                    TaskInstance.state == "awaiting_input",
                )
                .first()
            )
            run_id = waiting.run_id if waiting else None
        if run_id:
            if meanwhile is not None:  # what happens while the person takes their time
                meanwhile()
            with TestClient(create_app("core")) as api:
                response = api.patch(
                    f"/api/v2/dags/training/dagRuns/{run_id}/taskInstances/await_approval/-1/hitlDetails",
                    json={"chosen_options": [choice]},
                )
            answers.append((response.status_code, response.text))
            return
        time.sleep(1)


def train_with_approval(dags, choice: str, days: int, meanwhile=None):
    """One training run from the form, answered by a person. Each test trains on its own window
    (``days``): a model of the champion's own data window is not registered, so never asks."""
    from ctpipe.registry import CHAMPION, alias_version
    from ctpipe.tracking import connect

    # Task timeouts use signals, so the run stays in the main thread; the "person" answers from another.
    answers: list = []
    finished = threading.Event()
    person = threading.Thread(target=answer_when_asked, args=(choice, answers, finished, meanwhile), daemon=True)
    person.start()
    try:
        with params_restored(dags["training"]):
            run = dags["training"].test(
                logical_date=DAYS[-1].end,
                run_conf={"approval_mode": "human", "days": days, "holdout_days": 3, "max_iter": 50},
            )
    finally:
        finished.set()
        person.join(timeout=60)
    assert answers, "await_approval never asked"
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    champion = alias_version(connect().client, DATASET.model_name, CHAMPION)
    promoted = next(ti for ti in run.get_task_instances() if ti.task_id == "promote_champion")
    return answers[0][0], states, champion, promoted.xcom_pull(task_ids="promote_champion")


def test_an_approved_challenger_becomes_champion(prepared):
    status, states, champion, _ = train_with_approval(prepared, "Approve", days=10)
    assert status == 200
    assert states["await_approval"] == "success" and states["promote_champion"] == "success"
    assert states["keep_champion"] == "skipped"
    assert champion is not None and str(champion.version) == "1"


def test_a_rejected_challenger_leaves_the_champion_alone(prepared):
    status, states, champion, _ = train_with_approval(prepared, "Reject", days=9)
    assert status == 200
    assert states["await_approval"] == "success" and states["promote_champion"] == "skipped"
    assert str(champion.version) == "1"  # the second version waits as challenger


def test_an_approval_given_after_the_champion_changed_is_refused_and_says_why(prepared):
    """Reviewed against version 1; while the person waited, version 2 became champion: version 3 is not promoted."""
    from ctpipe.registry import CHALLENGER, alias_version, audit_trail, set_champion
    from ctpipe.tracking import connect

    client = connect().client
    moved = lambda: set_champion(client, DATASET.model_name, "2", "another person", "version 2 after all")  # noqa: E731
    status, states, champion, outcome = train_with_approval(prepared, "Approve", days=8, meanwhile=moved)
    assert status == 200 and states["await_approval"] == "success" and states["promote_champion"] == "success"
    assert str(champion.version) == "2"
    assert outcome["promoted"] is False and outcome["version"] == "3"
    assert "compared against version 1, but the champion is now version 2" in outcome["reason"]
    third = client.get_model_version(DATASET.model_name, "3")
    assert third.tags["promotion_decision"] == "promote"  # the review said so
    assert (
        third.tags["promotion_outcome"] == "not_promoted"
        and third.tags["promotion_outcome_reason"] == outcome["reason"]
    )
    assert third.description.startswith("**Not promoted (") and "**Decision: promote**" in third.description
    assert str(alias_version(client, DATASET.model_name, CHALLENGER).version) == "3"  # left for a new review
    assert [m.to_version for m in audit_trail(client, DATASET.model_name) if m.alias == "champion"] == ["1", "2"]
