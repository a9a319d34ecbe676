"""The prediction service against a raw baseline doing the same work, on the state `make run` leaves.

    python -m bench.serving [--requests 300] [--concurrency 1,8,32] [--events 1,100]

Starts ``python -m ctpipe.serving`` on the configured stores (SQLite by default, Redis in
production) and sends the last day's events again, stamped just after the online store's
newest values, as callers would. For every (events per request, concurrency) it measures
p50, p99 and throughput over HTTP. In the same run, the raw baseline does the same work in
this process with as many threads: one raw read of the same entities' rows in the online
store (a pipelined ``HMGET`` for Redis, one ``SELECT`` for SQLite) and ``predict`` of the
same loaded model on a prebuilt frame. The goals: the service's p99 at most 2x the
baseline's for 1 event, 1.5x for 100. Last, it moves the champion alias while requests
flow and reports the slowest request from each move until the new version answers (goal:
under 100 ms), beside a control window of the same traffic in which nothing moves.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from bench.harness import Row, emit
from ctpipe.serving.upstream import ServiceNotReady, ServiceProcess
from ctpipe.settings import Settings, single_threaded_models


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def load(call: Callable[[int], None], concurrency: int, requests: int) -> dict[str, float]:
    """Run ``requests`` calls over ``concurrency`` threads; latency percentiles in ms and calls per second."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            started = time.perf_counter()
            call(i)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed * 1000)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "per_s": round(requests / wall, 1),
    }


def bench_events(settings: Settings) -> list[dict[str, Any]]:
    """The last validated day's events, stamped an hour after the online store's newest values."""
    from ctpipe.feature_store import load_store, materialized_until
    from ctpipe.lake import Lake

    dataset = settings.dataset
    store = load_store(settings)
    newest = materialized_until(store, dataset.feature_view)
    if newest is None:
        raise SystemExit("the online store is empty: run `make run` first")
    spec = dataset.events
    lake = Lake(settings.lake_dir)
    frame = pd.concat(pd.read_parquet(path) for _, path in lake.partitions("validated", spec.name)[-2:])
    frame = frame[[c.name for c in spec.columns]].reset_index(drop=True)
    frame[spec.timestamp] = (newest + timedelta(hours=1)).isoformat()
    events = json.loads(frame.to_json(orient="records"))
    return [{k: v for k, v in e.items() if v is not None} for e in events]


class RawBaseline:
    """The same entities read raw from the online store, and the same models predicting on a prebuilt frame.

    ``models`` is what the service runs for each row: the champion alone, both on every row
    in shadow, or each on the rows the policy assigns it (``assigned``: True for the challenger).
    """

    def __init__(
        self,
        settings: Settings,
        entities: list[str],
        inputs: pd.DataFrame,
        models: list[Any],
        assigned: np.ndarray | None = None,
    ):
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        from ctpipe.feature_store import load_store

        self.settings = settings
        self.inputs, self.models, self.assigned = inputs, models, assigned
        store = load_store(settings)
        config = store.config
        dataset = settings.dataset
        version = config.entity_key_serialization_version
        view = store.get_feature_view(dataset.feature_view)
        self.online = settings.feast_online_store
        from feast.infra.key_encoding_utils import serialize_entity_key

        keys = [
            serialize_entity_key(
                EntityKey(join_keys=[dataset.entity], entity_values=[Value(string_val=e)]),
                entity_key_serialization_version=version,
            )
            for e in entities
        ]
        self.local = threading.local()
        if self.online["type"] == "redis":
            from feast.infra.online_stores.redis import _mmh3

            self.keys = [k + config.project.encode() for k in keys]
            self.fields = [_mmh3(f"{view.name}:{f.name}") for f in view.features] + [f"_ts:{view.name}"]
        else:
            self.keys = keys
            self.table = f"{config.project}_{view.name}"
            self.path = self.online.get("path") or str(settings.feast_dir / "online_store.db")

    def _connection(self) -> Any:
        if not hasattr(self.local, "client"):
            if self.online["type"] == "redis":
                import redis

                from ctpipe.settings import redis_nodes

                nodes, params = redis_nodes(self.online)
                (host, port) = nodes[0]
                self.local.client = redis.Redis(host=host, port=port, password=params.get("password"))
            else:
                self.local.client = sqlite3.connect(self.path, check_same_thread=False)
        return self.local.client

    def read(self, rows: slice) -> Any:
        client = self._connection()
        keys = self.keys[rows]
        if self.online["type"] == "redis":
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(key, self.fields)
            return pipe.execute()
        marks = ",".join("?" * len(keys))
        query = f'SELECT entity_key, feature_name, value, event_ts FROM "{self.table}" WHERE entity_key IN ({marks})'
        return client.execute(query, keys).fetchall()

    def __call__(self, rows: slice) -> None:
        from ctpipe.models import failure_probability

        self.read(rows)
        inputs = self.inputs.iloc[rows]
        if self.assigned is None:  # the champion alone, or shadow: every model on every row
            for model in self.models:
                failure_probability(model, inputs)
            return
        chosen = self.assigned[rows]
        for model, part in zip(self.models, (~chosen, chosen), strict=True):
            if part.any():
                failure_probability(model, inputs[part])


