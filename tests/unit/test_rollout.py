"""The live experiment carried out on a real MLflow registry (SQLite), a real prediction log and labels in the lake.

Each day's served predictions are written by the service's own log writer, both versions
scoring every event as the service does during an experiment; the labels land in the
lake's validated zone at their report time. The decisions are ``ctpipe.experiment``'s; what
is tested here is that they are carried out and recorded: the traffic policy, the aliases
and their audit trail, the version's tags and description, and the live figures in MLflow.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ctpipe import registry, rollout
from ctpipe.datasets import get_dataset
from ctpipe.lake import Lake
from ctpipe.online_evaluation import LIVE_PLOT, day_step, evaluate_day
from ctpipe.records import Interval, Review, TrainingPlan
from ctpipe.serving.prediction_log import PredictionLog
from ctpipe.serving.traffic import read_policy
from ctpipe.settings import Settings
from ctpipe.tracking import connect

DATASET = get_dataset("lab_qc")
NAME = DATASET.model_name
START = datetime(2026, 2, 1, tzinfo=UTC)
EVENTS_PER_DAY = 300
BY = "Airflow online_evaluation / test / decide_experiment"


@pytest.fixture
def deployment(state_dir, monkeypatch):
    """A champion (version 1) and a challenger (version 2) that passed its review, in a canary deployment."""
    # Its own registry: MLflow's fluent API leaves the last tracking URI it was given in the environment.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{state_dir / 'mlflow' / 'mlflow.db'}")
    monkeypatch.setenv("CTPIPE_SERVING_CHALLENGER_POLICY", "canary")
    monkeypatch.setenv("CTPIPE_EXPERIMENT_STAGE_DAYS", "1")
    monkeypatch.setenv("CTPIPE_EXPERIMENT_MIN_PAIRS", "100")
    settings = Settings.from_env()
    tracking = connect(settings)
    client = tracking.client
    client.create_registered_model(NAME)
    versions = []
    for _ in range(2):
        run = client.create_run(tracking.experiment_id("training"))
        versions.append(str(client.create_model_version(NAME, "s3://tests/model", run.info.run_id).version))
    champion, challenger = versions
    registry.promote(client, NAME, champion, None, "tests", "first model")
    registry.mark_challenger(client, NAME, challenger, "tests", "trained")
    client.update_model_version(NAME, challenger, description="**Decision: promote**")
    review = Review(NAME, challenger, True, ("beats the champion",), champion, {"roc_auc": 0.8}, {"roc_auc": 0.7}, 600)
    return settings, client, review, champion, challenger


def serve_day(settings: Settings, day: int, champion: str, challenger: str, gain: float, failing: float = 0.0):
    """A day of events scored by both versions, their labels reported two hours later; ``gain``: how much better
    the challenger separates the outcomes; ``failing``: the share of events the challenger failed to score."""
    rng = np.random.default_rng(day)
    start = START + timedelta(days=day)
    n = EVENTS_PER_DAY
    outcome = rng.random(n) < 0.3
    times = np.array(
        [
            np.datetime64((start + timedelta(seconds=int(s))).replace(tzinfo=None), "us")
            for s in np.sort(rng.integers(0, 80_000, n))
        ]
    )
    keys = np.array([f"S-{day:03d}-{i:04d}" for i in range(n)], dtype=object)
    noise = rng.normal(0, 0.15, n)
    scores = {
        champion: np.clip(0.3 + 0.2 * (outcome - 0.3) + noise, 0.01, 0.99),
        challenger: np.clip(0.3 + (0.2 + gain) * (outcome - 0.3) + noise, 0.01, 0.99),
    }
    to_challenger = rng.random(n) < 0.2
    failed = rng.random(n) < failing
    log = PredictionLog(settings.predictions_dir, flush_rows=100_000, flush_seconds=60)
    for variant, version, answers in (
        ("champion", champion, ~to_challenger),
        ("challenger", challenger, to_challenger),
    ):
        broken = failed if version == challenger else np.zeros(n, dtype=bool)
        log.append(
            {
                "request_id": keys,
                "served_at": times,
                "sample_id": keys,
                "lab_id": np.array([f"LAB-{i % 7:03d}" for i in range(n)], dtype=object),
                "event_timestamp": times,
                "model": np.full(n, NAME, dtype=object),
                "variant": np.full(n, variant, dtype=object),
                "model_version": np.full(n, version, dtype=object),
                "returned": answers & ~broken,
                "score": np.where(broken, np.nan, scores[version]),
                "latency_ms": rng.gamma(4.0, 5.0, n),
                "unknown_entity": np.zeros(n, dtype=bool),
                "stale_features": np.zeros(n, dtype=bool),
                "failed": broken,
            }
        )
    log.close()
    labels = pd.DataFrame(
        {
            "sample_id": keys,
            "lab_id": "LAB-000",
            "qc_outcome": np.where(outcome, "failed", "passed"),
            "reported_at": pd.to_datetime(times).tz_localize(UTC) + pd.Timedelta(hours=2),
        }
    )
    lake = Lake(settings.lake_dir)
    for moment, part in labels.groupby(labels["reported_at"].dt.floor("D")):
        interval = Interval(moment.to_pydatetime(), moment.to_pydatetime() + timedelta(days=1))
        path = lake.partition("validated", "qc_results", interval)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            part = pd.concat([pd.read_parquet(path), part], ignore_index=True)
        part.to_parquet(path, index=False)


def day_end(day: int) -> datetime:
    return START + timedelta(days=day + 1)


def test_a_better_challenger_starts_as_a_canary_ramps_and_is_promoted_on_the_record(deployment):
    settings, client, review, champion, challenger = deployment
    first = rollout.start(review, TrainingPlan(START), "Airflow training / run / start_live_experiment", settings)
    assert (first.action, first.share) == ("start", 0.05)
    policy = read_policy(client, NAME)
    assert (policy.policy, policy.share) == ("canary", 0.05)

    actions = []
    for day in range(8):
        serve_day(settings, day, champion, challenger, gain=0.4)
        step = rollout.decide_day(day_end(day), BY, settings)
        assert step is not None
        actions.append((step.action, step.share))
        if step.action == "ramp":
            assert read_policy(client, NAME).share == step.share
        if step.action == "promote":
            break
    assert actions[-1][0] == "promote", actions
    assert [a for a in actions if a[0] == "ramp"] == [("ramp", 0.25), ("ramp", 0.5)]
    assert step.lower > 0 and step.pairs >= 100

    again = rollout.decide_day(day_end(day), BY, settings)  # the same day again: the recorded step, nothing new
    assert again == step
    promotion = rollout.promote(step, "Airflow online_evaluation / test / promote_challenger", settings)
    assert promotion.promoted
    assert registry.alias_version(client, NAME, registry.CHAMPION).version == int(challenger)
    assert registry.alias_version(client, NAME, registry.PREVIOUS).version == int(champion)
    assert read_policy(client, NAME).policy == "champion_only"
    assert registry.audit_trail(client, NAME)[-1].reason.startswith("promoted on live evidence: live Brier better")

    version = client.get_model_version(NAME, challenger)
    assert version.tags[rollout.STATUS_TAG] == "promoted"
    recorded = rollout.steps(version.tags)
    assert [(s.action, s.share) for s in recorded] == [("start", 0.05), *actions]
    description = version.description
    assert description.startswith("**Decision: promote**") and rollout.HEADER in description
    for line in (
        "started at 5%",
        "ramped to 25%",
        "ramped to 50%",
        ": promote:",
        "promoted (Airflow online_evaluation",
    ):
        assert line in description, line
    assert rollout.decide_day(day_end(day + 1), BY, settings) is None  # ended: nothing is running


def test_a_promotion_a_person_rejected_stands_the_challenger_down(deployment):
    settings, client, review, champion, challenger = deployment
    rollout.start(review, TrainingPlan(START, approval="human"), "tests", settings)
    for day in range(8):
        serve_day(settings, day, champion, challenger, gain=0.4)
        step = rollout.decide_day(day_end(day), BY, settings)
        if step.action == "promote":
            break
    assert step.action == "promote" and step.approval == "human"
    version = client.get_model_version(NAME, challenger)
    assert version.tags[rollout.STATUS_TAG] == "awaiting_approval"
    assert "promote, awaiting a person's approval" in version.description
    assert read_policy(client, NAME).policy == "canary"  # the canary keeps its share while a person decides
    # Rejected: promote_challenger never ran; close_experiment finds the champion unchanged.
    closed = rollout.close_unpromoted(step, "Airflow online_evaluation / test / close_experiment", settings)
    assert closed.action == "stop" and "was not carried out" in closed.reasons[0]
    assert read_policy(client, NAME).policy == "champion_only"
    assert registry.alias_version(client, NAME, registry.CHALLENGER) is None
    assert registry.alias_version(client, NAME, registry.CHAMPION).version == int(champion)
    assert client.get_model_version(NAME, challenger).tags[rollout.STATUS_TAG] == "stopped"
    assert rollout.close_unpromoted(step, "again", settings) is None  # a rerun changes nothing


def test_a_challenger_that_fails_to_score_is_rolled_back_with_its_reason(deployment):
    settings, client, review, champion, challenger = deployment
    rollout.start(review, TrainingPlan(START), "tests", settings)
    serve_day(settings, 0, champion, challenger, gain=0.0, failing=0.05)
    step = rollout.decide_day(day_end(0), BY, settings)
    assert step.action == "roll_back" and step.share == 0.0
    assert any(reason.startswith("error rate") for reason in step.reasons), step.reasons
    assert read_policy(client, NAME).policy == "champion_only"
    assert registry.alias_version(client, NAME, registry.CHALLENGER) is None
    assert registry.alias_version(client, NAME, registry.CHAMPION).version == int(champion)
    move = registry.audit_trail(client, NAME)[-1]
    assert (move.alias, move.from_version, move.to_version) == (registry.CHALLENGER, challenger, None)
    assert move.reason.startswith("experiment rolled back: error rate")
    version = client.get_model_version(NAME, challenger)
    assert version.tags[rollout.STATUS_TAG] == "rolled_back"
    assert version.tags["rolled_back"].startswith("canary rolled back: error rate")
    assert "rolled back: error rate" in version.description


def test_a_worse_challenger_is_rolled_back_on_its_live_losses(deployment):
    settings, _, review, champion, challenger = deployment
    rollout.start(review, TrainingPlan(START), "tests", settings)
    for day in range(6):
        serve_day(settings, day, champion, challenger, gain=-0.15)
        step = rollout.decide_day(day_end(day), BY, settings)
        if step.action != "continue" and step.action != "ramp":
            break
    assert step.action == "roll_back", step
    assert step.upper < 0 and "live Brier worse than the champion's" in step.reasons[0]


def test_the_experiment_stops_when_the_champion_moves_under_it(deployment):
    settings, client, review, _, challenger = deployment
    rollout.start(review, TrainingPlan(START), "tests", settings)
    registry.set_champion(client, NAME, challenger, "a person", "hotfix")
    step = rollout.decide_day(day_end(0), BY, settings)
    assert step.action == "stop" and "the champion moved from version 1 to 2" in step.reasons[0]
    assert read_policy(client, NAME).policy == "champion_only"


def test_a_new_challenger_ends_the_experiment_of_the_one_it_replaces(deployment):
    settings, client, review, champion, challenger = deployment
    rollout.start(review, TrainingPlan(START), "tests", settings)
    serve_day(settings, 0, champion, challenger, gain=0.1)
    first = rollout.decide_day(day_end(0), BY, settings)
    assert first.action == "ramp"  # one day a stage in these tests
    assert rollout.supersede(client, NAME, challenger) is None  # itself: nothing to end
    step = rollout.supersede(client, NAME, "3")
    assert step.action == "stop" and "replaced as challenger by version 3" in step.reasons[0]
    version = client.get_model_version(NAME, challenger)
    assert version.tags[rollout.STATUS_TAG] == "stopped"
    assert [s.action for s in rollout.steps(version.tags)] == ["start", "ramp", "stop"]
    assert rollout.running(client, NAME) is None


def test_a_day_of_live_figures_goes_to_mlflow_once_per_version_with_its_plot(deployment):
    settings, client, _, champion, challenger = deployment
    for day in range(3):
        serve_day(settings, day, champion, challenger, gain=0.3)
    as_of = day_end(2)
    evaluation = evaluate_day(as_of, settings)
    assert evaluation.predictions == 3 * 2 * EVENTS_PER_DAY
    assert set(evaluation.runs) == {champion, challenger}
    mine = [evaluation.figures[f"{challenger} challenger {how}"] for how in ("answered", "shadow")]
    assert sum(m["served"] for m in mine) == 3 * EVENTS_PER_DAY  # every event, whoever's answer was returned
    assert 0.1 < mine[0]["served"] / (3 * EVENTS_PER_DAY) < 0.3  # the challenger answered its share
    run = client.get_run(evaluation.runs[challenger])
    metrics = run.data.metrics
    for key in ("challenger.answered.brier", "challenger.shadow.roc_auc", "challenger.answered.latency_p99_ms"):
        assert key in metrics, key
    assert (
        metrics["challenger.shadow.brier"]
        < client.get_run(evaluation.runs[champion]).data.metrics["champion.answered.brier"]
    )
    evaluate_day(as_of, settings)  # again: nothing logged twice
    history = client.get_metric_history(evaluation.runs[challenger], "challenger.answered.served")
    assert [m.step for m in history] == [day_step(as_of)]
    evaluate_day(day_end(3), settings)
    history = client.get_metric_history(evaluation.runs[challenger], "challenger.answered.served")
    assert [m.step for m in history] == [day_step(as_of), day_step(as_of) + 1]

    tables = [a.path for a in client.list_artifacts(evaluation.runs[challenger], "calibration")]
    assert f"calibration/{as_of:%Y-%m-%d}_challenger.shadow.json" in tables, tables
    version = client.get_model_version(NAME, challenger)
    assert version.tags["evidence.live_metrics"].endswith("/artifacts/evidence/live_metrics.png")
    plot = connect(settings).client.download_artifacts(version.run_id, LIVE_PLOT)
    with open(plot, "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.loads(json.dumps(evaluation.to_dict()))["runs"] == evaluation.runs


def test_the_online_evaluation_dag_rolls_a_failing_canary_back_and_promotes_nothing(deployment, airflow_db):
    from ctpipe.local_run import load_dags, run_dag

    settings, client, review, champion, challenger = deployment
    rollout.start(review, TrainingPlan(START), "tests", settings)
    serve_day(settings, 0, champion, challenger, gain=0.0, failing=0.05)
    run = run_dag(load_dags()["online_evaluation"], day_end(0))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {
        "evaluate_live": "success",
        "decide_experiment": "success",
        "route_experiment": "success",
        "no_promotion": "success",
        "await_live_approval": "skipped",
        "promote_challenger": "skipped",
        "close_experiment": "success",
    }
    assert read_policy(client, NAME).policy == "champion_only"
    [step] = [s for s in rollout.recorded_steps(settings, day_end(0)) if s.action != "start"]
    assert step.action == "roll_back"
    assert registry.audit_trail(client, NAME)[-1].by.startswith("Airflow online_evaluation / ")
    # People hear of it: the embedded default's channel is a JSON-lines file, with the run's and the version's links.
    from ctpipe.alerts import read_alerts

    [alert] = [a for a in read_alerts(settings.alerts.file) if a.event == "canary_rolled_back"]
    assert "error rate" in alert.text and alert.fields["version"] == challenger
    assert "/dags/online_evaluation/runs/" in alert.dag_run_url
    assert alert.model_version_url.endswith(f"/#/models/{NAME}/versions/{challenger}")


def test_the_online_evaluation_dag_with_no_live_experiment_decides_nothing_in_one_pass(deployment, airflow_db):
    """No experiment: the route follows no branch and skips every step itself, so no round of the run waits
    for a skip to travel down the graph one task at a time (``dag.test()`` sleeps a second on each such round)."""
    from ctpipe.local_run import load_dags, run_dag

    settings, client, _, champion, challenger = deployment
    serve_day(settings, 0, champion, challenger, gain=0.0)
    run = run_dag(load_dags()["online_evaluation"], day_end(0))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {
        "evaluate_live": "success",
        "decide_experiment": "success",
        "route_experiment": "success",
        "no_promotion": "skipped",
        "await_live_approval": "skipped",
        "promote_challenger": "skipped",
        "close_experiment": "success",
    }
    assert rollout.recorded_steps(settings, day_end(0)) == []
    assert read_policy(client, NAME).policy == "champion_only"


def test_a_new_challenger_answers_nothing_before_its_review_passes(deployment):
    from ctpipe.serving.traffic import PERSON, policy_for_new_challenger, set_policy

    _, client, _, _, challenger = deployment
    policy = policy_for_new_challenger(client, NAME, "canary", "Airflow training / run / register_model", challenger)
    assert (policy.policy, policy.share) == ("shadow", 0.0)
    assert "shadow until its review passes, then a live canary" in policy.reason
    set_policy(client, NAME, "ab", f"{PERSON}tests", "a person's choice", share=0.3)
    assert policy_for_new_challenger(client, NAME, "canary", "training", "3").policy == "ab"  # a person's stays
