"""
### Training: train a challenger, register it, and decide on evidence whether it becomes champion

Triggered by a `retrain_request` asset event (the `monitoring` DAG publishes one when drift
crosses its threshold), or by hand from the trigger form: model family, hyperparameters,
cutoff and approval mode.

1. **plan_training** fixes the cutoff (from the form, the retrain request, or the newest
   validated interval), family and hyperparameters.
2. **train_model** runs `python -m ctpipe.training --plan ...`: a Kubernetes pod when
   `CTPIPE_TRAINING_BACKEND=kubernetes`, otherwise the same command as a local process.
   Point-in-time training set from Feast, time-based holdout, everything logged to MLflow.
3. **register_model** adds a version of the registered model, alias `challenger`, tagged with
   its data interval, metrics and validation status. A model trained on the champion's own
   data window is no challenger: it is not registered (its run's `registration` tag says
   why) and the rest of the run is skipped.
4. **evaluate_models** scores challenger and champion on the same, most recent holdout and
   decides by the thresholds and margin; the decision, its reasons and links to its evidence
   (validation reports, Data Docs, drift report, logged to the model's run) go into the
   version's tags and description. A backfill never promotes.
5. **route** promotes, waits for a human (`approval_mode = human`), or keeps the champion.
   With a champion to compare against and `CTPIPE_SERVING_CHALLENGER_POLICY` set to `canary`
   or `ab`, a passing review does not promote at once: **start_live_experiment** sends the
   challenger its first share of live traffic, and the `online_evaluation` DAG decides on
   the served traffic whether it ramps, is promoted (after a person's approval when
   `approval_mode = human`) or is rolled back.
6. **promote_champion** moves `champion` (the old one stays as `previous_champion`), but only
   while the champion is still the one the review compared against: an approval that comes
   after another promotion or a rollback is refused, with the reason on the version. Every
   alias move is recorded in the registered model's audit trail.

Roll back with the `rollback_champion` DAG.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Asset, Param, dag, task

from ctpipe.dag_policy import (
    DATASET,
    DEFAULT_ARGS,
    RETRAIN_REQUEST,
    START_DATE,
    TrainingTasks,
    asset_event_extras,
    fail_fast_on_configuration_error,
    task_actor,
)
from ctpipe.records import APPROVAL_MODES, FAMILIES, TrainingPlan
from ctpipe.settings import Settings

BACKEND = Settings.from_env().training_backend


@task(task_id=TrainingTasks.PLAN, multiple_outputs=False)
@fail_fast_on_configuration_error
def plan_training(params=None, triggering_asset_events=None, dag_run=None) -> dict:
    from ctpipe.records import RetrainRequest
    from ctpipe.training_launch import make_plan

    requests = [RetrainRequest.from_dict(extra) for extra in asset_event_extras(triggering_asset_events)]
    if params.get("retrain_request"):  # a run started with the request as conf (the local main job)
        requests.append(RetrainRequest.from_dict(params["retrain_request"]))
    run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
    return make_plan(dict(params), requests, run_type).to_dict()


@task(task_id=TrainingTasks.TRAIN, multiple_outputs=False)
@fail_fast_on_configuration_error
def train_locally(plan: dict) -> dict:
    from ctpipe.training_launch import run_locally

    return run_locally(TrainingPlan.from_dict(plan)).to_dict()


@task(task_id=TrainingTasks.REGISTER, multiple_outputs=False)
@fail_fast_on_configuration_error
def register_model(result: dict, plan: dict, ti=None) -> dict:
    from airflow.sdk.exceptions import AirflowSkipException

    from ctpipe.records import TrainingResult
    from ctpipe.review import SameDataAsChampion, register_challenger

    try:
        registered = register_challenger(TrainingResult.from_dict(result), TrainingPlan.from_dict(plan), task_actor(ti))
    except SameDataAsChampion as same:  # nothing to review: the rest of the run is skipped, and says why
        raise AirflowSkipException(str(same)) from None
    return registered.to_dict()


@task(task_id=TrainingTasks.EVALUATE, multiple_outputs=False)
@fail_fast_on_configuration_error
def evaluate_models(registered: dict, plan: dict) -> dict:
    from ctpipe.records import RegisteredVersion
    from ctpipe.review import review_challenger

    return review_challenger(RegisteredVersion.from_dict(registered), TrainingPlan.from_dict(plan)).to_dict()


@task.branch(task_id=TrainingTasks.ROUTE)
@fail_fast_on_configuration_error
def route(review: dict, plan: dict) -> str:
    from ctpipe.records import Review
    from ctpipe.rollout import goes_live

    if not review["promote"]:
        return TrainingTasks.KEEP
    if goes_live(Review.from_dict(review), Settings.from_env()):
        return TrainingTasks.GO_LIVE
    return TrainingTasks.APPROVE if plan["approval"] == "human" else TrainingTasks.PROMOTE


@task(task_id=TrainingTasks.GO_LIVE, multiple_outputs=False)
@fail_fast_on_configuration_error
def start_live_experiment(review: dict, plan: dict, dag_run=None, ti=None) -> dict:
    from airflow.sdk.exceptions import AirflowFailException

    from ctpipe.records import Review
    from ctpipe.rollout import start

    if plan["backfill"] or dag_run.run_type == "backfill":
        raise AirflowFailException("refusing to start a live experiment in a backfill run")
    return start(Review.from_dict(review), TrainingPlan.from_dict(plan), task_actor(ti)).to_dict()


@task(task_id=TrainingTasks.PROMOTE, trigger_rule="none_failed_min_one_success", multiple_outputs=False)
@fail_fast_on_configuration_error
def promote_champion(review: dict, plan: dict, dag_run=None, ti=None) -> dict:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from ctpipe.alerts import alert_promotion
    from ctpipe.records import Review
    from ctpipe.review import promote_reviewed

    if review is None:  # the review was skipped: no challenger was registered
        raise AirflowSkipException("nothing to promote: no challenger was registered")
    if plan["backfill"] or dag_run.run_type == "backfill":  # the decision said so too; never move aliases
        raise AirflowFailException("refusing to promote in a backfill run")
    promotion = promote_reviewed(Review.from_dict(review), task_actor(ti))
    alert_promotion(promotion, model=review["name"], ti=ti)
    return promotion.to_dict()


@task(task_id=TrainingTasks.KEEP)
def keep_champion(review: dict) -> list[str]:
    return review["reasons"]


@dag(
    schedule=Asset(RETRAIN_REQUEST),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["ctpipe", "training", "mlflow", DATASET.name],
    default_args=DEFAULT_ARGS,
    params={
        "family": Param(TrainingPlan.family, enum=list(FAMILIES), title="Model family"),
        "max_iter": Param(None, type=["null", "integer"], minimum=10, description="sklearn: boosting rounds"),
        "learning_rate": Param(None, type=["null", "number"], exclusiveMinimum=0, description="step size"),
        "hidden_units": Param(None, type=["null", "integer"], minimum=4, description="torch: width of hidden layers"),
        "epochs": Param(None, type=["null", "integer"], minimum=1, description="torch: passes over the data"),
        "cutoff": Param(
            None, type=["null", "string"], format="date-time", description="Labels known before it; empty: newest data"
        ),
        "days": Param(
            TrainingPlan.days,
            type="integer",
            minimum=TrainingPlan.MIN_DAYS,
            description="Days of events in the training set",
        ),
        "holdout_days": Param(
            TrainingPlan.holdout_days,
            type="integer",
            minimum=TrainingPlan.MIN_HOLDOUT_DAYS,
            description="Newest days kept for evaluation",
        ),
        "seed": Param(TrainingPlan.seed, type="integer", minimum=0, description="Random seed of the training run"),
        "approval_mode": Param(
            TrainingPlan.approval,
            enum=list(APPROVAL_MODES),
            description="human: a person approves before the champion alias moves",
        ),
        "retrain_request": Param(
            None,
            type=["null", "object"],
            description="Leave empty: the retrain request of the monitoring DAG, when a run is started with it",
        ),
    },
    doc_md=__doc__,
)
def training():
    plan = plan_training()
    if BACKEND == "kubernetes":
        from ctpipe.training_launch import pod_operator

        pod = pod_operator()
        plan >> pod
        result = pod.output
    else:
        result = train_locally(plan)
    review = evaluate_models(register_model(result, plan), plan)
    approval = ApprovalOperator(
        task_id=TrainingTasks.APPROVE,
        subject="Promote the challenger to champion?",
        body=f"{{{{ ti.xcom_pull(task_ids='{TrainingTasks.EVALUATE}') | tojson }}}}",
        response_timeout=timedelta(days=2),
        execution_timeout=timedelta(minutes=5),
    )
    promoted = promote_champion(review, plan)
    route(review, plan) >> [approval, promoted, keep_champion(review), start_live_experiment(review, plan)]
    approval >> promoted


training()
