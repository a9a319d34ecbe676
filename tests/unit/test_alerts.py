"""Alerts reach people: each channel against a real receiver on 127.0.0.1; the alerts built from the pipeline's records.

A local HTTP endpoint takes the webhook, an HTTPS one (a self-signed certificate the client is
told to trust) takes Slack's, aiosmtpd takes the email (plain, and over STARTTLS with a login),
and the JSON-lines file is read back. A channel that is down leaves the others their alert and
logs no secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from ctpipe import alerts
from ctpipe.alerts import Alert, failure_alert, read_alerts, send, verify_signature
from ctpipe.records import DriftCheck, Interval, Promotion, RetrainRequest
from ctpipe.settings import Settings

from ..alert_receivers import Certificate, receiving, self_signed_certificate, smtp_inbox
from ..conftest import free_port

SECRET = "w3bh00k-s3cret-0123456789"
PASSWORD = "smtp-Pa55word-canary"
SLACK_PATH = "/services/T0CTPIPE/B0ALERTS/xoxSlackSecretPath"
DAY = Interval(datetime(2026, 2, 14, tzinfo=UTC), datetime(2026, 2, 15, tzinfo=UTC))
AIRFLOW = "https://airflow.example.com"
MLFLOW = "https://mlflow.example.com"


@dataclass(frozen=True)
class TaskInstance:
    """What an Airflow task context's ``ti`` tells an alert (the integration test uses Airflow's own)."""

    dag_id: str = "ingest"
    run_id: str = "scheduled__2026-02-15T00:00:00+00:00"
    task_id: str = "validate_samples"
    try_number: int = 3
    max_tries: int = 2


def an_alert(**changes) -> Alert:
    values = {
        "event": "promoted",
        "title": "Promoted: lab_qc_failure version 7 is champion",
        "text": "promoted on review: roc_auc 0.81 >= 0.65; beats the champion by 0.02 > 0.005 & brier < 0.25",
        "dag_run_url": f"{AIRFLOW}/dags/training/runs/{quote('manual__2026-02-15T00:00:00+00:00')}",
        "model_version_url": f"{MLFLOW}/#/models/lab_qc_failure/versions/7",
        "fields": {"model": "lab_qc_failure", "version": "7", "from_version": "6"},
        "at": datetime(2026, 2, 15, 6, 30, tzinfo=UTC),
    }
    return Alert(**{**values, **changes})


def settings_for(tmp_path: Path, **variables: str) -> Settings:
    """Only the channels named: no alert file unless asked."""
    return Settings({"CTPIPE_STATE_DIR": str(tmp_path / "state"), "CTPIPE_ALERT_FILE": "none", **variables})


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Certificate:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusted(certificate, monkeypatch) -> Certificate:
    """HTTPS and STARTTLS clients of this process trust the test certificate, as they would a real CA's."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    return certificate


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def webhook():
    with receiving() as receiver:
        yield receiver


@pytest.fixture
def slack(trusted):
    with receiving(tls=trusted.server_context()) as receiver:
        yield receiver


@pytest.fixture
def inbox():
    with smtp_inbox() as server:
        yield server


# -- the webhook ----------------------------------------------------------------------------------


