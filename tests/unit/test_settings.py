"""One configuration layer: every variable the README lists has a default, and a bad value of any of them is a
``ConfigurationError`` that names the variable, shows the value (never a password) and says what is allowed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ctpipe.settings import PROJECT_ROOT, VARIABLES, ConfigurationError, Settings, TrainingPod

from ..conftest import ROOT

PASSWORD = "s3cret-Pw"


def readme_variables() -> list[str]:
    """The variables of the README's configuration table, in its order."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| variable | default | what |") : text.index("## Production mode")]
    return re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def a_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("settings") / "not-a-folder"
    path.write_text("")
    return str(path)


# One or more bad values for every variable: (value, what the message says is wrong).
BAD = {
    "AIRFLOW_HOME": [("{file}", "is a file, not a folder")],
    "CTPIPE_STATE_DIR": [("{file}", "is a file, not a folder")],
    "CTPIPE_LAKE_DIR": [("{file}", "is a file, not a folder")],
    "CTPIPE_FEATURES_DIR": [("{file}", "is a file, not a folder")],
    "CTPIPE_FEATURE_REPO": [("{empty}", "holds no feature_store.yaml")],
    "CTPIPE_DATASET": [
        ("wine_quality", "is neither a built-in dataset nor an import path"),
        ("my package:SPEC", "is neither a built-in dataset nor an import path"),
        ("no_such_package.datasets:SPEC", "cannot be loaded: cannot import 'no_such_package.datasets'"),
        ("ctpipe.datasets.lab_qc:NOPE", "cannot be loaded: module 'ctpipe.datasets.lab_qc' has no 'NOPE'"),
        ("ctpipe.datasets.lab_qc:DAY", "ctpipe.datasets.lab_qc:DAY is a timedelta, not a DatasetSpec"),
    ],
    "CTPIPE_SOURCE_CONN_ID": [("my source", "is not an Airflow connection id")],
    "CTPIPE_START_DATE": [("June 1st", "is not an ISO date")],
    "CTPIPE_MAX_BAD_ROW_SHARE": [
        ("abc", "is not a number"),
        ("20%", "is not a number"),
        ("1.5", "is above 1"),
        ("-0.1", "is below 0"),
        ("nan", "is not a finite number"),
    ],
    "CTPIPE_EXTRACT_CHUNK_ROWS": [("lots", "is not a whole number"), ("0", "is below 1"), ("2.5", "is not a whole")],
    "CTPIPE_GATE_CHUNK_ROWS": [("lots", "is not a whole number"), ("0", "is below 1"), ("2.5", "is not a whole")],
    "CTPIPE_KEY_INDEX_URL": [("keys.sqlite", "is not a database URL")],
    "CTPIPE_FEAST_PROJECT": [("_hidden", "starts with an underscore"), ("lab qc", "has characters other than")],
    "CTPIPE_FEAST_REGISTRY": [
        ("registry.db", "is not a mapping with a 'path' key"),
        (f'{{registry_type: sql, path: "postgresql://feast:{PASSWORD}@db/feast"', "does not parse as YAML"),
    ],
    "CTPIPE_FEAST_ONLINE_STORE": [
        ("redis:6379", "is not a mapping with a 'type' key"),
        (f"{{type: redis, connection_string: 'redis,password={PASSWORD}'}}", "is not host:port"),
    ],
    "CTPIPE_FEAST_OFFLINE_STORE": [("[file]", "is not a mapping with a 'type' key")],
    "MLFLOW_TRACKING_URI": [
        ("mlflow:5000", "has a scheme MLflow does not support ('mlflow')"),
        (f"http://ctpipe:{PASSWORD}@mlflow:port", "is malformed"),
        ("10.0.0.7:5000", "is not a URI, it has no scheme"),
    ],
    "MLFLOW_TRACKING_USERNAME": [("pipe line", "has spaces or a ':'")],
    "CTPIPE_MLFLOW_UI_URL": [("localhost:5000", "is not an http(s) URL with a host")],
    "CTPIPE_TRAINING_BACKEND": [("yarn", "is not one of them")],
    "CTPIPE_TRAINING_IMAGE": [("my image:1", "contains spaces")],
    "CTPIPE_TRAINING_CPU": [("two", "is not a CPU quantity")],
    "CTPIPE_TRAINING_MEMORY": [("4 GB", "is not a memory quantity")],
    "CTPIPE_TRAINING_GPUS": [("-1", "is below 0"), ("one", "is not a whole number")],
    "CTPIPE_TRAINING_SECRET": [("MLflow_Credentials", "is not a Kubernetes name")],
    "CTPIPE_TRAINING_PULL_POLICY": [("sometimes", "is not one of them")],
    "CTPIPE_K8S_NAMESPACE": [("ML Team", "is not a Kubernetes namespace")],
    "CTPIPE_K8S_SERVICE_ACCOUNT": [("trainer!", "is not a Kubernetes name")],
    "CTPIPE_K8S_STATE_PVC": [("lake claim", "is not a Kubernetes name")],
    "CTPIPE_PROMOTION_MIN_ROC_AUC": [("1.2", "is above 1"), ("good", "is not a number")],
    "CTPIPE_PROMOTION_MAX_BRIER": [("high", "is not a number")],
    "CTPIPE_PROMOTION_MARGIN": [("5%", "is not a number"), ("2", "is above 1")],
    "CTPIPE_DRIFT_MIN_EFFECT": [("-0.1", "is below 0")],
    "CTPIPE_DRIFT_FALSE_ALARM_RATE": [("0", "is at or below 0"), ("0.6", "is above 0.5")],
    "CTPIPE_DRIFT_FEATURE_SHARE": [("1.5", "is above 1"), ("0", "is at or below 0")],
    "CTPIPE_DRIFT_WINDOW_DAYS": [("0", "is below 1"), ("7.5", "is not a whole number")],
    "CTPIPE_DRIFT_COOLDOWN_DAYS": [("a week", "is not a whole number")],
    "CTPIPE_DRIFT_REFERENCE_ROWS": [("10", "is below 100")],
    "CTPIPE_DRIFT_MIN_NEW_LABELS": [("-1", "is below 0"), ("many", "is not a whole number")],
    "CTPIPE_EXPERIMENT_ALPHA": [("0", "is at or below 0"), ("0.9", "is above 0.5")],
    "CTPIPE_EXPERIMENT_MIXTURE_SD": [("0", "is at or below 0"), ("wide", "is not a number")],
    "CTPIPE_EXPERIMENT_MIN_PAIRS": [("1", "is below 2")],
    "CTPIPE_EXPERIMENT_HARM_MARGIN": [("-0.01", "is below 0")],
    "CTPIPE_EXPERIMENT_RAMP": [("0.5,0.25", "does not rise"), ("0.05,half", "holds a value that is not a number")],
    "CTPIPE_EXPERIMENT_STAGE_DAYS": [("0", "is below 1")],
    "CTPIPE_EXPERIMENT_HORIZON_DAYS": [("forever", "is not a whole number")],
    "CTPIPE_EXPERIMENT_MAX_ERROR_RATE": [("2", "is above 1")],
    "CTPIPE_EXPERIMENT_MAX_P99_MS": [("0", "is at or below 0")],
    "CTPIPE_LIVE_WINDOW_DAYS": [("0", "is below 1"), ("a week", "is not a whole number")],
    "CTPIPE_FEATURE_SERVER_WORKERS": [("0", "is below 1"), ("two", "is not a whole number")],
    "CTPIPE_FEATURE_SERVER_MAX_REQUESTS": [("-1", "is below 0"), ("many", "is not a whole number")],
    "CTPIPE_FEATURE_SERVER_MAX_REQUESTS_JITTER": [("-5", "is below 0"), ("1e3", "is not a whole number")],
    "CTPIPE_FEATURE_SERVER_ACCESS_LOG": [("yes", "is not true or false")],
    # A secret is never quoted back: the values hold the canary password, which the message must not show.
    **{
        name: [(f"{PASSWORD} x", "is shorter than 16 characters or has spaces"), (PASSWORD, "is shorter")]
        for name in ("CTPIPE_SERVING_TOKEN", "CTPIPE_SERVING_METRICS_TOKEN", "CTPIPE_SERVING_WEBHOOK_SECRET")
    },
    "CTPIPE_SERVING_MAX_EVENTS": [("0", "is below 1"), ("lots", "is not a whole number")],
    "CTPIPE_SERVING_POLL_SECONDS": [("0", "is at or below 0"), ("soon", "is not a number")],
    "CTPIPE_SERVING_CHALLENGER_POLICY": [("canary_50", "is not one of them")],
    "CTPIPE_PREDICTION_LOG_FLUSH_ROWS": [("0", "is below 1")],
    "CTPIPE_PREDICTION_LOG_FLUSH_SECONDS": [("-1", "is at or below 0"), ("inf", "is not a finite number")],
    "CTPIPE_ALERT_WEBHOOK_URL": [
        ("alerts.example.com/hook", "is not an http(s) URL with a host"),
        ("http://alerts:port/hook", "is malformed"),
    ],
    "CTPIPE_ALERT_WEBHOOK_SECRET": [
        (f"{PASSWORD} x", "is shorter than 16 characters or has spaces"),
        (f"{PASSWORD}-0123456789", "is set without CTPIPE_ALERT_WEBHOOK_URL"),
    ],
    "CTPIPE_ALERT_SLACK_WEBHOOK_URL": [
        (f"http://hooks.slack.com/services/T0/B0/{PASSWORD}", "is not an https URL with a host"),
        (f"hooks.slack.com/services/T0/B0/{PASSWORD}", "is not an https URL with a host"),
    ],
    "CTPIPE_ALERT_SMTP_HOST": [
        ("smtp://mail.example.com", "is not a host name or IP address"),
        ("mail.example.com", "is set without CTPIPE_ALERT_SMTP_TO"),
    ],
    "CTPIPE_ALERT_SMTP_PORT": [("0", "is below 1"), ("70000", "is above 65535"), ("smtp", "is not a whole number")],
    "CTPIPE_ALERT_SMTP_STARTTLS": [("yes", "is not true or false")],
    "CTPIPE_ALERT_SMTP_USER": [("ops team", "has spaces"), ("ctpipe", "is set without CTPIPE_ALERT_SMTP_PASSWORD")],
    "CTPIPE_ALERT_SMTP_PASSWORD": [(PASSWORD, "is set without CTPIPE_ALERT_SMTP_USER")],
    "CTPIPE_ALERT_SMTP_FROM": [("ctpipe", "is not an email address"), ("ctpipe@", "is not an email address")],
    "CTPIPE_ALERT_SMTP_TO": [
        ("ops@example.com; ml@example.com", "holds 'ops@example.com; ml@example.com', not an email address"),
        ("ops@example.com, ml", "holds 'ml', not an email address"),
        ("ops@example.com", "is set without CTPIPE_ALERT_SMTP_HOST"),
    ],
    "CTPIPE_ALERT_FILE": [("{empty}", "is a folder, not a file")],
    "CTPIPE_PUSHGATEWAY_URL": [
        ("pushgateway:9091", "is not an http(s) URL with a host"),
        ("tcp://pushgateway:9091", "is not an http(s) URL with a host"),
    ],
}
CASES = [(name, value, problem) for name, cases in BAD.items() for value, problem in cases]


