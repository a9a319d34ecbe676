"""A small generator of datasets unlike lab_qc, for the drift detector: stationary unless told to shift.

Each dataset has entities of very different sizes, each producing rows every day, with:

* ``amount``: log-normal or Pareto (heavy-tailed), scaled per entity;
* ``count``: a small integer (Poisson, 0 to about 6), its rate per entity;
* ``level``: a normal reading;
* ``kind``: a category with skewed frequencies (70% / 18% / 8% / 3% / 1%);
* ``amount_mean_7d``: an entity aggregate, the entity's mean amount over the 7 days before
  the row's day: one value per entity and day, much the same from one day to the next;
* ``prediction``: a fixed scorer of all of them (``score``).

``window`` draws the days of one sample from a fresh history, so that the aggregate's
window is always full. A ``Shift`` changes the current window only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Literal

import numpy as np
import pandas as pd

ENTITY, TIMESTAMP = "entity", "ts"
NUMERIC = ["amount", "count", "level", "amount_mean_7d", "prediction"]
CATEGORICAL = ["kind"]
FEATURES = [c for c in NUMERIC if c != "prediction"] + CATEGORICAL
WINDOWS = {"amount_mean_7d": 7.0}  # the entity aggregates and their windows, in days
KINDS = ("a", "b", "c", "d", "e")
KIND_SHARES = (0.70, 0.18, 0.08, 0.03, 0.01)
SHIFTED_KIND_SHARES = (0.50, 0.28, 0.13, 0.06, 0.03)
LEVEL_MEAN, LEVEL_SD = 20.0, 3.0
START = datetime(2026, 3, 2, tzinfo=UTC)


@dataclass(frozen=True)
class Shape:
    name: str
    rows_per_day: float
    entities: int
    amount: Literal["lognormal", "pareto"]


@dataclass(frozen=True)
class Shift:
    """What changes in the current window: ``mean`` (amount, by half its standard deviation),
    ``mix`` (the category shares), or ``variance`` (level, 1.5 times)."""

    kind: Literal["mean", "mix", "variance"]


@cache
def amount_sd(shape: Shape) -> float:
    """The standard deviation of ``amount`` over all entities, as drawn below (a large sample)."""
    rng = np.random.default_rng(0)
    scale = rng.lognormal(0.0, 0.2, 200_000) * 50
    return float(np.std(_amount(rng, shape, scale)))


def _amount(rng: np.random.Generator, shape: Shape, scale: np.ndarray) -> np.ndarray:
    if shape.amount == "lognormal":
        return scale * rng.lognormal(0.0, 0.8, len(scale))
    return scale * (rng.pareto(2.5, len(scale)) + 1.0)  # Pareto with tail index 2.5: finite variance, heavy tail


def score(frame: pd.DataFrame) -> np.ndarray:
    """The stand-in champion: any fixed function of every input."""
    z = (
        0.6 * np.log1p(np.maximum(frame["amount"].to_numpy(float), 0))
        - 0.5 * np.log1p(np.maximum(frame["amount_mean_7d"].to_numpy(float), 0))
        + 0.3 * frame["count"].to_numpy(float)
        + 0.1 * (frame["level"].to_numpy(float) - LEVEL_MEAN)
        + (frame["kind"].to_numpy() == "a") * 0.4
        - 1.0
    )
    return 1 / (1 + np.exp(-z))


def history(
    shape: Shape, rng: np.random.Generator, days: int, shift: Shift | None = None, shift_from: int | None = None
) -> pd.DataFrame:
    """``days`` days of rows (7 more before them fill the aggregate), shifted from day ``shift_from`` on."""
    weight = rng.lognormal(0.0, 1.0, shape.entities)  # entity sizes: some 10x others
    weight /= weight.sum()
    scale = rng.lognormal(0.0, 0.2, shape.entities) * 50
    rate = rng.gamma(4.0, 0.4, shape.entities)  # each entity's mean count, about 1.6
    total = days + 7
    rows = rng.poisson(np.outer(np.ones(total), weight * shape.rows_per_day))  # day x entity
    day = np.repeat(np.tile(np.arange(total), (shape.entities, 1)).T.ravel(), rows.ravel())
    entity = np.repeat(np.tile(np.arange(shape.entities), total), rows.ravel())
    shifted = np.zeros(len(day), bool) if shift is None or shift_from is None else day >= shift_from + 7
    amount = _amount(rng, shape, scale[entity])
    level = rng.normal(LEVEL_MEAN, LEVEL_SD, len(day))
    kind = rng.choice(len(KINDS), len(day), p=KIND_SHARES)
    if shift is not None and shifted.any():
        if shift.kind == "mean":
            amount[shifted] += 0.5 * amount_sd(shape)
        elif shift.kind == "variance":
            level[shifted] = LEVEL_MEAN + (level[shifted] - LEVEL_MEAN) * np.sqrt(1.5)
        else:
            kind[shifted] = rng.choice(len(KINDS), int(shifted.sum()), p=SHIFTED_KIND_SHARES)
    names = np.asarray([f"E-{e:03d}" for e in range(shape.entities)])
    frame = pd.DataFrame(
        {
            ENTITY: names[entity],
            "day": day,
            TIMESTAMP: pd.Timestamp(START) + pd.to_timedelta(day + rng.uniform(0, 0.999, len(day)), unit="D"),
            "amount": amount,
            "count": rng.poisson(rate[entity]).astype(float),
            "level": level,
            "kind": np.asarray(KINDS)[kind],
        }
    )
    # The entity's mean amount over the 7 days before each day (NaN where it had no rows).
    sums = np.zeros((total, shape.entities))
    np.add.at(sums, (day, entity), amount)
    past = pd.DataFrame(sums).rolling(7, min_periods=1).sum().shift(1).to_numpy()
    past_rows = pd.DataFrame(rows.astype(float)).rolling(7, min_periods=1).sum().shift(1).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["amount_mean_7d"] = (past / past_rows)[day, entity]
    frame = frame[frame["day"] >= 7].reset_index(drop=True)
    frame["day"] -= 7
    frame["prediction"] = score(frame)
    return frame


def pair(
    shape: Shape,
    rng: np.random.Generator,
    *,
    reference_days: int = 4,
    current_days: int = 7,
    gap_days: int = 0,
    shift: Shift | None = None,
    reference_rows: int = 5000,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference (``reference_days``, at most ``reference_rows`` of them, as the pipeline keeps) and,
    ``gap_days`` after it, a current window of ``current_days``."""
    first_current = reference_days + gap_days
    frame = history(shape, rng, first_current + current_days, shift, first_current)
    reference = frame[frame["day"] < reference_days]
    if len(reference) > reference_rows:
        reference = reference.sample(n=reference_rows, random_state=int(rng.integers(2**31)))
    current = frame[frame["day"] >= first_current]
    return reference.reset_index(drop=True), current.reset_index(drop=True)
