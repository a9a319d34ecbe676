"""What every dataset's synthetic generator takes, and what it gives back.

A dataset that ships a generator names it in ``DatasetSpec.generator``
(``"module:function"``); ``python -m ctpipe.seed`` and the main job call it with a
``GeneratorConfig`` and write what it returns, the events and the labels, as the
source. Each generator draws every day from its own random stream, seeded by
``(seed, day)``, so a day's rows do not depend on the range they were generated in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd

DriftKind = Literal["none", "covariate", "concept", "both"]
DRIFT_KINDS: tuple[DriftKind, ...] = ("none", "covariate", "concept", "both")


@dataclass(frozen=True)
class GeneratorConfig:
    """``days`` days from ``start``; ``entities`` of the dataset's entity (labs, sellers) share the rows.

    ``covariate`` drift changes the inputs' distributions from ``drift_start``, ``concept``
    drift how the outcome depends on them; each generator says what exactly.
    """

    start: date
    days: int
    rows_per_day: int = 400
    entities: int = 30
    seed: int = 42
    bad_row_share: float = 0.03
    drift_start: date | None = None
    drift_kind: DriftKind = "both"

    def __post_init__(self) -> None:
        if self.days < 1 or self.rows_per_day < 0 or self.entities < 1:
            raise ValueError("days and entities must be positive, rows_per_day not negative")
        if not 0.0 <= self.bad_row_share < 1.0:
            raise ValueError(f"bad_row_share must be in [0, 1), got {self.bad_row_share}")
        if self.drift_kind not in DRIFT_KINDS:
            raise ValueError(f"unknown drift_kind {self.drift_kind!r}; one of {DRIFT_KINDS}")

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days)

    def drifting(self, day: date, kind: Literal["covariate", "concept"]) -> bool:
        """Whether drift of ``kind`` is on for ``day``."""
        return self.drift_start is not None and day >= self.drift_start and self.drift_kind in (kind, "both")


# (events, labels): events happened in [start, end); labels are those known by ``end``.
Generator = Callable[[GeneratorConfig], tuple[pd.DataFrame, pd.DataFrame]]


def day_by_day(
    config: GeneratorConfig, draw: Callable[[date], tuple[pd.DataFrame, pd.DataFrame]], label_timestamp: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every day's ``draw(day)`` of (events, labels), joined; only the labels known by ``config.end`` are kept."""
    days = [draw(config.start + timedelta(days=i)) for i in range(config.days)]
    events = pd.concat([d[0] for d in days], ignore_index=True)
    labels = pd.concat([d[1] for d in days], ignore_index=True)
    known_by = pd.Timestamp(datetime.combine(config.end, datetime.min.time(), UTC))
    labels = labels[labels[label_timestamp] < known_by].sort_values(label_timestamp, kind="stable")
    return events, labels.reset_index(drop=True)


def spoil_labels(
    labels: pd.DataFrame, rng: np.random.Generator, share: float, column: str, invalid: tuple[str, ...]
) -> pd.DataFrame:
    """About ``share`` of the labels get no valid outcome in ``column``: one of ``invalid``, or None."""
    n_bad = int(rng.binomial(len(labels), share)) if len(labels) else 0
    if not n_bad:
        return labels
    labels = labels.astype({column: object})
    rows = rng.choice(len(labels), size=n_bad, replace=False)
    labels.loc[rows, column] = rng.choice([*invalid, None], size=n_bad)
    return labels


def redelivered(frame: pd.DataFrame, rows: list[int], timestamp: str) -> pd.DataFrame:
    """``frame`` with the records at ``rows`` delivered a second time, in time order."""
    if rows:
        frame = pd.concat([frame, frame.iloc[rows]]).sort_values(timestamp, kind="stable")
    return frame.reset_index(drop=True)
