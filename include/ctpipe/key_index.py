"""The index of validated keys: which interval holds each key of a table.

Validation looks an interval's keys up here, so a key is unique across intervals and a
row can be checked against the row it references in another table, at a cost of
O(rows of the interval) through the primary key, never O(history). It records what it
validated once the validated partition is in place, replacing the interval's earlier
entries, so a re-run finds what it found before.

One SQL table, reached by a SQLAlchemy URL (``CTPIPE_KEY_INDEX_URL``): a SQLite file
under the state folder by default; in production a PostgreSQL database, which, unlike
a SQLite file on a volume shared by workers on several machines, is safe to write
from all of them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ctpipe.records import Interval

if TYPE_CHECKING:
    import pandas as pd

    from ctpipe.datasets.spec import TableSpec

# What the index can say about a row, as quarantine reasons.
DUPLICATE_ROW = "duplicate_row"  # an exact copy of a row already validated (a redelivery)
DUPLICATE_KEY = "duplicate_key"  # the key of a different row, validated in another interval
UNKNOWN_PARENT = "unknown_parent"  # the row it belongs to was not validated within the grace period
AWAITING_PARENT = "awaiting_parent"  # held back: the grace period is still running
REPORTED_BEFORE_EVENT = "reported_before_event"
PARENT_MISMATCH = "parent_mismatch"

METADATA = sa.MetaData()
VALIDATED_KEYS = sa.Table(
    "ctpipe_validated_keys",
    METADATA,
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("interval_key", sa.String(40), nullable=False, index=True),
    sa.Column("row_hash", sa.String(16), nullable=False),
    sa.Column("stamp", sa.String(40), nullable=False),  # the row's timestamp, ISO 8601 UTC
    sa.Column("identifiers", sa.Text, nullable=False),  # JSON: the row's identifier columns
)
# Keys per statement: well under every database's limit on bound parameters.
BATCH = 500


@dataclass(frozen=True)
class Entry:
    """A validated key: where it lives and what its row held."""

    interval_key: str
    row_hash: str
    stamp: str
    identifiers: dict[str, str]


def row_hashes(frame: pd.DataFrame) -> list[str]:
    """A fingerprint per row of its values, the same in every process: an identical redelivery has the same."""
    import pandas as pd

    return [f"{h:016x}" for h in pd.util.hash_pandas_object(frame, index=False)]


class KeyIndex:
    def __init__(self, engine: sa.Engine):
        self.engine = engine
        METADATA.create_all(engine)

    @classmethod
    def from_url(cls, url: str) -> KeyIndex:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # Two tables' validations may write at once: wait for the other's transaction.
            return cls(sa.create_engine(parsed, connect_args={"timeout": 60}))
        return cls(sa.create_engine(parsed, pool_pre_ping=True))

    def close(self) -> None:
        self.engine.dispose()

    def lookup(self, table: str, keys: Iterable[str], excluding: str | None = None) -> dict[str, Entry]:
        """The entries of ``keys`` in ``table``, leaving out those of interval ``excluding`` (the one re-run)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Entry] = {}
        c = VALIDATED_KEYS.c
        with self.engine.connect() as conn:
            for start in range(0, len(keys), BATCH):
                query = sa.select(c.key, c.interval_key, c.row_hash, c.stamp, c.identifiers).where(
                    c.table_name == table, c.key.in_(keys[start : start + BATCH])
                )
                if excluding is not None:
                    query = query.where(c.interval_key != excluding)
                for key, interval_key, row_hash, stamp, identifiers in conn.execute(query):
                    found[key] = Entry(interval_key, row_hash, stamp, json.loads(identifiers))
        return found

    def replace(self, table: str, interval_key: str, entries: dict[str, Entry]) -> None:
        """Make ``entries`` the interval's whole contribution to the index, in one transaction."""
        c = VALIDATED_KEYS.c
        rows = [
            {
                "table_name": table,
                "key": key,
                "interval_key": interval_key,
                "row_hash": entry.row_hash,
                "stamp": entry.stamp,
                "identifiers": json.dumps(entry.identifiers, sort_keys=True),
            }
            for key, entry in entries.items()
        ]
        with self.engine.begin() as conn:
            conn.execute(sa.delete(VALIDATED_KEYS).where(c.table_name == table, c.interval_key == interval_key))
            for start in range(0, len(rows), BATCH):
                conn.execute(sa.insert(VALIDATED_KEYS), rows[start : start + BATCH])

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).where(VALIDATED_KEYS.c.table_name == table)
            return conn.execute(query).scalar_one()


def entries(spec: TableSpec, frame: pd.DataFrame) -> dict[str, Entry]:
    """The index entries of validated rows: key, row fingerprint, timestamp and identifier columns."""
    identifiers = [c.name for c in spec.columns if c.identifier is not None]
    hashes = row_hashes(frame[spec.column_names])
    stamps = [t.isoformat() for t in frame[spec.timestamp]]
    ids = frame[identifiers].astype(str).to_dict("records")
    return {
        key: Entry("", row_hash, stamp, identity)
        for key, row_hash, stamp, identity in zip(frame[spec.key], hashes, stamps, ids, strict=True)
    }


@dataclass
class Verdicts:
    """What the index says about an interval's otherwise clean rows: row index -> reasons."""

    quarantined: dict[Any, list[str]] = field(default_factory=lambda: defaultdict(list))
    held: dict[Any, list[str]] = field(default_factory=lambda: defaultdict(list))


def check_rows(spec: TableSpec, frame: pd.DataFrame, interval: Interval, as_of: Interval, index: KeyIndex) -> Verdicts:
    """Keys unique across intervals, and each row's parent validated, earlier and alike.

    ``frame`` holds the interval's rows that broke nothing else (so their keys are unique
    within it); ``as_of`` is the interval being ingested, which decides whether a row's
    grace period for a missing parent has passed.
    """
    import pandas as pd

    verdicts = Verdicts()
    if frame.empty:
        return verdicts
    own = entries(spec, frame)
    found = index.lookup(spec.name, own, excluding=interval.key)
    for position, key in zip(frame.index, frame[spec.key], strict=True):
        if (other := found.get(key)) is not None:
            same = other.row_hash == own[key].row_hash
            verdicts.quarantined[position].append(
                DUPLICATE_ROW if same else f"{DUPLICATE_KEY}({spec.key}, {other.interval_key})"
            )
    if (ref := spec.parent) is None:
        return verdicts
    parents = index.lookup(ref.table, frame[ref.key])
    expired = as_of.start >= interval.end + ref.grace
    looked_at = frame[[ref.key, spec.timestamp, *ref.same]]
    for position, row in zip(frame.index, looked_at.itertuples(index=False), strict=True):
        parent = parents.get(row[0])
        if parent is None:
            if expired:
                verdicts.quarantined[position].append(f"{UNKNOWN_PARENT}({ref.key})")
            else:
                verdicts.held[position].append(f"{AWAITING_PARENT}({ref.key})")
            continue
        if row[1] < pd.Timestamp(parent.stamp):
            verdicts.quarantined[position].append(REPORTED_BEFORE_EVENT)
        for column, value in zip(ref.same, row[2:], strict=True):
            if str(value) != parent.identifiers.get(column):
                verdicts.quarantined[position].append(f"{PARENT_MISMATCH}({column})")
    return verdicts
