"""The DAGs' shared policy read from the environment: where catchup starts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ctpipe.dag_policy import start_date_from_env


def test_the_start_date_defaults_and_follows_the_environment(monkeypatch):
    monkeypatch.delenv("CTPIPE_START_DATE", raising=False)
    assert start_date_from_env() == datetime(2026, 1, 1, tzinfo=UTC)
    monkeypatch.setenv("CTPIPE_START_DATE", "2025-06-01")
    assert start_date_from_env() == datetime(2025, 6, 1, tzinfo=UTC)
    monkeypatch.setenv("CTPIPE_START_DATE", "2025-06-01T02:00:00+02:00")
    assert start_date_from_env() == datetime(2025, 6, 1, tzinfo=UTC)


def test_a_malformed_start_date_names_the_variable(monkeypatch):
    monkeypatch.setenv("CTPIPE_START_DATE", "June 1st")
    with pytest.raises(ValueError, match=r"CTPIPE_START_DATE must be an ISO date.*'June 1st'"):
        start_date_from_env()
