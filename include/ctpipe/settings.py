"""Every setting of a deployment, read and checked in this one module.

The embedded default needs no configuration: every value has a default that works on a
laptop with no services, rooted in one state folder (``<AIRFLOW_HOME or repo>/state``).
Production sets environment variables (``VARIABLES`` lists them all; the README's
configuration table is the same list). Nothing else in the package reads the
environment for the project's settings.

``Settings.from_env()`` takes a snapshot of the environment; each accessor parses and
checks its own variables when first asked, so a malformed value fails the task that
needs it, not every task. A missing, malformed or out-of-range value raises
``ConfigurationError`` naming the variable, the value (passwords hidden) and what is
allowed; the DAGs fail such a task at once, without retries, since no retry fixes a
setting. Messages quote settings only through ``hide_passwords``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ctpipe.datasets import DATASETS, get_dataset
from ctpipe.drift import DriftPolicy
from ctpipe.experiment import ExperimentPolicy
from ctpipe.promotion import PromotionPolicy

if TYPE_CHECKING:
    from ctpipe.datasets.spec import DatasetSpec

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ConfigurationError(ValueError):
    """A setting is missing, malformed or out of range: a deployment mistake that no retry fixes.

    The DAGs fail such a task at once instead of retrying it (``ctpipe.dag_policy.fail_fast_on_configuration_error``).
    """


def hide_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` and ``password=`` replaced by ``***``.

    For messages that quote a setting; it works on malformed values too. A password may
    hold ``/`` or an unescaped ``@``: everything up to the token's last ``@`` is hidden.
    """
    text = re.sub(r"(://[^/@:\s'\"]*:)[^\s'\",{}]*@", r"\1***@", text)
    return re.sub(r"(password=)[^,}'\"\s]+", r"\1***", text, flags=re.IGNORECASE)


@dataclass(frozen=True)
class Variable:
    """One environment variable the project reads: its default and what a valid value is, in words."""

    name: str
    default: str  # as the README shows it
    allowed: str


def _variables(*variables: Variable) -> dict[str, Variable]:
    return {v.name: v for v in variables}


