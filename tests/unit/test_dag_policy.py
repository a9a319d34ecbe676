"""The DAGs' shared policy: a wrong setting or a malformed record fails a task once; an outage is retried."""

from __future__ import annotations

import inspect

import pytest

from ctpipe.dag_policy import fail_fast_on_configuration_error
from ctpipe.records import Interval, RecordError
from ctpipe.settings import ConfigurationError


def test_a_configuration_error_fails_the_task_without_retry_and_other_errors_keep_theirs():
    from airflow.sdk.exceptions import AirflowFailException

    @fail_fast_on_configuration_error
    def task(kind: str, params=None) -> str:
        if kind == "config":
            raise ConfigurationError("CTPIPE_X='ten' is not a number")
        if kind == "record":
            Interval.from_dict({"start": "2026-01-01T00:00:00+00:00"})
        if kind == "outage":
            raise ConnectionError("refused")
        return kind

    assert task("fine") == "fine"
    with pytest.raises(AirflowFailException, match="ConfigurationError: CTPIPE_X='ten' is not a number"):
        task("config")
    with pytest.raises(AirflowFailException, match="RecordError: Interval needs 'end'") as raised:
        task("record")
    assert isinstance(raised.value.__cause__, RecordError)
    with pytest.raises(ConnectionError):  # a service may come back: retried as usual
        task("outage")
    assert list(inspect.signature(task).parameters) == ["kind", "params"]  # TaskFlow still sees the context args


def test_no_task_outlives_the_age_at_which_the_lake_sweeps_its_temporaries():
    """A temporary older than that cannot belong to a running task, so the sweep never takes a live write."""
    from ctpipe.dag_policy import DEFAULT_ARGS
    from ctpipe.lake import STALE_TEMPORARY_AGE

    assert DEFAULT_ARGS["execution_timeout"] < STALE_TEMPORARY_AGE
