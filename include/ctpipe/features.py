"""Per-entity features, computed point in time from validated partitions.

For an interval ``[start, end)`` one row per entity is stamped ``end``. Each
aggregate looks back over its own window ``[end - window, end)``: events by
when they happened, labels by when they became known. Nothing stamped at or
after ``end`` is read, so a feature row never knows its future. Entities with
no row in the longest window get no feature row; Feast's TTL lets their last
values expire.

Labels are counted only through validated events, under the event's entity: the gate
admits a label only once its event is validated with the same entity and stamped before
it (``TableSpec.parent``), so every validated label's entity is its event's.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_left
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ctpipe.datasets.spec import Aggregate, DatasetSpec
from ctpipe.lake import Lake, atomic_path, write_json
from ctpipe.records import FeatureBuild, Interval, ValidationOutcome
from ctpipe.settings import ConfigurationError, Settings

if TYPE_CHECKING:
    import pandas as pd

EVENT_TIMESTAMP = "event_timestamp"

log = logging.getLogger(__name__)


def feature_schema(dataset: DatasetSpec) -> pa.Schema:
    types = {"int": pa.int64(), "float": pa.float64()}
    return pa.schema(
        [pa.field(dataset.entity, pa.string()), pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC"))]
        + [pa.field(a.name, types[a.type]) for a in dataset.aggregates]
    )


# Rows of the validated zone read at a time: the aggregates' memory does not grow with the data.
BATCH_ROWS = 1_000_000


def _partials(rows: pa.Table, specs: list[Aggregate], entity: str, timestamp: str, end: Any) -> pa.Table:
    """Per entity, each aggregate's sums over ``rows``: ``<name>.n`` (rows counted) and ``<name>.sum`` (values)."""
    import pyarrow.compute as pc

    stamps = rows[timestamp]
    columns: dict[str, Any] = {entity: rows[entity]}
    for spec in specs:
        inside = pc.greater_equal(stamps, pa.scalar(end - spec.window, stamps.type))
        if spec.function == "count":
            columns[f"{spec.name}.n"] = inside
        elif spec.function == "mean":  # of the values present, as pandas' mean
            counted = pc.and_(inside, pc.is_valid(rows[spec.column]))
            columns[f"{spec.name}.n"] = counted
            columns[f"{spec.name}.sum"] = pc.if_else(counted, pc.cast(rows[spec.column], pa.float64()), 0.0)
        else:  # the share of rows equal to the value; a missing value is not equal
            matches = pc.fill_null(pc.equal(rows[spec.column], pa.scalar(spec.value)), False)
            columns[f"{spec.name}.n"] = inside
            columns[f"{spec.name}.sum"] = pc.cast(pc.and_(inside, matches), pa.float64())
    table = pa.table({name: pc.cast(c, pa.int64()) if name.endswith(".n") else c for name, c in columns.items()})
    return _summed(table, entity)


def _summed(partials: pa.Table, entity: str) -> pa.Table:
    """``partials`` added up per entity, under the same column names."""
    names = [c for c in partials.column_names if c != entity]
    summed = partials.group_by(entity).aggregate([(c, "sum") for c in names])
    return summed.rename_columns([c.removesuffix("_sum") for c in summed.column_names])


def window_sums(
    sources: list[Path], specs: list[Aggregate], entity: str, timestamp: str, window: Interval
) -> pa.Table | None:
    """Per entity active in ``window``, each aggregate's sums over its own window ending at ``window.end``.

    The aggregation's seam: it takes a table reference (the validated partitions the window
    overlaps) and reads it ``BATCH_ROWS`` rows at a time, so memory holds a batch and a row
    per entity, and time grows with the rows in the window. A warehouse or Spark version
    computes the same sums with one GROUP BY where the data is.
    """
    import pyarrow.compute as pc

    columns = sorted({entity, timestamp, *(spec.column for spec in specs if spec.column)})
    found = []
    for path in sources:
        with pq.ParquetFile(path) as file:
            for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                stamps = batch.column(timestamp)
                inside = pc.and_(
                    pc.greater_equal(stamps, pa.scalar(window.start, stamps.type)),
                    pc.less(stamps, pa.scalar(window.end, stamps.type)),
                )
                rows = pa.Table.from_batches([batch]).filter(inside)
                if rows.num_rows:
                    found.append(_partials(rows, specs, entity, timestamp, window.end))
    return _summed(pa.concat_tables(found), entity) if found else None


