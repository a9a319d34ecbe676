"""What every DAG of the project shares: retries, timeouts, start date. Pure Python, cheap to import."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ctpipe.settings import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])


def start_date_from_env(default: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> datetime:
    """The first data interval the DAGs know of: ``CTPIPE_START_DATE`` (ISO date, UTC), where catchup begins.

    Point it at the first day of your data; a deployment sets it once, since moving it
    later changes which intervals the scheduler considers.
    """
    raw = os.environ.get("CTPIPE_START_DATE")
    if not raw:
        return default
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigurationError(f"CTPIPE_START_DATE must be an ISO date like 2026-01-01, got {raw!r}") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# The first data interval the DAGs know of; catchup starts here.
START_DATE = start_date_from_env()

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


def asset_event_extras(triggering_asset_events: Any) -> list[dict[str, Any]]:
    """The ``extra`` of every asset event that triggered a run (none for a manual run)."""
    return [event.extra for events in (triggering_asset_events or {}).values() for event in events]


def fail_fast_on_configuration_error(function: F) -> F:
    """Make a task fail at once, without its retries, on a ``ConfigurationError``: a wrong setting stays wrong.

    An unreachable service is another matter: it may come back, so those errors keep the retries.
    """

    @functools.wraps(function)
    def task(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ConfigurationError as error:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(error).__name__}: {error}") from error

    return task  # type: ignore[return-value]
