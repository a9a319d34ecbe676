"""What an upstream system does with the prediction service: run it, and send it events.

``ServiceProcess`` runs ``python -m ctpipe.serving`` as its own process on a free port and
waits for ``/readyz``; ``send_events`` posts events in batches, as a caller would. A batch
with a malformed event is refused whole (422), so it is sent again in halves, and those
halves in halves, until only the malformed events are refused, each with the field the
service named (a few requests more per bad event, not one per event of its batch). The main job
(``ctpipe.local_run``) uses both to score each simulated day's events, so the prediction
log fills as it would under real traffic; the tests run the service the same way.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from ctpipe.records import Interval
    from ctpipe.serving.traffic import TrafficPolicy
    from ctpipe.settings import Settings

BATCH = 50  # events per request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceNotReady(RuntimeError):
    """The service exited, or did not answer ``/readyz`` in time; the message ends with its log."""


class ServiceProcess:
    """``python -m ctpipe.serving`` on 127.0.0.1 and a free port, its output in ``log``."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None):
        self.env = env
        self.log_path = log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0, probe: str = "/readyz") -> ServiceProcess:
        """Start it and wait until ``probe`` answers 200 (``/healthz``: alive, whether or not it can score)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ctpipe.serving", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceNotReady(f"the service exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}{probe}", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise ServiceNotReady(f"the service did not answer {probe} in {timeout:.0f} s:\n{self.log_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the service (SIGTERM: it finishes what is in flight and writes its log's buffer) and wait."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def log_lines(self) -> list[dict]:
        """The service's log, one JSON object a line (anything else fails the caller's parse)."""
        return [json.loads(line) for line in self.log_text().splitlines() if line.strip()]


@dataclass
class Sent:
    """What the service answered for the events sent to it."""

    requests: int = 0
    served: Counter = field(default_factory=Counter)  # (version, variant) -> events answered
    refused: Counter = field(default_factory=Counter)  # "<field>: <problem>" -> events refused (422)

    def add(self, other: Sent) -> None:
        self.requests += other.requests
        self.served.update(other.served)
        self.refused.update(other.refused)


def as_json(event: dict[str, Any]) -> dict[str, Any]:
    """An event's values as JSON sends them: no NaN (a missing value is left out), timestamps in ISO 8601."""
    shown = {}
    for name, value in event.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        shown[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return shown


def source_events(settings: Settings, interval: Interval) -> list[dict[str, Any]]:
    """The events the source held for ``interval``, as an upstream system sent them: the raw partition.

    A value the lake could not type (null there, kept in ``_source_values``) is sent as the
    source had it, so the service sees what the upstream system sent.
    """
    import pandas as pd

    from ctpipe.lake import SOURCE_VALUES, Lake

    spec = settings.dataset.events
    path = Lake(settings.lake_dir).partition("raw", spec.name, interval)
    if not path.exists():
        return []
    events = []
    for row in pd.read_parquet(path).to_dict("records"):
        event = {c.name: row.get(c.name) for c in spec.columns}
        if row.get(SOURCE_VALUES):
            event.update(json.loads(row[SOURCE_VALUES]))
        events.append(event)
    return events


def send_events(
    client: httpx.Client, url: str, events: list[dict[str, Any]], token: str | None = None, batch: int = BATCH
) -> Sent:
    """Post ``events`` to ``url``'s ``/v1/predict`` in batches; a refused batch again in halves."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    sent = Sent()

    def post(chunk: list[dict[str, Any]]) -> httpx.Response:
        sent.requests += 1
        response = client.post(f"{url}/v1/predict", json={"events": chunk}, headers=headers)
        if response.status_code not in (200, 422):
            response.raise_for_status()
        return response

    def deliver(chunk: list[dict[str, Any]]) -> None:
        response = post(chunk)
        if response.status_code != 422:
            _count(sent, response)
        elif len(chunk) > 1:  # a malformed event refuses its batch: halve it until it stands alone
            middle = len(chunk) // 2
            deliver(chunk[:middle])
            deliver(chunk[middle:])
        else:
            problems = response.json()["detail"]
            first = problems[0] if problems else {"field": "body", "problem": "is not valid"}
            sent.refused[f"{first['field'].removeprefix('events.0.')}: {first['problem']}"] += 1

    for start in range(0, len(events), batch):
        deliver([as_json(e) for e in events[start : start + batch]])
    return sent


def wait_until_following(
    client: httpx.Client,
    url: str,
    aliases: dict[str, str],
    policy: TrafficPolicy,
    token: str | None = None,
    timeout: float = 60.0,
) -> None:
    """Wait until the service at ``url`` serves what the registry says now: these aliases and traffic policy.

    The service follows the registry by looking at it every ``CTPIPE_SERVING_POLL_SECONDS`` (or at
    once on MLflow's webhook). A caller that has just moved an alias or set a policy, and means the
    next events to be scored under it, waits here: otherwise which model scores them depends on how
    fast the caller was. Raises ``ServiceNotReady``, naming what still differs, after ``timeout``.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    wanted = {"aliases": aliases, "policy": policy.policy, "share": policy.share, "set_at": policy.set_at}
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"{url}/v1/models", headers=headers)
        answer.raise_for_status()
        body = answer.json()
        seen = {"aliases": body["aliases"], **{k: body["policy"][k] for k in ("policy", "share", "set_at")}}
        if seen == wanted:
            return
        if time.monotonic() > deadline:
            differ = {k: f"{seen[k]!r}, not {wanted[k]!r}" for k in wanted if seen[k] != wanted[k]}
            raise ServiceNotReady(f"the service at {url} still serves, after {timeout:.0f} s: {differ}")
        time.sleep(0.05)


def wait_until_logged(client: httpx.Client, url: str, metrics_token: str | None = None, timeout: float = 60.0) -> int:
    """Wait until the service at ``url`` has written every prediction it made to the lake; the rows written.

    The prediction log writes its buffer every ``CTPIPE_PREDICTION_LOG_FLUSH_SECONDS`` (or at
    ``CTPIPE_PREDICTION_LOG_FLUSH_ROWS``). A caller that reads the log next, as the main job's
    drift check and live evaluation do after each day's events, waits here for the buffer
    to be empty (``ctpipe_serving_prediction_log_buffered_rows`` is 0); otherwise what it
    reads depends on how fast it got there. Raises ``ServiceNotReady`` after ``timeout``,
    saying how many rows are still buffered and how many writes failed.
    """
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {metrics_token}"} if metrics_token else {}
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"{url}/metrics", headers=headers)
        answer.raise_for_status()
        seen = {
            sample.name: sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
            if sample.name.startswith("ctpipe_serving_prediction_log_")
        }
        buffered = seen.get("ctpipe_serving_prediction_log_buffered_rows")
        if buffered is None:
            raise ServiceNotReady(f"the service at {url} does not report its prediction log's buffer")
        if buffered == 0:
            return int(seen.get("ctpipe_serving_prediction_log_rows", 0))
        if time.monotonic() > deadline:
            failures = int(seen.get("ctpipe_serving_prediction_log_write_failures", 0))
            raise ServiceNotReady(
                f"the service at {url} still holds {int(buffered)} predictions unwritten after {timeout:.0f} s "
                f"({failures} failed writes; its log says why)"
            )
        time.sleep(0.05)


def _count(sent: Sent, response: httpx.Response) -> None:
    for prediction in response.json()["predictions"]:
        sent.served[(prediction["version"], prediction["variant"])] += 1
