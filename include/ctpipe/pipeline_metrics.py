"""The pipeline's own gauges for Prometheus, published when a batch task has its record.

A batch task lives for seconds and is gone before Prometheus scrapes it, so its figures are
pushed to a Pushgateway (``CTPIPE_PUSHGATEWAY_URL``), which Prometheus scrapes like any
target (``honor_labels: true`` keeps the ``job`` given here). Unset, the embedded default
needs no service: each group is written as ``<state>/metrics/<job>-<group>.prom`` in the
text format, atomically, for node_exporter's textfile collector or a person's ``cat``.

One group per stage and what it is about, replaced whole on every push, so a series that the
newest record no longer has (a column dropped, a version no longer served) disappears:

* ``ctpipe_ingest`` per table: the newest validated interval's rows by outcome
  (``ctpipe_ingest_rows``), its bad-row share (``ctpipe_ingest_bad_rows_ratio``) beside the
  gate's limit (``..._threshold_ratio``), its end and when the gate last passed
  (``ctpipe_ingest_interval_end_timestamp_seconds``, ``ctpipe_ingest_last_success_timestamp_seconds``);
* ``ctpipe_features`` per feature view: how far the online store is loaded
  (``ctpipe_features_materialized_until_timestamp_seconds``) and when it last was;
* ``ctpipe_monitoring``: each column's drift distance and calibrated threshold
  (``ctpipe_monitoring_drift_score{column}``, ``..._drift_threshold``, the champion's
  predictions as ``column="prediction"``), the drifted share of inputs, the decision (one
  series per decision, 1 for the one taken) and when the check ran, labelled with the
  champion ``version`` it was measured against;
* ``ctpipe_live`` per model version, variant and ``traffic`` (answered or shadow): the events
  served and labelled in the window, label coverage, Brier score and ROC AUC of the newest
  live evaluation, and the instant it was evaluated as of.

Timestamps, not ages: a pushed value stays as it was until the next push, so an age would
freeze; ``time() - <timestamp>`` in a query or an alert keeps counting. Labels stay few and
bounded (table, feature view, column, version, variant), never an entity or a request.

Publishing never fails the task that calls it: a problem (the gateway down, a malformed
``CTPIPE_PUSHGATEWAY_URL``) is logged and the call returns False. prometheus_client is
imported when a record is published, not when a DAG file is parsed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ctpipe.settings import Settings, hide_passwords

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ctpipe.records import DriftCheck, LiveEvaluation, Publication, ValidationOutcome

log = logging.getLogger(__name__)

INGEST, FEATURES, MONITORING, LIVE = "ctpipe_ingest", "ctpipe_features", "ctpipe_monitoring", "ctpipe_live"
DECISIONS = ("retrain", "skip", "wait_for_labels")  # ctpipe.drift's
PUSH_TIMEOUT_SECONDS = 10.0


class Group:
    """The gauges of one push: a registry of their own, and the labels every one of them carries."""

    def __init__(self, job: str, **grouping: str):
        from prometheus_client import CollectorRegistry

        self.job = job
        self.grouping = grouping
        self.registry: CollectorRegistry = CollectorRegistry()
        self._gauges: dict[str, object] = {}

    def set(self, name: str, help_text: str, value: float, **labels: str) -> None:
        from prometheus_client import Gauge

        names = [*self.grouping, *labels]
        gauge = self._gauges.get(name)
        if gauge is None:
            gauge = self._gauges[name] = Gauge(name, help_text, names, registry=self.registry)
        gauge.labels(**self.grouping, **labels).set(value)  # type: ignore[attr-defined]


def publish_validation(outcome: ValidationOutcome, settings: Settings | None = None) -> bool:
    """The gate's figures for the newest interval of one table (``validate_<table>``)."""

    def build(settings: Settings) -> Group:
        group = Group(INGEST, dataset=settings.dataset.name, table=outcome.table)
        for kind, rows in (
            ("passed", outcome.rows_passed),
            ("quarantined", outcome.rows_quarantined),
            ("held", outcome.rows_held),
        ):
            group.set("ctpipe_ingest_rows", "Rows of the newest validated interval, by outcome", rows, outcome=kind)
        share = outcome.rows_quarantined / outcome.rows_in if outcome.rows_in else 0.0
        group.set("ctpipe_ingest_bad_rows_ratio", "Share of the newest interval's rows quarantined", share)
        group.set(
            "ctpipe_ingest_bad_rows_threshold_ratio",
            "The gate fails an interval with a larger bad-row share (CTPIPE_MAX_BAD_ROW_SHARE)",
            settings.max_bad_row_share,
        )
        group.set(
            "ctpipe_ingest_interval_end_timestamp_seconds",
            "End of the newest interval that passed the gate",
            outcome.interval.end.timestamp(),
        )
        group.set("ctpipe_ingest_last_success_timestamp_seconds", "When an interval last passed the gate", time.time())
        return group

    return _publish(f"validation of {outcome.table}", build, settings)


def publish_materialization(publication: Publication, settings: Settings | None = None) -> bool:
    """How far the online store is loaded, after the features DAG's ``materialize``."""

    def build(settings: Settings) -> Group:
        from ctpipe.feature_store import load_store, materialized_until

        # The store only moves forward: a rerun of older intervals leaves it where it was.
        loaded = materialized_until(load_store(settings), publication.feature_view) or publication.materialized.end
        group = Group(FEATURES, dataset=settings.dataset.name, feature_view=publication.feature_view)
        group.set(
            "ctpipe_features_materialized_until_timestamp_seconds",
            "How far the online store is loaded: the end of the newest materialized interval",
            max(loaded, publication.materialized.end).timestamp(),
        )
        group.set("ctpipe_features_last_success_timestamp_seconds", "When features were last materialized", time.time())
        return group

    return _publish(f"materialization of {publication.feature_view}", build, settings)