def test_the_readme_lists_every_variable_and_every_variable_has_bad_values_here():
    listed = readme_variables()
    assert len(listed) == len(set(listed))
    # The source connection is Airflow's own variable; ctpipe reads it through Airflow (test_service_errors).
    assert set(listed) == set(VARIABLES) | {"AIRFLOW_CONN_CTPIPE_SOURCE"}
    assert set(BAD) == set(VARIABLES)


def test_the_readme_shows_each_variables_default():
    text = (ROOT / "README.md").read_text()
    for variable in VARIABLES.values():
        assert f"| `{variable.name}` | {variable.default} |" in text, variable.name


@pytest.mark.parametrize(("name", "value", "problem"), CASES, ids=[f"{n}={v}" for n, v, _ in CASES])
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(name, value, problem, a_file, tmp_path):
    value = value.replace("{file}", a_file).replace("{empty}", str(tmp_path))
    pod = name.startswith(("CTPIPE_TRAINING_", "CTPIPE_K8S_")) and name != "CTPIPE_TRAINING_BACKEND"
    settings = Settings({name: value, **({"CTPIPE_TRAINING_BACKEND": "kubernetes"} if pod else {})})
    with pytest.raises(ConfigurationError) as raised:
        settings.check_all()
    message = str(raised.value)
    assert message.startswith(f"{name}="), message
    assert problem in message
    assert message.endswith(f"; allowed: {VARIABLES[name].allowed}")
    assert PASSWORD not in message
    if PASSWORD not in value:
        assert repr(value) in message  # the value as given


