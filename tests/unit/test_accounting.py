"""Every row of a source table is in exactly one place, whatever it holds.

A SQLite source salted with every kind of row no interval can select (NULL, unreadable
and integer timestamps, rows before the first interval) and with values that do not fit
their declared type, run through the ingest tasks' own functions day by day:

    rows in the source = Σ over intervals (validated + quarantined + held back) + unplaceable
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from ctpipe.lake import QUARANTINE_REASONS, SOURCE_VALUES, Lake
from ctpipe.records import Interval
from ctpipe.settings import Settings

from .sources import DATASET, ingest_days, seeded_sqlite, where_every_row_is

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = [Interval(START + timedelta(days=i), START + timedelta(days=i + 1)) for i in range(3)]

# sample_id -> (submitted_at as stored, why it belongs to no interval)
UNPLACEABLE_SAMPLES = {
    "NULL-TIME": (None, "missing_timestamp(submitted_at)"),
    "NOT-A-TIME": ("2026-01-02 noonish", "unparseable_timestamp(submitted_at)"),
    "NO-SUCH-DAY": ("2026-02-30 10:00:00", "unparseable_timestamp(submitted_at)"),  # SQLite reads it as March 2
    "HOUR-24": ("2026-01-02 24:00:00+02:00", "unparseable_timestamp(submitted_at)"),
    "EPOCH": (1767348000, "unparseable_timestamp(submitted_at)"),  # 2026-01-02 10:00 UTC, as an integer
    "EARLY": ("2025-12-30 12:00:00", "before_start_date(submitted_at)"),
    "EARLY-BY-OFFSET": ("2026-01-01T01:00:00+02:00", "before_start_date(submitted_at)"),  # 2025-12-31 23:00 UTC
}
UNPLACEABLE_RESULTS = {"NO-REPORT-TIME": (None, "missing_timestamp(reported_at)")}


def insert(engine, table: str, template: dict, rows: dict[str, tuple]) -> None:
    timestamp = DATASET.table(table).timestamp
    with engine.begin() as conn:
        for sample_id, (stamp, _) in rows.items():
            row = {**template, "sample_id": sample_id, timestamp: stamp}
            names = ", ".join(row)
            conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + c for c in row)})"), row)


def source_keys(engine, table: str) -> Counter:
    with engine.connect() as conn:
        return Counter(conn.execute(sa.text(f"SELECT sample_id FROM {table}")).scalars())


@pytest.fixture
def salted(tmp_path, monkeypatch):
    engine, samples, results = seeded_sqlite(tmp_path / "source.db", days=3, rows_per_day=120, bad_row_share=0.05)
    template = {k: (None if v != v else v) for k, v in samples.iloc[0].to_dict().items()}
    with engine.begin() as conn:  # a value of the wrong type, in an interval that must still pass
        mismatched = (
            conn.execute(
                sa.text("SELECT sample_id FROM lab_samples WHERE submitted_at LIKE '2026-01-02%' ORDER BY sample_id")
            )
            .scalars()
            .first()
        )
        conn.execute(sa.text("UPDATE lab_samples SET volume_ul = 'a lot' WHERE sample_id = :s"), {"s": mismatched})
    insert(engine, "lab_samples", template, UNPLACEABLE_SAMPLES)
    insert(engine, "qc_results", results.iloc[0].to_dict(), UNPLACEABLE_RESULTS)
    monkeypatch.setenv("CTPIPE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_CTPIPE_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "source.db")})
    )
    yield engine, mismatched
    engine.dispose()


@pytest.mark.parametrize("gate_chunk_rows", ["250000", "17"], ids=["whole", "in-chunks"])
def test_every_source_row_is_validated_quarantined_or_unplaceable_exactly_once(salted, monkeypatch, gate_chunk_rows):
    monkeypatch.setenv("CTPIPE_GATE_CHUNK_ROWS", gate_chunk_rows)  # the gate reads an interval in many chunks too
    engine, mismatched = salted
    settings = Settings.from_env()
    outcomes = ingest_days(DAYS, settings)
    lake = Lake(settings.lake_dir)

    for table, salt in (("lab_samples", UNPLACEABLE_SAMPLES), ("qc_results", UNPLACEABLE_RESULTS)):
        assert all(o.passed for o in outcomes[table]), [o.message for o in outcomes[table]]
        in_source = source_keys(engine, table)
        assert where_every_row_is(lake, table) == in_source  # every row, once (redeliveries as often as sent)
        counted = sum(o.rows_passed + o.rows_quarantined + o.rows_held for o in outcomes[table])
        unplaceable = pq.read_table(lake.unplaceable(table)).to_pandas()
        assert in_source.total() == counted + len(unplaceable)
        # Each unplaceable row once, with its reason; the report counts them.
        assert dict(zip(unplaceable["sample_id"], unplaceable[QUARANTINE_REASONS].map(list), strict=True)) == {
            sample_id: [reason] for sample_id, (_, reason) in salt.items()
        }
        assert outcomes[table][-1].unplaceable == dict(Counter(reason for _, reason in salt.values()))

    # The unreadable source values are kept as the source held them.
    unplaceable = pq.read_table(lake.unplaceable("lab_samples")).to_pandas().set_index("sample_id")
    assert json.loads(unplaceable.at["EPOCH", SOURCE_VALUES]) == {"submitted_at": 1767348000}
    assert json.loads(unplaceable.at["NOT-A-TIME", SOURCE_VALUES]) == {"submitted_at": "2026-01-02 noonish"}
    assert str(unplaceable.at["EARLY-BY-OFFSET", "submitted_at"]) == "2025-12-31 23:00:00+00:00"

    # A value of the wrong type blocks nothing: its row is quarantined with the original, the rest passed.
    quarantine = pq.read_table(lake.partition("quarantine", "lab_samples", DAYS[1])).to_pandas()
    row = quarantine.set_index("sample_id").loc[mismatched]
    assert list(row[QUARANTINE_REASONS]) == ["type_mismatch(volume_ul)"]
    assert json.loads(row[SOURCE_VALUES]) == {"volume_ul": "a lot"}
    assert outcomes["lab_samples"][1].failures["type_mismatch(volume_ul)"] == 1
    raw = pq.read_table(lake.partition("raw", "lab_samples", DAYS[1])).to_pandas().set_index("sample_id")
    assert json.loads(raw.at[mismatched, SOURCE_VALUES]) == {"volume_ul": "a lot"}

    # Each interval's Data Docs page is built (once a task, for every interval it validated), also for the
    # intervals validated again for the rows they held back; the interval's report links it.
    from ctpipe import artifacts

    revalidated = [o for o in outcomes["qc_results"] if o.rows_held]
    assert revalidated, "no interval held rows back: the check below would not reach a re-validation"
    for table in ("lab_samples", "qc_results"):
        for interval in DAYS:
            report = json.loads(artifacts.validation_report(settings, table, interval).read_text())
            page = Path(report["data_docs_uri"].removeprefix("file://"))
            assert page.is_file() and interval.key in str(page), report


def test_unplaceable_rows_are_kept_once_however_often_ingest_runs_and_leave_when_fixed(salted):
    engine, _ = salted
    settings = Settings.from_env()
    ingest_days(DAYS[:1], settings)
    lake = Lake(settings.lake_dir)
    first = pq.read_table(lake.unplaceable("lab_samples"))
    ingest_days(DAYS[:1], settings)
    assert pq.read_table(lake.unplaceable("lab_samples")).equals(first)

    with engine.begin() as conn:  # someone fills in the missing time
        conn.execute(
            sa.text("UPDATE lab_samples SET submitted_at = '2026-01-01 08:00:00' WHERE sample_id = 'NULL-TIME'")
        )
    (outcome,), _ = ingest_days(DAYS[:1], settings).values()
    assert "NULL-TIME" not in pq.read_table(lake.unplaceable("lab_samples")).column("sample_id").to_pylist()
    validated = pq.read_table(lake.partition("validated", "lab_samples", DAYS[0])).column("sample_id").to_pylist()
    assert "NULL-TIME" in validated and "missing_timestamp(submitted_at)" not in outcome.unplaceable


def retype_sqlite_column(engine, table: str, column: str, new_type: str) -> None:
    """What ``ALTER COLUMN ... TYPE`` does elsewhere: SQLite rebuilds the table, values as they were."""
    with engine.begin() as conn:
        ddl = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}).scalar_one()
        before = f"{column} FLOAT"
        assert before in ddl
        conn.execute(sa.text(f"ALTER TABLE {table} RENAME TO {table}_old"))
        conn.execute(sa.text(ddl.replace(before, f"{column} {new_type}")))
        conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM {table}_old"))
        conn.execute(sa.text(f"DROP TABLE {table}_old"))


@pytest.mark.parametrize("new_type", ["INTEGER", "TEXT"])
def test_a_declared_type_change_is_a_schema_change_that_withdraws_the_interval(salted, new_type):
    """The gate's schema path, not row by row: an INTEGER column would otherwise quarantine only its non-integers."""
    from ctpipe.ingest import extract_table
    from ctpipe.validation import ValidationGateError, validate_extraction

    engine, _ = salted
    settings = Settings.from_env()
    lake = Lake(settings.lake_dir)
    ingest_days(DAYS[1:2], settings)
    validated = lake.partition("validated", "lab_samples", DAYS[1])
    assert validated.exists()

    retype_sqlite_column(engine, "lab_samples", "volume_ul", new_type)
    extraction = extract_table("lab_samples", DAYS[1], settings)
    with pytest.raises(ValidationGateError) as raised:
        validate_extraction(extraction, settings)
    declared = {"INTEGER": "int64", "TEXT": "string"}[new_type]
    assert f"column 'volume_ul' retyped: expected float, the source declares {declared}" in str(raised.value)
    assert not validated.exists()  # nothing of the interval is published downstream
    quarantine = pq.read_table(lake.partition("quarantine", "lab_samples", DAYS[1])).to_pandas()
    assert len(quarantine) == extraction.rows
    assert quarantine[QUARANTINE_REASONS].map(lambda r: list(r) == [r[0]] and "schema_changed" in r[0]).all()
