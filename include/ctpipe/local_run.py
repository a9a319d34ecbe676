"""The main job on the embedded default: seed the source, then run the DAGs day by day.

    python -m ctpipe.local_run [--days 60] [--rows-per-day 400] [--drift-start 2026-02-15] [--drift-kind both]

It runs the deployment's dataset (``CTPIPE_DATASET``), seeded by the generator its spec names.

Every DAG runs through Airflow's ``dag.test()`` against the SQLite metadata
database in ``state/``, one data interval after the other, in the order the
scheduler would run them: ``ingest`` for the day, then ``features`` for the
interval its validated-data assets announce. Afterwards the runs are in the
Airflow UI (``make airflow``) like any others.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ctpipe import artifacts
from ctpipe.datasets import get_generator
from ctpipe.datasets.synthetic import DRIFT_KINDS, GeneratorConfig
from ctpipe.records import Interval, RetrainRequest, TrainingPlan
from ctpipe.serving.upstream import ServiceNotReady
from ctpipe.settings import PROJECT_ROOT, Settings, set_for_this_process

POLL_SECONDS = "CTPIPE_SERVING_POLL_SECONDS"
FLUSH_SECONDS = "CTPIPE_PREDICTION_LOG_FLUSH_SECONDS"


class RunFailed(RuntimeError):
    pass


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send everything written to stdout and stderr, by Python or not, to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def prepare_airflow(settings: Settings) -> None:
    """Create or upgrade the metadata database, and point the source connection at the seeded file."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(PROJECT_ROOT))
    os.environ.setdefault(
        "AIRFLOW_CONN_CTPIPE_SOURCE",
        json.dumps({"conn_type": "sqlite", "host": str(settings.state_dir / "source.db")}),
    )
    subprocess.run([Path(sys.executable).with_name("airflow"), "db", "migrate"], check=True, capture_output=True)


# The last line of a traceback: the exception a failed task raised, with its message.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Failure)\b.*")


def failure_cause(log: str) -> str | None:
    """The exception the last failed task raised, as its traceback's final line, from a run's log."""
    start = log.rfind("Task failed with exception")
    if start < 0:
        return None
    lines = [line for line in log[start:].splitlines() if _EXCEPTION_LINE.match(line)]
    return lines[-1] if lines else None


def load_dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise RunFailed(f"DAG import errors: {bag.import_errors}")
    return bag.dags


@contextmanager
def params_restored(dag: Any) -> Iterator[None]:
    """Undo what a ``dag.test()`` run leaves in the DAG's Params, so the next run starts from the form's defaults.

    Airflow 3.3 resolves a run's conf into the tasks' own Param objects (``process_params`` keeps the
    resolved value on each): in one process, a run's conf would become every later run's default.
    """
    params = [dag.params, *(task.params for task in dag.tasks)]
    saved = [{key: p.get_param(key).value for key in p} for p in params]
    try:
        yield
    finally:
        for p, values in zip(params, saved, strict=True):
            for key, value in values.items():
                p.get_param(key).value = value


def run_dag(dag: Any, logical_date: datetime, conf: dict[str, Any] | None = None) -> Any:
    with params_restored(dag):
        run = dag.test(logical_date=logical_date, run_conf=conf)
    if run.state != "success":
        failed = [ti.task_id for ti in run.get_task_instances() if ti.state == "failed"]
        raise RunFailed(f"{dag.dag_id} run for {logical_date:%Y-%m-%d} ended {run.state}; failed tasks: {failed}")
    return run


