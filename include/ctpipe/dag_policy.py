"""What every DAG of the project shares: retries, timeouts, the failure alert, start date, asset names and task ids.

Cheap to import: DAG files read it at parse time. Besides the package's light modules it
imports only Airflow's notifier base, for the failure alert. A task id that other code
refers to (a branch's target, an XCom pull, a test) is a constant here, the one place it
is spelled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ctpipe.alert_notifier import FailureAlert
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
    # After the last try only (a retry calls on_retry_callback): a person hears of a task that failed for good.
    "on_failure_callback": FailureAlert(),
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
    GO_LIVE = "start_live_experiment"


class LiveTasks:
    EVALUATE = "evaluate_live"
    DECIDE = "decide_experiment"
    ROUTE = "route_experiment"
    APPROVE = "await_live_approval"
    PROMOTE = "promote_challenger"
    CLOSE = "close_experiment"
    NO_PROMOTION = "no_promotion"


def asset_event_extras(triggering_asset_events: Any) -> list[dict[str, Any]]:
    """The ``extra`` of every asset event that triggered a run (none for a manual run), empty ones left out."""
    return [event.extra for events in (triggering_asset_events or {}).values() for event in events if event.extra]


def plain_utc(moment: Any) -> datetime:
    """Airflow's pendulum time as a plain UTC datetime: pendulum drops the zone of some sums (``t - timedelta``)."""
    return datetime.fromtimestamp(moment.timestamp(), tz=UTC)


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
