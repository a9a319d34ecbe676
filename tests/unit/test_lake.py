import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ctpipe.lake import STALE_TEMPORARY_AGE, Lake, atomic_path
from ctpipe.records import Interval

UTC = UTC


def test_interval_key_round_trips_and_sorts():
    interval = Interval(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    assert interval.key == "20260101T000000Z_20260102T000000Z"
    assert Interval.from_key(interval.key) == interval
    assert Interval.parse("2026-01-01T00:00:00+00:00", "2026-01-02") == interval


def test_interval_rejects_naive_and_backwards_bounds():
    with pytest.raises(ValueError, match="timezone-aware"):
        Interval(datetime(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(ValueError, match="must be after"):
        Interval(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def test_interval_is_normalised_to_utc():
    plus_two = timezone(timedelta(hours=2))
    interval = Interval(datetime(2026, 1, 1, 2, tzinfo=plus_two), datetime(2026, 1, 2, 2, tzinfo=plus_two))
    assert interval.start == datetime(2026, 1, 1, tzinfo=UTC) and interval.start.tzinfo == UTC


def test_atomic_path_leaves_nothing_behind_on_failure(tmp_path):
    final = tmp_path / "zone" / "part.parquet"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half a file")
        raise RuntimeError("writer died")
    assert not final.exists()
    assert list(final.parent.iterdir()) == []


def test_atomic_path_replaces_the_previous_file_whole(tmp_path):
    final = tmp_path / "part.parquet"
    final.write_text("old")
    with atomic_path(final) as tmp:
        assert tmp.name.startswith(".")  # hidden from dataset readers while written
        tmp.write_text("new")
    assert final.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["part.parquet"]


def test_partitions_lists_overlapping_intervals_oldest_first(tmp_path):
    lake = Lake(tmp_path)
    days = [Interval(datetime(2026, 1, d, tzinfo=UTC), datetime(2026, 1, d + 1, tzinfo=UTC)) for d in (3, 1, 2)]
    for day in days:
        path = lake.partition("validated", "t", day)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    (lake.table_dir("validated", "t") / ".tmp.parquet").touch()
    within = Interval(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, 12, tzinfo=UTC))
    assert [i.start.day for i, _ in lake.partitions("validated", "t", within)] == [2, 3]
    assert [i.start.day for i, _ in lake.partitions("validated", "t")] == [1, 2, 3]


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from ctpipe.lake import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_text("half a partition")
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs: what a killed task leaves
"""


def killed_write(final) -> list:
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(final)], capture_output=True)
    assert done.returncode == -9
    return list(final.parent.glob(".*.tmp"))


def age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_temporaries_of_killed_writes_are_swept_once_no_live_write_can_own_them(tmp_path):
    lake = Lake(tmp_path / "lake")
    day = Interval(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    partition = lake.partition("raw", "t", day)
    partition.parent.mkdir(parents=True)
    partition.write_text("the last good partition")
    [old] = killed_write(partition)
    age(old, STALE_TEMPORARY_AGE.total_seconds() + 60)
    [fresh] = [p for p in killed_write(lake.manifest("raw", "t", day)) if p != old]  # may still be being written
    assert [i for i, _ in lake.partitions("raw", "t")] == [day]  # readers skip both all along

    assert lake.sweep_temporaries() == [old]
    assert not old.exists() and fresh.exists() and partition.read_text() == "the last good partition"
    assert lake.sweep_temporaries() == []
    assert Lake(tmp_path / "nothing yet").sweep_temporaries() == []