class Traffic:
    """The prediction service as an upstream system meets it: started once there is a champion, sent each day's events.

    The day's events are those its source held (``upstream.source_events``), sent before
    the day's features are computed: the service scores them with the features as they stood when the day began,
    as it would have while the day went by. The service's own log is ``serving.log``.
    """

    def __init__(self, settings: Settings, logs: Path):
        from ctpipe.serving.upstream import Sent

        self.settings = settings
        self.logs = logs
        self.service: Any = None
        self.client: Any = None
        self.sent = Sent()

    def __call__(self, interval: Interval) -> str | None:
        from ctpipe.registry import CHAMPION, alias_version
        from ctpipe.serving.live_models import registry_view
        from ctpipe.serving.upstream import (
            ServiceProcess,
            send_events,
            source_events,
            wait_until_following,
            wait_until_logged,
        )
        from ctpipe.tracking import connect

        client = connect(self.settings).client
        name = self.settings.dataset.model_name
        if self.service is None:
            if alias_version(client, name, CHAMPION) is None:
                return None
            import httpx

            # A registry change is served within a second rather than the production default's 10,
            # and the day's predictions are in the lake within a fifth of one rather than 2.
            quick = {POLL_SECONDS: "1", FLUSH_SECONDS: "0.2"}
            env = self.settings.child_environment({k: v for k, v in quick.items() if not self.settings.raw(k)})
            self.service = ServiceProcess(env, self.logs / "serving.log").start()
            self.client = httpx.Client(timeout=120)
        # The day's events are scored by what the registry says now, however fast the day before went.
        aliases, policy = registry_view(client, name)
        token = self.settings.serving.token
        wait_until_following(self.client, self.service.url, aliases, policy, token)
        events = source_events(self.settings, interval)
        sent = send_events(self.client, self.service.url, events, token)
        # The day's drift check and live evaluation read the prediction log: all of the day's first.
        wait_until_logged(self.client, self.service.url, self.settings.serving.metrics_token)
        self.sent.add(sent)
        served = sum(sent.served.values())
        refused = sum(sent.refused.values())
        return f"served {served} events" + (f", refused {refused} malformed" if refused else "")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.service is not None:
            self.service.stop()  # SIGTERM: the prediction log's buffer is written

    def story(self) -> list[str]:
        """Events served per version and variant, from the prediction log the service wrote."""
        import pandas as pd

        directory = self.settings.predictions_dir
        if self.service is None or not directory.is_dir():
            return ["Served: no champion was ever loaded, so no events were sent"]
        logged = pd.read_parquet(directory, columns=["request_id", "model_version", "variant", "returned"])
        lines = [
            f"Served: {len(logged)} predictions logged for {logged.request_id.nunique()} requests "
            f"({self.sent.requests} sent), in {directory}"
        ]
        counts = logged.groupby(["model_version", "variant", "returned"]).size()
        for (version, variant, returned), n in sorted(counts.items(), key=lambda kv: (int(kv[0][0]), kv[0][1])):
            shadow = "" if returned else " (scored and logged, answer not returned)"
            lines.append(f"  version {version} as {variant}: {n} events{shadow}")
        refused = sum(self.sent.refused.values())
        if refused:
            why = "; ".join(f"{reason} ({n})" for reason, n in self.sent.refused.most_common(3))
            lines.append(f"  refused as malformed (422): {refused} events: {why}")
        return lines


def run_day(
    dags: dict[str, Any], interval: Interval, train_first_model: bool, traffic: Traffic | None = None
) -> list[str]:
    """One day as the scheduler would run it; returns what happened beyond the routine.

    ``dag.test()`` cannot deliver asset events, so a run the scheduler would start from an
    event gets the event's record as its conf instead: the features DAG its interval, the
    training DAG the retrain request. With ``traffic``, the day's events go to the service
    before the day's features are computed.
    """
    from ctpipe.monitoring import recorded_check, retrain_request

    # A daily cron-interval run triggered at the interval's end covers [start, end).
    run_dag(dags["ingest"], interval.end)
    happened = []
    if traffic is not None:
        served = traffic(interval)
        if served:
            happened.append(served)
    run_dag(
        dags["features"],
        interval.end,
        {"interval_start": interval.start.isoformat(), "interval_end": interval.end.isoformat()},
    )
    if train_first_model:
        request = RetrainRequest(cutoff=interval.end, reason="first model")
        run_dag(dags["training"], interval.end, {"retrain_request": request.to_dict()})
        happened.append(f"first model: {promotion_of_latest()}")
    # The monitoring DAG runs on the features asset; a retrain request it publishes triggers training.
    run_dag(dags["monitoring"], interval.end, {"interval_end": interval.end.isoformat()})
    check = recorded_check(interval)
    if check is not None and check.retrain:
        run_dag(dags["training"], interval.end, {"retrain_request": retrain_request(check).to_dict()})
        happened.append(f"{check.reason} -> {promotion_of_latest()}")
    if traffic is not None:  # the day's live figures, and the live experiment's step when one runs
        from ctpipe.rollout import recorded_steps, step_line

        run_dag(dags["online_evaluation"], interval.end)
        for step in recorded_steps(Settings.from_env(), interval.end):
            if step.action != "continue":
                happened.append(f"live experiment of version {step.challenger}: {step_line(step).removeprefix('- ')}")
    return happened


