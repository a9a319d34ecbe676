"""The prediction service: a FastAPI app over the online store, the registry's models and the prediction log.

Endpoints:

* ``POST /v1/predict``: one event, or ``{"events": [...]}`` up to ``CTPIPE_SERVING_MAX_EVENTS``,
  in the dataset's event schema (``ctpipe.serving.schema``); each gets a score, a label, the
  model version and variant that answered, and the request's ``request_id`` (the
  ``X-Request-ID`` header when given, else generated; echoed back in that header);
* ``GET /v1/models``: the loaded versions, the aliases and the traffic policy;
* ``GET /healthz``: the process is alive; ``GET /readyz``: a champion is loaded and the
  online store answers (503 otherwise);
* ``GET /metrics``: Prometheus text (``ctpipe.serving.metrics``);
* ``POST /v1/registry-webhook``: MLflow's model-registry webhook (alias created or deleted),
  signature checked, when ``CTPIPE_SERVING_WEBHOOK_SECRET`` is set: the models are reloaded
  at once instead of at the next poll.

Features: the entity's values come from the online store in one read per request, as they
stand at the event's timestamp. An entity the store does not know, or whose values are
older than the feature view's TTL, is still scored: its features are missing, which the
model imputes as it learned to (the training median, plus the missing-value indicator), and
the answer says so (``unknown_entity``, ``stale_features``), as does a metric. The model's
input is assembled by ``ctpipe.training_set.model_input``, the function training uses.

With ``CTPIPE_SERVING_TOKEN`` set every endpoint but the two probes asks for
``Authorization: Bearer <token>`` (``/metrics`` for ``CTPIPE_SERVING_METRICS_TOKEN`` when
set). Errors are JSON with a ``detail`` and the ``request_id``, never a stack trace.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctpipe.datasets.spec import DatasetSpec
from ctpipe.feature_store import STALE
from ctpipe.models import failure_probability
from ctpipe.services import ServiceUnavailableError
from ctpipe.serving.json_logs import REQUEST_ID
from ctpipe.serving.live_models import LiveModels, Snapshot
from ctpipe.serving.metrics import Metrics
from ctpipe.serving.prediction_log import EVENT_TIMESTAMP, FAILED, SERVED_AT, PredictionLog
from ctpipe.serving.schema import (
    LoadedVersion,
    ModelsResponse,
    Prediction,
    PredictResponse,
    event_model,
    request_model,
)
from ctpipe.serving.traffic import to_challenger
from ctpipe.settings import Serving, Settings
from ctpipe.training_set import model_columns, model_input

log = logging.getLogger("ctpipe.serving")

PROBES = ("/healthz", "/readyz")
WEBHOOK = "/v1/registry-webhook"
WEBHOOK_MAX_AGE_S = 300
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.lower().encode()
BYTES_PER_EVENT = 4096  # a request may be this large per event it is allowed, before it is read
PROBE_ENTITY = "readyz-probe"  # read by /readyz: the store answers, whether it knows it or not
THRESHOLD = 0.5  # a score at or above it is the positive label


class Unavailable(Exception):
    """No champion is loaded yet (or the online store is down): 503."""


@dataclass(frozen=True)
class Scored:
    """One model's scores for some rows of a request."""

    variant: str
    version: str
    rows: np.ndarray  # positions in the request
    scores: np.ndarray
    returned: bool
    failed: bool = False  # the model raised: no scores (NaN), the champion answered


def scores_its_example(dataset: DatasetSpec, model: Any) -> None:
    """Score a model's own input example, assembled as a request's input is; raises if it cannot.

    A version logged with other input types (integer columns, say) would fail every request.
    """
    example = getattr(model, "input_example", None)
    if isinstance(example, pd.DataFrame) and not example.empty:
        failure_probability(model, model_input(dataset, example))


