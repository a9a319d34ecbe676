"""False-alarm and detection rates of the calibrated drift check: the long sweep behind ``test_drift_calibration``.

    python -m bench.drift [--runs 500] [--detection-runs 200]

Stationary (reference, current) pairs of several shapes and sizes from the tests' own
generator (``tests.unit.stationary``: log-normal and Pareto amounts, small-integer counts,
skewed categories, an entity aggregate, a fixed scorer's prediction), each run a fresh
history, the current window 0 to 21 days after the reference. For each shape: the share
of column-checks that flag a column (per column, and in all) and the share of runs that
would request a retrain. Then, at the pipeline's default window, the share of runs in
which each real shift is caught in its column. Also, for comparison, the false-alarm rate
of the fixed threshold the check used before (0.1 for every column).

Prints a table and a JSON line. No goals are enforced here; the tests hold the 5% / 95% bounds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ctpipe.drift import DriftPolicy, calibrate, decide, distances
from tests.unit import stationary
from tests.unit.stationary import Shape, Shift

SHAPES = (
    Shape("log-normal, 300 rows, 10 entities", rows_per_day=43, entities=10, amount="lognormal"),
    Shape("Pareto, 1,000 rows, 20 entities", rows_per_day=143, entities=20, amount="pareto"),
    Shape("log-normal, 2,800 rows, 30 entities", rows_per_day=400, entities=30, amount="lognormal"),
    Shape("Pareto, 2,800 rows, 30 entities", rows_per_day=400, entities=30, amount="pareto"),
    Shape("log-normal, 10,000 rows, 50 entities", rows_per_day=1430, entities=50, amount="lognormal"),
    Shape("Pareto, 50,000 rows, 100 entities", rows_per_day=7150, entities=100, amount="pareto"),
)
DEFAULT_WINDOW = SHAPES[2]
SHIFTS = {"mean": "amount", "mix": "kind", "variance": "level"}
FIXED_THRESHOLD = 0.1  # the check's one threshold for every column before calibration
COLUMNS = [*stationary.FEATURES, "prediction"]


def sweep(shape: Shape, runs: int, seed: int, policy: DriftPolicy, shift: Shift | None = None) -> dict:
    rng = np.random.default_rng(seed)
    flags = dict.fromkeys(COLUMNS, 0)
    fixed = dict.fromkeys(COLUMNS, 0)
    retrains = 0
    seconds = []
    for run in range(runs):
        reference, current = stationary.pair(shape, rng, gap_days=int(rng.integers(0, 22)), shift=shift)
        started = time.perf_counter()
        thresholds = calibrate(
            reference,
            current,
            stationary.NUMERIC,
            stationary.CATEGORICAL,
            policy,
            entity=stationary.ENTITY,
            timestamp=stationary.TIMESTAMP,
            windows=stationary.WINDOWS,
            predict=stationary.score,
            seed=run,
        )
        seconds.append(time.perf_counter() - started)
        scores = distances(reference, current, stationary.NUMERIC, stationary.CATEGORICAL)
        summary = decide(scores, stationary.FEATURES, thresholds, policy)
        for column in summary["drifted_columns"] + (["prediction"] if summary["prediction_drifted"] else []):
            flags[column] += 1
        for column in COLUMNS:
            fixed[column] += scores[column] >= FIXED_THRESHOLD
        retrains += summary["drift_detected"]
    return {
        "shape": shape.name,
        "runs": runs,
        "flag_rate": {c: round(n / runs, 4) for c, n in flags.items()},
        "column_check_flag_rate": round(sum(flags.values()) / (runs * len(COLUMNS)), 4),
        "retrain_rate": round(retrains / runs, 4),
        "fixed_threshold_flag_rate": round(sum(fixed.values()) / (runs * len(COLUMNS)), 4),
        "calibrate_seconds_median": round(float(np.median(seconds)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500, help="stationary runs per shape")
    parser.add_argument("--detection-runs", type=int, default=200, help="shifted runs per shift")
    args = parser.parse_args()
    policy = DriftPolicy()

    stationary = [sweep(shape, args.runs, 100 + n, policy) for n, shape in enumerate(SHAPES)]
    detection = {}
    for n, (kind, column) in enumerate(SHIFTS.items()):
        found = sweep(DEFAULT_WINDOW, args.detection_runs, 900 + n, policy, Shift(kind))
        detection[kind] = {"column": column, "caught_rate": found["flag_rate"][column], "runs": args.detection_runs}

    print(f"{'stationary data':<40} {'runs':>5} {'flagged':>8} {'retrain':>8} {'fixed 0.1':>10} {'s/check':>8}")
    for row in stationary:
        print(
            f"{row['shape']:<40} {row['runs']:>5} {row['column_check_flag_rate']:>8.2%} {row['retrain_rate']:>8.2%} "
            f"{row['fixed_threshold_flag_rate']:>10.2%} {row['calibrate_seconds_median']:>8.3f}"
        )
    print(f"\n{'shift at the default window':<40} {'column':>8} {'caught':>8}")
    for kind, row in detection.items():
        print(f"{kind:<40} {row['column']:>8} {row['caught_rate']:>8.2%}")
    print(json.dumps({"bench": "drift", "stationary": stationary, "detection": detection}))


if __name__ == "__main__":
    main()