def test_the_webhook_gets_the_alerts_json_signed_with_the_shared_secret(tmp_path, webhook):
    alert = an_alert()
    settings = settings_for(
        tmp_path, CTPIPE_ALERT_WEBHOOK_URL=f"{webhook.url}/hooks/ctpipe", CTPIPE_ALERT_WEBHOOK_SECRET=SECRET
    )

    assert send(alert, settings) == {"webhook": None}

    [request] = webhook.requests
    assert request.path == "/hooks/ctpipe"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-ctpipe-event"] == "promoted"
    assert json.loads(request.body) == alert.to_dict()
    assert Alert.from_dict(json.loads(request.body)) == alert
    # The documented scheme, recomputed here from its description: HMAC-SHA256 over "<timestamp>.<body>".
    timestamp, signed = request.headers["x-ctpipe-timestamp"], request.headers["x-ctpipe-signature"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert signed == f"sha256={expected}"
    assert verify_signature(SECRET, request.body, timestamp, signed)
    assert not verify_signature("another-secret-0123456789", request.body, timestamp, signed)
    assert not verify_signature(SECRET, request.body.replace(b'"7"', b'"8"'), timestamp, signed)  # tampered
    assert not verify_signature(SECRET, request.body, timestamp, signed, now=int(timestamp) + 3600)  # replayed
    assert not verify_signature(SECRET, request.body, None, signed)


def test_an_unsigned_webhook_carries_no_signature(tmp_path, webhook):
    assert send(an_alert(), settings_for(tmp_path, CTPIPE_ALERT_WEBHOOK_URL=webhook.url)) == {"webhook": None}
    [request] = webhook.requests
    assert "x-ctpipe-signature" not in request.headers and "x-ctpipe-timestamp" not in request.headers


# -- Slack ----------------------------------------------------------------------------------------


def test_slack_gets_text_and_blocks_with_the_links_in_slacks_own_form(tmp_path, slack):
    alert = an_alert()
    settings = settings_for(tmp_path, CTPIPE_ALERT_SLACK_WEBHOOK_URL=f"{slack.url}{SLACK_PATH}")

    assert send(alert, settings) == {"slack": None}

    [request] = slack.requests
    assert request.path == SLACK_PATH
    payload = json.loads(request.body)
    run_link = f"<{alert.dag_run_url}|Airflow run>"
    version_link = f"<{alert.model_version_url}|MLflow model version>"
    assert run_link in payload["text"] and version_link in payload["text"]
    assert "&amp;" in payload["text"] and "&lt; 0.25" in payload["text"]  # the cause's own < and & stay text
    header, section, fields, links = payload["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": alert.title}}
    assert section["text"]["type"] == "mrkdwn" and "beats the champion" in section["text"]["text"]
    assert {"type": "mrkdwn", "text": "*version*\n7"} in fields["fields"]
    assert links["elements"][0]["text"] == f"{run_link} · {version_link}"


# -- email ----------------------------------------------------------------------------------------


def test_the_email_arrives_with_its_subject_body_and_every_recipient(tmp_path, inbox):
    alert = an_alert()
    settings = settings_for(
        tmp_path,
        CTPIPE_ALERT_SMTP_HOST=inbox.host,
        CTPIPE_ALERT_SMTP_PORT=str(inbox.port),
        CTPIPE_ALERT_SMTP_STARTTLS="false",
        CTPIPE_ALERT_SMTP_FROM="ctpipe@lab.example.com",
        CTPIPE_ALERT_SMTP_TO="ops@lab.example.com, ml-team@lab.example.com",
    )

    assert send(alert, settings) == {"email": None}

    [envelope] = inbox.envelopes
    assert envelope.mail_from == "ctpipe@lab.example.com"
    assert envelope.rcpt_tos == ["ops@lab.example.com", "ml-team@lab.example.com"]
    [message] = inbox.messages()
    assert message["Subject"] == f"[ctpipe] {alert.title}"
    assert message["To"] == "ops@lab.example.com, ml-team@lab.example.com"
    assert message["X-Ctpipe-Event"] == "promoted"
    body = message.get_content()
    assert alert.text in body
    assert f"Airflow run: {alert.dag_run_url}" in body
    assert f"MLflow model version: {alert.model_version_url}" in body
    assert "from_version: 6" in body


