"""MLflow: where runs and models go. Tracking URI from the environment, a SQLite file by default.

A tracking server (or database) is asked once, briefly, whether it is there before
MLflow's client talks to it: that client retries a dead server for minutes with
nothing but connection warnings. An ``MLFLOW_TRACKING_URI`` MLflow cannot use
raises ``TrackingConfigError``, a server that does not answer
``TrackingUnavailableError``; each names the variable and the reason, with any
password in the URI hidden.
"""

from __future__ import annotations

import os
import socket
from importlib.metadata import entry_points
from urllib.parse import urlsplit

from ctpipe.datasets import get_dataset
from ctpipe.settings import ConfigurationError, Settings, hide_passwords

VARIABLE = "MLFLOW_TRACKING_URI"
# Seconds to wait for a tracking server to connect, then to answer its health check.
HEALTH_TIMEOUT = (5.0, 10.0)
# Tracking-store schemes MLflow itself provides (databases also as ``scheme+driver``); plugins add theirs.
BUILTIN_SCHEMES = {
    "http",
    "https",
    "databricks",
    "databricks-uc",
    "uc",
    "file",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
}
_EXAMPLES = "a tracking server is http(s)://host:port, a local store sqlite:///path/to/mlflow.db"


class TrackingConfigError(ConfigurationError):
    """``MLFLOW_TRACKING_URI`` is not a URI MLflow can use: a deployment mistake that no retry fixes."""


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server (or the database MLflow tracks in) does not answer."""


class TrackingAuthError(ConfigurationError):
    """The tracking server answers but refuses these credentials (or their absence): fix the settings."""


def experiment_name(kind: str = "training") -> str:
    suffix = "" if kind == "training" else f"-{kind}"
    return f"ctpipe-{get_dataset().name}{suffix}"


def check_tracking_uri(uri: str) -> str:
    """The scheme of ``uri`` without its driver (``postgresql+psycopg`` -> ``postgresql``).

    Raises ``TrackingConfigError`` unless ``uri`` is a URI MLflow has a tracking store for.

    A value without a scheme is refused too: MLflow would take it for a folder (``host:5000`` included)
    and use its file store, which MLflow 3 no longer accepts.
    """
    shown = f"{VARIABLE}={hide_passwords(uri)!r}"
    try:
        parts = urlsplit(uri)
        port = parts.port  # parsed lazily: a port that is not a number raises here
    except ValueError as error:
        raise TrackingConfigError(f"{shown} is malformed ({error}); {_EXAMPLES}") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise TrackingConfigError(f"{shown} is not a URI, it has no scheme; {_EXAMPLES}")
    if scheme.split("+", 1)[0] not in BUILTIN_SCHEMES and scheme not in _plugin_schemes():
        raise TrackingConfigError(f"{shown} has a scheme MLflow does not support ({scheme!r}); {_EXAMPLES}")
    if scheme in ("http", "https") and (not parts.hostname or port == 0):
        raise TrackingConfigError(f"{shown} names no host and port to reach; {_EXAMPLES}")
    return scheme.split("+", 1)[0]


def _plugin_schemes() -> set[str]:
    return {entry.name for entry in entry_points(group="mlflow.tracking_store")}


def check_tracking_server(uri: str) -> None:
    """Ask an http(s) tracking server's ``/health`` once, without retries; raise ``TrackingUnavailableError``.

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

    url = uri.rstrip("/") + "/health"
    shown = f"MLflow tracking server {VARIABLE}={hide_passwords(uri)!r}"
    verify = False if MLFLOW_TRACKING_INSECURE_TLS.get() else (MLFLOW_TRACKING_SERVER_CERT_PATH.get() or True)
    try:
        response = requests.get(url, timeout=HEALTH_TIMEOUT, verify=verify, cert=MLFLOW_TRACKING_CLIENT_CERT_PATH.get())
    except requests.RequestException as error:
        raise TrackingUnavailableError(f"{shown} is unreachable: {_reason(error, urlsplit(uri).hostname)}") from None
    if response.status_code >= 500:
        raise TrackingUnavailableError(
            f"{shown} is unavailable: GET /health answered {response.status_code} {response.reason}".rstrip()
        )


def check_tracking_database(uri: str) -> None:
    """Connect once to a database tracking store; raise ``TrackingUnavailableError`` if it does not answer.

    MLflow retries a database that does not answer ten times, for about a hundred seconds.
    """
    import sqlalchemy as sa

    shown = f"MLflow tracking database {VARIABLE}={hide_passwords(uri)!r}"
    try:
        url = sa.make_url(uri)
        timeout = url.get_backend_name() in ("postgresql", "mysql") and "connect_timeout" not in url.query
        engine = sa.create_engine(
            url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 10} if timeout else {}
        )
    except (sa.exc.ArgumentError, ImportError, ValueError) as error:
        raise TrackingConfigError(f"{shown} cannot be used: {error}") from None
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as error:
        reason = " ".join(" ".join(str(error.orig or error).strip().splitlines()[:1]).split())
        if url.password:
            reason = reason.replace(url.password, "***")
        raise TrackingUnavailableError(f"{shown} is unreachable: {reason}") from None
    finally:
        engine.dispose()


def _reason(error: Exception, host: str | None) -> str:
    """The cause of a failed request in a few words, from the innermost error urllib3 wrapped."""
    import requests

    if isinstance(error, requests.Timeout):
        return f"no answer within {HEALTH_TIMEOUT[0]:g} s (connect) / {HEALTH_TIMEOUT[1]:g} s (read)"
    if isinstance(error, requests.exceptions.SSLError):
        return f"TLS failed: {_innermost(error)}"
    cause = _innermost(error)
    if isinstance(cause, socket.gaierror):
        return f"host {host!r} does not resolve ({cause.strerror or cause})"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[:1].lower() + cause.strerror[1:]
    return str(cause)


def _innermost(error: BaseException) -> BaseException:
    seen = {id(error)}
    while True:
        inner = error.__cause__ or getattr(error, "reason", None) or next(iter(error.args), None)
        if not isinstance(inner, BaseException) or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def configure(settings: Settings | None = None, kind: str = "training") -> str:
    """Point MLflow at the deployment's tracking server and make sure the experiment exists; returns its id."""
    settings = settings or Settings.from_env()
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        (settings.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    else:
        scheme = check_tracking_uri(uri)
        if scheme in ("http", "https"):
            check_tracking_server(uri)
        elif scheme in ("postgresql", "mysql", "mssql"):
            check_tracking_database(uri)

    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = experiment_name(kind)
    try:
        experiment = mlflow.get_experiment_by_name(name)
    except mlflow.exceptions.MlflowException as error:
        status = error.get_http_status_code()
        if status not in (401, 403):
            raise
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        raise TrackingAuthError(
            f"MLflow tracking server {VARIABLE}={hide_passwords(uri)!r} refused the request ({status} "
            f"{'Unauthorized' if status == 401 else 'Forbidden'}) as "
            f"{f'user {user!r}' if user else 'an anonymous client'}: set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to a user of the server with access"
        ) from None
    if experiment is None:
        # Local stores get an explicit artifact root; a tracking server decides its own.
        local = not uri.startswith(("http://", "https://", "databricks"))
        experiment_id = mlflow.create_experiment(
            name, artifact_location=settings.mlflow_artifacts_uri if local else None
        )
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