class PredictionService:
    """What the endpoints share: the dataset, the feature reader, the live models, the log and the metrics."""

    def __init__(self, settings: Settings):
        from ctpipe.feature_store import OnlineReader, load_store
        from ctpipe.tracking import connect, load_model

        self.settings = settings
        self.dataset: DatasetSpec = settings.dataset
        self.config = settings.serving
        self.name = self.dataset.model_name
        self.metrics = Metrics()
        tracking = connect(settings)
        self.reader = OnlineReader(load_store(settings), self.dataset.feature_service, self.dataset.entity)
        self.models = LiveModels(
            tracking.client,
            self.name,
            lambda uri: load_model(tracking, uri),
            self.config.poll_seconds,
            check=lambda model: scores_its_example(self.dataset, model),
        )
        self.log = PredictionLog(settings.predictions_dir, self.config.log_flush_rows, self.config.log_flush_seconds)
        self.metrics.follow(self.name, self.models, self.log)
        self.columns = [c.name for c in self.dataset.events.columns]
        self.numeric = model_columns(self.dataset)[0]  # the events' own and the features
        labels = self.dataset.labels.column(self.dataset.label).allowed_values or ()
        others = [v for v in labels if v != self.dataset.positive_label]
        self.negative_label = others[0] if len(others) == 1 else f"not {self.dataset.positive_label}"

    def start(self) -> None:
        try:
            self.models.refresh()
        except Exception:
            log.exception("could not load the models of %s at start; retrying every poll", self.name)
        self.models.start()

    def stop(self) -> None:
        self.models.stop()
        written = self.log.close()
        log.info("stopped; the prediction log's last %d rows written", written)

    def ready(self) -> tuple[bool, str]:
        if self.models.snapshot.champion is None:
            return False, f"no champion of {self.name} loaded"
        try:
            self.reader.read([PROBE_ENTITY], None)
        except Exception as error:  # the online store: whatever its client raises
            return False, f"the online store does not answer: {type(error).__name__}"
        return True, "ready"

    # -- predictions ---------------------------------------------------------------------------

    def predict(self, events: list[BaseModel], request_id: str) -> tuple[list[Prediction], set[str]]:
        started = time.perf_counter()
        snapshot = self.models.snapshot  # one snapshot for the whole request
        champion = snapshot.champion
        if champion is None:
            raise Unavailable(f"no champion of {self.name} is loaded yet")
        dataset, spec = self.dataset, self.dataset.events
        served_at = datetime.now(UTC)
        rows = [e.model_dump() for e in events]
        given: dict[str, list[Any]] = {c: [row[c] for row in rows] for c in self.columns}
        times = [t or served_at for t in given[spec.timestamp]]  # aware: the schema refuses naive times
        entities = given[dataset.entity]
        features = self.reader.read(entities, times)
        stale = np.array(features[STALE], dtype=bool)
        known = np.zeros(len(rows), dtype=bool)
        for name in self.reader.features:
            known |= np.fromiter((v is not None for v in features[name]), dtype=bool, count=len(rows))
        unknown = ~known & ~stale
        # The frame model_input takes, its numbers already float (None: NaN), built column by column.
        columns: dict[str, Any] = {**given, **{name: features[name] for name in self.reader.features}}
        for name in self.numeric:
            columns[name] = np.array(columns[name], dtype="float64")
        utc = np.array([t.astimezone(UTC).replace(tzinfo=None) for t in times], dtype="datetime64[us]")
        columns[spec.timestamp] = pd.DatetimeIndex(utc).tz_localize(UTC)
        frame = pd.DataFrame(columns)

        inputs = model_input(dataset, frame)
        scored = self._score(snapshot, given, inputs)
        latency_ms = (time.perf_counter() - started) * 1000

        answer = np.zeros(len(frame))
        variant = np.empty(len(frame), dtype=object)
        version = np.empty(len(frame), dtype=object)
        for part in scored:
            if part.returned:
                answer[part.rows], variant[part.rows], version[part.rows] = part.scores, part.variant, part.version
            if part.failed:
                continue
            self.metrics.predictions.labels(part.variant, part.version, str(part.returned).lower()).inc(len(part.rows))
            histogram = self.metrics.scores.labels(part.variant, part.version)
            for score in part.scores:
                histogram.observe(float(score))
        self.metrics.missing.labels("unknown_entity").inc(int(unknown.sum()))
        self.metrics.missing.labels("stale").inc(int(stale.sum()))
        self._log(request_id, served_at, frame, inputs, scored, stale, unknown, latency_ms)

        keys = frame[spec.key].tolist()
        predictions = [
            Prediction(
                request_id=request_id,
                event=keys[i],
                entity=entities[i],
                score=float(answer[i]),
                label=dataset.positive_label if answer[i] >= THRESHOLD else self.negative_label,
                model=self.name,
                version=version[i],
                variant=variant[i],
                unknown_entity=bool(unknown[i]),
                stale_features=bool(stale[i]),
            )
            for i in range(len(frame))
        ]
        return predictions, {part.variant for part in scored if part.returned}

    def _score(self, snapshot: Snapshot, given: dict[str, list[Any]], inputs: pd.DataFrame) -> list[Scored]:
        champion, challenger, policy = snapshot.champion, snapshot.challenger, snapshot.policy
        assert champion is not None
        everyone = np.arange(len(inputs))
        first = failure_probability(champion.model, inputs)  # the champion failing fails the request
        if challenger is None:
            return [Scored("champion", champion.version, everyone, first, True)]
        # Shadow, canary and A/B: both models score every row, so each labelled request gives the experiment a pair
        # of losses (``ctpipe.online_evaluation.paired_differences``); the assignment decides only whose answer
        # returns (in shadow, always the champion's).
        chosen = np.zeros(len(inputs), dtype=bool)
        if policy.policy != "shadow":
            key = policy.key or self.dataset.entity
            chosen[:] = to_challenger(policy, [str(v) for v in given[key]], challenger.version)
        try:
            second = failure_probability(challenger.model, inputs)
        except Exception:
            # A challenger that cannot score costs no answer: the champion answers its rows. The failure is logged
            # (``failed``) and counted: the experiment's error-rate guardrail reads it and rolls the canary back.
            log.exception("challenger version %s failed to score; the champion answered", challenger.version)
            self.metrics.model_failures.labels("challenger", challenger.version).inc(len(inputs))
            failed = Scored("challenger", challenger.version, everyone, np.full(len(inputs), np.nan), False, True)
            return [Scored("champion", champion.version, everyone, first, True), failed]
        parts = []
        for variant, version, scores, answers in (
            ("champion", champion.version, first, ~chosen),
            ("challenger", challenger.version, second, chosen),
        ):
            for returned, rows in ((True, everyone[answers]), (False, everyone[~answers])):
                if len(rows):
                    parts.append(Scored(variant, version, rows, scores[rows], returned))
        return parts

    def _log(
        self,
        request_id: str,
        served_at: datetime,
        frame: pd.DataFrame,
        inputs: pd.DataFrame,
        scored: list[Scored],
        stale: np.ndarray,
        unknown: np.ndarray,
        latency_ms: float,
    ) -> None:
        spec = self.dataset.events
        keys, entities = frame[spec.key].to_numpy(), frame[self.dataset.entity].to_numpy()
        stamps = frame[spec.timestamp].dt.tz_convert(None).to_numpy()
        values = {name: inputs[name].to_numpy() for name in inputs.columns}
        for part in scored:
            rows, n = part.rows, len(part.rows)
            logged = {
                "request_id": np.full(n, request_id, dtype=object),
                SERVED_AT: np.full(n, np.datetime64(served_at.replace(tzinfo=None), "us")),
                spec.key: keys[rows],
                self.dataset.entity: entities[rows],
                EVENT_TIMESTAMP: stamps[rows],
                "model": np.full(n, self.name, dtype=object),
                "variant": np.full(n, part.variant, dtype=object),
                "model_version": np.full(n, part.version, dtype=object),
                "returned": np.full(n, part.returned),
                "score": part.scores.astype("float64"),
                "latency_ms": np.full(n, latency_ms),
                "unknown_entity": unknown[rows],
                "stale_features": stale[rows],
                FAILED: np.full(n, part.failed),
            }
            logged |= {f"input.{name}": column[rows] for name, column in values.items()}
            self.log.append(logged)

    def models_response(self) -> ModelsResponse:
        snapshot = self.models.snapshot
        loaded = [
            LoadedVersion(
                variant=variant,
                version=model.version,
                aliases=snapshot.aliases_of(model.version),
                run_id=model.run_id,
                loaded_at=model.loaded_at,
            )
            for variant, model in (("champion", snapshot.champion), ("challenger", snapshot.challenger))
            if model is not None
        ]
        policy = snapshot.policy
        return ModelsResponse(
            model=self.name,
            loaded=loaded,
            aliases=snapshot.aliases,
            policy={
                "policy": policy.policy,
                "share": policy.share,
                "key": policy.key or self.dataset.entity,
                "set_by": policy.set_by,
                "reason": policy.reason,
                "set_at": policy.set_at,
                "in_force": policy.policy if snapshot.challenger is not None else "champion_only",
            },
            checked_at=snapshot.checked_at,
        )


