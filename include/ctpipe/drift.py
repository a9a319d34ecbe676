"""Drift statistics and the retraining decision: Evidently 0.7 over two samples, then pure rules.

Drift is measured as a distance (normed Wasserstein for numbers, Jensen-Shannon for
categories) rather than a p-value: with thousands of rows a p-value flags differences
too small to matter, a distance does not cry wolf. The decision: retrain when the share
of drifted inputs reaches ``feature_share`` or the predictions drifted, unless a
retrain was requested within the cooldown.

No I/O here: ``ctpipe.monitoring`` reads the samples, runs the check and records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ctpipe.records import Interval

if TYPE_CHECKING:
    import pandas as pd

PREDICTION = "prediction"


@dataclass(frozen=True)
class DriftPolicy:
    column_threshold: float = 0.1  # distance from which one column counts as drifted
    feature_share: float = 0.3  # share of drifted inputs that triggers retraining
    prediction_threshold: float = 0.1  # distance from which the predictions count as drifted
    window_days: int = 7
    cooldown_days: int = 7
    reference_rows: int = 5000


def drift_summary(snapshot_dict: dict[str, Any], features: list[str], policy: DriftPolicy) -> dict[str, Any]:
    """Per-column distances out of an Evidently snapshot, and what they add up to."""
    scores = {}
    for metric in snapshot_dict["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            scores[config["column"]] = float(metric["value"])
    missing = sorted(set([*features, PREDICTION]) - set(scores))
    if missing:
        raise RuntimeError(f"the drift report has no result for {missing}")
    drifted = sorted(c for c in features if scores[c] >= policy.column_threshold)
    share = len(drifted) / len(features)
    prediction = scores[PREDICTION]
    return {
        "column_scores": {c: round(scores[c], 6) for c in features},
        "drifted_columns": drifted,
        "drifted_share": share,
        "prediction_score": prediction,
        "prediction_drifted": prediction >= policy.prediction_threshold,
        "drift_detected": share >= policy.feature_share or prediction >= policy.prediction_threshold,
    }


def run_report(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str], policy: DriftPolicy
) -> tuple[Any, dict[str, Any]]:
    """Evidently's data drift preset over the inputs and the predictions: (snapshot, summary)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = numeric + categorical + [PREDICTION]
    definition = DataDefinition(numerical_columns=[*numeric, PREDICTION], categorical_columns=categorical)
    report = Report(
        [
            DataDriftPreset(
                columns=columns,
                num_method="wasserstein",
                cat_method="jensenshannon",
                threshold=policy.column_threshold,
                drift_share=policy.feature_share,
            )
        ]
    )
    snapshot = report.run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    return snapshot, drift_summary(snapshot.dict(), numeric + categorical, policy)


def retrain_decision(
    summary: dict[str, Any], last_request: datetime | None, now: datetime, policy: DriftPolicy
) -> tuple[bool, str]:
    """(retrain?, why) -- the reason is what the branch task and the MLflow run show."""
    if not summary["drift_detected"]:
        return False, (
            f"no drift: {len(summary['drifted_columns'])} drifted inputs ({summary['drifted_share']:.0%} < "
            f"{policy.feature_share:.0%}), prediction distance {summary['prediction_score']:.3f} < "
            f"{policy.prediction_threshold}"
        )
    what = (
        f"drift: {summary['drifted_share']:.0%} of inputs drifted ({', '.join(summary['drifted_columns']) or 'none'}), "
        f"prediction distance {summary['prediction_score']:.3f}"
    )
    if last_request is not None and now - last_request < timedelta(days=policy.cooldown_days):
        return (
            False,
            f"{what}; but a retrain was requested at {last_request.isoformat()}, "
            f"within the {policy.cooldown_days}-day cooldown",
        )
    return True, f"{what}: retrain"


def current_window(end: datetime, fitted_until: datetime, policy: DriftPolicy) -> Interval | None:
    """The newest ``window_days`` before ``end``, never reaching into the data the champion was fitted on.

    Predictions on rows a model was fitted to are sharper than on new rows; comparing them
    with the reference (the champion's holdout) would flag drift that is not there.
    """
    start = max(end - timedelta(days=policy.window_days), fitted_until)
    return Interval(start, end) if end - start >= timedelta(days=1) else None
