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

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ctpipe.lake import Lake
from ctpipe.records import Interval, LiveEvaluation
from ctpipe.serving.prediction_log import FAILED, SERVED_AT
from ctpipe.training_set import EVENT_TIMESTAMP

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from ctpipe.datasets.spec import DatasetSpec
    from ctpipe.settings import Settings
    from ctpipe.tracking import Tracking

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
    failed: int  # events the version failed to score (the champion answered them): not in the figures below
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
    frame[FAILED] = frame[FAILED].fillna(False).astype(bool) if FAILED in frame else False
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
    for (version, variant, returned), group in joined.groupby(["model_version", "variant", "returned"], sort=True):
        rows = group[~group[FAILED]]
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
                failed=len(group) - len(rows),
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
    labelled = joined[joined[OUTCOME].notna() & ~joined[FAILED]]
    one = labelled[labelled.model_version == champion].drop_duplicates(key).set_index(key)
    other = labelled[labelled.model_version == challenger].drop_duplicates(key).set_index(key)
    both = one[["score", OUTCOME, EVENT_TIMESTAMP]].join(other[["score"]], rsuffix="_challenger", how="inner")
    both = both.sort_values(EVENT_TIMESTAMP, kind="stable")
    if both.empty:
        return np.zeros(0)
    return brier_differences(both["score"], both["score_challenger"], both[OUTCOME])


# -- a day's live evaluation, recorded in MLflow ---------------------------------------------------

LIVE_RUN_TAG = "live_version"  # a version's run of live figures, in the dataset's live experiment
LIVE_PLOT = "evidence/live_metrics.png"  # in the version's training run: its live figures over time
PLOTTED = ("brier", "roc_auc")


def figure_key(metrics: LiveMetrics) -> str:
    return f"{metrics.variant}.{'answered' if metrics.returned else 'shadow'}"


def figures(metrics: LiveMetrics) -> dict[str, float]:
    """A version's live figures in one variant, as MLflow metrics: those not known yet are left out."""
    values: dict[str, float | None] = {
        "served": metrics.served,
        "labelled": metrics.labelled,
        "coverage": metrics.coverage,
        "failed": metrics.failed,
        "roc_auc": metrics.roc_auc,
        "brier": metrics.brier,
        "log_loss": metrics.log_loss,
        "positive_rate": metrics.positive_rate,
        "latency_p50_ms": metrics.latency_p50_ms,
        "latency_p95_ms": metrics.latency_p95_ms,
        "latency_p99_ms": metrics.latency_p99_ms,
    }
    return {f"{figure_key(metrics)}.{k}": float(v) for k, v in values.items() if v is not None}


def evaluate_day(as_of: datetime, settings: Settings | None = None) -> LiveEvaluation:
    """The live figures as known at ``as_of``, over the events of the window ending there; logged to MLflow.

    Each version has one run in the dataset's ``live`` experiment; a day is one step of its
    metrics (``<variant>.<answered|shadow>.<metric>``), stamped with the day, so the MLflow UI
    charts them over time, and the day's calibration tables are artifacts of it
    (``calibration/<day>_<variant>.<answered|shadow>.json``). Evaluating a day again logs no
    metric twice. The version's training
    run gets a plot of the live Brier score and ROC AUC of every version served in the window
    (``evidence/live_metrics.png``), linked from the version's ``evidence.live_metrics`` tag.
    """
    from ctpipe.settings import Settings
    from ctpipe.tracking import connect

    settings = settings or Settings.from_env()
    dataset = settings.dataset
    window = Interval(as_of - timedelta(days=settings.live_window_days), as_of)
    predictions = read_predictions(settings.predictions_dir, window)
    if predictions.empty:
        return LiveEvaluation(as_of=as_of, window=window, predictions=0)
    joined = join_labels(dataset, predictions, known_labels(dataset, Lake(settings.lake_dir), window, as_of))
    found = live_metrics(joined)
    tracking = connect(settings)
    by_version: dict[str, dict[str, float]] = {}
    for metrics in found:
        by_version.setdefault(metrics.version, {}).update(figures(metrics))
    runs = {
        version: _log_day(tracking, dataset.model_name, version, as_of, values)
        for version, values in by_version.items()
    }
    for metrics in found:  # the calibration tables, one JSON a day and variant in the version's live run
        table = [asdict(b) for b in metrics.calibration]
        name = f"calibration/{as_of:%Y-%m-%d}_{figure_key(metrics)}.json"
        tracking.client.log_dict(runs[metrics.version], {"as_of": as_of.isoformat(), "bins": table}, name)
    for version in runs:
        _plot_evidence(tracking, dataset.model_name, version, runs)
    return LiveEvaluation(
        as_of=as_of,
        window=window,
        predictions=len(predictions),
        figures={f"{m.version} {figure_key(m).replace('.', ' ')}": _summary(m) for m in found},
        runs=runs,
    )


