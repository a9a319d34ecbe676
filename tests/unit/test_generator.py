"""The synthetic generators that ship with the datasets: the contract each keeps, then each one's own shape."""

import dataclasses
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from ctpipe.datasets import get_dataset, get_generator
from ctpipe.datasets.lab_qc_generator import generate
from ctpipe.datasets.synthetic import GeneratorConfig

from .sources import rule_violations

DATASET = get_dataset("lab_qc")
SHOP = get_dataset("ctpipe.datasets.shop_returns:SHOP_RETURNS")
SHIPPED = pytest.mark.parametrize("dataset", [DATASET, SHOP], ids=lambda d: d.name)


def draw(dataset, **config):
    return get_generator(dataset)(GeneratorConfig(**{"start": date(2026, 3, 1), "days": 3, **config}))


@SHIPPED
def test_same_config_gives_identical_data(dataset):
    first, second = draw(dataset, rows_per_day=200), draw(dataset, rows_per_day=200)
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])


@SHIPPED
def test_a_day_does_not_depend_on_the_range_it_was_generated_in(dataset):
    (long, _), (short, _) = (
        draw(dataset, rows_per_day=200),
        draw(dataset, start=date(2026, 3, 3), days=1, rows_per_day=200),
    )
    day3 = long[long[dataset.events.timestamp] >= pd.Timestamp("2026-03-03", tz="UTC")].reset_index(drop=True)
    pd.testing.assert_frame_equal(day3, short)


@SHIPPED
def test_columns_follow_the_dataset_spec(dataset):
    events, labels = draw(dataset, days=1, rows_per_day=50)
    assert list(events.columns) == dataset.events.column_names
    assert list(labels.columns) == dataset.labels.column_names


@SHIPPED
def test_clean_data_passes_every_rule(dataset):
    events, labels = draw(dataset, days=14, rows_per_day=400, bad_row_share=0)
    assert events[dataset.events.key].is_unique and labels[dataset.labels.key].is_unique
    assert not rule_violations(events, dataset.events).any()
    assert not rule_violations(labels, dataset.labels).any()
    assert set(labels[dataset.label]) == set(dataset.labels.column(dataset.label).allowed_values)


@SHIPPED
def test_outcomes_arrive_after_their_events_and_before_the_range_ends(dataset):
    config = GeneratorConfig(start=date(2026, 3, 1), days=5, rows_per_day=200, bad_row_share=0)
    events, labels = get_generator(dataset)(config)
    key, at = dataset.events.key, dataset.events.timestamp
    joined = labels.merge(events[[key, at]], on=key)
    assert len(joined) == len(labels)
    assert (joined[dataset.labels.timestamp] > joined[at]).all()
    assert labels[dataset.labels.timestamp].max() < pd.Timestamp(config.end, tz="UTC")
    assert len(labels) < len(events)  # the last days' outcomes are still pending


@SHIPPED
def test_bad_rows_are_injected_at_the_configured_share(dataset):
    events, labels = draw(dataset, days=10, rows_per_day=400, bad_row_share=0.05)
    bad = rule_violations(events, dataset.events)
    assert 0.035 < bad.mean() < 0.065, bad.mean()
    assert events.duplicated().sum() > 0
    assert (~labels[dataset.label].isin(dataset.labels.column(dataset.label).allowed_values)).sum() > 0


@SHIPPED
def test_before_the_drift_starts_the_data_is_the_undrifted_data(dataset):
    base = dict(days=12, rows_per_day=200)
    none_events, none_labels = draw(dataset, **base)
    events, _ = draw(dataset, **base, drift_start=date(2026, 3, 7), drift_kind="covariate")

    def before(frame):
        return frame[frame[dataset.events.timestamp] < pd.Timestamp("2026-03-07", tz="UTC")]

    pd.testing.assert_frame_equal(before(events), before(none_events))
    assert len(before(events)) < len(events)
    # Concept drift changes the outcomes only, never the events.
    concept_events, concept_labels = draw(dataset, **base, drift_start=date(2026, 3, 7), drift_kind="concept")
    pd.testing.assert_frame_equal(concept_events, none_events)
    assert not concept_labels[dataset.label].equals(none_labels[dataset.label])


@SHIPPED
def test_rows_per_day_averages_to_the_configured_value(dataset):
    events, _ = draw(dataset, start=date(2026, 3, 2), days=28, rows_per_day=300, bad_row_share=0)
    days = events[dataset.events.timestamp].dt.date
    assert abs(len(events) / 28 - 300) < 15
    assert np.isclose(events.groupby(days).size().mean(), len(events) / 28)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"days": 0}, "days"),
        ({"entities": 0}, "entities"),
        ({"bad_row_share": 1.5}, "bad_row_share"),
        ({"drift_kind": "sideways"}, "drift_kind"),
    ],
)
def test_bad_configuration_is_refused_with_its_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**{"start": date(2026, 3, 1), "days": 1, **kwargs})


