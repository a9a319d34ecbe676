"""The real services the production-mode tests run against: PostgreSQL, Redis and an MLflow server.

Where they are: ``CTPIPE_TEST_POSTGRES`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, a role that may create
databases) and ``CTPIPE_TEST_REDIS`` (default ``127.0.0.1:6379``). A missing service
skips the tests that need it, with instructions; with ``CI=true`` it fails them.

Every test run gets its own databases and its own Feast project (hence Redis keys), named
after ``RUN_ID``, and drops them afterwards, so concurrent runs never see each other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

POSTGRES_URL = os.environ.get("CTPIPE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_ADDRESS = os.environ.get("CTPIPE_TEST_REDIS", "127.0.0.1:6379")
# One id per test run: database names and the Feast project (Redis key suffix) carry it.
RUN_ID = uuid.uuid4().hex[:10]


def services_required() -> bool:
    """Under CI (``CI=true``, as CI systems set it; ``1`` and ``yes`` count too) the services must be there."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(message: str, how: str) -> None:
    """Fail under CI=true (the production tests must run there); skip with instructions otherwise."""
    if services_required():
        pytest.fail(f"{message} (CI=true: the production-mode tests must run)", pytrace=False)
    pytest.skip(f"{message}; {how}")


def postgres_admin_url() -> sa.URL:
    """The server's admin URL, after checking it answers."""
    url = sa.make_url(POSTGRES_URL)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        unavailable(
            f"PostgreSQL is not reachable at {url.render_as_string(hide_password=True)}: {error.orig}",
            "start it, or point CTPIPE_TEST_POSTGRES at one, to run the production-mode tests",
        )
    finally:
        engine.dispose()
    return url


@contextmanager
def postgres_database(purpose: str) -> Iterator[sa.URL]:
    """A new, empty database for this test run (``ctpipe_<purpose>_<run id>``), dropped afterwards."""
    admin_url = postgres_admin_url()
    name = f"ctpipe_{purpose}_{RUN_ID}_{uuid.uuid4().hex[:4]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def redis_address() -> str:
    """``host:port`` of the Redis server, after checking it answers."""
    import redis

    host, _, port = REDIS_ADDRESS.partition(":")
    client = redis.Redis(host=host, port=int(port or 6379), socket_connect_timeout=5)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        unavailable(
            f"Redis is not reachable at {REDIS_ADDRESS}: {error}",
            "start it, or point CTPIPE_TEST_REDIS at one, to run the production-mode tests",
        )
    finally:
        client.close()
    return REDIS_ADDRESS


def feast_project(purpose: str) -> str:
    """A Feast project name of this run's own: Feast suffixes every Redis key with it."""
    return f"ctpipe_{purpose}_{RUN_ID}"


def delete_redis_keys(project: str) -> int:
    """Remove every key Feast wrote for ``project`` (keys end with the project's name)."""
    import redis

    host, _, port = REDIS_ADDRESS.partition(":")
    client = redis.Redis(host=host, port=int(port or 6379))
    try:
        keys = list(client.scan_iter(match=f"*{project}", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def wait_for_http(url: str, process: subprocess.Popen | None, timeout: float, log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200; fail with the process's log if it dies or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{process.args[:3]} exited with {process.returncode} before {url} answered:\n{tail}")
        with suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s:\n{tail}")


def group_alive(process: subprocess.Popen) -> bool:
    """Whether any process of the group ``process`` leads (``start_new_session=True``) is still there."""
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(process: subprocess.Popen, grace: float = 20) -> None:
    """Stop a process group started with ``start_new_session=True``, children included: SIGTERM, then SIGKILL."""
    import signal

    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, so that only live members keep the group
        if process.returncode is not None and not group_alive(process):
            return
        time.sleep(0.2)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@contextmanager
def mlflow_server(
    backend: sa.URL | str,
    artifacts: Path,
    port: int,
    log: Path,
    extra_args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """``mlflow server`` on a backend store (PostgreSQL here) with served artifacts; yields its http URL."""
    artifacts.mkdir(parents=True, exist_ok=True)
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    if isinstance(backend, sa.URL):
        backend = backend.render_as_string(hide_password=False)
    argv = [
        mlflow,
        "server",
        *extra_args,
        "--backend-store-uri",
        backend,
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts.as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | (extra_env or {})
    with open(log, "w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", process, timeout=120, log=log)
        yield url
    finally:
        stop(process)
