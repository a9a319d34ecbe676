"""The drift check of one interval: read both samples, score them, compare, decide, record.

Reference: a sample of the events of the champion's holdout days, logged with the model. Current: the
latest validated window of events with their features as of each event, never reaching
into the data the champion was fitted on. Both are scored by the champion, so the report
covers every model input and the champion's predictions. Each column's threshold is
calibrated on the reference at this check's sizes and lag (``ctpipe.drift.calibrate``);
the statistics and the decision are ``ctpipe.drift``'s.

The inputs and scores the champion really served in the window (the prediction log's
``input.<column>`` and ``score``) are compared with the same reference in a second report
(``served_<interval>.html``), recorded beside the first (``served.drift.<column>``, the tag
``served_drifted_columns``, a clause of the reason). It informs and does not decide: the
thresholds are calibrated for the validated window, and the served events are a sample of
it, so a difference between the two comparisons points at a skew between what the pipeline
computes and what the service assembles.

Every check is an MLflow run of the monitoring experiment, with the Evidently HTML
report, the distances (``drift.<column>``) and their thresholds (``threshold.<column>``)
as metrics, and the decision, its reason and how the thresholds were calibrated as tags; the report is also
kept under the state folder.
"""

from __future__ import annotations

import logging
import time
import zlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ctpipe import artifacts
from ctpipe.drift import (
    PREDICTION,
    RETRAIN,
    WAIT_FOR_LABELS,
    calibrate,
    current_window,
    retrain_decision,
    run_report,
)
from ctpipe.lake import Lake
from ctpipe.records import DriftCheck, Interval, Publication, RetrainRequest
from ctpipe.registry import CHAMPION, alias_version
from ctpipe.settings import ConfigurationError, Settings
from ctpipe.tracking import Tracking, connect, load_model
from ctpipe.training_set import EVENT_TIMESTAMP, events_with_features, labelled_events, model_columns, model_input

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Fewer served events than this in a window are too few to compare; the check says nothing of them.
MIN_SERVED_ROWS = 100


