"""Cost of the drift check's Evidently report against scipy computing the same distances on the same columns.

    python -m bench.drift_speed [--sizes 100000x16,1000000x16,100000x32] [--repeats 3] [--before]

For each size (rows x columns: a quarter of them categorical, one of them the prediction),
two fresh child processes build the same reference and current frames from one seed:
- project: ``ctpipe.drift.run_report`` (one Evidently ``ValueDrift`` per column, at its
  threshold) and the HTML report written, as the monitoring DAG's check does;
- raw: ``ctpipe.drift.distances``, the same normed Wasserstein and Jensen-Shannon distances
  straight from scipy (the tests hold the two equal).
Each side runs once on the first 2,000 rows to warm up, then ``--repeats`` times: the
median, and the side's peak resident memory. ``--before`` adds the configuration the
check used until this benchmark (Evidently's ``DataDriftPreset``). Goal: at most 3x the raw
computation at 100,000 rows and beyond, and time linear in rows and in columns.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.harness import Row, answer, emit, in_child, median_seconds, peak_rss_mb

GOAL = 3.0
BEFORE = "before: Evidently DataDriftPreset + HTML"  # the check's configuration until this benchmark
SIDES = ("project", "raw")


def frames(rows: int, columns: int, seed: int = 7):
    """(reference, current, numeric, categorical): the current window slightly shifted, as a real check sees."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    categorical = [f"category_{i}" for i in range(columns // 4)]
    numeric = [f"number_{i}" for i in range(columns - len(categorical) - 1)]

    def frame(shift: float) -> pd.DataFrame:
        data = {c: rng.lognormal(shift, 1.0, rows) for c in numeric}
        data.update({c: rng.choice(np.array(list("abcdefgh"), dtype=object), rows) for c in categorical})
        data["prediction"] = rng.beta(2, 8 - shift, rows)
        return pd.DataFrame(data)

    return frame(0.0), frame(0.05), numeric, categorical


def side(name: str, rows: int, columns: int, repeats: int) -> None:
    from ctpipe.drift import PREDICTION, DriftPolicy, Thresholds, distances, run_report

    reference, current, numeric, categorical = frames(rows, columns)
    everything = [*numeric, PREDICTION, *categorical]
    thresholds = Thresholds({c: 0.1 for c in everything}, {c: 0.1 for c in everything}, None, None, 0.0, 0)
    out = Path(tempfile.mkdtemp(prefix="ctpipe-bench-drift-")) / "report.html"

    def project(ref=reference, cur=current) -> None:
        snapshot, _ = run_report(ref, cur, numeric, categorical, thresholds, DriftPolicy())
        snapshot.save_html(str(out))

    def before(ref=reference, cur=current) -> None:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        definition = DataDefinition(numerical_columns=[*numeric, PREDICTION], categorical_columns=categorical)
        preset = DataDriftPreset(
            columns=everything, num_method="wasserstein", cat_method="jensenshannon", per_column_threshold=None
        )
        Report([preset]).run(
            Dataset.from_pandas(cur[everything], data_definition=definition),
            Dataset.from_pandas(ref[everything], data_definition=definition),
        ).save_html(str(out))

    def raw(ref=reference, cur=current) -> None:
        distances(ref, cur, [*numeric, PREDICTION], categorical)

    work = {"project": project, "raw": raw, "before": before}[name]
    work(reference.head(2000), current.head(2000))  # imports and first-call costs, off the clock
    seconds = median_seconds(work, repeats, warmups=0)
    answer({"seconds": seconds, "peak_mb": peak_rss_mb()})


def size(text: str) -> tuple[int, int]:
    rows, columns = text.lower().split("x")
    return int(rows), int(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda t: [size(s) for s in t.split(",")], default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one small size, one repeat: a smoke test")
    parser.add_argument("--before", action="store_true", help="also time the check's former DataDriftPreset")
    parser.add_argument("--side", choices=(*SIDES, "before"), help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--columns", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, args.rows, args.columns, args.repeats)
        return
    sizes = args.sizes or ([(10_000, 16)] if args.quick else [(100_000, 16), (1_000_000, 16), (100_000, 32)])
    repeats = 1 if args.quick else args.repeats
    rows = []
    for count, columns in sizes:
        found = {
            name: in_child(
                "bench.drift_speed",
                "--side",
                name,
                "--rows",
                str(count),
                "--columns",
                str(columns),
                "--repeats",
                str(repeats),
            )
            for name in (*SIDES, *(("before",) if args.before else ()))
        }
        measure = f"drift check, {count:,} rows x {columns} columns"
        for name, how in (("project", "Evidently ValueDrift per column + HTML"), ("before", BEFORE)):
            if name in found:
                rows.append(
                    Row(
                        measure,
                        how,
                        "scipy distances",
                        "s",
                        found[name]["seconds"],
                        found["raw"]["seconds"],
                        repeats,
                        found[name]["peak_mb"],
                        found["raw"]["peak_mb"],
                        GOAL if count >= 100_000 and name == "project" else None,
                    )
                )
    emit(rows)


if __name__ == "__main__":
    main()