def test_the_documented_defaults_are_the_ones_in_force():
    """A default is defined once, in code; the README's column must say the same."""
    settings = Settings({})
    in_force = {
        "CTPIPE_START_DATE": f"{settings.start_date:%Y-%m-%d}",
        "CTPIPE_MAX_BAD_ROW_SHARE": f"{settings.max_bad_row_share:g}",
        "CTPIPE_EXTRACT_CHUNK_ROWS": str(settings.extract_chunk_rows),
        "CTPIPE_GATE_CHUNK_ROWS": str(settings.gate_chunk_rows),
        "CTPIPE_TRAINING_CPU": TrainingPod().cpu,
        "CTPIPE_TRAINING_GPUS": str(TrainingPod().gpus),
        "CTPIPE_TRAINING_MEMORY": f"`{TrainingPod().memory}`",
        "CTPIPE_TRAINING_IMAGE": f"`{TrainingPod().image}`",
        "CTPIPE_PROMOTION_MIN_ROC_AUC": f"{settings.promotion.min_roc_auc:g}",
        "CTPIPE_PROMOTION_MAX_BRIER": f"{settings.promotion.max_brier:g}",
        "CTPIPE_PROMOTION_MARGIN": f"{settings.promotion.margin:g}",
        "CTPIPE_DRIFT_MIN_EFFECT": f"{settings.drift.min_effect:g}",
        "CTPIPE_DRIFT_FALSE_ALARM_RATE": f"{settings.drift.false_alarm_rate:g}",
        "CTPIPE_DRIFT_FEATURE_SHARE": f"{settings.drift.feature_share:g}",
        "CTPIPE_DRIFT_WINDOW_DAYS": str(settings.drift.window_days),
        "CTPIPE_DRIFT_COOLDOWN_DAYS": str(settings.drift.cooldown_days),
        "CTPIPE_DRIFT_REFERENCE_ROWS": str(settings.drift.reference_rows),
        "CTPIPE_DRIFT_MIN_NEW_LABELS": str(settings.drift.min_new_labels),
        "CTPIPE_EXPERIMENT_ALPHA": f"{settings.experiment.alpha:g}",
        "CTPIPE_EXPERIMENT_MIXTURE_SD": f"{settings.experiment.mixture_sd:g}",
        "CTPIPE_EXPERIMENT_MIN_PAIRS": str(settings.experiment.min_pairs),
        "CTPIPE_EXPERIMENT_HARM_MARGIN": f"{settings.experiment.harm_margin:g}",
        "CTPIPE_EXPERIMENT_RAMP": f"`{','.join(f'{s:g}' for s in settings.experiment.ramp)}`",
        "CTPIPE_EXPERIMENT_STAGE_DAYS": str(settings.experiment.stage_days),
        "CTPIPE_EXPERIMENT_HORIZON_DAYS": str(settings.experiment.horizon_days),
        "CTPIPE_EXPERIMENT_MAX_ERROR_RATE": f"{settings.experiment.max_error_rate:g}",
        "CTPIPE_EXPERIMENT_MAX_P99_MS": f"{settings.experiment.max_p99_latency_ms:g}",
        "CTPIPE_LIVE_WINDOW_DAYS": str(settings.live_window_days),
        "CTPIPE_FEATURE_SERVER_WORKERS": str(settings.feature_server.workers),
        "CTPIPE_FEATURE_SERVER_MAX_REQUESTS": str(settings.feature_server.max_requests),
        "CTPIPE_FEATURE_SERVER_MAX_REQUESTS_JITTER": str(settings.feature_server.max_requests_jitter),
        "CTPIPE_FEATURE_SERVER_ACCESS_LOG": f"`{str(settings.feature_server.access_log).lower()}`",
        "CTPIPE_SERVING_MAX_EVENTS": str(settings.serving.max_events),
        "CTPIPE_SERVING_POLL_SECONDS": f"{settings.serving.poll_seconds:g}",
        "CTPIPE_SERVING_CHALLENGER_POLICY": f"`{settings.serving.challenger_policy}`",
        "CTPIPE_PREDICTION_LOG_FLUSH_ROWS": str(settings.serving.log_flush_rows),
        "CTPIPE_PREDICTION_LOG_FLUSH_SECONDS": f"{settings.serving.log_flush_seconds:g}",
        "CTPIPE_ALERT_SMTP_PORT": str(settings.alerts.smtp_port),
        "CTPIPE_ALERT_SMTP_STARTTLS": f"`{str(settings.alerts.smtp_starttls).lower()}`",
        "CTPIPE_ALERT_SMTP_FROM": f"`{settings.alerts.smtp_from}`",
    }
    assert {name: VARIABLES[name].default for name in in_force} == in_force


