"""Alerts people receive: what went wrong or changed, with links to where to look, on every configured channel.

Five events alert: a task failed after its last try (``task_failed``), the validation gate
rejected an interval (``gate_failed``), drift asked for a new model (``retrain_requested``),
a version became champion (``promoted``) and a live canary was rolled back
(``canary_rolled_back``). An ``Alert`` carries a title, the cause, a link to the DAG run in
the Airflow UI and to the model version in the MLflow UI, and a few named fields.

``send`` delivers one to every channel ``Settings.alerts`` configures (``CTPIPE_ALERT_*``),
several at once: a generic webhook (the alert's JSON), a Slack incoming webhook, email
through SMTP, and a JSON-lines file, the embedded default (``<state>/alerts/alerts.jsonl``).
A channel that fails is logged with its name, its host and the problem, never with a
secret, a password or a webhook's path, and the others still get the alert. Sending never
raises: an alert must not fail the task that reports something.

**The webhook's signature.** With ``CTPIPE_ALERT_WEBHOOK_SECRET`` set, each POST carries

* ``X-Ctpipe-Timestamp``: the Unix time of sending, in whole seconds;
* ``X-Ctpipe-Signature``: ``sha256=`` and the hex HMAC-SHA256, keyed with the secret, of the
  timestamp, a ``.``, and the exact bytes of the body.

A receiver recomputes the HMAC over the body as received (before parsing it), compares in
constant time, and refuses a timestamp more than a few minutes old (a replayed request):
``verify_signature`` does exactly that.

No Airflow needed: the builders take records and plain values; ``failure_alert`` reads an
Airflow task context, and ``ctpipe.alert_notifier`` hands it one.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote, urlsplit

from ctpipe import artifacts
from ctpipe.records import DriftCheck, Promotion, Record, RetrainRequest, ValidationOutcome
from ctpipe.settings import Alerts, ConfigurationError, Settings, hide_passwords

if TYPE_CHECKING:
    from email.message import EmailMessage

log = logging.getLogger(__name__)

Event = Literal["task_failed", "gate_failed", "retrain_requested", "promoted", "canary_rolled_back"]
EVENTS: tuple[Event, ...] = ("task_failed", "gate_failed", "retrain_requested", "promoted", "canary_rolled_back")

SIGNATURE_HEADER = "X-Ctpipe-Signature"
TIMESTAMP_HEADER = "X-Ctpipe-Timestamp"
EVENT_HEADER = "X-Ctpipe-Event"
# How long a signed request stays valid for a receiver: older (or later) timestamps are replays.
SIGNATURE_TOLERANCE_SECONDS = 300
# Seconds to connect, and to wait for an answer, per try; a failed try is tried once more after a pause.
TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
RETRY_PAUSE_SECONDS = 1.0
# Airflow's own fallback for its links when ``[api] base_url`` is unset: ``make airflow`` serves the UI there.
DEFAULT_AIRFLOW_UI = "http://localhost:8080"
LONGEST_CAUSE = 1000  # characters of an exception's message in an alert


@dataclass(frozen=True)
class Alert(Record):
    """One thing a person should know, ready for any channel: ``to_dict()`` is the webhook's body."""

    event: Event
    title: str
    text: str  # the cause, or the reasons
    dag_run_url: str | None
    model_version_url: str | None
    fields: dict[str, str]  # dag_id, run_id, task_id, model, version...: what identifies it
    at: datetime

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown alert event {self.event!r}; one of {EVENTS}")
        if self.at.tzinfo is None:
            raise ValueError(f"an alert's time must be timezone-aware, got {self.at!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.fields.items()):
            raise ValueError(f"an alert's fields are text: {self.fields!r}")

    def links(self) -> dict[str, str]:
        """Label -> URL of each link the alert has."""
        named = {"Airflow run": self.dag_run_url, "MLflow model version": self.model_version_url}
        return {label: url for label, url in named.items() if url}

    def plain_text(self) -> str:
        """The alert as an email body or a log line would show it."""
        lines = [self.title, "", self.text, ""]
        lines += [f"{name}: {value}" for name, value in self.fields.items()]
        lines += ["", *(f"{label}: {url}" for label, url in self.links().items())] if self.links() else []
        lines += ["", f"at {self.at.isoformat()}"]
        return "\n".join(lines)


class TaskRef(Protocol):
    """Where an alert comes from: an Airflow task instance has these (the context's ``ti``)."""

    dag_id: str
    run_id: str
    task_id: str


class DeliveryError(RuntimeError):
    """A channel did not take the alert; the message says why, without secrets."""


# -- links ----------------------------------------------------------------------------------------


def airflow_ui_url() -> str:
    """Where people open the Airflow UI: Airflow's own ``[api] base_url`` (``AIRFLOW__API__BASE_URL``).

    Read through Airflow's configuration, as Airflow builds its own links (the task log link
    of its failure emails); unset, or without Airflow, it is Airflow's fallback, ``make airflow``'s address.
    """
    try:
        from airflow.sdk.configuration import conf
    except ImportError:
        return DEFAULT_AIRFLOW_UI
    return (conf.get("api", "base_url", fallback=None) or DEFAULT_AIRFLOW_UI).rstrip("/")


def run_link(airflow_url: str, dag_id: str, run_id: str, task_id: str | None = None) -> str:
    """A DAG run, or one task of it (its logs), in the Airflow 3 UI: the routes Airflow's own links use."""
    link = f"{airflow_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}"
    return f"{link}/tasks/{quote(task_id)}" if task_id else link


def model_version_link(settings: Settings, name: str, version: str | None) -> str | None:
    """The version's page in the MLflow UI the promotion evidence links point at (``CTPIPE_MLFLOW_UI_URL``)."""
    return artifacts.model_version_link(settings.mlflow_ui_url, name, version) if version else None


# -- building alerts from what the pipeline has -----------------------------------------------------


def _origin(ti: TaskRef | None, airflow_url: str | None) -> tuple[str | None, dict[str, str]]:
    """The run's link and the fields naming the task, when an Airflow task sends the alert."""
    if ti is None:
        return None, {}
    fields = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id}
    return run_link(airflow_url or airflow_ui_url(), ti.dag_id, ti.run_id), fields


