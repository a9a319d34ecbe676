"""Cost of the validation gate against a hand-vectorized pandas version of the same checks.

    python -m bench.gate [--sizes 400,10000,100000,1000000] [--repeats 5] [--large-repeats 2]

For each size, seeds a SQLite source with one day of about that many samples
(5% bad, as ``bench.ingest_validate`` does) and extracts the day's raw partition.
Then two fresh child processes each split that partition into validated and
quarantine partitions: one with ``ctpipe.validation.validate_partition`` (the
GX checkpoint), one with ``validate_partition_pandas`` below, which makes the
suite's checks -- exact column set, not-null, conditional not-null, ranges,
allowed values, identifier rules, key uniqueness, timestamp in the interval --
with plain pandas and numpy, and writes the same partitions and report. What
needs no suite (declared types, exact duplicates, values extraction could not
type) is the gate's own ``before_the_suite`` on both sides. The bench fails
unless both sides quarantine the same rows for the same reasons (a row's
reasons compared as a set), validate the same rows, and count the same failures.

Time: each child calls its side once to warm up (the gate's first call
registers the datasource, suite and checkpoint in a fresh GX project), then
``--repeats`` more times (``--large-repeats`` from 500,000 rows), and reports
the median. Every call validates the same interval, so the gate's later runs
overwrite one stored validation result and one Data Docs page: the GX project
does not grow between repeats.

Each child gets a fresh index of validated keys (``ctpipe.key_index``), and both sides
make the same look-ups and updates in it (the pandas side runs the gate's own ``validate_partition``);
the JSON line has the pandas side's seconds in it (``key_index_seconds``), a cost both share, and
the table a second time ratio with it taken off both sides (``x w/o keys``): GX's cost
against pandas alone. Goal marks in the table are for the end-to-end ratio; the JSON
line marks both.

The floor (``GX floor x``): the gate's child also times the same suite over the same rows
through GX's validator alone -- an in-memory project with no stores, checkpoint or Data
Docs -- against the pandas side. No gate built on GX, with one expectation per check,
can be cheaper than that; at small sizes it is most of the gate's cost.

Memory: the peak resident set of each child (``VmHWM`` in ``/proc/self/status``,
the high-water mark of the child's own address space; ``ru_maxrss`` of a child
starts at the RSS of the parent that spawned it). Both children import the same
modules, Great Expectations included, before any work, so the ratio compares
the work and not the import footprint; the table shows that after-imports RSS
too, and the JSON line has each side's peak above it.

Goals, printed with a pass/miss mark and not enforced: gate/pandas time at most
3x at 400 rows and 1.5x at 1,000,000 rows, peak memory at most 1.3x.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.harness import Row, emit

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from ctpipe.datasets.spec import TableSpec
    from ctpipe.lake import Lake
    from ctpipe.records import Interval, ValidationOutcome

DEFAULT_SIZES = (400, 10_000, 100_000, 1_000_000)
LARGE = 500_000  # from this many rows on, a child repeats ``--large-repeats`` times
DAY = date(2026, 1, 5)  # a Monday: rows_per_day is scaled by the weekday factor
BAD_ROW_SHARE = 0.05
TIME_GOALS = {400: 3.0, 1_000_000: 1.5}  # rows -> the most gate/pandas time we aim for
MEMORY_GOAL = 1.3
RESULT_MARKER = "BENCH_GATE_RESULT "  # the child's one line of results, whatever else the libraries print
SIDES = ("gate", "pandas")


def memory_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process in MB."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # no procfs: ru_maxrss (kB on Linux), an upper bound here
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# --- the pandas version of the gate ------------------------------------------------------


def schema_problems_pandas(spec: TableSpec, frame: pd.DataFrame) -> list[str]:
    """The problems GX's column-set expectation finds in ``frame``."""
    found, wanted = set(frame.columns), set(spec.column_names)
    problems = []
    if missing := sorted(wanted - found):
        problems.append(f"missing column(s) {missing}")
    if unexpected := sorted(found - wanted):
        problems.append(f"unexpected column(s) {unexpected}")
    return problems


