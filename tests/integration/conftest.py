"""Fixtures the integration modules share: runs too slow to repeat per module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SHOP = "ctpipe.datasets.shop_returns:SHOP_RETURNS"
SHOP_DAYS = 24


@dataclass(frozen=True)
class JobRun:
    state: Path
    stdout: str
    env: dict[str, str]  # what the job ran with: the dataset, the state folder, the source


@pytest.fixture(scope="session")
def shop_run(tmp_path_factory, airflow_db) -> JobRun:
    """The second example dataset through the main job, by its import path alone: 24 stationary days.

    ``python -m ctpipe.local_run`` seeds it with its own generator and runs every DAG through
    ``dag.test()``; the first model comes after day 21 (7-day feature windows, 14 days of
    training data), then four drift checks on data that never changed.
    """
    state = tmp_path_factory.mktemp("shop") / "state"
    env = {
        **os.environ,
        "CTPIPE_DATASET": SHOP,
        "CTPIPE_STATE_DIR": str(state),
        "AIRFLOW_CONN_CTPIPE_SOURCE": json.dumps({"conn_type": "sqlite", "host": str(state / "source.db")}),
    }
    job = ["--start", "2026-01-01", "--days", str(SHOP_DAYS), "--rows-per-day", "150", "--drift-kind", "none"]
    done = subprocess.run(
        [sys.executable, "-m", "ctpipe.local_run", *job],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return JobRun(state, done.stdout, {k: env[k] for k in ("CTPIPE_DATASET", "CTPIPE_STATE_DIR")})
