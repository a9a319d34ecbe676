"""The records tasks hand each other: every one survives XCom's JSON, and a malformed one fails where it is read."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ctpipe import records
from ctpipe.records import (
    AliasMove,
    DriftCheck,
    Experiment,
    ExperimentStep,
    Extraction,
    FeatureBuild,
    Interval,
    LiveEvaluation,
    Promotion,
    Publication,
    Record,
    RecordError,
    RegisteredVersion,
    RetrainRequest,
    Review,
    TrainingPlan,
    TrainingResult,
    TrainingSetSpec,
    ValidationOutcome,
)

DAY = Interval(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC))
CUTOFF = DAY.end
SPEC = TrainingSetSpec("lab_qc", "lab_quality_v1", CUTOFF, 14, 4)
EXAMPLES: list[Record] = [
    DAY,
    Extraction("lab_samples", DAY, "/lake/raw/lab_samples/x.parquet", 412, ("sample_id", "lab_id")),
    ValidationOutcome(
        "lab_samples",
        DAY,
        "passed",
        412,
        400,
        12,
        "/lake/validated/x.parquet",
        "/lake/quarantine/x.parquet",
        "/reports/x.json",
        "file:///gx/x.html",
        {"expect_column_values_to_not_be_null(rin)": 7, "duplicate_row": 5},
        "lab_samples: 400 of 412 rows passed",
    ),
    FeatureBuild("lab_features", DAY, "/lake/features/x.parquet", 30, {"lab_samples": 28, "qc_results": 28}),
    Publication("lab_features", DAY, ("Entity:lab", "FeatureView:lab_features")),
    DriftCheck(
        DAY, True, "drift: 40% of inputs drifted", "3", 0.4, 0.12, ("transit_hours",), "runs:/abc/r.html", "abc"
    ),
    DriftCheck(DAY, False, "no champion to monitor yet"),
    RetrainRequest(CUTOFF, "drift: 40% of inputs drifted", "runs:/abc/drift_report/x.html"),
    SPEC,
    TrainingPlan(CUTOFF),
    TrainingPlan(CUTOFF, "torch", 10, 3, {"epochs": 5, "learning_rate": 0.01}, 7, "human", True, "drift", "runs:/a/b"),
    TrainingResult("run1", "models:/m-123", "sklearn", {"roc_auc": 0.74, "brier": 0.18}, 1.5, SPEC),
    RegisteredVersion("lab_qc_failure", "4", "run1"),
    Review(
        "lab_qc_failure", "4", True, ("beats the champion",), "3", {"roc_auc": 0.8}, {"roc_auc": 0.7}, 600, {"a": "b"}
    ),
    Review("lab_qc_failure", "1", True, ("no champion yet",), None, {"roc_auc": 0.8}, None, 600),
    AliasMove("champion", "3", "4", CUTOFF, "Airflow training / run / promote_champion", "promoted"),
    Promotion("4", True, "4", "3", "fresh", (AliasMove("champion", None, "4", CUTOFF, "me", "first"),)),
    LiveEvaluation(CUTOFF, DAY, 812, {"4 challenger answered": {"served": 40.0, "brier": 0.12}}, {"4": "run9"}),
    LiveEvaluation(CUTOFF, DAY, 0),
    Experiment("lab_qc_failure", "3", "4", "canary", CUTOFF),
    Experiment("lab_qc_failure", "3", "4", "ab", CUTOFF, "human", 2, 5, 1, CUTOFF, "promote"),
    ExperimentStep("lab_qc_failure", "3", "4", CUTOFF, "start", 0.05, ("review passed",)),
    ExperimentStep("lab_qc_failure", "3", "4", CUTOFF, "ramp", 0.25, ("held",), 812, 0.012, 0.001, 0.023, "human"),
]


def test_every_record_class_has_an_example_here():
    classes = {
        value
        for value in vars(records).values()
        if isinstance(value, type) and issubclass(value, Record) and value is not Record
    }
    assert classes == {type(example) for example in EXAMPLES}


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_a_record_survives_json_as_xcom_carries_it(record):
    carried = json.loads(json.dumps(record.to_dict()))  # what XCom and asset events store
    assert type(record).from_dict(carried) == record
    assert dataclasses.is_dataclass(record) and type(record).__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, dataclasses.fields(record)[0].name, None)


def test_a_record_carries_plain_strings_whatever_it_was_built_from():
    """Reflected PostgreSQL column names are SQLAlchemy quoted_name objects; Airflow's XCom refuses those."""
    from airflow.sdk.execution_time.comms import _new_encoder
    from sqlalchemy.sql.elements import quoted_name

    names = tuple(quoted_name(name, quote=None) for name in ("sample_id", "lab_id"))
    extraction = Extraction(table="lab_samples", interval=DAY, uri="raw.parquet", rows=1, columns=names)
    dumped = extraction.to_dict()
    assert [type(name) for name in dumped["columns"]] == [str, str]
    _new_encoder().encode(dumped)  # how a task's result reaches the supervisor: quoted_name raised here