def _edge_whitespace(text: np.ndarray) -> np.ndarray:
    """Which values ``EDGE_WHITESPACE`` finds something in.

    For ``^\\s|\\s$``: ``re``'s ``\\s`` and ``str.isspace`` are the same Unicode test, and where
    ``\\s$`` matches before a final newline, that newline is itself whitespace; so the first and
    the last character give the regex's answer, at a fraction of its cost.
    """
    import re

    import numpy as np

    from ctpipe.validation import EDGE_WHITESPACE

    if EDGE_WHITESPACE != r"^\s|\s$":  # another rule: search with it, as GX does
        search = re.compile(EDGE_WHITESPACE).search
        return np.fromiter((search(t) is not None for t in text), bool, len(text))
    return np.fromiter((t[:1].isspace() or t[-1:].isspace() for t in text), bool, len(text))


def row_checks(
    spec: TableSpec, frame: pd.DataFrame, checked: np.ndarray, interval: Interval
) -> list[tuple[str, np.ndarray]]:
    """(quarantine reason, bad-row mask) for each row-level check of the suite, in the suite's order.

    Only the ``checked`` rows can be bad: the gate gives GX the frame without the rows it
    quarantined already (exact duplicates, unfit values), and key uniqueness is decided
    among the others alone. Like GX, every check but not-null looks at non-null values
    only, and a conditional not-null at the rows where its pandas condition holds.
    """
    import re

    import numpy as np

    from ctpipe.validation import OUTSIDE_INTERVAL

    rows = len(frame)
    checks: list[tuple[str, np.ndarray]] = []

    def add(reason: str, bad: np.ndarray) -> None:
        checks.append((reason, bad & checked))

    for column in spec.columns:
        values = frame[column.name]
        present = values.notna().to_numpy()
        if not column.nullable:
            add(f"expect_column_values_to_not_be_null({column.name})", ~present)
        if column.required_when:
            required = frame.eval(column.required_when).to_numpy(dtype=bool)
            add(f"expect_column_values_to_not_be_null({column.name}) where {column.required_when}", required & ~present)
        if column.min_value is not None or column.max_value is not None:
            inside = np.ones(rows, dtype=bool)
            if column.min_value is not None:
                inside &= (values >= column.min_value).to_numpy()
            if column.max_value is not None:
                inside &= (values <= column.max_value).to_numpy()
            add(f"expect_column_values_to_be_between({column.name})", present & ~inside)
        if column.identifier is not None:
            text = values[present].astype(str).to_numpy()  # GX reads each value as str too

            def where(bad_text: np.ndarray, present: np.ndarray = present) -> np.ndarray:
                bad = np.zeros(rows, dtype=bool)
                bad[present] = bad_text
                return bad

            lengths = np.fromiter(map(len, text), np.int64, len(text))
            too_long = (lengths < 1) | (lengths > column.identifier.max_length)
            add(f"expect_column_value_lengths_to_be_between({column.name})", where(too_long))
            add(f"expect_column_values_to_not_match_regex({column.name})", where(_edge_whitespace(text)))
            if column.identifier.pattern:
                search = re.compile(column.identifier.pattern).search  # GX's str.contains: a search
                unmatched = np.fromiter((search(t) is None for t in text), bool, len(text))
                add(f"expect_column_values_to_match_regex({column.name})", where(unmatched))
        if column.allowed_values is not None:
            known = values.isin(list(column.allowed_values)).to_numpy()
            add(f"expect_column_values_to_be_in_set({column.name})", present & ~known)
    key = frame[spec.key][checked]
    shared = np.zeros(rows, dtype=bool)
    shared[checked] = (key.notna() & key.duplicated(keep=False)).to_numpy()
    add(f"expect_column_values_to_be_unique({spec.key})", shared)
    stamps = frame[spec.timestamp]
    inside = ((stamps >= interval.start) & (stamps < interval.end)).to_numpy()
    add(f"{OUTSIDE_INTERVAL}({spec.timestamp})", stamps.notna().to_numpy() & ~inside)
    return checks


