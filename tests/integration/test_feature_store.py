"""Feast on the embedded default: point-in-time training sets, online reads, and the HTTP server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests

from ctpipe import artifacts
from ctpipe.datasets import get_dataset
from ctpipe.features import EVENT_TIMESTAMP, build_features
from ctpipe.ingest import extract_interval
from ctpipe.key_index import KeyIndex
from ctpipe.lake import Lake
from ctpipe.records import Interval
from ctpipe.settings import Settings
from ctpipe.validation import validate_partition

from ..conftest import free_port
from ..unit.sources import seeded_sqlite

DATASET = get_dataset("lab_qc")
UTC = UTC
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = [Interval(START + timedelta(days=i), START + timedelta(days=i + 1)) for i in range(12)]
FEATURES = [a.name for a in DATASET.aggregates]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Twelve days run through extract, validate, build and materialize, interval by interval."""
    from ctpipe.feature_store import apply_definitions, load_store

    root = tmp_path_factory.mktemp("feast")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CTPIPE_STATE_DIR", str(root / "state"))
        for name in (
            "CTPIPE_FEAST_PROJECT",
            "CTPIPE_FEAST_REGISTRY",
            "CTPIPE_FEAST_ONLINE_STORE",
            "CTPIPE_FEAST_OFFLINE_STORE",
            "CTPIPE_FEATURES_DIR",
        ):
            env.delenv(name, raising=False)
        settings = Settings.from_env()
        store = load_store(settings)
        apply_definitions(store)
        lake = publish_days(store, settings, root / "source.db", DAYS)
        yield store, lake, settings


def publish_days(feature_store, settings: Settings, source: Path, days: list[Interval]) -> Lake:
    """Seed a SQLite source for ``days``, then run each day through extract, validate, build and materialize."""
    from ctpipe.feature_store import materialize

    lake = Lake(settings.lake_dir)
    engine, _, _ = seeded_sqlite(source, start=days[0].start.date(), days=len(days), rows_per_day=150)
    keys = KeyIndex.from_url(settings.key_index_url)
    try:
        for interval in days:
            for table in DATASET.tables:
                raw = extract_interval(engine, table, interval, lake, chunk_rows=500)
                report = artifacts.validation_report(settings, table.name, interval)
                validate_partition(table, raw.uri, interval, lake, settings.gx_dir, report, 0.2, keys=keys)
            build_features(DATASET, lake, interval)
            materialize(feature_store, interval)
    finally:
        engine.dispose()
        keys.close()
    return lake


def offline_rows(lake: Lake) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for _, p in lake.partitions("features", DATASET.feature_view)]
    return pd.concat(frames, ignore_index=True).sort_values([DATASET.entity, EVENT_TIMESTAMP])


def as_of_join(entity_rows: pd.DataFrame, features: pd.DataFrame, ttl: timedelta) -> pd.DataFrame:
    """Brute force: for each entity row, the newest feature row of its lab stamped at or before it, within the TTL."""
    out = []
    for row in entity_rows.itertuples():
        lab = features[features[DATASET.entity] == row.lab_id]
        known = lab[(lab[EVENT_TIMESTAMP] <= row.event_timestamp) & (lab[EVENT_TIMESTAMP] >= row.event_timestamp - ttl)]
        match = known.iloc[-1] if len(known) else None
        out.append(
            {
                "row_id": row.row_id,
                "feature_stamp": None if match is None else match[EVENT_TIMESTAMP],
                **{name: (None if match is None else match[name]) for name in FEATURES},
            }
        )
    return pd.DataFrame(out).set_index("row_id")