def promotion_of_latest() -> str:
    """The newest model version and its recorded promotion decision, in a few words."""
    from ctpipe.registry import versions
    from ctpipe.tracking import connect

    settings = Settings.from_env()
    latest = versions(connect(settings).client, settings.dataset.model_name)[-1]
    return f"version {latest.version} {latest.tags.get('promotion_decision', 'undecided')}"


def has_model_versions() -> bool:
    from ctpipe.registry import versions
    from ctpipe.tracking import connect

    settings = Settings.from_env()
    return bool(versions(connect(settings).client, settings.dataset.model_name))


def model_story(settings: Settings, drift_start: date | None) -> list[str]:
    """Model versions with their promotion decisions, the champion, and what the drift checks said."""
    from ctpipe.registry import CHAMPION, alias_version, versions
    from ctpipe.tracking import connect

    name = settings.dataset.model_name
    tracking = connect(settings)
    client = tracking.client
    lines = [f"Models ({name}):"]
    for v in versions(client, name):
        tags = v.tags
        lines.append(
            f"  version {v.version} [{tags.get('family')}, data to {tags.get('training_cutoff', '')[:10]}, "
            f"trigger: {tags.get('trigger', '')[:60]}]: {tags.get('promotion_decision', 'undecided')}; "
            f"{tags.get('promotion_reasons', '')}"
        )
    lines += live_story(settings)
    champion = alias_version(client, name, CHAMPION)
    if champion is not None:
        metrics = {k.removeprefix("holdout."): v for k, v in champion.tags.items() if k.startswith("holdout.")}
        shown = ", ".join(
            f"{k} {float(metrics[k]):.3f}" for k in ("roc_auc", "average_precision", "brier") if k in metrics
        )
        lines.append(f"Champion: version {champion.version} ({shown})")
    runs = client.search_runs([tracking.experiment_id("monitoring")], order_by=["tags.interval_end ASC"])
    if runs:
        lines.append(drift_story([(r.data.tags["interval_end"][:10], r.data.tags) for r in runs], drift_start))
    return lines


def live_story(settings: Settings) -> list[str]:
    """Each live experiment's steps but its quiet days, as recorded on the challenger's version."""
    from ctpipe.rollout import recorded_steps, step_line

    lines = []
    for step in recorded_steps(settings):
        if step.action == "start":
            lines.append(f"  live experiment of version {step.challenger} against champion version {step.champion}:")
        if step.action != "continue":
            lines.append(f"    {step_line(step).removeprefix('- ')}")
    return lines


def live_figures_story(settings: Settings) -> list[str]:
    """Each version's latest live figures as answered, from its run in the live experiment (``online_evaluation``)."""
    from ctpipe.online_evaluation import LIVE_RUN_TAG
    from ctpipe.tracking import connect

    tracking = connect(settings)
    runs = tracking.client.search_runs([tracking.experiment_id("live")])
    lines = []
    for run in sorted(runs, key=lambda r: int(r.data.tags[LIVE_RUN_TAG])):
        metrics = run.data.metrics
        for variant in ("champion", "challenger"):
            key = f"{variant}.answered"
            if f"{key}.brier" in metrics:
                auc = metrics.get(f"{key}.roc_auc")
                lines.append(
                    f"  version {run.data.tags[LIVE_RUN_TAG]} as {variant}: Brier {metrics[f'{key}.brier']:.3f}"
                    + (f", ROC AUC {auc:.3f}" if auc is not None else "")
                    + f" on {metrics[f'{key}.labelled']:.0f} labelled of {metrics[f'{key}.served']:.0f} answered, "
                    f"p99 {metrics[f'{key}.latency_p99_ms']:.0f} ms"
                )
    if lines:
        lines.insert(0, f"Live figures, last {settings.live_window_days} days as of the last day (MLflow: live runs):")
    return lines


def alert_story(settings: Settings) -> list[str]:
    """The alerts the job sent, by event, from the embedded default's channel (a JSON-lines file)."""
    from collections import Counter

    from ctpipe.alerts import read_alerts

    path = settings.alerts.file
    if path is None:
        return [f"Alerts: sent to {', '.join(settings.alerts.channels) or 'no channel'} (no file to read back)"]
    sent = read_alerts(path)
    counts = Counter(alert.event for alert in sent)
    by_event = f" ({', '.join(f'{event} {n}' for event, n in counts.items())})" if sent else ""
    lines = [f"Alerts: {len(sent)} in {path}{by_event}"]
    lines += [f"  {alert.title}" for alert in sent[-5:]]
    return lines


