"""The Feast variables: embedded defaults, clear errors for malformed values and for a Redis that does not answer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest

from ctpipe.feature_store import apply_definitions, load_store, materialize, online_features
from ctpipe.records import Interval
from ctpipe.services import ServiceUnavailableError
from ctpipe.settings import FORWARDED_TO_TRAINING, ConfigurationError, Settings

from ..conftest import free_port

VARIABLES = ("CTPIPE_FEAST_PROJECT", "CTPIPE_FEAST_REGISTRY", "CTPIPE_FEAST_ONLINE_STORE", "CTPIPE_FEAST_OFFLINE_STORE")


@pytest.fixture(autouse=True)
def embedded(state_dir, monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return state_dir


def test_every_variable_the_yaml_reads_has_a_default_and_reaches_the_training_pod():
    read = set(re.findall(r"\$\{(\w+)\}", (Settings.from_env().feature_repo / "feature_store.yaml").read_text()))
    assert read == set(VARIABLES)
    assert read <= set(Settings.from_env().feast_variables)
    assert read <= set(FORWARDED_TO_TRAINING)


def test_the_project_defaults_to_ctpipe_and_follows_the_environment(monkeypatch):
    assert Settings.from_env().feast_variables["CTPIPE_FEAST_PROJECT"] == "ctpipe"
    assert load_store().project == "ctpipe"
    monkeypatch.setenv("CTPIPE_FEAST_PROJECT", "ctpipe_test_run")
    assert load_store().project == "ctpipe_test_run"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CTPIPE_FEAST_REGISTRY", "registry.db", "one-line YAML mapping with a 'path' key"),
        ("CTPIPE_FEAST_REGISTRY", "{registry_type: sql}", "one-line YAML mapping with a 'path' key"),
        ("CTPIPE_FEAST_ONLINE_STORE", "redis:6379", "one-line YAML mapping with a 'type' key"),
        (
            "CTPIPE_FEAST_ONLINE_STORE",
            "{type: redis, connection_string: 'redis:6379'",
            "does not parse as YAML in feature_store.yaml",
        ),
        (
            "CTPIPE_FEAST_ONLINE_STORE",
            "type: redis\nconnection_string: redis:6379",
            "does not parse as YAML in feature_store.yaml",
        ),
        ("CTPIPE_FEAST_ONLINE_STORE", "{type: redis, connection_string: redis}", "is not host:port"),
        ("CTPIPE_FEAST_OFFLINE_STORE", "[file]", "one-line YAML mapping with a 'type' key"),
        ("CTPIPE_FEAST_PROJECT", "_hidden", "starts with an underscore or hyphen"),
        ("CTPIPE_FEAST_PROJECT", "lab qc", "has characters other than letters, digits, '_' and '-'"),
        ("CTPIPE_FEAST_PROJECT", "lab-qc", "cannot contain hyphens with a SQLite online store"),
    ],
)
def test_a_malformed_value_is_a_configuration_error_naming_the_variable(monkeypatch, embedded, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=re.escape(expected)) as raised:
        load_store()
    assert str(raised.value).startswith(name)
    assert not embedded.exists()  # checked before anything is created


def test_the_error_does_not_repeat_a_password(monkeypatch):
    monkeypatch.setenv(
        "CTPIPE_FEAST_REGISTRY", '{registry_type: sql, path: "postgresql+psycopg://feast:s3cret@db/feast"'
    )
    with pytest.raises(ConfigurationError, match="CTPIPE_FEAST_REGISTRY") as raised:
        _ = Settings.from_env().feast_variables
    assert "s3cret" not in str(raised.value)
    assert "postgresql+psycopg://feast:***@db/feast" in str(raised.value)
    monkeypatch.delenv("CTPIPE_FEAST_REGISTRY")
    monkeypatch.setenv("CTPIPE_FEAST_ONLINE_STORE", "redis:6379,password=s3cret")
    with pytest.raises(ConfigurationError, match="CTPIPE_FEAST_ONLINE_STORE") as raised:
        _ = Settings.from_env().feast_variables
    assert "s3cret" not in str(raised.value)


@pytest.fixture
def unreachable_redis(monkeypatch) -> str:
    """A Redis online store on a port nothing listens on."""
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("CTPIPE_FEAST_ONLINE_STORE", f'{{type: redis, connection_string: "{address},db=0"}}')
    return address


def assert_clear(error: ServiceUnavailableError, address: str) -> None:
    message = str(error)
    assert message.startswith(
        f"Feast online store at redis://{address} (from CTPIPE_FEAST_ONLINE_STORE) is unavailable: "
    )
    assert "Connection refused" in message  # the underlying reason
    assert "db=0" not in message  # never the connection parameters: they may hold a password


def test_an_unreachable_redis_is_one_clear_error_at_once(unreachable_redis):
    store = load_store()
    apply_definitions(store)  # registering needs no online store connection
    interval = Interval(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    for attempt in (
        lambda: materialize(store, interval),
        lambda: online_features(store, "lab_quality_v1", "lab_id", ["LAB-001"]),
    ):
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as raised:
            attempt()
        assert time.monotonic() - started < 15  # one refused ping, not minutes of retries with backoff
        assert_clear(raised.value, unreachable_redis)


def test_the_feature_server_refuses_to_start_without_its_redis(unreachable_redis):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ctpipe.feature_store", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 30
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"ServiceUnavailableError: Feast online store at redis://{unreachable_redis} " in last_line


def test_a_file_registry_is_rewritten_atomically_and_serves_while_materializing(monkeypatch):
    from ctpipe.feast_registry import AtomicFileRegistryStore
    from ctpipe.settings import FILE_REGISTRY_STORE

    registry = load_store().config.registry
    assert registry.registry_store_type == FILE_REGISTRY_STORE
    assert type(load_store().registry._registry_store) is AtomicFileRegistryStore
    assert registry.serve_features_while_materializing  # feast#6780: reads go on while a view materializes
    # A SQL registry gets the serving flag only; what a mapping says itself stands.
    monkeypatch.setenv("CTPIPE_FEAST_REGISTRY", "{registry_type: sql, path: 'postgresql+psycopg://db/feast'}")
    sql = json.loads(Settings.from_env().feast_variables["CTPIPE_FEAST_REGISTRY"])
    assert sql == {
        "registry_type": "sql",
        "path": "postgresql+psycopg://db/feast",
        "serve_features_while_materializing": True,
    }
    monkeypatch.setenv("CTPIPE_FEAST_REGISTRY", "{path: r.db, serve_features_while_materializing: false}")
    chosen = json.loads(Settings.from_env().feast_variables["CTPIPE_FEAST_REGISTRY"])
    assert (
        chosen["serve_features_while_materializing"] is False and chosen["registry_store_type"] == FILE_REGISTRY_STORE
    )


def test_a_reader_never_sees_the_registry_file_half_written(tmp_path):
    """Rewritten 300 times while another thread reads it: every read is a whole registry."""
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
    from feast.repo_config import RegistryConfig

    from ctpipe.feast_registry import AtomicFileRegistryStore

    store = AtomicFileRegistryStore(RegistryConfig(path=str(tmp_path / "registry.db")), tmp_path)
    proto = RegistryProto()
    for i in range(200):  # a registry of some size, so that a write takes a while
        proto.feature_services.add().spec.name = f"service_{i}"
    store.update_registry_proto(proto)
    partial, done = [], threading.Event()

    def read() -> None:
        while not done.is_set():
            read_back = store.get_registry_proto()
            if len(read_back.feature_services) != 200:
                partial.append(len(read_back.feature_services))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(300):
            store.update_registry_proto(proto)
    finally:
        done.set()
        reader.join()
    assert partial == []
    assert [p.name for p in tmp_path.iterdir()] == ["registry.db"]  # no temporary file left behind
