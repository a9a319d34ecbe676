"""The daily cycle: a day's DAG runs, as ``make run`` runs them, against the same work called directly.

    python -m bench.daily_cycle [--days 8] [--rows-per-day 400]

Two throwaway embedded deployments get the same seeded source (the main job's generator, no
drift), each its own state folder and Airflow metadata database. In each, a fresh child
process takes the days in order and reports every day's wall time and its peak memory:
- project: ``ctpipe.local_run.run_day``, the ``ingest``, ``features`` and ``monitoring``
  DAGs through ``dag.test()``, in the order the scheduler runs them;
- raw: what those runs' tasks call, in the same order, in one process with no Airflow:
  ``extract_table`` and ``validate_extraction`` per table, ``build_interval_features`` and
  ``publish_online``, the drift check, and the metrics each task publishes.
The days come before the first model (the longest feature window and the training plan's
days: ``make run``'s first 42): no training, no serving. The first day pays the imports and
the registrations and is left out; the figure is the median of the others. The ratio is
what running the days as Airflow runs costs on top of their work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.harness import Row, answer, emit, in_child, peak_rss_mb

START = date(2026, 1, 1)
SIDES = ("project", "raw")


def days(count: int) -> list:
    from ctpipe.records import Interval

    first = datetime.combine(START, datetime.min.time(), UTC)
    return [Interval(first + timedelta(days=i), first + timedelta(days=i + 1)) for i in range(count)]


def side(name: str, count: int) -> None:
    """Run ``count`` days one way in this process (its environment names the deployment); answer their times."""
    intervals = days(count)
    if name == "project":
        from ctpipe.local_run import load_dags, prepare_airflow, run_day
        from ctpipe.settings import Settings

        prepare_airflow(Settings.from_env())
        dags = load_dags()

        def one(interval) -> None:
            run_day(dags, interval, train_first_model=False)

    else:
        from ctpipe.feature_store import publish_online
        from ctpipe.features import build_interval_features
        from ctpipe.ingest import extract_table
        from ctpipe.monitoring import check
        from ctpipe.pipeline_metrics import publish_drift, publish_materialization, publish_validation
        from ctpipe.settings import Settings
        from ctpipe.validation import validate_extraction

        tables = [table.name for table in Settings.from_env().dataset.tables]

        def one(interval) -> None:
            for table in tables:
                publish_validation(validate_extraction(extract_table(table, interval)))
            build_interval_features(interval)
            publish_materialization(publish_online([interval]))
            publish_drift(check(interval))

    seconds = []
    for interval in intervals:
        started = time.perf_counter()
        one(interval)
        seconds.append(time.perf_counter() - started)
    answer({"seconds": seconds, "peak_mb": peak_rss_mb()})


def deployment(work: Path, name: str, source: Path) -> dict[str, str]:
    """The environment of one side's deployment: its state, its metadata database, the seeded source's copy."""
    home = work / name
    state = home / "state"
    state.mkdir(parents=True)
    shutil.copy(source, state / "source.db")
    env = {
        **os.environ,
        "CTPIPE_DATASET": "lab_qc",
        "CTPIPE_STATE_DIR": str(state),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_CTPIPE_SOURCE": json.dumps({"conn_type": "sqlite", "host": str(state / "source.db")}),
    }
    for name in ("MLFLOW_TRACKING_URI", "CTPIPE_LAKE_DIR", "CTPIPE_PUSHGATEWAY_URL"):
        env.pop(name, None)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--rows-per-day", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="3 days: a smoke test")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    count = 3 if args.quick else args.days
    if args.side:
        side(args.side, count)
        return

    from ctpipe.datasets import get_dataset
    from ctpipe.datasets.synthetic import GeneratorConfig
    from ctpipe.seed import seed

    with tempfile.TemporaryDirectory(prefix="bench-daily-") as tmp:
        work = Path(tmp)
        source = work / "source.db"
        config = GeneratorConfig(start=START, days=count, rows_per_day=args.rows_per_day, drift_kind="none")
        seed(f"sqlite:///{source}", config, get_dataset("lab_qc"))
        results = {}
        for name in SIDES:
            print(f"{name}: {count} days", file=sys.stderr, flush=True)
            env = deployment(work, name, source)
            results[name] = in_child("bench.daily_cycle", "--side", name, "--days", str(count), env=env)
    project, raw = (statistics.median(results[name]["seconds"][1:]) for name in SIDES)
    emit(
        [
            Row(
                measure=f"daily cycle, {args.rows_per_day} rows a day, a day before the first model",
                project="ingest, features, monitoring DAGs through dag.test() (make run)",
                raw="the same task calls in one process, no Airflow",
                unit="s a day",
                project_value=project,
                raw_value=raw,
                n=count - 1,
                project_peak_mb=results["project"]["peak_mb"],
                raw_peak_mb=results["raw"]["peak_mb"],
                note="first day (imports): {:.1f} s / {:.1f} s".format(*(results[n]["seconds"][0] for n in SIDES)),
            )
        ]
    )


if __name__ == "__main__":
    main()