def compute_features(dataset: DatasetSpec, lake: Lake, interval: Interval) -> pd.DataFrame:
    """The feature rows stamped at ``interval.end``, one per entity active in the longest window."""
    import numpy as np
    import pandas as pd

    window = Interval(interval.end - dataset.longest_window, interval.end)
    tables = {"events": dataset.events, "labels": dataset.labels}
    sums, read = {}, {}
    for role, table in tables.items():
        sources = [path for _, path in lake.partitions("validated", table.name, window)]
        specs = [spec for spec in dataset.aggregates if spec.table == role]
        found = window_sums(sources, specs, dataset.entity, table.timestamp, window)
        sums[role] = pd.DataFrame() if found is None else found.to_pandas().set_index(dataset.entity)
        read[table.name] = len(sources)

    entities = sorted(set(sums["events"].index) | set(sums["labels"].index))
    features = pd.DataFrame({dataset.entity: pd.Series(entities, dtype="object")})
    features[EVENT_TIMESTAMP] = pd.Timestamp(interval.end)
    for spec in dataset.aggregates:
        found = sums[spec.table]
        if spec.function == "count":
            counts = found[f"{spec.name}.n"] if len(found) else pd.Series(dtype="int64")
            features[spec.name] = features[dataset.entity].map(counts).fillna(0).astype("int64")
            continue
        if len(found):
            counted = found[f"{spec.name}.n"].astype("float64")
            values = (found[f"{spec.name}.sum"] / counted).where(counted > 0, np.nan)
        else:
            values = pd.Series(dtype="float64")
        features[spec.name] = features[dataset.entity].map(values).astype("float64")
    features.attrs["input_partitions"] = read
    return features