def _now() -> datetime:
    return datetime.now(UTC)


def exception_line(error: BaseException | str | None) -> str:
    """The exception's type and the last line of its message, passwords hidden: the cause in one line."""
    if error is None:
        return "no exception was recorded (the task was stopped or marked failed)"
    if isinstance(error, str):
        return hide_passwords(error.strip().splitlines()[-1] if error.strip() else error)[:LONGEST_CAUSE]
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = f"{type(error).__name__}: {lines[-1]}" if lines else type(error).__name__
    return hide_passwords(line)[:LONGEST_CAUSE]


def task_failed(
    ti: TaskRef,
    error: BaseException | None,
    *,
    try_number: int | None = None,
    tries: int | None = None,
    airflow_url: str | None = None,
    redact: Callable[[str], str] = str,
) -> Alert:
    """A task failed for good: after its last try, or at once when no retry could help."""
    base = airflow_url or airflow_ui_url()
    url, fields = _origin(ti, base)
    if try_number is not None:
        fields["try"] = f"{try_number} of {tries}" if tries else str(try_number)
    fields["log"] = run_link(base, ti.dag_id, ti.run_id, ti.task_id)
    return Alert(
        event="task_failed",
        title=f"Task failed: {ti.dag_id}.{ti.task_id}",
        text=redact(exception_line(error)),
        dag_run_url=url,
        model_version_url=None,
        fields=fields,
        at=_now(),
    )


def gate_failed(outcome: ValidationOutcome, ti: TaskRef | None = None, *, airflow_url: str | None = None) -> Alert:
    """The validation gate rejected an interval: the cause is the report's own message."""
    url, fields = _origin(ti, airflow_url)
    fields = {
        "table": outcome.table,
        "interval": str(outcome.interval),
        "status": outcome.status,
        "rows": str(outcome.rows_in),
        "quarantined": str(outcome.rows_quarantined),
        "report": outcome.report_uri,
        **({"data_docs": outcome.data_docs_uri} if outcome.data_docs_uri else {}),
        **fields,
    }
    return Alert(
        event="gate_failed",
        title=f"Validation gate failed: {outcome.table} {outcome.interval}",
        text=outcome.message,
        dag_run_url=url,
        model_version_url=None,
        fields=fields,
        at=_now(),
    )


