"""Keys hold across intervals, and labels across tables, through the index of validated keys.

A SQLite source run through the ingest tasks' own functions day by day: a key reused in a
later interval, labels whose sample is unknown, late, from another lab or reported before
it was submitted. Each test also checks that every source row is in exactly one place.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from ctpipe import artifacts
from ctpipe.key_index import KeyIndex
from ctpipe.lake import QUARANTINE_REASONS, Lake
from ctpipe.records import Interval
from ctpipe.settings import Settings

from .sources import DATASET, ingest_days, seeded_sqlite, where_every_row_is

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = [Interval(START + timedelta(days=i), START + timedelta(days=i + 1)) for i in range(6)]
GRACE = DATASET.labels.parent.grace


@pytest.fixture
def source(tmp_path, monkeypatch):
    engine, samples, results = seeded_sqlite(tmp_path / "source.db", days=6, rows_per_day=50, bad_row_share=0)
    monkeypatch.setenv("CTPIPE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_CTPIPE_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "source.db")})
    )
    yield engine, samples, results
    engine.dispose()


def insert(engine, table: str, row: dict) -> None:
    row = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
    row = {k: (v.isoformat(sep=" ") if isinstance(v, datetime) else v) for k, v in row.items()}  # as text
    names = ", ".join(row)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + c for c in row)})"), row)


def in_zone(lake: Lake, zone: str, table: str, interval: Interval) -> pd.DataFrame:
    path = lake.partition(zone, table, interval)
    return pq.read_table(path).to_pandas().set_index("sample_id") if path.exists() else pd.DataFrame()


def assert_every_row_once(engine, lake: Lake, through: datetime) -> None:
    """Each source row stamped before ``through`` (the end of the last interval ingested) is in the lake once."""
    for table in DATASET.tables:
        frame = pd.read_sql_query(f"SELECT sample_id, {table.timestamp} FROM {table.name}", engine)  # text as stored
        stamped = pd.to_datetime(frame[table.timestamp], utc=True, format="ISO8601")
        in_source = Counter(frame.loc[stamped < through, "sample_id"])
        assert where_every_row_is(lake, table.name) == in_source, table.name


def test_a_key_validated_in_an_earlier_interval_is_a_duplicate_key_when_its_row_differs(source):
    engine, samples, _ = source
    first = samples[samples["submitted_at"] < DAYS[0].end].iloc[0]
    reused = {**first.to_dict(), "submitted_at": first["submitted_at"] + timedelta(days=1), "volume_ul": 1.5}
    insert(engine, "lab_samples", reused)
    settings = Settings.from_env()
    lake = Lake(settings.lake_dir)

    outcomes = ingest_days(DAYS[:2], settings)
    quarantined = in_zone(lake, "quarantine", "lab_samples", DAYS[1])
    assert list(quarantined.at[first["sample_id"], QUARANTINE_REASONS]) == [f"duplicate_key(sample_id, {DAYS[0].key})"]
    assert first["sample_id"] in in_zone(lake, "validated", "lab_samples", DAYS[0]).index  # the first one stands
    assert outcomes["lab_samples"][1].failures == {f"duplicate_key(sample_id, {DAYS[0].key})": 1}

    # Re-running either interval finds the same: an interval's own keys never collide with themselves.
    before = {day: pq.read_table(lake.partition("validated", "lab_samples", day)) for day in DAYS[:2]}
    ingest_days(DAYS[:2], settings)
    for day, table in before.items():
        assert pq.read_table(lake.partition("validated", "lab_samples", day)).equals(table)
    keys = KeyIndex.from_url(settings.key_index_url)
    validated = sum(len(in_zone(lake, "validated", "lab_samples", day)) for day in DAYS[:2])
    assert keys.count("lab_samples") == validated
    keys.close()
    assert_every_row_once(engine, lake, DAYS[1].end)


def test_labels_are_checked_against_the_validated_sample_they_belong_to(source):
    engine, samples, _ = source
    day2 = samples[
        (samples["submitted_at"] >= DAYS[1].start + timedelta(hours=3)) & (samples["submitted_at"] < DAYS[1].end)
    ]
    early, other_lab = day2.iloc[0], day2.iloc[1]
    with engine.begin() as conn:  # these samples' own outcomes are replaced by the broken ones below
        conn.execute(
            sa.text("DELETE FROM qc_results WHERE sample_id IN (:a, :b)"),
            {"a": early["sample_id"], "b": other_lab["sample_id"]},
        )
    outcome = {"qc_outcome": "passed"}
    insert(engine, "qc_results", {**outcome, "sample_id": early["sample_id"], "lab_id": early["lab_id"],
                                  "reported_at": early["submitted_at"] - timedelta(hours=1)})  # fmt: skip
    insert(engine, "qc_results", {**outcome, "sample_id": other_lab["sample_id"], "lab_id": "L-NOT-ITS-LAB",
                                  "reported_at": other_lab["submitted_at"] + timedelta(hours=2)})  # fmt: skip
    # An outcome whose sample never arrives, and one whose sample arrives late, stamped a day earlier.
    insert(engine, "qc_results", {**outcome, "sample_id": "S-NEVER", "lab_id": early["lab_id"],
                                  "reported_at": DAYS[1].start + timedelta(hours=12)})  # fmt: skip
    insert(engine, "qc_results", {**outcome, "sample_id": "S-LATE", "lab_id": early["lab_id"],
                                  "reported_at": DAYS[1].start + timedelta(hours=13)})  # fmt: skip
    settings = Settings.from_env()
    lake = Lake(settings.lake_dir)

    ingest_days(DAYS[:3], settings)
    quarantined = in_zone(lake, "quarantine", "qc_results", DAYS[1])
    assert list(quarantined.at[early["sample_id"], QUARANTINE_REASONS]) == ["reported_before_event"]
    assert list(quarantined.at[other_lab["sample_id"], QUARANTINE_REASONS]) == ["parent_mismatch(lab_id)"]
    held = in_zone(lake, "held", "qc_results", DAYS[1])
    assert {"S-NEVER", "S-LATE"} <= set(held.index)
    assert list(held.at["S-NEVER", QUARANTINE_REASONS]) == ["awaiting_parent(sample_id)"]
    assert "S-NEVER" not in in_zone(lake, "validated", "qc_results", DAYS[1]).index
    assert_every_row_once(engine, lake, DAYS[2].end)

    # The late sample arrives, stamped on day 1: re-ingesting day 1 validates it, and its outcome goes on.
    late = {**early.to_dict(), "sample_id": "S-LATE", "submitted_at": DAYS[0].start + timedelta(hours=20)}
    insert(engine, "lab_samples", late)
    ingest_days(DAYS[:1], settings)
    assert "S-LATE" in in_zone(lake, "validated", "qc_results", DAYS[1]).index
    assert "S-LATE" not in in_zone(lake, "held", "qc_results", DAYS[1]).index
    assert_every_row_once(engine, lake, DAYS[2].end)

    # The grace period ends with the first interval that starts at least GRACE after day 2's end.
    last_held = [d for d in DAYS if d.start < DAYS[1].end + GRACE][-1]
    ingest_days([d for d in DAYS[3:] if d.start <= last_held.start], settings)
    assert "S-NEVER" in in_zone(lake, "held", "qc_results", DAYS[1]).index
    expiry = next(d for d in DAYS if d.start >= DAYS[1].end + GRACE)
    ingest_days([expiry], settings)
    quarantined = in_zone(lake, "quarantine", "qc_results", DAYS[1])
    assert list(quarantined.at["S-NEVER", QUARANTINE_REASONS]) == ["unknown_parent(sample_id)"]
    assert not lake.partition("held", "qc_results", DAYS[1]).exists()
    report = json.loads(artifacts.validation_report(settings, "qc_results", DAYS[1]).read_text())
    assert report["failures"]["unknown_parent(sample_id)"] >= 1 and report["rows_held"] == 0
    assert_every_row_once(engine, lake, expiry.end)