def publish_drift(check: DriftCheck, settings: Settings | None = None) -> bool:
    """One drift check: distances and thresholds per column (from its MLflow run), share, decision."""

    def build(settings: Settings) -> Group:
        group = Group(MONITORING, dataset=settings.dataset.name)
        version = check.champion_version or "none"
        for decision in DECISIONS:
            group.set(
                "ctpipe_monitoring_decision",
                "The newest drift check's decision (1) among the possible ones (0)",
                float(check.decision == decision),
                version=version,
                decision=decision,
            )
        group.set(
            "ctpipe_monitoring_last_check_timestamp_seconds",
            "End of the interval the newest drift check covered",
            check.interval.end.timestamp(),
            version=version,
        )
        if check.drifted_share is not None:
            group.set(
                "ctpipe_monitoring_drifted_columns_ratio",
                "Share of the model inputs over their drift threshold",
                check.drifted_share,
                version=version,
            )
        for kind, column, value in _column_figures(check, settings):
            name, help_text = {
                "score": ("ctpipe_monitoring_drift_score", "Drift distance of a column from the champion's reference"),
                "threshold": ("ctpipe_monitoring_drift_threshold", "The column's calibrated drift threshold"),
            }[kind]
            group.set(name, help_text, value, version=version, column=column)
        return group

    return _publish(f"drift check ending {check.interval.end.isoformat()}", build, settings)


def _column_figures(check: DriftCheck, settings: Settings) -> Iterable[tuple[str, str, float]]:
    """(``score`` or ``threshold``, column, value): the check's run holds them as ``drift.<c>``, ``threshold.<c>``."""
    from ctpipe.drift import PREDICTION

    if check.prediction_score is not None:
        yield "score", PREDICTION, check.prediction_score
    if check.mlflow_run_id is None:
        return
    from ctpipe.tracking import connect

    metrics = connect(settings).client.get_run(check.mlflow_run_id).data.metrics
    for key, value in sorted(metrics.items()):
        kind, _, column = key.partition(".")
        if column and kind in ("drift", "threshold"):
            yield ("score" if kind == "drift" else "threshold"), column, value


def publish_live(evaluation: LiveEvaluation, settings: Settings | None = None) -> bool:
    """A day's live figures per version, variant and traffic (answered or shadow), from ``evaluate_live``."""

    def build(settings: Settings) -> Group:
        group = Group(LIVE, dataset=settings.dataset.name)
        group.set(
            "ctpipe_live_evaluated_until_timestamp_seconds",
            "The instant the newest live evaluation is as of",
            evaluation.as_of.timestamp(),
        )
        figures = {
            "served": ("ctpipe_live_predictions", "Scores logged in the live window"),
            "labelled": ("ctpipe_live_labelled_predictions", "Scores in the live window with a known label"),
            "brier": ("ctpipe_live_brier_score", "Brier score on the labelled live predictions"),
            "roc_auc": ("ctpipe_live_roc_auc", "ROC AUC on the labelled live predictions"),
        }
        for key, values in sorted(evaluation.figures.items()):
            version, variant, traffic = key.split(" ")  # "<version> <variant> <answered|shadow>"
            labels = {"version": version, "variant": variant, "traffic": traffic}
            for figure, (name, help_text) in figures.items():
                if figure in values:
                    group.set(name, help_text, values[figure], **labels)
            if values.get("served"):
                coverage = values.get("labelled", 0.0) / values["served"]
                group.set("ctpipe_live_label_coverage_ratio", "Share of live predictions labelled", coverage, **labels)
        return group

    return _publish(f"live evaluation as of {evaluation.as_of.isoformat()}", build, settings)


def _publish(what: str, build: Callable[[Settings], Group], settings: Settings | None) -> bool:
    """Build the group and deliver it; any problem is logged, never raised: metrics never fail a task."""
    try:
        settings = settings or Settings.from_env()
        group = build(settings)
        where = _deliver(group, settings)
    except Exception as error:  # the gateway, the registry, a setting: whatever it is, the task goes on
        log.warning("the metrics of the %s were not published: %s", what, hide_passwords(f"{error}"))
        return False
    log.info("published the metrics of the %s to %s", what, where)
    return True


def _deliver(group: Group, settings: Settings) -> str:
    from prometheus_client import push_to_gateway, write_to_textfile

    if settings.pushgateway_url:
        push_to_gateway(
            settings.pushgateway_url,
            job=group.job,
            grouping_key=group.grouping,
            registry=group.registry,
            timeout=PUSH_TIMEOUT_SECONDS,
        )
        return hide_passwords(settings.pushgateway_url)
    path = settings.metrics_dir / textfile_name(group.job, group.grouping)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), group.registry)  # a temporary file renamed into place
    return str(path)


def textfile_name(job: str, grouping: dict[str, str]) -> str:
    """``<job>-<value>-<value>.prom``, with only letters, digits, ``_``, ``.`` and ``-``."""
    return re.sub(r"[^\w.-]", "_", "-".join([job, *grouping.values()])) + ".prom"
