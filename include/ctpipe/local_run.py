"""The main job on the embedded default: seed the source, then run the DAGs day by day.

    python -m ctpipe.local_run [--days 60] [--rows-per-day 400] [--drift-start 2026-02-15]

Every DAG runs through Airflow's ``dag.test()`` against the SQLite metadata
database in ``state/``, one data interval after the other, in the order the
scheduler would run them: ``ingest`` for the day, then ``features`` for the
interval its validated-data assets announce. Afterwards the runs are in the
Airflow UI (``make airflow``) like any others.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ctpipe.datasets import get_dataset
from ctpipe.datasets.lab_qc_generator import GeneratorConfig
from ctpipe.lake import Interval
from ctpipe.settings import PROJECT_ROOT, Settings


class RunFailed(RuntimeError):
    pass


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send everything written to stdout and stderr, by Python or not, to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def prepare_airflow(settings: Settings) -> None:
    """Create or upgrade the metadata database, and point the source connection at the seeded file."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(PROJECT_ROOT))
    os.environ.setdefault(
        "AIRFLOW_CONN_CTPIPE_SOURCE",
        json.dumps({"conn_type": "sqlite", "host": str(settings.state_dir / "source.db")}),
    )
    subprocess.run([Path(sys.executable).with_name("airflow"), "db", "migrate"], check=True, capture_output=True)


def load_dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise RunFailed(f"DAG import errors: {bag.import_errors}")
    return bag.dags


def run_dag(dag: Any, logical_date: datetime, conf: dict[str, Any] | None = None) -> Any:
    run = dag.test(logical_date=logical_date, run_conf=conf)
    if run.state != "success":
        failed = [ti.task_id for ti in run.get_task_instances() if ti.state == "failed"]
        raise RunFailed(f"{dag.dag_id} run for {logical_date:%Y-%m-%d} ended {run.state}; failed tasks: {failed}")
    return run


def run_day(dags: dict[str, Any], interval: Interval) -> None:
    # A daily cron-interval run triggered at the interval's end covers [start, end).
    run_dag(dags["ingest"], interval.end)
    run_dag(
        dags["features"],
        interval.end,
        {"interval_start": interval.start.isoformat(), "interval_end": interval.end.isoformat()},
    )


def summary(settings: Settings, intervals: list[Interval], seconds: float) -> str:
    from ctpipe.feature_store import load_store, online_features

    dataset = get_dataset()
    lines = [f"Ran ingest + features over {len(intervals)} daily intervals in {seconds:.0f}s."]
    for table in dataset.tables:
        reports = [
            json.loads((settings.reports_dir / "validation" / table.name / f"{i.key}.json").read_text())
            for i in intervals
        ]
        rows_in = sum(r["rows_in"] for r in reports)
        passed = sum(r["rows_passed"] for r in reports)
        quarantined = sum(r["rows_quarantined"] for r in reports)
        lines.append(f"  {table.name}: {rows_in} rows in, {passed} validated, {quarantined} quarantined")
    values = online_features(load_store(settings), dataset.feature_service, dataset.entity, ["LAB-001"])
    shown = ", ".join(f"{k}={v[0]:.3g}" if isinstance(v[0], float) else f"{k}={v[0]}" for k, v in values.items())
    docs = settings.gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    lines += [
        f"Online features ({dataset.feature_service}) for LAB-001: {shown}",
        "",
        f"Lake:        {settings.lake_dir}/{{raw,validated,quarantine,features}}",
        f"Validation:  {settings.reports_dir / 'validation'} (JSON per interval); Data Docs: file://{docs}",
        "Airflow UI:  make airflow   -> http://localhost:8080",
        "Features:    make serve-features, then",
        "             curl -X POST localhost:6566/get-online-features "
        f"""-d '{{"feature_service": "{dataset.feature_service}", "entities": {{"{dataset.entity}": ["LAB-001"]}}}}'""",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 1, 1))
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rows-per-day", type=int, default=GeneratorConfig.rows_per_day)
    parser.add_argument("--drift-start", type=date.fromisoformat, default=None, help="default: 3/4 into the range")
    parser.add_argument(
        "--no-seed", action="store_true", help="run over the source as it is (AIRFLOW_CONN_CTPIPE_SOURCE), do not seed"
    )
    parser.add_argument("--verbose", action="store_true", help="show the runs' logs here instead of in state/logs")
    args = parser.parse_args(argv)

    from ctpipe.seed import seed

    started = time.perf_counter()
    settings = Settings.from_env()
    drift_start = args.drift_start or args.start + timedelta(days=args.days * 3 // 4)
    config = GeneratorConfig(start=args.start, days=args.days, rows_per_day=args.rows_per_day, drift_start=drift_start)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_seed:
        counts = seed(f"sqlite:///{settings.state_dir / 'source.db'}", config)
        print(f"Seeded {counts} for {config.start} .. {config.end} (drift from {drift_start}).", flush=True)
    logs = settings.state_dir / "logs" / "local_run"

    def quiet(name: str):
        return nullcontext() if args.verbose else output_to(logs / name)

    prepare_airflow(settings)
    with quiet("load_dags.log"):
        dags = load_dags()
    first = datetime.combine(args.start, datetime.min.time(), UTC)
    intervals = [Interval(first + timedelta(days=i), first + timedelta(days=i + 1)) for i in range(args.days)]
    for interval in intervals:
        day_started = time.perf_counter()
        log = logs / f"{interval.start:%Y-%m-%d}.log"
        try:
            with quiet(log.name):
                run_day(dags, interval)
        except RunFailed as error:
            if not args.verbose:
                print("".join(log.read_text().splitlines(keepends=True)[-40:]), file=sys.stderr)
            sys.exit(f"{error}\nFull log: {log}")
        print(f"{interval.start:%Y-%m-%d}: ingest + features ok ({time.perf_counter() - day_started:.1f}s)", flush=True)
    with quiet("summary.log"):
        text = summary(settings, intervals, time.perf_counter() - started)
    print(f"\n{text}\nLogs of every run: {logs}")


if __name__ == "__main__":
    main()