def check(interval: Interval, settings: Settings | None = None) -> DriftCheck:
    """Run the drift check for the window ending at ``interval.end``; log it; return the decision."""
    from mlflow.entities import Metric, RunTag

    from ctpipe.feature_store import load_store
    from ctpipe.models import failure_probability

    settings = settings or Settings.from_env()
    policy = settings.drift
    dataset = settings.dataset
    tracking = connect(settings)
    client = tracking.client
    champion = alias_version(client, dataset.model_name, CHAMPION)
    if champion is None:
        return DriftCheck(interval=interval, retrain=False, reason="no champion to monitor yet")

    numeric, categorical = model_columns(dataset)
    fitted = tracking.training_set(champion.run_id)
    window = current_window(interval.end, fitted.fitted_until, policy)
    if window is None:
        return DriftCheck(
            interval=interval,
            retrain=False,
            reason=f"champion {champion.version} was fitted on data up to this interval: nothing unseen to check",
            champion_version=str(champion.version),
        )
    reference = _reference_sample(tracking, champion.run_id)
    lake = Lake(settings.lake_dir)
    current = events_with_features(dataset, lake, load_store(settings), window)
    model = load_model(tracking, f"models:/{dataset.model_name}/{champion.version}")
    reference[PREDICTION] = failure_probability(model, model_input(dataset, reference))
    current[PREDICTION] = failure_probability(model, model_input(dataset, current))
    thresholds = calibrate(
        reference,
        current,
        [*numeric, PREDICTION],
        categorical,
        policy,
        entity=dataset.entity,
        timestamp=EVENT_TIMESTAMP,
        windows={a.name: a.window / timedelta(days=1) for a in dataset.aggregates},
        predict=lambda frame: failure_probability(model, model_input(dataset, frame)),
        # The same champion (by what it was trained on) and window draw the same resamples: a rerun, or
        # the same data on another machine, decides the same.
        seed=zlib.crc32(f"{dataset.model_name} {champion.version} {fitted.window} {window}".encode()),
    )
    snapshot, summary = run_report(reference, current, numeric, categorical, thresholds, policy)

    report_path = artifacts.drift_report(settings, interval)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(report_path))
    # What the champion really saw: the inputs and scores it served in the window, against the same reference.
    served = served_inputs(settings, window, str(champion.version))
    served_summary = None
    if len(served) >= MIN_SERVED_ROWS:
        served_snapshot, served_summary = run_report(reference, served, numeric, categorical, thresholds, policy)
        served_path = artifacts.served_drift_report(settings, interval)
        served_snapshot.save_html(str(served_path))

    experiment_id = tracking.experiment_id("monitoring")
    # New evidence: labelled events newer than the champion's cutoff, known by the end of this interval.
    new_labels = 0
    if interval.end > fitted.cutoff:
        new_labels = len(labelled_events(dataset, lake, Interval(fitted.cutoff, interval.end)))
    decision, reason = retrain_decision(
        summary,
        _last_retrain_request(tracking, interval),
        interval.end,
        policy,
        new_labels=new_labels,
        cutoff=fitted.cutoff,
    )
    if served_summary is not None:
        reason += (
            f"; served inputs ({len(served)} events the champion scored): "
            f"{len(served_summary['drifted_columns'])} of {len(numeric) + len(categorical)} drifted"
            + (", predictions drifted" if served_summary["prediction_drifted"] else "")
        )
    alert = _alert_once(tracking, interval, str(champion.version), decision, reason)
    run = client.create_run(experiment_id, run_name=f"drift @ {interval.end:%Y-%m-%d}")
    run_id = run.info.run_id
    report_uri = artifacts.run_artifact_uri(run_id, artifacts.drift_report_artifact(interval))
    tags = {
        "interval_start": interval.start.isoformat(),
        "interval_end": interval.end.isoformat(),
        "champion_version": str(champion.version),
        "decision": decision,
        "reason": reason,
        "alert": alert,
        "drifted_columns": ",".join(summary["drifted_columns"]),
        "report_uri": report_uri,
        "calibration": summary["calibration"],
        "served_rows": str(len(served)),
        "served_drifted_columns": ",".join(served_summary["drifted_columns"]) if served_summary else "",
    }
    metrics = {
        "drifted_share": summary["drifted_share"],
        "prediction_score": summary["prediction_score"],
        "current_rows": float(len(current)),
        "new_labels": float(new_labels),
        **{f"drift.{c}": s for c, s in summary["column_scores"].items()},
        **{f"threshold.{c}": t for c, t in summary["column_thresholds"].items()},
    }
    if served_summary is not None:
        metrics |= {
            "served.drifted_share": served_summary["drifted_share"],
            "served.prediction_score": served_summary["prediction_score"],
            **{f"served.drift.{c}": v for c, v in served_summary["column_scores"].items()},
        }
        client.log_artifact(run_id, str(artifacts.served_drift_report(settings, interval)), artifacts.DRIFT_REPORT_DIR)
    # One call for the whole record: against a tracking server, a call per value is a round trip per value.
    stamp = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, value, stamp, 0) for key, value in metrics.items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
    client.log_artifact(run_id, str(report_path), artifacts.DRIFT_REPORT_DIR)
    client.set_terminated(run_id)
    return DriftCheck(
        interval=interval,
        retrain=decision == RETRAIN,
        reason=reason,
        decision=decision,
        champion_version=str(champion.version),
        drifted_share=summary["drifted_share"],
        prediction_score=summary["prediction_score"],
        drifted_columns=tuple(summary["drifted_columns"]),
        report_uri=report_uri,
        mlflow_run_id=run_id,
    )


def served_inputs(settings: Settings, window: Interval, version: str) -> pd.DataFrame:
    """The model inputs and scores ``version`` served for the events of ``window``, once per event, from the log.

    The prediction log holds what the service assembled (``input.<column>``), so this is
    what the model really saw, skew and all; its score is the prediction column.
    """
    import pandas as pd

    from ctpipe.online_evaluation import read_predictions
    from ctpipe.serving.prediction_log import FAILED

    logged = read_predictions(settings.predictions_dir, window)
    if logged.empty:
        return pd.DataFrame()
    mine = logged[(logged.model_version == version) & ~logged[FAILED]]
    mine = mine.drop_duplicates(settings.dataset.events.key, keep="first")
    inputs = {c.removeprefix("input."): mine[c] for c in mine.columns if c.startswith("input.")}
    return pd.DataFrame({**inputs, PREDICTION: mine["score"]}).reset_index(drop=True)