def test_training_sets_are_point_in_time_correct(store):
    from ctpipe.feature_store import historical_features

    feature_store, lake, _ = store
    features = offline_rows(lake)
    stamps = sorted(features[EVENT_TIMESTAMP].unique())
    rng = np.random.default_rng(7)
    labs = sorted(features[DATASET.entity].unique())
    # Random moments, plus the sharpest edges: exactly on a stamp and one microsecond before it.
    offsets = rng.uniform(0, 14 * 86400, size=150)
    moments = [(pd.Timestamp(START) + pd.Timedelta(seconds=float(s))).round("us") for s in offsets]
    moments += [pd.Timestamp(s) for s in stamps] + [pd.Timestamp(s) - pd.Timedelta(microseconds=1) for s in stamps]
    entity_rows = pd.DataFrame(
        {
            DATASET.entity: rng.choice(labs, size=len(moments)),
            "event_timestamp": pd.to_datetime(moments, utc=True),
        }
    )
    entity_rows["row_id"] = np.arange(len(entity_rows))

    got = historical_features(feature_store, DATASET.feature_service, entity_rows).set_index("row_id").sort_index()
    expected = as_of_join(entity_rows, features, DATASET.feature_ttl).sort_index()

    # The file offline store drops entity rows that have no feature row inside the TTL (a left join
    # would keep them with nulls): exactly those, and no others, must be missing.
    unmatched = set(expected.index[expected["feature_stamp"].isna()])
    assert set(entity_rows["row_id"]) - set(got.index) == unmatched
    assert len(got) > 0.8 * len(entity_rows)
    expected = expected.loc[got.index]
    for name in FEATURES:
        left, right = got[name].astype("float64"), expected[name].astype("float64")
        assert np.allclose(left, right, equal_nan=True), name
    # No joined value was stamped after its entity row ...
    entity_time = entity_rows.set_index("row_id").loc[expected.index, "event_timestamp"]
    assert (expected["feature_stamp"] <= entity_time).all()
    # ... and the edges are sharp enough to catch one that was: one microsecond before a new stamp
    # the values differ from those at the stamp for many rows.
    just_before = entity_rows["event_timestamp"].isin([pd.Timestamp(s) - pd.Timedelta(microseconds=1) for s in stamps])
    at_stamp = entity_rows.assign(event_timestamp=entity_rows["event_timestamp"] + pd.Timedelta(microseconds=1))[
        just_before
    ]
    shifted = historical_features(feature_store, DATASET.feature_service, at_stamp).set_index("row_id").sort_index()
    common = shifted.index.intersection(got.index)
    differs = (shifted.loc[common, "submissions_28d"] != got.loc[common, "submissions_28d"]).sum()
    assert differs > len(shifted) // 2


def test_online_values_are_the_latest_materialized_rows(store):
    from ctpipe.feature_store import online_features

    feature_store, lake, _ = store
    latest = offline_rows(lake).groupby(DATASET.entity).tail(1).set_index(DATASET.entity)
    labs = sorted(latest.index)
    values = online_features(feature_store, DATASET.feature_service, DATASET.entity, [*labs, "LAB-999"], DAYS[-1].end)
    assert values[DATASET.entity] == [*labs, "LAB-999"]
    for name in FEATURES:
        served = pd.Series(values[name][:-1], index=labs, dtype="float64")
        assert np.allclose(served, latest.loc[labs, name].astype("float64"), equal_nan=True), name
        assert values[name][-1] is None  # an unknown lab gets nulls, not an error


def test_republishing_an_older_interval_never_takes_the_online_store_back(store):
    """A backfill or rerun of an old day (here through the features DAG's own call) leaves the newest values online."""
    from ctpipe.feature_store import online_features, publish_online

    feature_store, lake, settings = store
    labs = sorted(offline_rows(lake)[DATASET.entity].unique())
    before = online_features(feature_store, DATASET.feature_service, DATASET.entity, labs, DAYS[-1].end)
    old_day = pq.read_table(lake.partition("features", DATASET.feature_view, DAYS[2])).to_pandas()
    assert any(before[name] != list(old_day.set_index(DATASET.entity).reindex(labs)[name]) for name in FEATURES)

    published = publish_online([DAYS[2], DAYS[3]], settings)
    assert published.materialized == Interval(DAYS[2].start, DAYS[3].end)
    assert online_features(feature_store, DATASET.feature_service, DATASET.entity, labs, DAYS[-1].end) == before