def start_service(port: int) -> ServiceProcess:
    """The service as ``make serve`` runs it, with no login (the baseline has none), its log in a temporary file."""
    env = Settings.from_env().child_environment()
    for secret in ("CTPIPE_SERVING_TOKEN", "CTPIPE_SERVING_METRICS_TOKEN"):
        env.pop(secret, None)
    log = Path(tempfile.mkdtemp(prefix="bench-serving-")) / "serving.log"
    try:
        return ServiceProcess(env, log, port).start()
    except ServiceNotReady as error:
        raise SystemExit(f"{error}\n(is there a champion? run `make run`)") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="per measurement")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--events", default="1,100", help="events per request")
    parser.add_argument("--port", type=int, default=8077)
    parser.add_argument("--quick", action="store_true", help="40 requests, concurrency 1, no alias swap: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.concurrency = 40, "1"
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    sizes = [int(n) for n in args.events.split(",")]

    # The service runs its models on one OpenMP thread; so does the baseline.
    single_threaded_models()
    from ctpipe.feature_store import OnlineReader, load_store
    from ctpipe.registry import CHALLENGER, CHAMPION, alias_version, set_champion, versions
    from ctpipe.serving.traffic import read_policy, to_challenger
    from ctpipe.tracking import connect, load_model
    from ctpipe.training_set import model_input

    settings = Settings.from_env()
    dataset = settings.dataset
    tracking = connect(settings)
    champion = alias_version(tracking.client, dataset.model_name, CHAMPION)
    if champion is None:
        raise SystemExit("no champion: run `make run` first")
    events = bench_events(settings)
    challenger = alias_version(tracking.client, dataset.model_name, CHALLENGER)
    policy = read_policy(tracking.client, dataset.model_name)
    if challenger is not None and (challenger.version == champion.version or not policy.needs_challenger):
        challenger = None  # as the service sees it: the champion answers alone
    models = [load_model(tracking, f"models:/{dataset.model_name}/{champion.version}")]
    frame = pd.DataFrame(events, columns=[c.name for c in dataset.events.columns])
    assigned = None
    if challenger is not None:
        models.append(load_model(tracking, f"models:/{dataset.model_name}/{challenger.version}"))
        if policy.policy != "shadow":
            keys = frame[policy.key or dataset.entity].astype(str).tolist()
            assigned = np.array(to_challenger(policy, keys, challenger.version), dtype=bool)
    reader = OnlineReader(load_store(settings), dataset.feature_service, dataset.entity)
    for name, values in reader.read(frame[dataset.entity].tolist()).items():
        if name in reader.features:
            frame[name] = values
    inputs = model_input(dataset, frame)
    baseline = RawBaseline(settings, frame[dataset.entity].tolist(), inputs, models, assigned)
    print(
        json.dumps(
            {
                "champion": champion.version,
                "challenger": challenger.version if challenger else None,
                "policy": policy.policy if challenger else "champion_only",
                "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
            }
        ),
        flush=True,
    )

    process = start_service(args.port)
    url = f"http://127.0.0.1:{args.port}/v1/predict"
    clients = threading.local()

    def served(n: int) -> Callable[[int], None]:
        def call(i: int) -> None:
            if not hasattr(clients, "http"):
                clients.http = httpx.Client(timeout=60)
            start = (i * n) % max(1, len(events) - n)
            response = clients.http.post(url, json={"events": events[start : start + n]})
            response.raise_for_status()

        return call

    def raw(n: int) -> Callable[[int], None]:
        def call(i: int) -> None:
            start = (i * n) % max(1, len(events) - n)
            baseline(slice(start, start + n))

        return call

    rows = []
    try:
        for n in sizes:
            load(served(n), 4, 40)  # warm both paths
            load(raw(n), 4, 40)
            for concurrency in concurrencies:
                service = load(served(n), concurrency, args.requests)
                base = load(raw(n), concurrency, args.requests)
                goal = 2.0 if n == 1 else 1.5
                ratio = service["p99_ms"] / base["p99_ms"]
                rows.append(
                    {
                        "events": n,
                        "concurrency": concurrency,
                        "service": service,
                        "raw": base,
                        "p99_ratio": round(ratio, 2),
                        "goal": f"<= {goal}x: {'pass' if ratio <= goal else 'miss'}",
                    }
                )
                print(json.dumps(rows[-1]), flush=True)

        # An alias swap under load: the slowest request from the alias move until a second after the
        # new version first answers (the poll, the load, the check, the swap), each way, against a
        # control window as long in which nothing moves.
        others = [v.version for v in versions(tracking.client, dataset.model_name) if v.version != champion.version]
        swap: dict[str, Any] = {"skipped": "only one model version" if not args.quick else "--quick"}
        if others and not args.quick:
            answered: list[tuple[float, float, str]] = []  # (monotonic time, ms, version)
            stop = threading.Event()

            def flow() -> None:
                with httpx.Client(timeout=60) as http:
                    while not stop.is_set():
                        started = time.perf_counter()
                        response = http.post(url, json={"events": events[:1]})
                        response.raise_for_status()
                        version = response.json()["predictions"][0]["version"]
                        answered.append((time.monotonic(), (time.perf_counter() - started) * 1000, version))

            def window(start: float, end: float) -> list[float]:
                return [ms for at, ms, _ in answered if start <= at <= end]

            def move(version: str, why: str) -> list[float]:
                version = str(version)  # the registry's versions may be numbers; answers carry text
                moved = time.monotonic()
                set_champion(tracking.client, dataset.model_name, version, "bench", why)
                deadline = moved + settings.serving.poll_seconds * 3 + 30
                while time.monotonic() < deadline:
                    served = [at for at, _, v in list(answered) if at >= moved and v == version]
                    if served:
                        time.sleep(1.0)
                        return window(moved, served[0] + 1.0)
                    time.sleep(0.05)
                raise SystemExit(f"the service never answered with version {version} after the alias moved")

            thread = threading.Thread(target=flow)
            thread.start()
            try:
                time.sleep(1.0)
                quiet_from = time.monotonic()
                time.sleep(settings.serving.poll_seconds + 1.0)
                control = window(quiet_from, time.monotonic())
                there = move(others[-1], "bench: swap under load")
                back = move(champion.version, "bench: swap back")
            finally:
                stop.set()
                thread.join()
            slowest = max(there + back)
            swap = {
                "requests_during_swaps": len(there) + len(back),
                "max_ms": round(slowest, 1),
                "median_ms": round(statistics.median(there + back), 2),
                "control_requests": len(control),
                "control_max_ms": round(max(control), 1),
                "control_median_ms": round(statistics.median(control), 2),
                "goal": f"< 100 ms: {'pass' if slowest < 100 else 'miss'}",
            }
        print(json.dumps({"alias_swap": swap}))
        table = [
            Row(
                f"prediction service, {r['events']} event{'s' if r['events'] > 1 else ''} a request, "
                f"{r['concurrency']} at a time",
                "POST /v1/predict over HTTP",
                "raw online read + predict, as many threads",
                "ms p99",
                r["service"]["p99_ms"],
                r["raw"]["p99_ms"],
                args.requests,
                goal=2.0 if r["events"] == 1 else 1.5,
                note=f"{r['service']['per_s']:.0f} vs {r['raw']['per_s']:.0f} requests/s",
            )
            for r in rows
        ]
        if "max_ms" in swap:
            table.append(
                Row(
                    "champion alias moved twice under 1-event traffic",
                    "slowest request from each move to the new version's answers",
                    "slowest request of a window with no move",
                    "ms max",
                    swap["max_ms"],
                    swap["control_max_ms"],
                    swap["requests_during_swaps"],
                    note=f"goal < 100 ms: {'met' if swap['max_ms'] < 100 else 'missed'}",
                )
            )
        emit(table)
    finally:
        process.stop()


if __name__ == "__main__":
    main()
