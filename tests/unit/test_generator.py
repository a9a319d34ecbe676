from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ctpipe.datasets import get_dataset
from ctpipe.datasets.lab_qc_generator import GeneratorConfig, generate

from .sources import rule_violations

DATASET = get_dataset("lab_qc")


def test_same_config_gives_identical_data():
    config = GeneratorConfig(start=date(2026, 3, 1), days=3, rows_per_day=200)
    first, second = generate(config), generate(config)
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])


def test_a_day_does_not_depend_on_the_range_it_was_generated_in():
    long, _ = generate(GeneratorConfig(start=date(2026, 3, 1), days=3, rows_per_day=200))
    short, _ = generate(GeneratorConfig(start=date(2026, 3, 3), days=1, rows_per_day=200))
    day3 = long[long["submitted_at"] >= pd.Timestamp("2026-03-03", tz="UTC")].reset_index(drop=True)
    pd.testing.assert_frame_equal(day3, short)


def test_columns_follow_the_dataset_spec():
    samples, results = generate(GeneratorConfig(start=date(2026, 3, 1), days=1, rows_per_day=50))
    assert list(samples.columns) == DATASET.events.column_names
    assert list(results.columns) == DATASET.labels.column_names


def test_clean_data_is_plausible_and_passes_every_rule():
    samples, results = generate(GeneratorConfig(start=date(2026, 3, 1), days=14, rows_per_day=400, bad_row_share=0))
    assert samples["sample_id"].is_unique
    dna = samples[samples["sample_type"] == "DNA"]
    rna = samples[samples["sample_type"] == "RNA"]
    assert 1.7 < dna["a260_280"].median() < 1.9  # pure DNA sits near 1.8
    assert 1.95 < rna["a260_280"].median() < 2.15  # pure RNA near 2.0
    assert rna["rin"].notna().all() and samples.loc[samples["sample_type"] != "RNA", "rin"].isna().all()
    for column in DATASET.events.columns:
        values = samples[column.name]
        if column.min_value is not None:
            assert (values.dropna() >= column.min_value).all(), column.name
            assert (values.dropna() <= column.max_value).all(), column.name
        if column.allowed_values:
            assert set(values) <= set(column.allowed_values), column.name
    failed = (results["qc_outcome"] == "failed").mean()
    assert 0.08 < failed < 0.3, failed


def test_outcomes_arrive_after_their_samples_and_before_the_range_ends():
    config = GeneratorConfig(start=date(2026, 3, 1), days=5, rows_per_day=200, bad_row_share=0)
    samples, results = generate(config)
    joined = results.merge(samples[["sample_id", "submitted_at"]], on="sample_id")
    delay = joined["reported_at"] - joined["submitted_at"]
    assert (delay >= pd.Timedelta(hours=2)).all()
    assert results["reported_at"].max() < pd.Timestamp(config.end, tz="UTC")
    assert len(results) < len(samples)  # the last days' outcomes are still pending


def test_bad_rows_are_injected_at_the_configured_share():
    samples, results = generate(GeneratorConfig(start=date(2026, 3, 1), days=10, rows_per_day=400, bad_row_share=0.05))
    bad = rule_violations(samples, DATASET.events)
    assert 0.035 < bad.mean() < 0.065, bad.mean()
    assert samples.duplicated().sum() > 0
    assert (~results["qc_outcome"].isin(["passed", "failed"])).sum() > 0


def test_drift_shifts_covariates_and_the_outcome_relation():
    start = date(2026, 3, 1)
    drift = start + timedelta(days=10)
    base = dict(start=start, days=20, rows_per_day=400, bad_row_share=0)
    none_samples, none_results = generate(GeneratorConfig(**base, drift_start=None))
    samples, _ = generate(GeneratorConfig(**base, drift_start=drift, drift_kind="covariate"))
    after = samples["submitted_at"] >= pd.Timestamp(drift, tz="UTC")
    before_transit = samples.loc[~after, "transit_hours"].mean()
    assert samples.loc[after, "transit_hours"].mean() > 1.5 * before_transit
    assert samples.loc[after, "storage_temp_c"].mean() > samples.loc[~after, "storage_temp_c"].mean() + 10
    # Before the drift the data is exactly the undrifted data.
    pd.testing.assert_frame_equal(samples[~after], none_samples[~after])

    _, concept_results = generate(GeneratorConfig(**base, drift_start=drift, drift_kind="concept"))
    late = concept_results["reported_at"] >= pd.Timestamp(drift + timedelta(days=5), tz="UTC")
    late_none = none_results["reported_at"] >= pd.Timestamp(drift + timedelta(days=5), tz="UTC")
    concept_rate = (concept_results.loc[late, "qc_outcome"] == "failed").mean()
    none_rate = (none_results.loc[late_none, "qc_outcome"] == "failed").mean()
    assert concept_rate > none_rate + 0.05


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"days": 0}, "days"),
        ({"bad_row_share": 1.5}, "bad_row_share"),
        ({"drift_kind": "sideways"}, "drift_kind"),
    ],
)
def test_bad_configuration_is_refused_with_its_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**{"start": date(2026, 3, 1), "days": 1, **kwargs})


def test_rows_per_day_averages_to_the_configured_value():
    samples, _ = generate(GeneratorConfig(start=date(2026, 3, 2), days=28, rows_per_day=300, bad_row_share=0))
    assert abs(len(samples) / 28 - 300) < 15
    assert np.isclose(samples.groupby(samples["submitted_at"].dt.date).size().mean(), len(samples) / 28)