def _reference_sample(tracking: Tracking, run_id: str) -> pd.DataFrame:
    import mlflow
    import pandas as pd

    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=artifacts.REFERENCE_SAMPLE, tracking_uri=tracking.uri
    )
    return pd.read_parquet(local)


def _alert_once(tracking: Tracking, interval: Interval, champion: str, decision: str, reason: str) -> str:
    """Raise "drift noted, waiting for labels" once per champion: the first such check warns, later ones say when.

    The warning is the task log's; the tag ``alert`` records it on the check's run either way.
    """
    if decision != WAIT_FOR_LABELS:
        return ""
    earlier = tracking.client.search_runs(
        [tracking.experiment_id("monitoring")],
        filter_string=f"tags.decision = '{WAIT_FOR_LABELS}' and tags.champion_version = '{champion}'",
        order_by=["tags.interval_end ASC"],
        max_results=200,
    )
    raised = [r.data.tags["interval_end"] for r in earlier if r.data.tags["interval_end"] < interval.end.isoformat()]
    if raised:
        return f"already raised for champion {champion} by the check ending {raised[0]}"
    log.warning("ALERT champion %s, check ending %s: %s", champion, interval.end.isoformat(), reason)
    return f"raised: {reason}"


def _last_retrain_request(tracking: Tracking, interval: Interval) -> datetime | None:
    """When the newest drift check before this interval asked for a retrain (the cooldown counts from it).

    Tags compare only for equality in MLflow's search: the newest requests come back, the earlier one is picked here.
    """
    runs = tracking.client.search_runs(
        [tracking.experiment_id("monitoring")],
        filter_string=f"tags.decision = '{RETRAIN}'",
        order_by=["tags.interval_end DESC"],
        max_results=200,
    )
    ends = [datetime.fromisoformat(run.data.tags["interval_end"]) for run in runs]
    return next((end for end in ends if end < interval.end), None)


def retrain_request(check: DriftCheck, forced: bool = False) -> RetrainRequest:
    """What the monitoring DAG publishes for the training DAG: train up to the checked interval's end."""
    reason = f"forced from the trigger form ({check.reason})" if forced and not check.retrain else check.reason
    return RetrainRequest(cutoff=check.interval.end, reason=reason, drift_report=check.report_uri)


def interval_to_check(interval_end: str | None, published: list[Publication]) -> Interval:
    """The day ending at ``interval_end`` (manual run) or at the end of what the features asset materialized."""
    if interval_end:
        return Interval.ending(datetime.fromisoformat(interval_end))
    if not published:
        raise ConfigurationError("no interval to check: give interval_end, or let the features asset trigger the run")
    return Interval.ending(max(p.materialized.end for p in published))


def recorded_check(interval: Interval, settings: Settings | None = None) -> DriftCheck | None:
    """The decision the latest drift check for ``interval`` recorded in MLflow, if any."""
    tracking = connect(settings or Settings.from_env())
    runs = tracking.client.search_runs(
        [tracking.experiment_id("monitoring")],
        filter_string=f"tags.interval_end = '{interval.end.isoformat()}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    tags, metrics = run.data.tags, run.data.metrics
    return DriftCheck(
        interval=interval,
        retrain=tags["decision"] == RETRAIN,
        reason=tags["reason"],
        decision=tags["decision"],
        champion_version=tags.get("champion_version"),
        drifted_share=metrics.get("drifted_share"),
        prediction_score=metrics.get("prediction_score"),
        drifted_columns=tuple(c for c in tags.get("drifted_columns", "").split(",") if c),
        report_uri=tags.get("report_uri"),
        mlflow_run_id=run.info.run_id,
    )
