"""What every DAG of the project shares: retries, timeouts, start date, asset names and task ids.

Pure Python, cheap to import: DAG files read it at parse time. A task id that other code
refers to (a branch's target, an XCom pull, a test) is a constant here, the one place it
is spelled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from ctpipe.records import RecordError
from ctpipe.settings import ConfigurationError, Settings

F = TypeVar("F", bound=Callable[..., Any])


# The first data interval the DAGs know of (CTPIPE_START_DATE); catchup starts here.
START_DATE = Settings.from_env().start_date
# The deployment's dataset (CTPIPE_DATASET): the DAGs' tables, assets and tags follow it.
DATASET = Settings.from_env().dataset

DEFAULT_ARGS = {
    "owner": "ctpipe",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(minutes=30),
}


def raw_asset(table: str) -> str:
    """Name of the Asset an extraction of ``table`` updates."""
    return f"raw_{table}"


def validated_asset(table: str) -> str:
    """Name of the Asset that validated data of ``table`` updates; downstream DAGs schedule on it."""
    return f"validated_{table}"


# Published by the monitoring DAG when drift calls for a new model; the training DAG runs on it.
RETRAIN_REQUEST = "retrain_request"


def extract_task(table: str) -> str:
    return f"extract_{table}"


def validate_task(table: str) -> str:
    return f"validate_{table}"


class MonitoringTasks:
    CHECK = "check_drift"
    DECIDE = "decide_retraining"
    REQUEST = "request_retraining"
    SKIP = "skip_retraining"


class TrainingTasks:
    PLAN = "plan_training"
    TRAIN = "train_model"
    REGISTER = "register_model"
    EVALUATE = "evaluate_models"
    ROUTE = "route"
    APPROVE = "await_approval"
    PROMOTE = "promote_champion"
    KEEP = "keep_champion"


def asset_event_extras(triggering_asset_events: Any) -> list[dict[str, Any]]:
    """The ``extra`` of every asset event that triggered a run (none for a manual run), empty ones left out."""
    return [event.extra for events in (triggering_asset_events or {}).values() for event in events if event.extra]


def task_actor(ti: Any) -> str:
    """Who moves an alias when a task does: the DAG run and task, as the audit trail records it."""
    return f"Airflow {ti.dag_id} / {ti.run_id} / {ti.task_id}"


def fail_fast_on_configuration_error(function: F) -> F:
    """Make a task fail at once, without its retries, on a wrong setting or a malformed record: they stay wrong.

    An unreachable service is another matter: it may come back, so those errors keep the retries.
    """

    @functools.wraps(function)
    def task(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (ConfigurationError, RecordError) as error:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(error).__name__}: {error}") from error

    return task  # type: ignore[return-value]
