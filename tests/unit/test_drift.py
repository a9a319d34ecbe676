"""Drift statistics on the lab_qc generator's data: quiet on the same distribution, loud on the shifted one.

The calibration itself, on data it was not tuned on, is ``test_drift_calibration``'s.
"""

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ctpipe.datasets.lab_qc_generator import failure_logit, generate, make_labs
from ctpipe.datasets.synthetic import GeneratorConfig
from ctpipe.drift import (
    PREDICTION,
    RETRAIN,
    SKIP,
    WAIT_FOR_LABELS,
    DriftPolicy,
    calibrate,
    current_window,
    retrain_decision,
    run_report,
)

NUMERIC = ["concentration_ng_ul", "volume_ul", "a260_280", "a260_230", "rin", "storage_temp_c", "transit_hours"]
CATEGORICAL = ["sample_type", "courier"]
POLICY = DriftPolicy()


def window(seed: int, start: date, days: int, drift_start: date | None = None) -> pd.DataFrame:
    config = GeneratorConfig(
        start=start, days=days, rows_per_day=400, seed=seed, bad_row_share=0, drift_start=drift_start
    )
    samples, _ = generate(config)
    labs = make_labs(config.entities, seed)
    skill = pd.Series(labs.skill, index=labs.ids)[samples["lab_id"]].to_numpy()
    # A fixed scorer stands in for the champion: the pre-drift risk function.
    samples[PREDICTION] = 1 / (1 + np.exp(-failure_logit(samples, skill, concept_shift=False)))
    return samples


def thresholds(reference: pd.DataFrame, current: pd.DataFrame, seed: int):
    return calibrate(
        reference,
        current,
        [*NUMERIC, PREDICTION],
        CATEGORICAL,
        POLICY,
        entity="lab_id",
        timestamp="submitted_at",
        seed=seed,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_distribution_raises_no_alarm(seed):
    reference = window(seed, date(2026, 1, 5), 4)
    current = window(seed, date(2026, 1, 19), 7)  # two weeks later, nothing changed
    _, summary = run_report(reference, current, NUMERIC, CATEGORICAL, thresholds(reference, current, seed), POLICY)
    assert not summary["drift_detected"], summary
    assert summary["drifted_columns"] == []
    assert summary["prediction_score"] < summary["prediction_threshold"]


@pytest.mark.parametrize("seed", [1, 2])
def test_shifted_data_is_flagged(seed):
    reference = window(seed, date(2026, 1, 5), 4)
    current = window(seed, date(2026, 1, 19), 7, drift_start=date(2026, 1, 19))
    calibrated = thresholds(reference, current, seed)
    snapshot, summary = run_report(reference, current, NUMERIC, CATEGORICAL, calibrated, POLICY)
    assert summary["drift_detected"]
    assert {"transit_hours", "storage_temp_c"} <= set(summary["drifted_columns"])
    assert summary["prediction_drifted"]
    assert summary["column_thresholds"] == {c: round(t, 6) for c, t in calibrated.by_column.items()}
    assert summary["calibration"] == calibrated.describe()
    assert "transit_hours" in snapshot.get_html_str(as_iframe=False)
    # Each column's drift is computed once: one ValueDrift per column and no dataset-level recount.
    metrics = [m["config"]["type"].rsplit(":", 1)[-1] for m in snapshot.dict()["metrics"]]
    assert metrics == ["ValueDrift"] * len([*NUMERIC, "prediction", *CATEGORICAL])


def test_retraining_waits_out_the_cooldown_and_for_new_labels():
    drifted = {
        "drift_detected": True,
        "drifted_columns": ["transit_hours"],
        "drifted_share": 0.5,
        "prediction_score": 0.3,
        "prediction_threshold": 0.12,
    }
    now = datetime(2026, 2, 20)
    cutoff = datetime(2026, 2, 12)
    enough = {"new_labels": POLICY.min_new_labels, "cutoff": cutoff}
    decision, reason = retrain_decision(drifted, now - timedelta(days=3), now, POLICY, **enough)
    assert decision == SKIP and "cooldown" in reason
    decision, reason = retrain_decision(drifted, now - timedelta(days=8), now, POLICY, **enough)
    assert decision == RETRAIN and reason.endswith(f"{POLICY.min_new_labels} new labelled events: retrain")
    # Drift, but nothing newer than the champion's cutoff to learn from: noted, and no retrain.
    few = {"new_labels": POLICY.min_new_labels - 1, "cutoff": cutoff}
    decision, reason = retrain_decision(drifted, None, now, POLICY, **few)
    assert decision == WAIT_FOR_LABELS
    assert reason.startswith("drift: 50% of inputs drifted (transit_hours)")
    assert (
        f"drift noted, waiting for labels: {POLICY.min_new_labels - 1} labelled events newer than the champion's "
        f"cutoff 2026-02-12T00:00:00, {POLICY.min_new_labels} needed" in reason
    )
    quiet = {**drifted, "drift_detected": False, "drifted_columns": [], "drifted_share": 0.0, "prediction_score": 0.01}
    decision, reason = retrain_decision(quiet, None, now, POLICY, **few)
    assert decision == SKIP and reason.startswith("no drift")


def test_the_current_window_never_reaches_into_the_champions_fitted_data():
    fitted_until = datetime.fromisoformat("2026-02-08T00:00:00+00:00")  # cutoff 02-12, 4 holdout days
    end = datetime.fromisoformat("2026-02-12T00:00:00+00:00")
    assert current_window(end, fitted_until, POLICY).start == fitted_until
    later = end + timedelta(days=10)
    assert current_window(later, fitted_until, POLICY).start == later - timedelta(days=POLICY.window_days)
    assert current_window(end, end, POLICY) is None  # fitted on everything up to the end: nothing unseen
