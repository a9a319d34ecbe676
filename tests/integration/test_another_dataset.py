"""The second example dataset, plugged in by its import path alone, through the main job as the README shows.

``CTPIPE_DATASET=ctpipe.datasets.shop_returns:SHOP_RETURNS python -m ctpipe.local_run``
(the session's ``shop_run``) seeds it with its own generator and runs every DAG through
``dag.test()`` over 24 days of a stationary source.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from ctpipe.datasets import get_dataset
from ctpipe.lake import QUARANTINE_REASONS, Lake
from ctpipe.training_set import model_columns

from ..unit.sources import where_every_row_is
from .conftest import SHOP, SHOP_DAYS

pytestmark = pytest.mark.integration

DATASET = get_dataset(SHOP)
DAYS = SHOP_DAYS


@pytest.fixture(scope="module")
def shop(shop_run):
    with pytest.MonkeyPatch.context() as patch:
        for name, value in shop_run.env.items():
            patch.setenv(name, value)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield shop_run.state, shop_run.stdout


def test_it_is_seeded_by_its_own_generator_and_every_row_lands_or_is_quarantined(shop):
    state, out = shop
    assert "Seeded shop_returns: {'orders': " in out and "(no drift)" in out
    engine = sa.create_engine(f"sqlite:///{state / 'source.db'}")
    lake = Lake(state / "lake")
    for table in DATASET.tables:
        source = pd.read_sql_table(table.name, engine)
        in_source = source[table.key].value_counts().to_dict()
        assert where_every_row_is(lake, table.name, table.key) == in_source, table.name
    engine.dispose()
    assert len(lake.partitions("validated", "orders")) == DAYS  # outcomes only from the days they settle
    quarantined = pd.concat(pd.read_parquet(path) for _, path in lake.partitions("quarantine", "orders"))
    reasons = " ".join(" ".join(r) for r in quarantined[QUARANTINE_REASONS])
    for rule in ("items", "amount", "category", "payment"):  # the shop's own rules, read from its spec
        assert rule in reasons, rule


def test_the_feature_store_serves_its_entity_and_the_summary_shows_a_real_one(shop):
    from ctpipe.feature_store import load_store, online_features
    from ctpipe.settings import Settings

    state, out = shop
    last = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=DAYS - 1)
    orders = pd.read_parquet(state / "lake" / "validated" / "orders")
    busiest = orders.loc[orders["ordered_at"] >= pd.Timestamp(last), "seller_id"].value_counts().index[0]
    line = next(line for line in out.splitlines() if line.startswith("Online features"))
    assert line.startswith(
        f"Online features (seller_returns_v1) for {busiest}, the seller_id with the most events on "
        f"{last:%Y-%m-%d}, at {last + timedelta(days=1):%Y-%m-%d}: seller_id={busiest}, orders_3d="
    )
    assert "stale_features=False" in line
    served = online_features(
        load_store(Settings.from_env()), "seller_returns_v1", "seller_id", [busiest], as_of=last + timedelta(days=1)
    )
    last_day = orders[(orders["seller_id"] == busiest) & (orders["ordered_at"] >= pd.Timestamp(last))]
    three_days = orders[
        (orders["seller_id"] == busiest) & (orders["ordered_at"] >= pd.Timestamp(last - timedelta(days=2)))
    ]
    assert len(last_day) > 0 and served["orders_3d"] == [len(three_days)]
    assert "LAB-" not in out and "lab_id" not in out


def test_a_model_is_registered_under_its_name_and_no_stationary_check_flags_drift(shop):
    from ctpipe.registry import CHAMPION, alias_version, versions
    from ctpipe.tracking import connect

    _, out = shop
    client = connect().client
    [first] = versions(client, DATASET.model_name)
    assert first.tags["trigger"] == "first model" and first.tags["promotion_decision"] == "promote"
    assert alias_version(client, DATASET.model_name, CHAMPION).version == first.version
    assert first.tags["training_cutoff"].startswith(f"{date(2026, 1, 22)}")

    tracking = connect()
    checks = client.search_runs([tracking.experiment_id("monitoring")], order_by=["tags.interval_end ASC"])
    assert len(checks) == 4  # from the interval ending at the first model's cutoff on
    flagged = {
        c.data.tags["interval_end"][:10]: {
            k[len("drift.") :]: round(v, 3)
            for k, v in c.data.metrics.items()
            if k.startswith("drift.") and v > c.data.metrics[f"threshold.{k[len('drift.') :]}"]
        }
        for c in checks
    }
    assert all(not columns for columns in flagged.values()), flagged
    assert {c.data.tags["decision"] for c in checks} == {"skip"}
    # Once the service answered, each check also compares what the champion really served with its reference.
    served = [c for c in checks if int(c.data.tags["served_rows"]) > 0]
    assert [c.data.tags["interval_end"][:10] for c in served] == ["2026-01-23", "2026-01-24", "2026-01-25"]
    numeric, categorical = model_columns(DATASET)
    for check in served:
        assert {f"served.drift.{c}" for c in [*numeric, *categorical]} <= set(check.data.metrics)
        assert "served inputs (" in check.data.tags["reason"]
        reports = [a.path for a in client.list_artifacts(check.info.run_id, "drift_report")]
        assert any(path.split("/")[-1].startswith("served_") for path in reports), reports
    assert "Drift checks: 4, drift flagged on 0 days, first on none; retrains requested: 0" in out
    assert "drift starts" not in out  # the job seeded none


def test_the_main_job_sends_each_days_orders_to_the_service_once_there_is_a_champion(shop):
    import re

    from ctpipe.records import Interval
    from ctpipe.settings import Settings

    state, out = shop
    settings = Settings.from_env()
    lake = Lake(state / "lake")
    first = datetime(2026, 1, 1, tzinfo=UTC)
    # The first model comes at the end of day 21; from the next day on, every day's orders are sent.
    assert re.search(r"^2026-01-21: ok .*first model: version 1 promote$", out, re.MULTILINE)
    sent = {}
    for day in (first + timedelta(days=i) for i in range(DAYS)):
        [line] = [line for line in out.splitlines() if line.startswith(f"{day:%Y-%m-%d}: ok")]
        answered = re.search(r"; served (\d+) events(?:, refused (\d+) malformed)?", line)
        if answered is None:
            assert day < datetime(2026, 1, 22, tzinfo=UTC), line
            continue
        rows = len(pd.read_parquet(lake.partition("raw", "orders", Interval(day, day + timedelta(days=1)))))
        served, refused = int(answered.group(1)), int(answered.group(2) or 0)
        assert served + refused == rows > 0  # every order answered, or refused as malformed
        sent[day] = served
    assert len(sent) == 3
    logged = pd.read_parquet(settings.predictions_dir)
    total = sum(sent.values())
    assert len(logged) == total and logged.returned.all() and set(logged.model_version) == {"1"}
    assert set(logged.variant) == {"champion"} and not logged.unknown_entity.any()
    assert f"Served: {total} predictions logged for " in out
    assert f"  version 1 as champion: {total} events" in out
