"""The pipeline's gauges (``ctpipe.pipeline_metrics``), without Airflow and without a Pushgateway.

With no ``CTPIPE_PUSHGATEWAY_URL`` each group is a text file under ``<state>/metrics``, read
back here with prometheus_client's own parser; a gateway that is down or a malformed setting
is logged and never raised. The real Pushgateway, and Prometheus over it, are in
``tests/integration/test_observability.py``.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest

from ctpipe import pipeline_metrics
from ctpipe.records import DriftCheck, Interval, LiveEvaluation, ValidationOutcome
from ctpipe.settings import Settings

from ..conftest import free_port

END = datetime(2026, 2, 1, tzinfo=UTC)
INTERVAL = Interval.ending(END)
NAME = re.compile(r"ctpipe_(ingest|features|monitoring|live)_[a-z0-9_]+")


def outcome(table: str = "samples", rows_in: int = 400, quarantined: int = 12, held: int = 3) -> ValidationOutcome:
    return ValidationOutcome(
        table=table,
        interval=INTERVAL,
        status="passed",
        rows_in=rows_in,
        rows_passed=rows_in - quarantined - held,
        rows_quarantined=quarantined,
        validated_uri="file:///lake/validated",
        quarantine_uri="file:///lake/quarantine",
        report_uri="file:///reports/report.json",
        data_docs_uri=None,
        rows_held=held,
    )


def samples(path) -> dict[tuple[str, tuple], float]:
    """A text file of gauges: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


def test_a_validation_is_written_where_prometheus_textfile_collectors_read(state_dir):
    before = datetime.now(UTC).timestamp()
    assert pipeline_metrics.publish_validation(outcome())
    path = state_dir / "metrics" / "ctpipe_ingest-lab_qc-samples.prom"
    found = samples(path)
    labels = (("dataset", "lab_qc"), ("table", "samples"))
    assert found[("ctpipe_ingest_bad_rows_ratio", labels)] == pytest.approx(12 / 400)
    assert found[("ctpipe_ingest_bad_rows_threshold_ratio", labels)] == 0.2
    assert found[("ctpipe_ingest_rows", tuple(sorted((*labels, ("outcome", "held")))))] == 3
    assert found[("ctpipe_ingest_rows", tuple(sorted((*labels, ("outcome", "passed")))))] == 385
    assert found[("ctpipe_ingest_interval_end_timestamp_seconds", labels)] == END.timestamp()
    assert before <= found[("ctpipe_ingest_last_success_timestamp_seconds", labels)] <= datetime.now(UTC).timestamp()
    assert all(NAME.fullmatch(name) for name, _ in found)
    # Another table is its own group; an empty interval has no bad rows.
    assert pipeline_metrics.publish_validation(outcome("outcomes", rows_in=0, quarantined=0, held=0))
    empty = samples(state_dir / "metrics" / "ctpipe_ingest-lab_qc-outcomes.prom")
    assert empty[("ctpipe_ingest_bad_rows_ratio", (("dataset", "lab_qc"), ("table", "outcomes")))] == 0.0
    assert path.exists()


def test_a_drift_check_gives_its_decision_among_all_and_its_prediction_score(state_dir):
    check = DriftCheck(
        interval=INTERVAL,
        retrain=False,
        reason="drift noted, waiting for labels",
        champion_version="3",
        drifted_share=0.25,
        prediction_score=0.08,
        decision="wait_for_labels",
    )
    assert pipeline_metrics.publish_drift(check)  # no MLflow run: no per-column figures but the prediction's
    found = samples(state_dir / "metrics" / "ctpipe_monitoring-lab_qc.prom")
    base = (("dataset", "lab_qc"),)
    decisions = {
        dict(labels)["decision"]: value
        for (name, labels), value in found.items()
        if name == "ctpipe_monitoring_decision"
    }
    assert decisions == {"retrain": 0.0, "skip": 0.0, "wait_for_labels": 1.0}
    assert found[("ctpipe_monitoring_drifted_columns_ratio", (*base, ("version", "3")))] == 0.25
    assert found[("ctpipe_monitoring_drift_score", (("column", "prediction"), *base, ("version", "3")))] == 0.08


def test_live_figures_are_labelled_by_version_variant_and_traffic(state_dir):
    evaluation = LiveEvaluation(
        as_of=END,
        window=Interval.ending(END, timedelta(days=7)),
        predictions=300,
        figures={
            "4 champion answered": {"served": 200.0, "labelled": 50.0, "brier": 0.18, "roc_auc": 0.74},
            "5 challenger shadow": {"served": 100.0, "labelled": 0.0},  # no label yet: no Brier, no AUC
        },
    )
    assert pipeline_metrics.publish_live(evaluation)
    found = samples(state_dir / "metrics" / "ctpipe_live-lab_qc.prom")
    champion = (("dataset", "lab_qc"), ("traffic", "answered"), ("variant", "champion"), ("version", "4"))
    shadow = (("dataset", "lab_qc"), ("traffic", "shadow"), ("variant", "challenger"), ("version", "5"))
    assert found[("ctpipe_live_brier_score", champion)] == 0.18
    assert found[("ctpipe_live_label_coverage_ratio", champion)] == 0.25
    assert found[("ctpipe_live_predictions", shadow)] == 100.0
    assert ("ctpipe_live_brier_score", shadow) not in found
    assert found[("ctpipe_live_evaluated_until_timestamp_seconds", (("dataset", "lab_qc"),))] == END.timestamp()


def test_a_gateway_that_is_down_is_logged_and_never_raised(state_dir, caplog):
    settings = Settings(
        {"CTPIPE_STATE_DIR": str(state_dir), "CTPIPE_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}"}
    )
    with caplog.at_level(logging.WARNING, logger="ctpipe.pipeline_metrics"):
        assert not pipeline_metrics.publish_validation(outcome(), settings)
    assert "the metrics of the validation of samples were not published" in caplog.text
    assert not (state_dir / "metrics").exists()  # a gateway is set: no file instead


def test_a_malformed_setting_is_logged_with_its_name_and_no_password(state_dir, caplog):
    settings = Settings({"CTPIPE_STATE_DIR": str(state_dir), "CTPIPE_PUSHGATEWAY_URL": "pushgateway:9091"})
    with caplog.at_level(logging.WARNING, logger="ctpipe.pipeline_metrics"):
        assert not pipeline_metrics.publish_validation(outcome(), settings)
    assert "CTPIPE_PUSHGATEWAY_URL='pushgateway:9091' is not an http(s) URL with a host" in caplog.text


def test_group_files_have_safe_names():
    name = pipeline_metrics.textfile_name("ctpipe_ingest", {"dataset": "my pkg/x", "table": "a:b"})
    assert name == "ctpipe_ingest-my_pkg_x-a_b.prom"