def test_the_email_goes_over_starttls_with_a_login_and_a_wrong_password_is_never_logged(tmp_path, trusted, caplog):
    variables = {
        "CTPIPE_ALERT_SMTP_STARTTLS": "true",
        "CTPIPE_ALERT_SMTP_USER": "ctpipe",
        "CTPIPE_ALERT_SMTP_TO": "ops@lab.example.com",
    }
    with smtp_inbox(tls=trusted.server_context(), login=("ctpipe", PASSWORD)) as server:
        where = {"CTPIPE_ALERT_SMTP_HOST": server.host, "CTPIPE_ALERT_SMTP_PORT": str(server.port)}
        settings = settings_for(tmp_path, **variables, **where, CTPIPE_ALERT_SMTP_PASSWORD=PASSWORD)
        assert send(an_alert(), settings) == {"email": None}
        assert server.logins == ["ctpipe"] and len(server.envelopes) == 1

        wrong = f"{PASSWORD}-wrong"
        with caplog.at_level(logging.INFO, logger="ctpipe.alerts"):
            delivered = send(an_alert(), settings_for(tmp_path, **variables, **where, CTPIPE_ALERT_SMTP_PASSWORD=wrong))
        assert "SMTPAuthenticationError" in delivered["email"]
        assert len(server.envelopes) == 1
    assert f"not sent to email at {server.host}:{server.port}" in caplog.text
    assert PASSWORD not in caplog.text and PASSWORD not in str(delivered)


# -- the file -------------------------------------------------------------------------------------


def test_the_embedded_default_appends_one_json_line_per_alert_in_the_state_folder(tmp_path):
    settings = Settings({"CTPIPE_STATE_DIR": str(tmp_path / "state")})
    first, second = an_alert(), an_alert(event="task_failed", title="Task failed: ingest.extract_samples")

    assert send(first, settings) == {"file": None}
    assert send(second, settings) == {"file": None}

    path = tmp_path / "state" / "alerts" / "alerts.jsonl"
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [first.to_dict(), second.to_dict()]
    assert read_alerts(path) == [first, second]


# -- failures ---------------------------------------------------------------------------------------


def test_a_channel_that_is_down_does_not_stop_the_others_and_no_log_line_holds_a_secret(tmp_path, slack, inbox, caplog):
    closed = free_port()  # nothing listens there
    token = "tok3n-in-the-query"
    slack.status = 404  # Slack's answer to a revoked webhook: not worth a retry
    settings = settings_for(
        tmp_path,
        CTPIPE_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{closed}/hooks/{SECRET}?token={token}",
        CTPIPE_ALERT_WEBHOOK_SECRET=SECRET,
        CTPIPE_ALERT_SLACK_WEBHOOK_URL=f"{slack.url}{SLACK_PATH}",
        CTPIPE_ALERT_SMTP_HOST=inbox.host,
        CTPIPE_ALERT_SMTP_PORT=str(inbox.port),
        CTPIPE_ALERT_SMTP_STARTTLS="false",
        CTPIPE_ALERT_SMTP_TO="ops@lab.example.com",
        CTPIPE_ALERT_FILE=str(tmp_path / "alerts.jsonl"),
    )
    alert = an_alert()

    with caplog.at_level(logging.INFO, logger="ctpipe.alerts"):
        delivered = send(alert, settings)

    assert delivered["email"] is None and delivered["file"] is None
    assert "ConnectError" in delivered["webhook"] and "after a retry" in delivered["webhook"]
    assert delivered["slack"] == "answered 404 Not Found"
    assert len(slack.requests) == 1  # a 4xx is final
    assert len(inbox.envelopes) == 1 and read_alerts(tmp_path / "alerts.jsonl") == [alert]
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert f"not sent to webhook at 127.0.0.1:{closed}: ConnectError" in failures[0]
    assert f"not sent to slack at {slack.url.removeprefix('https://')}: answered 404" in failures[1]
    for secret in (SECRET, token, SLACK_PATH, "xoxSlackSecretPath", "/hooks/"):
        assert secret not in caplog.text and secret not in str(delivered)


def test_a_server_error_is_tried_once_more_and_no_more(tmp_path, webhook):
    webhook.status = 503
    delivered = send(an_alert(), settings_for(tmp_path, CTPIPE_ALERT_WEBHOOK_URL=webhook.url))
    assert delivered == {"webhook": "answered 503 Service Unavailable (after a retry)"}
    assert len(webhook.requests) == 2


