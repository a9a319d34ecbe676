import json
from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from ctpipe.ingest import SourceError, extract_interval
from ctpipe.lake import SOURCE_VALUES, Lake
from ctpipe.records import Interval

from .sources import DATASET, seeded_sqlite

UTC = UTC
DAY2 = Interval(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC))


@pytest.fixture
def source(tmp_path):
    engine, samples, results = seeded_sqlite(tmp_path / "source.db", rows_per_day=300)
    yield engine, samples, results
    engine.dispose()


def test_extracts_exactly_the_half_open_interval(source, tmp_path):
    engine, samples, _ = source
    # Rows stamped exactly on both bounds: the start belongs to the interval, the end does not.
    edge = samples.iloc[[0, 1]].copy()
    edge["sample_id"] = ["EDGE-START", "EDGE-END"]
    edge["submitted_at"] = [pd.Timestamp(DAY2.start), pd.Timestamp(DAY2.end)]
    table = sa.Table(DATASET.events.name, sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), edge.astype(object).where(edge.notna(), None).to_dict("records"))

    result = extract_interval(engine, DATASET.events, DAY2, Lake(tmp_path / "lake"), chunk_rows=100)
    frame = pq.read_table(result.uri).to_pandas()
    expected = samples[(samples["submitted_at"] >= DAY2.start) & (samples["submitted_at"] < DAY2.end)]
    assert result.rows == len(frame) == len(expected) + 1
    assert "EDGE-START" in set(frame["sample_id"]) and "EDGE-END" not in set(frame["sample_id"])
    assert frame["submitted_at"].min() >= DAY2.start and frame["submitted_at"].max() < DAY2.end
    assert str(frame["submitted_at"].dtype) == "datetime64[us, UTC]"
    assert list(frame.columns) == [*DATASET.events.column_names, SOURCE_VALUES]
    assert frame[SOURCE_VALUES].isna().all()  # every value fit its declared type


def test_values_survive_extraction_unchanged(source, tmp_path):
    engine, samples, _ = source
    result = extract_interval(engine, DATASET.events, DAY2, Lake(tmp_path / "lake"), chunk_rows=1000)
    frame = pq.read_table(result.uri).to_pandas().drop(columns=SOURCE_VALUES)
    expected = samples[(samples["submitted_at"] >= DAY2.start) & (samples["submitted_at"] < DAY2.end)]
    key = ["submitted_at", "sample_id"]
    got = frame.sort_values(key, kind="stable").reset_index(drop=True)
    want = expected.sort_values(key, kind="stable").reset_index(drop=True)
    want["submitted_at"] = want["submitted_at"].astype("datetime64[us, UTC]")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_chunk_size_does_not_change_the_partition(source, tmp_path):
    engine, _, _ = source
    small = extract_interval(engine, DATASET.events, DAY2, Lake(tmp_path / "a"), chunk_rows=7)
    large = extract_interval(engine, DATASET.events, DAY2, Lake(tmp_path / "b"), chunk_rows=100_000)
    assert pq.ParquetFile(small.uri).metadata.num_row_groups > 10  # written chunk by chunk
    assert pq.read_table(small.uri).equals(pq.read_table(large.uri))


def test_rerunning_an_interval_replaces_its_partition(source, tmp_path):
    engine, _, _ = source
    lake = Lake(tmp_path / "lake")
    first = extract_interval(engine, DATASET.events, DAY2, lake, chunk_rows=50)
    before = pq.read_table(first.uri)
    second = extract_interval(engine, DATASET.events, DAY2, lake, chunk_rows=50)
    after = pq.read_table(second.uri)
    assert first.uri == second.uri and after.equals(before)
    assert [p.name for p in lake.table_dir("raw", DATASET.events.name).iterdir()] == [DAY2.key + ".parquet"]


def test_an_empty_interval_writes_an_empty_partition_and_says_so(source, tmp_path):
    engine, _, _ = source
    lake = Lake(tmp_path / "lake")
    quiet = Interval(datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 2, tzinfo=UTC))
    result = extract_interval(engine, DATASET.events, quiet, lake, chunk_rows=50)
    assert result.empty and result.rows == 0
    table = pq.read_table(result.uri)
    assert table.num_rows == 0 and table.schema.names == [*DATASET.events.column_names, SOURCE_VALUES]
    assert '"rows": 0' in lake.manifest("raw", DATASET.events.name, quiet).read_text()


def test_a_missing_table_is_named(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SourceError, match="source table 'lab_samples' does not exist"):
        extract_interval(engine, DATASET.events, DAY2, Lake(tmp_path / "lake"), chunk_rows=10)


def test_a_missing_timestamp_column_is_named(source, tmp_path):
    engine, _, _ = source
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE lab_samples RENAME COLUMN submitted_at TO created"))
    with pytest.raises(SourceError, match="no timestamp column 'submitted_at'"):
        extract_interval(engine, DATASET.events, DAY2, Lake(tmp_path / "lake"), chunk_rows=10)