def test_every_default_works_with_nothing_set():
    settings = Settings({})
    settings.check_all()
    assert settings.state_dir == PROJECT_ROOT / "state"
    assert settings.lake_dir == PROJECT_ROOT / "state" / "lake"
    assert settings.features_dir == PROJECT_ROOT / "state" / "lake" / "features"
    assert settings.feature_repo == PROJECT_ROOT / "feature_repo"
    assert settings.start_date == datetime(2026, 1, 1, tzinfo=UTC)
    assert (settings.max_bad_row_share, settings.extract_chunk_rows) == (0.2, 50_000)
    assert settings.key_index_url == f"sqlite:///{PROJECT_ROOT / 'state' / 'keys.sqlite'}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{PROJECT_ROOT / 'state' / 'mlflow' / 'mlflow.db'}"
    assert settings.mlflow_ui_url == "http://localhost:5000"
    assert settings.training_backend == "local" and settings.training_pod.image == "ctpipe-training:latest"
    assert settings.promotion.margin == 0.005 and settings.drift.window_days == 7
    assert settings.dataset.name == "lab_qc" and settings.source_conn_id == "ctpipe_source"
    assert settings.alerts.channels == ("file",)  # alerts go to a file in the state folder, no service needed
    assert settings.alerts.file == PROJECT_ROOT / "state" / "alerts" / "alerts.jsonl"
    assert settings.pushgateway_url is None  # the pipeline's gauges go to files, no service needed
    assert settings.metrics_dir == PROJECT_ROOT / "state" / "metrics"