# lab_qc's own shape


def test_lab_samples_are_plausible():
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


# shop_returns' own shape: unlike the lab data's


def test_shop_orders_are_heavy_tailed_small_counts_and_skewed():
    orders, outcomes = draw(SHOP, days=14, rows_per_day=400, bad_row_share=0)
    amount = orders["amount"]
    assert amount.quantile(0.99) > 8 * amount.median()  # log-normal with a Pareto tail
    assert orders["items"].dtype.kind == "i" and orders["items"].median() == 1 and orders["items"].max() <= 50
    assert orders["shipping_days"].dtype.kind == "i" and orders["shipping_days"].max() <= 30
    shares = orders["category"].value_counts(normalize=True)
    assert shares.iloc[0] > 0.3 and shares.iloc[-1] < 0.05  # apparel first, grocery rare
    sellers = orders["seller_id"].value_counts(normalize=True)
    assert sellers.iloc[:3].sum() > 0.5  # a few sellers take most orders
    returned = (outcomes["outcome"] == "returned").mean()
    assert 0.15 < returned < 0.35, returned
    joined = outcomes.merge(orders[["order_id", "ordered_at"]], on="order_id")
    delay_days = (joined["settled_at"] - joined["ordered_at"]).dt.total_seconds() / 86400
    assert 3 < delay_days.median() < 8  # days, not the lab outcomes' hours


def test_shop_drift_raises_prices_moves_the_mix_and_the_return_relation():
    base = dict(days=20, rows_per_day=400, bad_row_share=0)
    drift = date(2026, 3, 11)
    _, none_outcomes = draw(SHOP, **base)
    orders, _ = draw(SHOP, **base, drift_start=drift, drift_kind="covariate")
    after = orders["ordered_at"] >= pd.Timestamp(drift, tz="UTC")
    assert orders.loc[after, "amount"].median() > 1.3 * orders.loc[~after, "amount"].median()
    electronics = orders["category"] == "electronics"
    assert electronics[after].mean() > electronics[~after].mean() + 0.2
    assert orders.loc[after, "shipping_days"].mean() > orders.loc[~after, "shipping_days"].mean() + 1.5

    _, concept_outcomes = draw(SHOP, **base, drift_start=drift, drift_kind="concept")

    def late_return_rate(outcomes):
        late = outcomes["settled_at"] >= pd.Timestamp(drift + timedelta(days=6), tz="UTC")
        return (outcomes.loc[late, "outcome"] == "returned").mean()

    assert late_return_rate(concept_outcomes) > late_return_rate(none_outcomes) + 0.08


# Seeding: the deployment's dataset, drawn by the generator its spec names


def test_seed_writes_the_deployments_dataset_drawn_by_its_own_generator(tmp_path, monkeypatch, capsys):
    from ctpipe.seed import main

    monkeypatch.setenv("CTPIPE_DATASET", "ctpipe.datasets.shop_returns:SHOP_RETURNS")
    url = f"sqlite:///{tmp_path / 'source.db'}"
    main(["--url", url, "--start", "2026-03-01", "--days", "2", "--rows-per-day", "60", "--entities", "5"])
    orders, outcomes = draw(SHOP, days=2, rows_per_day=60, entities=5)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == {"orders", "order_outcomes"}
        stored = pd.read_sql_table("orders", conn)
        assert len(stored) == len(orders) and set(stored["seller_id"].dropna()) <= {f"seller-0{i}" for i in range(1, 6)}
        assert conn.execute(sa.text("SELECT count(*) FROM order_outcomes")).scalar() == len(outcomes)
    engine.dispose()
    assert f"{len(orders)} rows in orders" in capsys.readouterr().out


@pytest.mark.parametrize(
    "generator, error, message",
    [
        (None, ValueError, "dataset 'shop_returns' ships no synthetic generator .* run the main job with --no-seed"),
        ("ctpipe.datasets.shop_returns_generator", ValueError, "is not module:function"),
        ("ctpipe.datasets.nowhere:generate", ImportError, "cannot import 'ctpipe.datasets.nowhere'"),
        ("ctpipe.datasets.shop_returns_generator:draw", AttributeError, "has no 'draw'"),
        ("ctpipe.datasets.shop_returns:ORDERS", TypeError, "is a TableSpec, not a function"),
    ],
)
def test_a_dataset_without_a_usable_generator_is_refused_with_its_name(generator, error, message):
    with pytest.raises(error, match=message):
        get_generator(dataclasses.replace(SHOP, generator=generator))