def drift_story(checked: list[tuple[str, dict[str, str]]], drift_start: date | None) -> str:
    """What the drift checks (interval end, tags) said; against the drift start only when the job seeded it."""
    flagged = [day for day, tags in checked if tags["reason"].startswith("drift")]
    seeded = ""
    if drift_start is not None:
        before = [day for day in flagged if day <= str(drift_start)]  # checks of data from before it
        seeded = f" (drift starts {drift_start}; flagged before it: {len(before)})"
    return (
        f"Drift checks: {len(checked)}, drift flagged on {len(flagged)} days, first on "
        f"{flagged[0] if flagged else 'none'}{seeded}; "
        f"retrains requested: {sum(tags['decision'] == 'retrain' for _, tags in checked)}"
    )


def busiest_entity(settings: Settings, interval: Interval) -> str | None:
    """The entity with the most validated events in ``interval``: one the dataset really has."""
    from ctpipe.lake import Lake

    dataset = settings.dataset
    events = Lake(settings.lake_dir).read_window(
        "validated", dataset.events.name, dataset.events.timestamp, interval, [dataset.entity]
    )
    counts = events[dataset.entity].value_counts(sort=True)
    return None if counts.empty else str(counts.index[0])


def summary(
    settings: Settings, intervals: list[Interval], seconds: float, drift_start: date | None, traffic: Traffic
) -> str:
    from ctpipe.feature_store import load_store, online_features

    dataset = settings.dataset
    lines = [
        f"Ran ingest, features, monitoring, training and online_evaluation over {len(intervals)} daily intervals "
        f"in {seconds:.0f}s."
    ]
    for table in dataset.tables:
        reports = [json.loads(artifacts.validation_report(settings, table.name, i).read_text()) for i in intervals]
        rows_in = sum(r["rows_in"] for r in reports)
        passed = sum(r["rows_passed"] for r in reports)
        quarantined = sum(r["rows_quarantined"] for r in reports)
        held = sum(r["rows_held"] for r in reports)
        unplaceable = sum(reports[-1]["unplaceable"].values()) if reports else 0
        lines.append(
            f"  {table.name}: {rows_in} rows in, {passed} validated, {quarantined} quarantined, {held} held back; "
            f"{unplaceable} in no interval"
        )
    entity = busiest_entity(settings, intervals[-1])
    if entity is not None:
        # As served at the end of the last day: the synthetic days are in the past, beyond the features' TTL.
        values = online_features(
            load_store(settings), dataset.feature_service, dataset.entity, [entity], as_of=intervals[-1].end
        )
        shown = ", ".join(f"{k}={v[0]:.3g}" if isinstance(v[0], float) else f"{k}={v[0]}" for k, v in values.items())
        lines.append(
            f"Online features ({dataset.feature_service}) for {entity}, the {dataset.entity} with the most events "
            f"on {intervals[-1].start:%Y-%m-%d}, at {intervals[-1].end:%Y-%m-%d}: {shown}"
        )
    lines += model_story(settings, drift_start)
    lines += traffic.story()
    lines += live_figures_story(settings)
    lines += alert_story(settings)
    lines += [
        "",
        f"Lake:        {settings.lake_dir}/{{raw,validated,quarantine,held,unplaceable,features}}",
        f"Validation:  {artifacts.validation_reports_dir(settings)} (JSON per interval); "
        f"Data Docs: file://{artifacts.data_docs_index(settings)}",
        f"Drift:       {artifacts.drift_reports_dir(settings)} (Evidently HTML per interval, also in MLflow)",
        "Airflow UI:  make airflow   -> http://localhost:8080",
        "MLflow UI:   make mlflow    -> http://localhost:5000 (models, aliases, tags, evidence, reports)",
        "Alias moves: python -m ctpipe.registry history",
        "Features:    make serve-features, then",
        "             curl -X POST localhost:6566/get-online-features "
        f"-d '{json.dumps({'feature_service': dataset.feature_service, 'entities': {dataset.entity: [entity]}})}'",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 1, 1))
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rows-per-day", type=int, default=GeneratorConfig.rows_per_day)
    parser.add_argument("--drift-start", type=date.fromisoformat, default=None, help="default: 3/4 into the range")
    parser.add_argument(
        "--drift-kind", choices=DRIFT_KINDS, default="both", help="what drifts; none for a stationary source"
    )
    parser.add_argument(
        "--no-seed", action="store_true", help="run over the source as it is (AIRFLOW_CONN_CTPIPE_SOURCE), do not seed"
    )
    parser.add_argument(
        "--first-model-after",
        type=int,
        default=None,
        help="days of data before the first model is trained; default: the longest feature window (28 days, "
        "to fill it) plus the training plan's days (14)",
    )
    parser.add_argument("--no-serving", action="store_true", help="do not start the service or send it events")
    parser.add_argument(
        "--challenger-policy",
        choices=("champion_only", "shadow", "canary", "ab"),
        default=None,
        help="how a new challenger meets traffic (CTPIPE_SERVING_CHALLENGER_POLICY); default here: canary, so a "
        "retrained model that passes its review goes through a live experiment before it is promoted",
    )
    parser.add_argument("--verbose", action="store_true", help="show the runs' logs here instead of in state/logs")
    args = parser.parse_args(argv)

    from ctpipe.seed import seed

    started = time.perf_counter()
    if args.challenger_policy or Settings.from_env().raw("CTPIPE_SERVING_CHALLENGER_POLICY") is None:
        set_for_this_process("CTPIPE_SERVING_CHALLENGER_POLICY", args.challenger_policy or "canary")
    settings = Settings.from_env()
    if args.first_model_after is None:
        args.first_model_after = settings.dataset.longest_window.days + TrainingPlan.days
    drift_start = args.drift_start or args.start + timedelta(days=args.days * 3 // 4)
    config = GeneratorConfig(
        start=args.start,
        days=args.days,
        rows_per_day=args.rows_per_day,
        drift_start=drift_start,
        drift_kind=args.drift_kind,
    )
    seeded_drift = None if args.no_seed or args.drift_kind == "none" else drift_start
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_seed:
        try:
            get_generator(settings.dataset)  # before anything is cleared
        except (ValueError, ImportError, AttributeError, TypeError) as error:
            sys.exit(f"Cannot seed: {error}")
        # A new source invalidates everything derived from the old one.
        for derived in ("lake", "feast", "gx", "mlflow", "reports", "alerts"):
            shutil.rmtree(settings.state_dir / derived, ignore_errors=True)
        counts = seed(f"sqlite:///{settings.state_dir / 'source.db'}", config, settings.dataset)
        drift = f"{args.drift_kind} drift from {drift_start}" if seeded_drift else "no drift"
        print(f"Seeded {settings.dataset.name}: {counts} for {config.start} .. {config.end} ({drift}).", flush=True)
    logs = settings.state_dir / "logs" / "local_run"

    def quiet(name: str):
        return nullcontext() if args.verbose else output_to(logs / name)

    prepare_airflow(settings)
    with quiet("load_dags.log"):
        dags = load_dags()
    first = datetime.combine(args.start, datetime.min.time(), UTC)
    intervals = [Interval(first + timedelta(days=i), first + timedelta(days=i + 1)) for i in range(args.days)]
    traffic = Traffic(settings, logs)
    try:
        for number, interval in enumerate(intervals, start=1):
            day_started = time.perf_counter()
            log = logs / f"{interval.start:%Y-%m-%d}.log"
            try:
                with quiet(log.name):
                    first_model = number >= args.first_model_after and not has_model_versions()
                    happened = run_day(dags, interval, first_model, None if args.no_serving else traffic)
            except (RunFailed, ServiceNotReady) as error:
                text = "" if args.verbose else log.read_text()
                if text:
                    print("".join(text.splitlines(keepends=True)[-40:]), file=sys.stderr)
                cause = failure_cause(text)
                sys.exit(f"Full log: {log}\n{error}" + (f"\nCause: {cause}" if cause else ""))
            seconds = time.perf_counter() - day_started
            print(f"{interval.start:%Y-%m-%d}: ok ({seconds:.1f}s)" + "".join(f"; {h}" for h in happened), flush=True)
    finally:
        traffic.close()
    with quiet("summary.log"):
        text = summary(settings, intervals, time.perf_counter() - started, seeded_drift, traffic)
    print(f"\n{text}\nLogs of every run: {logs}")


if __name__ == "__main__":
    main()
