"""Helpers that build real SQLite sources for tests."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from ctpipe.datasets import get_dataset
from ctpipe.datasets.lab_qc_generator import generate
from ctpipe.datasets.synthetic import GeneratorConfig
from ctpipe.source import write_source

DATASET = get_dataset("lab_qc")


def seeded_sqlite(path: Path, **config) -> tuple[sa.Engine, pd.DataFrame, pd.DataFrame]:
    samples, results = generate(GeneratorConfig(**{"start": date(2026, 1, 1), "days": 3, **config}))
    engine = sa.create_engine(f"sqlite:///{path}")
    write_source(engine, DATASET, {DATASET.events.name: samples, DATASET.labels.name: results})
    return engine, samples, results


def raw_partition(lake, spec, interval, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as a raw partition, with the Arrow types extraction gives (microsecond UTC timestamps).

    A column pandas cannot type (empty, or all null) gets the type the dataset declares for it.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ctpipe.validation import ARROW_TYPES

    declared = {c.name: ARROW_TYPES[c.type] for c in spec.columns}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema = pa.schema(
        [
            pa.field(f.name, pa.timestamp("us", tz="UTC"))
            if pa.types.is_timestamp(f.type)
            else pa.field(f.name, declared[f.name])
            if pa.types.is_null(f.type) and f.name in declared
            else f
            for f in table.schema
        ]
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


def ingest_days(days, settings=None) -> dict[str, list]:
    """Run both tables of the dataset through the ingest tasks' own functions, interval by interval.

    Returns, per table, the validation outcome of each interval (the gate error's outcome when it failed).
    """
    from ctpipe import artifacts
    from ctpipe.ingest import extract_table
    from ctpipe.records import ValidationOutcome
    from ctpipe.settings import Settings
    from ctpipe.validation import ValidationGateError, validate_extraction

    settings = settings or Settings.from_env()
    outcomes: dict[str, list] = {t.name: [] for t in DATASET.tables}
    for interval in days:
        for table in DATASET.tables:
            extraction = extract_table(table.name, interval, settings)
            try:
                outcomes[table.name].append(validate_extraction(extraction, settings))
            except ValidationGateError:  # the report is written before the gate fails
                payload = json.loads(artifacts.validation_report(settings, table.name, interval).read_text())
                payload.pop("validated_at")
                outcomes[table.name].append(ValidationOutcome.from_dict(payload))
    return outcomes


def where_every_row_is(lake, table: str, key: str = DATASET.events.key) -> Counter:
    """How many times each ``key`` is found in the validated, quarantine, held and unplaceable parts of the lake."""
    import pyarrow.parquet as pq

    keys: Counter = Counter()
    for zone in ("validated", "quarantine", "held"):
        for _, path in lake.partitions(zone, table):
            keys.update(pq.read_table(path, columns=[key]).column(key).to_pylist())
    unplaceable = lake.unplaceable(table)
    if unplaceable.exists():
        keys.update(pq.read_table(unplaceable, columns=[key]).column(key).to_pylist())
    return keys
