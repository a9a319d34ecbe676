"""An MLflow tracking server with authentication, as the README documents running it.

``mlflow server --app-name basic-auth``: the pipeline reaches it with its own user through
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``; without them, or with a wrong
password, it fails with one error that says which variables to set.
"""

from __future__ import annotations

import pytest

from ..conftest import free_port
from ..services import mlflow_server

ADMIN_PASSWORD = "admin-Pw-31d7e0"
PIPELINE_PASSWORD = "pipeline-Pw-92ab4c"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow_auth")
    config = root / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{root / 'users.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    auth = {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-secret",
    }
    with mlflow_server(
        f"sqlite:///{root / 'mlflow.db'}",
        root / "artifacts",
        free_port(),
        root / "server.log",
        extra_args=("--app-name", "basic-auth"),
        extra_env=auth,
    ) as url:
        with pytest.MonkeyPatch.context() as admin:
            admin.setenv("MLFLOW_TRACKING_USERNAME", "admin")
            admin.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
            from mlflow.server import get_app_client

            get_app_client("basic-auth", tracking_uri=url).create_user("ctpipe", PIPELINE_PASSWORD)
        yield url


def test_the_pipeline_user_tracks_runs_through_the_authenticated_server(auth_server, monkeypatch, state_dir):
    import mlflow

    from ctpipe.tracking import connect

    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ctpipe")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PIPELINE_PASSWORD)
    experiment_id = connect().experiment_id()
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("roc_auc", 0.8)
    assert mlflow.get_run(run.info.run_id).data.metrics == {"roc_auc": 0.8}


@pytest.mark.parametrize("password", [None, "wrong-password"])
def test_missing_or_wrong_credentials_are_one_clear_error(auth_server, monkeypatch, state_dir, password):
    from ctpipe.tracking import TrackingAuthError, connect

    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server)
    if password:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ctpipe")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(TrackingAuthError) as raised:
        connect()
    message = str(raised.value)
    assert "401" in message and "MLFLOW_TRACKING_USERNAME" in message and auth_server in message
    assert PIPELINE_PASSWORD not in message and "wrong-password" not in message
