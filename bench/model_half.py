"""Training time per model family and drift-check time per interval, on the state `make run` leaves.

    python -m bench.model_half [--cutoff 2026-02-26T00:00:00+00:00] [--days 14]

Trains each family once on the same point-in-time training set (logged to MLflow
like any run, not registered) and runs the drift check for three intervals,
printing seconds for each step. Run `make run` first.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timedelta

from ctpipe.records import Interval, TrainingPlan
from ctpipe.settings import Settings
from ctpipe.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutoff", default="2026-02-26T00:00:00+00:00")
    parser.add_argument("--days", type=int, default=TrainingPlan.days)
    args = parser.parse_args()
    if not Settings.from_env().mlflow_dir.exists():
        raise SystemExit("no MLflow state: run `make run` first")

    result: dict = {"training": {}, "drift_check_seconds": []}
    for family in ("sklearn", "torch"):
        started = time.perf_counter()
        outcome = train(TrainingPlan(cutoff=datetime.fromisoformat(args.cutoff), family=family, days=args.days))
        result["training"][family] = {
            "fit_seconds": outcome.train_seconds,
            "entrypoint_seconds": round(time.perf_counter() - started, 2),  # set building and logging included
            "roc_auc": round(outcome.metrics["roc_auc"], 4),
        }

    from ctpipe.monitoring import check

    end = datetime.fromisoformat(args.cutoff)
    for offset in (2, 1, 0):
        interval = Interval.ending(end - timedelta(days=offset))
        started = time.perf_counter()
        check(interval)
        result["drift_check_seconds"].append(round(time.perf_counter() - started, 2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
