"""The prediction service over HTTP, as a caller meets it: a real uvicorn server on the second example's state.

The session's ``shop_run`` leaves a champion trained by the pipeline; the module copies
that state, trains and registers a second version (the challenger) and starts
``python -m ctpipe.serving`` on the copy with a token, a short registry poll and a small
prediction-log buffer. Every check goes through HTTP; the registry is changed the way the
pipeline and its command line change it.
"""

from __future__ import annotations

import math
import shutil
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pandas as pd
import pytest

from ctpipe.datasets import get_dataset
from ctpipe.serving.upstream import ServiceProcess

from .conftest import SHOP, SHOP_DAYS

pytestmark = pytest.mark.integration

DATASET = get_dataset(SHOP)
TOKEN = "serving-token-for-tests-0123456789"
METRICS_TOKEN = "metrics-token-for-tests-0123456789"
WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LAST_DAY = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=SHOP_DAYS - 1)
NEXT_DAY = LAST_DAY + timedelta(days=1)  # the online store holds the features stamped at its start


@pytest.fixture(scope="module")
def deployment(shop_run, tmp_path_factory):
    """A copy of the shop state with a champion and a challenger, and the settings the service runs with."""
    from ctpipe import registry
    from ctpipe.records import TrainingPlan
    from ctpipe.review import register_challenger
    from ctpipe.tracking import connect
    from ctpipe.training import train

    root = tmp_path_factory.mktemp("serving")
    state = root / "state"
    shutil.copytree(shop_run.state, state)
    env = {**shop_run.env, "CTPIPE_STATE_DIR": str(state)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        plan = TrainingPlan(cutoff=NEXT_DAY, trigger="manual", days=12, params={"max_iter": 40})
        registered = register_challenger(train(plan), plan, "person: tests")
        client = connect().client
        champion = registry.alias_version(client, DATASET.model_name, registry.CHAMPION).version
        assert registered.version != champion
        yield {
            "env": env,
            "state": state,
            "root": root,
            "client": client,
            "champion": str(champion),
            "challenger": str(registered.version),
        }


@pytest.fixture(scope="module")
def service(deployment):
    import os

    env = {
        **os.environ,
        **deployment["env"],
        "CTPIPE_SERVING_TOKEN": TOKEN,
        "CTPIPE_SERVING_METRICS_TOKEN": METRICS_TOKEN,
        "CTPIPE_SERVING_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CTPIPE_SERVING_POLL_SECONDS": "0.3",
        "CTPIPE_SERVING_MAX_EVENTS": "500",
        "CTPIPE_PREDICTION_LOG_FLUSH_ROWS": "200",
        "CTPIPE_PREDICTION_LOG_FLUSH_SECONDS": "0.5",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    process = ServiceProcess(env, deployment["root"] / "service.log").start()
    yield process
    process.stop()


def tomorrows_orders(deployment, n: int | None = None, prefix: str = "9") -> list[dict]:
    """The last day's validated orders placed again the next day, under new keys: the store has their features."""
    orders = pd.read_parquet(deployment["state"] / "lake" / "validated" / "orders")
    last = orders[orders["ordered_at"] >= pd.Timestamp(LAST_DAY)].sort_values("order_id").reset_index(drop=True)
    if n is not None:
        last = last.head(n)
    events = []
    for i, row in last.iterrows():
        event = {c.name: row[c.name] for c in DATASET.events.columns}
        event["order_id"] = f"O{NEXT_DAY:%Y%m%d}-{prefix}{i:04d}"
        event["ordered_at"] = (row["ordered_at"] + timedelta(days=1)).isoformat()
        event["items"], event["shipping_days"] = int(row["items"]), int(row["shipping_days"])
        events.append(event)
    return events


def predict(service, events, headers=None, **kwargs) -> httpx.Response:
    body = events if isinstance(events, dict) else {"events": events}
    return httpx.post(f"{service.url}/v1/predict", json=body, headers={**AUTH, **(headers or {})}, timeout=60, **kwargs)


def wait_for(service, check, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        models = httpx.get(f"{service.url}/v1/models", headers=AUTH, timeout=10).json()
        if check(models):
            return models
        time.sleep(0.1)
    raise AssertionError(f"the service did not follow the registry in {timeout:.0f} s: {models}")


def scrape(service) -> dict[tuple[str, tuple], float]:
    """``/metrics`` parsed: (sample name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{service.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def logged(deployment) -> pd.DataFrame:
    folder = deployment["state"] / "lake" / "predictions" / DATASET.model_name
    files = sorted(folder.glob("hour=*/*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()


def test_one_event_and_a_batch_are_scored_by_the_champion(service, deployment):
    [event, *batch] = tomorrows_orders(deployment, 21)
    one = predict(service, event, headers={"X-Request-ID": "caller-42"})
    assert one.status_code == 200, one.text
    assert one.headers["X-Request-ID"] == "caller-42"
    [answer] = one.json()["predictions"]
    assert answer["request_id"] == "caller-42" and answer["event"] == event["order_id"]
    assert answer["entity"] == event["seller_id"] and answer["model"] == DATASET.model_name
    assert (answer["variant"], answer["version"]) == ("champion", deployment["champion"])
    assert 0.0 <= answer["score"] <= 1.0
    assert answer["label"] == ("returned" if answer["score"] >= 0.5 else "kept")
    assert not answer["unknown_entity"] and not answer["stale_features"]

    many = predict(service, batch)
    assert many.status_code == 200, many.text
    body = many.json()
    assert len(body["request_id"]) == 32 and many.headers["X-Request-ID"] == body["request_id"]
    assert [p["event"] for p in body["predictions"]] == [e["order_id"] for e in batch]
    assert {p["version"] for p in body["predictions"]} == {deployment["champion"]}


def test_the_served_input_and_score_equal_the_offline_path(service, deployment, monkeypatch):
    """No training/serving skew: what the service fed the model is what training's own path builds."""
    from ctpipe.feature_store import historical_features, load_store
    from ctpipe.models import failure_probability
    from ctpipe.settings import Settings
    from ctpipe.tracking import connect, load_model
    from ctpipe.training_set import EVENT_TIMESTAMP, model_input

    events = tomorrows_orders(deployment, 60, prefix="8")
    response = predict(service, events, headers={"X-Request-ID": "skew-check"})
    assert response.status_code == 200, response.text
    served = {p["event"]: p["score"] for p in response.json()["predictions"]}

    for name, value in deployment["env"].items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    frame = pd.DataFrame(events)
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame.pop("ordered_at"), utc=True)
    offline = historical_features(load_store(settings), DATASET.feature_service, frame)
    offline = offline.set_index("order_id").loc[frame["order_id"]].reset_index()
    inputs = model_input(DATASET, offline)
    model = load_model(connect(settings), f"models:/{DATASET.model_name}/{deployment['champion']}")
    expected = dict(zip(offline["order_id"], failure_probability(model, inputs), strict=True))

    time.sleep(1.5)  # the log's buffer: half a second
    log = logged(deployment)
    answered = log[(log["request_id"] == "skew-check") & log["returned"]]  # not a shadow's scores
    rows = answered.set_index("order_id").loc[offline["order_id"]]
    logged_inputs = rows[[f"input.{c}" for c in inputs.columns]].set_axis(inputs.columns, axis=1)
    pd.testing.assert_frame_equal(logged_inputs.reset_index(drop=True), inputs.reset_index(drop=True))
    assert inputs[[a.name for a in DATASET.aggregates]].notna().all().all()  # the store had every seller
    for key, score in served.items():
        assert score == pytest.approx(expected[key], abs=1e-12)


def test_an_unknown_seller_and_stale_values_are_scored_and_flagged(service, deployment):
    [known, unknown, stale] = tomorrows_orders(deployment, 3, prefix="7")
    unknown["seller_id"] = "seller-9999"
    stale["ordered_at"] = (NEXT_DAY + timedelta(days=5)).isoformat()  # the store's values are 5 days old then
    response = predict(service, [known, unknown, stale])
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert [(a["unknown_entity"], a["stale_features"]) for a in answers] == [
        (False, False),
        (True, False),
        (False, True),
    ]
    assert all(0.0 <= a["score"] <= 1.0 for a in answers)
    samples = scrape(service)
    assert samples[("ctpipe_serving_missing_features_total", (("reason", "unknown_entity"),))] >= 1
    assert samples[("ctpipe_serving_missing_features_total", (("reason", "stale"),))] >= 1


def test_bad_requests_get_clear_errors_without_stack_traces(service, deployment):
    [event] = tomorrows_orders(deployment, 1, prefix="6")
    wrong = {**event, "amount": -5, "category": "gift_cards", "colour": "red"}
    response = predict(service, wrong)
    assert response.status_code == 422
    problems = {p["field"]: p["problem"] for p in response.json()["detail"]}
    assert set(problems) == {"events.0.amount", "events.0.category", "events.0.colour"}, problems
    assert "greater than or equal to 0.01" in problems["events.0.amount"]
    missing = predict(service, {k: v for k, v in event.items() if k != "seller_id"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "events.0.seller_id"
    garbage = httpx.post(f"{service.url}/v1/predict", content=b"{not json", headers=AUTH)
    assert garbage.status_code == 422 and "not JSON" in garbage.json()["detail"][0]["problem"]

    too_many = predict(service, [event] * 501)
    assert too_many.status_code == 413 and "at most 500" in too_many.json()["detail"]
    too_big = httpx.post(f"{service.url}/v1/predict", content=b" " * 3_000_000, headers=AUTH)
    assert too_big.status_code == 413

    for answer in (response, missing, garbage, too_many, too_big):
        assert "Traceback" not in answer.text and 'File "' not in answer.text


def test_every_endpoint_but_the_probes_needs_the_token(service):
    for path in ("/v1/models", "/metrics", "/docs", "/openapi.json"):
        assert httpx.get(f"{service.url}{path}").status_code == 401, path
    assert httpx.post(f"{service.url}/v1/predict", json={"events": []}).status_code == 401
    wrong = httpx.get(f"{service.url}/v1/models", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    assert httpx.get(f"{service.url}/metrics", headers=AUTH).status_code == 401  # it has its own token
    assert httpx.get(f"{service.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200
    assert httpx.get(f"{service.url}/healthz").json() == {"status": "alive"}
    assert httpx.get(f"{service.url}/readyz").json()["status"] == "ready"
    schema = httpx.get(f"{service.url}/openapi.json", headers=AUTH).json()
    event = schema["components"]["schemas"]["OrdersEvent"]
    assert set(event["properties"]) == {c.name for c in DATASET.events.columns}
    assert "payment" in event["required"] and "ordered_at" not in event.get("required", [])


def test_shadow_scores_every_request_with_the_challenger_and_changes_no_answer(service, deployment):
    from ctpipe.serving.traffic import set_policy

    events = tomorrows_orders(deployment, 40, prefix="5")
    before = predict(service, events).json()["predictions"]
    set_policy(deployment["client"], DATASET.model_name, "shadow", "person: tests", "shadow test")
    wait_for(service, lambda m: m["policy"]["in_force"] == "shadow")
    during = predict(service, events, headers={"X-Request-ID": "shadowed"}).json()["predictions"]
    assert [(p["variant"], p["version"], p["score"]) for p in during] == [
        (p["variant"], p["version"], p["score"]) for p in before
    ]
    time.sleep(1.5)
    log = logged(deployment)
    rows = log[log["request_id"] == "shadowed"]
    shadow = rows[rows["variant"] == "challenger"]
    assert len(shadow) == len(events) and not shadow["returned"].any()
    assert set(shadow["model_version"]) == {deployment["challenger"]}
    assert rows[rows["variant"] == "champion"]["returned"].all()
    assert not np.allclose(shadow["score"].to_numpy(), rows[rows["variant"] == "champion"]["score"].to_numpy())


def test_a_caller_waits_until_the_service_serves_what_the_registry_says(service, deployment):
    """What the main job does before each day's events: a registry change is in force before they are sent."""
    from ctpipe.serving.live_models import registry_view
    from ctpipe.serving.traffic import set_policy
    from ctpipe.serving.upstream import ServiceNotReady, wait_until_following

    client = deployment["client"]
    set_policy(client, DATASET.model_name, "shadow", "person: tests", "set again, to be waited for")
    aliases, policy = registry_view(client, DATASET.model_name)
    with httpx.Client(timeout=10) as http:
        wait_until_following(http, service.url, aliases, policy, TOKEN, timeout=30)
        models = http.get(f"{service.url}/v1/models", headers=AUTH).json()
        assert models["aliases"] == aliases
        assert (models["policy"]["reason"], models["policy"]["set_at"]) == (policy.reason, policy.set_at)
        with pytest.raises(ServiceNotReady, match=r"'aliases'.*999"):
            wait_until_following(http, service.url, {**aliases, "champion": "999"}, policy, TOKEN, timeout=0.5)


def test_a_caller_waits_until_what_it_sent_is_in_the_prediction_log(service, deployment):
    """What the main job does after each day's events: its drift check and live evaluation then read all of them."""
    from ctpipe.serving.upstream import send_events, wait_until_logged

    events = tomorrows_orders(deployment, 7, prefix="6")  # under the flush size: written by the timer
    with httpx.Client(timeout=30) as http:
        sent = send_events(http, service.url, events, TOKEN)
        assert sum(sent.served.values()) == len(events)
        written = wait_until_logged(http, service.url, METRICS_TOKEN, timeout=30)
        with pytest.raises(httpx.HTTPStatusError, match="401"):
            wait_until_logged(http, service.url, TOKEN, timeout=1)  # /metrics has a token of its own
    log = logged(deployment)
    assert written >= len(events)  # this process's rows, earlier tests' too
    assert {e["order_id"] for e in events} <= set(log["order_id"])


def test_a_canary_sends_its_share_and_assignment_is_sticky(service, deployment):
    from ctpipe.serving.traffic import set_policy

    share, n = 0.2, 400
    events = tomorrows_orders(deployment, None, prefix="4")
    events = [{**events[i % len(events)], "order_id": f"O{NEXT_DAY:%Y%m%d}-{i:05d}"} for i in range(n)]
    set_policy(deployment["client"], DATASET.model_name, "canary", "person: tests", "canary test", share, "order_id")
    wait_for(service, lambda m: (m["policy"]["in_force"], m["policy"]["share"]) == ("canary", share))
    first = predict(service, events, headers={"X-Request-ID": "canary"}).json()["predictions"]
    to_challenger = [p["variant"] == "challenger" for p in first]
    assert {p["version"] for p in first if p["variant"] == "challenger"} == {deployment["challenger"]}
    # Both models scored every event, so each labelled one gives the experiment a pair; one answer was returned.
    time.sleep(1.5)
    log = logged(deployment)
    rows = log[log["request_id"] == "canary"]
    for variant, version in (("champion", deployment["champion"]), ("challenger", deployment["challenger"])):
        mine = rows[rows["variant"] == variant].set_index("order_id").loc[[e["order_id"] for e in events]]
        assert set(mine["model_version"]) == {version}
        answered = [p["variant"] == variant for p in first]
        assert mine["returned"].tolist() == answered
        scores = [p["score"] for p in first]
        assert np.allclose(mine["score"].to_numpy()[answered], np.array(scores)[answered])
    # Within the 99% binomial interval around the setting.
    half_width = 2.576 * math.sqrt(share * (1 - share) / n)
    assert abs(sum(to_challenger) / n - share) <= half_width, sum(to_challenger)
    again = predict(service, list(reversed(events))).json()["predictions"]
    assert [p["variant"] == "challenger" for p in reversed(again)] == to_challenger
    deployment["canary"] = (events, to_challenger)


def test_an_alias_move_under_load_fails_no_request(service, deployment):
    from ctpipe import registry
    from ctpipe.serving.traffic import set_policy

    client, name = deployment["client"], DATASET.model_name
    set_policy(client, name, "champion_only", "person: tests", "alias test")
    wait_for(service, lambda m: m["policy"]["in_force"] == "champion_only")
    events = tomorrows_orders(deployment, 5, prefix="3")
    old, new = deployment["champion"], deployment["challenger"]
    answers: list[tuple[float, float, int, str | None]] = []
    stop = threading.Event()

    def caller() -> None:
        with httpx.Client(headers=AUTH, timeout=30) as http:
            while not stop.is_set():
                sent = time.monotonic()
                response = http.post(f"{service.url}/v1/predict", json={"events": events})
                versions = {p["version"] for p in response.json()["predictions"]} if response.is_success else {None}
                answers.append((sent, time.monotonic(), response.status_code, ",".join(sorted(versions))))

    def answered_after(moment: float, count: int = 3, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(sent > moment for sent, *_ in answers) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    thread = threading.Thread(target=caller)
    thread.start()
    answered_after(0.0)
    moved_at = time.monotonic()
    registry.set_champion(client, name, new, "person: tests", "swap under load")
    wait_for(service, lambda m: [v["version"] for v in m["loaded"] if v["variant"] == "champion"] == [new])
    seen_at = time.monotonic()
    answered_after(seen_at)
    back_at = time.monotonic()
    registry.set_champion(client, name, old, "person: tests", "and back")
    wait_for(service, lambda m: [v["version"] for v in m["loaded"] if v["variant"] == "champion"] == [old])
    answered_after(time.monotonic())
    stop.set()
    thread.join()

    assert len(answers) >= 9
    assert all(status == 200 for _, _, status, _ in answers), {a[2] for a in answers}
    assert {v for *_, v in answers} == {old, new}  # one version per response, never a mix
    for sent, received, _, version in answers:
        if received < moved_at:
            assert version == old
        elif seen_at < sent and received < back_at:  # sent once the new version was in, answered before the move back
            assert version == new


def test_the_registry_webhook_is_taken_only_with_mlflows_signature(service, deployment):
    """Signed as MLflow's webhook delivery signs (its own function), an alias event makes the service refresh."""
    import json as json_module
    import uuid

    from mlflow.entities.webhook import WebhookAction, WebhookEntity, WebhookEvent
    from mlflow.webhooks.delivery import _generate_hmac_signature
    from mlflow.webhooks.types import get_example_payload_for_event

    event = WebhookEvent(WebhookEntity.MODEL_VERSION_ALIAS, WebhookAction.CREATED)
    payload = json_module.dumps(
        {"entity": "model_version_alias", "action": "created", "data": get_example_payload_for_event(event)}
    )
    url = f"{service.url}/v1/registry-webhook"

    def deliver(secret: str, stamp: int, signed: str | None = None) -> httpx.Response:
        delivery = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "X-MLflow-Delivery-Id": delivery,
            "X-MLflow-Timestamp": str(stamp),
            "X-MLflow-Signature": _generate_hmac_signature(secret, delivery, str(stamp), signed or payload),
        }
        return httpx.post(url, content=payload, headers=headers, timeout=30)  # MLflow sends no bearer token

    now = int(time.time())
    assert deliver("not-the-secret", now).status_code == 401
    assert deliver(WEBHOOK_SECRET, now, signed=payload.replace("created", "deleted")).status_code == 401
    assert deliver(WEBHOOK_SECRET, now - 3600).status_code == 401  # a replay of an old delivery
    assert httpx.post(url, content=payload, timeout=30).status_code == 401  # unsigned
    before = httpx.get(f"{service.url}/v1/models", headers=AUTH, timeout=10).json()["checked_at"]
    assert deliver(WEBHOOK_SECRET, now).status_code == 204
    after = wait_for(service, lambda m: m["checked_at"] > before)
    assert after["model"] == DATASET.model_name
    said = [line for line in service.log_lines() if line["message"].startswith("registry webhook:")]
    assert [line["message"] for line in said] == ["registry webhook: model_version_alias created"]


def test_assignment_survives_a_restart(service, deployment):
    from ctpipe.serving.traffic import set_policy

    events, to_challenger = deployment["canary"]
    set_policy(deployment["client"], DATASET.model_name, "canary", "person: tests", "restart test", 0.2, "order_id")
    wait_for(service, lambda m: m["policy"]["in_force"] == "canary")
    service.stop()
    service.start()
    after = predict(service, events).json()["predictions"]
    assert [p["variant"] == "challenger" for p in after] == to_challenger


def test_the_metrics_and_the_logs(service, deployment):
    champion, challenger = deployment["champion"], deployment["challenger"]
    [event] = tomorrows_orders(deployment, 1, prefix="1")
    assert predict(service, {**event, "amount": 31337.1717}).status_code == 200
    samples = scrape(service)
    for name, labels in (
        ("ctpipe_serving_requests_total", {"endpoint": "/v1/predict", "status": "200", "variant": "champion"}),
        ("ctpipe_serving_request_seconds_bucket", {"endpoint": "/v1/predict", "le": "0.1"}),
        ("ctpipe_serving_prediction_score_bucket", {"variant": "champion", "version": champion, "le": "0.5"}),
        ("ctpipe_serving_predictions_total", {"variant": "champion", "version": champion, "returned": "true"}),
        ("ctpipe_serving_model_info", {"variant": "champion", "version": champion, "model": DATASET.model_name}),
        ("ctpipe_serving_model_info", {"variant": "challenger", "version": challenger, "model": DATASET.model_name}),
        ("ctpipe_serving_prediction_log_rows", {}),
        ("ctpipe_serving_model_reload_failures", {}),
    ):
        assert (name, tuple(sorted(labels.items()))) in samples, (name, labels)
    assert (
        samples[
            (
                "ctpipe_serving_model_info",
                tuple(sorted({"variant": "champion", "version": champion, "model": DATASET.model_name}.items())),
            )
        ]
        == 1.0
    )
    lines = service.log_lines()  # every line is JSON
    requests = [line for line in lines if line["logger"] == "ctpipe.serving" and line["message"].startswith("POST")]
    assert requests and all(line["request_id"] for line in requests)
    assert any(line["request_id"] == "caller-42" for line in requests)
    text = service.log_text()
    assert TOKEN not in text and METRICS_TOKEN not in text
    assert "31337" not in text  # no feature value


def test_sigterm_under_load_loses_no_answered_prediction(service, deployment):
    events = tomorrows_orders(deployment, 3, prefix="2")
    answered: list[str] = []
    stop = threading.Event()

    def caller() -> None:
        with httpx.Client(headers=AUTH, timeout=30) as http:
            while not stop.is_set():
                try:
                    response = http.post(f"{service.url}/v1/predict", json={"events": events})
                except httpx.TransportError:
                    return  # the server has closed
                if response.status_code == 200:
                    answered.append(response.json()["request_id"])

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    # uvicorn drains, runs the app's shutdown, then re-raises the signal: the exit says SIGTERM.
    assert service.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    stop.set()
    for thread in threads:
        thread.join()
    assert len(answered) > 10
    assert any(line["message"].startswith("stopped; the prediction log's last") for line in service.log_lines())
    log = logged(deployment)
    assert set(answered) <= set(log["request_id"]), len(set(answered) - set(log["request_id"]))
