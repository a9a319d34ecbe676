"""
### Online evaluation: live figures from served predictions and late labels, and the live experiment's daily step

Runs daily, for the day's data interval. Everything is as known at the interval's end: a
label counts only from its report time, so a day's figures never use the future, and
running a day again, once the `ingest` run of the interval has landed its labels, gives the
same figures.

1. **evaluate_live** joins the prediction log (every score the service gave, shadow scores
   included) to the labels known so far, over the events of the last `CTPIPE_LIVE_WINDOW_DAYS`
   days: per model version and variant, volume, label coverage, ROC AUC, Brier score, log loss,
   a calibration table and latency percentiles. They go to MLflow, one run per version in the
   `live` experiment and one step per day, and a plot of them goes into each version's evidence;
   they also go to Prometheus per version (`CTPIPE_PUSHGATEWAY_URL`).
2. **decide_experiment** takes the running live experiment (a challenger that passed its
   review, serving as a canary or in an A/B test) one day further: a pre-declared,
   always-valid sequential test on paired per-request losses, with guardrails (error rate,
   p99 latency, harm). It ramps the canary, rolls it back, or stops it, and records the step
   with its evidence on the version (a tag and a line of its description). Never in a backfill.
   With no experiment running it decides nothing, and the route follows no branch.
3. **route_experiment** sends a decision to promote to **promote_challenger** (through
   **await_live_approval** when the training plan asked for a person's approval); the
   promotion is the registry's, as after an offline review, and is on the audit trail.
   **close_experiment** stands the challenger down if that promotion did not happen (a person
   rejected it, or the champion had moved): the champion answers everything again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import CronDataIntervalTimetable, dag, task

from ctpipe.dag_policy import (
    DATASET,
    DEFAULT_ARGS,
    START_DATE,
    LiveTasks,
    fail_fast_on_configuration_error,
    plain_utc,
    task_actor,
)


@task(task_id=LiveTasks.EVALUATE, multiple_outputs=False)
@fail_fast_on_configuration_error
def evaluate_live(data_interval_end=None) -> dict:
    from ctpipe.online_evaluation import evaluate_day
    from ctpipe.pipeline_metrics import publish_live

    evaluation = evaluate_day(plain_utc(data_interval_end))
    publish_live(evaluation)  # logs a failure, never raises
    return evaluation.to_dict()


@task(task_id=LiveTasks.DECIDE)
@fail_fast_on_configuration_error
def decide_experiment(evaluation: dict, data_interval_end=None, dag_run=None, ti=None) -> dict | None:
    from airflow.sdk.exceptions import AirflowSkipException

    from ctpipe.alerts import alert_canary_rollback
    from ctpipe.rollout import decide_day

    if dag_run.run_type == "backfill":  # a backfill recomputes figures; it never moves traffic or aliases
        raise AirflowSkipException("backfill run: the live experiment is decided on scheduled runs only")

    def alert(rolled_back):
        alert_canary_rollback(rolled_back.name, rolled_back.challenger, rolled_back.reasons, ti=ti)

    step = decide_day(plain_utc(data_interval_end), task_actor(ti), on_roll_back=alert)
    if step is None:
        logging.getLogger(__name__).info("no live experiment is running")
        return None
    return step.to_dict()


@task.branch(task_id=LiveTasks.ROUTE)
def route_experiment(step: dict | None) -> str | list[str]:
    # The branch skips what it does not follow itself, all in one step: with no experiment it
    # follows nothing, and close_experiment (all_done) runs next.
    if step is None:
        return []
    if step["action"] != "promote":
        return LiveTasks.NO_PROMOTION
    return LiveTasks.APPROVE if step["approval"] == "human" else LiveTasks.PROMOTE


@task(task_id=LiveTasks.PROMOTE, trigger_rule="none_failed_min_one_success", multiple_outputs=False)
@fail_fast_on_configuration_error
def promote_challenger(step: dict, dag_run=None, ti=None) -> dict:
    from airflow.sdk.exceptions import AirflowFailException

    from ctpipe.alerts import alert_promotion
    from ctpipe.records import ExperimentStep
    from ctpipe.rollout import promote

    if dag_run.run_type == "backfill":
        raise AirflowFailException("refusing to promote in a backfill run")
    promotion = promote(ExperimentStep.from_dict(step), task_actor(ti))
    alert_promotion(promotion, model=step["name"], ti=ti)
    return promotion.to_dict()


@task(task_id=LiveTasks.CLOSE, trigger_rule="all_done")
@fail_fast_on_configuration_error
def close_experiment(step: dict | None, ti=None) -> str:
    from ctpipe.records import ExperimentStep
    from ctpipe.rollout import close_unpromoted

    if not step:
        return "no live experiment decided today"
    closed = close_unpromoted(ExperimentStep.from_dict(step), task_actor(ti))
    return "nothing to close" if closed is None else "; ".join(closed.reasons)


@task(task_id=LiveTasks.NO_PROMOTION)
def no_promotion(step: dict) -> str:
    return f"{step['action']}: " + "; ".join(step["reasons"])


@dag(
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["ctpipe", "monitoring", "serving", "mlflow", DATASET.name],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
)
def online_evaluation():
    step = decide_experiment(evaluate_live())
    approval = ApprovalOperator(
        task_id=LiveTasks.APPROVE,
        subject="Promote the challenger on its live evidence?",
        body=f"{{{{ ti.xcom_pull(task_ids='{LiveTasks.DECIDE}') | tojson }}}}",
        response_timeout=timedelta(days=2),
        execution_timeout=timedelta(minutes=5),
    )
    promoted = promote_challenger(step)
    route_experiment(step) >> [approval, promoted, no_promotion(step)]
    approval >> promoted >> close_experiment(step)


online_evaluation()