def build_features(dataset: DatasetSpec, lake: Lake, interval: Interval) -> FeatureBuild:
    """Compute and write the interval's feature partition, replacing any earlier run's."""
    features = compute_features(dataset, lake, interval)
    path = lake.partition("features", dataset.feature_view, interval)
    table = pa.Table.from_pandas(features, schema=feature_schema(dataset), preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    build = FeatureBuild(
        feature_view=dataset.feature_view,
        interval=interval,
        uri=str(path),
        entities=len(features),
        input_partitions=features.attrs["input_partitions"],
    )
    write_json(lake.manifest("features", dataset.feature_view, interval), build.to_dict())
    return build


# Feast's offline source: a view's daily partitions gathered into one file per month. Feast's
# file offline store reads a folder as one dask partition per file, and its point-in-time join
# costs about 55 ms a partition whatever their rows: over the daily files, every drift check and
# training set took a day's worth longer each day (3.3 s at 60 days, for 2,700 events).
OFFLINE_SOURCE_SUFFIX = ".by_month"
SOURCE_PARTITIONS = b"ctpipe.partitions"  # a month file's metadata: the daily partitions it holds, as they were


def offline_source(feature_view: str) -> str:
    """The folder, beside the view's daily partitions, that Feast's ``FileSource`` reads."""
    return f"{feature_view}{OFFLINE_SOURCE_SUFFIX}"


def sync_offline_source(features_dir: Path, feature_view: str) -> list[Path]:
    """Rewrite each month file of the offline source whose daily partitions changed; return those written.

    A month file holds exactly the rows of that month's daily partitions (by the interval's
    start), and records in its metadata each partition's key, modification time and size: a
    month is rewritten when that record no longer matches (a partition rebuilt, added or
    removed). A month with no partition left loses its file. Each file is replaced whole
    (``atomic_path``): a reader sees the old month or the new one. One writer at a time:
    ``feature_store.materialize`` calls this, and the ``features`` DAG runs one at a time.
    """
    daily = Lake(features_dir.parent).partitions(features_dir.name, feature_view)
    months: dict[str, list[tuple[Interval, Path]]] = {}
    for interval, path in daily:
        months.setdefault(f"{interval.start:%Y-%m}", []).append((interval, path))
    folder = features_dir / offline_source(feature_view)
    written = []
    for month, parts in months.items():
        target = folder / f"{month}.parquet"
        held = json.dumps([[i.key, p.stat().st_mtime_ns, p.stat().st_size] for i, p in parts]).encode()
        if target.exists() and (pq.read_schema(target).metadata or {}).get(SOURCE_PARTITIONS) == held:
            continue
        table = pa.concat_tables([pq.read_table(path) for _, path in parts])
        with atomic_path(target) as tmp:
            pq.write_table(
                table.replace_schema_metadata({**(table.schema.metadata or {}), SOURCE_PARTITIONS: held}), tmp
            )
        written.append(target)
    for stale in folder.glob("*.parquet") if folder.is_dir() else ():
        if stale.stem not in months:
            stale.unlink()
    return written


def validated_partitions(dataset: DatasetSpec, lake: Lake) -> list[dict[Interval, Path]]:
    """Each table's validated partitions, by interval."""
    return [dict(lake.partitions("validated", table.name)) for table in dataset.tables]


def complete_intervals(validated: list[dict[Interval, Path]]) -> set[Interval]:
    """Intervals validated for every table: the only ones whose features can be computed."""
    return set.intersection(*(set(partitions) for partitions in validated))


def intervals_behind(dataset: DatasetSpec, lake: Lake) -> list[Interval]:
    """Intervals validated for every table whose features are missing or older than their inputs, oldest first.

    An interval's inputs are the validated partitions its longest window reads, so late
    rows re-ingested into one day make every feature interval whose window holds that day
    stale, not only the day's own.

    Asset events are how the features DAG hears of new data, but the scheduler can
    drop one: an event that arrives while ``max_active_runs`` holds the next run back
    is not handed to that run. The validated partitions are in the lake all the same,
    so each run also picks up whatever its events did not name.
    """
    validated = validated_partitions(dataset, lake)
    complete = complete_intervals(validated)
    built = dict(lake.partitions("features", dataset.feature_view))
    inputs = sorted((i, path.stat().st_mtime_ns) for partitions in validated for i, path in partitions.items())
    starts = [i.start for i, _ in inputs]

    def stale(interval: Interval) -> bool:
        if interval not in built:
            return True
        window = Interval(interval.end - dataset.longest_window, interval.end)
        reach = inputs[bisect_left(starts, window.start - dataset.longest_window) : bisect_left(starts, window.end)]
        newest_input = max((mtime for i, mtime in reach if i.overlaps(window)), default=0)
        return built[interval].stat().st_mtime_ns < newest_input

    return sorted(i for i in complete if stale(i))


def intervals_to_process(
    start: str | None,
    end: str | None,
    validated: list[ValidationOutcome],
    step: timedelta = timedelta(days=1),
    behind: list[Interval] | None = None,
    complete: set[Interval] | None = None,
) -> list[Interval]:
    """The intervals a features run covers, oldest first.

    A manual run names a range (split into ``step``-long intervals); a run
    triggered by validated-data assets covers every interval its events name
    (the scheduler may fold several events into one run), and those ``behind``.
    With ``complete`` given, an interval named by an event but not yet validated
    for every table is left out: the event of its last table triggers the run
    that computes it. Such a run may then have nothing to do, and returns ``[]``.
    """
    if start or end:
        if not (start and end):
            raise ConfigurationError("give both interval_start and interval_end, or neither")
        whole = Interval.parse(start, end)
        cuts, cursor = [], whole.start
        while cursor < whole.end:
            cuts.append(Interval(cursor, min(cursor + step, whole.end)))
            cursor += step
        return cuts
    if not validated and not behind:
        raise ConfigurationError(
            "no interval to compute: trigger with interval_start and interval_end, "
            "or let the validated-data assets trigger the run"
        )
    named = {outcome.interval for outcome in validated}
    if complete is not None:
        named &= complete
    return sorted(named | set(behind or []))


def intervals_for_run(
    start: str | None, end: str | None, validated: list[ValidationOutcome], settings: Settings | None = None
) -> list[Interval]:
    """``intervals_to_process`` with deployment settings: an asset-triggered run also catches up the lake."""
    if start or end:
        return intervals_to_process(start, end, validated)
    settings = settings or Settings.from_env()
    lake = Lake(settings.lake_dir)
    complete = complete_intervals(validated_partitions(settings.dataset, lake))
    behind = intervals_behind(settings.dataset, lake)
    for waiting in sorted({o.interval for o in validated} - complete):
        log.info("interval %s waits for the rest of its tables before its features are computed", waiting.key)
    return intervals_to_process(None, None, validated, behind=behind, complete=complete)


def build_interval_features(interval: Interval, settings: Settings | None = None) -> FeatureBuild:
    """``build_features`` for one interval, with deployment settings."""
    settings = settings or Settings.from_env()
    return build_features(settings.dataset, Lake(settings.lake_dir), interval)