def test_malformed_alert_settings_are_logged_and_raise_nothing(tmp_path, caplog):
    settings = settings_for(tmp_path, CTPIPE_ALERT_SMTP_PASSWORD=PASSWORD)
    with caplog.at_level(logging.ERROR, logger="ctpipe.alerts"):
        delivered = send(an_alert(), settings)
    assert "CTPIPE_ALERT_SMTP_PASSWORD='***' is set without CTPIPE_ALERT_SMTP_USER" in delivered["settings"]
    assert "is set without CTPIPE_ALERT_SMTP_USER" in caplog.text and PASSWORD not in caplog.text


# -- what the pipeline has, as alerts ---------------------------------------------------------------


def real_gate_error(tmp_path: Path):
    """The validation gate's own exception, from the real gate on an interval with too many bad rows."""
    from ctpipe.datasets.lab_qc_generator import generate
    from ctpipe.datasets.synthetic import GeneratorConfig
    from ctpipe.key_index import KeyIndex
    from ctpipe.lake import Lake
    from ctpipe.validation import ValidationGateError, validate_partition

    from .sources import DATASET, raw_partition

    frame, _ = generate(GeneratorConfig(start=date(2026, 2, 14), days=1, rows_per_day=40, bad_row_share=0))
    assert len(frame) > 20
    frame.loc[:15, "a260_280"] = 9.9
    lake = Lake(tmp_path / "lake")
    uri = raw_partition(lake, DATASET.events, DAY, frame)
    keys = KeyIndex.from_url(f"sqlite:///{tmp_path / 'keys.sqlite'}")
    report = tmp_path / "reports" / f"{DAY.key}.json"
    try:
        validate_partition(DATASET.events, uri, DAY, lake, tmp_path / "gx", report, 0.2, keys=keys)
    except ValidationGateError as error:
        return error
    finally:
        keys.close()
    raise AssertionError("the gate passed an interval with 16 bad rows in a few dozen")