_DNS_NAME = "a Kubernetes name: lowercase letters, digits, '-' and '.', at most 253 characters"
_YAML_STORE = "a one-line YAML mapping with a {key!r} key, e.g. {example}"
_STORE_EXAMPLES = {
    "CTPIPE_FEAST_REGISTRY": ("path", '{registry_type: sql, path: "postgresql+psycopg://feast@db:5432/feast"}'),
    "CTPIPE_FEAST_ONLINE_STORE": ("type", '{type: redis, connection_string: "redis:6379"}'),
    "CTPIPE_FEAST_OFFLINE_STORE": ("type", "{type: file}"),
}
# Every variable of the project, with its default as the README shows it.
VARIABLES = _variables(
    Variable("AIRFLOW_HOME", "the repository root (Makefile)", "a folder; the state folder defaults to its state/"),
    Variable("CTPIPE_STATE_DIR", "`state/` under `AIRFLOW_HOME`", "a folder path (created when needed)"),
    Variable("CTPIPE_LAKE_DIR", "`<state>/lake`", "a folder path (created when needed)"),
    Variable("CTPIPE_FEATURES_DIR", "`<lake>/features`", "a folder path: where the Feast file source reads"),
    Variable("CTPIPE_FEATURE_REPO", "`feature_repo/` of the checkout", "a folder holding feature_store.yaml"),
    Variable(
        "CTPIPE_DATASET",
        "`lab_qc`",
        f"one of {sorted(DATASETS)}, or the import path of a DatasetSpec: my_package.my_module:MY_SPEC",
    ),
    Variable("CTPIPE_SOURCE_CONN_ID", "`ctpipe_source`", "an Airflow connection id: letters, digits, '_', '-', '.'"),
    Variable("CTPIPE_START_DATE", "2026-01-01", "an ISO date like 2026-01-01 (UTC)"),
    Variable("CTPIPE_MAX_BAD_ROW_SHARE", "0.2", "a share between 0 and 1, e.g. 0.2"),
    Variable("CTPIPE_EXTRACT_CHUNK_ROWS", "50000", "a whole number of rows, at least 1"),
    Variable("CTPIPE_GATE_CHUNK_ROWS", "250000", "a whole number of rows, at least 1"),
    Variable(
        "CTPIPE_KEY_INDEX_URL",
        "SQLite in `<state>/keys.sqlite`",
        "a SQLAlchemy database URL, e.g. postgresql+psycopg://ctpipe@db:5432/ctpipe or sqlite:////path/keys.sqlite",
    ),
    Variable("CTPIPE_FEAST_PROJECT", "`ctpipe`", "letters, digits, '_' and '-', not starting with '_' or '-'"),
    *(
        Variable(name, default, _YAML_STORE.format(key=key, example=example))
        for (name, (key, example)), default in zip(
            _STORE_EXAMPLES.items(),
            ("file registry in `<state>/feast`", "SQLite in `<state>/feast`", "`{type: file}`"),
            strict=True,
        )
    ),
    Variable(
        "MLFLOW_TRACKING_URI",
        "SQLite in `<state>/mlflow`",
        "a tracking server http(s)://host:port, or a database store such as sqlite:///path/to/mlflow.db",
    ),
    Variable("MLFLOW_TRACKING_USERNAME", "none", "an MLflow user name, without spaces or ':'"),
    Variable("CTPIPE_MLFLOW_UI_URL", "the tracking server, else `http://localhost:5000`", "an http(s):// URL"),
    Variable("CTPIPE_TRAINING_BACKEND", "`local`", "'local' or 'kubernetes'"),
    Variable("CTPIPE_TRAINING_IMAGE", "`ctpipe-training:latest`", "a container image reference, without spaces"),
    Variable("CTPIPE_TRAINING_CPU", "2", "a Kubernetes CPU quantity such as 2, 1.5 or 500m"),
    Variable("CTPIPE_TRAINING_MEMORY", "`4Gi`", "a Kubernetes memory quantity such as 4Gi or 512Mi"),
    Variable("CTPIPE_TRAINING_GPUS", "0", "a whole number of GPUs, 0 or more"),
    Variable("CTPIPE_TRAINING_SECRET", "none", _DNS_NAME),
    Variable("CTPIPE_TRAINING_PULL_POLICY", "`IfNotPresent`", "Always, IfNotPresent or Never"),
    Variable("CTPIPE_K8S_NAMESPACE", "`ctpipe`", "a Kubernetes namespace: lowercase letters, digits and '-', ≤ 63"),
    Variable("CTPIPE_K8S_SERVICE_ACCOUNT", "`ctpipe-training`", _DNS_NAME),
    Variable("CTPIPE_K8S_STATE_PVC", "none", _DNS_NAME),
    Variable("CTPIPE_PROMOTION_MIN_ROC_AUC", "0.65", "a number between 0 and 1"),
    Variable("CTPIPE_PROMOTION_MAX_BRIER", "0.25", "a number between 0 and 1"),
    Variable("CTPIPE_PROMOTION_MARGIN", "0.005", "a number between -1 and 1 (the roc_auc gain to beat)"),
    Variable("CTPIPE_DRIFT_MIN_EFFECT", "0.1", "a distance, 0 or more"),
    Variable("CTPIPE_DRIFT_FALSE_ALARM_RATE", "0.01", "a share above 0 and at most 0.5"),
    Variable("CTPIPE_DRIFT_FEATURE_SHARE", "0.2", "a share above 0 and at most 1"),
    Variable("CTPIPE_DRIFT_WINDOW_DAYS", "7", "a whole number of days, at least 1"),
    Variable("CTPIPE_DRIFT_COOLDOWN_DAYS", "7", "a whole number of days, 0 or more"),
    Variable("CTPIPE_DRIFT_REFERENCE_ROWS", "5000", "a whole number of rows, at least 100"),
    Variable("CTPIPE_DRIFT_MIN_NEW_LABELS", "200", "a whole number of labelled events, 0 or more"),
    Variable("CTPIPE_EXPERIMENT_ALPHA", "0.05", "a chance above 0 and at most 0.5"),
    Variable("CTPIPE_EXPERIMENT_MIXTURE_SD", "0.01", "a Brier difference above 0, e.g. 0.01"),
    Variable("CTPIPE_EXPERIMENT_MIN_PAIRS", "200", "a whole number of labelled requests, at least 2"),
    Variable("CTPIPE_EXPERIMENT_HARM_MARGIN", "0", "a Brier difference, 0 or more"),
    Variable("CTPIPE_EXPERIMENT_RAMP", "`0.05,0.25,0.5`", "rising shares above 0 and at most 1, comma-separated"),
    Variable("CTPIPE_EXPERIMENT_STAGE_DAYS", "2", "a whole number of days, at least 1"),
    Variable("CTPIPE_EXPERIMENT_HORIZON_DAYS", "28", "a whole number of days, at least 1"),
    Variable("CTPIPE_EXPERIMENT_MAX_ERROR_RATE", "0.01", "a share between 0 and 1"),
    Variable("CTPIPE_EXPERIMENT_MAX_P99_MS", "250", "milliseconds, above 0"),
    Variable("CTPIPE_LIVE_WINDOW_DAYS", "7", "a whole number of days, at least 1"),
    Variable("CTPIPE_FEATURE_SERVER_WORKERS", "2", "a whole number of worker processes, at least 1"),
    Variable("CTPIPE_FEATURE_SERVER_MAX_REQUESTS", "10000", "a whole number of requests, 0 (never recycle) or more"),
    Variable("CTPIPE_FEATURE_SERVER_MAX_REQUESTS_JITTER", "500", "a whole number of requests, 0 or more"),
    Variable("CTPIPE_FEATURE_SERVER_ACCESS_LOG", "`false`", "true or false"),
    Variable("CTPIPE_SERVING_TOKEN", "none: no login", "a bearer token of at least 16 characters, without spaces"),
    Variable("CTPIPE_SERVING_METRICS_TOKEN", "`CTPIPE_SERVING_TOKEN`", "a bearer token of at least 16 characters"),
    Variable("CTPIPE_SERVING_MAX_EVENTS", "1000", "a whole number of events per request, at least 1"),
    Variable("CTPIPE_SERVING_POLL_SECONDS", "10", "seconds between looks at the registry, above 0"),
    Variable("CTPIPE_SERVING_CHALLENGER_POLICY", "`shadow`", "champion_only, shadow, canary or ab"),
    Variable("CTPIPE_SERVING_WEBHOOK_SECRET", "none: no webhook", "an HMAC secret of at least 16 characters"),
    Variable("CTPIPE_PREDICTION_LOG_FLUSH_ROWS", "1000", "a whole number of rows, at least 1"),
    Variable("CTPIPE_PREDICTION_LOG_FLUSH_SECONDS", "2", "seconds, above 0"),
    Variable("CTPIPE_ALERT_WEBHOOK_URL", "none", "an http(s):// URL that takes a JSON POST"),
    Variable(
        "CTPIPE_ALERT_WEBHOOK_SECRET",
        "none: unsigned",
        "an HMAC secret of at least 16 characters, without spaces; needs CTPIPE_ALERT_WEBHOOK_URL",
    ),
    Variable("CTPIPE_ALERT_SLACK_WEBHOOK_URL", "none", "an https:// URL: a Slack incoming webhook"),
    Variable("CTPIPE_ALERT_SMTP_HOST", "none: no email", "a host name or IP address; needs CTPIPE_ALERT_SMTP_TO"),
    Variable("CTPIPE_ALERT_SMTP_PORT", "587", "a TCP port, 1 to 65535"),
    Variable("CTPIPE_ALERT_SMTP_STARTTLS", "`true`", "true or false"),
    Variable(
        "CTPIPE_ALERT_SMTP_USER", "none: no login", "a user name without spaces; needs CTPIPE_ALERT_SMTP_PASSWORD"
    ),
    Variable("CTPIPE_ALERT_SMTP_PASSWORD", "none", "the SMTP user's password; needs CTPIPE_ALERT_SMTP_USER"),
    Variable("CTPIPE_ALERT_SMTP_FROM", "`ctpipe@localhost`", "an email address, e.g. ctpipe@example.com"),
    Variable(
        "CTPIPE_ALERT_SMTP_TO",
        "none",
        "email addresses, comma-separated, e.g. ops@example.com,ml@example.com; needs CTPIPE_ALERT_SMTP_HOST",
    ),
    Variable("CTPIPE_ALERT_FILE", "`<state>/alerts/alerts.jsonl`", "a file path, or none to write no file"),
    Variable(
        "CTPIPE_PUSHGATEWAY_URL",
        "none: `.prom` files in `<state>/metrics`",
        "an http(s):// URL of a Prometheus Pushgateway, e.g. http://pushgateway:9091",
    ),
)
# Variables whose values are secrets: an error about one never quotes it. A Slack webhook's URL is its secret.
SECRETS = (
    "CTPIPE_SERVING_TOKEN",
    "CTPIPE_SERVING_METRICS_TOKEN",
    "CTPIPE_SERVING_WEBHOOK_SECRET",
    "CTPIPE_ALERT_WEBHOOK_SECRET",
    "CTPIPE_ALERT_SLACK_WEBHOOK_URL",
    "CTPIPE_ALERT_SMTP_PASSWORD",
)
FEAST_VARIABLES = ("CTPIPE_FEAST_PROJECT", *_STORE_EXAMPLES)
# What a training pod needs to reach the same stores as the scheduler's workers. A value that carries a
# credential (a password in a URL, a Redis password=) is never copied into the pod spec: the pod gets it
# from the Kubernetes Secret named by CTPIPE_TRAINING_SECRET.
FORWARDED_TO_TRAINING = (
    "MLFLOW_TRACKING_URI",
    "CTPIPE_DATASET",
    "CTPIPE_STATE_DIR",
    "CTPIPE_LAKE_DIR",
    "CTPIPE_FEATURES_DIR",
    *FEAST_VARIABLES,
)
CREDENTIAL = re.compile(r"://[^/@\s]*:[^/@\s]+@|password=", re.IGNORECASE)
# Where a training pod mounts the state volume (the lake) when CTPIPE_K8S_STATE_PVC names its claim.
DEFAULT_STATE_MOUNT = "/opt/ctpipe/state"
# Rows the gate checks at a time: about 1 GB of peak memory, on this dataset, whatever the interval's size.
DEFAULT_GATE_CHUNK_ROWS = 250_000
# Tracking-store schemes MLflow itself provides (databases also as ``scheme+driver``); plugins add theirs.
MLFLOW_SCHEMES = {
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


# -- parsers: each raises ValueError with the problem in a few words ------------------------------


def _number(low: float, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("is not a finite number")
        if value < low or (low_open and value == low):
            raise ValueError(f"is {'at or ' if low_open else ''}below {low:g}")
        if high is not None and value > high:
            raise ValueError(f"is above {high:g}")
        return value

    return parse


def _whole(low: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("is not a whole number") from None
        if value < low:
            raise ValueError(f"is below {low}")
        return value

    return parse


def _rising_shares(raw: str) -> tuple[float, ...]:
    share = _number(0.0, 1.0, low_open=True)
    try:
        shares = tuple(share(part.strip()) for part in raw.split(","))
    except ValueError as error:
        raise ValueError(f"holds a value that {error}") from None
    if list(shares) != sorted(set(shares)):
        raise ValueError("does not rise")
    return shares


def _matching(pattern: str, problem: str = "is not allowed") -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def parse(raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise ValueError(problem)
        return raw

    return parse


IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def _dataset_reference(raw: str) -> str:
    if raw in DATASETS or IMPORT_PATH.fullmatch(raw):
        return raw
    raise ValueError("is neither a built-in dataset nor an import path")


def _one_of(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError("is not one of them")
        return raw

    return parse


def _folder(raw: str) -> Path:
    path = Path(raw).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError("is a file, not a folder")
    return path


def _iso_date(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError("is not an ISO date") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _database_url(raw: str) -> str:
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(raw)
    except sa.exc.ArgumentError:
        raise ValueError("is not a database URL") from None
    if not url.drivername:
        raise ValueError("names no database")
    return raw


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("is not an http(s) URL with a host")
    return raw.rstrip("/")


def _endpoint(*schemes: str) -> Callable[[str], str]:
    """A URL to POST to, kept as given: a webhook's path (even its trailing slash) is part of its address."""
    shown = "http(s)" if "http" in schemes else "/".join(schemes)

    def parse(raw: str) -> str:
        try:
            parts = urlsplit(raw.strip())
            parts.port  # noqa: B018  (parsed lazily: a port that is not a number raises here)
        except ValueError:
            raise ValueError("is malformed") from None
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"is not an {shown} URL with a host")
        return raw.strip()

    return parse


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise ValueError("is not true or false")
    return value == "true"


def _port(raw: str) -> int:
    port = _whole(1)(raw)
    if port > 65535:
        raise ValueError("is above 65535")
    return port


EMAIL_ADDRESS = re.compile(r"[^@\s,;<>\"']+@[^@\s,;<>\"']+")


def _email_address(raw: str) -> str:
    if not EMAIL_ADDRESS.fullmatch(raw.strip()):
        raise ValueError("is not an email address")
    return raw.strip()


def _email_addresses(raw: str) -> tuple[str, ...]:
    addresses = tuple(part.strip() for part in raw.split(",") if part.strip())
    for address in addresses:
        if not EMAIL_ADDRESS.fullmatch(address):
            raise ValueError(f"holds {address!r}, not an email address")
    return addresses


def _file_or_none(raw: str) -> Path | None:
    if raw.strip().lower() == "none":
        return None
    path = Path(raw).expanduser().resolve()
    if path.is_dir():
        raise ValueError("is a folder, not a file")
    return path


def _tracking_uri(raw: str) -> str:
    """A URI MLflow has a tracking store for. A value without a scheme is refused too: MLflow would take it
    for a folder (``host:5000`` included) and use its file store, which MLflow 3 no longer accepts."""
    try:
        parts = urlsplit(raw)
        port = parts.port  # parsed lazily: a port that is not a number raises here
    except ValueError as error:
        raise ValueError(f"is malformed ({error})") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise ValueError("is not a URI, it has no scheme")
    if scheme.split("+", 1)[0] not in MLFLOW_SCHEMES and scheme not in _plugin_schemes():
        raise ValueError(f"has a scheme MLflow does not support ({scheme!r})")
    if scheme in ("http", "https") and (not parts.hostname or port == 0):
        raise ValueError("names no host and port to reach")
    return raw


def _plugin_schemes() -> set[str]:
    from importlib.metadata import entry_points

    return {entry.name for entry in entry_points(group="mlflow.tracking_store")}


def _store_mapping(key: str) -> Callable[[str], dict[str, Any]]:
    def parse(raw: str) -> dict[str, Any]:
        import yaml

        try:
            # Parsed in place, as Feast parses it after expanding ${VAR} into feature_store.yaml.
            parsed = yaml.safe_load(f"value: {raw}")["value"]
        except yaml.YAMLError as error:
            raise ValueError(f"does not parse as YAML in feature_store.yaml ({str(error).splitlines()[0]})") from None
        if not isinstance(parsed, dict) or not parsed.get(key):
            raise ValueError(f"is not a mapping with a {key!r} key")
        return parsed

    return parse


def redis_nodes(online_store: Mapping[str, Any]) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The ``(host, port)`` nodes and the parameters of a Redis online store's ``connection_string``.

    Parsed as Feast parses it: ``host:port[,host:port...][,name=value...]``.
    """
    import json

    connection = str(online_store.get("connection_string", "localhost:6379"))
    nodes: list[tuple[str, int]] = []
    params: dict[str, Any] = {}
    for part in connection.split(","):
        if "=" in part:
            name, _, value = part.partition("=")
            try:
                params[name] = json.loads(value)
            except json.JSONDecodeError:
                params[name] = value
            continue
        host, _, port = part.partition(":")
        if not host or not port.isdigit():
            raise ValueError(f"has a connection_string that is not host:port[,name=value...] ({connection!r})")
        nodes.append((host, int(port)))
    if not nodes:
        raise ValueError(f"has a connection_string that names no host:port ({connection!r})")
    return nodes, params


def single_threaded_models() -> None:
    """Run this process's models on one OpenMP thread, unless the deployment set ``OMP_NUM_THREADS``.

    For the prediction service, before any model library is imported: it runs requests side
    by side, and a few rows' prediction spread over OpenMP threads (scikit-learn's gradient
    boosting, torch) spends more time starting the threads than predicting, and starves the
    other requests of cores. A library's own variable, set here for it, not a setting read.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def set_for_this_process(name: str, value: str) -> None:
    """Set a variable for this process and the programs it starts: the main job's own choice of a setting."""
    os.environ[name] = value


def strip_credentials(url: str) -> str:
    """``url`` without the ``user:password@`` part, for a link a person follows."""
    parts = urlsplit(url)
    if not parts.hostname:
        return url
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- the settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingPod:
    """Where and how a training pod runs (``CTPIPE_TRAINING_*``, ``CTPIPE_K8S_*``)."""

    image: str = "ctpipe-training:latest"
    namespace: str = "ctpipe"
    service_account: str = "ctpipe-training"
    image_pull_policy: str = "IfNotPresent"
    cpu: str = "2"
    memory: str = "4Gi"
    gpus: int = 0
    secret: str | None = None  # a Kubernetes Secret whose keys become env vars (MLflow credentials...)
    state_claim: str | None = None  # a PersistentVolumeClaim holding the state folder (the lake), shared
    env: dict[str, str] = field(default_factory=dict)  # the workers' store settings, minus credentials

    @property
    def state_mount(self) -> str:
        return self.env.get("CTPIPE_STATE_DIR", DEFAULT_STATE_MOUNT)


FILE_REGISTRY_STORE = "ctpipe.feast_registry.AtomicFileRegistryStore"  # a file registry rewritten atomically


@dataclass(frozen=True)
class FeatureServer:
    """Feast's HTTP feature server under gunicorn (``CTPIPE_FEATURE_SERVER_*``; ``ctpipe.feature_server``).

    Two workers, each recycled after ``max_requests`` (gunicorn's guard against slow leaks)
    plus up to ``max_requests_jitter``. A recycled worker is away for about 0.6 s (it drains,
    exits, and its replacement warms up) while the other answers: the first workers' limits
    are spread over one limit's span, so that under an even load their recycles stay half a
    limit apart. No access log: a line per request costs more than the read; the request
    counts and latencies are in the server's Prometheus metrics (``--metrics``).
    """

    workers: int = 2
    max_requests: int = 10_000
    max_requests_jitter: int = 500
    access_log: bool = False

    def arguments(self) -> list[str]:
        """``feast serve``'s options for this configuration."""
        found = ["--workers", str(self.workers), "--max-requests", str(self.max_requests)]
        found += ["--max-requests-jitter", str(self.max_requests_jitter)]
        return found + ([] if self.access_log else ["--no-access-log"])


@dataclass(frozen=True)
class Serving:
    """The prediction service (``CTPIPE_SERVING_*``, ``CTPIPE_PREDICTION_LOG_*``); tokens never shown."""

    token: str | None = field(default=None, repr=False)  # None: no login (the embedded default)
    metrics_token: str | None = field(default=None, repr=False)
    max_events: int = 1000
    poll_seconds: float = 10.0
    challenger_policy: str = "shadow"
    webhook_secret: str | None = field(default=None, repr=False)
    log_flush_rows: int = 1000
    log_flush_seconds: float = 2.0

    @property
    def login_required(self) -> bool:
        return self.token is not None


@dataclass(frozen=True)
class Alerts:
    """Where alerts go (``CTPIPE_ALERT_*``): every channel that is configured, several at once.

    Secrets are never shown, and neither are the webhook URLs: a Slack webhook's URL is its
    secret, and another webhook's may carry a token. ``channels`` says which are on.
    """

    channels: tuple[str, ...] = field(init=False, default=())  # webhook, slack, email, file: those configured
    webhook_url: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)  # None: the webhook's body is not signed
    slack_webhook_url: str | None = field(default=None, repr=False)
    smtp_host: str | None = None  # None: no email
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_user: str | None = None  # None: no login
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str = "ctpipe@localhost"
    smtp_to: tuple[str, ...] = ()
    file: Path | None = None  # one JSON line per alert; None: no file

    def __post_init__(self) -> None:
        configured = {
            "webhook": self.webhook_url,
            "slack": self.slack_webhook_url,
            "email": self.smtp_host,
            "file": self.file,
        }
        object.__setattr__(self, "channels", tuple(name for name, value in configured.items() if value))


class Settings:
    """Typed accessors over a snapshot of the environment; each checks its variables when first read."""

    def __init__(self, environ: Mapping[str, str]):
        self._environ = dict(environ)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(os.environ)

    # -- reading ----------------------------------------------------------------------------------

    def raw(self, name: str) -> str | None:
        """A variable's value as set, or None when it is unset or blank."""
        value = self._environ.get(name)
        return value if value is not None and value.strip() != "" else None

    def child_environment(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a program this one starts (the feature server): this one's, with ``overrides``."""
        return {**self._environ, **(overrides or {})}

    def _read(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as error:
            raise self.error(name, raw, str(error)) from None

    @staticmethod
    def error(name: str, raw: str, problem: str) -> ConfigurationError:
        """The one shape of a configuration error: the variable, its value, the problem and what is allowed."""
        variable = VARIABLES.get(name)
        allowed = f"; allowed: {variable.allowed}" if variable is not None else ""
        shown = "'***'" if name in SECRETS else repr(raw)
        return ConfigurationError(hide_passwords(f"{name}={shown} {problem}{allowed}"))

    # -- where state lives ------------------------------------------------------------------------

    @cached_property
    def state_dir(self) -> Path:
        home = self._read("AIRFLOW_HOME", _folder, PROJECT_ROOT)
        return self._read("CTPIPE_STATE_DIR", _folder, (home / "state").resolve())

    @cached_property
    def lake_dir(self) -> Path:
        return self._read("CTPIPE_LAKE_DIR", _folder, self.state_dir / "lake")

    @cached_property
    def features_dir(self) -> Path:
        """The feature partitions, Feast's file offline source: relative source paths resolve against it."""
        return self._read("CTPIPE_FEATURES_DIR", _folder, self.lake_dir / "features")

    @cached_property
    def feature_repo(self) -> Path:
        """The Feast definitions: ``feature_repo/`` of the checkout, or where an image installed them."""
        repo = self._read("CTPIPE_FEATURE_REPO", _folder, PROJECT_ROOT / "feature_repo")
        if not (repo / "feature_store.yaml").is_file():
            shown = self.raw("CTPIPE_FEATURE_REPO") or str(repo)
            raise self.error("CTPIPE_FEATURE_REPO", shown, "holds no feature_store.yaml")
        return repo

    @property
    def gx_dir(self) -> Path:
        return self.state_dir / "gx"

    @property
    def reports_dir(self) -> Path:
        return self.state_dir / "reports"

    @property
    def feast_dir(self) -> Path:
        return self.state_dir / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.state_dir / "mlflow"

    # -- the data -------------------------------------------------------------------------------

    @cached_property
    def dataset_name(self) -> str:
        """A built-in dataset's name, or the import path of a spec (``module:attribute``)."""
        return self._read("CTPIPE_DATASET", _dataset_reference, "lab_qc")

    @property
    def dataset(self) -> DatasetSpec:
        try:
            return get_dataset(self.dataset_name)
        except (ImportError, AttributeError, TypeError, ValueError) as error:
            raise self.error("CTPIPE_DATASET", self.dataset_name, f"cannot be loaded: {error}") from None

    @cached_property
    def source_conn_id(self) -> str:
        return self._read(
            "CTPIPE_SOURCE_CONN_ID", _matching(r"[\w.-]+", "is not an Airflow connection id"), "ctpipe_source"
        )

    def airflow_connection_value(self, conn_id: str) -> str | None:
        """The raw ``AIRFLOW_CONN_<ID>`` value, to explain why Airflow could not read it (never to show it)."""
        return self.raw(f"AIRFLOW_CONN_{conn_id.upper()}")

    @cached_property
    def start_date(self) -> datetime:
        """The first data interval the DAGs know of; catchup starts here."""
        return self._read("CTPIPE_START_DATE", _iso_date, datetime(2026, 1, 1, tzinfo=UTC))

    @cached_property
    def max_bad_row_share(self) -> float:
        """An interval fails validation when more than this share of its rows is bad."""
        return self._read("CTPIPE_MAX_BAD_ROW_SHARE", _number(0.0, 1.0), 0.2)

    @cached_property
    def extract_chunk_rows(self) -> int:
        """Rows fetched from the source per round trip; bounds extraction memory."""
        return self._read("CTPIPE_EXTRACT_CHUNK_ROWS", _whole(1), 50_000)

    @cached_property
    def gate_chunk_rows(self) -> int:
        """Rows the validation gate reads and checks at a time; bounds validation memory."""
        return self._read("CTPIPE_GATE_CHUNK_ROWS", _whole(1), DEFAULT_GATE_CHUNK_ROWS)

    @cached_property
    def key_index_url(self) -> str:
        """The database of the index of validated keys (``ctpipe.key_index``)."""
        return self._read("CTPIPE_KEY_INDEX_URL", _database_url, f"sqlite:///{self.state_dir / 'keys.sqlite'}")

    # -- Feast ----------------------------------------------------------------------------------

    @cached_property
    def feast_variables(self) -> dict[str, str]:
        """The values ``feature_repo/feature_store.yaml`` reads through ``${VAR}``, checked, defaults filled in.

        Each store variable holds a YAML mapping; production sets them to a SQL registry and a
        Redis online store. The project name scopes the registry's rows and suffixes every Redis
        key, so deployments (or test runs) sharing a server stay apart.
        """
        defaults = {
            "CTPIPE_FEAST_PROJECT": "ctpipe",
            "CTPIPE_FEAST_REGISTRY": f"{{registry_type: file, path: '{self.feast_dir / 'registry.db'}'}}",
            "CTPIPE_FEAST_ONLINE_STORE": f"{{type: sqlite, path: '{self.feast_dir / 'online_store.db'}'}}",
            "CTPIPE_FEAST_OFFLINE_STORE": "{type: file}",
        }
        values = {name: self.raw(name) or default for name, default in defaults.items()}
        stores = {name: self._read(name, _store_mapping(key), None) for name, (key, _) in _STORE_EXAMPLES.items()}
        online = stores["CTPIPE_FEAST_ONLINE_STORE"] or _store_mapping("type")(values["CTPIPE_FEAST_ONLINE_STORE"])
        if online.get("type") == "redis":
            self._read("CTPIPE_FEAST_ONLINE_STORE", lambda raw: redis_nodes(online), None)
        project = values["CTPIPE_FEAST_PROJECT"]
        if project[:1] in ("_", "-"):  # Feast's rule
            raise self.error("CTPIPE_FEAST_PROJECT", project, "starts with an underscore or hyphen")
        if not re.fullmatch(r"[\w-]+", project):
            raise self.error("CTPIPE_FEAST_PROJECT", project, "has characters other than letters, digits, '_' and '-'")
        if "-" in project and online.get("type") == "sqlite":  # SQLite's: the project names its tables
            raise self.error("CTPIPE_FEAST_PROJECT", project, "cannot contain hyphens with a SQLite online store")
        # Feast (since 0.64) refuses reads of a view while it is being materialized (feast#6780): the feature
        # server would fail every request during each day's materialization. Keep serving the values the
        # store holds, unless the registry's mapping says otherwise.
        registry = stores["CTPIPE_FEAST_REGISTRY"] or _store_mapping("path")(values["CTPIPE_FEAST_REGISTRY"])
        completed = {"serve_features_while_materializing": True}
        if registry.get("registry_type", "file") == "file" and "://" not in str(registry["path"]):
            # Feast rewrites a registry file in place; a feature server reading it meanwhile finds nothing.
            completed["registry_store_type"] = FILE_REGISTRY_STORE
        if set(completed) - set(registry):
            values["CTPIPE_FEAST_REGISTRY"] = json.dumps({**completed, **registry})
        return values

    @property
    def feast_project(self) -> str:
        return self.feast_variables["CTPIPE_FEAST_PROJECT"]

    @property
    def feast_online_store(self) -> dict[str, Any]:
        return _store_mapping("type")(self.feast_variables["CTPIPE_FEAST_ONLINE_STORE"])

    # -- MLflow ---------------------------------------------------------------------------------

    @cached_property
    def mlflow_tracking_uri(self) -> str:
        """An MLflow server in production; a SQLite file in the state folder by default."""
        return self._read("MLFLOW_TRACKING_URI", _tracking_uri, f"sqlite:///{self.mlflow_dir / 'mlflow.db'}")

    @property
    def mlflow_scheme(self) -> str:
        """The tracking URI's scheme without its driver (``postgresql+psycopg`` -> ``postgresql``)."""
        return urlsplit(self.mlflow_tracking_uri).scheme.lower().split("+", 1)[0]

    @property
    def mlflow_artifacts_uri(self) -> str:
        """Where a new experiment keeps artifacts when the tracking store is local."""
        return (self.mlflow_dir / "artifacts").as_uri()

    @cached_property
    def mlflow_username(self) -> str | None:
        """The MLflow user the pipeline logs in as (MLflow reads it, and its password, itself)."""
        return self._read("MLFLOW_TRACKING_USERNAME", _matching(r"[^\s:]+", "has spaces or a ':'"), None)

    @property
    def mlflow_credentials(self) -> str:
        """A fingerprint of the MLflow login (user and password), never the password itself."""
        import hashlib

        login = f"{self.mlflow_username or ''}:{self.raw('MLFLOW_TRACKING_PASSWORD') or ''}"  # MLflow reads it itself
        return hashlib.sha256(login.encode()).hexdigest()[:16]

    @cached_property
    def mlflow_ui_url(self) -> str:
        """Where a person opens the MLflow UI: the tracking server itself, or ``make mlflow`` on a laptop."""
        uri = self.mlflow_tracking_uri
        default = (
            strip_credentials(uri).rstrip("/") if self.mlflow_scheme in ("http", "https") else "http://localhost:5000"
        )
        return self._read("CTPIPE_MLFLOW_UI_URL", _http_url, default)

    # -- training -------------------------------------------------------------------------------

    @cached_property
    def training_backend(self) -> Literal["local", "kubernetes"]:
        return self._read("CTPIPE_TRAINING_BACKEND", _one_of("local", "kubernetes"), "local")  # type: ignore[return-value]

    @cached_property
    def training_pod(self) -> TrainingPod:
        dns = _matching(
            r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", "is not a Kubernetes name"
        )
        defaults = TrainingPod()
        secret = self._read("CTPIPE_TRAINING_SECRET", dns, None)
        return TrainingPod(
            image=self._read("CTPIPE_TRAINING_IMAGE", _matching(r"\S+", "contains spaces"), defaults.image),
            namespace=self._read(
                "CTPIPE_K8S_NAMESPACE",
                _matching(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", "is not a Kubernetes namespace"),
                defaults.namespace,
            ),
            service_account=self._read("CTPIPE_K8S_SERVICE_ACCOUNT", dns, defaults.service_account),
            image_pull_policy=self._read(
                "CTPIPE_TRAINING_PULL_POLICY", _one_of("Always", "IfNotPresent", "Never"), defaults.image_pull_policy
            ),
            cpu=self._read("CTPIPE_TRAINING_CPU", _matching(r"\d+(\.\d+)?m?", "is not a CPU quantity"), defaults.cpu),
            memory=self._read(
                "CTPIPE_TRAINING_MEMORY",
                _matching(r"\d+(\.\d+)?([KMGTPE]i?|[kmgtpe])?", "is not a memory quantity"),
                defaults.memory,
            ),
            gpus=self._read("CTPIPE_TRAINING_GPUS", _whole(0), defaults.gpus),
            secret=secret,
            state_claim=self._read("CTPIPE_K8S_STATE_PVC", dns, None),
            env=self._forwarded_to_training(secret),
        )

    def _forwarded_to_training(self, secret: str | None) -> dict[str, str]:
        """The workers' store settings for a training pod, checked, without those that carry credentials.

        Those must reach the pod through the Secret; without one the pod could not reach the
        stores, so that is an error naming the variables.
        """
        for checked in ("mlflow_tracking_uri", "feast_variables", "dataset_name"):  # what the pod will read
            getattr(self, checked)
        values = {name: self.raw(name) for name in FORWARDED_TO_TRAINING if self.raw(name)}
        with_credentials = sorted(name for name, value in values.items() if CREDENTIAL.search(value or ""))
        if with_credentials and not secret:
            raise ConfigurationError(
                f"{', '.join(with_credentials)} carry credentials, which are never written into a pod spec: "
                "put them in a Kubernetes Secret and name it in CTPIPE_TRAINING_SECRET (its keys become the pod's env)"
            )
        return {name: value for name, value in values.items() if name not in with_credentials and value}

    # -- policies -------------------------------------------------------------------------------

    @cached_property
    def promotion(self) -> PromotionPolicy:
        defaults = PromotionPolicy()
        return PromotionPolicy(
            min_roc_auc=self._read("CTPIPE_PROMOTION_MIN_ROC_AUC", _number(0.0, 1.0), defaults.min_roc_auc),
            max_brier=self._read("CTPIPE_PROMOTION_MAX_BRIER", _number(0.0, 1.0), defaults.max_brier),
            margin=self._read("CTPIPE_PROMOTION_MARGIN", _number(-1.0, 1.0), defaults.margin),
        )

    @cached_property
    def drift(self) -> DriftPolicy:
        defaults = DriftPolicy()
        return DriftPolicy(
            min_effect=self._read("CTPIPE_DRIFT_MIN_EFFECT", _number(0.0), defaults.min_effect),
            false_alarm_rate=self._read(
                "CTPIPE_DRIFT_FALSE_ALARM_RATE", _number(0.0, 0.5, low_open=True), defaults.false_alarm_rate
            ),
            feature_share=self._read(
                "CTPIPE_DRIFT_FEATURE_SHARE", _number(0.0, 1.0, low_open=True), defaults.feature_share
            ),
            window_days=self._read("CTPIPE_DRIFT_WINDOW_DAYS", _whole(1), defaults.window_days),
            cooldown_days=self._read("CTPIPE_DRIFT_COOLDOWN_DAYS", _whole(0), defaults.cooldown_days),
            reference_rows=self._read("CTPIPE_DRIFT_REFERENCE_ROWS", _whole(100), defaults.reference_rows),
            min_new_labels=self._read("CTPIPE_DRIFT_MIN_NEW_LABELS", _whole(0), defaults.min_new_labels),
        )

    @cached_property
    def experiment(self) -> ExperimentPolicy:
        defaults = ExperimentPolicy()
        return ExperimentPolicy(
            alpha=self._read("CTPIPE_EXPERIMENT_ALPHA", _number(0.0, 0.5, low_open=True), defaults.alpha),
            mixture_sd=self._read("CTPIPE_EXPERIMENT_MIXTURE_SD", _number(0.0, low_open=True), defaults.mixture_sd),
            min_pairs=self._read("CTPIPE_EXPERIMENT_MIN_PAIRS", _whole(2), defaults.min_pairs),
            harm_margin=self._read("CTPIPE_EXPERIMENT_HARM_MARGIN", _number(0.0), defaults.harm_margin),
            ramp=self._read("CTPIPE_EXPERIMENT_RAMP", _rising_shares, defaults.ramp),
            stage_days=self._read("CTPIPE_EXPERIMENT_STAGE_DAYS", _whole(1), defaults.stage_days),
            horizon_days=self._read("CTPIPE_EXPERIMENT_HORIZON_DAYS", _whole(1), defaults.horizon_days),
            max_error_rate=self._read("CTPIPE_EXPERIMENT_MAX_ERROR_RATE", _number(0.0, 1.0), defaults.max_error_rate),
            max_p99_latency_ms=self._read(
                "CTPIPE_EXPERIMENT_MAX_P99_MS", _number(0.0, low_open=True), defaults.max_p99_latency_ms
            ),
        )

    @cached_property
    def live_window_days(self) -> int:
        """Live evaluation's figures of a day cover the events of this many days up to it."""
        return self._read("CTPIPE_LIVE_WINDOW_DAYS", _whole(1), 7)

    @cached_property
    def feature_server(self) -> FeatureServer:
        defaults = FeatureServer()
        return FeatureServer(
            workers=self._read("CTPIPE_FEATURE_SERVER_WORKERS", _whole(1), defaults.workers),
            max_requests=self._read("CTPIPE_FEATURE_SERVER_MAX_REQUESTS", _whole(0), defaults.max_requests),
            max_requests_jitter=self._read(
                "CTPIPE_FEATURE_SERVER_MAX_REQUESTS_JITTER", _whole(0), defaults.max_requests_jitter
            ),
            access_log=self._read("CTPIPE_FEATURE_SERVER_ACCESS_LOG", _boolean, defaults.access_log),
        )

    @cached_property
    def serving(self) -> Serving:
        defaults = Serving()
        secret = _matching(r"\S{16,}", "is shorter than 16 characters or has spaces")
        token = self._read("CTPIPE_SERVING_TOKEN", secret, None)
        return Serving(
            token=token,
            metrics_token=self._read("CTPIPE_SERVING_METRICS_TOKEN", secret, token),
            max_events=self._read("CTPIPE_SERVING_MAX_EVENTS", _whole(1), defaults.max_events),
            poll_seconds=self._read("CTPIPE_SERVING_POLL_SECONDS", _number(0.0, low_open=True), defaults.poll_seconds),
            challenger_policy=self._read(
                "CTPIPE_SERVING_CHALLENGER_POLICY",
                _one_of("champion_only", "shadow", "canary", "ab"),
                defaults.challenger_policy,
            ),
            webhook_secret=self._read("CTPIPE_SERVING_WEBHOOK_SECRET", secret, None),
            log_flush_rows=self._read("CTPIPE_PREDICTION_LOG_FLUSH_ROWS", _whole(1), defaults.log_flush_rows),
            log_flush_seconds=self._read(
                "CTPIPE_PREDICTION_LOG_FLUSH_SECONDS", _number(0.0, low_open=True), defaults.log_flush_seconds
            ),
        )

    @property
    def predictions_dir(self) -> Path:
        """The prediction log of the dataset's model (``ctpipe.serving.prediction_log``)."""
        return self.lake_dir / "predictions" / self.dataset.model_name

    # -- alerts ---------------------------------------------------------------------------------

    @cached_property
    def alerts(self) -> Alerts:
        """Where alerts go (``ctpipe.alerts``). The embedded default: a JSON-lines file in the state folder."""
        defaults = Alerts()
        alerts = Alerts(
            webhook_url=self._read("CTPIPE_ALERT_WEBHOOK_URL", _endpoint("http", "https"), None),
            webhook_secret=self._read(
                "CTPIPE_ALERT_WEBHOOK_SECRET",
                _matching(r"\S{16,}", "is shorter than 16 characters or has spaces"),
                None,
            ),
            slack_webhook_url=self._read("CTPIPE_ALERT_SLACK_WEBHOOK_URL", _endpoint("https"), None),
            smtp_host=self._read(
                "CTPIPE_ALERT_SMTP_HOST",
                _matching(r"[A-Za-z0-9:]([A-Za-z0-9.:-]*[A-Za-z0-9])?", "is not a host name or IP address"),
                None,
            ),
            smtp_port=self._read("CTPIPE_ALERT_SMTP_PORT", _port, defaults.smtp_port),
            smtp_starttls=self._read("CTPIPE_ALERT_SMTP_STARTTLS", _boolean, defaults.smtp_starttls),
            smtp_user=self._read("CTPIPE_ALERT_SMTP_USER", _matching(r"\S+", "has spaces"), None),
            smtp_password=self.raw("CTPIPE_ALERT_SMTP_PASSWORD"),
            smtp_from=self._read("CTPIPE_ALERT_SMTP_FROM", _email_address, defaults.smtp_from),
            smtp_to=self._read("CTPIPE_ALERT_SMTP_TO", _email_addresses, defaults.smtp_to),
            file=self._read("CTPIPE_ALERT_FILE", _file_or_none, self.state_dir / "alerts" / "alerts.jsonl"),
        )
        self._needs("CTPIPE_ALERT_WEBHOOK_SECRET", "CTPIPE_ALERT_WEBHOOK_URL", "there is nothing to sign")
        self._needs("CTPIPE_ALERT_SMTP_HOST", "CTPIPE_ALERT_SMTP_TO", "an email needs recipients")
        self._needs("CTPIPE_ALERT_SMTP_TO", "CTPIPE_ALERT_SMTP_HOST", "there is no server to send through")
        self._needs("CTPIPE_ALERT_SMTP_USER", "CTPIPE_ALERT_SMTP_PASSWORD", "a login needs both")
        self._needs("CTPIPE_ALERT_SMTP_PASSWORD", "CTPIPE_ALERT_SMTP_USER", "a login needs both")
        return alerts

    def _needs(self, name: str, other: str, why: str) -> None:
        """A ``ConfigurationError`` when ``name`` is set without ``other``: half a channel would send nothing."""
        raw = self.raw(name)
        if raw is not None and self.raw(other) is None:
            raise self.error(name, raw, f"is set without {other}: {why}")

    # -- the pipeline's metrics -----------------------------------------------------------------

    @cached_property
    def pushgateway_url(self) -> str | None:
        """Where batch tasks push their gauges (``ctpipe.pipeline_metrics``); None: files in ``metrics_dir``."""
        return self._read("CTPIPE_PUSHGATEWAY_URL", _http_url, None)

    @property
    def metrics_dir(self) -> Path:
        """The pipeline's gauges as text files when no Pushgateway is set, in node_exporter's textfile format."""
        return self.state_dir / "metrics"

    def check_all(self) -> None:
        """Read every accessor once: a deployment's smoke test of its configuration."""
        self.resolved()

    def resolved(self) -> dict[str, str]:
        """What each accessor resolves to, passwords hidden: for a person checking a deployment."""
        shown = {}
        for name in sorted(dir(type(self))):
            if not isinstance(getattr(type(self), name), (cached_property, property)) or name == "mlflow_credentials":
                continue
            if name == "training_pod" and self.training_backend != "kubernetes":
                shown[name] = "not used: CTPIPE_TRAINING_BACKEND is local"
                continue
            shown[name] = hide_passwords(str(getattr(self, name)))
        return shown


def main() -> None:
    """``python -m ctpipe.settings``: check every setting and print what the deployment resolves to."""
    import sys

    try:
        resolved = Settings.from_env().resolved()
    except ConfigurationError as error:
        sys.exit(f"ConfigurationError: {error}")
    width = max(map(len, resolved))
    for name, value in resolved.items():
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
