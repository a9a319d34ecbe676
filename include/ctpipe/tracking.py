"""MLflow: the tracking client, configured once per process and passed to whoever logs or reads.

``connect(settings)`` checks the tracking server (or database) once, briefly, before
MLflow's client talks to it: that client retries a dead server for minutes with nothing
but connection warnings. A server that does not answer is a ``ServiceUnavailableError``
(retried), one that refuses the pipeline's credentials a ``TrackingAuthError`` (a setting
to fix); a malformed ``MLFLOW_TRACKING_URI`` is a ``ConfigurationError`` from the settings.

The result, a ``Tracking``, carries the ``MlflowClient`` and the experiment ids. Code
passes experiment ids explicitly (``mlflow.start_run(experiment_id=...)``) rather than
switching MLflow's active experiment. ``connect`` also points MLflow's process-wide
tracking and registry URI at the same store, for what only MLflow's fluent API does:
logging a model into the active run, and loading ``models:/`` URIs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ctpipe import artifacts
from ctpipe.records import TrainingSetSpec
from ctpipe.services import Service
from ctpipe.settings import ConfigurationError, Settings, hide_passwords

if TYPE_CHECKING:
    from mlflow import MlflowClient

VARIABLE = "MLFLOW_TRACKING_URI"
# Seconds to wait for a tracking server to connect, then to answer its health check.
HEALTH_TIMEOUT = (5.0, 10.0)
KINDS = ("training", "monitoring", "live")


class TrackingAuthError(ConfigurationError):
    """The tracking server answers but refuses these credentials (or their absence): fix the settings."""


@dataclass(frozen=True)
class Tracking:
    """A connection to the deployment's tracking store and model registry."""

    uri: str
    client: MlflowClient
    ui_url: str  # where a person opens the MLflow UI
    dataset: str
    artifacts_uri: str | None  # where a new experiment keeps artifacts; None: the server decides
    _experiments: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def experiment_name(self, kind: str = "training") -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown experiment kind {kind!r}; one of {KINDS}")
        return f"ctpipe-{self.dataset}" + ("" if kind == "training" else f"-{kind}")

    def training_set(self, run_id: str) -> TrainingSetSpec:
        """The training set a model was trained on, from its run's parameters."""
        params = self.client.get_run(run_id).data.params
        return TrainingSetSpec(
            dataset=params["dataset"],
            feature_service=params["feature_service"],
            cutoff=datetime.fromisoformat(params["cutoff"]),
            days=int(params["days"]),
            holdout_days=int(params["holdout_days"]),
        )

    def experiment_id(self, kind: str = "training") -> str:
        """The id of the dataset's training or monitoring experiment, created when missing."""
        if kind not in self._experiments:
            from mlflow.exceptions import MlflowException

            name = self.experiment_name(kind)
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    self._experiments[kind] = self.client.create_experiment(name, artifact_location=self.artifacts_uri)
                except MlflowException as error:  # created meanwhile by another task
                    if error.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    self._experiments[kind] = self.client.get_experiment_by_name(name).experiment_id
            else:
                self._experiments[kind] = experiment.experiment_id
        return self._experiments[kind]

    def artifact_link(self, run_id: str, path: str | None = None) -> str:
        """A link that opens the run (or one of its artifacts) in the MLflow UI."""
        experiment_id = self.client.get_run(run_id).info.experiment_id
        return artifacts.ui_link(self.ui_url, experiment_id, run_id, path)


_CONNECTED: dict[tuple[str, ...], Tracking] = {}


def connect(settings: Settings | None = None) -> Tracking:
    """The process's connection to the tracking store of ``settings``: checked and made once, then reused."""
    settings = settings or Settings.from_env()
    uri = settings.mlflow_tracking_uri
    local = settings.mlflow_scheme not in ("http", "https", "databricks", "databricks-uc", "uc")
    key = (
        uri,
        settings.mlflow_credentials,
        settings.mlflow_ui_url,
        settings.mlflow_artifacts_uri,
        settings.dataset_name,
    )
    tracking = _CONNECTED.get(key)
    if tracking is None:
        if uri.startswith("sqlite:///"):
            settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
        elif settings.mlflow_scheme in ("http", "https"):
            check_tracking_server(uri)
        elif settings.mlflow_scheme in ("postgresql", "mysql", "mssql"):
            check_tracking_database(uri)
        from mlflow import MlflowClient

        tracking = Tracking(
            uri=uri,
            client=MlflowClient(tracking_uri=uri, registry_uri=uri),
            ui_url=settings.mlflow_ui_url,
            dataset=settings.dataset.name,  # the spec's name, also when CTPIPE_DATASET is an import path
            # Local stores get an explicit artifact root; a tracking server decides its own.
            artifacts_uri=settings.mlflow_artifacts_uri if local else None,
        )
        _check_access(tracking, settings)
        _CONNECTED[key] = tracking
    _use_for_fluent_api(uri)
    return tracking


