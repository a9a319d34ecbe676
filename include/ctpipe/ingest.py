"""Extraction: the rows of one data interval, from the SQL source into a raw lake partition.

Rows are streamed in chunks of bounded size (a server-side cursor on
PostgreSQL) and written to Parquet as they arrive, so an interval of any size
fits in memory. The partition's schema is the source table's, as reflected at
extraction time: a renamed or retyped source column reaches validation as it
is, where the schema check names it.

Nothing the source holds is lost on the way:

* A value that does not fit its column's declared type (text in a REAL column,
  which SQLite allows, or a timestamp text that does not parse) is written as
  null, and the original is kept in the row's ``_source_values`` (JSON, column ->
  value). Validation quarantines that row as ``type_mismatch(<column>)`` or
  ``unparseable_timestamp(<column>)``; the interval's other rows go on.
* A row no interval can select -- its timestamp is NULL, not a timestamp, or
  earlier than the first interval -- is *unplaceable*. ``quarantine_unplaceable``
  finds every such row of a table, on every run, and writes them all (with their
  reasons) to ``unplaceable/<table>.parquet``, so that over a whole table
  rows in the source = Σ over intervals (validated + quarantined) + unplaceable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from ctpipe.datasets.spec import TableSpec
from ctpipe.lake import QUARANTINE_REASONS, SOURCE_VALUES, Lake, atomic_path, write_json
from ctpipe.records import Extraction, Interval
from ctpipe.settings import Settings
from ctpipe.source import describe, engine_for_connection

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """The source does not hold what the dataset says it should."""


def arrow_type(column: sa.Column) -> pa.DataType:
    """The Arrow type for a reflected source column."""
    sql_type = column.type
    if isinstance(sql_type, sa.DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(sql_type, sa.Boolean):
        return pa.bool_()
    if isinstance(sql_type, sa.Integer):
        return pa.int64()
    if isinstance(sql_type, (sa.Float, sa.Numeric)):
        return pa.float64()
    return pa.string()


def _reflect(engine: sa.Engine, spec: TableSpec) -> sa.Table:
    try:
        table = sa.Table(spec.name, sa.MetaData(), autoload_with=engine)
    except sa.exc.NoSuchTableError:
        raise SourceError(f"source table {spec.name!r} does not exist in {describe(engine)}") from None
    if spec.timestamp not in table.c:
        raise SourceError(
            f"source table {spec.name!r} has no timestamp column {spec.timestamp!r} "
            f"(columns: {', '.join(table.c.keys())}); cannot select a data interval"
        )
    return table


# Dialects that store timestamps as text (SQLite: ISO 8601 in any spelling, with or without
# a UTC offset). Comparing that text with a bound files rows by spelling, not by instant:
# "2026-01-02 00:00:00" sorts before "2026-01-02 00:00:00.000000", and "...T01:00:00+02:00"
# is an instant of the day before. Such a source is read with a margin on each side (a UTC
# offset is less than a day) and each row is placed by its parsed instant.
TEXT_TIMESTAMP_DIALECTS = ("sqlite",)
MARGIN = timedelta(days=1)


class Unfit(ValueError):
    """A source value that its column's declared type cannot hold."""


