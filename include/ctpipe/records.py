"""What tasks hand each other: frozen, typed records with one ``to_dict``/``from_dict`` pair each.

XCom values and asset-event extras are the ``to_dict()`` of a record: JSON, small,
references to data rather than data. A DAG task converts at its edge
(``Record.from_dict(xcom)``, ``record.to_dict()``); the package's functions take and
return records. ``from_dict`` is strict: an unknown or missing key, or a value of the
wrong type, is a ``RecordError`` naming the record and the field, so a renamed field
fails where it is read instead of travelling on as ``None``.

Every default a person can choose (training days, holdout days, model family...) is
defined here once; the trigger forms, the command lines and the retrain path read it.

Pure Python: DAG files import this module at parse time.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, Self

KEY_FORMAT = "%Y%m%dT%H%M%SZ"

Family = Literal["sklearn", "torch"]
FAMILIES: tuple[Family, ...] = typing.get_args(Family)
ApprovalMode = Literal["auto", "human"]
APPROVAL_MODES: tuple[ApprovalMode, ...] = typing.get_args(ApprovalMode)
ValidationStatus = Literal["passed", "empty", "failed_threshold", "schema_changed"]


class RecordError(ValueError):
    """A dict that does not describe the record it is read as."""


class Record:
    """Base of every record: ``to_dict`` for XCom and asset events, ``from_dict`` to read them back."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if isinstance(data, Record):
            raise RecordError(f"{cls.__name__}.from_dict takes the dict of a record, got a {type(data).__name__}")
        if not isinstance(data, Mapping):
            raise RecordError(f"{cls.__name__}.from_dict takes a dict, got {type(data).__name__}: {data!r}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise RecordError(f"{cls.__name__} has no field(s) {unknown}; its fields are {sorted(fields)}")
        values = {}
        for name, spec in fields.items():
            if name not in data:
                if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                    raise RecordError(f"{cls.__name__} needs {name!r}; got the keys {sorted(data)}")
                continue
            try:
                values[name] = _load(hints[name], data[name])
            except (TypeError, ValueError) as error:
                raise RecordError(f"{cls.__name__}.{name}: {error}") from None
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise RecordError(f"{cls.__name__}: {error}") from None


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [_dump(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _dump(v) for k, v in value.items()}
    if isinstance(value, str) and type(value) is not str:
        # A str subclass (SQLAlchemy's quoted_name, from reflected column names) is a str to JSON
        # but not to Airflow's XCom serializer, which refuses it once the task has done its work.
        return str(value)
    return value


def _load(kind: Any, value: Any) -> Any:
    """``value`` (as JSON gives it) converted to ``kind``; ``ValueError`` when it is not one."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _load(option, value)
            except (TypeError, ValueError) as error:
                errors.append(str(error))
        raise ValueError(" or ".join(errors))
    if origin is Literal:
        if value not in args:
            raise ValueError(f"expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {value!r}")
        return tuple(_load(args[0], v) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a mapping, got {value!r}")
        return {str(k): _load(args[1], v) for k, v in value.items()}
    if isinstance(kind, type) and issubclass(kind, Record):
        return value if isinstance(value, kind) else kind.from_dict(value)
    if kind is datetime:
        if isinstance(value, datetime):
            return _aware(value)
        if not isinstance(value, str):
            raise ValueError(f"expected an ISO timestamp, got {value!r}")
        return _aware(datetime.fromisoformat(value))
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    raise TypeError(f"records cannot hold {kind!r}")


def _aware(value: datetime) -> datetime:
    """Naive timestamps are taken as UTC; every timestamp in a record is in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- the data half ------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Interval(Record):
    """A half-open data interval ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ValueError(f"interval {name} must be a timezone-aware datetime, got {value!r}")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.end <= self.start:
            raise ValueError(f"interval end {self.end} must be after start {self.start}")

    @property
    def key(self) -> str:
        """The interval's name in the lake and in report file names."""
        return f"{self.start:{KEY_FORMAT}}_{self.end:{KEY_FORMAT}}"

    @classmethod
    def from_key(cls, key: str) -> Interval:
        start, end = key.split("_")
        return cls(*(datetime.strptime(s, KEY_FORMAT).replace(tzinfo=UTC) for s in (start, end)))

    @classmethod
    def parse(cls, start: str | datetime, end: str | datetime) -> Interval:
        """From ISO strings or datetimes; naive values are taken as UTC."""
        as_utc = lambda v: _aware(datetime.fromisoformat(v) if isinstance(v, str) else v)  # noqa: E731
        return cls(as_utc(start), as_utc(end))

    @classmethod
    def ending(cls, end: datetime, length: timedelta = timedelta(days=1)) -> Interval:
        return cls(_aware(end) - length, _aware(end))

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@dataclass(frozen=True)
class Extraction(Record):
    """What an extraction wrote: the raw partition of one table and interval."""

    table: str
    interval: Interval
    uri: str
    rows: int
    columns: tuple[str, ...]
    # The table's rows that no interval can select, by reason, and where they all are.
    unplaceable: dict[str, int] = field(default_factory=dict)
    unplaceable_uri: str | None = None

    @property
    def empty(self) -> bool:
        return self.rows == 0


@dataclass(frozen=True)
class ValidationOutcome(Record):
    """What the validation gate decided for one table and interval; also the validated asset's event extra."""

    table: str
    interval: Interval
    status: ValidationStatus
    rows_in: int
    rows_passed: int
    rows_quarantined: int
    validated_uri: str | None
    quarantine_uri: str
    report_uri: str
    data_docs_uri: str | None
    failures: dict[str, int] = field(default_factory=dict)  # reason -> rows
    message: str = ""
    unplaceable: dict[str, int] = field(default_factory=dict)  # the table's rows in no interval, by reason
    rows_held: int = 0  # rows waiting for their parent, in held/ (rows_in = passed + quarantined + held)

    @property
    def passed(self) -> bool:
        return self.status in ("passed", "empty")


@dataclass(frozen=True)
class FeatureBuild(Record):
    """The feature partition written for one interval."""

    feature_view: str
    interval: Interval
    uri: str
    entities: int
    input_partitions: dict[str, int]  # table -> validated partitions read


@dataclass(frozen=True)
class Publication(Record):
    """What the features DAG made servable: the span materialized online; the features asset's event extra."""

    feature_view: str
    materialized: Interval
    registered: tuple[str, ...]


# -- the model half -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftCheck(Record):
    """One drift check and the retraining decision it led to."""

    interval: Interval
    retrain: bool
    reason: str
    champion_version: str | None = None
    drifted_share: float | None = None
    prediction_score: float | None = None
    drifted_columns: tuple[str, ...] = ()
    report_uri: str | None = None  # the HTML report as an MLflow artifact (runs:/...)
    mlflow_run_id: str | None = None
    decision: str = "skip"  # retrain, skip, or wait_for_labels (drift noted, too few new labels)


@dataclass(frozen=True)
class RetrainRequest(Record):
    """Why a new model is wanted and from which data: the ``retrain_request`` asset's event extra."""

    cutoff: datetime
    reason: str
    drift_report: str | None = None  # the drift check's report, an MLflow artifact URI


@dataclass(frozen=True)
class TrainingSetSpec(Record):
    """Everything needed to rebuild a training set exactly; logged with every model."""

    dataset: str
    feature_service: str
    cutoff: datetime
    days: int
    holdout_days: int

    @property
    def window(self) -> Interval:
        """The events the set is drawn from: ``[cutoff - days, cutoff)``."""
        return Interval.ending(self.cutoff, timedelta(days=self.days))

    @property
    def holdout_start(self) -> datetime:
        return self.cutoff - timedelta(days=self.holdout_days)

    @property
    def fitted_until(self) -> datetime:
        """The model was fitted on events before this instant; the holdout days after it were unseen."""
        return self.holdout_start


@dataclass(frozen=True)
class TrainingPlan(Record):
    """What one training run trains: from the trigger form, the command line or a retrain request.

    The field defaults are the only defaults: the training DAG's form and
    ``python -m ctpipe.training`` both read them from here.
    """

    cutoff: datetime
    family: Family = "sklearn"
    days: int = 14  # of events before the cutoff; 28 more days of history fill the feature windows
    holdout_days: int = 4  # the newest days, kept for evaluation
    params: dict[str, int | float] = field(default_factory=dict)  # hyperparameters; the rest are the family's
    seed: int = 0
    approval: ApprovalMode = "auto"
    backfill: bool = False  # a backfill never promotes
    trigger: str = "manual"  # why: "manual", "first model", or the drift check's reason
    drift_report: str | None = None

    MIN_DAYS: ClassVar[int] = 2
    MIN_HOLDOUT_DAYS: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}; choose one of {list(FAMILIES)}")
        if self.approval not in APPROVAL_MODES:
            raise ValueError(f"unknown approval mode {self.approval!r}; choose one of {list(APPROVAL_MODES)}")
        if self.holdout_days < self.MIN_HOLDOUT_DAYS or self.days < self.MIN_DAYS:
            raise ValueError(f"a plan needs days >= {self.MIN_DAYS} and holdout_days >= {self.MIN_HOLDOUT_DAYS}")
        if self.holdout_days >= self.days:
            raise ValueError(f"holdout_days ({self.holdout_days}) must be fewer than days ({self.days})")

    def training_set(self, dataset: str, feature_service: str) -> TrainingSetSpec:
        return TrainingSetSpec(dataset, feature_service, self.cutoff, self.days, self.holdout_days)


@dataclass(frozen=True)
class TrainingResult(Record):
    """What the training entrypoint produced; it reaches the DAG through ``/airflow/xcom/return.json``."""

    run_id: str
    model_uri: str
    family: Family
    metrics: dict[str, float]
    train_seconds: float
    training_set: TrainingSetSpec


@dataclass(frozen=True)
class RegisteredVersion(Record):
    """A model version in the registry."""

    name: str
    version: str
    run_id: str

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class Review(Record):
    """The challenger scored against the champion of the moment, and the decision."""

    name: str
    version: str
    promote: bool
    reasons: tuple[str, ...]
    champion_version: str | None  # the champion it was compared with; promotion checks it still is
    challenger: dict[str, float]
    champion: dict[str, float] | None
    holdout_rows: int
    evidence: dict[str, str] = field(default_factory=dict)  # label -> link a reviewer opens

    @property
    def verdict(self) -> str:
        return "promote" if self.promote else "keep_champion"


@dataclass(frozen=True)
class AliasMove(Record):
    """One move of a registry alias: an entry of the registered model's audit trail."""

    alias: str
    from_version: str | None
    to_version: str | None  # None: the alias was removed
    at: datetime
    by: str  # who or what moved it: a DAG run's task, a person at the command line, or "outside the pipeline"
    reason: str


@dataclass(frozen=True)
class Promotion(Record):
    """What happened when a reviewed version was to become champion."""

    version: str
    promoted: bool
    champion: str | None
    previous_champion: str | None
    reason: str
    moves: tuple[AliasMove, ...] = ()


# -- the live half ------------------------------------------------------------------------------

LiveAction = Literal["start", "continue", "ramp", "promote", "roll_back", "stop"]


@dataclass(frozen=True)
class LiveEvaluation(Record):
    """One day's live figures: the window of events evaluated, labels as known at ``as_of``, per version."""

    as_of: datetime
    window: Interval
    predictions: int  # logged scores in the window, every version and variant
    figures: dict[str, dict[str, float]] = field(default_factory=dict)  # "<version> <variant> <answered|shadow>"
    runs: dict[str, str] = field(default_factory=dict)  # version -> its MLflow run of live figures


@dataclass(frozen=True)
class Experiment(Record):
    """A challenger's live experiment against the champion: kept as one tag on the challenger's version."""

    name: str
    champion: str  # the version it is compared with; the experiment ends if the champion moves
    challenger: str
    policy: Literal["canary", "ab"]
    started: datetime  # events from here on are its evidence
    approval: ApprovalMode = "auto"
    stage: int = 0  # on the ramp
    days: int = 0
    stage_days: int = 0
    decided_through: datetime | None = None  # the end of the last day decided: a day is decided once
    outcome: LiveAction | None = None  # set once it ended: promote, roll_back or stop


@dataclass(frozen=True)
class ExperimentStep(Record):
    """One day's decision on a live experiment, with its evidence: what the version's record shows."""

    name: str
    champion: str
    challenger: str
    day: datetime  # the end of the day decided
    action: LiveAction
    share: float  # the challenger's share after the step
    reasons: tuple[str, ...]
    pairs: int = 0
    mean_difference: float = 0.0  # champion's Brier minus the challenger's: positive, the challenger is better
    lower: float | None = None  # the always-valid interval for it; None before there is one
    upper: float | None = None
    approval: ApprovalMode = "auto"
