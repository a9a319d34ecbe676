"""Feast in its production mode, against the real services: a SQL registry on PostgreSQL and a Redis online store.

The offline store stays Feast's file store over the lake's feature partitions, in production
too: those partitions are already the system of record, written once per data interval
(atomically, replaced whole on a re-run), so a second offline copy in a warehouse would only
add a load step that can drift from them. Only what must be shared and fast moves to
services: the registry (every worker and the feature server read one) and the online store.

Each test run has its own PostgreSQL database and its own Feast project, so its Redis keys
(Feast suffixes every key with the project) never meet another run's; both go afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from ctpipe.features import EVENT_TIMESTAMP
from ctpipe.lake import Lake
from ctpipe.records import Interval
from ctpipe.settings import Settings

from ..conftest import free_port
from ..services import delete_redis_keys, feast_project, postgres_database, redis_address, stop, wait_for_http
from .test_feature_store import DATASET, FEATURES, START, as_of_join, offline_rows, publish_days

pytestmark = [pytest.mark.services]

DAYS = [Interval(START + timedelta(days=i), START + timedelta(days=i + 1)) for i in range(10)]


@dataclass(frozen=True)
class Production:
    store: object  # feast.FeatureStore
    lake: Lake
    settings: Settings
    registry_url: sa.URL
    project: str


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    """Ten days run through extract, validate, build and materialize into Redis, registered in PostgreSQL."""
    from ctpipe.feature_store import apply_definitions, load_store

    redis = redis_address()
    project = feast_project("feast")
    root = tmp_path_factory.mktemp("feast_production")
    with postgres_database("feast") as registry_url, pytest.MonkeyPatch.context() as env:
        registry = {
            "registry_type": "sql",
            "path": registry_url.render_as_string(hide_password=False),
            "cache_ttl_seconds": 60,
            "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
        }
        env.setenv("CTPIPE_STATE_DIR", str(root / "state"))
        env.delenv("CTPIPE_FEATURES_DIR", raising=False)
        env.setenv("CTPIPE_FEAST_PROJECT", project)
        env.setenv("CTPIPE_FEAST_REGISTRY", json.dumps(registry))  # JSON is a one-line YAML mapping
        env.setenv("CTPIPE_FEAST_ONLINE_STORE", json.dumps({"type": "redis", "connection_string": redis}))
        env.setenv("CTPIPE_FEAST_OFFLINE_STORE", "{type: file}")
        try:
            settings = Settings.from_env()
            store = load_store(settings)
            apply_definitions(store)
            lake = publish_days(store, settings, root / "source.db", DAYS)
            yield Production(store, lake, settings, registry_url, project)
        finally:
            delete_redis_keys(project)


def redis_snapshot(project: str) -> dict[bytes, dict[bytes, bytes]]:
    """Every hash Feast wrote for ``project``, as raw bytes."""
    import redis

    host, _, port = redis_address().partition(":")
    client = redis.Redis(host=host, port=int(port or 6379))
    try:
        return {key: client.hgetall(key) for key in client.scan_iter(match=f"*{project}", count=1000)}
    finally:
        client.close()


def newest_offline(production: Production) -> pd.DataFrame:
    """Every lab's point-in-time values at the newest materialized stamp, through Feast's offline store."""
    from ctpipe.feature_store import historical_features

    features = offline_rows(production.lake)
    newest = features[EVENT_TIMESTAMP].max()
    assert newest == pd.Timestamp(DAYS[-1].end)
    labs = sorted(features[DATASET.entity].unique())
    entity_rows = pd.DataFrame({DATASET.entity: labs, "event_timestamp": newest, "row_id": range(len(labs))})
    got = historical_features(production.store, DATASET.feature_service, entity_rows).set_index(DATASET.entity)
    expected = as_of_join(entity_rows, features, DATASET.feature_ttl)
    # Every lab has a row stamped at the newest stamp, so the as-of join matches it for all of them.
    assert (expected["feature_stamp"] == newest).all()
    assert sorted(got.index) == labs
    for name in FEATURES:
        assert np.allclose(got.loc[labs, name].astype("float64"), expected[name].astype("float64"), equal_nan=True)
    return got.loc[labs]


def test_the_stores_are_the_production_ones(production):
    config = production.store.config
    assert config.project == production.project
    assert config.registry.registry_type == "sql"
    assert config.online_store.type == "redis"
    assert config.offline_store.type == "file"
    assert not any(production.settings.feast_dir.glob("*.db"))  # no embedded registry or online store


def test_online_values_from_redis_equal_the_point_in_time_values(production):
    from ctpipe.feature_store import online_features

    offline = newest_offline(production)
    labs = list(offline.index)
    online = online_features(production.store, DATASET.feature_service, DATASET.entity, labs, DAYS[-1].end)
    assert online[DATASET.entity] == labs
    for name in FEATURES:
        served = pd.Series(online[name], index=labs, dtype="float64")
        assert np.allclose(served, offline[name].astype("float64"), equal_nan=True), name


def test_the_values_are_in_redis_and_the_registry_in_postgres(production):
    labs = offline_rows(production.lake)[DATASET.entity].unique()
    # One hash per entity key, suffixed with the project: this run's keys, one per lab.
    assert len(redis_snapshot(production.project)) == len(labs) > 0

    engine = sa.create_engine(production.registry_url)
    try:
        with engine.connect() as conn:
            rows = {
                table: conn.execute(
                    sa.text(f"SELECT {column} FROM {table} WHERE project_id = :project"),
                    {"project": production.project},
                )
                .scalars()
                .all()
                for table, column in (
                    ("feature_views", "feature_view_name"),
                    ("feature_services", "feature_service_name"),
                    ("entities", "entity_name"),
                )
            }
    finally:
        engine.dispose()
    assert rows["feature_views"] == [DATASET.feature_view]
    assert rows["feature_services"] == [DATASET.feature_service]
    assert "lab" in rows["entities"]


def test_feast_serve_answers_from_redis_over_http(production, tmp_path):
    offline = newest_offline(production)
    labs = list(offline.index)
    port = free_port()
    log = tmp_path / "feast_serve.log"
    env = {**os.environ, "CTPIPE_STATE_DIR": str(production.settings.state_dir)}
    assert env["CTPIPE_FEAST_ONLINE_STORE"].startswith('{"type": "redis"')
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "ctpipe.feature_store", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, timeout=120, log=log)
        response = requests.post(
            f"http://127.0.0.1:{port}/get-online-features",
            json={"feature_service": DATASET.feature_service, "entities": {DATASET.entity: labs}},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        served = {name: body["results"][i]["values"] for i, name in enumerate(body["metadata"]["feature_names"])}
        assert served[DATASET.entity] == labs
        for name in FEATURES:
            values = pd.Series(served[name], index=labs, dtype="float64")
            assert np.allclose(values, offline[name].astype("float64"), equal_nan=True), name
    finally:
        stop(server)
    assert server.poll() is not None


def test_values_older_than_the_ttl_are_served_as_missing_from_redis_too(production):
    from .test_feature_store import assert_expired_values_are_served_as_missing

    assert_expired_values_are_served_as_missing(production.store, production.lake)


def test_rematerializing_an_interval_changes_nothing(production):
    from ctpipe.feature_store import materialize, online_features

    labs = sorted(offline_rows(production.lake)[DATASET.entity].unique())
    before = redis_snapshot(production.project)
    served = online_features(production.store, DATASET.feature_service, DATASET.entity, labs, DAYS[-1].end)
    materialize(production.store, DAYS[-1])
    materialize(production.store, Interval(DAYS[0].start, DAYS[-1].end))
    assert redis_snapshot(production.project) == before
    assert online_features(production.store, DATASET.feature_service, DATASET.entity, labs, DAYS[-1].end) == served


def test_republishing_an_older_interval_never_takes_redis_back(production):
    from ctpipe.feature_store import online_features, publish_online

    labs = sorted(offline_rows(production.lake)[DATASET.entity].unique())
    before = online_features(production.store, DATASET.feature_service, DATASET.entity, labs, DAYS[-1].end)
    publish_online([DAYS[1]], production.settings)
    assert online_features(production.store, DATASET.feature_service, DATASET.entity, labs, DAYS[-1].end) == before
    offline = newest_offline(production)
    for name in FEATURES:
        assert np.allclose(pd.Series(before[name], dtype="float64"), offline[name].astype("float64"), equal_nan=True)
