"""Drift statistics and the retraining decision: Evidently 0.7 over two samples, then pure rules.

Drift is measured as a distance (normed Wasserstein for numbers, Jensen-Shannon for
categories) rather than a p-value. A fixed threshold on that distance is not a drift
detector: between two samples of the same data it is sampling noise, and how much
depends on the sample sizes and on how the rows hang together. So each column's
threshold is calibrated (``calibrate``): the distance is computed between pairs of
samples drawn from the reference itself, at the sizes and in the shape of the actual
reference and current window, and the threshold is the quantile of those distances that
a same-distribution check passes ``1 - false_alarm_rate`` of the time -- never below
``min_effect``, so that large samples do not flag trivial differences.

The rows of a pipeline's window are not independent: every event of an entity on a day
carries the same entity aggregates, and those barely move from one day to the next. The
resampling therefore keeps each entity's share of the sample and draws within it: an
entity's rows for the row-level columns, an entity's days (all its rows at once) for the
aggregates, which in the later sample also move as such an aggregate moves over the lag.

The decision: retrain when the share of drifted inputs reaches ``feature_share`` (and at
least ``min_drifted_inputs`` of them) or the predictions drifted, unless a retrain was
requested within the cooldown, and only with new labelled data to learn from.

No I/O here: ``ctpipe.monitoring`` reads the samples, runs the check and records it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ctpipe.records import Interval

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PREDICTION = "prediction"
STD_FLOOR = 0.001  # Evidently's: the normed Wasserstein distance divides by max(std(reference), this)
RESAMPLE_CHUNK = 50  # pairs of resamples held in memory at once
SUPPORT_ROWS = 1500  # reference rows the row-level columns are resampled over


@dataclass(frozen=True)
class DriftPolicy:
    min_effect: float = 0.1  # the smallest distance that counts as drift, whatever the noise
    false_alarm_rate: float = 0.01  # per column: the share of same-distribution checks that may flag it
    feature_share: float = 0.2  # share of drifted inputs that triggers retraining; each errs 1% of the time
    min_drifted_inputs: int = 2  # and at least this many: one input alone crosses its threshold too often by chance
    window_days: int = 7
    cooldown_days: int = 7
    reference_rows: int = 5000
    min_new_labels: int = 200  # labelled events newer than the champion's cutoff before drift may retrain
    resamples: int = 400  # pairs of same-distribution samples behind each threshold


@dataclass(frozen=True)
class Design:
    """How a sample is made up: rows, entity-days (cells), and the entities they belong to."""

    rows: int
    entities: int
    cells: int
    days: int

    def __str__(self) -> str:
        return f"{self.rows} rows: {self.entities} entities over {self.days} days"


@dataclass(frozen=True)
class Thresholds:
    """Per column: the distance from which it counts as drifted, and the noise it was calibrated on."""

    by_column: dict[str, float]
    noise: dict[str, float]  # the (1 - false_alarm_rate) quantile of same-distribution distances
    reference: Design
    current: Design
    lag_days: float  # from the reference's middle day to the current window's
    resamples: int

    def describe(self) -> str:
        return (
            f"thresholds calibrated on {self.resamples} same-distribution resamples of the reference "
            f"({self.reference}) against samples shaped like the current window ({self.current}), "
            f"{self.lag_days:.1f} days later"
        )


@dataclass(frozen=True)
class Cells:
    """A frame's rows grouped into entity-days: the unit the resampling draws."""

    of_row: np.ndarray  # each row's cell
    entity: np.ndarray  # each cell's entity code
    day: np.ndarray  # each cell's day, in days since the epoch
    entity_names: np.ndarray  # entity code -> the entity's value

    @classmethod
    def of(cls, frame: pd.DataFrame, entity: str | None, timestamp: str | None) -> Cells:
        """Without an entity or a timestamp column every row is a cell, and its own entity: rows are
        then drawn one by one, which is right for independent rows only."""
        import numpy as np
        import pandas as pd

        if entity is None or timestamp is None or entity not in frame or timestamp not in frame:
            rows = np.arange(len(frame))
            return cls(rows, rows, np.zeros(len(frame)), rows.astype(str))
        entity_of_row, names = pd.factorize(frame[entity].astype(str))
        stamps = pd.to_datetime(frame[timestamp], utc=True).to_numpy("datetime64[ns]").astype(np.int64)
        day_of_row = stamps // (86_400 * 10**9)
        since = day_of_row - day_of_row.min()
        of_row, _ = pd.factorize(entity_of_row * (since.max() + 1) + since)
        first = np.unique(of_row, return_index=True)[1]
        return cls(
            of_row.astype(np.int64),
            entity_of_row[first].astype(np.int64),
            day_of_row[first].astype(float),
            np.asarray(names),
        )

    def design(self) -> Design:
        return Design(
            rows=len(self.of_row),
            entities=len(self.entity_names),
            cells=len(self.entity),
            days=len(set(self.day.tolist())),
        )


