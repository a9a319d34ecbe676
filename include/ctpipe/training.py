"""The training entrypoint: the same command runs in a Kubernetes pod and as a local process.

    python -m ctpipe.training --cutoff 2026-02-20T00:00:00+00:00 [--family sklearn|torch]
        [--days 42] [--holdout-days 7] [--param max_iter=400 ...] [--result-path out.json]

It builds the point-in-time training set from Feast with the labels known at
the cutoff, trains the chosen family, evaluates it on the time-based holdout
and logs everything to MLflow: params, metrics, the model with its signature
and an input example, and the training set's lineage (feature service, cutoff,
window, the validated partitions read, and the entity rows) through MLflow
datasets, so the exact set can be rebuilt from the run. The result, a small
JSON document (run id, model URI, metrics), is printed and written to
``--result-path`` (``/airflow/xcom/return.json`` in a pod).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ctpipe.datasets import get_dataset
from ctpipe.lake import Lake
from ctpipe.models import FAMILIES, evaluate, parse_params, train_sklearn, train_torch
from ctpipe.monitoring import DriftPolicy, reference_sample
from ctpipe.settings import Settings
from ctpipe.training_set import (
    EVENT_TIMESTAMP,
    LABEL,
    TrainingSetSpec,
    build_training_set,
    model_columns,
    split_holdout,
)

SKOPS_TRUSTED_TYPES = ["numpy.dtype", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def model_requirements() -> list[str]:
    """Pinned to this environment; stating them spares MLflow a slow inference that loads the model."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("scikit-learn", "pandas", "numpy", "scipy")]


def log_lineage(frame: Any, name: str, context: str, spec: TrainingSetSpec, lake: Lake) -> None:
    """Log a training or holdout set as an MLflow dataset input, with what rebuilds it."""
    import mlflow

    dataset = get_dataset()
    source = (lake.root / "validated").as_uri()
    mlflow.log_input(
        mlflow.data.from_pandas(frame, source=source, name=name, targets=LABEL),
        context=context,
        tags={"feature_service": spec.feature_service, "cutoff": spec.cutoff, "dataset": dataset.name},
    )


def train(
    family: str, spec: TrainingSetSpec, overrides: dict[str, str], seed: int = 0, settings: Settings | None = None
) -> dict[str, Any]:
    """Build the training set, train, evaluate and log one model; returns the result document."""
    import mlflow
    from mlflow.models import infer_signature

    from ctpipe.feature_store import load_store
    from ctpipe.tracking import configure

    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {FAMILIES}")
    settings = settings or Settings.from_env()
    dataset = get_dataset()
    params = parse_params(family, overrides)  # fail on a bad parameter before any work
    lake = Lake(settings.lake_dir)
    frame = build_training_set(dataset, lake, load_store(settings), spec)
    train_rows, holdout = split_holdout(frame, spec)
    numeric, categorical = model_columns(dataset)
    columns = numeric + categorical

    configure(settings)
    with mlflow.start_run(run_name=f"{family} @ {spec.cutoff[:10]}") as run:
        mlflow.set_tags({"family": family, "dataset": dataset.name, "feature_service": spec.feature_service})
        mlflow.log_params({"family": family, "seed": seed, **asdict(params), **spec.to_dict()})
        log_lineage(train_rows, f"{dataset.name}-train-{spec.cutoff[:10]}", "training", spec, lake)
        log_lineage(holdout, f"{dataset.name}-holdout-{spec.cutoff[:10]}", "holdout", spec, lake)
        with tempfile.TemporaryDirectory() as tmp:
            lineage = Path(tmp) / "training_set.json"
            partitions = {
                t.name: [i.key for i, _ in lake.partitions("validated", t.name, spec.window)] for t in dataset.tables
            }
            lineage.write_text(json.dumps({**spec.to_dict(), "validated_partitions": partitions}, indent=2))
            mlflow.log_artifact(str(lineage), artifact_path="lineage")
            rows = frame[[dataset.events.key, dataset.entity, EVENT_TIMESTAMP, LABEL]]
            rows.to_parquet(Path(tmp) / "entity_rows.parquet", index=False)
            mlflow.log_artifact(str(Path(tmp) / "entity_rows.parquet"), artifact_path="lineage")

            # The drift check's reference: the training set's holdout days, the newest data the model was
            # judged on. Its predictions on rows it was fitted to would be overconfident, a false alarm.
            reference = reference_sample(holdout[columns], DriftPolicy.from_env().reference_rows, seed)
            reference.to_parquet(Path(tmp) / "reference.parquet", index=False)
            mlflow.log_artifact(str(Path(tmp) / "reference.parquet"), artifact_path="reference")

        started = time.perf_counter()
        if family == "sklearn":
            model = train_sklearn(train_rows, train_rows[LABEL], numeric, categorical, params, seed)
        else:
            model = train_torch(train_rows, train_rows[LABEL], numeric, categorical, params, seed)
        train_seconds = time.perf_counter() - started
        probability = model.predict_proba(holdout[columns])[:, 1]
        metrics = evaluate(holdout[LABEL].to_numpy(), probability)
        mlflow.log_metrics({**metrics, "train_seconds": train_seconds, "train_rows": float(len(train_rows))})

        example = holdout[columns].head(5)
        # The sklearn flavour predicts both class probabilities, the torch pyfunc P(positive) alone.
        output = model.predict_proba(example)
        signature = infer_signature(example, output if family == "sklearn" else output[:, 1])
        if family == "sklearn":
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=example,
                pyfunc_predict_fn="predict_proba",
                # MLflow stores sklearn models with skops; these types are our own trees, safe to load.
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
                pip_requirements=model_requirements(),
            )
        else:
            from ctpipe.torch_pyfunc import log_torch_model

            info = log_torch_model(model, signature=signature, input_example=example)

    return {
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "family": family,
        "metrics": metrics,
        "train_seconds": round(train_seconds, 3),
        "training_set": spec.to_dict(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default=None, help="all options as one JSON object (what the training DAG passes)")
    parser.add_argument("--cutoff", help="ISO timestamp: labels known before it, events before it")
    parser.add_argument("--family", choices=FAMILIES, default="sklearn")
    parser.add_argument("--days", type=int, default=42, help="events from this many days before the cutoff")
    parser.add_argument("--holdout-days", type=int, default=7, help="the newest days, kept for evaluation")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a hyperparameter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result-path", type=Path, default=None, help="also write the result JSON here")
    args = parser.parse_args(argv)

    overrides = dict(p.split("=", 1) for p in args.param if "=" in p)
    if len(overrides) != len(args.param):
        parser.error("--param takes NAME=VALUE")
    plan = {
        "cutoff": args.cutoff,
        "family": args.family,
        "days": args.days,
        "holdout_days": args.holdout_days,
        "params": overrides,
        "seed": args.seed,
    }
    if args.plan:
        plan.update(json.loads(args.plan))
    if not plan["cutoff"]:
        parser.error("--cutoff (or a plan with a cutoff) is required")
    dataset = get_dataset()
    spec = TrainingSetSpec(dataset.name, dataset.feature_service, plan["cutoff"], plan["days"], plan["holdout_days"])
    params = {k: str(v) for k, v in plan["params"].items()}
    result = train(plan["family"], spec, params, seed=plan["seed"])
    document = json.dumps(result, default=str)
    if args.result_path:
        args.result_path.parent.mkdir(parents=True, exist_ok=True)
        args.result_path.write_text(document)
    print(document, file=sys.stdout)


if __name__ == "__main__":
    main()