def _error(status: int, detail: Any, request_id: str | None, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = {**(headers or {}), **({REQUEST_ID_HEADER: request_id} if request_id else {})}
    return JSONResponse({"detail": detail, "request_id": request_id}, status_code=status, headers=headers)


def _fields(errors: list[Any]) -> list[dict[str, str]]:
    """Pydantic's errors as ``{"field": "events.0.amount", "problem": ...}``, without the input values."""
    shown = []
    for error in errors:
        where = [str(part) for part in error.get("loc", ()) if part != "body"]
        shown.append({"field": ".".join(where) or "body", "problem": error.get("msg", "is not valid")})
    return shown


def _denied(config: Serving, headers: Headers, path: str) -> str | None:
    """Why a request may not have this endpoint: no bearer token, or the wrong one; None when it may."""
    if path in PROBES or path == WEBHOOK or not config.login_required:
        return None
    expected = config.metrics_token if path == "/metrics" else config.token
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value:
        return "this endpoint needs Authorization: Bearer <token>"
    if not hmac.compare_digest(value.strip().encode(), (expected or "").encode()):
        return "the bearer token is not valid"
    return None


class RequestAccounting:
    """Around every HTTP request: its id, the login and size checks, a JSON 500, the metrics and the access log.

    A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's
    ``BaseHTTPMiddleware`` runs the endpoint in a task of its own and streams the response
    through a queue, about 0.3 ms a request here, a tenth of what the service adds to a
    one-event prediction. The endpoints find the request's id in ``request.state.request_id``
    and leave the variants that answered in ``request.state.variants``.
    """

    def __init__(self, app: ASGIApp, config: Serving, max_bytes: int, metrics: Callable[[], Metrics | None]):
        self.app, self.config, self.max_bytes, self.metrics = app, config, max_bytes, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = (headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex)[:128]
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        state = scope.setdefault("state", {})
        state["request_id"], state["variants"] = request_id, set()
        status = 500
        sent = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status, sent = message["status"], True
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER_BYTES]
                message = {**message, "headers": [*kept, (REQUEST_ID_HEADER_BYTES, request_id.encode("latin-1"))]}
            await send(message)

        try:
            denied = _denied(self.config, headers, path)
            if denied is not None:
                await _error(401, denied, request_id, {"WWW-Authenticate": "Bearer"})(scope, receive, send_with_id)
            elif int(headers.get("content-length") or 0) > self.max_bytes:
                await _error(413, f"the body is over {self.max_bytes} bytes", request_id)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request failed")
            if sent:  # the answer had begun: the connection is closed on the caller
                raise
            message = "internal error; the service logged it under this request_id"
            await _error(500, message, request_id)(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
        seconds = time.perf_counter() - started
        metrics = self.metrics()
        if metrics is not None:
            for variant in state.get("variants") or {"none"}:
                metrics.requests.labels(endpoint, str(status), variant).inc()
            if status >= 400:
                metrics.errors.labels(endpoint, str(status)).inc()
            metrics.latency.labels(endpoint).observe(seconds)
        if path not in PROBES and path != "/metrics":
            log.log(
                logging.WARNING if status >= 500 else logging.INFO,
                "%s %s %d",
                scope["method"],
                endpoint,
                status,
                extra={"request_id": request_id, "latency_ms": round(seconds * 1000, 3)},
            )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service for the deployment's settings; ``python -m ctpipe.serving`` runs it."""
    settings = settings or Settings.from_env()
    dataset = settings.dataset
    config = settings.serving
    event = event_model(dataset)
    batch = request_model(dataset, event)
    holder: dict[str, PredictionService] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = PredictionService(settings)
        service.start()
        # What start-up loaded (libraries, models) lives as long as the process: kept out of the
        # garbage collector's full passes, which would otherwise stall requests to walk it.
        gc.freeze()
        holder["service"] = service
        if not config.login_required:
            log.warning("CTPIPE_SERVING_TOKEN is not set: the service answers anyone (the embedded default)")
        log.info("serving %s on its %s events", service.name, dataset.events.name)
        yield
        service.stop()

    app = FastAPI(
        title=f"ctpipe prediction service: {dataset.name}",
        description=f"Scores {dataset.events.name} events with {dataset.model_name}@champion (and its challenger).",
        version="1",
        lifespan=lifespan,
    )
    max_bytes = config.max_events * BYTES_PER_EVENT + BYTES_PER_EVENT

    app.add_middleware(
        RequestAccounting,
        config=config,
        max_bytes=max_bytes,
        metrics=lambda: holder["service"].metrics if "service" in holder else None,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, _fields(error.errors()), getattr(request.state, "request_id", None))

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, error: Unavailable) -> JSONResponse:
        return _error(503, str(error), getattr(request.state, "request_id", None))

    @app.exception_handler(ServiceUnavailableError)
    async def store_down(request: Request, error: ServiceUnavailableError) -> JSONResponse:
        log.warning("a service did not answer: %s", error)
        return _error(503, "the online store did not answer", getattr(request.state, "request_id", None))

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        summary="Score one event or a batch",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{batch.__name__}"}}},
                "description": f'{{"events": [...]}} with up to {config.max_events} events, or one event alone',
            }
        },
    )
    async def predict(request: Request) -> Response | PredictResponse:
        try:  # JSON whatever the content type says: curl -d sends a form's
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RequestValidationError([{"loc": ("body",), "msg": f"is not JSON ({error})"}]) from None
        if isinstance(body, dict) and "events" not in body:
            body = {"events": [body]}  # one event on its own
        try:
            parsed = batch.model_validate(body)
        except ValidationError as error:
            raise RequestValidationError(error.errors(include_input=False)) from None
        events = parsed.events  # type: ignore[attr-defined]
        if len(events) > config.max_events:
            too_many = f"{len(events)} events; at most {config.max_events} per request"
            return _error(413, too_many, request.state.request_id)
        service = holder["service"]
        predictions, variants = await run_in_threadpool(service.predict, events, request.state.request_id)
        request.state.variants = variants
        answer = PredictResponse(request_id=request.state.request_id, predictions=predictions)
        return Response(answer.model_dump_json(), media_type="application/json")  # built once, not re-validated

    @app.get("/v1/models", response_model=ModelsResponse, summary="Loaded versions, aliases and traffic policy")
    def models() -> ModelsResponse:
        return holder["service"].models_response()

    @app.get("/healthz", summary="The process is alive")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="A champion is loaded and the online store answers")
    def readyz() -> JSONResponse:
        ready, why = holder["service"].ready()
        status = {"status": "ready" if ready else "not ready", "reason": why}
        return JSONResponse(status, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(holder["service"].metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if config.webhook_secret:

        @app.post(WEBHOOK, status_code=204, summary="MLflow's registry webhook: reload the models now")
        async def registry_webhook(request: Request) -> Response:
            payload = (await request.body()).decode()
            delivery = request.headers.get("x-mlflow-delivery-id", "")
            stamp = request.headers.get("x-mlflow-timestamp", "")
            signature = request.headers.get("x-mlflow-signature", "")
            digest = hmac.new(config.webhook_secret.encode(), f"{delivery}.{stamp}.{payload}".encode(), hashlib.sha256)
            expected = "v1," + base64.b64encode(digest.digest()).decode()
            if not hmac.compare_digest(signature.encode(), expected.encode()):
                return _error(401, "the webhook signature is not valid", request.state.request_id)
            if not stamp.isdigit() or abs(time.time() - int(stamp)) > WEBHOOK_MAX_AGE_S:
                return _error(401, "the webhook is too old or undated", request.state.request_id)
            event = json.loads(payload)
            log.info("registry webhook: %s %s", event.get("entity"), event.get("action"))
            holder["service"].models.wake()
            return Response(status_code=204)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            generated = batch.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(generated.pop("$defs", {}))
            components[batch.__name__] = generated
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


ENDPOINTS = ("/v1/predict", "/v1/models", "/healthz", "/readyz", "/metrics", WEBHOOK, "/docs", "/openapi.json")
