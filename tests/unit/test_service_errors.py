"""Bad connection strings and unreachable services: one clear error each, within seconds.

Every service here is real and local: a port nobody listens on, a host under ``.invalid``
(never resolvable), a socket that accepts and then says nothing, a tiny HTTP server. The
time bound is a guard against retry storms (MLflow's client alone retries for minutes),
not a benchmark.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from ctpipe import source
from ctpipe.services import ServiceUnavailableError
from ctpipe.settings import ConfigurationError, hide_passwords
from ctpipe.source import engine_for_connection
from ctpipe.tracking import check_tracking_server, connect

from ..conftest import ROOT, free_port
from ..services import postgres_admin_url

CONN_ID = "ctpipe_source"
CONN_VARIABLE = "AIRFLOW_CONN_CTPIPE_SOURCE"
PASSWORD = "hunter2-secret"
FAST = 15.0  # seconds; MLflow's retries or libpq's default connect timeout (130 s) would blow through it


def postgres_connection(host: str, port: int, database: str = "ctpipe", **extra) -> str:
    """An Airflow connection in JSON, the form ``AIRFLOW_CONN_*`` takes."""
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": host,
            "port": port,
            "login": "ctpipe",
            "password": PASSWORD,
            "schema": database,
            **({"extra": extra} if extra else {}),
        }
    )


def raises_fast(expected: type[Exception], call, *args) -> str:
    """``call(*args)`` raises ``expected`` within ``FAST`` seconds; returns its message."""
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        call(*args)
    elapsed = time.monotonic() - started
    assert elapsed < FAST, f"took {elapsed:.1f} s to fail"
    message = str(caught.value)
    assert PASSWORD not in message
    return message


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@contextmanager
def http_server(status: int) -> Iterator[str]:
    """A local HTTP server answering every GET with ``status``; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- the source database -------------------------------------------------------------------------


def test_a_missing_connection_names_it_and_how_to_define_it(monkeypatch):
    monkeypatch.delenv(CONN_VARIABLE, raising=False)
    message = raises_fast(ConfigurationError, engine_for_connection, CONN_ID)
    assert f"source connection {CONN_ID!r} is not defined" in message
    assert CONN_VARIABLE in message and "secrets backend" in message


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not a uri", "has no connection type"),
        ('{"conn_type": "bogus", "host": "db"}', "connection type 'bogus', which no installed Airflow provider knows"),
        ('{"conn_type": "postgres", "password": "' + PASSWORD + '", "host": ', "is not valid JSON"),
        ('{"conn_type": "postgres", "password": "' + PASSWORD + '", "port": "five"}', "has an invalid part"),
        ('{"conn_type": "postgres", "pasword": "' + PASSWORD + '"}', "holds a field a connection does not have"),
        (f"postgres://ctpipe:{PASSWORD}@db://x://y", "is not a connection URI"),
    ],
)
def test_a_malformed_connection_says_what_is_wrong(monkeypatch, value, reason):
    monkeypatch.setenv(CONN_VARIABLE, value)
    message = raises_fast(ConfigurationError, engine_for_connection, CONN_ID)
    assert repr(CONN_ID) in message and reason in message


def test_a_closed_port_fails_fast_as_unreachable(monkeypatch):
    port = free_port()  # bound, then closed: nothing listens there
    monkeypatch.setenv(CONN_VARIABLE, postgres_connection("127.0.0.1", port))
    message = raises_fast(ServiceUnavailableError, engine_for_connection, CONN_ID)
    assert message == (
        f"source database at postgresql+psycopg://ctpipe:***@127.0.0.1:{port}/ctpipe (from connection {CONN_ID!r}) "
        "is unavailable: connection refused"
    )