def retrain_requested(
    check: DriftCheck,
    request: RetrainRequest,
    model: str,
    settings: Settings,
    ti: TaskRef | None = None,
    *,
    airflow_url: str | None = None,
) -> Alert:
    """Drift was flagged and a new model asked for: the check's reason, the champion it was measured against."""
    url, fields = _origin(ti, airflow_url)
    drifted = ", ".join(check.drifted_columns)
    fields = {
        "model": model,
        "champion": check.champion_version or "none",
        "interval": str(check.interval),
        "cutoff": request.cutoff.isoformat(),
        **({"drifted_share": f"{check.drifted_share:.0%}"} if check.drifted_share is not None else {}),
        **({"drifted_columns": drifted[:500]} if drifted else {}),
        **({"drift_report": request.drift_report} if request.drift_report else {}),
        **fields,
    }
    return Alert(
        event="retrain_requested",
        title=f"Retraining requested: {model}",
        text=request.reason,
        dag_run_url=url,
        model_version_url=model_version_link(settings, model, check.champion_version),
        fields=fields,
        at=_now(),
    )


def promoted(
    promotion: Promotion, model: str, settings: Settings, ti: TaskRef | None = None, *, airflow_url: str | None = None
) -> Alert:
    """A version became champion; the one it replaced stays as previous_champion."""
    url, fields = _origin(ti, airflow_url)
    fields = {
        "model": model,
        "version": promotion.version,
        "from_version": promotion.previous_champion or "none (the first champion)",
        **fields,
    }
    return Alert(
        event="promoted",
        title=f"Promoted: {model} version {promotion.version} is champion",
        text=promotion.reason,
        dag_run_url=url,
        model_version_url=model_version_link(settings, model, promotion.version),
        fields=fields,
        at=_now(),
    )


def canary_rolled_back(
    model: str,
    version: str,
    reasons: Sequence[str],
    settings: Settings,
    ti: TaskRef | None = None,
    *,
    airflow_url: str | None = None,
) -> Alert:
    """A challenger serving live traffic was taken off it."""
    url, fields = _origin(ti, airflow_url)
    return Alert(
        event="canary_rolled_back",
        title=f"Canary rolled back: {model} version {version}",
        text="; ".join(reasons) or "rolled back",
        dag_run_url=url,
        model_version_url=model_version_link(settings, model, version),
        fields={"model": model, "version": version, **fields},
        at=_now(),
    )


def failure_alert(
    context: Mapping[str, Any], *, airflow_url: str | None = None, redact: Callable[[str], str] = str
) -> Alert:
    """The alert for an Airflow task's final failure: ``gate_failed`` when the gate rejected its interval.

    The gate's own exception carries the interval's outcome (the report); the DAG's task raises
    Airflow's fail-now exception from it, so the cause chain is searched.
    """
    ti = context["ti"]
    error = context.get("exception")
    outcome = _gate_outcome(error)
    if outcome is not None:
        return gate_failed(outcome, ti, airflow_url=airflow_url)
    max_tries = getattr(ti, "max_tries", None)
    return task_failed(
        ti,
        error,
        try_number=getattr(ti, "try_number", None),
        tries=max_tries + 1 if isinstance(max_tries, int) else None,
        airflow_url=airflow_url,
        redact=redact,
    )


def _gate_outcome(error: BaseException | None) -> ValidationOutcome | None:
    from ctpipe.validation import ValidationGateError

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ValidationGateError) and error.outcome is not None:
            return error.outcome
        error = error.__cause__ or error.__context__
    return None


# -- what the DAGs call: build and send, never raise ------------------------------------------------


def alert_retrain_requested(
    check: DriftCheck, request: RetrainRequest, settings: Settings | None = None, *, ti: TaskRef | None = None
) -> Alert | None:
    """Tell people that drift asked for a new model (the monitoring DAG's ``request_retraining``)."""
    return _build_and_send(
        "retrain_requested",
        settings,
        lambda s: retrain_requested(check, request, s.dataset.model_name, s, ti),
    )


def alert_promotion(
    promotion: Promotion, settings: Settings | None = None, *, model: str | None = None, ti: TaskRef | None = None
) -> Alert | None:
    """Tell people a version became champion (the training DAG's ``promote_champion``); a refused move is no news."""
    if not promotion.promoted:
        return None
    return _build_and_send("promoted", settings, lambda s: promoted(promotion, model or s.dataset.model_name, s, ti))


def alert_canary_rollback(
    model: str,
    version: str,
    reasons: Sequence[str],
    settings: Settings | None = None,
    *,
    ti: TaskRef | None = None,
) -> Alert | None:
    """Tell people a live challenger was rolled back, and why."""
    return _build_and_send(
        "canary_rolled_back", settings, lambda s: canary_rolled_back(model, version, tuple(reasons), s, ti)
    )


