import os
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ctpipe.features import (
    EVENT_TIMESTAMP,
    build_features,
    compute_features,
    feature_schema,
    intervals_behind,
    intervals_for_run,
    intervals_to_process,
    offline_source,
    sync_offline_source,
)
from ctpipe.lake import Lake
from ctpipe.records import Interval, ValidationOutcome
from ctpipe.settings import ConfigurationError

from .sources import DATASET, raw_partition

UTC = UTC
T0 = datetime(2026, 2, 1, tzinfo=UTC)


def day(offset: int) -> Interval:
    return Interval(T0 + timedelta(days=offset), T0 + timedelta(days=offset + 1))


def outcome(interval: Interval) -> ValidationOutcome:
    """What a validated-data asset event carries."""
    return ValidationOutcome(
        table=DATASET.events.name,
        interval=interval,
        status="passed",
        rows_in=3,
        rows_passed=3,
        rows_quarantined=0,
        validated_uri=f"/lake/validated/{interval.key}.parquet",
        quarantine_uri=f"/lake/quarantine/{interval.key}.parquet",
        report_uri=f"/reports/{interval.key}.json",
        data_docs_uri=None,
    )


def write_validated(lake: Lake, spec, interval: Interval, frame: pd.DataFrame) -> None:
    path = raw_partition(lake, spec, interval, frame)
    target = lake.partition("validated", spec.name, interval)
    target.parent.mkdir(parents=True, exist_ok=True)
    path.rename(target)


def sample(lab: str, at: datetime, transit: float, temp: float, n: int) -> dict:
    return {
        "sample_id": f"S{n}",
        "lab_id": lab,
        "submitted_at": at,
        "sample_type": "DNA",
        "concentration_ng_ul": 50.0,
        "volume_ul": 40.0,
        "a260_280": 1.8,
        "a260_230": 2.1,
        "rin": None,
        "storage_temp_c": temp,
        "transit_hours": transit,
        "courier": "BioFreight",
    }


@pytest.fixture
def lake(tmp_path) -> Lake:
    """45 days of two labs; lab B stops submitting after day 10. Outcomes arrive two days late."""
    lake = Lake(tmp_path / "lake")
    n = 0
    for offset in range(45):
        interval = day(offset)
        rows, outcomes = [], []
        for hour, lab in ((3, "A"), (15, "A"), (9, "B")):
            if lab == "B" and offset > 10:
                continue
            at = interval.start + timedelta(hours=hour)
            rows.append(sample(lab, at, transit=offset + hour, temp=-20.0 + hour, n=n))
            n += 1
        # outcomes reported in this interval belong to samples of two days earlier
        for i, (lab, hour) in enumerate((("A", 1), ("A", 2), ("B", 4))):
            if offset >= 2 and not (lab == "B" and offset - 2 > 10):
                outcome = "failed" if (offset + i) % 3 == 0 else "passed"
                outcomes.append(
                    {
                        "sample_id": f"R{offset}-{i}",
                        "lab_id": lab,
                        "reported_at": interval.start + timedelta(hours=hour),
                        "qc_outcome": outcome,
                    }
                )
        write_validated(lake, DATASET.events, interval, pd.DataFrame(rows))
        write_validated(lake, DATASET.labels, interval, pd.DataFrame(outcomes, columns=DATASET.labels.column_names))
    return lake


def brute_force(lake: Lake, lab: str, end: datetime) -> dict:
    """The aggregates for one lab, row by row, straight from the validated files."""

    def read(table):
        frames = [pq.read_table(p).to_pandas() for _, p in lake.partitions("validated", table)]
        return pd.concat([f for f in frames if len(f)])

    events, labels = read("lab_samples"), read("qc_results")
    result = {}
    for agg in DATASET.aggregates:
        frame, stamp = (events, "submitted_at") if agg.table == "events" else (labels, "reported_at")
        picked = [r for r in frame.itertuples() if r.lab_id == lab and end - agg.window <= getattr(r, stamp) < end]
        if agg.function == "count":
            result[agg.name] = len(picked)
        elif agg.function == "mean":
            result[agg.name] = sum(getattr(r, agg.column) for r in picked) / len(picked) if picked else None
        else:
            result[agg.name] = (
                sum(getattr(r, agg.column) == agg.value for r in picked) / len(picked) if picked else None
            )
    return result


