"""
### Ingest: extract each data interval from the SQL source, then gate it with Great Expectations

One run per daily data interval `[data_interval_start, data_interval_end)`, with catchup,
so backfills and re-runs address exactly one interval each.

For each source table of the dataset:

1. **extract_&lt;table&gt;** streams the interval's rows from the `ctpipe_source` connection
   (SQLite by default, PostgreSQL in production) into `lake/raw/<table>/<interval>.parquet`.
   Re-running replaces the partition; an empty interval writes an empty partition.
2. **validate_&lt;table&gt;** runs the expectation suite: clean rows go to `lake/validated`,
   the rest to `lake/quarantine` with the expectations they broke. Keys must be unique across
   intervals, and a label's sample must be validated (same lab, submitted before the label):
   labels wait in `lake/held` for a late sample, for a grace period, and validating the labels
   looks again at the earlier intervals that hold some back. The run fails here when
   the schema changed or too many rows are bad (`CTPIPE_MAX_BAD_ROW_SHARE`); then nothing is
   published downstream. Reports: `state/reports/validation/`, Data Docs under `state/gx/`.

Each validate task publishes the `validated_<table>` asset, whose event carries the
validation outcome (interval, status, row counts, where the partitions and the report are);
the `features` DAG is scheduled on those assets. Its figures (rows by outcome, bad-row share,
when the gate last passed) go to Prometheus through the Pushgateway (`CTPIPE_PUSHGATEWAY_URL`).
"""

from __future__ import annotations

from airflow.sdk import Asset, CronDataIntervalTimetable, dag, task

from ctpipe.dag_policy import (
    DATASET,
    DEFAULT_ARGS,
    START_DATE,
    extract_task,
    fail_fast_on_configuration_error,
    raw_asset,
    validate_task,
    validated_asset,
)

RAW = {t.name: Asset(raw_asset(t.name)) for t in DATASET.tables}
VALIDATED = {t.name: Asset(validated_asset(t.name)) for t in DATASET.tables}


@task(multiple_outputs=False)
@fail_fast_on_configuration_error
def extract(table: str, data_interval_start=None, data_interval_end=None, outlet_events=None) -> dict:
    from airflow.sdk.exceptions import AirflowFailException

    from ctpipe.ingest import SourceError, extract_table
    from ctpipe.records import Interval

    try:
        extraction = extract_table(table, Interval(data_interval_start, data_interval_end)).to_dict()
    except SourceError as error:  # the source lacks what the dataset declares: a retry finds the same
        raise AirflowFailException(str(error)) from error
    outlet_events[RAW[table]].extra = extraction
    return extraction


@task(multiple_outputs=False)
@fail_fast_on_configuration_error
def validate(extraction: dict, outlet_events=None) -> dict:
    from airflow.sdk.exceptions import AirflowFailException

    from ctpipe.pipeline_metrics import publish_validation
    from ctpipe.records import Extraction
    from ctpipe.validation import ValidationGateError, validate_extraction

    try:
        outcome = validate_extraction(Extraction.from_dict(extraction))
    except ValidationGateError as error:  # bad data does not improve on retry
        raise AirflowFailException(str(error)) from error
    publish_validation(outcome)  # logs a failure, never raises
    outlet_events[VALIDATED[outcome.table]].extra = outcome.to_dict()
    return outcome.to_dict()


@dag(
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=True,
    max_active_runs=1,
    tags=["ctpipe", "data", DATASET.name],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
)
def ingest():
    validated = {}
    for table in DATASET.tables:
        extraction = extract.override(task_id=extract_task(table.name), outlets=[RAW[table.name]])(table=table.name)
        validated[table.name] = validate.override(task_id=validate_task(table.name), outlets=[VALIDATED[table.name]])(
            extraction
        )
    for table in DATASET.tables:
        if table.parent is not None:  # a row is checked against its parent once the parent's interval is validated
            validated[table.parent.table] >> validated[table.name]


ingest()