def _write_partition(frame: pd.DataFrame, path: Path, schema: pa.Schema, reasons: list[list[str]] | None) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ctpipe.lake import atomic_path
    from ctpipe.validation import QUARANTINE_REASONS

    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    if reasons is not None:
        kind = pa.list_(pa.string())
        table = table.append_column(pa.field(QUARANTINE_REASONS, kind), pa.array(reasons, kind))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return str(path)


class PandasSuite:
    """The suite's checks in pandas, in the place of ``ctpipe.validation.GxSuite``: no stored result, no Data Docs."""

    def __init__(self, spec: TableSpec, interval: Interval):
        self.spec, self.interval = spec, interval

    def check(self, rows: pd.DataFrame, by_row: bool = True) -> tuple[list[str], dict[Any, list[str]]]:
        import numpy as np

        problems = schema_problems_pandas(self.spec, rows)
        reasons: dict[Any, list[str]] = defaultdict(list)
        if by_row and not problems:
            for name, bad in row_checks(self.spec, rows, np.ones(len(rows), bool), self.interval):
                for position in np.flatnonzero(bad):
                    reasons[rows.index[position]].append(name)
        return problems, reasons

    def add(self, expectation_type: str, indices: list[Any]) -> None:
        pass

    def finish(self, docs: list[Any] | None) -> None:
        return None


def validate_partition_pandas(
    spec: TableSpec,
    raw_uri: str | Path,
    interval: Interval,
    lake: Lake,
    report_path: Path,
    max_bad_row_share: float,
    keys: Any,
) -> ValidationOutcome:
    """``ctpipe.validation.validate_partition`` with the suite's checks made in pandas instead of GX.

    Everything else is the gate's own code (reading in chunks, ``before_the_suite``, the index
    of validated keys, the decision, the partitions and the report), so the two sides differ
    in the checks alone.
    """
    from ctpipe.validation import validate_partition

    return validate_partition(
        spec,
        raw_uri,
        interval,
        lake,
        report_path.parent / "gx-unused",
        report_path,
        max_bad_row_share,
        keys=keys,
        suite=PandasSuite(spec, interval),
    )


# --- one side, in a child process --------------------------------------------------------


def day_interval() -> Interval:
    from ctpipe.records import Interval

    start = datetime.combine(DAY, datetime.min.time(), UTC)
    return Interval(start, start + timedelta(days=1))


def key_index(out: Path) -> Any:
    """A fresh index of validated keys for one child, timing its look-ups and updates (both sides make them)."""
    from ctpipe.key_index import KeyIndex

    class TimedKeyIndex(KeyIndex):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.seconds: list[float] = []  # per call of a side

        def lookup(self, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return super().lookup(*args, **kwargs)
            finally:
                self.seconds[-1] += time.perf_counter() - started

        def replace(self, *args: Any, **kwargs: Any) -> None:
            started = time.perf_counter()
            try:
                super().replace(*args, **kwargs)
            finally:
                self.seconds[-1] += time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    return TimedKeyIndex.from_url(f"sqlite:///{out / 'keys.sqlite'}")


def gx_validator_seconds(spec: TableSpec, raw_uri: str, interval: Interval, repeats: int) -> float:
    """The floor under any gate built on GX: the same suite over the same rows through GX's validator alone.

    An in-memory GX project, the gate's result format, no stores, no checkpoint, no Data Docs:
    what is left is GX's own cost per expectation (building each one's metric graph and
    resolving it), which does not shrink with the row count.
    """
    import great_expectations as gx

    from ctpipe.validation import RESULT_FORMAT, RawPartition, before_the_suite, build_suite, interval_parameters

    raw = RawPartition.open(raw_uri)
    found = before_the_suite(spec, raw)
    asset = gx.get_context(mode="ephemeral").data_sources.add_pandas("floor").add_dataframe_asset(spec.name)
    definition = asset.add_batch_definition_whole_dataframe("interval")
    batches = [  # what the gate gives the suite, chunk by chunk
        definition.get_batch(batch_parameters={"dataframe": chunk.frame[~found.marked(chunk.frame)]})
        for chunk in raw.chunks()
    ]
    suite, parameters = build_suite(spec), interval_parameters(interval)
    seconds = []
    for _ in range(repeats + 1):  # the first is the warm-up
        started = time.perf_counter()
        for batch in batches:
            batch.validate(suite, result_format=RESULT_FORMAT, expectation_parameters=parameters)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:])