def _use_for_fluent_api(uri: str) -> None:
    import mlflow

    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)
    if mlflow.get_registry_uri() != uri:
        mlflow.set_registry_uri(uri)


def _check_access(tracking: Tracking, settings: Settings) -> None:
    from mlflow.exceptions import MlflowException

    try:
        tracking.client.search_experiments(max_results=1)
    except MlflowException as error:
        status = error.get_http_status_code()
        if status not in (401, 403):
            raise
        user = settings.mlflow_username
        raise TrackingAuthError(
            f"MLflow tracking server {VARIABLE}={hide_passwords(tracking.uri)!r} refused the request ({status} "
            f"{'Unauthorized' if status == 401 else 'Forbidden'}) as "
            f"{f'user {user!r}' if user else 'an anonymous client'}: set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to a user of the server with access"
        ) from None


def check_tracking_server(uri: str) -> None:
    """Ask an http(s) tracking server's ``/health`` once, without retries; raise ``ServiceUnavailableError``.

    Any answer below 500 counts as reachable: 401 and 403 come from a server that wants credentials
    (MLflow's basic-auth app leaves ``/health`` open, a proxy in front may not), 404 from a server
    whose path MLflow's own requests will then report. TLS is checked as MLflow's client checks it.
    """
    import requests
    from mlflow.environment_variables import (
        MLFLOW_TRACKING_CLIENT_CERT_PATH,
        MLFLOW_TRACKING_INSECURE_TLS,
        MLFLOW_TRACKING_SERVER_CERT_PATH,
    )

    service = Service("MLflow tracking server", hide_passwords(uri), VARIABLE, timeout=HEALTH_TIMEOUT[0])
    verify = False if MLFLOW_TRACKING_INSECURE_TLS.get() else (MLFLOW_TRACKING_SERVER_CERT_PATH.get() or True)

    def healthy() -> str | None:
        response = requests.get(
            uri.rstrip("/") + "/health",
            timeout=HEALTH_TIMEOUT,
            verify=verify,
            cert=MLFLOW_TRACKING_CLIENT_CERT_PATH.get(),
        )
        if response.status_code >= 500:
            return f"GET /health answered {response.status_code} {response.reason}".rstrip()
        return None

    service.probe(healthy, errors=(requests.RequestException,))


def check_tracking_database(uri: str) -> None:
    """Connect once to a database tracking store; raise ``ServiceUnavailableError`` if it does not answer.

    MLflow retries a database that does not answer ten times, for about a hundred seconds.
    """
    import sqlalchemy as sa

    try:
        url = sa.make_url(uri)
        timeout = url.get_backend_name() in ("postgresql", "mysql") and "connect_timeout" not in url.query
        engine = sa.create_engine(
            url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 10} if timeout else {}
        )
    except (sa.exc.ArgumentError, ImportError, ValueError) as error:
        raise Settings.error(VARIABLE, uri, f"cannot be used: {error}") from None
    service = Service(
        "MLflow tracking database",
        hide_passwords(uri),
        VARIABLE,
        timeout=10,
        secrets=(url.password,) if url.password else (),
    )

    def connects() -> None:
        with engine.connect():
            pass

    try:
        service.probe(connects, errors=(sa.exc.DBAPIError,))
    finally:
        engine.dispose()


def load_model(tracking: Tracking, model_uri: str) -> Any:
    """A registered model (``models:/name/version``) or a run's model, as an MLflow pyfunc."""
    import mlflow

    _use_for_fluent_api(tracking.uri)
    return mlflow.pyfunc.load_model(model_uri)
