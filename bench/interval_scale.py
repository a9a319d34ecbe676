"""One large interval through extract, gate, features and materialize: time linear in rows, memory bounded.

    python -m bench.interval_scale [--sizes 1000000,10000000]

The smallest size is seeded once (the main job's generator, one day, 5% bad rows); each
larger size is the same rows copied ``size / smallest`` times under new sample ids (an
outcome follows its sample), so every size holds the same mix of good and bad rows. Each
size gets a throwaway embedded deployment and a fresh child process, which first runs the
day before (no rows: imports, the gate's and Feast's registrations) and then the day, with
the ingest and features DAGs' task functions: ``extract_table`` and ``validate_extraction``
per table, ``build_interval_features``, ``publish_online``. It answers each stage's seconds
and its peak memory (``VmHWM``).

Two rows per larger size:
- time: against the smallest size's time scaled by the rows (``x`` above 1 is worse than
  linear); goal 1.25;
- peak memory: against the 4 GB budget; goal 1.0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.harness import Row, answer, emit, in_child, peak_rss_mb

DAY = date(2026, 1, 5)
BUDGET_MB = 4096
LINEAR_GOAL = 1.25
STAGES = ("extract", "validate", "features", "materialize")


def interval(day: date):
    from ctpipe.records import Interval

    start = datetime.combine(day, datetime.min.time(), UTC)
    return Interval(start, start + timedelta(days=1))


def side() -> None:
    """Run the day before, then the day; answer the day's seconds per stage and the peak memory."""
    from ctpipe.feature_store import publish_online
    from ctpipe.features import build_interval_features
    from ctpipe.ingest import extract_table
    from ctpipe.settings import Settings
    from ctpipe.validation import validate_extraction

    tables = [table.name for table in Settings.from_env().dataset.tables]
    for day in (DAY - timedelta(days=1), DAY):
        seconds = dict.fromkeys(STAGES, 0.0)
        rows = {}
        for table in tables:
            started = time.perf_counter()
            extraction = extract_table(table, interval(day))
            seconds["extract"] += time.perf_counter() - started
            started = time.perf_counter()
            outcome = validate_extraction(extraction)
            seconds["validate"] += time.perf_counter() - started
            rows[table] = outcome.rows_in
        started = time.perf_counter()
        build_interval_features(interval(day))
        seconds["features"] = time.perf_counter() - started
        started = time.perf_counter()
        publish_online([interval(day)])
        seconds["materialize"] = time.perf_counter() - started
    answer({"seconds": seconds, "rows": rows, "peak_mb": peak_rss_mb()})


def replicate(source: Path, copies: int) -> None:
    """Each table's rows ``copies`` times, the copies under new sample ids: the same mix of rows, more of it."""
    with sqlite3.connect(source) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            conn.execute(f"CREATE TABLE base_{table} AS SELECT * FROM {table}")
            for copy in range(1, copies):
                picked = ", ".join(f"sample_id || '~{copy}'" if c == "sample_id" else c for c in columns)
                conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {picked} FROM base_{table}")
            conn.execute(f"DROP TABLE base_{table}")


def deployment(home: Path, source: Path, gate_chunk_rows: int | None) -> dict[str, str]:
    state = home / "state"
    state.mkdir(parents=True)
    env = {
        **os.environ,
        "CTPIPE_DATASET": "lab_qc",
        "CTPIPE_STATE_DIR": str(state),
        "CTPIPE_START_DATE": str(DAY - timedelta(days=1)),
        "AIRFLOW_CONN_CTPIPE_SOURCE": json.dumps({"conn_type": "sqlite", "host": str(source)}),
    }
    if gate_chunk_rows:
        env["CTPIPE_GATE_CHUNK_ROWS"] = str(gate_chunk_rows)
    for name in ("MLFLOW_TRACKING_URI", "CTPIPE_LAKE_DIR", "CTPIPE_PUSHGATEWAY_URL", "CTPIPE_KEY_INDEX_URL"):
        env.pop(name, None)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda t: [int(s) for s in t.split(",")], default=[1_000_000, 10_000_000])
    parser.add_argument("--quick", action="store_true", help="20,000 and 200,000 rows, the gate in 50,000-row chunks")
    parser.add_argument("--side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side()
        return
    sizes, chunk_rows = ([20_000, 200_000], 50_000) if args.quick else (sorted(args.sizes), None)

    from ctpipe.datasets import get_dataset
    from ctpipe.datasets.synthetic import GeneratorConfig
    from ctpipe.seed import seed

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-interval-") as tmp:
        work = Path(tmp)
        base = work / "base.db"
        config = GeneratorConfig(start=DAY, days=1, rows_per_day=int(sizes[0] / 1.15), drift_kind="none")
        seed(f"sqlite:///{base}", config, get_dataset("lab_qc"))
        for size in sizes:
            home = work / str(size)
            home.mkdir()
            source = home / "source.db"
            shutil.copy(base, source)
            replicate(source, size // sizes[0])
            print(f"{size:,} rows: seeded; running the day", file=sys.stderr, flush=True)
            results[size] = in_child("bench.interval_scale", "--side", env=deployment(home, source, chunk_rows))
            print(f"{size:,} rows: {results[size]}", file=sys.stderr, flush=True)
            shutil.rmtree(home)

    smallest = results[sizes[0]]
    rows = []
    for size in sizes[1:]:
        found = results[size]
        scale = found["rows"]["lab_samples"] / smallest["rows"]["lab_samples"]
        total, expected = sum(found["seconds"].values()), sum(smallest["seconds"].values()) * scale
        stages = ", ".join(f"{stage} {found['seconds'][stage]:.0f} s" for stage in STAGES)
        rows.append(
            Row(
                measure=f"one interval of {found['rows']['lab_samples']:,} samples, extract to online store",
                project="ingest and features task functions, end to end",
                raw=f"{smallest['rows']['lab_samples']:,} samples' time x {scale:.0f} (linear)",
                unit="s",
                project_value=total,
                raw_value=expected,
                n=1,
                project_peak_mb=found["peak_mb"],
                raw_peak_mb=smallest["peak_mb"],
                goal=LINEAR_GOAL,
                note=stages,
            )
        )
        rows.append(
            Row(
                measure=f"peak memory, one interval of {found['rows']['lab_samples']:,} samples",
                project="ingest and features task functions, end to end",
                raw="the 4 GB budget",
                unit="MB",
                project_value=found["peak_mb"],
                raw_value=BUDGET_MB,
                n=1,
                goal=1.0,
                note=f"{smallest['peak_mb']:.0f} MB at {smallest['rows']['lab_samples']:,} samples",
            )
        )
    emit(rows)


if __name__ == "__main__":
    main()
