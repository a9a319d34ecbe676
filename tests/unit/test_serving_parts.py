"""The prediction service's parts that need no server: the policy tag, sticky assignment, the log writer, the schema."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import ValidationError

from ctpipe.datasets import get_dataset
from ctpipe.serving.app import RequestAccounting
from ctpipe.serving.metrics import Metrics
from ctpipe.serving.prediction_log import SERVED_AT, PredictionLog
from ctpipe.serving.schema import event_model
from ctpipe.serving.traffic import TAG, TrafficPolicy, bucket, to_challenger
from ctpipe.settings import Serving


def test_a_policy_round_trips_through_its_one_tag_and_nonsense_is_named():
    policy = TrafficPolicy("canary", 0.1, "order_id", "person: ana", "first look", "2026-12-01T00:00:00+00:00")
    assert TrafficPolicy.from_tags({TAG: policy.to_tag()}) == policy
    assert TrafficPolicy.from_tags({}) == TrafficPolicy()  # none set: the champion answers
    with pytest.raises(ValueError, match=r"traffic_policy=.* is not a traffic policy"):
        TrafficPolicy.from_tags({TAG: '{"policy": "everyone", "share": 0.5}'})
    with pytest.raises(ValueError, match="give it no share"):
        TrafficPolicy("shadow", 0.3)
    with pytest.raises(ValueError, match="between 0 and 1"):
        TrafficPolicy("ab", 1.5)


def test_assignment_is_sticky_uniform_and_redrawn_for_a_new_challenger():
    keys = [f"seller-{i}" for i in range(20_000)]
    canary = TrafficPolicy("canary", 0.1)
    first = to_challenger(canary, keys, "7")
    assert first == to_challenger(canary, keys, "7")  # the same in every process: no per-process salt
    assert abs(sum(first) / len(keys) - 0.1) < 0.01
    assert first != to_challenger(canary, keys, "8")  # a new experiment draws anew
    assert not any(to_challenger(TrafficPolicy("shadow"), keys, "7"))
    assert 0.0 <= min(bucket(k, "x") for k in keys) and max(bucket(k, "x") for k in keys) < 1.0


def served(n: int, at: datetime) -> dict[str, np.ndarray]:
    stamp = np.datetime64(at.replace(tzinfo=None), "us")
    return {"request_id": np.array([f"r{i}" for i in range(n)]), SERVED_AT: np.full(n, stamp), "score": np.full(n, 0.5)}


def test_the_log_writes_by_size_by_time_and_on_close_one_file_per_hour(tmp_path):
    log = PredictionLog(tmp_path, flush_rows=100, flush_seconds=0.3)
    noon = datetime(2026, 12, 1, 12, 59, 59, tzinfo=UTC)
    log.append(served(150, noon))  # over the size: written at once
    deadline = time.monotonic() + 5
    while log.written < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.written == 150
    log.append(served(5, noon + timedelta(seconds=2)))  # a new hour, under the size: written after 0.3 s
    time.sleep(1.0)
    assert log.written == 155 and log.buffered == 0
    log.append(served(3, noon))
    assert log.close() == 3  # the shutdown writes the rest
    hours = sorted(p.name for p in tmp_path.iterdir())
    assert hours == ["hour=20261201T12", "hour=20261201T13"]
    frame = pd.concat(pd.read_parquet(p) for p in tmp_path.glob("hour=*/*.parquet"))
    assert len(frame) == 158 and not list(tmp_path.rglob("*.tmp"))
    assert str(frame[SERVED_AT].dt.tz) == "UTC" and frame[SERVED_AT].min() == pd.Timestamp(noon)


def test_the_event_schema_follows_the_spec_with_the_gates_rules():
    dataset = get_dataset("lab_qc")
    event = event_model(dataset)
    good = {
        "sample_id": "S-1",
        "lab_id": "LAB-001",
        "sample_type": "RNA",
        "concentration_ng_ul": 40.0,
        "volume_ul": 50.0,
        "a260_280": 2.0,
        "a260_230": 2.0,
        "rin": 7.5,
        "storage_temp_c": -80.0,
        "transit_hours": 12.0,
        "courier": "BioFreight",
    }
    assert event.model_validate(good).submitted_at is None  # the time of the request, then
    assert event.model_validate({**good, "rin": None}).rin is None  # nullable in the spec
    with pytest.raises(ValidationError) as raised:
        event.model_validate({**good, "sample_type": "blood", "a260_280": 9.0, "lab_id": " LAB-1", "extra": 1})
    fields = {".".join(map(str, e["loc"])) for e in raised.value.errors()}
    assert fields == {"sample_type", "a260_280", "lab_id", "extra"}
    with pytest.raises(ValidationError, match="timezone"):
        event.model_validate({**good, "submitted_at": "2026-03-01T10:00:00"})  # a naive time is ambiguous


def test_every_answer_carries_its_request_id_and_an_unexpected_error_is_a_json_500():
    """The service's middleware on a real ASGI stack: ids, the size and login checks, the 500, the metrics."""
    metrics = Metrics()
    app = FastAPI()
    app.add_middleware(RequestAccounting, config=Serving(token="t" * 16), max_bytes=64, metrics=lambda: metrics)

    @app.get("/v1/models")
    def models(request: Request) -> dict[str, str]:
        request.state.variants = {"champion"}
        return {"request_id": request.state.request_id}

    @app.post("/v1/predict")
    def predict() -> None:
        raise RuntimeError("a detail no caller should see")

    auth = {"Authorization": "Bearer " + "t" * 16}
    with TestClient(app, raise_server_exceptions=False) as client:
        given = client.get("/v1/models", headers={**auth, "X-Request-ID": "caller-7"})
        made = client.get("/v1/models", headers=auth)
        failed = client.post("/v1/predict", headers={**auth, "X-Request-ID": "boom"}, json={})
        too_big = client.post("/v1/predict", headers=auth, content=b"x" * 65)
        refused = client.get("/v1/models", headers={"X-Request-ID": "no-login"})
    assert given.json() == {"request_id": "caller-7"} and given.headers.get_list("X-Request-ID") == ["caller-7"]
    assert len(made.headers["X-Request-ID"]) == 32 and made.json()["request_id"] == made.headers["X-Request-ID"]
    assert failed.status_code == 500 and failed.headers["X-Request-ID"] == "boom"
    assert failed.json() == {
        "detail": "internal error; the service logged it under this request_id",
        "request_id": "boom",
    }
    assert "detail no caller" not in failed.text
    assert too_big.status_code == 413 and "over 64 bytes" in too_big.json()["detail"]
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert refused.json()["request_id"] == "no-login" and refused.headers.get_list("X-Request-ID") == ["no-login"]
    count = metrics.registry.get_sample_value
    assert (
        count("ctpipe_serving_requests_total", {"endpoint": "/v1/models", "status": "200", "variant": "champion"}) == 2
    )
    assert count("ctpipe_serving_errors_total", {"endpoint": "/v1/predict", "status": "500"}) == 1
    assert count("ctpipe_serving_errors_total", {"endpoint": "/v1/predict", "status": "413"}) == 1
    assert count("ctpipe_serving_errors_total", {"endpoint": "/v1/models", "status": "401"}) == 1
    assert count("ctpipe_serving_request_seconds_count", {"endpoint": "/v1/predict"}) == 2
