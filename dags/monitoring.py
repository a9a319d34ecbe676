"""
### Monitoring: Evidently drift check per interval, and the retraining decision

Scheduled on the `lab_features` asset, so it runs once the features DAG has materialized an
interval. Manual runs take `interval_end` and can `force_retrain`.

1. **check_drift** compares the newest validated window (`CTPIPE_DRIFT_WINDOW_DAYS`) with a
   sample of the champion's training set, over every model input and the champion's own
   predictions (Evidently `DataDriftPreset`), each column at a threshold calibrated to its
   sampling noise. The HTML report goes to `state/reports/drift/` and, with the distances, the
   thresholds and the decision, into an MLflow run of the monitoring experiment; the distances,
   thresholds and decision also go to Prometheus (`CTPIPE_PUSHGATEWAY_URL`).
2. **decide_retraining** branches: drift over the thresholds, no retrain requested within
   the cooldown and enough labelled events newer than the champion's cutoff to learn from
   (`CTPIPE_DRIFT_MIN_NEW_LABELS`) -> **request_retraining**, which publishes the
   `retrain_request` asset the training DAG is scheduled on and alerts people (`CTPIPE_ALERT_*`);
   otherwise **skip_retraining**, whose return value says why (drift without new labels is
   noted, "waiting for labels", and raised once per champion).
"""

from __future__ import annotations

from airflow.sdk import Asset, Param, dag, task

from ctpipe.dag_policy import (
    DATASET,
    DEFAULT_ARGS,
    RETRAIN_REQUEST,
    START_DATE,
    MonitoringTasks,
    asset_event_extras,
    fail_fast_on_configuration_error,
)

FEATURES = Asset(DATASET.feature_view)
RETRAIN = Asset(RETRAIN_REQUEST)


@task(task_id=MonitoringTasks.CHECK, multiple_outputs=False)
@fail_fast_on_configuration_error
def check_drift(params=None, triggering_asset_events=None) -> dict:
    from ctpipe.monitoring import check, interval_to_check
    from ctpipe.pipeline_metrics import publish_drift
    from ctpipe.records import Publication

    published = [Publication.from_dict(extra) for extra in asset_event_extras(triggering_asset_events)]
    drift = check(interval_to_check(params.get("interval_end"), published))
    publish_drift(drift)  # logs a failure, never raises
    return drift.to_dict()


@task.branch(task_id=MonitoringTasks.DECIDE)
def decide_retraining(drift: dict, params=None) -> str:
    return MonitoringTasks.REQUEST if drift["retrain"] or params.get("force_retrain") else MonitoringTasks.SKIP


@task(task_id=MonitoringTasks.REQUEST, outlets=[RETRAIN], multiple_outputs=False)
@fail_fast_on_configuration_error
def request_retraining(drift: dict, params=None, outlet_events=None, ti=None) -> dict:
    from ctpipe.alerts import alert_retrain_requested
    from ctpipe.monitoring import retrain_request
    from ctpipe.records import DriftCheck

    check = DriftCheck.from_dict(drift)
    request = retrain_request(check, forced=bool(params.get("force_retrain")))
    outlet_events[RETRAIN].extra = request.to_dict()
    alert_retrain_requested(check, request, ti=ti)
    return request.to_dict()


@task(task_id=MonitoringTasks.SKIP)
def skip_retraining(drift: dict) -> str:
    return drift["reason"]


@dag(
    schedule=FEATURES,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["ctpipe", "monitoring", "evidently", DATASET.name],
    default_args=DEFAULT_ARGS,
    params={
        "interval_end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            description="Manual runs: end of the window to check. Empty when triggered by the features asset.",
        ),
        "force_retrain": Param(False, type="boolean", description="Request retraining whatever the drift says"),
    },
    doc_md=__doc__,
)
def monitoring():
    drift = check_drift()
    decide_retraining(drift) >> [request_retraining(drift), skip_retraining(drift)]


monitoring()
