"""The production source: the same generator and extraction code on a real PostgreSQL.

Needs the PostgreSQL server of ``tests/services.py``; each run creates and drops
its own database.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from ctpipe.datasets import get_dataset
from ctpipe.datasets.synthetic import GeneratorConfig
from ctpipe.ingest import extract_interval, extract_table
from ctpipe.lake import Lake
from ctpipe.records import Interval
from ctpipe.seed import seed

from ..services import postgres_database

pytestmark = pytest.mark.services

DATASET = get_dataset("lab_qc")
DAY = Interval(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC))
CONFIG = GeneratorConfig(start=date(2026, 1, 1), days=3, rows_per_day=300, bad_row_share=0.05)


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_database("source") as url:
        yield url


def use_postgres_source(monkeypatch, postgres_url, state) -> None:
    monkeypatch.setenv("CTPIPE_STATE_DIR", str(state))
    connection = {
        "conn_type": "postgres",
        "host": postgres_url.host,
        "port": postgres_url.port,
        "login": postgres_url.username,
        "schema": postgres_url.database,
    }
    monkeypatch.setenv("AIRFLOW_CONN_CTPIPE_SOURCE", json.dumps(connection))
    # The index of validated keys in PostgreSQL too, as a deployment with workers on several machines has it.
    monkeypatch.setenv("CTPIPE_KEY_INDEX_URL", postgres_url.render_as_string(hide_password=False))


def test_postgres_and_sqlite_sources_give_identical_partitions(postgres_url, tmp_path, monkeypatch):
    seed(postgres_url.render_as_string(hide_password=False), CONFIG)
    seed(f"sqlite:///{tmp_path / 'source.db'}", CONFIG)

    # Production reaches PostgreSQL through an Airflow connection and the postgres provider's hook.
    use_postgres_source(monkeypatch, postgres_url, tmp_path / "pg-state")
    monkeypatch.setenv("CTPIPE_EXTRACT_CHUNK_ROWS", "64")  # many round trips through a server-side cursor
    from_postgres = {t.name: extract_table(t.name, DAY) for t in DATASET.tables}

    sqlite = sa.create_engine(f"sqlite:///{tmp_path / 'source.db'}")
    lake = Lake(tmp_path / "sqlite-lake")
    for table in DATASET.tables:
        from_sqlite = extract_interval(sqlite, table, DAY, lake, chunk_rows=1000)
        postgres_rows = pq.read_table(from_postgres[table.name].uri)
        assert from_postgres[table.name].rows == from_sqlite.rows > 100
        assert postgres_rows.equals(pq.read_table(from_sqlite.uri)), table.name
    sqlite.dispose()


def test_the_postgres_timestamp_column_is_timezone_aware(postgres_url):
    seed(postgres_url.render_as_string(hide_password=False), CONFIG)
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        kind = conn.execute(
            sa.text(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_name = 'lab_samples' AND column_name = 'submitted_at'"
            )
        ).scalar()
        first = conn.execute(sa.text("SELECT min(submitted_at) FROM lab_samples")).scalar()
    engine.dispose()
    assert kind == "timestamp with time zone"
    assert first.utcoffset() == timedelta(0) and first.date() == date(2026, 1, 1)


def test_on_postgres_every_row_is_validated_quarantined_or_unplaceable_exactly_once(
    postgres_url, tmp_path, monkeypatch
):
    """timestamptz holds no unreadable text, but NULLs and rows before the first interval it does."""
    from collections import Counter

    from ctpipe.lake import QUARANTINE_REASONS
    from ctpipe.settings import Settings

    from ..unit.sources import ingest_days, where_every_row_is

    seed(postgres_url.render_as_string(hide_password=False), CONFIG)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        for sample_id, stamp in (("NULL-TIME", None), ("EARLY", "2025-12-31T23:30:00-00:00")):
            conn.execute(
                sa.text(
                    "INSERT INTO lab_samples SELECT :s, lab_id, CAST(:t AS timestamptz), sample_type,"
                    " concentration_ng_ul, volume_ul, a260_280, a260_230, rin, storage_temp_c, transit_hours, courier"
                    " FROM lab_samples LIMIT 1"
                ),
                {"s": sample_id, "t": stamp},
            )
        conn.execute(
            sa.text("INSERT INTO qc_results SELECT 'NO-REPORT-TIME', lab_id, NULL, qc_outcome FROM qc_results LIMIT 1")
        )
    use_postgres_source(monkeypatch, postgres_url, tmp_path / "state")
    settings = Settings.from_env()
    days = [
        Interval(DAY.start + (i - 1) * (DAY.end - DAY.start), DAY.end + (i - 1) * (DAY.end - DAY.start))
        for i in range(3)
    ]
    outcomes = ingest_days(days, settings)
    lake = Lake(settings.lake_dir)
    expected = {
        "lab_samples": {"NULL-TIME": "missing_timestamp(submitted_at)", "EARLY": "before_start_date(submitted_at)"},
        "qc_results": {"NO-REPORT-TIME": "missing_timestamp(reported_at)"},
    }
    for table, salt in expected.items():
        with engine.connect() as conn:
            in_source = Counter(conn.execute(sa.text(f"SELECT sample_id FROM {table}")).scalars())
        assert where_every_row_is(lake, table) == in_source
        counted = sum(o.rows_passed + o.rows_quarantined + o.rows_held for o in outcomes[table])
        unplaceable = pq.read_table(lake.unplaceable(table)).to_pandas()
        assert in_source.total() == counted + len(unplaceable)
        assert (
            dict(zip(unplaceable["sample_id"], unplaceable[QUARANTINE_REASONS].map(lambda r: r[0]), strict=True))
            == salt
        )
    with engine.connect() as conn:  # the index, in PostgreSQL, holds exactly the keys validated
        indexed = conn.execute(sa.text("SELECT count(*) FROM ctpipe_validated_keys WHERE table_name = 'lab_samples'"))
        assert indexed.scalar_one() == sum(o.rows_passed for o in outcomes["lab_samples"])
    engine.dispose()


@pytest.mark.parametrize(("new_type", "declared"), [("integer", "int64"), ("text", "string")])
def test_on_postgres_a_declared_type_change_withdraws_the_interval(
    postgres_url, tmp_path, monkeypatch, new_type, declared
):
    from ctpipe.settings import Settings
    from ctpipe.validation import ValidationGateError, validate_extraction

    from ..unit.sources import ingest_days

    seed(postgres_url.render_as_string(hide_password=False), CONFIG)
    use_postgres_source(monkeypatch, postgres_url, tmp_path / "state")
    settings = Settings.from_env()
    ingest_days([DAY], settings)
    validated = Lake(settings.lake_dir).partition("validated", "lab_samples", DAY)
    assert validated.exists()

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"ALTER TABLE lab_samples ALTER COLUMN volume_ul TYPE {new_type} USING round(volume_ul)::{new_type}"
            )
        )
    engine.dispose()
    extraction = extract_table("lab_samples", DAY, settings)
    with pytest.raises(
        ValidationGateError, match=f"column 'volume_ul' retyped: expected float, the source declares {declared}"
    ):
        validate_extraction(extraction, settings)
    assert not validated.exists()
