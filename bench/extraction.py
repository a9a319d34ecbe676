"""Extraction of one interval against a plain read of the same rows into the same Parquet file.

    python -m bench.extraction [--sizes 100000,1000000] [--repeats 3] [--chunk-rows 50000]

Seeds a SQLite source with one day of about ``size`` samples (``python -m ctpipe.seed``),
then two fresh child processes each write that day's raw partition ``--repeats`` times
(after one warm-up on the day before) and report the median and their peak memory:
- project: ``ctpipe.ingest.extract_interval`` -- the interval's query, streamed in chunks
  of ``--chunk-rows`` into a Parquet writer, with the manifest;
- raw: ``pandas.read_sql`` of the same query, whole, then ``pyarrow.parquet.write_table``
  (mixed columns as text: no typing of values, nothing kept aside).
The project streams so that its memory stays flat as the interval grows; the raw read
holds the interval.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.harness import Row, answer, emit, in_child, median_seconds, peak_rss_mb

DAY = date(2026, 1, 5)  # a Monday: rows_per_day is scaled by the weekday factor
SIDES = ("project", "raw")


def side(name: str, source: Path, work: Path, repeats: int, chunk_rows: int) -> None:
    import sqlalchemy as sa

    from ctpipe.datasets import get_dataset
    from ctpipe.ingest import _reflect, extract_interval, interval_query
    from ctpipe.lake import Lake
    from ctpipe.records import Interval

    engine = sa.create_engine(f"sqlite:///{source}")
    spec = get_dataset("lab_qc").events
    start = datetime.combine(DAY, datetime.min.time(), UTC)
    day = Interval(start, start + timedelta(days=1))
    lake = Lake(work / name)

    def project(interval: Interval = day) -> None:
        extract_interval(engine, spec, interval, lake, chunk_rows)

    def raw(interval: Interval = day) -> None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = _reflect(engine, spec)
        with engine.connect() as connection:
            frame = pd.read_sql(interval_query(engine, table, spec, interval), connection)
        # Mixed columns (the source's bad rows) as text: a plain dump, with no typing or quarantine of values.
        for column in frame.select_dtypes("object").columns:
            frame[column] = frame[column].astype("string")
        path = lake.partition("raw", spec.name, interval)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)

    work_of = {"project": project, "raw": raw}[name]
    work_of(Interval(day.start - timedelta(days=1), day.start))  # imports and first calls, off the clock
    answer({"seconds": median_seconds(work_of, repeats, warmups=0), "peak_mb": peak_rss_mb()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda t: [int(s) for s in t.split(",")], default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true", help="10,000 rows, once: a smoke test")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, args.source, args.work, args.repeats, args.chunk_rows)
        return
    sizes, repeats = ([10_000], 1) if args.quick else (args.sizes, args.repeats)
    work = Path(tempfile.mkdtemp(prefix="ctpipe-bench-extract-"))
    rows = []
    for size in sizes:
        source = work / f"source-{size}.db"
        seed = [sys.executable, "-m", "ctpipe.seed", "--url", f"sqlite:///{source}", "--start", str(DAY)]
        seed += ["--days", "1", "--rows-per-day", str(int(size / 1.15)), "--bad-row-share", "0.05"]
        subprocess.run(seed, check=True, capture_output=True, env={**os.environ, "CTPIPE_DATASET": "lab_qc"})
        found = {
            name: in_child(
                "bench.extraction",
                *("--side", name, "--source", str(source), "--work", str(work / str(size))),
                *("--repeats", str(repeats), "--chunk-rows", str(args.chunk_rows)),
            )
            for name in SIDES
        }
        rows.append(
            Row(
                f"extraction, {size:,} rows (SQLite source)",
                f"extract_interval, {args.chunk_rows:,}-row chunks",
                "pandas.read_sql + write_table",
                "s",
                found["project"]["seconds"],
                found["raw"]["seconds"],
                repeats,
                found["project"]["peak_mb"],
                found["raw"]["peak_mb"],
            )
        )
    emit(rows)


if __name__ == "__main__":
    main()
