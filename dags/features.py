"""
### Features: per-lab aggregates for each validated interval, materialized to the online store

Scheduled on any of the `validated_*` assets of the `ingest` DAG: a run covers every
interval its asset events name that is validated for every table, and any such interval
whose features are missing or older than the data its windows read (an event the scheduler
folded away is not lost; late rows reach every window that holds their day). The event of
an interval's first table finds it incomplete and the run does nothing; the event of its
last table computes it. A manual run takes
`interval_start` and `interval_end` from the trigger form instead (split into days), to
rebuild a range.

1. **resolve_intervals** reads which intervals to process (asset events and the lake, or params);
   none means the rest is skipped.
2. **build_features** (one mapped task per interval) computes point-in-time rolling
   aggregates from validated data into `lake/features/lab_features/<interval>.parquet`,
   the offline source of the Feast feature view.
3. **materialize** registers the `feature_repo/` definitions and runs Feast's
   `materialize(start, end)` over those intervals (through as far as the online store
   already is, so it never goes back in time), then publishes the `lab_features` asset and
   pushes how far the online store is loaded to Prometheus (`CTPIPE_PUSHGATEWAY_URL`).

Online values: `python -m ctpipe.feature_store online LAB-001`, or `make serve-features`
and `POST /get-online-features`.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAny, Param, dag, task

from ctpipe.dag_policy import (
    DATASET,
    DEFAULT_ARGS,
    START_DATE,
    asset_event_extras,
    fail_fast_on_configuration_error,
    validated_asset,
)

VALIDATED = [Asset(validated_asset(t.name)) for t in DATASET.tables]
FEATURES = Asset(DATASET.feature_view)


@task
@fail_fast_on_configuration_error
def resolve_intervals(params=None, triggering_asset_events=None) -> list[dict]:
    from ctpipe.features import intervals_for_run
    from ctpipe.records import ValidationOutcome

    validated = [ValidationOutcome.from_dict(extra) for extra in asset_event_extras(triggering_asset_events)]
    return [i.to_dict() for i in intervals_for_run(params.get("interval_start"), params.get("interval_end"), validated)]


@task(max_active_tis_per_dagrun=2, multiple_outputs=False)
@fail_fast_on_configuration_error
def build_features(interval: dict) -> dict:
    from ctpipe.features import build_interval_features
    from ctpipe.records import Interval

    return build_interval_features(Interval.from_dict(interval)).to_dict()


@task(outlets=[FEATURES], multiple_outputs=False)
@fail_fast_on_configuration_error
def materialize(intervals: list[dict], outlet_events=None) -> dict:
    from ctpipe.feature_store import publish_online
    from ctpipe.pipeline_metrics import publish_materialization
    from ctpipe.records import Interval

    published = publish_online([Interval.from_dict(i) for i in intervals])
    publish_materialization(published)  # logs a failure, never raises
    outlet_events[FEATURES].extra = published.to_dict()
    return published.to_dict()


@dag(
    schedule=AssetAny(*VALIDATED),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["ctpipe", "features", "feast", DATASET.name],
    default_args=DEFAULT_ARGS,
    params={
        "interval_start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Interval start (UTC)",
            description="Manual runs only: first instant to rebuild. Leave empty when triggered by assets.",
        ),
        "interval_end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Interval end (UTC, excluded)",
            description="Manual runs only: end of the range to rebuild, split into daily intervals.",
        ),
    },
    doc_md=__doc__,
)
def features():
    intervals = resolve_intervals()
    build_features.expand(interval=intervals) >> materialize(intervals)


features()
