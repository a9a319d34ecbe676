"""A throwaway feature store for the Feast benchmarks: the project's own repo, over generated feature rows.

``feature_store(work, online="redis"|"sqlite", entities=N)`` writes one day's feature
partition for ``N`` entities into a fresh lake under ``work`` (the schema the ``features``
DAG writes), points the pipeline's settings at it (a file registry there, a SQLite online
store there or Redis under a project of its own, whose keys are deleted afterwards),
registers the repo's definitions, and yields a ``Bench`` with the store and what a raw
baseline needs to do the same work; ``server(bench, work)`` runs the feature server on it.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ctpipe.records import Interval

REDIS = os.environ.get("CTPIPE_BENCH_REDIS", "127.0.0.1:6379")
DAY = Interval(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC))


@dataclass
class Bench:
    store: Any  # feast.FeatureStore
    settings: Any  # ctpipe.settings.Settings
    dataset: Any  # the dataset spec
    entities: list[str]
    partition: Path  # the day's feature partition
    project: str
    online: str  # "redis" or "sqlite"
    environment: dict[str, str]  # what a child process (the feature server) needs to open the same store

    def redis(self):
        import redis

        host, _, port = REDIS.partition(":")
        return redis.Redis(host=host, port=int(port or 6379))


def write_features(dataset: Any, path: Path, entities: list[str], stamp: datetime, seed: int = 3) -> None:
    """One feature row per entity stamped ``stamp``, with the schema the features DAG writes."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ctpipe.features import EVENT_TIMESTAMP, feature_schema

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({dataset.entity: entities, EVENT_TIMESTAMP: pd.Timestamp(stamp)})
    for spec in dataset.aggregates:
        if spec.type == "int":
            frame[spec.name] = rng.integers(0, 500, len(entities)).astype("int64")
        else:
            frame[spec.name] = rng.random(len(entities)) * 100
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, schema=feature_schema(dataset), preserve_index=False), path)


@contextmanager
def feature_store(
    work: Path, online: str = "redis", entities: int = 1000, registry_ttl_seconds: int | None = None
) -> Iterator[Bench]:
    from ctpipe.feature_store import apply_definitions, load_store
    from ctpipe.lake import Lake
    from ctpipe.settings import Settings

    project = f"bench_{online}_{os.getpid()}"
    state = work / f"state-{online}-{entities}"
    environment = {
        "CTPIPE_STATE_DIR": str(state),
        "CTPIPE_FEAST_PROJECT": project,
        "CTPIPE_FEAST_REGISTRY": json.dumps(
            {"registry_type": "file", "path": str(state / "feast" / "registry.db")}
            | ({} if registry_ttl_seconds is None else {"cache_ttl_seconds": registry_ttl_seconds})
        ),
        "CTPIPE_FEAST_ONLINE_STORE": json.dumps(
            {"type": "redis", "connection_string": REDIS}
            if online == "redis"
            else {"type": "sqlite", "path": str(state / "feast" / "online_store.db")}
        ),
        "CTPIPE_FEAST_OFFLINE_STORE": "{type: file}",
    }
    saved = {name: os.environ.get(name) for name in [*environment, "CTPIPE_FEATURES_DIR", "CTPIPE_LAKE_DIR"]}
    os.environ.update(environment)
    os.environ.pop("CTPIPE_FEATURES_DIR", None)
    os.environ.pop("CTPIPE_LAKE_DIR", None)
    bench = None
    try:
        settings = Settings.from_env()
        dataset = settings.dataset
        names = [f"LAB-{i:06d}" for i in range(entities)]
        partition = Lake(settings.lake_dir).partition("features", dataset.feature_view, DAY)
        write_features(dataset, partition, names, DAY.end - timedelta(microseconds=0))
        store = load_store(settings)
        apply_definitions(store, settings)
        bench = Bench(store, settings, dataset, names, partition, project, online, environment)
        yield bench
    finally:
        if bench is not None and online == "redis":
            client = bench.redis()
            keys = list(client.scan_iter(match=f"*{project}", count=10_000))
            for start in range(0, len(keys), 10_000):
                client.delete(*keys[start : start + 10_000])
            client.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def server(bench: Bench, work: Path, **settings: str) -> Iterator[tuple[int, Path]]:
    """The feature server (``python -m ctpipe.feature_store serve``) on ``bench``'s store: (port, its log).

    ``settings``: more of the pipeline's variables for it, e.g. ``CTPIPE_FEATURE_SERVER_MAX_REQUESTS``.
    """
    from ctpipe.serving.upstream import free_port

    port = free_port()
    log = work / f"feature-server-{port}.log"
    env = {**os.environ, **bench.environment, **settings}
    process = subprocess.Popen(
        [sys.executable, "-m", "ctpipe.feature_store", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                probe.request("GET", "/health")
                if probe.getresponse().status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the feature server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield port, log
    finally:
        process.terminate()
        process.wait(30)
