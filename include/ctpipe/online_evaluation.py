"""Live performance: the predictions the service served, joined to the labels known so far.

The prediction log (``ctpipe.serving.prediction_log``) holds every score the service gave,
shadow scores included. Evaluated as of a time T, an event counts if it happened before T,
and its label only if the label was reported at or before T: the figures for a day are what
could be known that day, and computing them again later gives the same figures. A label
corrected later replaces the earlier one from its own report time on, as in training sets.
An event scored more than once by one version (a caller's retry) counts once, at its
first score.

For each model version and variant: the volume served, how many of those events have a label
yet (coverage), ROC AUC, Brier score and log loss on the labelled ones (``models.evaluate``,
the holdout's metrics), a calibration table, and latency percentiles. During an experiment
both models score every request, so each labelled event gives a pair of losses:
``paired_differences`` is the evidence ``ctpipe.experiment`` decides on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ctpipe.lake import Lake
from ctpipe.records import Interval
from ctpipe.serving.prediction_log import SERVED_AT
from ctpipe.training_set import EVENT_TIMESTAMP

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from ctpipe.datasets.spec import DatasetSpec

OUTCOME = "outcome"  # 1 when the label is the dataset's positive one; missing while unknown
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    events: int
    mean_score: float
    positive_rate: float


@dataclass(frozen=True)
class LiveMetrics:
    """One model version's live figures, in one variant (champion, or challenger: answered or shadow)."""

    version: str
    variant: str
    returned: bool  # False: shadow scores, logged but not answered
    served: int
    labelled: int
    roc_auc: float | None  # None until both outcomes have been seen
    brier: float | None
    log_loss: float | None
    positive_rate: float | None
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    calibration: tuple[CalibrationBin, ...]

    @property
    def coverage(self) -> float:
        return self.labelled / self.served if self.served else 0.0


def read_predictions(predictions_dir: Path, window: Interval) -> pd.DataFrame:
    """The logged predictions of events stamped in ``window``; an event's first score per version and variant.

    A prediction is served at or after its event, so only the hours from the window's start
    on are read.
    """
    import pandas as pd

    first_hour = f"hour={window.start:%Y%m%dT%H}"
    files = sorted(
        path
        for folder in predictions_dir.glob("hour=*")
        if folder.name >= first_hour
        for path in folder.glob("*.parquet")
        if not path.name.startswith((".", "_"))
    )
    if not files:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)
    stamped = frame[EVENT_TIMESTAMP]
    frame = frame[(stamped >= window.start) & (stamped < window.end)]
    return frame.sort_values(SERVED_AT, kind="stable").reset_index(drop=True)


def known_labels(dataset: DatasetSpec, lake: Lake, events: Interval, as_of: datetime) -> pd.DataFrame:
    """Each event key's label as known at ``as_of``: reported at or before it, the newest report winning."""
    spec = dataset.labels
    early = spec.parent.grace if spec.parent is not None else timedelta(0)  # labels may precede their events
    reported = Interval(events.start - early, max(as_of, events.start) + timedelta(microseconds=1))
    labels = lake.read_window("validated", spec.name, spec.timestamp, reported, [spec.key, dataset.label])
    labels = labels[labels[spec.timestamp] <= as_of]
    labels = labels.sort_values(spec.timestamp, kind="stable").drop_duplicates(spec.key, keep="last")
    outcome = (labels[dataset.label] == dataset.positive_label).astype("int64")
    return labels.assign(**{OUTCOME: outcome})[[spec.key, OUTCOME]].rename(columns={spec.key: dataset.events.key})


def join_labels(dataset: DatasetSpec, predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Predictions (once per event, version and variant) with their outcome where one is known."""
    key = dataset.events.key
    once = predictions.drop_duplicates([key, "model_version", "variant"], keep="first")
    return once.merge(labels, on=key, how="left", validate="many_to_one")


def live_metrics(joined: pd.DataFrame) -> list[LiveMetrics]:
    """The figures of each (version, variant, answered or shadow) in a joined frame."""
    import numpy as np

    from ctpipe.models import evaluate

    found = []
    for (version, variant, returned), rows in joined.groupby(["model_version", "variant", "returned"], sort=True):
        labelled = rows[rows[OUTCOME].notna()]
        outcome = labelled[OUTCOME].to_numpy(dtype="int64")
        scores = labelled["score"].to_numpy(dtype="float64")
        metrics = evaluate(outcome, scores) if len(set(outcome)) == 2 else {}
        latency = rows["latency_ms"].to_numpy(dtype="float64")
        p50, p95, p99 = np.percentile(latency, [50, 95, 99]) if len(latency) else (0.0, 0.0, 0.0)
        found.append(
            LiveMetrics(
                version=str(version),
                variant=str(variant),
                returned=bool(returned),
                served=len(rows),
                labelled=len(labelled),
                roc_auc=metrics.get("roc_auc"),
                brier=float(np.mean((scores - outcome) ** 2)) if len(labelled) else None,
                log_loss=metrics.get("log_loss"),
                positive_rate=float(outcome.mean()) if len(labelled) else None,
                latency_p50_ms=float(p50),
                latency_p95_ms=float(p95),
                latency_p99_ms=float(p99),
                calibration=calibration(scores, outcome),
            )
        )
    return found


def calibration(scores: np.ndarray, outcome: np.ndarray, bins: int = CALIBRATION_BINS) -> tuple[CalibrationBin, ...]:
    """Scores in equal-width bins: for each non-empty one, its mean score against the share that were positive."""
    import numpy as np

    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    table = []
    for i in range(bins):
        inside = which == i
        if inside.any():
            table.append(
                CalibrationBin(
                    float(edges[i]),
                    float(edges[i + 1]),
                    int(inside.sum()),
                    float(scores[inside].mean()),
                    float(outcome[inside].mean()),
                )
            )
    return tuple(table)


def paired_differences(dataset: DatasetSpec, joined: pd.DataFrame, champion: str, challenger: str) -> np.ndarray:
    """Labelled events scored by both versions: champion's Brier loss minus the challenger's, in event order."""
    import numpy as np

    from ctpipe.experiment import brier_differences

    key = dataset.events.key
    labelled = joined[joined[OUTCOME].notna()]
    one = labelled[labelled.model_version == champion].drop_duplicates(key).set_index(key)
    other = labelled[labelled.model_version == challenger].drop_duplicates(key).set_index(key)
    both = one[["score", OUTCOME, EVENT_TIMESTAMP]].join(other[["score"]], rsuffix="_challenger", how="inner")
    both = both.sort_values(EVENT_TIMESTAMP, kind="stable")
    if both.empty:
        return np.zeros(0)
    return brier_differences(both["score"], both["score_challenger"], both[OUTCOME])