@pytest.mark.parametrize("offset", [0, 6, 7, 15, 29, 40, 44])
def test_aggregates_match_a_row_by_row_count(lake, offset):
    interval = day(offset)
    features = compute_features(DATASET, lake, interval).set_index("lab_id")
    assert (features[EVENT_TIMESTAMP] == pd.Timestamp(interval.end)).all()
    for lab in features.index:
        expected = brute_force(lake, lab, interval.end)
        for name, value in expected.items():
            got = features.loc[lab, name]
            if value is None:
                assert pd.isna(got), (lab, name)
            else:
                assert got == pytest.approx(value), (lab, name, offset)


def test_rows_at_or_after_the_interval_end_are_never_read(lake):
    interval = day(5)
    before = compute_features(DATASET, lake, interval)
    # A sample stamped exactly at the end belongs to the next interval and must not count.
    late = pd.DataFrame(
        [
            sample("A", interval.end, 999.0, 20.0, 10_000),
            sample("A", interval.end + timedelta(hours=5), 999.0, 20.0, 10_001),
        ]
    )
    write_validated(
        lake,
        DATASET.events,
        day(6),
        pd.concat([pq.read_table(lake.partition("validated", "lab_samples", day(6))).to_pandas(), late]),
    )
    after = compute_features(DATASET, lake, interval)
    pd.testing.assert_frame_equal(before, after)


def test_labs_without_activity_in_the_longest_window_drop_out(lake):
    assert set(compute_features(DATASET, lake, day(20))["lab_id"]) == {"A", "B"}
    assert set(compute_features(DATASET, lake, day(39))["lab_id"]) == {"A", "B"}  # its last outcome, day 12
    assert set(compute_features(DATASET, lake, day(40))["lab_id"]) == {"A"}


def test_build_features_writes_one_partition_per_interval_and_replaces_it(lake):
    first = build_features(DATASET, lake, day(12))
    before = pq.read_table(first.uri)
    second = build_features(DATASET, lake, day(12))
    assert pq.read_table(second.uri).equals(before)
    assert first.entities == 2 and first.input_partitions == {"lab_samples": 13, "qc_results": 13}
    assert [p.name for p in lake.table_dir("features", "lab_features").iterdir()] == [day(12).key + ".parquet"]


def test_intervals_from_asset_events_are_deduplicated_and_sorted():
    validated = [outcome(day(2)), outcome(day(1)), outcome(day(2))]
    assert intervals_to_process(None, None, validated) == [day(1), day(2)]


def test_a_manual_range_is_split_into_days():
    got = intervals_to_process(day(0).start.isoformat(), day(2).end.isoformat(), [])
    assert got == [day(0), day(1), day(2)]


def test_a_run_with_nothing_to_compute_says_how_to_trigger_it():
    with pytest.raises(ConfigurationError, match="trigger with interval_start and interval_end"):
        intervals_to_process(None, None, [])
    with pytest.raises(ConfigurationError, match="both interval_start and interval_end"):
        intervals_to_process(day(0).start.isoformat(), None, [])


def test_validated_intervals_without_current_features_are_caught_up(lake):
    """An asset event the scheduler dropped still gets its features: the lake says what is behind."""
    everything = [day(offset) for offset in range(45)]
    assert intervals_behind(DATASET, lake) == everything
    for offset in (40, 41, 42):
        build_features(DATASET, lake, day(offset))
    assert intervals_behind(DATASET, lake) == [i for i in everything if i not in (day(40), day(41), day(42))]
    # Re-validating an interval (a re-run of ingest with late rows) makes its features stale again,
    # and those of every later interval whose window reads it; earlier ones stay current.
    built = max(path.stat().st_mtime_ns for _, path in lake.partitions("features", DATASET.feature_view))
    validated = dict(lake.partitions("validated", DATASET.events.name))[day(41)]
    os.utime(validated, ns=(built + 1_000_000, built + 1_000_000))
    behind = intervals_behind(DATASET, lake)
    assert day(41) in behind and day(42) in behind and day(40) not in behind
    # An asset-triggered run covers its events' intervals and those behind, once each.
    got = intervals_to_process(None, None, [outcome(day(42))], behind=[day(41), day(42)])
    assert got == [day(41), day(42)]


