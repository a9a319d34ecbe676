"""MLflow: where runs and models go. Tracking URI from the environment, a SQLite file by default."""

from __future__ import annotations

from ctpipe.datasets import get_dataset
from ctpipe.settings import Settings


def experiment_name(kind: str = "training") -> str:
    suffix = "" if kind == "training" else f"-{kind}"
    return f"ctpipe-{get_dataset().name}{suffix}"


def configure(settings: Settings | None = None, kind: str = "training") -> str:
    """Point MLflow at the deployment's tracking server and make sure the experiment exists; returns its id."""
    import mlflow

    settings = settings or Settings.from_env()
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        (settings.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    name = experiment_name(kind)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        # Local stores get an explicit artifact root; a tracking server decides its own.
        local = not settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))
        experiment_id = mlflow.create_experiment(
            name, artifact_location=settings.mlflow_artifacts_uri if local else None
        )
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
