"""The main job (``make run``), run as a user runs it, on a short range; and how it reports a failed run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration


@pytest.fixture
def embedded(tmp_path, airflow_db):
    state = tmp_path / "state"
    env = {
        **os.environ,
        "CTPIPE_STATE_DIR": str(state),
        "AIRFLOW_CONN_CTPIPE_SOURCE": json.dumps({"conn_type": "sqlite", "host": str(state / "source.db")}),
    }
    return state, env


def main_job(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ctpipe.local_run", "--start", "2026-01-01", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_main_job_seeds_runs_every_day_and_summarises(embedded):
    state, env = embedded
    done = main_job(env, "--days", "2", "--rows-per-day", "120")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2026-01-01: ok" in done.stdout and "2026-01-02: ok" in done.stdout
    assert "Ran ingest, features, monitoring, training and online_evaluation over 2 daily intervals" in done.stdout
    # The summary reads the online store for an entity the data really has: the busiest of the last day.
    last_day = pd.read_parquet(state / "lake" / "validated" / "lab_samples")
    last_day = last_day[last_day["submitted_at"] >= pd.Timestamp("2026-01-02", tz="UTC")]
    busiest = last_day["lab_id"].value_counts().index[0]
    assert (
        f"Online features (lab_quality_v1) for {busiest}, the lab_id with the most events on 2026-01-02, "
        f"at 2026-01-03: lab_id={busiest}"
    ) in done.stdout
    assert "stale_features=False" in done.stdout
    assert "[info" not in done.stdout + done.stderr  # the runs' own logs went to files
    assert "[DAG TEST] end task" in (state / "logs" / "local_run" / "2026-01-02.log").read_text()
    for table in ("lab_samples", "qc_results"):
        assert len(list((state / "lake" / "validated" / table).glob("*.parquet"))) == 2
    assert (state / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").exists()


def test_a_failed_run_stops_the_job_and_points_at_its_log(embedded):
    state, env = embedded
    assert main_job(env, "--days", "1", "--rows-per-day", "50").returncode == 0
    engine = sa.create_engine(f"sqlite:///{state / 'source.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE qc_results RENAME COLUMN qc_outcome TO outcome"))
    engine.dispose()

    failed = main_job(env, "--days", "1", "--no-seed")  # the same day again, over the changed source
    assert failed.returncode == 1
    assert "validate_qc_results" in failed.stderr
    assert f"Full log: {state / 'logs' / 'local_run' / '2026-01-01.log'}" in failed.stderr
    assert "missing column(s) ['qc_outcome']" in failed.stderr  # the log's tail names the cause
    *_, run, cause = failed.stderr.strip().splitlines()  # and the cause is the last thing printed
    assert run.startswith("ingest run for ") and "ended failed" in run
    assert cause.startswith("Cause: ") and "qc_results" in cause and "missing column(s) ['qc_outcome']" in cause