def test_an_interval_is_computed_once_every_table_is_validated(lake, monkeypatch):
    """The first table's event finds its interval incomplete and does nothing; the last table's computes it."""
    monkeypatch.setenv("CTPIPE_LAKE_DIR", str(lake.root))
    for offset in range(45):
        build_features(DATASET, lake, day(offset))
    newest = day(45)
    write_validated(lake, DATASET.events, newest, pd.DataFrame([sample("A", newest.start, 1.0, -20.0, 999)]))
    assert intervals_for_run(None, None, [outcome(newest)]) == []
    write_validated(lake, DATASET.labels, newest, pd.DataFrame(columns=DATASET.labels.column_names))
    labels_event = ValidationOutcome.from_dict({**outcome(newest).to_dict(), "table": DATASET.labels.name})
    assert intervals_for_run(None, None, [labels_event]) == [newest]
    # Whichever event a run was handed, it finds the complete interval: a folded-away event loses nothing.
    assert intervals_for_run(None, None, [outcome(day(3))]) == [day(3), newest]


def test_late_rows_reach_every_feature_interval_whose_window_holds_their_day(lake):
    """Recomputed from the lake, each interval in the longest window after the late day sees the late rows."""
    late_day, window_days = day(10), DATASET.longest_window.days
    for offset in range(45):
        build_features(DATASET, lake, day(offset))
    assert intervals_behind(DATASET, lake) == []
    frame = pq.read_table(lake.partition("validated", "lab_samples", late_day)).to_pandas()
    late = frame.iloc[[0]].assign(sample_id="LATE-1", submitted_at=late_day.start + timedelta(hours=23))
    time.sleep(0.01)  # the rewrite is newer than every feature partition
    write_validated(lake, DATASET.events, late_day, pd.concat([frame, late], ignore_index=True))

    behind = intervals_behind(DATASET, lake)
    assert behind == [day(offset) for offset in range(10, 10 + window_days)]
    before = compute_features(DATASET, lake, day(10 + window_days - 1)).set_index("lab_id")["submissions_28d"]
    built = pq.read_table(lake.partition("features", DATASET.feature_view, day(10 + window_days - 1))).to_pandas()
    assert (before - built.set_index("lab_id")["submissions_28d"]).to_dict() == {"A": 1, "B": 0}


def test_the_offline_source_holds_each_months_daily_partitions_once_and_follows_their_changes(tmp_path):
    """Feast reads one file per month: exactly the rows of that month's daily partitions, rewritten when they change."""
    import pyarrow as pa

    features_dir = tmp_path / "features"
    view = DATASET.feature_view
    lake = Lake(tmp_path)
    schema = feature_schema(DATASET)
    start = datetime(2026, 1, 30, tzinfo=UTC)
    days = [Interval(start + timedelta(days=i), start + timedelta(days=i + 1)) for i in range(4)]  # Jan 30 .. Feb 2

    def write_day(interval: Interval, labs: list[str]) -> None:
        columns = {DATASET.entity: labs, "event_timestamp": [interval.end] * len(labs)}
        columns |= {
            f.name: [1 if pa.types.is_integer(f.type) else 0.5] * len(labs) for f in schema if f.name not in columns
        }
        pq.write_table(pa.table(columns, schema=schema), lake.partition("features", view, interval))

    lake.table_dir("features", view).mkdir(parents=True)
    for number, interval in enumerate(days):
        write_day(interval, [f"LAB-{number}-{i}" for i in range(number + 1)])
    folder = features_dir / offline_source(view)

    def month_rows(month: str) -> list[str]:
        return sorted(pq.read_table(folder / f"{month}.parquet").column(DATASET.entity).to_pylist())

    assert sorted(p.name for p in sync_offline_source(features_dir, view)) == ["2026-01.parquet", "2026-02.parquet"]
    assert month_rows("2026-01") == ["LAB-0-0", "LAB-1-0", "LAB-1-1"]
    assert month_rows("2026-02") == ["LAB-2-0", "LAB-2-1", "LAB-2-2", *[f"LAB-3-{i}" for i in range(4)]]
    assert sync_offline_source(features_dir, view) == []  # nothing changed: nothing written

    time.sleep(0.05)  # past the file system's clock tick: the rebuilt partition's time differs
    write_day(days[3], ["LAB-3-new"])  # a rebuilt interval: only its month is written again
    assert sync_offline_source(features_dir, view) == [folder / "2026-02.parquet"]
    assert month_rows("2026-02") == ["LAB-2-0", "LAB-2-1", "LAB-2-2", "LAB-3-new"]

    lake.partition("features", view, days[2]).unlink()  # a partition removed
    assert sync_offline_source(features_dir, view) == [folder / "2026-02.parquet"]
    assert month_rows("2026-02") == ["LAB-3-new"]
    for interval in days[:2]:  # a month with no partition left loses its file
        lake.partition("features", view, interval).unlink()
    assert sync_offline_source(features_dir, view) == []
    assert sorted(p.name for p in folder.iterdir()) == ["2026-02.parquet"]
