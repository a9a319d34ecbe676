"""Calibrated drift thresholds on datasets the detector was not tuned on (``tests.unit.stationary``).

False alarms are counted over 200 stationary (reference, current) pairs of four shapes and
sizes, 300 to 50,000 rows; detection over shifted pairs at the pipeline's default window
(7 days of about 400 rows against a 4-day reference). Distances are computed without a
report (``ctpipe.drift.distances``), which a test holds equal to Evidently's own. The
longer sweep, with the rates per scenario, is ``python -m bench.drift``.
"""

from __future__ import annotations

import numpy as np
import pytest

from ctpipe.drift import DriftPolicy, calibrate, decide, distances, report_scores, run_report

from .stationary import (
    CATEGORICAL,
    ENTITY,
    FEATURES,
    NUMERIC,
    TIMESTAMP,
    WINDOWS,
    Shape,
    Shift,
    pair,
    score,
)

POLICY = DriftPolicy()
# (shape, runs): 200 runs in all.
STATIONARY = (
    (Shape("log-normal amounts, 300 rows", rows_per_day=43, entities=10, amount="lognormal"), 80),
    (Shape("Pareto amounts, 2,800 rows", rows_per_day=400, entities=30, amount="pareto"), 60),
    (Shape("log-normal amounts, 10,000 rows", rows_per_day=1430, entities=50, amount="lognormal"), 40),
    (Shape("Pareto amounts, 50,000 rows", rows_per_day=7150, entities=100, amount="pareto"), 20),
)
DEFAULT_WINDOW = Shape("the pipeline's default window", rows_per_day=400, entities=30, amount="lognormal")


def check(shape, rng, run, shift=None, **calibration):
    reference, current = pair(shape, rng, gap_days=int(rng.integers(0, 22)), shift=shift)
    options = {"entity": ENTITY, "timestamp": TIMESTAMP, "windows": WINDOWS, "predict": score, **calibration}
    thresholds = calibrate(reference, current, NUMERIC, CATEGORICAL, POLICY, seed=run, **options)
    return decide(distances(reference, current, NUMERIC, CATEGORICAL), FEATURES, thresholds, POLICY)


def flagged(summary):
    return summary["drifted_columns"] + (["prediction"] if summary["prediction_drifted"] else [])


def test_no_false_alarms_on_stationary_data():
    column_checks = flags = retrains = runs = 0
    by_shape = {}
    for number, (shape, count) in enumerate(STATIONARY):
        rng = np.random.default_rng(1000 + number)
        found = []
        for run in range(count):
            summary = check(shape, rng, run)
            found += flagged(summary)
            retrains += summary["drift_detected"]
        by_shape[shape.name] = found
        column_checks += count * (len(FEATURES) + 1)
        flags += len(found)
        runs += count
    assert runs == 200
    assert flags / column_checks <= 0.05, by_shape
    assert retrains / runs <= 0.05, by_shape


@pytest.mark.parametrize(
    ("shift", "column"), [(Shift("mean"), "amount"), (Shift("mix"), "kind"), (Shift("variance"), "level")]
)
def test_real_shifts_are_caught(shift, column):
    rng = np.random.default_rng(7)
    caught = [column in flagged(check(DEFAULT_WINDOW, rng, run, shift=shift)) for run in range(30)]
    assert sum(caught) / len(caught) >= 0.95, caught


def test_an_aggregate_resampled_row_by_row_cries_wolf():
    """The entity aggregate is one value per entity and day, nearly the same from day to day: drawn
    row by row, as if its rows were independent, its threshold is far too low."""
    rng = np.random.default_rng(11)
    rows = [check(DEFAULT_WINDOW, rng, run, entity=None, windows=None) for run in range(20)]
    rng = np.random.default_rng(11)
    structured = [check(DEFAULT_WINDOW, rng, run) for run in range(20)]
    aggregate = "amount_mean_7d"
    assert sum(aggregate in flagged(s) for s in rows) >= 10
    assert sum(aggregate in flagged(s) for s in structured) <= 1
    for naive, calibrated in zip(rows, structured, strict=True):
        assert calibrated["column_thresholds"][aggregate] > naive["column_thresholds"][aggregate]


def test_thresholds_follow_the_noise_and_never_drop_below_the_minimum_effect():
    small = Shape("small", rows_per_day=20, entities=8, amount="lognormal")
    large = Shape("large", rows_per_day=3000, entities=60, amount="lognormal")
    rng = np.random.default_rng(3)
    thresholds, samples = {}, {}
    for shape in (small, large):
        reference, current = samples[shape.name] = pair(shape, rng)
        thresholds[shape.name] = calibrate(
            reference, current, NUMERIC, CATEGORICAL, POLICY, entity=ENTITY, timestamp=TIMESTAMP, windows=WINDOWS
        )
    for column in ("amount", "count", "level", "kind"):
        assert thresholds["small"].by_column[column] > POLICY.min_effect, thresholds["small"]
        assert thresholds["large"].noise[column] < POLICY.min_effect
        assert thresholds["large"].by_column[column] == POLICY.min_effect
    reference, current = samples["small"]
    described = thresholds["small"].describe()
    assert "400 same-distribution resamples" in described
    assert f"({len(reference)} rows: {reference[ENTITY].nunique()} entities over 4 days)" in described
    assert f"({len(current)} rows: {current[ENTITY].nunique()} entities over 7 days)" in described


def test_a_rerun_calibrates_the_same():
    reference, current = pair(DEFAULT_WINDOW, np.random.default_rng(5), gap_days=3)
    options = {"entity": ENTITY, "timestamp": TIMESTAMP, "windows": WINDOWS, "predict": score, "seed": 42}
    first = calibrate(reference, current, NUMERIC, CATEGORICAL, POLICY, **options)
    again = calibrate(reference, current, NUMERIC, CATEGORICAL, POLICY, **options)
    assert first == again


def test_the_report_shows_the_calibrated_thresholds_and_computes_the_same_distances():
    reference, current = pair(DEFAULT_WINDOW, np.random.default_rng(9), gap_days=10, shift=Shift("mean"))
    features = [c for c in NUMERIC if c != "prediction"]
    thresholds = calibrate(
        reference, current, NUMERIC, CATEGORICAL, POLICY, entity=ENTITY, timestamp=TIMESTAMP, windows=WINDOWS
    )
    snapshot, summary = run_report(reference, current, features, CATEGORICAL, thresholds, POLICY)
    evidently = report_scores(snapshot.dict())
    ours = distances(reference, current, NUMERIC, CATEGORICAL)
    assert evidently.keys() == ours.keys()
    for column, value in ours.items():
        assert evidently[column] == pytest.approx(value, rel=1e-9, abs=1e-12), column
    assert "amount" in summary["drifted_columns"]
    html = snapshot.get_html_str(as_iframe=False)
    assert f"{thresholds.by_column['amount']:.3f}" in html or f"{thresholds.by_column['amount']:.2f}" in html