def test_timestamps_travel_as_iso_text_in_utc():
    plan = TrainingPlan(datetime(2026, 2, 1, 2, tzinfo=timezone(timedelta(hours=2))))
    assert plan.to_dict()["cutoff"] == "2026-02-01T02:00:00+02:00"
    assert TrainingPlan.from_dict(plan.to_dict()).cutoff == datetime(2026, 2, 1, tzinfo=UTC)
    assert TrainingPlan.from_dict({"cutoff": "2026-02-01T00:00:00"}).cutoff.tzinfo == UTC  # naive means UTC
    assert DAY.to_dict() == {"start": "2026-02-01T00:00:00+00:00", "end": "2026-02-02T00:00:00+00:00"}


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        (
            RetrainRequest,
            {"cutoff": "2026-02-01", "retrain_reason": "drift"},
            r"RetrainRequest has no field\(s\) \['retrain_reason'\]",
        ),
        (RetrainRequest, {"reason": "drift"}, "RetrainRequest needs 'cutoff'"),
        (TrainingPlan, {"cutoff": "yesterday"}, "TrainingPlan.cutoff: Invalid isoformat string"),
        (TrainingPlan, {"cutoff": "2026-02-01", "days": "14"}, "TrainingPlan.days: expected an integer, got '14'"),
        (TrainingPlan, {"cutoff": "2026-02-01", "family": "xgboost"}, "TrainingPlan.family: expected one of"),
        (TrainingPlan, {"cutoff": "2026-02-01", "days": 3, "holdout_days": 3}, "holdout_days .3. must be fewer"),
        (
            Extraction,
            {"table": "t", "interval": {"start": "2026-02-01"}, "uri": "u", "rows": 1, "columns": []},
            "Extraction.interval: Interval needs 'end'",
        ),
        (Interval, {"start": "2026-02-02T00:00:00+00:00", "end": "2026-02-01T00:00:00+00:00"}, "must be after start"),
        (ValidationOutcome, ["not", "a", "dict"], "takes a dict"),
        (Review, {"name": "m", "version": 4}, "Review.version: expected a string, got 4"),
        (
            DriftCheck,
            {"interval": DAY.to_dict(), "retrain": "yes", "reason": "r"},
            "DriftCheck.retrain: expected true or false",
        ),
    ],
)
def test_a_malformed_dict_is_a_record_error_naming_the_record_and_field(kind, data, message):
    with pytest.raises(RecordError, match=message):
        kind.from_dict(data)


def test_a_record_is_read_from_its_dict_not_from_another_record():
    with pytest.raises(RecordError, match="takes the dict of a record"):
        Interval.from_dict(DAY)


def test_a_plan_knows_its_training_set():
    plan = TrainingPlan(CUTOFF, days=10, holdout_days=3)
    spec = plan.training_set("lab_qc", "lab_quality_v1")
    assert spec.window == Interval(CUTOFF - timedelta(days=10), CUTOFF)
    assert spec.holdout_start == spec.fitted_until == CUTOFF - timedelta(days=3)
    assert RegisteredVersion("m", "4", "r").model_uri == "models:/m/4"
    assert Interval.from_key(DAY.key) == DAY == Interval.ending(DAY.end)