def test_values_follow_the_environment(tmp_path):
    settings = Settings(
        {
            "AIRFLOW_HOME": str(tmp_path),
            "CTPIPE_START_DATE": "2025-06-01T02:00:00+02:00",
            "CTPIPE_MAX_BAD_ROW_SHARE": "0.05",
            "MLFLOW_TRACKING_URI": f"https://ctpipe:{PASSWORD}@mlflow.example:443/",
            "CTPIPE_PROMOTION_MARGIN": "-1",
            "CTPIPE_DRIFT_COOLDOWN_DAYS": "0",
        }
    )
    assert settings.state_dir == tmp_path / "state"  # under AIRFLOW_HOME when CTPIPE_STATE_DIR is unset
    assert settings.start_date == datetime(2025, 6, 1, tzinfo=UTC)
    assert settings.max_bad_row_share == 0.05
    assert settings.mlflow_ui_url == "https://mlflow.example:443"  # the server's own UI, without the login
    assert settings.promotion.margin == -1 and settings.drift.cooldown_days == 0
    assert Settings({"CTPIPE_MAX_BAD_ROW_SHARE": "  "}).max_bad_row_share == 0.2  # blank means unset


def test_a_dataset_is_found_by_its_import_path():
    from ctpipe.datasets.lab_qc import LAB_QC

    settings = Settings({"CTPIPE_DATASET": "ctpipe.datasets.lab_qc:LAB_QC"})
    assert settings.dataset is LAB_QC
    assert settings.resolved()["dataset_name"] == "ctpipe.datasets.lab_qc:LAB_QC"


def test_a_bad_value_fails_only_what_reads_it():
    settings = Settings({"CTPIPE_DRIFT_WINDOW_DAYS": "a week"})
    assert settings.max_bad_row_share == 0.2  # ingestion goes on
    with pytest.raises(ConfigurationError, match="CTPIPE_DRIFT_WINDOW_DAYS='a week' is not a whole number"):
        _ = settings.drift
    # The training pod's settings matter only when training runs as a pod.
    local = Settings({"CTPIPE_TRAINING_CPU": "two", "MLFLOW_TRACKING_URI": f"http://u:{PASSWORD}@mlflow:5000"})
    local.check_all()
    assert local.resolved()["training_pod"] == "not used: CTPIPE_TRAINING_BACKEND is local"
    assert PASSWORD not in str(local.resolved())