@dataclass(frozen=True)
class Draws:
    """How to draw one sample from units (rows, or entity-days) grouped by entity: each entity a
    number of times, with replacement, among its own units."""

    unit_entity: np.ndarray
    per_entity: np.ndarray  # draws of each entity

    @classmethod
    def of(cls, unit_entity: np.ndarray, entities: int, factor: float = 1.0) -> Draws:
        """Each entity as often as it has units, times ``factor``: the entities go on from the
        reference to the current window, and how much each contributes follows the sample's size."""
        import numpy as np

        sizes = np.bincount(unit_entity, minlength=entities)
        return cls(unit_entity, np.where(sizes > 0, np.maximum(1, np.rint(sizes * factor)), 0))

    def draw(self, rng: np.random.Generator, pairs: int) -> np.ndarray:
        """``pairs`` x units: the weight of each unit in a drawn sample.

        The Poisson bootstrap, within each entity: each unit is drawn a Poisson number of times,
        and the entity's weights are then scaled to its number of draws, so that every sample
        holds the entities in the same proportions. As drawing with replacement, at the cost
        of one draw per unit. An entity none of whose units came up weighs them all the same.
        """
        import numpy as np

        entity = self.unit_entity
        sizes = np.bincount(entity, minlength=len(self.per_entity))
        counts = rng.poisson(self.per_entity[entity] / np.maximum(sizes[entity], 1), size=(pairs, len(entity)))
        counts = counts.astype(float)
        order = np.argsort(entity, kind="stable")
        present = np.flatnonzero(sizes)
        starts = np.concatenate([[0], np.cumsum(sizes)])[present]
        totals = np.zeros((pairs, len(sizes)))
        totals[:, present] = np.add.reduceat(counts[:, order], starts, axis=1)
        missing = totals[:, entity] == 0
        counts[missing] = 1.0
        totals[:, present] += np.add.reduceat(missing[:, order].astype(float), starts, axis=1)
        return counts * (self.per_entity / np.where(totals > 0, totals, 1.0))[:, entity]