def raised_by_the_task(error: BaseException) -> BaseException:
    """``error`` as the ingest DAG's validate task raises it: Airflow's fail-now exception from the gate's own."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        try:
            raise error
        except type(error) as cause:
            raise AirflowFailException(str(cause)) from cause
    except AirflowFailException as raised:
        return raised


def test_a_task_failure_names_the_task_the_try_and_the_exceptions_last_line():
    ti = TaskInstance(dag_id="features", task_id="materialize", try_number=3, max_tries=2)
    error = RuntimeError("materializing failed\nredis://:hunter2-canary@redis:6379 refused the connection")

    alert = failure_alert({"ti": ti, "exception": error}, airflow_url=AIRFLOW)

    assert alert.event == "task_failed"
    assert alert.title == "Task failed: features.materialize"
    assert alert.text == "RuntimeError: redis://:***@redis:6379 refused the connection"  # passwords hidden
    run = f"{AIRFLOW}/dags/features/runs/{quote(ti.run_id)}"
    assert alert.dag_run_url == run
    assert alert.fields == {
        "dag_id": "features",
        "run_id": ti.run_id,
        "task_id": "materialize",
        "try": "3 of 3",
        "log": f"{run}/tasks/materialize",
    }
    assert alert.at.tzinfo is not None


def test_the_gate_failing_is_a_gate_alert_with_the_reports_cause(tmp_path):
    gate = real_gate_error(tmp_path)

    alert = failure_alert({"ti": TaskInstance(), "exception": raised_by_the_task(gate)}, airflow_url=AIRFLOW)

    assert alert.event == "gate_failed"
    assert alert.title == f"Validation gate failed: lab_samples {DAY}"
    report = json.loads(Path(gate.outcome.report_uri).read_text())
    assert alert.text == report["message"]
    assert re.search(r"16 of \d+ rows \(\d+\.\d%\) are bad, above the threshold of 20\.0%", alert.text)
    assert alert.fields["table"] == "lab_samples" and alert.fields["interval"] == str(DAY)
    assert alert.fields["status"] == "failed_threshold"
    assert alert.fields["quarantined"] == alert.fields["rows"] == str(report["rows_in"])  # all of it waits
    assert alert.fields["report"] == gate.outcome.report_uri
    assert alert.dag_run_url == f"{AIRFLOW}/dags/ingest/runs/{quote(TaskInstance().run_id)}"


def test_promotions_retrain_requests_and_rollbacks_link_to_the_model_version(tmp_path):
    settings = Settings({"CTPIPE_MLFLOW_UI_URL": MLFLOW, "CTPIPE_STATE_DIR": str(tmp_path / "state")})
    ti = TaskInstance(dag_id="training", task_id="promote_champion", run_id="manual__2026-02-15")
    promotion = Promotion(
        version="7", promoted=True, champion="7", previous_champion="6", reason="promoted on review: roc_auc 0.81"
    )

    alert = alerts.alert_promotion(promotion, settings, ti=ti)

    assert alert.event == "promoted" and alert.text == "promoted on review: roc_auc 0.81"
    assert alert.model_version_url == f"{MLFLOW}/#/models/lab_qc_failure/versions/7"
    assert alert.fields["from_version"] == "6" and alert.fields["version"] == "7"
    assert alert.dag_run_url.endswith("/dags/training/runs/manual__2026-02-15")
    refused = Promotion(version="8", promoted=False, champion="7", previous_champion="6", reason="champion changed")
    assert alerts.alert_promotion(refused, settings, ti=ti) is None  # nothing changed: no alert

    check = DriftCheck(
        interval=DAY,
        retrain=True,
        reason="3 of 9 inputs drifted (33% >= 20%)",
        champion_version="6",
        drifted_share=1 / 3,
        drifted_columns=("transit_hours", "storage_temp_c", "prediction"),
        report_uri="runs:/abc123/drift_report/20260214T000000Z_20260215T000000Z.html",
    )
    request = RetrainRequest(cutoff=DAY.end, reason=check.reason, drift_report=check.report_uri)
    alert = alerts.alert_retrain_requested(check, request, settings)
    assert (alert.event, alert.text) == ("retrain_requested", "3 of 9 inputs drifted (33% >= 20%)")
    assert alert.model_version_url == f"{MLFLOW}/#/models/lab_qc_failure/versions/6"  # the champion that drifted
    assert alert.fields["champion"] == "6" and alert.fields["drifted_share"] == "33%"
    assert alert.fields["drift_report"] == check.report_uri and alert.dag_run_url is None

    reasons = ("p99 latency 412 ms above 250 ms", "error rate 2.10% above the bound 1.00%")
    alert = alerts.alert_canary_rollback("lab_qc_failure", "8", reasons, settings)
    assert alert.event == "canary_rolled_back" and alert.title == "Canary rolled back: lab_qc_failure version 8"
    assert alert.text == "; ".join(reasons)
    assert alert.model_version_url == f"{MLFLOW}/#/models/lab_qc_failure/versions/8"

    written = read_alerts(settings.alerts.file)  # each went to the embedded default's file
    assert [a.event for a in written] == ["promoted", "retrain_requested", "canary_rolled_back"]


def test_the_airflow_link_follows_airflows_own_base_url(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.lab.example.com/")
    assert alerts.airflow_ui_url() == "https://airflow.lab.example.com"
    monkeypatch.delenv("AIRFLOW__API__BASE_URL")
    assert alerts.airflow_ui_url() == "http://localhost:8080"  # Airflow's own fallback: make airflow
    assert alerts.run_link(AIRFLOW, "ingest", "manual__2026-02-15T00:00:00+00:00") == (
        f"{AIRFLOW}/dags/ingest/runs/manual__2026-02-15T00%3A00%3A00%2B00%3A00"
    )


def test_an_alert_is_checked_where_it_is_made():
    with pytest.raises(ValueError, match="unknown alert event 'drifted'"):
        an_alert(event="drifted")
    with pytest.raises(ValueError, match="timezone-aware"):
        an_alert(at=datetime(2026, 2, 15))
