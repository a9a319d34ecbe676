"""The training entrypoint: the same command runs in a Kubernetes pod and as a local process.

    python -m ctpipe.training --cutoff 2026-02-20T00:00:00+00:00 [--family sklearn|torch]
        [--days 14] [--holdout-days 4] [--param max_iter=400 ...] [--seed 0] [--result-path out.json]
    python -m ctpipe.training --plan '<TrainingPlan as JSON>' --result-path out.json

The defaults are ``ctpipe.records.TrainingPlan``'s, the same the training DAG's form shows.

It builds the point-in-time training set from Feast with the labels known at
the cutoff, trains the chosen family, evaluates it on the time-based holdout
and logs everything to MLflow: params, metrics, the model with its signature
and an input example, and the training set's lineage (feature service, cutoff,
window, the validated partitions read, and the entity rows) through MLflow
datasets, so the exact set can be rebuilt from the run. The result, a small
JSON document (a ``TrainingResult``: run id, model URI, metrics), is printed and written to
``--result-path`` (``/airflow/xcom/return.json`` in a pod).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from ctpipe import artifacts
from ctpipe.lake import Lake
from ctpipe.models import FAMILIES, evaluate, model_requirements, parse_params, train_sklearn, train_torch
from ctpipe.records import Interval, TrainingPlan, TrainingResult, TrainingSetSpec
from ctpipe.settings import Settings
from ctpipe.training_set import (
    EVENT_TIMESTAMP,
    LABEL,
    build_training_set,
    events_with_features,
    model_columns,
    model_input,
    reference_sample,
    split_holdout,
)

SKOPS_TRUSTED_TYPES = ["numpy.dtype", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def log_lineage(frame: Any, name: str, context: str, spec: TrainingSetSpec, lake: Lake) -> None:
    """Log a training or holdout set as an MLflow dataset input of the active run, with what rebuilds it."""
    import mlflow

    source = (lake.root / "validated").as_uri()
    mlflow.log_input(
        mlflow.data.from_pandas(frame, source=source, name=name, targets=LABEL),
        context=context,
        tags={"feature_service": spec.feature_service, "cutoff": spec.cutoff.isoformat(), "dataset": spec.dataset},
    )


def train(plan: TrainingPlan, settings: Settings | None = None) -> TrainingResult:
    """Build the training set, train, evaluate and log one model."""
    import mlflow
    from mlflow.models import infer_signature

    from ctpipe.feature_store import load_store
    from ctpipe.tracking import connect

    settings = settings or Settings.from_env()
    dataset = settings.dataset
    family = plan.family
    params = parse_params(family, plan.params)  # fail on a bad parameter before any work
    spec = plan.training_set(dataset.name, dataset.feature_service)
    day = f"{spec.cutoff:%Y-%m-%d}"
    lake = Lake(settings.lake_dir)
    store = load_store(settings)
    frame = build_training_set(dataset, lake, store, spec)
    train_rows, holdout = split_holdout(frame, spec)
    numeric, categorical = model_columns(dataset)
    columns = numeric + categorical

    tracking = connect(settings)
    with mlflow.start_run(experiment_id=tracking.experiment_id("training"), run_name=f"{family} @ {day}") as run:
        mlflow.set_tags({"family": family, "dataset": dataset.name, "feature_service": spec.feature_service})
        mlflow.log_params({"family": family, "seed": plan.seed, **asdict(params), **spec.to_dict()})
        log_lineage(train_rows, f"{dataset.name}-train-{day}", "training", spec, lake)
        log_lineage(holdout, f"{dataset.name}-holdout-{day}", "holdout", spec, lake)
        with tempfile.TemporaryDirectory() as tmp:
            partitions = {
                t.name: [i.key for i, _ in lake.partitions("validated", t.name, spec.window)] for t in dataset.tables
            }
            _log_file(
                tmp,
                artifacts.LINEAGE_TRAINING_SET,
                json.dumps({**spec.to_dict(), "validated_partitions": partitions}, indent=2),
            )
            rows = frame[[dataset.events.key, dataset.entity, EVENT_TIMESTAMP, LABEL]]
            _log_file(tmp, artifacts.LINEAGE_ENTITY_ROWS, rows)
            # The drift check's reference: every validated event of the holdout days, the newest data the
            # model was judged on (on rows it was fitted to, its predictions would be overconfident: a false
            # alarm). Labelled or not, as the checked window is: the events whose outcomes are known by the
            # cutoff are skewed towards those whose outcomes come fast (quick deliveries, say).
            # With each row's entity and time: the check resamples it entity by entity, day by day.
            reference = events_with_features(dataset, lake, store, Interval(spec.holdout_start, spec.cutoff))
            _log_file(
                tmp,
                artifacts.REFERENCE_SAMPLE,
                reference_sample(
                    reference[list(dict.fromkeys([dataset.entity, EVENT_TIMESTAMP, *columns]))],
                    settings.drift.reference_rows,
                    plan.seed,
                ),
            )

        fit = train_sklearn if family == "sklearn" else train_torch
        started = time.perf_counter()
        model = fit(model_input(dataset, train_rows), train_rows[LABEL], numeric, categorical, params, plan.seed)
        train_seconds = time.perf_counter() - started
        inputs = model_input(dataset, holdout)
        probability = model.predict_proba(inputs)[:, 1]
        metrics = evaluate(holdout[LABEL].to_numpy(), probability)
        mlflow.log_metrics({**metrics, "train_seconds": train_seconds, "train_rows": float(len(train_rows))})

        example = inputs.head(5)
        # The sklearn flavour predicts both class probabilities, the torch pyfunc P(positive) alone.
        output = model.predict_proba(example)
        signature = infer_signature(example, output if family == "sklearn" else output[:, 1])
        if family == "sklearn":
            info = mlflow.sklearn.log_model(
                model,
                name=artifacts.MODEL,
                signature=signature,
                input_example=example,
                pyfunc_predict_fn="predict_proba",
                # MLflow stores sklearn models with skops; these types are our own trees, safe to load.
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
                pip_requirements=model_requirements(family),
            )
        else:
            from ctpipe.torch_pyfunc import log_torch_model

            info = log_torch_model(model, signature=signature, input_example=example)

    return TrainingResult(
        run_id=run.info.run_id,
        model_uri=info.model_uri,
        family=family,
        metrics=metrics,
        train_seconds=round(train_seconds, 3),
        training_set=spec,
    )


def _log_file(folder: str, artifact: str, content: Any) -> None:
    """Write ``content`` (text, or a DataFrame as Parquet) under its artifact name, and log it to the active run."""
    import mlflow

    path = Path(folder) / Path(artifact).name
    if isinstance(content, str):
        path.write_text(content)
    else:
        content.to_parquet(path, index=False)
    mlflow.log_artifact(str(path), artifact_path=str(Path(artifact).parent))


def plan_from_arguments(argv: list[str] | None = None) -> tuple[TrainingPlan, Path | None]:
    """The plan the command line describes: ``--plan '<json>'`` (what the DAG passes), or one option each."""
    defaults = {f.name: f.default for f in fields(TrainingPlan)}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default=None, help="the whole plan as JSON (what the training DAG passes)")
    parser.add_argument("--cutoff", type=datetime.fromisoformat, help="ISO timestamp: labels and events before it")
    parser.add_argument("--family", choices=FAMILIES, default=defaults["family"])
    parser.add_argument(
        "--days", type=int, default=defaults["days"], help="events from this many days before the cutoff"
    )
    parser.add_argument(
        "--holdout-days", type=int, default=defaults["holdout_days"], help="the newest days, kept for evaluation"
    )
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a hyperparameter")
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--result-path", type=Path, default=None, help="also write the result JSON here")
    args = parser.parse_args(argv)
    if args.plan:
        return TrainingPlan.from_dict(json.loads(args.plan)), args.result_path
    overrides = dict(p.split("=", 1) for p in args.param if "=" in p)
    if len(overrides) != len(args.param):
        parser.error("--param takes NAME=VALUE")
    if not args.cutoff:
        parser.error("--cutoff (or --plan with a cutoff) is required")
    try:
        hyper = asdict(parse_params(args.family, overrides))
        plan = TrainingPlan(
            cutoff=args.cutoff,
            family=args.family,
            days=args.days,
            holdout_days=args.holdout_days,
            params={k: hyper[k] for k in overrides},
            seed=args.seed,
        )
    except ValueError as error:
        parser.error(str(error))
    return plan, args.result_path


def main(argv: list[str] | None = None) -> None:
    plan, result_path = plan_from_arguments(argv)
    document = json.dumps(train(plan).to_dict())
    if result_path:
        result_path.parent.mkdir(parents=True, exist_ok=True)
        result_path.write_text(document)
    print(document, file=sys.stdout)


if __name__ == "__main__":
    main()