def test_a_value_that_does_not_fit_its_declared_type_is_kept_and_does_not_block_the_interval(source, tmp_path):
    engine, samples, _ = source
    with engine.begin() as conn:  # SQLite stores whatever it is given
        bad = (
            conn.execute(
                sa.text(
                    "SELECT sample_id FROM lab_samples WHERE submitted_at >= '2026-01-02'"
                    " AND submitted_at < '2026-01-03'"
                    " ORDER BY sample_id LIMIT 3"
                )
            )
            .scalars()
            .all()
        )
        conn.execute(sa.text("UPDATE lab_samples SET volume_ul = 'lots' WHERE sample_id = :s"), {"s": bad[0]})
        conn.execute(sa.text("UPDATE lab_samples SET transit_hours = x'00ff' WHERE sample_id = :s"), {"s": bad[1]})
        conn.execute(sa.text("UPDATE lab_samples SET concentration_ng_ul = 12 WHERE sample_id = :s"), {"s": bad[2]})

    result = extract_interval(engine, DATASET.events, DAY2, Lake(tmp_path / "lake"), chunk_rows=10)
    frame = pq.read_table(result.uri).to_pandas().set_index("sample_id")
    in_day = samples[(samples["submitted_at"] >= DAY2.start) & (samples["submitted_at"] < DAY2.end)]
    assert result.rows == len(frame) == len(in_day)  # the interval's other rows go on
    assert pd.isna(frame.at[bad[0], "volume_ul"]) and json.loads(frame.at[bad[0], SOURCE_VALUES]) == {
        "volume_ul": "lots"
    }
    assert json.loads(frame.at[bad[1], SOURCE_VALUES]) == {"transit_hours": repr(b"\x00\xff")}
    assert frame.at[bad[2], "concentration_ng_ul"] == 12.0 and pd.isna(frame.at[bad[2], SOURCE_VALUES])  # an int fits
    assert frame[SOURCE_VALUES].notna().sum() == 2


def test_an_extraction_first_sweeps_what_killed_writes_left_in_the_lake(tmp_path, monkeypatch):
    """Through the task's own entry point, with the deployment's settings: the stale temporary goes, the run lands."""
    import json
    import os
    import time

    from ctpipe.ingest import extract_table
    from ctpipe.lake import STALE_TEMPORARY_AGE, temporary_name

    engine, _, _ = seeded_sqlite(tmp_path / "source.db", rows_per_day=50)
    engine.dispose()
    monkeypatch.setenv(
        "AIRFLOW_CONN_CTPIPE_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "source.db")})
    )
    monkeypatch.setenv("CTPIPE_LAKE_DIR", str(tmp_path / "lake"))
    lake = Lake(tmp_path / "lake")
    left = temporary_name(lake.partition("validated", DATASET.labels.name, DAY2))
    left.parent.mkdir(parents=True)
    left.write_text("half a partition")
    stale = time.time() - STALE_TEMPORARY_AGE.total_seconds() - 1
    os.utime(left, (stale, stale))

    extraction = extract_table(DATASET.events.name, DAY2)
    assert not left.exists()
    assert extraction.rows > 0 and pq.read_table(extraction.uri).num_rows == extraction.rows


SPELLINGS = {
    # sample_id: (timestamp text as a user's own loader might write it to SQLite, the interval it belongs to)
    "PLAIN-MIDNIGHT": ("2026-01-02 00:00:00", 1),
    "T-MIDNIGHT": ("2026-01-02T00:00:00", 1),
    "MICROS-LAST": ("2026-01-02 23:59:59.999999", 1),
    "NEXT-MIDNIGHT": ("2026-01-03 00:00:00", 2),
    "Z-LAST-OF-DAY-0": ("2026-01-01T23:59:59.999999Z", 0),
    "PLUS-TWO": ("2026-01-02T01:00:00+02:00", 0),  # 2026-01-01 23:00 UTC
    "MINUS-FIVE": ("2026-01-02T20:00:00-05:00", 2),  # 2026-01-03 01:00 UTC
    "PLUS-OFFSET-SAME-DAY": ("2026-01-03T01:30:00+01:00", 2),
    # The widest offsets ISO 8601 allows still reach the right interval: nothing falls outside the margin.
    "PLUS-23:30": ("2026-01-03T23:00:00+23:30", 1),  # 2026-01-02 23:30 UTC
    "MINUS-23:00": ("2026-01-01T01:00:00-23:00", 1),  # 2026-01-02 00:00 UTC
    "DATE-ONLY": ("2026-01-03", 2),
}


def test_a_row_belongs_to_the_interval_of_its_instant_however_sqlite_spells_it(source, tmp_path):
    """Each row lands in exactly one of three consecutive intervals, by its UTC instant, not by its text."""
    engine, samples, _ = source
    days = [
        Interval(DAY2.start + (i - 1) * (DAY2.end - DAY2.start), DAY2.end + (i - 1) * (DAY2.end - DAY2.start))
        for i in range(3)
    ]
    template = samples.iloc[0]
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM lab_samples"))
        for sample_id, (text, _) in SPELLINGS.items():
            row = {**template.to_dict(), "sample_id": sample_id, "submitted_at": text}
            columns = ", ".join(row)
            conn.execute(
                sa.text(f"INSERT INTO lab_samples ({columns}) VALUES ({', '.join(':' + c for c in row)})"), row
            )

    lake = Lake(tmp_path / "lake")
    landed = {}
    for index, day in enumerate(days):
        frame = pq.read_table(extract_interval(engine, DATASET.events, day, lake, chunk_rows=3).uri).to_pandas()
        assert (frame["submitted_at"] >= day.start).all() and (frame["submitted_at"] < day.end).all()
        for sample_id in frame["sample_id"]:
            assert sample_id not in landed, f"{sample_id} landed twice"
            landed[sample_id] = index
    assert landed == {sample_id: index for sample_id, (_, index) in SPELLINGS.items()}
    plus_two = pd.Timestamp("2026-01-01T23:00:00Z")
    frame = pq.read_table(lake.partition("raw", DATASET.events.name, days[0])).to_pandas().set_index("sample_id")
    assert frame.at["PLUS-TWO", "submitted_at"] == plus_two  # stored as the instant, in UTC
