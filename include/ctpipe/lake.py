"""The Parquet lake: one file per table, zone and data interval.

``<lake>/<zone>/<table>/<start>_<end>.parquet``, zones ``raw``, ``validated``,
``quarantine`` and ``features``; and ``<lake>/unplaceable/<table>.parquet``, the rows
of a table that no interval can hold (a NULL or unreadable timestamp). Files are written under a hidden temporary
name and renamed into place, so readers never see a partial partition and a
re-run replaces its partition whole. Readers (pyarrow, dask, Feast) skip names
that start with ``.`` or ``_``. A write that was killed leaves its temporary behind;
``Lake.sweep_temporaries`` removes those too old to belong to a live write, and every
ingest run calls it first.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctpipe.records import Interval

if TYPE_CHECKING:
    import pandas as pd


# Columns the pipeline adds to a table's own, in the raw and quarantine zones.
SOURCE_VALUES = "_source_values"  # JSON: column -> the source value its declared type could not hold
QUARANTINE_REASONS = "quarantine_reasons"  # list of the reasons a row was quarantined

# A temporary older than this has no live writer: every task of the pipeline is stopped well
# before (their execution_timeout, in ctpipe.dag_policy, is shorter; a test keeps it so).
STALE_TEMPORARY_AGE = timedelta(hours=2)


def temporary_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; rename it into place on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path


@dataclass(frozen=True)
class Lake:
    root: Path

    def partition(self, zone: str, table: str, interval: Interval) -> Path:
        return self.root / zone / table / f"{interval.key}.parquet"

    def manifest(self, zone: str, table: str, interval: Interval) -> Path:
        return self.root / "_manifests" / zone / table / f"{interval.key}.json"

    def unplaceable(self, table: str) -> Path:
        """Every row of a table that no interval can select (see ``ctpipe.ingest.quarantine_unplaceable``)."""
        return self.root / "unplaceable" / f"{table}.parquet"

    def table_dir(self, zone: str, table: str) -> Path:
        return self.root / zone / table

    def read_window(self, zone: str, table: str, timestamp: str, window: Interval, columns: list[str]) -> pd.DataFrame:
        """The rows of a table stamped in ``window`` (by ``timestamp``), from every partition overlapping it."""
        import pandas as pd
        import pyarrow.parquet as pq

        wanted = list(dict.fromkeys([timestamp, *columns]))
        frames = [pq.read_table(path, columns=wanted).to_pandas() for _, path in self.partitions(zone, table, window)]
        frames = [frame for frame in frames if len(frame)]  # empty intervals add nothing
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in wanted})
        frame = pd.concat(frames, ignore_index=True)
        stamped = frame[timestamp]
        return frame[(stamped >= window.start) & (stamped < window.end)].reset_index(drop=True)

    def partitions(self, zone: str, table: str, within: Interval | None = None) -> list[tuple[Interval, Path]]:
        """Partitions of a table, oldest first, optionally those overlapping ``within``."""
        directory = self.table_dir(zone, table)
        if not directory.is_dir():
            return []
        found = []
        for path in directory.glob("*.parquet"):
            if path.name.startswith((".", "_")):
                continue
            interval = Interval.from_key(path.stem)
            if within is None or interval.overlaps(within):
                found.append((interval, path))
        return sorted(found)

    def sweep_temporaries(self, older_than: timedelta = STALE_TEMPORARY_AGE) -> list[Path]:
        """Remove the temporaries that killed writes left anywhere in the lake, if older than ``older_than``."""
        if not self.root.is_dir():
            return []
        cutoff = time.time() - older_than.total_seconds()
        removed = []
        for path in self.root.rglob(".*.tmp"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:  # another run swept it first
                pass
        return sorted(removed)
