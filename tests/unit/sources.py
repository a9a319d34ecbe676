"""Helpers that build real SQLite sources for tests."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from ctpipe.datasets import get_dataset
from ctpipe.datasets.lab_qc_generator import GeneratorConfig, generate
from ctpipe.source import write_source

DATASET = get_dataset("lab_qc")


def seeded_sqlite(path: Path, **config) -> tuple[sa.Engine, pd.DataFrame, pd.DataFrame]:
    samples, results = generate(GeneratorConfig(**{"start": date(2026, 1, 1), "days": 3, **config}))
    engine = sa.create_engine(f"sqlite:///{path}")
    write_source(engine, DATASET, {DATASET.events.name: samples, DATASET.labels.name: results})
    return engine, samples, results


def raw_partition(lake, spec, interval, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as a raw partition, with the Arrow types extraction gives (microsecond UTC timestamps)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema = pa.schema(
        [pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f for f in table.schema]
    )
    path = lake.partition("raw", spec.name, interval)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.cast(schema), path)
    return path


def rule_violations(frame: pd.DataFrame, spec) -> pd.Series:
    """Rows that break a rule of ``spec``, checked with plain pandas, independently of GX."""
    bad = frame.duplicated() | frame[spec.key].duplicated(keep=False) & ~frame.duplicated(keep=False)
    for column in spec.columns:
        values = frame[column.name]
        if not column.nullable:
            bad |= values.isna()
        if column.required_when:
            bad |= frame.eval(column.required_when) & values.isna()
        if column.min_value is not None:
            bad |= (values < column.min_value) | (values > column.max_value)
        if column.allowed_values:
            bad |= values.notna() & ~values.isin(column.allowed_values)
        if column.identifier:
            text = values.dropna().astype(str)
            wrong = (text.str.len() < 1) | (text.str.len() > column.identifier.max_length)
            wrong |= text != text.str.strip()
            if column.identifier.pattern:
                wrong |= ~text.str.match(column.identifier.pattern)
            bad |= wrong.reindex(frame.index, fill_value=False)
    return bad
