"""Does the validation gate cost more as history grows? Its time per day, day after day.

    python -m bench.gate_history [--days 200] [--rows-per-day 350]

Seeds a SQLite source with ``--days`` days of samples, then extracts and validates
them one day at a time into one lake, one GX project and one index of validated keys,
as the ingest DAG does. Prints the gate's median seconds per block of 50 days and the
ratio of the last block to the first: near 1 when the cost does not grow with history.
GX rebuilds the Data Docs index on every run and reads each result it lists, so the
gate lists the newest ``ctpipe.data_docs.DATA_DOCS_INDEX_RUNS`` runs only;
``--index-runs 0`` lists them all, as GX does by default, for comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

BLOCK = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=200)
    parser.add_argument("--rows-per-day", type=int, default=350)
    parser.add_argument("--index-runs", type=int, help="runs the Data Docs index lists (0: all)")
    args = parser.parse_args()

    import sqlalchemy as sa

    import ctpipe.data_docs as data_docs
    import ctpipe.validation as validation
    from ctpipe.datasets import get_dataset
    from ctpipe.ingest import extract_interval
    from ctpipe.key_index import KeyIndex
    from ctpipe.lake import Lake
    from ctpipe.records import Interval

    if args.index_runs is not None:
        data_docs.DATA_DOCS_INDEX_RUNS = args.index_runs or None
    work = Path(tempfile.mkdtemp(prefix="ctpipe-bench-history-"))
    start = date(2026, 1, 1)
    url = f"sqlite:///{work / 'source.db'}"
    seed = [sys.executable, "-m", "ctpipe.seed", "--url", url, "--start", str(start), "--days", str(args.days)]
    subprocess.run([*seed, "--rows-per-day", str(args.rows_per_day)], check=True, capture_output=True)
    spec, engine = get_dataset("lab_qc").events, sa.create_engine(url)
    lake, keys = Lake(work / "lake"), KeyIndex.from_url(f"sqlite:///{work / 'keys.sqlite'}")
    seconds: list[float] = []
    for day in range(args.days):
        begin = datetime.combine(start, datetime.min.time(), UTC) + timedelta(days=day)
        interval = Interval(begin, begin + timedelta(days=1))
        raw = extract_interval(engine, spec, interval, lake, 50_000)
        started = time.perf_counter()
        validation.validate_partition(
            spec, raw.uri, interval, lake, work / "gx", work / "reports" / f"{day}.json", 1.0, keys=keys
        )
        seconds.append(time.perf_counter() - started)
    keys.close()
    engine.dispose()

    blocks = [seconds[i : i + BLOCK] for i in range(0, len(seconds), BLOCK)]
    medians = [statistics.median(block) for block in blocks]
    for number, median in enumerate(medians):
        print(f"days {number * BLOCK + 1:>4}-{number * BLOCK + len(blocks[number]):<4} {median * 1000:8.1f} ms")
    result = {
        "bench": "gate_history",
        "days": args.days,
        "index_runs": data_docs.DATA_DOCS_INDEX_RUNS,
        "median_ms_per_block": [round(m * 1000, 1) for m in medians],
        "last_over_first": round(medians[-1] / medians[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