def alert_failure(
    context: Mapping[str, Any], settings: Settings | None = None, *, redact: Callable[[str], str] = str
) -> Alert | None:
    """Tell people an Airflow task failed for good (``ctpipe.alert_notifier``)."""
    return _build_and_send("task_failed", settings, lambda s: failure_alert(context, redact=redact))


def _build_and_send(event: str, settings: Settings | None, build: Callable[[Settings], Alert]) -> Alert | None:
    try:
        settings = settings or Settings.from_env()
        alert = build(settings)
    except Exception:  # an alert must never fail the work it reports on
        log.exception("could not build the %s alert", event)
        return None
    send(alert, settings)
    return alert


# -- channels ---------------------------------------------------------------------------------------


def send(alert: Alert, settings: Settings | None = None) -> dict[str, str | None]:
    """Deliver ``alert`` to every configured channel: channel -> None when delivered, else the problem.

    One channel failing does not stop the others; each failure is logged (channel, host,
    problem) without secrets. Never raises.
    """
    try:
        config = (settings or Settings.from_env()).alerts
    except ConfigurationError as error:  # its message never quotes a secret
        log.error("alert %s (%s) not sent: %s", alert.event, alert.title, error)
        return {"settings": str(error)}
    delivered: dict[str, str | None] = {}
    for channel in config.channels:
        try:
            CHANNELS[channel](alert, config)
        except Exception as error:  # any failure of one channel: the next still gets the alert
            problem = _scrub(str(error) if isinstance(error, DeliveryError) else _describe(error), config)
            log.error(
                "alert %s (%s) not sent to %s at %s: %s",
                alert.event,
                alert.title,
                channel,
                _where(channel, config),
                problem,
            )
            delivered[channel] = problem
        else:
            log.info("alert %s (%s) sent to %s at %s", alert.event, alert.title, channel, _where(channel, config))
            delivered[channel] = None
    return delivered


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _host(url: str | None) -> str:
    parts = urlsplit(url or "")
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _where(channel: str, config: Alerts) -> str:
    """Where a channel sends, as a log may show it: a webhook's host only (its path may be its secret)."""
    if channel == "webhook":
        return _host(config.webhook_url)
    if channel == "slack":
        return _host(config.slack_webhook_url)
    if channel == "email":
        return f"{config.smtp_host}:{config.smtp_port}"
    return str(config.file)


def _scrub(text: str, config: Alerts) -> str:
    """``text`` without anything secret the channels know: URLs, their paths and queries, secrets, passwords."""
    hidden: list[str] = []
    for url in (config.webhook_url, config.slack_webhook_url):
        if url:
            parts = urlsplit(url)
            hidden += [url, parts.path if len(parts.path) > 1 else "", parts.query]
    hidden += [config.webhook_secret or "", config.smtp_password or ""]
    for secret in sorted(filter(None, hidden), key=len, reverse=True):
        text = text.replace(secret, "***")
    return hide_passwords(text)


# -- the webhook ------------------------------------------------------------------------------------


def webhook_body(alert: Alert) -> bytes:
    """The exact bytes the webhook POSTs (and signs): the alert's JSON."""
    return json.dumps(alert.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed with ``secret`` over ``<timestamp>.<body>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signed: str | None,
    *,
    tolerance_seconds: float = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """What a receiver checks: the signature over the body as received, and a timestamp within the tolerance."""
    if not timestamp or not signed or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), signed)


def webhook_headers(alert: Alert, body: bytes, secret: str | None, now: float | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "ctpipe-alerts", EVENT_HEADER: alert.event}
    if secret:
        timestamp = str(int(time.time() if now is None else now))
        headers |= {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}
    return headers


