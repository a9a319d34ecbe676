"""Every prediction the service makes, appended to the lake: the dataset that live evaluation joins to labels.

Rows gather in a buffer; a background writer writes them when ``flush_rows`` have gathered
or ``flush_seconds`` have passed since the oldest, whichever is first, one Parquet file
per hour of serving time and batch::

    <lake>/predictions/<model>/hour=<YYYYMMDDTHH>/<first served>_<writer>_<batch>.parquet

Each file is written to a temporary name and renamed into place, like every partition of
the lake, so a reader never sees half a file. ``close()`` (the service's shutdown, on
SIGTERM) writes what is left. A crash (SIGKILL, power) loses at most what the buffer held:
up to ``flush_rows`` rows or ``flush_seconds`` of traffic. A batch that cannot be written
stays in the buffer and is tried again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ctpipe.lake import atomic_path
from ctpipe.training_set import EVENT_TIMESTAMP

log = logging.getLogger(__name__)

SERVED_AT = "served_at"
FAILED = "failed"  # the model raised on the row: no score; the champion answered (older files lack it)


def as_table(batches: list[dict[str, np.ndarray]]) -> pa.Table:
    """Appended batches as one Arrow table, the times UTC; batches with other columns are aligned by name.

    Straight from the columns to Arrow, without a DataFrame: the writer holds the
    interpreter lock for a quarter of the time pandas took, which requests on the other
    threads wait for (at 100 events a request, every flush was a request's worst wait).
    """
    names = list(batches[0])
    if all(list(batch) == names for batch in batches):
        return _table({name: np.concatenate([batch[name] for batch in batches]) for name in names})
    return pa.concat_tables([_table(batch) for batch in batches], promote_options="default")


def _table(columns: dict[str, np.ndarray]) -> pa.Table:
    utc = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            name: pa.array(values.astype("datetime64[us]"), type=utc)
            if name in (SERVED_AT, EVENT_TIMESTAMP)
            else pa.array(values)
            for name, values in columns.items()
        }
    )


def hour_folder(root: Path, served_at: datetime) -> Path:
    return root / f"hour={served_at:%Y%m%dT%H}"


class PredictionLog:
    def __init__(self, root: Path, flush_rows: int, flush_seconds: float):
        self.root = root
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.writer = uuid.uuid4().hex[:8]
        self.written = 0  # rows
        self.failures = 0  # batches that could not be written
        self._batches: list[dict[str, np.ndarray]] = []
        self._buffered = 0
        self._oldest: float | None = None
        self._batch = 0
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._due = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._write_when_due, name="prediction-log", daemon=True)
        self._thread.start()

    @property
    def buffered(self) -> int:
        return self._buffered

    def append(self, columns: dict[str, np.ndarray]) -> None:
        """Add rows, given as columns of equal length (the times naive, in UTC); never blocks on the disk.

        The columns are kept as they are and made into a table when written, in the
        writer's thread: a request pays for no conversion.
        """
        with self._lock:
            if self._oldest is None:
                self._oldest = time.monotonic()
            self._batches.append(columns)
            self._buffered += len(next(iter(columns.values())))
            if self._buffered >= self.flush_rows:
                self._due.set()

    def flush(self) -> int:
        """Write everything buffered now; the rows written."""
        with self._writing:
            with self._lock:
                batches, count = self._batches, self._buffered
                self._batches, self._buffered, self._oldest = [], 0, None
            if not batches:
                return 0
            try:
                self._write(as_table(batches))
            except Exception:
                self.failures += 1
                log.exception("could not write %d predictions; keeping them for the next flush", count)
                with self._lock:
                    self._batches[:0] = batches
                    self._buffered += count
                    self._oldest = self._oldest or time.monotonic()
                return 0
            self.written += count
            return count

    def _write(self, table: pa.Table) -> None:
        hours = pc.floor_temporal(table[SERVED_AT], unit="hour")
        for hour in sorted(pc.unique(hours).to_pylist()):
            part = table.filter(pc.equal(hours, pa.scalar(hour, hours.type)))
            self._batch += 1
            first = pc.min(part[SERVED_AT]).as_py()
            final = hour_folder(self.root, first) / f"{first:%Y%m%dT%H%M%S%f}_{self.writer}_{self._batch:06d}.parquet"
            with atomic_path(final) as tmp:
                pq.write_table(part, tmp)

    def _write_when_due(self) -> None:
        while not self._closing.is_set():
            oldest = self._oldest
            wait = self.flush_seconds if oldest is None else max(0.0, oldest + self.flush_seconds - time.monotonic())
            self._due.wait(wait)
            self._due.clear()
            if self._closing.is_set():
                return  # close() writes the rest
            if self._batches:
                self.flush()

    def close(self) -> int:
        """Stop the writer and write what is left: the service's last act."""
        self._closing.set()
        self._due.set()
        self._thread.join(timeout=60)
        return self.flush()