def assert_expired_values_are_served_as_missing(feature_store, lake: Lake) -> None:
    """The TTL, which Feast's online read ignores, is applied as its offline read (the training sets) applies it.

    Up to ``ttl`` after the newest stamp both reads give the newest values; a moment later the
    offline read has nothing for the lab (Feast drops the row) and the online read serves missing values, flagged.
    """
    from ctpipe.feature_store import STALE, historical_features, online_features

    newest = offline_rows(lake).groupby(DATASET.entity).tail(1).set_index(DATASET.entity)
    labs = sorted(newest.index)
    stamp = newest[EVENT_TIMESTAMP].max().to_pydatetime()
    assert (newest[EVENT_TIMESTAMP] == stamp).all()
    ttl = DATASET.feature_ttl
    for as_of, expired in ((stamp + ttl, False), (stamp + ttl + timedelta(seconds=1), True)):
        served = online_features(feature_store, DATASET.feature_service, DATASET.entity, [*labs, "LAB-999"], as_of)
        assert served[STALE] == [expired] * len(labs) + [False]  # a lab never seen is missing, not stale
        assert all(v is None for v in served[FEATURES[0]][len(labs) :])
        entity_rows = pd.DataFrame({DATASET.entity: labs, "event_timestamp": [as_of] * len(labs)})
        offline = historical_features(feature_store, DATASET.feature_service, entity_rows).set_index(DATASET.entity)
        if expired:
            # The offline read drops an entity row with nothing inside the TTL: no training set holds such a row.
            assert offline.empty
        for name in FEATURES:
            online = pd.Series(served[name][: len(labs)], index=labs, dtype="float64")
            if expired:
                assert online.isna().all(), name
            else:  # the model is served what it would have been trained on at that instant
                assert np.allclose(online, newest.loc[labs, name].astype("float64"), equal_nan=True), name
                assert np.allclose(online, offline.loc[labs, name].astype("float64"), equal_nan=True), name


def test_values_older_than_the_ttl_are_served_as_missing_and_marked_stale(store):
    feature_store, lake, _ = store
    assert_expired_values_are_served_as_missing(feature_store, lake)


def test_feast_serve_answers_over_http_and_across_worker_recycles(store, tmp_path):
    """The server's answers equal the project's read, and no request fails while its workers are recycled."""
    from ctpipe.feature_store import online_features

    feature_store, _, settings = store
    port = free_port()
    env = {
        **os.environ,
        "CTPIPE_STATE_DIR": str(settings.state_dir),
        # Recycle each of the two workers after 30 to 35 requests: the 300 below see several recycles.
        "CTPIPE_FEATURE_SERVER_MAX_REQUESTS": "30",
        "CTPIPE_FEATURE_SERVER_MAX_REQUESTS_JITTER": "5",
    }
    log = tmp_path / "feature-server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "ctpipe.feature_store", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"feast serve did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        request = {"feature_service": DATASET.feature_service, "entities": {DATASET.entity: ["LAB-001", "LAB-002"]}}
        response = requests.post(f"http://127.0.0.1:{port}/get-online-features", json=request, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        names = body["metadata"]["feature_names"]
        served = {name: body["results"][i]["values"] for i, name in enumerate(names)}
        # Feast's own server ignores the TTL: it matches the project's read as of the newest values.
        direct = online_features(
            feature_store, DATASET.feature_service, DATASET.entity, ["LAB-001", "LAB-002"], DAYS[-1].end
        )
        for name in FEATURES:
            assert served[name] == pytest.approx(direct[name]), name
        assert served[DATASET.entity] == ["LAB-001", "LAB-002"]

        # Each request on a connection of its own, as a caller without a pool sends them.
        statuses = [
            requests.post(f"http://127.0.0.1:{port}/get-online-features", json=request, timeout=30).status_code
            for _ in range(300)
        ]
        assert statuses == [200] * 300
        text = log.read_text()
        assert text.count("Maximum request limit of") >= 4, text[-3000:]
        assert '"POST /get-online-features' not in text  # no access log by default
    finally:
        server.terminate()
        server.wait(timeout=30)
