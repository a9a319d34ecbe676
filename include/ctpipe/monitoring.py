"""Drift monitoring with Evidently 0.7, and the retraining decision it feeds.

Reference: a sample of the champion's own training rows, logged with the model.
Current: the latest validated window of events with their features as of each
event. Both are scored by the champion, so the report covers every model input
and the champion's predictions. Drift is measured as a distance (normed
Wasserstein for numbers, Jensen-Shannon for categories) rather than a p-value:
with thousands of rows a p-value flags differences too small to matter, a
distance does not cry wolf.

The decision: retrain when the share of drifted inputs reaches
``feature_share`` or the predictions drifted, unless a retrain was requested
within the cooldown. Every check is an MLflow run of the monitoring
experiment, with the HTML report, the drift metrics, and the decision and its
reason as tags.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ctpipe.lake import Interval

if TYPE_CHECKING:
    import pandas as pd

PREDICTION = "prediction"
REFERENCE_ARTIFACT = "reference/reference.parquet"


@dataclass(frozen=True)
class DriftPolicy:
    column_threshold: float = 0.1  # distance from which one column counts as drifted
    feature_share: float = 0.3  # share of drifted inputs that triggers retraining
    prediction_threshold: float = 0.1  # distance from which the predictions count as drifted
    window_days: int = 7
    cooldown_days: int = 7
    reference_rows: int = 5000

    @classmethod
    def from_env(cls) -> DriftPolicy:
        values: dict[str, Any] = {}
        for name, default in asdict(cls()).items():
            raw = os.environ.get(f"CTPIPE_DRIFT_{name.upper()}")
            if raw:
                try:
                    values[name] = type(default)(raw)
                except ValueError:
                    raise ValueError(
                        f"CTPIPE_DRIFT_{name.upper()} must be a {type(default).__name__}, got {raw!r}"
                    ) from None
        return cls(**values)


def reference_sample(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    return frame.sample(n=min(rows, len(frame)), random_state=seed).reset_index(drop=True)


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


def current_window(end: datetime, champion_params: dict[str, str], policy: DriftPolicy) -> Interval | None:
    """The newest ``window_days`` before ``end``, never reaching into the data the champion was fitted on.

    Predictions on rows a model was fitted to are sharper than on new rows; comparing them
    with the reference (the champion's holdout) would flag drift that is not there.
    """
    start = end - timedelta(days=policy.window_days)
    fitted_until = datetime.fromisoformat(champion_params["cutoff"]) - timedelta(
        days=int(champion_params["holdout_days"])
    )
    start = max(start, fitted_until)
    return Interval(start, end) if end - start >= timedelta(days=1) else None


def check(interval: Interval, policy: DriftPolicy | None = None) -> dict[str, Any]:
    """Run the drift check for the window ending at ``interval.end``; log it; return the decision."""
    import mlflow
    import pandas as pd

    from ctpipe.datasets import get_dataset
    from ctpipe.feature_store import load_store
    from ctpipe.lake import Lake
    from ctpipe.models import failure_probability
    from ctpipe.registry import CHAMPION, alias_version, client
    from ctpipe.settings import Settings
    from ctpipe.tracking import configure
    from ctpipe.training_set import events_with_features, model_columns

    policy = policy or DriftPolicy.from_env()
    settings = Settings.from_env()
    dataset = get_dataset()
    mlflow_client = client()
    champion = alias_version(mlflow_client, dataset.model_name, CHAMPION)
    if champion is None:
        return {"interval": interval.to_dict(), "retrain": False, "reason": "no champion to monitor yet"}

    numeric, categorical = model_columns(dataset)
    columns = numeric + categorical
    reference = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=champion.run_id, artifact_path=REFERENCE_ARTIFACT)
    )
    window = current_window(interval.end, mlflow_client.get_run(champion.run_id).data.params, policy)
    if window is None:
        return {
            "interval": interval.to_dict(),
            "retrain": False,
            "reason": f"champion {champion.version} was fitted on data up to this interval: nothing unseen to check",
        }
    current = events_with_features(dataset, Lake(settings.lake_dir), load_store(settings), window)
    model = mlflow.pyfunc.load_model(f"models:/{dataset.model_name}/{champion.version}")
    reference[PREDICTION] = failure_probability(model, reference[columns])
    current[PREDICTION] = failure_probability(model, current[columns])
    snapshot, summary = run_report(reference, current, numeric, categorical, policy)

    report_path = settings.reports_dir / "drift" / f"{interval.key}.html"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(report_path))

    experiment_id = configure(settings, kind="monitoring")
    requested = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string="tags.decision = 'retrain'",
        order_by=["tags.interval_end DESC"],
        max_results=1,
    )
    earlier = requested[requested["tags.interval_end"] < interval.end.isoformat()] if len(requested) else requested
    last = datetime.fromisoformat(earlier["tags.interval_end"].iloc[0]) if len(earlier) else None
    retrain, reason = retrain_decision(summary, last, interval.end, policy)
    with mlflow.start_run(run_name=f"drift @ {interval.end:%Y-%m-%d}") as run:
        mlflow.set_tags(
            {
                "interval_start": interval.start.isoformat(),
                "interval_end": interval.end.isoformat(),
                "champion_version": champion.version,
                "decision": "retrain" if retrain else "skip",
                "reason": reason,
                "drifted_columns": ",".join(summary["drifted_columns"]),
                "report_uri": str(report_path),
            }
        )
        mlflow.log_metrics(
            {
                "drifted_share": summary["drifted_share"],
                "prediction_score": summary["prediction_score"],
                "current_rows": float(len(current)),
                **{f"drift.{c}": s for c, s in summary["column_scores"].items()},
            }
        )
        mlflow.log_artifact(str(report_path), artifact_path="drift_report")
    return {
        "interval": interval.to_dict(),
        "champion_version": champion.version,
        "retrain": retrain,
        "reason": reason,
        "drifted_share": summary["drifted_share"],
        "prediction_score": summary["prediction_score"],
        "drifted_columns": summary["drifted_columns"],
        "report_uri": str(report_path),
        "mlflow_run_id": run.info.run_id,
    }


def interval_to_check(interval_end: str | None, asset_event_extras: list[dict[str, Any]]) -> Interval:
    """The day ending at ``interval_end`` (manual run) or at the end of what the features asset materialized."""
    if not interval_end:
        ends = [e["materialized"]["end"] for e in asset_event_extras if e and "materialized" in e]
        if not ends:
            raise ValueError("no interval to check: give interval_end, or let the features asset trigger the run")
        interval_end = max(ends)
    end = datetime.fromisoformat(interval_end)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    return Interval(end - timedelta(days=1), end)


def recorded_check(interval: Interval) -> dict[str, Any] | None:
    """The decision the latest drift check for ``interval`` recorded in MLflow, if any."""
    import mlflow

    from ctpipe.tracking import configure

    experiment_id = configure(kind="monitoring")
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.interval_end = '{interval.end.isoformat()}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs.empty:
        return None
    run = runs.iloc[0]
    return {
        "decision": run["tags.decision"],
        "reason": run["tags.reason"],
        "drifted_share": float(run["metrics.drifted_share"]),
        "prediction_score": float(run["metrics.prediction_score"]),
        "report_uri": run["tags.report_uri"],
        "run_id": run["run_id"],
    }
