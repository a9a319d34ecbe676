"""The service's Prometheus metrics, on a registry of its own (one per app, so tests can start several).

Imported before Feast: importing Feast's metrics module switches prometheus_client, for
modules imported after it, to its file-backed multi-process mode.

* ``ctpipe_serving_requests_total{endpoint, status, variant}``: every answered request; a
  prediction request counts once per variant that answered part of it (``none`` otherwise);
* ``ctpipe_serving_errors_total{endpoint, status}``: the requests answered with 4xx or 5xx;
* ``ctpipe_serving_request_seconds{endpoint}``: latency, request in to response out;
* ``ctpipe_serving_predictions_total{variant, version, returned}``: events scored, shadow
  scores (``returned="false"``) included;
* ``ctpipe_serving_prediction_score{variant, version}``: the scores' distribution;
* ``ctpipe_serving_model_failures_total{variant, version}``: events a challenger failed to
  score (the champion answered them);
* ``ctpipe_serving_missing_features_total{reason}``: events scored without their entity's
  features, because the store held none (``unknown_entity``) or they were older than the
  TTL (``stale``);
* ``ctpipe_serving_model_info{variant, version, model}``: 1 for each version loaded;
* ``ctpipe_serving_model_reload_failures``: reloads failed in a row (0 when healthy);
* ``ctpipe_serving_prediction_log_rows_total``, ``..._buffered_rows``,
  ``..._write_failures_total``: the prediction log's writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ctpipe.serving.live_models import LiveModels
    from ctpipe.serving.prediction_log import PredictionLog

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCORE_BUCKETS = tuple(i / 20 for i in range(1, 21))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ctpipe_serving_requests", "Requests answered", ["endpoint", "status", "variant"], registry=r
        )
        self.errors = Counter(
            "ctpipe_serving_errors", "Requests answered with an error", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "ctpipe_serving_request_seconds", "Request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.predictions = Counter(
            "ctpipe_serving_predictions", "Events scored", ["variant", "version", "returned"], registry=r
        )
        self.scores = Histogram(
            "ctpipe_serving_prediction_score", "Scores", ["variant", "version"], buckets=SCORE_BUCKETS, registry=r
        )
        self.model_failures = Counter(
            "ctpipe_serving_model_failures", "Events a model failed to score", ["variant", "version"], registry=r
        )
        self.missing = Counter(
            "ctpipe_serving_missing_features", "Events scored without their entity's features", ["reason"], registry=r
        )
        self.reload_failures = Gauge(
            "ctpipe_serving_model_reload_failures", "Model reloads failed in a row", registry=r
        )
        self.log_rows = Gauge("ctpipe_serving_prediction_log_rows", "Prediction rows written to the lake", registry=r)
        self.log_buffered = Gauge(
            "ctpipe_serving_prediction_log_buffered_rows", "Prediction rows not yet written", registry=r
        )
        self.log_failures = Gauge(
            "ctpipe_serving_prediction_log_write_failures", "Prediction batches that failed to write", registry=r
        )

    def follow(self, name: str, models: LiveModels, log: PredictionLog) -> None:
        """Read the loaded versions, the reloads and the writer when scraped, not on every request."""
        self.registry.register(_LoadedVersions(name, models))
        self.reload_failures.set_function(lambda: models.failures)
        self.log_rows.set_function(lambda: log.written)
        self.log_buffered.set_function(lambda: log.buffered)
        self.log_failures.set_function(lambda: log.failures)


class _LoadedVersions(Collector):
    """``ctpipe_serving_model_info``: 1 for each version the live snapshot holds, read at scrape time."""

    def __init__(self, name: str, models: LiveModels):
        self.name = name
        self.models = models

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "ctpipe_serving_model_info", "A loaded model version (1)", labels=["variant", "version", "model"]
        )
        snapshot = self.models.snapshot
        for variant, model in (("champion", snapshot.champion), ("challenger", snapshot.challenger)):
            if model is not None:
                family.add_metric([variant, model.version, self.name], 1.0)
        yield family