def _as_utc(value: Any) -> datetime:
    """A timestamp as an aware UTC datetime: naive values (SQLite's) are UTC, text is ISO 8601."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):  # an integer is no timestamp: Arrow would read it as microseconds
        raise Unfit(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _convert(value: Any, arrow: pa.DataType) -> Any:
    """``value`` as ``arrow`` holds it; ``Unfit`` when it cannot be, without rounding or guessing."""
    if value is None:
        return None
    if pa.types.is_timestamp(arrow):
        try:
            return _as_utc(value)
        except ValueError as error:
            raise Unfit(value) from error
    if pa.types.is_boolean(arrow):
        ok = isinstance(value, bool)
    elif pa.types.is_integer(arrow):  # 1.5 in an INTEGER column must not become 1
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif pa.types.is_floating(arrow):
        if isinstance(value, Decimal):  # PostgreSQL NUMERIC
            return float(value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise Unfit(value)
    return value


def _text_columns(table: sa.Table) -> list[Any]:
    # The timestamps' text itself, not SQLAlchemy's parse of it (which knows one spelling and
    # raises on any other): this module reads each value, and keeps the ones it cannot.
    return [sa.type_coerce(c, sa.String).label(c.name) if isinstance(c.type, sa.DateTime) else c for c in table.c]


def interval_query(engine: sa.Engine, table: sa.Table, spec: TableSpec, interval: Interval) -> sa.Select:
    """The rows of ``interval``: exactly on a typed timestamp column; with a margin where it is text."""
    timestamp = table.c[spec.timestamp]
    order = [timestamp] + ([table.c[spec.key]] if spec.key in table.c else [])
    if engine.dialect.name not in TEXT_TIMESTAMP_DIALECTS:
        return sa.select(table).where(timestamp >= interval.start, timestamp < interval.end).order_by(*order)
    # " " sorts before "T": a low bound spelled with the first and a high bound with the
    # second hold every spelling of every local time within the margin of the interval.
    low = f"{interval.start - MARGIN:%Y-%m-%d %H:%M:%S}"
    high = f"{interval.end + MARGIN:%Y-%m-%dT%H:%M:%S}"
    text = sa.type_coerce(timestamp, sa.String)
    return (
        sa.select(*_text_columns(table), _unplaceable_text(text).label(UNPLACEABLE))
        .where(text >= low, text < high)
        .order_by(*order)
    )


UNPLACEABLE = "_unplaceable"


def _unplaceable_text(text: Any) -> Any:
    """SQL true for a stored timestamp that SQLite itself does not read as one calendar instant.

    Python reads ISO 8601 more strictly than SQLite (SQLite takes "2026-02-30", "24:00", "now"
    and bare numbers); this test holds every value either refuses, so that the rows
    ``quarantine_unplaceable`` selects include every row no interval can place.
    """
    day = sa.func.substr(text, 1, 10)
    return sa.or_(
        text.is_(None),
        sa.func.typeof(text) != "text",
        sa.func.julianday(text).is_(None),
        sa.not_(text.op("GLOB")("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*")),
        sa.func.date(sa.func.julianday(day)) != day,  # date() alone keeps "2026-02-30"
        sa.and_(sa.func.length(text) > 10, sa.func.substr(text, 12, 2) > "23"),
    )


def _in_interval(rows: list[sa.Row], position: int, spec: TableSpec, interval: Interval) -> list[tuple]:
    """The rows whose timestamp, read as an instant, lies in ``[start, end)``; the timestamp as that instant.

    A value that cannot be read belongs to no interval: ``quarantine_unplaceable`` keeps it,
    as long as SQLite agrees that it is no timestamp. Where the two disagree the row would
    be lost, so that is an error naming the value.
    """
    kept = []
    for row in rows:
        *values, unplaceable = row
        try:
            stamp = _as_utc(values[position])
        except ValueError:
            if unplaceable:
                continue
            raise SourceError(
                f"column {spec.timestamp!r} of source table {spec.name!r} holds {values[position]!r}, "
                "which is not a timestamp"
            ) from None
        if interval.start <= stamp < interval.end:
            kept.append((*values[:position], stamp, *values[position + 1 :]))
    return kept


def _to_arrow(rows: list[Any], schema: pa.Schema) -> pa.Table:
    """The rows as Arrow; a value its column cannot hold is null there, and kept in ``_source_values``."""
    unfit: dict[int, dict[str, Any]] = {}
    arrays = []
    for index, field in enumerate(schema):
        if field.name == SOURCE_VALUES:
            continue
        values = [row[index] for row in rows]
        try:
            arrays.append(_fast_array(values, field.type))
        except (Unfit, ValueError, TypeError, pa.ArrowInvalid, pa.ArrowTypeError):
            converted = []
            for position, value in enumerate(values):
                try:
                    converted.append(pa.scalar(_convert(value, field.type), type=field.type).as_py())
                except (Unfit, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                    unfit.setdefault(position, {})[field.name] = value
                    converted.append(None)
            arrays.append(pa.array(converted, type=field.type))
    kept = [json.dumps(unfit[i], default=repr, ensure_ascii=False) if i in unfit else None for i in range(len(rows))]
    arrays.append(pa.array(kept, type=pa.string()))
    return pa.Table.from_arrays(arrays, schema=schema)


def _fast_array(values: list[Any], arrow: pa.DataType) -> pa.Array:
    """The common case, at Arrow's speed; raises where any value needs ``_convert``'s judgement."""
    if pa.types.is_timestamp(arrow):
        values = [None if v is None else _as_utc(v) for v in values]
    elif pa.types.is_integer(arrow) and not all(type(v) is int for v in values if v is not None):
        raise Unfit(arrow)  # Arrow would round 1.5 to 1
    return pa.array(values, type=arrow)


def raw_schema(table: sa.Table) -> pa.Schema:
    """A raw partition's schema: the source's columns as declared, then the values they could not hold."""
    return pa.schema([pa.field(c.name, arrow_type(c)) for c in table.columns] + [pa.field(SOURCE_VALUES, pa.string())])


def extract_interval(engine: sa.Engine, spec: TableSpec, interval: Interval, lake: Lake, chunk_rows: int) -> Extraction:
    """Write the rows of ``spec`` stamped in ``interval`` to the raw zone, replacing any earlier run's partition."""
    table = _reflect(engine, spec)
    schema = raw_schema(table)
    query = interval_query(engine, table, spec, interval)
    widened = engine.dialect.name in TEXT_TIMESTAMP_DIALECTS
    position = table.columns.keys().index(spec.timestamp)

    destination = lake.partition("raw", spec.name, interval)
    rows = 0
    with atomic_path(destination) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows).execute(query)
            for chunk in result.partitions(chunk_rows):
                if widened:
                    chunk = _in_interval(chunk, position, spec, interval)
                if chunk:
                    writer.write_table(_to_arrow(chunk, schema))
                rows += len(chunk)
        if rows == 0:  # an empty interval still gets a partition: downstream reads "no rows", not "missing"
            writer.write_table(schema.empty_table())

    extraction = Extraction(
        table=spec.name,
        interval=interval,
        uri=str(destination),
        rows=rows,
        columns=tuple(map(str, table.columns.keys())),
    )
    write_json(
        lake.manifest("raw", spec.name, interval),
        {**extraction.to_dict(), "source": describe(engine), "extracted_at": datetime.now(UTC).isoformat()},
    )
    return extraction


