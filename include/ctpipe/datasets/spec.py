"""The shape of a dataset, as the pipeline needs to know it.

A dataset is two source tables that share an entity column: *events* (one row
per observed thing, stamped when it happened) and *labels* (the outcome of an
event, stamped when the outcome became known, usually later). Everything the
pipeline does with a dataset -- which rows an interval holds, what counts as a
valid row, which per-entity features to compute -- is read from a
``DatasetSpec``. This module is pure Python so that DAG files may import it at
parse time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

ColumnType = Literal["string", "float", "int", "bool", "timestamp"]


@dataclass(frozen=True)
class Identifier:
    """The rules an identifier value follows, so a blank or a 10 MB id never becomes a key or an entity.

    Never empty, no leading or trailing whitespace, at most ``max_length`` characters,
    and, when given, matching ``pattern`` (a regular expression, matched from the start).
    """

    max_length: int = 64
    pattern: str | None = None


@dataclass(frozen=True)
class Column:
    """One source column and the rules a valid value follows."""

    name: str
    type: ColumnType
    description: str = ""
    nullable: bool = False
    min_value: float | None = None
    max_value: float | None = None
    allowed_values: tuple[str, ...] | None = None
    # A pandas query: the column may only be null where the condition is false
    # (for example RIN, which exists for RNA samples alone).
    required_when: str | None = None
    identifier: Identifier | None = None  # for key and entity columns


@dataclass(frozen=True)
class Reference:
    """Each row of a table belongs to one row of ``table`` (its parent), found by ``key``.

    Validation checks it on every row, generically, through the index of validated keys:

    * the parent is not validated yet: the row is held back, and validated once the parent
      is, or quarantined as ``unknown_parent(<key>)`` when ``grace`` has passed since the end
      of its interval;
    * the row is stamped before its parent: ``reported_before_event``;
    * a column of ``same`` (identifier columns of both tables) differs from the parent's:
      ``parent_mismatch(<column>)``.
    """

    table: str
    key: str  # the column of this table that holds the parent's key (the parent's key column)
    same: tuple[str, ...] = ()
    grace: timedelta = timedelta(days=3)


@dataclass(frozen=True)
class TableSpec:
    """A source table, extracted one data interval at a time."""

    name: str
    timestamp: str  # the column that places a row in a data interval
    key: str  # unique for every valid row, across all intervals
    columns: tuple[Column, ...]
    parent: Reference | None = None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"table {self.name!r} has no column {name!r}")


@dataclass(frozen=True)
class Aggregate:
    """A per-entity feature: an aggregate over a trailing window.

    ``count`` counts rows; ``mean`` averages ``column``; ``rate`` is the share of
    rows whose ``column`` equals ``value``. Windows end at the feature
    timestamp and exclude it, so a feature stamped ``t`` only uses rows stamped
    before ``t``.
    """

    name: str
    table: Literal["events", "labels"]
    function: Literal["count", "mean", "rate"]
    window: timedelta
    column: str | None = None
    value: str | None = None
    description: str = ""

    @property
    def type(self) -> ColumnType:
        return "int" if self.function == "count" else "float"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    entity: str  # the join key of the online features, present in both tables
    events: TableSpec
    labels: TableSpec
    label: str  # column of ``labels`` holding the outcome
    positive_label: str  # the outcome the model predicts
    features: tuple[str, ...]  # event columns the model reads directly
    aggregates: tuple[Aggregate, ...]
    feature_view: str  # Feast names, derived from the dataset
    feature_service: str
    model_name: str  # the MLflow registered model
    description: str = ""
    feature_ttl: timedelta = field(default=timedelta(days=2))
    # "module:function", a ``ctpipe.datasets.synthetic.Generator`` of demo data: what ``python -m
    # ctpipe.seed`` and the main job seed the source with. None for a dataset that only has real data.
    generator: str | None = None

    def __post_init__(self) -> None:
        for table in self.tables:
            if (ref := table.parent) is None:
                continue
            parent = self.table(ref.table)
            for name in (ref.key, *ref.same):
                for side in (table, parent):
                    if name not in side.column_names or side.column(name).identifier is None:
                        raise ValueError(f"{table.name}.parent: {name!r} must be an identifier column of {side.name}")
            if ref.key != parent.key:
                raise ValueError(f"{table.name}.parent: {ref.key!r} is not the key of {parent.name} ({parent.key!r})")

    @property
    def tables(self) -> tuple[TableSpec, TableSpec]:
        return (self.events, self.labels)

    def table(self, name: str) -> TableSpec:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"dataset {self.name!r} has no table {name!r}")

    @property
    def longest_window(self) -> timedelta:
        return max(a.window for a in self.aggregates)