def child(side: str, raw_uri: str, out: Path, repeats: int) -> None:
    """Warm up, time ``repeats`` calls of one side, print one result line."""
    import great_expectations  # noqa: F401 -- both sides import the same modules: see the module docstring
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from ctpipe.datasets import get_dataset
    from ctpipe.lake import Lake
    from ctpipe.validation import validate_partition

    after_imports, _ = memory_mb()
    spec, interval, lake = get_dataset("lab_qc").events, day_interval(), Lake(out / "lake")
    keys = key_index(out)

    def call() -> ValidationOutcome:
        keys.seconds.append(0.0)
        if side == "gate":
            return validate_partition(spec, raw_uri, interval, lake, out / "gx", out / "report.json", 1.0, keys=keys)
        return validate_partition_pandas(spec, raw_uri, interval, lake, out / "report.json", 1.0, keys)

    call()  # warm-up
    seconds = []
    keys.seconds.clear()
    for _ in range(repeats):
        started = time.perf_counter()
        outcome = call()
        seconds.append(time.perf_counter() - started)
    _, peak = memory_mb()  # before the floor below: the gate's own peak
    keys.close()
    if side == "gate":
        floor = gx_validator_seconds(spec, raw_uri, interval, repeats)
    result = {
        "side": side,
        "seconds": [round(s, 4) for s in seconds],
        "median_seconds": statistics.median(seconds),
        "key_index_seconds": statistics.median(keys.seconds),
        "rss_mb_after_imports": round(after_imports, 1),
        "peak_rss_mb": round(peak, 1),
        "rows_in": outcome.rows_in,
        "rows_quarantined": outcome.rows_quarantined,
        "status": outcome.status,
        "failures": outcome.failures,
    }
    if side == "gate":
        result["gx_validator_seconds"] = floor
    print(RESULT_MARKER + json.dumps(result), flush=True)