def _post(url: str, body: bytes, headers: Mapping[str, str]) -> None:
    """POST once, and once more after a pause when the try failed in a way that may pass (no answer, 429, 5xx)."""
    import httpx

    timeout = httpx.Timeout(TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
    for attempt in (1, 2):
        try:
            response = httpx.post(url, content=body, headers=dict(headers), timeout=timeout)
        except httpx.TransportError as error:  # its message never holds the URL; the caller scrubs anyway
            problem, again = _describe(error), True
        else:
            if response.is_success:
                return
            problem = f"answered {response.status_code} {response.reason_phrase}".strip()
            again = response.status_code == 429 or response.status_code >= 500
        if not again or attempt == 2:
            raise DeliveryError(problem + (" (after a retry)" if attempt == 2 else ""))
        time.sleep(RETRY_PAUSE_SECONDS)


def _send_webhook(alert: Alert, config: Alerts) -> None:
    assert config.webhook_url is not None
    body = webhook_body(alert)
    _post(config.webhook_url, body, webhook_headers(alert, body, config.webhook_secret))


# -- Slack ------------------------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn takes &, < and > as markup: escaped, a cause's text stays text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: str, label: str) -> str:
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{_slack_escape(label)}>"


def slack_payload(alert: Alert) -> dict[str, Any]:
    """An incoming webhook's message: ``text`` (notifications, and clients without blocks) and ``blocks``."""
    links = " · ".join(slack_link(url, label) for label, url in alert.links().items())
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(alert.text)[:3000] or " "}},
    ]
    if alert.fields:
        fields = [
            {"type": "mrkdwn", "text": f"*{_slack_escape(name)}*\n{_slack_escape(value)}"[:2000]}
            for name, value in alert.fields.items()
        ]
        blocks += [{"type": "section", "fields": fields[i : i + 10]} for i in range(0, len(fields), 10)]
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": links}]})
    text = f"{_slack_escape(alert.title)}: {_slack_escape(alert.text)}"[:3000]
    return {"text": f"{text} {links}".strip(), "blocks": blocks}


def _send_slack(alert: Alert, config: Alerts) -> None:
    assert config.slack_webhook_url is not None
    body = json.dumps(slack_payload(alert)).encode()
    _post(config.slack_webhook_url, body, {"Content-Type": "application/json", "User-Agent": "ctpipe-alerts"})


# -- email ------------------------------------------------------------------------------------------


def email_message(alert: Alert, config: Alerts) -> EmailMessage:
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    message = EmailMessage()
    message["Subject"] = f"[ctpipe] {alert.title}"
    message["From"] = config.smtp_from
    message["To"] = ", ".join(config.smtp_to)
    message["Date"] = format_datetime(alert.at)
    message["Message-ID"] = make_msgid(domain=config.smtp_from.rpartition("@")[2] or "localhost")
    message["X-Ctpipe-Event"] = alert.event
    message.set_content(alert.plain_text())
    return message


def _send_email(alert: Alert, config: Alerts) -> None:
    import smtplib
    import ssl

    assert config.smtp_host is not None
    message = email_message(alert, config)
    for attempt in (1, 2):
        try:
            with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=TIMEOUT_SECONDS) as smtp:
                if config.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if config.smtp_user:
                    smtp.login(config.smtp_user, config.smtp_password or "")
                refused = smtp.send_message(message, to_addrs=list(config.smtp_to))
        except (
            smtplib.SMTPAuthenticationError,
            smtplib.SMTPRecipientsRefused,
            smtplib.SMTPNotSupportedError,
            ssl.SSLError,
        ) as error:  # a retry would meet the same answer
            raise DeliveryError(_describe(error)) from None
        except smtplib.SMTPResponseException as error:
            if error.smtp_code >= 500 or attempt == 2:
                raise DeliveryError(_describe(error)) from None
        except OSError as error:  # no connection, a timeout, a dropped one: worth one more try
            if attempt == 2:
                raise DeliveryError(f"{_describe(error)} (after a retry)") from None
        else:
            if refused:
                raise DeliveryError(f"the server refused {sorted(refused)}; the others got it")
            return
        time.sleep(RETRY_PAUSE_SECONDS)


# -- the file -------------------------------------------------------------------------------------


def _append_to_file(alert: Alert, config: Alerts) -> None:
    """One JSON line per alert, appended under a lock: tasks running side by side do not mix their lines."""
    path: Path = config.file  # type: ignore[assignment]
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(alert.to_dict(), sort_keys=True) + "\n").encode()
    with open(path, "ab") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            file.write(line)
            file.flush()
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def read_alerts(path: Path) -> list[Alert]:
    """The alerts a JSON-lines file holds, oldest first."""
    if not path.exists():
        return []
    return [Alert.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


CHANNELS: dict[str, Callable[[Alert, Alerts], None]] = {
    "webhook": _send_webhook,
    "slack": _send_slack,
    "email": _send_email,
    "file": _append_to_file,
}
