"""
### Monitoring: Evidently drift check per interval, and the retraining decision

Scheduled on the `lab_features` asset, so it runs once the features DAG has materialized an
interval. Manual runs take `interval_end` and can `force_retrain`.

1. **check_drift** compares the newest validated window (`CTPIPE_DRIFT_WINDOW_DAYS`) with a
   sample of the champion's training set, over every model input and the champion's own
   predictions (Evidently `DataDriftPreset`). The HTML report goes to `state/reports/drift/`
   and, with the drift metrics and the decision, into an MLflow run of the monitoring experiment.
2. **decide_retraining** branches: drift over the threshold and no retrain requested within
   the cooldown -> **request_retraining**, which publishes the `retrain_request` asset the
   training DAG is scheduled on; otherwise **skip_retraining**, whose return value says why.
"""

from __future__ import annotations

from airflow.sdk import Asset, Param, dag, task

from ctpipe.dag_policy import (
    DEFAULT_ARGS,
    RETRAIN_REQUEST,
    START_DATE,
    asset_event_extras,
    fail_fast_on_configuration_error,
)
from ctpipe.datasets import get_dataset

DATASET = get_dataset()
FEATURES = Asset(DATASET.feature_view)
RETRAIN = Asset(RETRAIN_REQUEST)


@task
@fail_fast_on_configuration_error
def check_drift(params=None, triggering_asset_events=None) -> dict:
    from ctpipe.monitoring import check, interval_to_check

    extras = asset_event_extras(triggering_asset_events)
    return check(interval_to_check(params.get("interval_end"), extras))


@task.branch
def decide_retraining(drift: dict, params=None) -> str:
    return "request_retraining" if drift["retrain"] or params.get("force_retrain") else "skip_retraining"


@task(outlets=[RETRAIN])
def request_retraining(drift: dict, params=None, outlet_events=None) -> dict:
    reason = drift["reason"] if drift["retrain"] else f"forced from the trigger form ({drift['reason']})"
    request = {"cutoff": drift["interval"]["end"], "reason": reason, "report_uri": drift.get("report_uri")}
    outlet_events[RETRAIN].extra = request
    return request


@task
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