def run_child(side: str, raw_uri: str, out: Path, repeats: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.gate", "--child", side, "--raw", raw_uri, "--out", str(out)]
    done = subprocess.run([*command, "--repeats", str(repeats)], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if done.returncode or not lines:
        raise SystemExit(
            f"the {side} child failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1].removeprefix(RESULT_MARKER))


# --- the parent ---------------------------------------------------------------------------


def seed_partition(work: Path, rows: int) -> str:
    """One day of about ``rows`` samples, seeded into SQLite and extracted to a raw partition."""
    import sqlalchemy as sa

    from ctpipe.datasets import get_dataset
    from ctpipe.ingest import extract_interval
    from ctpipe.lake import Lake

    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'source.db'}"
    seed = [sys.executable, "-m", "ctpipe.seed", "--url", url, "--start", str(DAY), "--days", "1"]
    seed += ["--rows-per-day", str(int(rows / 1.15)), "--bad-row-share", str(BAD_ROW_SHARE)]
    subprocess.run(seed, check=True, capture_output=True, env={**os.environ, "CTPIPE_DATASET": "lab_qc"})
    engine = sa.create_engine(url)
    try:
        return extract_interval(engine, get_dataset("lab_qc").events, day_interval(), Lake(work / "raw"), 50_000).uri
    finally:
        engine.dispose()


def _row_keys(table: pa.Table) -> Counter[tuple[str, ...]]:
    """Each row as text (reasons sorted), counted: a multiset that NaN does not break."""
    from ctpipe.validation import QUARANTINE_REASONS

    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    if QUARANTINE_REASONS in columns:
        columns[QUARANTINE_REASONS] = [sorted(r) for r in columns[QUARANTINE_REASONS]]
    return Counter(tuple(repr(v) for v in row) for row in zip(*columns.values(), strict=True))


def assert_same_split(spec: TableSpec, gate: Lake, pandas: Lake, interval: Interval) -> None:
    """Both sides wrote the same partitions, row for row (the order of a row's reasons aside)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ctpipe.validation import QUARANTINE_REASONS

    for zone in ("quarantine", "validated", "held"):
        paths = gate.partition(zone, spec.name, interval), pandas.partition(zone, spec.name, interval)
        if paths[0].exists() != paths[1].exists():
            raise SystemExit(f"MISMATCH: {zone} partition written by {'gate' if paths[0].exists() else 'pandas'} only")
        if not paths[0].exists():
            continue
        tables = [pq.read_table(p) for p in paths]
        if QUARANTINE_REASONS in tables[0].column_names and QUARANTINE_REASONS in tables[1].column_names:
            kind = pa.list_(pa.string())
            for i, table in enumerate(tables):
                ordered = pa.array([sorted(r) for r in table.column(QUARANTINE_REASONS).to_pylist()], kind)
                tables[i] = table.set_column(table.column_names.index(QUARANTINE_REASONS), QUARANTINE_REASONS, ordered)
        if tables[0].equals(tables[1]):
            continue
        rows = [_row_keys(t) for t in tables]
        only = {side: list((rows[i] - rows[1 - i]).elements())[:5] for i, side in enumerate(SIDES)}
        raise SystemExit(
            f"MISMATCH in the {zone} partition: gate {tables[0].num_rows} rows, pandas {tables[1].num_rows} rows; "
            f"only in gate's: {only['gate']}; only in pandas': {only['pandas']}"
        )


def mark(ratio: float, goal: float | None) -> str:
    return "-" if goal is None else ("pass" if ratio <= goal else "MISS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(s) for s in text.split(",")],
        default=list(DEFAULT_SIZES),
        help="comma-separated row counts (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per side after the warm-up")
    parser.add_argument("--large-repeats", type=int, default=2, help=f"timed calls from {LARGE:,} rows on")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--quick", action="store_true", help="400 and 10,000 rows, one repeat: a smoke test")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--raw", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats, args.large_repeats = [400, 10_000], 1, 1
    if args.child:
        child(args.child, args.raw, args.out, args.repeats)
        return

    from ctpipe.datasets import get_dataset
    from ctpipe.lake import Lake

    spec, interval = get_dataset("lab_qc").events, day_interval()
    work = Path(tempfile.mkdtemp(prefix="ctpipe-bench-gate-"))
    results = []
    try:
        for size in args.sizes:
            raw_uri = seed_partition(work / str(size), size)
            repeats = args.repeats if size < LARGE else args.large_repeats
            sides = {side: run_child(side, raw_uri, work / str(size) / side, repeats) for side in SIDES}
            assert_same_split(
                spec, Lake(work / str(size) / "gate" / "lake"), Lake(work / str(size) / "pandas" / "lake"), interval
            )
            if sides["gate"]["failures"] != sides["pandas"]["failures"]:
                raise SystemExit(
                    f"MISMATCH in the failure counts: {sides['gate']['failures']} vs {sides['pandas']['failures']}"
                )
            gate, pandas = sides["gate"], sides["pandas"]
            time_ratio = gate["median_seconds"] / pandas["median_seconds"]
            shared = pandas["key_index_seconds"]
            without_keys = (gate["median_seconds"] - shared) / (pandas["median_seconds"] - shared)
            memory_ratio = gate["peak_rss_mb"] / pandas["peak_rss_mb"]
            results.append(
                {
                    "rows": size,
                    "rows_in": gate["rows_in"],
                    "rows_quarantined": gate["rows_quarantined"],
                    "repeats": repeats,
                    "gate_seconds": round(gate["median_seconds"], 4),
                    "pandas_seconds": round(pandas["median_seconds"], 4),
                    # of the pandas side's time, the index of validated keys (the gate makes the same calls)
                    "key_index_seconds": round(pandas["key_index_seconds"], 4),
                    "time_ratio": round(time_ratio, 2),
                    "time_goal": TIME_GOALS.get(size),
                    "time_mark": mark(time_ratio, TIME_GOALS.get(size)),
                    # both sides less the key index's seconds: what GX costs against pandas alone
                    "time_ratio_without_key_index": round(without_keys, 2),
                    "time_mark_without_key_index": mark(without_keys, TIME_GOALS.get(size)),
                    # GX's validator alone on the same suite and rows: the floor of any GX gate
                    "gx_validator_seconds": round(gate["gx_validator_seconds"], 4),
                    "gx_validator_ratio": round(gate["gx_validator_seconds"] / pandas["median_seconds"], 2),
                    "gate_peak_rss_mb": gate["peak_rss_mb"],
                    "pandas_peak_rss_mb": pandas["peak_rss_mb"],
                    "rss_mb_after_imports": {side: sides[side]["rss_mb_after_imports"] for side in SIDES},
                    "peak_mb_above_imports": {
                        side: round(sides[side]["peak_rss_mb"] - sides[side]["rss_mb_after_imports"], 1)
                        for side in SIDES
                    },
                    "memory_ratio": round(memory_ratio, 2),
                    "memory_goal": MEMORY_GOAL,
                    "memory_mark": mark(memory_ratio, MEMORY_GOAL),
                }
            )
            print(
                f"{size:>9,} rows: same split on both sides ({gate['rows_quarantined']} quarantined)", file=sys.stderr
            )
    finally:
        if args.keep:
            print(f"work folder: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    header = (
        f"{'rows':>9} {'gate ms':>9} {'pandas ms':>9} {'keys ms':>8} {'time x':>7} {'goal':>10} "
        f"{'x w/o keys':>10} {'GX floor x':>10} "
        f"{'gate MB':>8} {'pandas MB':>9} {'imports MB':>10} {'mem x':>6} {'goal':>10}"
    )
    print(header)
    for r in results:
        time_goal = f"<={r['time_goal']}x {r['time_mark']}" if r["time_goal"] else "-"
        memory_goal = f"<={MEMORY_GOAL}x {r['memory_mark']}"
        keys_ms = f"{r['key_index_seconds'] * 1000:.1f}"
        print(
            f"{r['rows_in']:>9,} {r['gate_seconds'] * 1000:>9.1f} {r['pandas_seconds'] * 1000:>9.1f} {keys_ms:>8} "
            f"{r['time_ratio']:>7.2f} {time_goal:>10} {r['time_ratio_without_key_index']:>10.2f} "
            f"{r['gx_validator_ratio']:>10.2f} {r['gate_peak_rss_mb']:>8.0f} {r['pandas_peak_rss_mb']:>9.0f} "
            f"{r['rss_mb_after_imports']['pandas']:>10.0f} {r['memory_ratio']:>6.2f} {memory_goal:>10}"
        )
    print(json.dumps({"bench": "gate", "results": results}))
    emit(
        [
            Row(
                f"validation gate, {r['rows_in']:,} rows",
                "GX checkpoint (validate_partition)",
                "pandas, the same checks",
                "s",
                r["gate_seconds"],
                r["pandas_seconds"],
                r["repeats"],
                r["gate_peak_rss_mb"],
                r["pandas_peak_rss_mb"],
                r["time_goal"],
                note=f"{r['rows_quarantined']:,} quarantined on both sides; GX validator alone "
                f"{r['gx_validator_ratio']:.2f}x",
            )
            for r in results
        ]
    )


if __name__ == "__main__":
    main()