def _normed_wasserstein(values: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per pair of row weightings of the same values: W1 between the two samples over the first's std."""
    import numpy as np

    present = ~np.isnan(values)
    order = np.argsort(values[present], kind="stable")
    x = values[present][order]
    first, second = first[:, present][:, order], second[:, present][:, order]
    first_total, second_total = first.sum(axis=1, keepdims=True), second.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(np.cumsum(first, axis=1) / first_total - np.cumsum(second, axis=1) / second_total)
        w1 = (gap[:, :-1] * np.diff(x)).sum(axis=1)
        mean = (first * x).sum(axis=1, keepdims=True) / first_total
        std = np.sqrt((first * (x - mean) ** 2).sum(axis=1) / first_total[:, 0])
    return w1 / np.maximum(std, STD_FLOOR)


def _normed_wasserstein_moved(
    values: np.ndarray, first: np.ndarray, second: np.ndarray, moved: np.ndarray
) -> np.ndarray:
    """As ``_normed_wasserstein``, where the second sample's values are ``values + moved`` (pairs x values)."""
    import numpy as np

    present = ~np.isnan(values)
    x, first, second, moved = values[present], first[:, present], second[:, present], moved[:, present]
    pairs, count = first.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        share = first / first.sum(axis=1, keepdims=True)
        both = np.concatenate([np.broadcast_to(x, (pairs, count)), x + moved], axis=1)
        mass = np.concatenate([share, -second / second.sum(axis=1, keepdims=True)], axis=1)
        order = np.argsort(both, axis=1, kind="stable")
        both, mass = np.take_along_axis(both, order, axis=1), np.take_along_axis(mass, order, axis=1)
        w1 = (np.abs(np.cumsum(mass, axis=1)[:, :-1]) * np.diff(both, axis=1)).sum(axis=1)
        mean = (share * x).sum(axis=1, keepdims=True)
        std = np.sqrt((share * (x - mean) ** 2).sum(axis=1))
    return w1 / np.maximum(std, STD_FLOOR)


def _jensen_shannon(values: pd.Series, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per pair of row weightings: the Jensen-Shannon distance (natural log) of the two category mixes."""
    import numpy as np
    import pandas as pd
    from scipy.spatial.distance import jensenshannon

    codes, categories = pd.factorize(values)  # a missing value is -1, left out as Evidently does
    present = codes >= 0
    indicator = np.zeros((int(present.sum()), len(categories)))
    indicator[np.arange(len(indicator)), codes[present]] = 1.0
    return jensenshannon(first[:, present] @ indicator, second[:, present] @ indicator, axis=1)


@dataclass(frozen=True)
class EntityLevel:
    """An entity-level column (an aggregate: one value per entity and day) by distinct value of each cell."""

    cell: np.ndarray  # each group's cell
    value: np.ndarray
    rows: np.ndarray  # rows of the group
    spread: np.ndarray  # per entity: the spread of the value's move over the lag

    @classmethod
    def of(cls, values: np.ndarray, cells: Cells, window_days: float, lag_days: float) -> EntityLevel:
        """A rolling aggregate's change over k days has k times the variance of its day-to-day
        change, up to its window's length, from where on two values share no data."""
        import numpy as np
        import pandas as pd

        groups = pd.DataFrame({"cell": cells.of_row, "value": values}).value_counts(dropna=False).reset_index()
        per_cell = pd.Series(values).groupby(cells.of_row).mean().reindex(range(len(cells.entity))).to_numpy()
        days = pd.DataFrame({"entity": cells.entity, "day": cells.day, "value": per_cell}).sort_values(
            ["entity", "day"]
        )
        by_entity = days.groupby("entity")
        consecutive = by_entity["day"].diff() == 1
        step = by_entity["value"].diff()[consecutive]
        variance = (step**2).groupby(days["entity"][consecutive]).mean().reindex(range(len(cells.entity_names)))
        variance = variance.to_numpy()
        # An entity without two consecutive days moves as the others do, on average.
        pooled = float(np.nanmean(variance)) if np.isfinite(variance).any() else 0.0
        variance = np.where(np.isfinite(variance), variance, pooled)
        return cls(
            cell=groups["cell"].to_numpy(np.int64),
            value=groups["value"].to_numpy(np.float64),
            rows=groups["count"].to_numpy(np.float64),
            spread=np.sqrt(min(lag_days, window_days) * variance),
        )


def _slope(frame: pd.DataFrame, column: str, step: float, predict: Callable[[pd.DataFrame], np.ndarray]) -> np.ndarray:
    """Per row: how the prediction moves with ``column``, by a central difference of about ``step``.

    An integer column stays integer (a model's signature may insist), its step rounded, at least 1.
    """
    import numpy as np
    import pandas as pd

    values = frame[column]
    integer = pd.api.types.is_integer_dtype(values.dtype)
    if integer:
        step = max(1.0, round(step))
    up, down = frame.copy(), frame.copy()
    up[column] = (values + step).astype(values.dtype) if integer else values + step
    down[column] = (values - step).astype(values.dtype) if integer else values - step
    return (np.asarray(predict(up), float) - np.asarray(predict(down), float)) / (2 * step)


def calibrate(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    policy: DriftPolicy,
    *,
    entity: str | None,
    timestamp: str | None,
    windows: dict[str, float] | None = None,
    predict: Callable[[pd.DataFrame], np.ndarray] | None = None,
    seed: int = 0,
) -> Thresholds:
    """Each column's threshold: the distance a same-distribution check stays under ``1 - false_alarm_rate`` of
    the time, at the reference's and the current window's sizes and shapes, and at least ``min_effect``.

    Pairs of samples are drawn from the reference alone (the current window is only read for
    its shape): each entity keeps its place, and its rows are drawn with replacement within
    it (``Draws``). An entity-level column (``windows``: an aggregate over that many days) is
    drawn by the entity's days instead, and also moves, in the second sample of a pair, by a
    draw per entity of how such a value moves over the lag between the two windows
    (``EntityLevel``). The prediction, if ``predict`` scores a
    frame, follows those moves through the model's local slopes. ``seed`` makes a rerun
    decide the same.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    cells, shape = Cells.of(reference, entity, timestamp), Cells.of(current, entity, timestamp)
    entities = len(cells.entity_names)
    lag = max(1.0, float(shape.day.mean() - cells.day.mean())) if len(shape.day) and len(cells.day) else 1.0
    row_entity = cells.entity[cells.of_row]
    values = {c: reference[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in numeric}
    levels = {
        c: EntityLevel.of(values[c], cells, w, lag)
        for c, w in (windows or {}).items()
        if c in numeric and entity is not None
    }
    slopes = {}
    if predict is not None and PREDICTION in numeric:
        for column, level in levels.items():
            step = float(np.median(level.spread))
            if step > 0:
                slopes[column] = _slope(reference, column, step, predict)
    # Row-level columns: rows drawn within their entity, from a subsample of them (``SUPPORT_ROWS``)
    # as many times as from all. Entity-level ones: an entity's days.
    support = np.arange(len(reference))
    if len(support) > SUPPORT_ROWS:
        support = np.sort(rng.choice(len(reference), SUPPORT_ROWS, replace=False))
    on_support = row_entity[support]
    per_entity = Draws.of(row_entity, entities).per_entity
    scaled = Draws.of(row_entity, entities, len(current) / max(len(reference), 1)).per_entity
    rows = Draws(on_support, per_entity), Draws(on_support, scaled)
    days = Draws.of(cells.entity, entities), Draws.of(cells.entity, entities, len(shape.entity) / len(cells.entity))
    null: dict[str, list[np.ndarray]] = {c: [] for c in numeric + categorical}
    for done in range(0, policy.resamples, RESAMPLE_CHUNK):
        pairs = min(RESAMPLE_CHUNK, policy.resamples - done)
        first, second = (d.draw(rng, pairs) for d in rows)
        first_days, second_days = (d.draw(rng, pairs) for d in days)
        moves = {c: rng.standard_normal((pairs, entities)) * level.spread for c, level in levels.items()}
        for column in numeric:
            if column in levels:
                level = levels[column]
                null[column].append(
                    _normed_wasserstein_moved(
                        level.value,
                        first_days[:, level.cell] * level.rows,
                        second_days[:, level.cell] * level.rows,
                        moves[column][:, cells.entity[level.cell]],
                    )
                )
            elif column == PREDICTION and slopes:
                moved = sum(np.nan_to_num(slopes[c][support] * moves[c][:, on_support]) for c in slopes)
                null[column].append(_normed_wasserstein_moved(values[column][support], first, second, moved))
            else:
                null[column].append(_normed_wasserstein(values[column][support], first, second))
        for column in categorical:
            null[column].append(_jensen_shannon(reference[column].iloc[support], first, second))
    noise = {
        c: float(np.nanquantile(np.concatenate(d), 1 - policy.false_alarm_rate, method="higher"))
        for c, d in null.items()
    }
    by_column = {c: max(n, policy.min_effect) if np.isfinite(n) else policy.min_effect for c, n in noise.items()}
    return Thresholds(
        by_column=by_column,
        noise=noise,
        reference=cells.design(),
        current=shape.design(),
        lag_days=lag,
        resamples=policy.resamples,
    )


def distances(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> dict[str, float]:
    """Each column's distance as Evidently computes it (normed Wasserstein, Jensen-Shannon), without a report.

    For simulations; the check itself reads Evidently's values, and a test holds the two equal.
    """
    import numpy as np
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    found = {}
    for column in numeric:
        ref, cur = reference[column].dropna().to_numpy(float), current[column].dropna().to_numpy(float)
        found[column] = float(wasserstein_distance(ref, cur) / max(float(np.std(ref)), STD_FLOOR))
    for column in categorical:
        ref, cur = reference[column].dropna(), current[column].dropna()
        keys = sorted(set(ref) | set(cur), key=str)
        shares = [side.value_counts().reindex(keys, fill_value=0).to_numpy(float) / len(side) for side in (ref, cur)]
        found[column] = float(jensenshannon(*shares))
    return found


def decide(
    scores: dict[str, float], features: list[str], thresholds: Thresholds, policy: DriftPolicy
) -> dict[str, Any]:
    """Per-column distances against their calibrated thresholds, and what they add up to."""
    missing = sorted(set([*features, PREDICTION]) - set(scores))
    if missing:
        raise RuntimeError(f"the drift report has no result for {missing}")
    limit = thresholds.by_column
    drifted = sorted(c for c in features if scores[c] >= limit[c])
    share = len(drifted) / len(features)
    prediction = scores[PREDICTION]
    return {
        "column_scores": {c: round(scores[c], 6) for c in features},
        "column_thresholds": {c: round(limit[c], 6) for c in [*features, PREDICTION]},
        "drifted_columns": drifted,
        "drifted_share": share,
        "prediction_score": prediction,
        "prediction_threshold": limit[PREDICTION],
        "prediction_drifted": prediction >= limit[PREDICTION],
        "drift_detected": (share >= policy.feature_share and len(drifted) >= policy.min_drifted_inputs)
        or prediction >= limit[PREDICTION],
        "calibration": thresholds.describe(),
    }


def report_scores(snapshot_dict: dict[str, Any]) -> dict[str, float]:
    """Each column's distance out of an Evidently snapshot."""
    scores = {}
    for metric in snapshot_dict["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            scores[config["column"]] = float(metric["value"])
    return scores


def run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    thresholds: Thresholds,
    policy: DriftPolicy,
) -> tuple[Any, dict[str, Any]]:
    """Evidently's drift of each input and of the predictions, at its calibrated threshold: (snapshot, summary).

    One ``ValueDrift`` per column, and nothing else: each column's distance is computed once,
    with its plots, and the same snapshot is the HTML report and the source of the decision.
    ``DataDriftPreset`` would compute every column three times (its per-column metrics, its
    dataset count, and again for its rendered table) and render the table besides: about 2.5x
    the cost, for a count and a share that ``decide`` computes from the calibrated thresholds anyway.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    numbers = [*numeric, PREDICTION]
    columns = numbers + categorical
    definition = DataDefinition(numerical_columns=numbers, categorical_columns=categorical)
    report = Report(
        [
            ValueDrift(
                column=column,
                method="wasserstein" if column in numbers else "jensenshannon",
                threshold=thresholds.by_column[column],
            )
            for column in columns
        ]
    )
    snapshot = report.run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    return snapshot, decide(report_scores(snapshot.dict()), numeric + categorical, thresholds, policy)


RETRAIN, SKIP, WAIT_FOR_LABELS = "retrain", "skip", "wait_for_labels"  # what a drift check decides


def retrain_decision(
    summary: dict[str, Any],
    last_request: datetime | None,
    now: datetime,
    policy: DriftPolicy,
    *,
    new_labels: int,
    cutoff: datetime,
) -> tuple[str, str]:
    """(decision, why) -- the reason is what the branch task and the MLflow run show.

    Drift asks for a retrain only with new evidence to learn from: at least
    ``policy.min_new_labels`` labelled events newer than the champion's training ``cutoff``
    (``new_labels`` of them). Without it, the drift is noted and the check waits for labels.
    """
    if not summary["drift_detected"]:
        return SKIP, (
            f"no drift: {len(summary['drifted_columns'])} drifted inputs ({summary['drifted_share']:.0%}; "
            f"drift needs {policy.feature_share:.0%} and at least {policy.min_drifted_inputs}), "
            f"prediction distance {summary['prediction_score']:.3f} < {summary['prediction_threshold']:.3f}"
        )
    what = (
        f"drift: {summary['drifted_share']:.0%} of inputs drifted ({', '.join(summary['drifted_columns']) or 'none'}), "
        f"prediction distance {summary['prediction_score']:.3f} (threshold {summary['prediction_threshold']:.3f})"
    )
    if last_request is not None and now - last_request < timedelta(days=policy.cooldown_days):
        return (
            SKIP,
            f"{what}; but a retrain was requested at {last_request.isoformat()}, "
            f"within the {policy.cooldown_days}-day cooldown",
        )
    if new_labels < policy.min_new_labels:
        return WAIT_FOR_LABELS, (
            f"{what}; drift noted, waiting for labels: {new_labels} labelled events newer than the champion's "
            f"cutoff {cutoff.isoformat()}, {policy.min_new_labels} needed to train on anything new"
        )
    return RETRAIN, f"{what}; {new_labels} new labelled events: retrain"


def current_window(end: datetime, fitted_until: datetime, policy: DriftPolicy) -> Interval | None:
    """The newest ``window_days`` before ``end``, never reaching into the data the champion was fitted on.

    Predictions on rows a model was fitted to are sharper than on new rows; comparing them
    with the reference (the champion's holdout days) would flag drift that is not there.
    """
    start = max(end - timedelta(days=policy.window_days), fitted_until)
    return Interval(start, end) if end - start >= timedelta(days=1) else None
