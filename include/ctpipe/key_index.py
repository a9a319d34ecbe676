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
    sa.Column("row_hash", sa.BigInteger, nullable=False),
    sa.Column("stamp_us", sa.BigInteger, nullable=False),  # the row's timestamp, microseconds since the epoch
    sa.Column("identifiers", sa.Text, nullable=False),  # JSON: the row's other identifier columns
)
COLUMNS = ("key", "interval_key", "row_hash", "stamp_us", "identifiers")
# Keys per look-up statement: under every supported database's limit on bound parameters.
BATCH = 10_000


def row_hashes(frame: pd.DataFrame) -> Any:
    """A 64-bit fingerprint per row of its values, the same in every process: a redelivery has the same."""
    import pandas as pd

    return pd.util.hash_pandas_object(frame, index=False).to_numpy().view("int64")


def entries(spec: TableSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The index entries of ``frame``'s rows: key, row fingerprint, timestamp and other identifier columns."""
    import pandas as pd

    others = [c.name for c in spec.columns if c.identifier is not None and c.name != spec.key]
    identifiers = pd.Series("{", index=frame.index)
    for position, name in enumerate(others):
        separator = ", " if position else ""
        quoted = {value: json.dumps(value) for value in frame[name].unique()}  # entities repeat: quote each once
        identifiers = identifiers + f'{separator}"{name}": ' + frame[name].map(quoted)
    return pd.DataFrame(
        {
            "key": frame[spec.key].to_numpy(),
            "row_hash": row_hashes(frame[spec.column_names]),
            "stamp_us": frame[spec.timestamp].dt.as_unit("us").astype("int64").to_numpy(),
            "identifiers": (identifiers + "}").to_numpy(),
        },
        index=frame.index,
    )


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

    @property
    def _mark(self) -> str:
        # Statements go to the driver as they are (its executemany, its IN list): a million keys cost
        # seconds, not the minutes of a million SQLAlchemy parameter sets. Only the placeholder differs.
        return "?" if self.engine.dialect.paramstyle == "qmark" else "%s"

    def lookup(self, table: str, keys: Iterable[str], excluding: str | None = None) -> pd.DataFrame:
        """The entries of ``keys`` in ``table``, one row per key found, indexed by key; none of ``excluding``'s."""
        import pandas as pd

        keys = list(dict.fromkeys(keys))
        rows: list[Any] = []
        with self.engine.connect() as conn:
            cursor = conn.connection.cursor()  # the driver's rows, without building a Row object for each
            for start in range(0, len(keys), BATCH):
                batch = keys[start : start + BATCH]
                query = (
                    f"SELECT {', '.join(COLUMNS)} FROM {VALIDATED_KEYS.name}"
                    f" WHERE table_name = {self._mark} AND key IN ({', '.join([self._mark] * len(batch))})"
                )
                parameters = (table, *batch)
                if excluding is not None:
                    query += f" AND interval_key <> {self._mark}"
                    parameters += (excluding,)
                cursor.execute(query, parameters)
                rows += cursor.fetchall()
            cursor.close()
        return pd.DataFrame(rows, columns=list(COLUMNS)).set_index("key")

    def replace(self, table: str, interval_key: str, found: pd.DataFrame | Iterable[pd.DataFrame] | None) -> None:
        """Make ``found`` (``entries``, whole or in batches; None: nothing) the interval's whole contribution,
        in one transaction."""
        c = VALIDATED_KEYS.c
        names = ("table_name", *COLUMNS)
        insert = (
            f"INSERT INTO {VALIDATED_KEYS.name} ({', '.join(names)}) VALUES ({', '.join([self._mark] * len(names))})"
        )
        batches = [] if found is None else [found] if hasattr(found, "columns") else found
        with self.engine.begin() as conn:
            conn.execute(sa.delete(VALIDATED_KEYS).where(c.table_name == table, c.interval_key == interval_key))
            for batch in batches:
                columns = [batch[name].tolist() for name in ("key", "row_hash", "stamp_us", "identifiers")]
                rows = [(table, key, interval_key, *rest) for key, *rest in zip(*columns, strict=True)]
                for start in range(0, len(rows), BATCH):
                    conn.exec_driver_sql(insert, rows[start : start + BATCH])

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).where(VALIDATED_KEYS.c.table_name == table)
            return conn.execute(query).scalar_one()


@dataclass
class Verdicts:
    """What the index says about an interval's otherwise clean rows: row index -> reasons."""

    quarantined: dict[Any, list[str]] = field(default_factory=lambda: defaultdict(list))
    held: dict[Any, list[str]] = field(default_factory=lambda: defaultdict(list))


def check_rows(spec: TableSpec, frame: pd.DataFrame, interval: Interval, as_of: Interval, index: KeyIndex) -> Verdicts:
    """Keys unique across intervals, and each row's parent validated, earlier and alike.

    ``frame`` holds the interval's rows that broke nothing else (so their keys are unique
    within it); ``as_of`` is the newest interval ingested, which decides whether a row's
    grace period for a missing parent has passed. Vectorized: the cost is a look-up per
    key and a few passes over the interval's rows, whatever the history.
    """
    verdicts = Verdicts()
    if frame.empty:
        return verdicts
    own = entries(spec, frame)
    found = index.lookup(spec.name, own["key"], excluding=interval.key)
    if len(found):
        other = found.reindex(own["key"].to_numpy()).set_index(own.index)
        taken = other["interval_key"].notna()
        same = taken & (other["row_hash"] == own["row_hash"])
        for position in own.index[same]:
            verdicts.quarantined[position].append(DUPLICATE_ROW)
        for position, where in other.loc[taken & ~same, "interval_key"].items():
            verdicts.quarantined[position].append(f"{DUPLICATE_KEY}({spec.key}, {where})")
    if (ref := spec.parent) is None:
        return verdicts
    parents = index.lookup(ref.table, frame[ref.key])
    parent = parents.reindex(frame[ref.key].to_numpy()).set_index(frame.index)
    missing = parent["stamp_us"].isna()
    reason = f"{UNKNOWN_PARENT}({ref.key})" if as_of.start >= interval.end + ref.grace else None
    for position in frame.index[missing]:
        if reason:
            verdicts.quarantined[position].append(reason)
        else:
            verdicts.held[position].append(f"{AWAITING_PARENT}({ref.key})")
    known = ~missing
    stamps = frame[spec.timestamp].dt.as_unit("us").astype("int64")
    for position in frame.index[known & (stamps < parent["stamp_us"])]:
        verdicts.quarantined[position].append(REPORTED_BEFORE_EVENT)
    if ref.same and known.any():
        identifiers = parent.loc[known, "identifiers"]
        parsed = {text: json.loads(text) for text in identifiers.unique()}  # few distinct: parse each once
        for column in ref.same:
            theirs = identifiers.map({text: values.get(column) for text, values in parsed.items()})
            for position in theirs.index[frame.loc[known, column].astype(str) != theirs]:
                verdicts.quarantined[position].append(f"{PARENT_MISMATCH}({column})")
    return verdicts
