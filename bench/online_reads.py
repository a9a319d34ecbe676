"""Online feature reads, four ways, against a raw pipelined HMGET of the same Redis keys.

    python -m bench.online_reads [--entities 1000] [--requests 2000] [--batches 1,100]

One day of feature rows for ``--entities`` entities is materialized into Redis (a project of
its own; its keys are deleted afterwards). Then, for each batch size, the same random
batches of entities are read ``--requests`` times each way, round-robin so that all ways
share the machine's noise:
- raw: redis-py, one client, one pipeline of ``HMGET key <fields>`` per batch (the keys and
  field names computed beforehand), values left as bytes;
- project: ``ctpipe.feature_store.OnlineReader.read`` -- one reader per process, as the
  prediction service keeps it; values decoded, the TTL applied;
- SDK: ``FeatureStore.get_online_features(features=<service>, entity_rows=...).to_dict()``;
- HTTP: Feast's feature server (``python -m ctpipe.feature_store serve``) over one kept-alive
  connection, ``POST /get-online-features``.
Each way is warmed up first. The table's figure is the p99 in ms; the goal for the project's
read is at most 2x raw, for 1 and for 100 entities.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from bench.harness import Row, emit, percentile
from bench.stores import DAY, feature_store, server

GOAL = 2.0


def raw_reader(bench):
    """A pipelined HMGET of the same keys and fields Feast reads, the key bytes built once, no decoding."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.redis import _mmh3
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    view = bench.dataset.feature_view
    fields = [_mmh3(f"{view}:{a.name}") for a in bench.dataset.aggregates] + [f"_ts:{view}"]
    version = bench.store.config.entity_key_serialization_version
    keys = {
        name: serialize_entity_key(
            EntityKey(join_keys=[bench.dataset.entity], entity_values=[Value(string_val=name)]), version
        )
        + bench.project.encode()
        for name in bench.entities
    }
    client = bench.redis()

    def read(batch: list[str]) -> list:
        pipe = client.pipeline(transaction=False)
        for name in batch:
            pipe.hmget(keys[name], fields)
        return pipe.execute()

    return read


def http_reader(port: int, bench):
    """One kept-alive connection to the feature server on ``port``."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    service, entity = bench.dataset.feature_service, bench.dataset.entity

    def read(batch: list[str]) -> bytes:
        body = json.dumps({"feature_service": service, "entities": {entity: batch}})
        connection.request("POST", "/get-online-features", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise SystemExit(f"the feature server answered {response.status}: {payload[:500]!r}")
        return payload

    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000, help="reads per way and batch size")
    parser.add_argument("--batches", type=lambda t: [int(s) for s in t.split(",")], default=[1, 100])
    parser.add_argument("--quick", action="store_true", help="200 reads each: a smoke test")
    args = parser.parse_args()
    requests = 200 if args.quick else args.requests

    from ctpipe.feature_store import OnlineReader, materialize

    work = Path(tempfile.mkdtemp(prefix="ctpipe-bench-reads-"))
    rows = []
    with feature_store(work, "redis", args.entities) as bench:
        materialize(bench.store, DAY)
        dataset, store = bench.dataset, bench.store
        reader = OnlineReader(store, dataset.feature_service, dataset.entity)
        service = store.get_feature_service(dataset.feature_service)
        with server(bench, work) as (port, _):
            ways = {
                "raw": raw_reader(bench),
                "project": lambda batch: reader.read(batch, DAY.end),
                "SDK": lambda batch: store.get_online_features(
                    features=service, entity_rows=[{dataset.entity: v} for v in batch]
                ).to_dict(),
                "HTTP": http_reader(port, bench),
            }
            sample = random.Random(11)
            for size in args.batches:
                batches = [sample.sample(bench.entities, size) for _ in range(requests)]
                # The project's read returns the right values: the same as the SDK's, entity by entity.
                got, expected = ways["project"](batches[0]), ways["SDK"](batches[0])
                for a in dataset.aggregates:
                    if got[a.name] != expected[a.name]:
                        raise SystemExit(f"the project's read of {a.name} differs from the SDK's")
                latencies: dict[str, list[float]] = {name: [] for name in ways}
                for batch in batches[:50]:  # warm-up
                    for read in ways.values():
                        read(batch)
                for batch in batches:
                    for name, read in ways.items():
                        started = time.perf_counter()
                        read(batch)
                        latencies[name].append((time.perf_counter() - started) * 1000)
                raw99, raw50 = percentile(latencies["raw"], 0.99), percentile(latencies["raw"], 0.5)
                for name in ("project", "SDK", "HTTP"):
                    rows.append(
                        Row(
                            f"online read, {size} entit{'y' if size == 1 else 'ies'} (Redis)",
                            {
                                "project": "OnlineReader.read",
                                "SDK": "FeatureStore.get_online_features",
                                "HTTP": "feature server, HTTP",
                            }[name],
                            "pipelined HMGET",
                            "ms p99",
                            percentile(latencies[name], 0.99),
                            raw99,
                            requests,
                            goal=GOAL if name == "project" else None,
                            note=f"p50 {percentile(latencies[name], 0.5):.2f} vs {raw50:.2f}",
                        )
                    )
    emit(rows)


if __name__ == "__main__":
    main()
