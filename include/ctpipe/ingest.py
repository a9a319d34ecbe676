"""Extraction: the rows of one data interval, from the SQL source into a raw lake partition.

Rows are streamed in chunks of bounded size (a server-side cursor on
PostgreSQL) and written to Parquet as they arrive, so an interval of any size
fits in memory. The partition's schema is the source table's, as reflected at
extraction time: a renamed or retyped source column reaches validation as it
is, where the schema check names it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
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


def _as_utc(value: Any) -> Any:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


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
    timestamp = table.c[spec.timestamp]
    order = [timestamp] + ([table.c[spec.key]] if spec.key in table.c else [])
    query = sa.select(table).where(timestamp >= interval.start, timestamp < interval.end).order_by(*order)

    destination = lake.partition("raw", spec.name, interval)
    rows = 0
    with atomic_path(destination) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows).execute(query)
            for chunk in result.partitions(chunk_rows):
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
