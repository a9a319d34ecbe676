"""Throughput of extraction and validation, in rows per second, on this machine.

    python -m bench.ingest_validate [--rows 200000] [--chunk-rows 50000]

Seeds a SQLite source with one day of ``--rows`` samples (5% bad), then times
``extract_interval`` and ``validate_partition`` on that interval, and reports
the peak resident memory of each step. Extraction streams in chunks, so its
memory should stay flat as ``--rows`` grows; validation holds one interval in
memory by design.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from ctpipe.datasets import get_dataset
from ctpipe.datasets.synthetic import GeneratorConfig
from ctpipe.ingest import extract_interval
from ctpipe.key_index import KeyIndex
from ctpipe.lake import Lake
from ctpipe.records import Interval
from ctpipe.validation import validate_partition


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    args = parser.parse_args()

    dataset = get_dataset("lab_qc")
    work = Path(tempfile.mkdtemp(prefix="ctpipe-bench-"))
    day = date(2026, 1, 5)  # a Monday: rows_per_day is scaled by the weekday factor
    config = GeneratorConfig(start=day, days=1, rows_per_day=int(args.rows / 1.15), bad_row_share=0.05)
    # Seed in a child process, so this process's peak memory is extraction's and validation's own.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ctpipe.seed",
            "--url",
            f"sqlite:///{work / 'source.db'}",
            "--start",
            str(day),
            "--days",
            "1",
            "--rows-per-day",
            str(config.rows_per_day),
            "--bad-row-share",
            str(config.bad_row_share),
        ],
        check=True,
        capture_output=True,
    )
    engine = sa.create_engine(f"sqlite:///{work / 'source.db'}")
    start = datetime.combine(day, datetime.min.time(), UTC)
    interval = Interval(start, start + timedelta(days=1))
    lake = Lake(work / "lake")
    table = dataset.events

    before = peak_mb()
    started = time.perf_counter()
    extraction = extract_interval(engine, table, interval, lake, args.chunk_rows)
    extract_s = time.perf_counter() - started
    extract_peak = peak_mb()

    keys = KeyIndex.from_url(f"sqlite:///{work / 'keys.sqlite'}")
    # GX's first use in a process pays for its import and project setup: measure it apart.
    warm_up = Interval(interval.start - timedelta(days=1), interval.start)
    validate_partition(
        table,
        extract_interval(engine, table, warm_up, lake, 1000).uri,
        warm_up,
        lake,
        work / "gx",
        work / "r.json",
        1.0,
        keys=keys,
    )
    started = time.perf_counter()
    outcome = validate_partition(
        table, extraction.uri, interval, lake, work / "gx", work / "report.json", 1.0, keys=keys
    )
    validate_s = time.perf_counter() - started

    result = {
        "rows": extraction.rows,
        "chunk_rows": args.chunk_rows,
        "extract_seconds": round(extract_s, 2),
        "extract_rows_per_second": round(extraction.rows / extract_s),
        "validate_seconds": round(validate_s, 2),
        "validate_rows_per_second": round(outcome.rows_in / validate_s),
        "rows_quarantined": outcome.rows_quarantined,
        "peak_rss_mb_before": round(before),
        "peak_rss_mb_after_extract": round(extract_peak),
        "peak_rss_mb_after_validate": round(peak_mb()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
