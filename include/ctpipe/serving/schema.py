"""The prediction API's bodies, generated from the dataset spec: another dataset gets its API without code.

An event is one row of the dataset's events table as the source would deliver it: every
column of the spec, each with the spec's own rules (type, allowed values, range,
identifier rules), so a value the gate would quarantine is refused with a 422 that names
the field. The event's timestamp may be left out: it is then when the request arrived.
Columns the spec allows to be null (or null under a condition) may be left out or null.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, create_model

from ctpipe.datasets.spec import Column, DatasetSpec, Identifier

TYPES: dict[str, Any] = {"string": str, "float": float, "int": int, "bool": bool, "timestamp": AwareDatetime}
Variant = Literal["champion", "challenger"]


def _identifier(rule: Identifier) -> AfterValidator:
    pattern = re.compile(rule.pattern) if rule.pattern else None

    def check(value: str) -> str:
        if not value:
            raise ValueError("is empty")
        if value != value.strip():
            raise ValueError("has whitespace at either end")
        if len(value) > rule.max_length:
            raise ValueError(f"is longer than {rule.max_length} characters")
        if pattern is not None and not pattern.match(value):
            raise ValueError(f"does not match {rule.pattern}")
        return value

    return AfterValidator(check)


def _field(column: Column, optional: bool) -> tuple[Any, Any]:
    kind: Any = TYPES[column.type]
    if column.allowed_values is not None:
        kind = Literal[column.allowed_values]  # type: ignore[valid-type]
    elif column.identifier is not None:
        kind = Annotated[str, _identifier(column.identifier)]
    constraints: dict[str, Any] = {"description": column.description}
    if column.min_value is not None:
        constraints["ge"] = column.min_value
    if column.max_value is not None:
        constraints["le"] = column.max_value
    if optional:
        return kind | None, Field(None, **constraints)
    return kind, Field(..., **constraints)


def event_model(dataset: DatasetSpec) -> type[BaseModel]:
    """The pydantic model of one event of ``dataset``, named after its events table."""
    spec = dataset.events
    fields: dict[str, Any] = {}
    for column in spec.columns:
        if column.name == spec.timestamp:
            fields[column.name] = (
                AwareDatetime | None,
                Field(None, description=f"{column.description}; default: when the request arrives"),
            )
            continue
        fields[column.name] = _field(column, optional=column.nullable or column.required_when is not None)
    name = "".join(part.title() for part in spec.name.split("_")) + "Event"
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    about = f"One event of {dataset.name}: a row of {spec.name}."
    return create_model(name, __config__=config, __doc__=about, **fields)


def request_model(dataset: DatasetSpec, event: type[BaseModel]) -> type[BaseModel]:
    """A batch of events: ``{"events": [...]}``; the service also takes one event on its own."""
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"Events of {dataset.name} to score, oldest or newest in any order.",
        events=(list[event], Field(..., min_length=1)),  # type: ignore[valid-type]
    )


class Prediction(BaseModel):
    """The answer for one event."""

    request_id: str
    event: str = Field(description="the event's key")
    entity: str
    score: float = Field(description="the probability of the positive label")
    label: str = Field(description="the positive label when the score is at least 0.5, else the other label")
    model: str
    version: str
    variant: Variant
    unknown_entity: bool = Field(description="the online store holds nothing for the entity: the model imputed")
    stale_features: bool = Field(description="the entity's values were older than the feature view's TTL")


class PredictResponse(BaseModel):
    request_id: str
    predictions: list[Prediction]


class LoadedVersion(BaseModel):
    variant: Variant
    version: str
    aliases: list[str]
    run_id: str
    loaded_at: datetime


class ModelsResponse(BaseModel):
    model: str
    loaded: list[LoadedVersion]
    aliases: dict[str, str]
    policy: dict[str, Any]
    checked_at: datetime | None
