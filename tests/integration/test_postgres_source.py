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
from ctpipe.datasets.lab_qc_generator import GeneratorConfig
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


def test_postgres_and_sqlite_sources_give_identical_partitions(postgres_url, tmp_path, monkeypatch):
    seed(postgres_url.render_as_string(hide_password=False), CONFIG)
    seed(f"sqlite:///{tmp_path / 'source.db'}", CONFIG)

    # Production reaches PostgreSQL through an Airflow connection and the postgres provider's hook.
    monkeypatch.setenv("CTPIPE_STATE_DIR", str(tmp_path / "pg-state"))
    monkeypatch.setenv("CTPIPE_EXTRACT_CHUNK_ROWS", "64")  # many round trips through a server-side cursor
    connection = {
        "conn_type": "postgres",
        "host": postgres_url.host,
        "port": postgres_url.port,
        "login": postgres_url.username,
        "schema": postgres_url.database,
    }
    monkeypatch.setenv("AIRFLOW_CONN_CTPIPE_SOURCE", json.dumps(connection))
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