def test_a_host_that_does_not_resolve_fails_fast_as_unreachable(monkeypatch):
    monkeypatch.setenv(CONN_VARIABLE, postgres_connection("nonexistent.invalid", 5432))
    message = raises_fast(ServiceUnavailableError, engine_for_connection, CONN_ID)
    where = "postgresql+psycopg://ctpipe:***@nonexistent.invalid:5432/ctpipe"
    assert message.startswith(f"source database at {where} (from connection {CONN_ID!r})")
    assert "is unavailable: failed to resolve host 'nonexistent.invalid'" in message


@pytest.mark.parametrize("where", ["default", "connection extra"])
def test_a_server_that_never_answers_times_out(monkeypatch, where):
    with silent_server() as port:
        if where == "default":
            monkeypatch.setattr(source, "CONNECT_TIMEOUT", 2)
            monkeypatch.setenv(CONN_VARIABLE, postgres_connection("127.0.0.1", port))
        else:
            monkeypatch.setenv(CONN_VARIABLE, postgres_connection("127.0.0.1", port, connect_timeout=2))
        message = raises_fast(ServiceUnavailableError, engine_for_connection, CONN_ID)
    assert (
        f"127.0.0.1:{port}/ctpipe (from connection {CONN_ID!r}) is unavailable: connection timeout expired" in message
    )


@pytest.mark.services
def test_a_wrong_database_name_on_a_real_server_fails_fast(monkeypatch):
    url = postgres_admin_url()
    database = f"ctpipe_missing_{uuid.uuid4().hex[:8]}"
    connection = {
        "conn_type": "postgres",
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "login": url.username,
        "password": url.password or PASSWORD,
        "schema": database,
    }
    monkeypatch.setenv(CONN_VARIABLE, json.dumps(connection))
    message = raises_fast(ServiceUnavailableError, engine_for_connection, CONN_ID)
    assert message.startswith(f"source database at postgresql+psycopg://{url.username}:***@")
    assert f'(from connection {CONN_ID!r}) is unavailable: database "{database}" does not exist' in message


def load_ingest_dag():
    spec = importlib.util.spec_from_file_location("ingest_dag_under_test", ROOT / "dags" / "ingest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_extract_task_fails_a_bad_connection_without_retry_and_retries_a_dead_server(monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    extract = load_ingest_dag().extract.function
    table = "lab_samples"
    interval = {
        "data_interval_start": datetime(2026, 1, 2, tzinfo=UTC),
        "data_interval_end": datetime(2026, 1, 3, tzinfo=UTC),
    }

    monkeypatch.setenv(CONN_VARIABLE, "not a uri")
    with pytest.raises(AirflowFailException, match=f"source connection {CONN_ID!r} has no connection type"):
        extract(table, **interval, outlet_events={})

    monkeypatch.setenv(CONN_VARIABLE, postgres_connection("127.0.0.1", free_port()))
    with pytest.raises(ServiceUnavailableError, match="is unavailable: connection refused"):
        extract(table, **interval, outlet_events={})


def test_the_extract_task_fails_a_source_without_the_declared_table_at_once(monkeypatch, tmp_path):
    """The source lacks what the dataset declares: a retry would find the same, so the task fails once."""
    from airflow.sdk.exceptions import AirflowFailException

    extract = load_ingest_dag().extract.function
    source = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{source}").dispose()
    monkeypatch.setenv(CONN_VARIABLE, json.dumps({"conn_type": "sqlite", "host": str(source)}))
    monkeypatch.setenv("CTPIPE_STATE_DIR", str(tmp_path / "state"))
    interval = {
        "data_interval_start": datetime(2026, 1, 2, tzinfo=UTC),
        "data_interval_end": datetime(2026, 1, 3, tzinfo=UTC),
    }
    with pytest.raises(AirflowFailException, match="source table 'lab_samples' does not exist"):
        extract("lab_samples", **interval, outlet_events={})


# -- the MLflow tracking server ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("htp://mlflow:5000", "has a scheme MLflow does not support ('htp')"),
        ("mlflow:5000", "has a scheme MLflow does not support ('mlflow')"),
        ("10.0.0.7:5000", "is not a URI, it has no scheme"),
        ("http://mlflow:five", "is malformed (Port could not be cast to integer value as 'five')"),
        ("http://", "names no host and port to reach"),
        (f"https://ctpipe:{PASSWORD}@[::1:5000", "is malformed (Invalid IPv6 URL)"),
    ],
)
def test_a_malformed_tracking_uri_names_the_variable(monkeypatch, state_dir, uri, reason):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    message = raises_fast(ConfigurationError, connect)
    assert message.startswith(f"MLFLOW_TRACKING_URI={hide_passwords(uri)!r} {reason}")