def _summary(metrics: LiveMetrics) -> dict[str, float]:
    shown = {"served": metrics.served, "labelled": metrics.labelled, "brier": metrics.brier, "roc_auc": metrics.roc_auc}
    return {k: float(v) for k, v in shown.items() if v is not None}


def day_step(as_of: datetime) -> int:
    """A day's step in the live runs' metrics: days since 1970-01-01, so every version's steps line up."""
    return int(as_of.timestamp() // 86_400)


def _live_run(tracking: Tracking, name: str, version: str) -> str:
    experiment_id = tracking.experiment_id("live")
    found = tracking.client.search_runs([experiment_id], f"tags.{LIVE_RUN_TAG} = '{version}'", max_results=1)
    if found:
        return found[0].info.run_id
    run = tracking.client.create_run(
        experiment_id, run_name=f"live: {name} version {version}", tags={LIVE_RUN_TAG: version, "model": name}
    )
    return run.info.run_id


def _log_day(tracking: Tracking, name: str, version: str, as_of: datetime, values: dict[str, float]) -> str:
    from mlflow.entities import Metric

    run_id = _live_run(tracking, name, version)
    step = day_step(as_of)
    logged = tracking.client.get_run(run_id).data.metrics  # the newest value of each key
    fresh = {k: v for k, v in values.items() if not _logged_at(tracking, run_id, k, step, k in logged)}
    stamp = int(as_of.timestamp() * 1000)
    tracking.client.log_batch(run_id, metrics=[Metric(k, v, stamp, step) for k, v in sorted(fresh.items())])
    return run_id


def _logged_at(tracking: Tracking, run_id: str, key: str, step: int, ever: bool) -> bool:
    return ever and any(m.step == step for m in tracking.client.get_metric_history(run_id, key))


def _plot_evidence(tracking: Tracking, name: str, version: str, runs: dict[str, str]) -> None:
    """The versions' live Brier score and ROC AUC over time, as answered, into ``version``'s evidence."""
    import tempfile
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(PLOTTED), figsize=(11, 4))
    for axis, metric in zip(axes, PLOTTED, strict=True):
        for shown, run_id in sorted(runs.items(), key=lambda kv: int(kv[0])):
            for key in (f"champion.answered.{metric}", f"challenger.answered.{metric}", f"challenger.shadow.{metric}"):
                history = sorted(tracking.client.get_metric_history(run_id, key), key=lambda m: m.step)
                if history:
                    days = [datetime.fromtimestamp(m.timestamp / 1000, tz=UTC).date() for m in history]
                    role = key.rsplit(".", 1)[0].replace(".", ", ")
                    axis.plot(days, [m.value for m in history], marker="o", label=f"version {shown} ({role})")
        axis.set_title(f"live {metric} (labels as known each day)")
        axis.tick_params(axis="x", rotation=30)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    figure.suptitle(f"{name}: live figures by version")
    figure.tight_layout()
    details = tracking.client.get_model_version(name, version)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(LIVE_PLOT).name
        figure.savefig(path, dpi=90)
        tracking.client.log_artifact(details.run_id, str(path), str(Path(LIVE_PLOT).parent))
    plt.close(figure)
    link = tracking.artifact_link(details.run_id, LIVE_PLOT)
    tracking.client.set_model_version_tag(name, version, "evidence.live_metrics", link)
