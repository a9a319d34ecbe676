"""The data half through Airflow: ingest -> validate -> features, day by day with dag.test().

Real Airflow (SQLite metadata DB), real GX, real Feast; the source is a SQLite
file seeded by the generator, reached through the ``ctpipe_source`` connection.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from ctpipe import artifacts
from ctpipe.datasets import get_dataset
from ctpipe.lake import Lake
from ctpipe.local_run import RunFailed, load_dags, run_dag, run_day
from ctpipe.records import Interval
from ctpipe.settings import Settings

from ..unit.sources import seeded_sqlite

pytestmark = pytest.mark.integration

DATASET = get_dataset("lab_qc")
UTC = UTC
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = [Interval(START + timedelta(days=i), START + timedelta(days=i + 1)) for i in range(4)]


def use_state(env: pytest.MonkeyPatch, root) -> Settings:
    env.setenv("CTPIPE_STATE_DIR", str(root / "state"))
    env.setenv("AIRFLOW_CONN_CTPIPE_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(root / "source.db")}))
    for name in ("CTPIPE_FEAST_REGISTRY", "CTPIPE_FEAST_ONLINE_STORE", "CTPIPE_FEATURES_DIR"):
        env.delenv(name, raising=False)
    return Settings.from_env()


def report(settings: Settings, table: str, interval: Interval) -> dict:
    return json.loads(artifacts.validation_report(settings, table, interval).read_text())


def rows(path) -> int:
    return pq.read_metadata(path).num_rows


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, airflow_db):
    root = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as env:
        settings = use_state(env, root)
        engine, samples, results = seeded_sqlite(
            root / "source.db", start=date(2026, 1, 1), days=4, rows_per_day=300, bad_row_share=0.05
        )
        engine.dispose()
        dags = load_dags()
        for interval in DAYS:
            run_day(dags, interval, train_first_model=False)
        yield settings, dags, samples, results


def test_every_row_lands_or_is_quarantined(pipeline):
    settings, _, samples, results = pipeline
    lake = Lake(settings.lake_dir)
    for table, source in ((DATASET.events, samples), (DATASET.labels, results)):
        for interval in DAYS:
            stamps = source[table.timestamp]
            in_source = int(((stamps >= interval.start) & (stamps < interval.end)).sum())
            outcome = report(settings, table.name, interval)
            assert outcome["status"] == "passed"
            assert rows(lake.partition("raw", table.name, interval)) == outcome["rows_in"] == in_source
            assert rows(lake.partition("validated", table.name, interval)) == outcome["rows_passed"]
            assert rows(lake.partition("quarantine", table.name, interval)) == outcome["rows_quarantined"]
            held = lake.partition("held", table.name, interval)  # labels waiting for their sample
            assert (rows(held) if held.exists() else 0) == outcome["rows_held"]
            assert outcome["rows_in"] == outcome["rows_passed"] + outcome["rows_quarantined"] + outcome["rows_held"]
        quarantined = sum(report(settings, table.name, i)["rows_quarantined"] for i in DAYS)
        assert quarantined > 0, table.name
    reasons = pq.read_table(lake.partition("quarantine", DATASET.events.name, DAYS[0])).column("quarantine_reasons")
    assert all(len(r) >= 1 for r in reasons.to_pylist())


def test_online_features_are_the_last_intervals_values(pipeline):
    from ctpipe.feature_store import load_store, online_features

    settings, _, _, _ = pipeline
    last = pq.read_table(Lake(settings.lake_dir).partition("features", DATASET.feature_view, DAYS[-1])).to_pandas()
    labs = sorted(last[DATASET.entity])
    served = online_features(load_store(settings), DATASET.feature_service, DATASET.entity, labs, DAYS[-1].end)
    expected = last.set_index(DATASET.entity).loc[labs]
    assert served["submissions_28d"] == expected["submissions_28d"].tolist()
    assert served["submissions_7d"] == expected["submissions_7d"].tolist()
    assert sum(served["submissions_28d"]) == report(settings, DATASET.events.name, DAYS[0])["rows_passed"] + sum(
        report(settings, DATASET.events.name, i)["rows_passed"] for i in DAYS[1:]
    )


def test_validated_assets_carry_the_interval_downstream(pipeline):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == f"validated_{DATASET.events.name}")
            .all()
        )
        published = {(e.extra["interval"]["start"], e.extra["status"]) for e in events}
    for interval in DAYS:
        assert (interval.start.isoformat(), "passed") in published


def test_rerunning_an_interval_changes_nothing(pipeline):
    settings, dags, _, _ = pipeline
    lake = Lake(settings.lake_dir)
    day = DAYS[1]
    paths = [lake.partition(zone, t.name, day) for zone in ("raw", "validated", "quarantine") for t in DATASET.tables]
    paths.append(lake.partition("features", DATASET.feature_view, day))
    before = [pq.read_table(p) for p in paths]
    run_day(dags, day, train_first_model=False)
    after = [pq.read_table(p) for p in paths]
    assert all(a.equals(b) for a, b in zip(after, before, strict=True))
    validated = pq.read_table(lake.partition("validated", DATASET.events.name, day)).column("sample_id").to_pylist()
    assert len(validated) == len(set(validated))  # no duplicates
    assert len(list(lake.table_dir("validated", DATASET.events.name).glob("*.parquet"))) == len(DAYS)


def test_an_empty_interval_is_recorded_and_runs_through(pipeline):
    settings, dags, _, _ = pipeline
    quiet = Interval(START + timedelta(days=9), START + timedelta(days=10))
    run_day(dags, quiet, train_first_model=False)
    for table in DATASET.tables:
        outcome = report(settings, table.name, quiet)
        assert outcome["status"] == "empty" and outcome["rows_in"] == 0
    features = pq.read_table(Lake(settings.lake_dir).partition("features", DATASET.feature_view, quiet)).to_pandas()
    assert len(features) > 0  # the windows still hold the earlier days
    assert (features["submissions_7d"] > 0).any()


def test_a_schema_change_fails_the_run_with_a_clear_error(tmp_path, airflow_db, monkeypatch):
    settings = use_state(monkeypatch, tmp_path)
    engine, _, _ = seeded_sqlite(tmp_path / "source.db", start=date(2026, 1, 1), days=1, rows_per_day=100)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE lab_samples RENAME COLUMN courier TO courier_name"))
    engine.dispose()
    dags = load_dags()
    with pytest.raises(RunFailed, match="validate_lab_samples"):
        run_dag(dags["ingest"], DAYS[0].end)
    outcome = report(settings, DATASET.events.name, DAYS[0])
    assert outcome["status"] == "schema_changed"
    assert "missing column(s) ['courier']" in outcome["message"]
    assert "unexpected column(s) ['courier_name']" in outcome["message"]
    assert not Lake(settings.lake_dir).partition("validated", DATASET.events.name, DAYS[0]).exists()
    # Outcomes are checked against their samples: with the samples' interval rejected they wait, unvalidated.
    assert latest_task_instance("ingest", "validate_qc_results").state == "upstream_failed"
    assert not artifacts.validation_report(settings, DATASET.labels.name, DAYS[0]).exists()

    failed = latest_task_instance("ingest", "validate_lab_samples")
    assert failed.state == "failed" and failed.try_number == 1  # bad data is not retried


def test_a_malformed_source_connection_fails_once_with_a_clear_error(tmp_path, airflow_db, monkeypatch):
    """A wrong setting stays wrong: the task fails on its first try, naming the connection."""
    use_state(monkeypatch, tmp_path)
    monkeypatch.setenv("AIRFLOW_CONN_CTPIPE_SOURCE", '{"conn_type": "bogus", "host": "x"}')
    dags = load_dags()
    with pytest.raises(RunFailed, match="extract_lab_samples"):
        run_dag(dags["ingest"], DAYS[1].end)

    failed = latest_task_instance("ingest", "extract_lab_samples")
    assert failed.state == "failed" and failed.try_number == 1 and failed.max_tries == 2


def test_a_malformed_setting_fails_its_task_once_naming_it(tmp_path, airflow_db, monkeypatch):
    """``CTPIPE_MAX_BAD_ROW_SHARE=20%`` used to be a plain ValueError, retried as if a retry could help."""
    use_state(monkeypatch, tmp_path)
    seeded_sqlite(tmp_path / "source.db", start=date(2026, 1, 1), days=1, rows_per_day=50)[0].dispose()
    monkeypatch.setenv("CTPIPE_MAX_BAD_ROW_SHARE", "20%")
    dags = load_dags()
    with pytest.raises(RunFailed, match="validate_lab_samples"):
        run_dag(dags["ingest"], DAYS[0].end)

    failed = latest_task_instance("ingest", "validate_lab_samples")
    assert failed.state == "failed" and failed.try_number == 1 and failed.max_tries == 2
    assert latest_task_instance("ingest", "extract_lab_samples").state == "success"  # it does not read the threshold
    # What the failed task said: the variable, its value and what is allowed.
    from airflow.sdk.exceptions import AirflowFailException

    from ctpipe.ingest import extract_table

    from ..unit.test_service_errors import load_ingest_dag

    extraction = extract_table(DATASET.events.name, DAYS[0]).to_dict()
    with pytest.raises(AirflowFailException) as raised:
        load_ingest_dag().validate.function(extraction, outlet_events={})
    assert str(raised.value) == (
        "ConfigurationError: CTPIPE_MAX_BAD_ROW_SHARE='20%' is not a number; allowed: a share between 0 and 1, e.g. 0.2"
    )


def latest_task_instance(dag_id: str, task_id: str):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        found = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id)
            .order_by(TaskInstance.start_date.desc())
            .first()
        )
        session.expunge(found)
        return found