# Why a row belongs to no interval.
MISSING_TIMESTAMP = "missing_timestamp"
UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
BEFORE_START_DATE = "before_start_date"


def unplaceable_query(engine: sa.Engine, table: sa.Table, spec: TableSpec, first: datetime) -> sa.Select:
    """Every row that may belong to no interval starting at ``first`` or later: a superset, read row by row."""
    timestamp = table.c[spec.timestamp]
    order = [table.c[spec.key]] if spec.key in table.c else list(table.c)
    if engine.dialect.name not in TEXT_TIMESTAMP_DIALECTS:
        return sa.select(table).where(sa.or_(timestamp.is_(None), timestamp < first)).order_by(*order)
    text = sa.type_coerce(timestamp, sa.String)
    high = f"{first + MARGIN:%Y-%m-%dT%H:%M:%S}"  # every spelling of an instant before ``first``
    return sa.select(*_text_columns(table)).where(sa.or_(_unplaceable_text(text), text < high)).order_by(*order)


def unplaceable_reason(value: Any, column: str, first: datetime) -> str | None:
    """Why a row stamped ``value`` belongs to no interval from ``first`` on; None if it does belong to one."""
    if value is None:
        return f"{MISSING_TIMESTAMP}({column})"
    try:
        stamp = _as_utc(value)
    except ValueError:
        return f"{UNPARSEABLE_TIMESTAMP}({column})"
    return f"{BEFORE_START_DATE}({column})" if stamp < first else None


def quarantine_unplaceable(engine: sa.Engine, spec: TableSpec, lake: Lake, first: datetime) -> tuple[Path, Counter]:
    """Write every row of ``spec`` that no interval can select to ``lake.unplaceable``, with its reason.

    The whole set is rewritten on every run, from the source as it is now, so a row is
    there exactly once, and leaves when it is corrected. Returns the path and the rows per reason.
    """
    table = _reflect(engine, spec)
    schema = raw_schema(table)
    position = table.columns.keys().index(spec.timestamp)
    reasons: Counter = Counter()
    destination = lake.unplaceable(spec.name)
    out_schema = schema.append(pa.field(QUARANTINE_REASONS, pa.list_(pa.string())))
    with atomic_path(destination) as tmp, pq.ParquetWriter(tmp, out_schema) as writer:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=10_000).execute(
                unplaceable_query(engine, table, spec, first)
            )
            for chunk in result.partitions(10_000):
                rows, why = [], []
                for row in chunk:
                    if reason := unplaceable_reason(row[position], spec.timestamp, first):
                        rows.append(row)
                        why.append([reason])
                if rows:
                    part = _to_arrow(rows, schema)
                    writer.write_table(part.append_column(out_schema.field(QUARANTINE_REASONS), pa.array(why)))
                    reasons.update(r for (r,) in why)
        if not reasons:
            writer.write_table(out_schema.empty_table())
    return destination, reasons


def read_partition(uri: str | Path):
    """A lake partition as a pandas DataFrame."""
    return pq.read_table(uri).to_pandas()


def extract_table(table_name: str, interval: Interval, settings: Settings | None = None) -> Extraction:
    """Extract one table's interval through the source's Airflow connection, with deployment settings.

    A missing or malformed connection raises ``ConfigurationError``, a server that does not answer
    ``ServiceUnavailableError``, before anything is written.
    """
    settings = settings or Settings.from_env()
    spec = settings.dataset.table(table_name)
    engine = engine_for_connection(settings.source_conn_id)
    lake = Lake(settings.lake_dir)
    for path in lake.sweep_temporaries():
        log.info("removed %s, the temporary of a write that was killed", path)
    try:
        extraction = extract_interval(engine, spec, interval, lake, settings.extract_chunk_rows)
        path, reasons = quarantine_unplaceable(engine, spec, lake, settings.start_date)
    finally:
        engine.dispose()
    if reasons:
        log.warning("%s: %d rows in no interval (%s), kept in %s", spec.name, reasons.total(), dict(reasons), path)
    return dataclasses.replace(extraction, unplaceable=dict(reasons.most_common()), unplaceable_uri=str(path))
