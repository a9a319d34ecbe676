"""Champion against challenger: both scored on the same, most recent point-in-time holdout."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ctpipe.lake import Lake
from ctpipe.records import TrainingSetSpec
from ctpipe.training_set import LABEL, build_training_set, model_input

if TYPE_CHECKING:
    import pandas as pd

    from ctpipe.datasets.spec import DatasetSpec
    from ctpipe.settings import Settings
    from ctpipe.tracking import Tracking


@dataclass(frozen=True)
class Comparison:
    holdout_rows: int
    challenger: dict[str, float]
    champion: dict[str, float] | None  # None when there is no champion yet


def recent_holdout(settings: Settings, cutoff: datetime, days: int) -> pd.DataFrame:
    """The labelled events of the last ``days`` before ``cutoff``, with their features as of each event."""
    from ctpipe.feature_store import load_store

    dataset = settings.dataset
    spec = TrainingSetSpec(dataset.name, dataset.feature_service, cutoff, days, days)
    return build_training_set(dataset, Lake(settings.lake_dir), load_store(settings), spec)


def score(tracking: Tracking, model_uri: str, holdout: pd.DataFrame, dataset: DatasetSpec) -> dict[str, float]:
    from ctpipe.models import evaluate, failure_probability
    from ctpipe.tracking import load_model

    model = load_model(tracking, model_uri)
    return evaluate(holdout[LABEL].to_numpy(), failure_probability(model, model_input(dataset, holdout)))


def compare(
    tracking: Tracking, settings: Settings, challenger_uri: str, champion_uri: str | None, cutoff: datetime, days: int
) -> Comparison:
    """Both models' holdout metrics on identical rows."""
    holdout = recent_holdout(settings, cutoff, days)
    return Comparison(
        holdout_rows=len(holdout),
        challenger=score(tracking, challenger_uri, holdout, settings.dataset),
        champion=score(tracking, champion_uri, holdout, settings.dataset) if champion_uri else None,
    )
