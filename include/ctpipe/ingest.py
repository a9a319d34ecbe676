"""Extraction: the rows of one data interval, from the SQL source into a raw lake partition.

Rows are streamed in chunks of bounded size (a server-side cursor on
PostgreSQL) and written to Parquet as they arrive, so an interval of any size
fits in memory. The partition's schema is the source table's, as reflected at
extraction time: a renamed or retyped source column reaches validation as it
is, where the schema check names it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from ctpipe.datasets.spec import TableSpec
from ctpipe.lake import Lake, atomic_path, write_json
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


def _as_utc(value: Any) -> Any:
    """A timestamp as an aware UTC datetime: naive values (SQLite's) are UTC, text is ISO 8601."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def instant(value: Any, column: str, table_name: str) -> datetime:
    """The UTC instant a source timestamp names; a SourceError says which value cannot be read as one."""
    try:
        parsed = _as_utc(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, datetime):
        raise SourceError(f"column {column!r} of source table {table_name!r} holds {value!r}, which is not a timestamp")
    return parsed


def interval_query(engine: sa.Engine, table: sa.Table, spec: TableSpec, interval: Interval) -> sa.Select:
    """The rows of ``interval``: exactly on a typed timestamp column; with a margin where it is text."""
    timestamp = table.c[spec.timestamp]
    order = [timestamp] + ([table.c[spec.key]] if spec.key in table.c else [])
    if engine.dialect.name not in TEXT_TIMESTAMP_DIALECTS:
        return sa.select(table).where(timestamp >= interval.start, timestamp < interval.end).order_by(*order)
    # The text itself, not SQLAlchemy's parse of it (which knows one spelling). " " sorts
    # before "T": a low bound spelled with the first and a high bound with the second hold
    # every spelling of every local time within the margin of the interval.
    columns = [sa.type_coerce(c, sa.String).label(c.name) if c is timestamp else c for c in table.c]
    low = f"{interval.start - MARGIN:%Y-%m-%d %H:%M:%S}"
    high = f"{interval.end + MARGIN:%Y-%m-%dT%H:%M:%S}"
    text = sa.type_coerce(timestamp, sa.String)
    return sa.select(*columns).where(text >= low, text < high).order_by(*order)


def _in_interval(rows: list[sa.Row], position: int, spec: TableSpec, interval: Interval) -> list[tuple]:
    """The rows whose timestamp, read as an instant, lies in ``[start, end)``; the timestamp as that instant."""
    kept = []
    for row in rows:
        stamp = instant(row[position], spec.timestamp, spec.name)
        if interval.start <= stamp < interval.end:
            kept.append((*row[:position], stamp, *row[position + 1 :]))
    return kept


def _to_arrow(rows: list[sa.Row], schema: pa.Schema, table_name: str) -> pa.Table:
    arrays = []
    for index, field in enumerate(schema):
        values = [row[index] for row in rows]
        if pa.types.is_timestamp(field.type):
            values = [_as_utc(v) for v in values]
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            bad = next((v for v in values if v is not None and not _fits(v, field.type)), None)
            raise SourceError(
                f"column {field.name!r} of source table {table_name!r} is declared {field.type} "
                f"but holds {bad!r}: {error}"
            ) from None
    return pa.Table.from_arrays(arrays, schema=schema)


def _fits(value: Any, arrow: pa.DataType) -> bool:
    try:
        pa.array([value], type=arrow)
        return True
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False


def extract_interval(engine: sa.Engine, spec: TableSpec, interval: Interval, lake: Lake, chunk_rows: int) -> Extraction:
    """Write the rows of ``spec`` stamped in ``interval`` to the raw zone, replacing any earlier run's partition."""
    table = _reflect(engine, spec)
    schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in table.columns])
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
                    writer.write_table(_to_arrow(chunk, schema, spec.name))
                rows += len(chunk)
        if rows == 0:  # an empty interval still gets a partition: downstream reads "no rows", not "missing"
            writer.write_table(schema.empty_table())

    extraction = Extraction(
        table=spec.name, interval=interval, uri=str(destination), rows=rows, columns=tuple(schema.names)
    )
    write_json(
        lake.manifest("raw", spec.name, interval),
        {**extraction.to_dict(), "source": describe(engine), "extracted_at": datetime.now(UTC).isoformat()},
    )
    return extraction


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
        return extract_interval(engine, spec, interval, lake, settings.extract_chunk_rows)
    finally:
        engine.dispose()
