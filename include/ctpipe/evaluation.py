"""Champion against challenger on the same, most recent point-in-time holdout."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ctpipe.datasets import get_dataset
from ctpipe.lake import Lake
from ctpipe.settings import Settings
from ctpipe.training_set import LABEL, TrainingSetSpec, build_training_set, model_columns


def recent_holdout(cutoff: datetime, days: int, settings: Settings | None = None) -> Any:
    """The labelled events of the last ``days`` before ``cutoff``, with their features as of each event."""
    from ctpipe.feature_store import load_store

    settings = settings or Settings.from_env()
    dataset = get_dataset()
    spec = TrainingSetSpec(dataset.name, dataset.feature_service, cutoff.isoformat(), days, days)
    return build_training_set(dataset, Lake(settings.lake_dir), load_store(settings), spec)


def score(model_uri: str, holdout: Any) -> dict[str, float]:
    import mlflow

    from ctpipe.models import evaluate, failure_probability

    numeric, categorical = model_columns(get_dataset())
    model = mlflow.pyfunc.load_model(model_uri)
    return evaluate(holdout[LABEL].to_numpy(), failure_probability(model, holdout[numeric + categorical]))


def compare(challenger_uri: str, champion_uri: str | None, cutoff: datetime, days: int) -> dict[str, Any]:
    """Both models' holdout metrics on identical rows; ``champion`` is None when there is none yet."""
    from ctpipe.tracking import configure

    configure()
    holdout = recent_holdout(cutoff, days)
    return {
        "holdout_rows": len(holdout),
        "holdout": {"cutoff": cutoff.isoformat(), "days": days},
        "challenger": score(challenger_uri, holdout),
        "champion": score(champion_uri, holdout) if champion_uri else None,
    }