def test_the_command_line_checks_a_deployment(tmp_path):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "CTPIPE_STATE_DIR": str(tmp_path), "CTPIPE_MAX_BAD_ROW_SHARE": "0.1"}
    done = subprocess.run([sys.executable, "-m", "ctpipe.settings"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^max_bad_row_share +0\.1$", done.stdout, flags=re.MULTILINE)
    assert re.search(rf"^state_dir +{re.escape(str(tmp_path))}$", done.stdout, flags=re.MULTILINE)
    env["CTPIPE_MAX_BAD_ROW_SHARE"] = "20%"
    done = subprocess.run([sys.executable, "-m", "ctpipe.settings"], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"ConfigurationError: CTPIPE_MAX_BAD_ROW_SHARE='20%' is not a number; "
        f"allowed: {VARIABLES['CTPIPE_MAX_BAD_ROW_SHARE'].allowed}"
    )


def test_a_password_is_hidden_wherever_it_stands():
    uri = f"postgresql+psycopg://mlflow:{PASSWORD}@db:port/mlflow"
    with pytest.raises(ConfigurationError) as raised:
        _ = Settings({"MLFLOW_TRACKING_URI": uri}).mlflow_tracking_uri
    assert "postgresql+psycopg://mlflow:***@db:port/mlflow" in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_the_source_connection_variable_is_airflows_and_its_errors_name_it(monkeypatch):
    from ctpipe.source import engine_for_connection

    monkeypatch.setenv(
        "AIRFLOW_CONN_CTPIPE_SOURCE", f'{{"conn_type": "postgres", "password": "{PASSWORD}", "port": "x"}}'
    )
    with pytest.raises(ConfigurationError, match="AIRFLOW_CONN_CTPIPE_SOURCE has an invalid part") as raised:
        engine_for_connection("ctpipe_source")
    assert PASSWORD not in str(raised.value)


def test_a_feature_repo_path_must_hold_the_store_definition(tmp_path):
    (tmp_path / "feature_store.yaml").write_text("project: x\n")
    assert Settings({"CTPIPE_FEATURE_REPO": str(tmp_path)}).feature_repo == tmp_path
    assert Path(Settings({}).feature_repo / "feature_store.yaml").is_file()


def test_serving_tokens_are_read_but_never_shown():
    token, metrics = f"{PASSWORD}-serving-0123456789", f"{PASSWORD}-metrics-0123456789"
    settings = Settings({"CTPIPE_SERVING_TOKEN": token})
    assert settings.serving.login_required and settings.serving.metrics_token == token  # the default: the same
    settings = Settings({"CTPIPE_SERVING_TOKEN": token, "CTPIPE_SERVING_METRICS_TOKEN": metrics})
    assert (settings.serving.token, settings.serving.metrics_token) == (token, metrics)
    assert PASSWORD not in str(settings.resolved())
    assert not Settings({}).serving.login_required


def test_alert_channels_follow_the_settings_and_never_show_their_secrets(tmp_path):
    slack = f"https://hooks.slack.com/services/T0/B0/{PASSWORD}"
    settings = Settings(
        {
            "CTPIPE_ALERT_WEBHOOK_URL": "https://alerts.example.com/hooks/ctpipe/",
            "CTPIPE_ALERT_WEBHOOK_SECRET": f"{PASSWORD}-webhook-secret",
            "CTPIPE_ALERT_SLACK_WEBHOOK_URL": slack,
            "CTPIPE_ALERT_SMTP_HOST": "smtp.example.com",
            "CTPIPE_ALERT_SMTP_PORT": "2525",
            "CTPIPE_ALERT_SMTP_STARTTLS": "False",
            "CTPIPE_ALERT_SMTP_USER": "ctpipe",
            "CTPIPE_ALERT_SMTP_PASSWORD": f"{PASSWORD}-smtp",
            "CTPIPE_ALERT_SMTP_FROM": "ctpipe@example.com",
            "CTPIPE_ALERT_SMTP_TO": "ops@example.com, ml@example.com,",
            "CTPIPE_ALERT_FILE": "none",
        }
    )
    alerts = settings.alerts
    assert alerts.channels == ("webhook", "slack", "email")
    assert alerts.webhook_url == "https://alerts.example.com/hooks/ctpipe/"  # a webhook's address is kept as given
    assert (alerts.smtp_port, alerts.smtp_starttls) == (2525, False)
    assert alerts.smtp_to == ("ops@example.com", "ml@example.com")
    assert alerts.file is None
    assert PASSWORD not in repr(alerts) and "hooks.slack.com" not in repr(alerts)
    assert PASSWORD not in str(settings.resolved())
    assert Settings({"CTPIPE_ALERT_FILE": str(tmp_path / "a.jsonl")}).alerts.file == tmp_path / "a.jsonl"
