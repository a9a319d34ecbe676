"""Live evaluation's join: served predictions, written by the service's own log writer, with labels as known then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ctpipe.datasets import get_dataset
from ctpipe.lake import Lake
from ctpipe.online_evaluation import (
    OUTCOME,
    join_labels,
    known_labels,
    live_metrics,
    paired_differences,
    read_predictions,
)
from ctpipe.records import Interval
from ctpipe.serving.prediction_log import PredictionLog

DATASET = get_dataset("lab_qc")
DAY = Interval(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC))


def naive(moment: datetime) -> np.datetime64:
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "us")


def log_predictions(root, rows: list[tuple[str, str, str, bool, float, datetime, datetime]]) -> None:
    """(sample, version, variant, returned, score, event time, served time) through the service's writer."""
    log = PredictionLog(root, flush_rows=10_000, flush_seconds=60)
    for sample, version, variant, returned, score, event, served in rows:
        log.append(
            {
                "request_id": np.array([f"r-{sample}-{version}"], dtype=object),
                "served_at": np.array([naive(served)]),
                "sample_id": np.array([sample], dtype=object),
                "lab_id": np.array(["LAB-001"], dtype=object),
                "event_timestamp": np.array([naive(event)]),
                "model": np.array([DATASET.model_name], dtype=object),
                "variant": np.array([variant], dtype=object),
                "model_version": np.array([version], dtype=object),
                "returned": np.array([returned]),
                "score": np.array([score]),
                "latency_ms": np.array([5.0]),
                "unknown_entity": np.array([False]),
                "stale_features": np.array([False]),
            }
        )
    log.close()


def write_labels(lake: Lake, rows: list[tuple[str, str, datetime]]) -> None:
    """(sample, outcome, reported at) into the validated zone, one partition per day reported."""
    frame = pd.DataFrame(rows, columns=["sample_id", "qc_outcome", "reported_at"])
    frame["lab_id"] = "LAB-001"
    frame["reported_at"] = pd.to_datetime(frame["reported_at"], utc=True)
    for day, part in frame.groupby(frame["reported_at"].dt.floor("D")):
        interval = Interval(day.to_pydatetime(), day.to_pydatetime() + timedelta(days=1))
        path = lake.partition("validated", "qc_results", interval)
        path.parent.mkdir(parents=True, exist_ok=True)
        part.to_parquet(path, index=False)


@pytest.fixture
def served(tmp_path):
    lake = Lake(tmp_path / "lake")
    predictions = tmp_path / "lake" / "predictions" / DATASET.model_name
    t = DAY.start
    log_predictions(
        predictions,
        [
            ("S1", "3", "champion", True, 0.9, t + timedelta(hours=1), t + timedelta(hours=1)),
            ("S1", "4", "challenger", False, 0.7, t + timedelta(hours=1), t + timedelta(hours=1)),
            ("S2", "3", "champion", True, 0.2, t + timedelta(hours=2), t + timedelta(hours=2)),
            ("S2", "4", "challenger", False, 0.1, t + timedelta(hours=2), t + timedelta(hours=2)),
            ("S2", "3", "champion", True, 0.6, t + timedelta(hours=2), t + timedelta(hours=3)),  # a retry
            ("S3", "3", "champion", True, 0.4, t + timedelta(hours=5), t + timedelta(hours=5)),
            ("S9", "3", "champion", True, 0.5, t - timedelta(hours=1), t + timedelta(hours=1)),  # the day before
        ],
    )
    write_labels(
        lake,
        [
            ("S1", "failed", t + timedelta(days=1, hours=2)),
            ("S2", "passed", t - timedelta(hours=3)),  # before its sample: within the spec's grace
            ("S2", "failed", t + timedelta(days=3)),  # corrected later
            ("S3", "passed", t + timedelta(days=5)),
        ],
    )
    return lake, predictions


def test_a_label_counts_only_from_when_it_was_reported(served):
    lake, predictions = served
    frame = read_predictions(predictions, DAY)
    assert sorted(frame.sample_id.unique()) == ["S1", "S2", "S3"]  # S9 happened the day before
    for as_of, outcomes in (
        (DAY.end, {"S2": 0}),  # S1's label comes the next day
        (DAY.end + timedelta(hours=2), {"S1": 1, "S2": 0}),  # at the very moment it is reported
        (DAY.end + timedelta(days=3), {"S1": 1, "S2": 1}),  # S2 corrected from its report on
        (DAY.end + timedelta(days=10), {"S1": 1, "S2": 1, "S3": 0}),
    ):
        labels = known_labels(DATASET, lake, DAY, as_of)
        joined = join_labels(DATASET, frame, labels)
        champion = joined[joined.model_version == "3"].set_index("sample_id")
        known = champion[OUTCOME].dropna().astype(int).to_dict()
        assert known == outcomes, as_of


def test_each_version_and_variant_gets_its_figures_and_a_retry_counts_once(served):
    lake, predictions = served
    joined = join_labels(
        DATASET, read_predictions(predictions, DAY), known_labels(DATASET, lake, DAY, DAY.end + timedelta(days=10))
    )
    figures = {(m.version, m.variant): m for m in live_metrics(joined)}
    champion, shadow = figures[("3", "champion")], figures[("4", "challenger")]
    assert (champion.served, champion.labelled, champion.returned) == (3, 3, True)
    assert (shadow.served, shadow.labelled, shadow.returned) == (2, 2, False)
    # S2's first score (0.2), not the retry's: (0.9-1)^2, (0.2-1)^2, (0.4-0)^2
    assert champion.brier == pytest.approx(np.mean([0.01, 0.64, 0.16]))
    assert champion.roc_auc == pytest.approx(0.5)  # positives 0.9 and 0.2 against the negative 0.4
    assert champion.coverage == 1.0 and champion.latency_p99_ms == pytest.approx(5.0)
    assert sum(b.events for b in champion.calibration) == 3
    assert shadow.roc_auc is None  # only failures labelled among its events: no AUC yet


def test_the_pairs_are_the_events_both_versions_scored(served):
    lake, predictions = served
    joined = join_labels(
        DATASET, read_predictions(predictions, DAY), known_labels(DATASET, lake, DAY, DAY.end + timedelta(days=10))
    )
    differences = paired_differences(DATASET, joined, "3", "4")
    # S1: (0.9-1)^2 - (0.7-1)^2; S2: (0.2-1)^2 - (0.1-1)^2. S3 was scored by the champion alone.
    assert differences == pytest.approx([0.01 - 0.09, 0.64 - 0.81])
