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
   its data interval, metrics and validation status.
4. **evaluate_models** scores challenger and champion on the same, most recent holdout and
   decides by the thresholds and margin; the decision and its reasons go into the version's
   tags and description. A backfill never promotes.
5. **route** promotes, waits for a human (`approval_mode = human`), or keeps the champion.
6. **promote_champion** moves `champion` (the old one stays as `previous_champion`).

Roll back with the `rollback_champion` DAG.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Asset, Param, dag, task

from ctpipe.dag_policy import (
    DEFAULT_ARGS,
    RETRAIN_REQUEST,
    START_DATE,
    asset_event_extras,
    fail_fast_on_configuration_error,
)
from ctpipe.datasets import get_dataset
from ctpipe.training_launch import backend, pod_operator, run_locally

DATASET = get_dataset()


@task
@fail_fast_on_configuration_error
def plan_training(params=None, triggering_asset_events=None, dag_run=None) -> dict:
    from ctpipe.training_launch import make_plan

    extras = asset_event_extras(triggering_asset_events)
    return make_plan(dict(params), extras, getattr(dag_run.run_type, "value", dag_run.run_type))


@task(task_id="train_model")
@fail_fast_on_configuration_error
def train_locally(plan: dict) -> dict:
    return run_locally(plan)


@task
@fail_fast_on_configuration_error
def register_model(result: dict, plan: dict) -> dict:
    from ctpipe.registry import register_challenger

    return register_challenger(result, plan)


@task
@fail_fast_on_configuration_error
def evaluate_models(registered: dict, plan: dict) -> dict:
    from ctpipe.registry import review

    return review(registered, plan)


@task.branch
def route(review: dict, plan: dict) -> str:
    if not review["promote"]:
        return "keep_champion"
    return "await_approval" if plan["approval"] == "human" else "promote_champion"


@task(trigger_rule="none_failed_min_one_success")
@fail_fast_on_configuration_error
def promote_champion(review: dict, plan: dict, dag_run=None) -> dict:
    from ctpipe.registry import promote

    if plan["backfill"] or dag_run.run_type == "backfill":  # the decision said so too; never move aliases
        raise ValueError("refusing to promote in a backfill run")
    return promote(review["version"])


@task
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
        "family": Param("sklearn", enum=["sklearn", "torch"], title="Model family"),
        "max_iter": Param(None, type=["null", "integer"], minimum=10, description="sklearn: boosting rounds"),
        "learning_rate": Param(None, type=["null", "number"], exclusiveMinimum=0, description="step size"),
        "hidden_units": Param(None, type=["null", "integer"], minimum=4, description="torch: width of hidden layers"),
        "epochs": Param(None, type=["null", "integer"], minimum=1, description="torch: passes over the data"),
        "cutoff": Param(
            None, type=["null", "string"], format="date-time", description="Labels known before it; empty: newest data"
        ),
        "days": Param(14, type="integer", minimum=2, description="Days of events in the training set"),
        "holdout_days": Param(4, type="integer", minimum=1, description="Newest days kept for evaluation"),
        "approval_mode": Param(
            "auto", enum=["auto", "human"], description="human: a person approves before the champion alias moves"
        ),
    },
    doc_md=__doc__,
)
def training():
    plan = plan_training()
    if backend() == "kubernetes":
        pod = pod_operator()
        plan >> pod
        result = pod.output
    else:
        result = train_locally(plan)
    review = evaluate_models(register_model(result, plan), plan)
    approval = ApprovalOperator(
        task_id="await_approval",
        subject="Promote the challenger to champion?",
        body="{{ ti.xcom_pull(task_ids='evaluate_models') | tojson }}",
        response_timeout=timedelta(days=2),
        execution_timeout=timedelta(minutes=5),
    )
    promoted = promote_champion(review, plan)
    route(review, plan) >> [approval, promoted, keep_champion(review)]
    approval >> promoted


training()
