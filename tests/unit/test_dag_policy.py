"""The DAGs' shared policy read from the environment: where catchup starts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ctpipe.dag_policy import fail_fast_on_configuration_error, start_date_from_env
from ctpipe.settings import ConfigurationError


def test_the_start_date_defaults_and_follows_the_environment(monkeypatch):
    monkeypatch.delenv("CTPIPE_START_DATE", raising=False)
    assert start_date_from_env() == datetime(2026, 1, 1, tzinfo=UTC)
    monkeypatch.setenv("CTPIPE_START_DATE", "2025-06-01")
    assert start_date_from_env() == datetime(2025, 6, 1, tzinfo=UTC)
    monkeypatch.setenv("CTPIPE_START_DATE", "2025-06-01T02:00:00+02:00")
    assert start_date_from_env() == datetime(2025, 6, 1, tzinfo=UTC)


def test_a_malformed_start_date_names_the_variable(monkeypatch):
    monkeypatch.setenv("CTPIPE_START_DATE", "June 1st")
    with pytest.raises(ConfigurationError, match=r"CTPIPE_START_DATE must be an ISO date.*'June 1st'"):
        start_date_from_env()


def test_a_configuration_error_fails_the_task_without_retry_and_other_errors_keep_theirs():
    from airflow.sdk.exceptions import AirflowFailException

    @fail_fast_on_configuration_error
    def task(kind: str, params=None) -> str:
        if kind == "config":
            raise ConfigurationError("CTPIPE_X must be a number, got 'ten'")
        if kind == "outage":
            raise ConnectionError("refused")
        return kind

    assert task("fine") == "fine"
    with pytest.raises(AirflowFailException, match="ConfigurationError: CTPIPE_X must be a number"):
        task("config")
    with pytest.raises(ConnectionError):  # a service may come back: retried as usual
        task("outage")
    import inspect

    assert list(inspect.signature(task).parameters) == ["kind", "params"]  # TaskFlow still sees the context args
