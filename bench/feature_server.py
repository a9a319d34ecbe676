"""Feast's feature server under load: across worker recycles, and while materialization runs.

    python -m bench.feature_server [--requests 3000] [--entities 10000] [--stores sqlite,redis]

1. Recycles: the server (``python -m ctpipe.feature_store serve``, the project's gunicorn
   settings) with each worker recycled after 600 to 630 requests, then ``--requests``
   requests from 4 threads, each on a connection of its own (as a caller without a pool
   sends them), against the same load with recycling off. Goal: no request fails, none
   waits more than 100 ms.
2. During materialization: on each online store, while ``--entities`` entities are
   materialized three times over (a registry shared with the server, refreshed every
   second, so that the server sees the feature view's state change), two threads read: one
   through the server over HTTP, one through ``ctpipe.feature_store.OnlineReader``; the same
   reads with nothing materializing are the baseline. Goal: 0 failed reads (feast#6780).
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from pathlib import Path

from bench.harness import Row, emit, percentile
from bench.stores import DAY, feature_store, server

LIMIT_MS = 100.0


def post(port: int, body: str) -> tuple[str | None, float]:
    """One request on a connection of its own: (what went wrong, or None for a 200; milliseconds)."""
    started = time.perf_counter()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/get-online-features", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        error = None if response.status == 200 else f"HTTP {response.status}: {payload[:300]!r}"
    except OSError as failed:
        error = repr(failed)
    return error, (time.perf_counter() - started) * 1000


def load(port: int, body: str, requests: int, threads: int = 4) -> tuple[list[float], int]:
    """``requests`` requests from ``threads`` threads: (latencies in ms, failures)."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def worker(count: int) -> None:
        for _ in range(count):
            error, ms = post(port, body)
            with lock:
                latencies.append(ms)
                failures[0] += error is not None

    pool = [threading.Thread(target=worker, args=(requests // threads,)) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return latencies, failures[0]


def recycles(work: Path, requests: int, max_requests: int = 600) -> list[Row]:
    rows = []
    with feature_store(work, "sqlite", 1000) as bench:
        from ctpipe.feature_store import materialize

        materialize(bench.store, DAY)
        body = json.dumps(
            {"feature_service": bench.dataset.feature_service, "entities": {bench.dataset.entity: bench.entities[:5]}}
        )
        found = {}
        for name, limit in (("recycling", max_requests), ("no recycling", 0)):
            settings = {
                "CTPIPE_FEATURE_SERVER_MAX_REQUESTS": str(limit),
                "CTPIPE_FEATURE_SERVER_MAX_REQUESTS_JITTER": "30",
            }
            with server(bench, work, **settings) as (port, log):
                load(port, body, 200)  # warm-up
                latencies, failures = load(port, body, requests)
                found[name] = (latencies, failures, log.read_text().count("Maximum request limit of"))
        latencies, failures, restarts = found["recycling"]
        baseline, _, _ = found["no recycling"]
        worst = max(latencies)
        verdict = "met" if failures == 0 and worst < LIMIT_MS else "missed"
        rows.append(
            Row(
                f"feature server, {requests:,} requests, 4 threads, {restarts} worker recycles",
                f"2 workers, each recycled after {max_requests}-{max_requests + 30} requests",
                "same, never recycled",
                "ms max",
                worst,
                max(baseline),
                requests,
                note=f"{failures} failed; p99 {percentile(latencies, 0.99):.1f} vs {percentile(baseline, 0.99):.1f}; "
                f"goal: 0 failed and max < {LIMIT_MS:.0f} ms: {verdict}",
            )
        )
    return rows


def during_materialization(work: Path, online: str, entities: int) -> list[Row]:
    from ctpipe.feature_store import OnlineReader, materialize

    rows = []
    with feature_store(work, online, entities, registry_ttl_seconds=1) as bench:
        materialize(bench.store, DAY)
        reader = OnlineReader(bench.store, bench.dataset.feature_service, bench.dataset.entity)
        names = bench.entities[:20]
        body = json.dumps({"feature_service": bench.dataset.feature_service, "entities": {bench.dataset.entity: names}})
        with server(bench, work) as (port, _):

            def http_read() -> None:
                error, _ = post(port, body)
                if error:
                    raise RuntimeError(error)

            ways = {"project": lambda: reader.read(names, DAY.end), "HTTP": http_read}
            started = time.perf_counter()
            materialize(bench.store, DAY)  # how long one materialization takes, off the clock
            span = time.perf_counter() - started
            with Reads(ways) as idle:  # the baseline: the same reads for as long, nothing materializing
                time.sleep(3 * span)
            with Reads(ways) as busy:
                for _ in range(3):
                    materialize(bench.store, DAY)
        for way in ways:
            latencies, errors, quiet = busy.latencies[way], busy.errors[way], idle.latencies[way]
            rows.append(
                Row(
                    f"reads during materialization of {entities:,} entities ({online})",
                    "OnlineReader.read" if way == "project" else "feature server, HTTP",
                    "same reads, nothing materializing",
                    "ms p99",
                    percentile(latencies, 0.99),
                    percentile(quiet, 0.99),
                    len(latencies),
                    note=f"{len(errors)} of {len(latencies)} failed (goal 0: {'met' if not errors else 'missed'})"
                    + (f"; {errors[0]}" if errors else ""),
                )
            )
    return rows


class Reads:
    """While the block runs, each way reads again and again in a thread of its own: latencies and errors."""

    def __init__(self, ways: dict):
        self.ways = ways
        self.latencies: dict[str, list[float]] = {name: [] for name in ways}
        self.errors: dict[str, list[str]] = {name: [] for name in ways}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(name,)) for name in ways]

    def run(self, name: str) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                self.ways[name]()
            except Exception as error:  # every failed read is counted and shown
                self.errors[name].append(repr(error)[:200])
            self.latencies[name].append((time.perf_counter() - started) * 1000)
            time.sleep(0.002)

    def __enter__(self) -> Reads:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--stores", type=lambda t: t.split(","), default=["sqlite", "redis"])
    parser.add_argument("--quick", action="store_true", help="fewer requests and entities: a smoke test")
    args = parser.parse_args()
    requests, entities = (1600, 1000) if args.quick else (args.requests, args.entities)
    work = Path(tempfile.mkdtemp(prefix="ctpipe-bench-server-"))
    rows = recycles(work, requests, 300 if args.quick else 600)
    for online in args.stores:
        rows += during_materialization(work, online, entities)
    emit(rows)


if __name__ == "__main__":
    main()
