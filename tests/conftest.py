"""Test-wide setup: an isolated embedded environment per test session.

Airflow reads its configuration when first imported, so the environment is set
in ``pytest_configure``, before any test module imports Airflow. Every test
session gets its own state folder, metadata database and source connection;
the developer's ``state/`` is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ctpipe.serving.upstream import free_port  # noqa: F401  (the one free-port helper; tests import it here)

ROOT = Path(__file__).resolve().parents[1]
SESSION_DIR = Path(tempfile.mkdtemp(prefix="ctpipe-tests-"))
# What a deployment sets for Feast; tests start from the embedded defaults.
FEAST_VARIABLES = (
    "CTPIPE_FEAST_PROJECT",
    "CTPIPE_FEAST_REGISTRY",
    "CTPIPE_FEAST_ONLINE_STORE",
    "CTPIPE_FEAST_OFFLINE_STORE",
    "CTPIPE_FEATURES_DIR",
)
# Measurements tests make along the way (name, numbers), printed at the end of the session.
REPORTS = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    state = SESSION_DIR / "state"
    os.environ.update(
        {
            "AIRFLOW_HOME": str(ROOT),
            "CTPIPE_STATE_DIR": str(state),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{SESSION_DIR / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(SESSION_DIR / "logs"),
            "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(SESSION_DIR / "logs" / "dag_processor"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW_CONN_CTPIPE_SOURCE": json.dumps({"conn_type": "sqlite", "host": str(state / "source.db")}),
        }
    )
    # A developer's alert channels never hear from the tests: alerts go to the session's state folder.
    alerting = [name for name in os.environ if name.startswith("CTPIPE_ALERT_")]
    for name in ("CTPIPE_LAKE_DIR", "CTPIPE_START_DATE", "MLFLOW_TRACKING_URI", *FEAST_VARIABLES, *alerting):
        os.environ.pop(name, None)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for name, numbers in config.stash.get(REPORTS, []):
        terminalreporter.write_line(f"{name}: {json.dumps(numbers)}")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The session's metadata database, migrated once."""
    subprocess.run([Path(sys.executable).with_name("airflow"), "db", "migrate"], check=True, capture_output=True)
    return SESSION_DIR / "airflow.db"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state folder for one test, through the same variable a deployment sets."""
    state = tmp_path / "state"
    monkeypatch.setenv("CTPIPE_STATE_DIR", str(state))
    for name in FEAST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return state