def test_a_dead_tracking_server_fails_fast_with_one_message(monkeypatch, state_dir):
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://ctpipe:{PASSWORD}@127.0.0.1:{port}")
    message = raises_fast(ServiceUnavailableError, connect)
    assert message == (
        f"MLflow tracking server at http://ctpipe:***@127.0.0.1:{port} (from MLFLOW_TRACKING_URI) "
        "is unavailable: connection refused"
    )


def test_a_tracking_host_that_does_not_resolve_fails_fast(monkeypatch, state_dir):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://nonexistent.invalid")
    message = raises_fast(ServiceUnavailableError, connect)
    assert message.startswith(
        "MLflow tracking server at https://nonexistent.invalid (from MLFLOW_TRACKING_URI) is unavailable: "
        "host 'nonexistent.invalid' does not resolve"
    )


def test_a_tracking_server_behind_a_failing_proxy_is_unavailable():
    with http_server(503) as url:
        message = raises_fast(ServiceUnavailableError, check_tracking_server, url)
    assert message == (
        f"MLflow tracking server at {url} (from MLFLOW_TRACKING_URI) is unavailable: "
        "GET /health answered 503 Service Unavailable"
    )


@pytest.mark.parametrize("status", [200, 401, 403, 404])
def test_a_tracking_server_that_answers_is_reachable_even_when_it_wants_credentials(status):
    with http_server(status) as url:
        check_tracking_server(url)


def test_a_dead_tracking_database_fails_fast(monkeypatch, state_dir):
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql+psycopg://ctpipe:{PASSWORD}@127.0.0.1:{port}/mlflow")
    message = raises_fast(ServiceUnavailableError, connect)  # MLflow alone retries for about 100 s
    assert message == (
        f"MLflow tracking database at postgresql+psycopg://ctpipe:***@127.0.0.1:{port}/mlflow "
        "(from MLFLOW_TRACKING_URI) is unavailable: connection refused"
    )


def test_hide_passwords_hides_only_the_passwords():
    assert hide_passwords("http://user:p@ss:w@host:5000/x") == "http://user:***@host:5000/x"
    assert hide_passwords("postgresql://user:pa/ss@db:5432/x") == "postgresql://user:***@db:5432/x"
    assert hide_passwords("http://host:5000") == "http://host:5000"
    assert hide_passwords("sqlite:///state/mlflow.db") == "sqlite:///state/mlflow.db"
    assert (
        hide_passwords("{path: 'postgresql://f:s3cr3t@db/feast', connection_string: 'redis:6379,password=r3d1s'}")
        == "{path: 'postgresql://f:***@db/feast', connection_string: 'redis:6379,password=***'}"
    )


@pytest.mark.services
def test_the_connections_libpq_extras_reach_the_server(monkeypatch):
    """sslmode, application_name and the like are honoured, as the postgres hook's own get_conn() does."""
    url = postgres_admin_url()
    connection = {
        "conn_type": "postgres",
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "login": url.username,
        "schema": url.database,
        "extra": {"application_name": "ctpipe-extract-check", "connect_timeout": 7},
    }
    monkeypatch.setenv(CONN_VARIABLE, json.dumps(connection))
    engine = engine_for_connection(CONN_ID)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW application_name")).scalar() == "ctpipe-extract-check"
    engine.dispose()
