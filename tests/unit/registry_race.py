"""Run concurrent alias moves against one registry, each in its own process, started together.

    python -m tests.unit.registry_race <registry uri> <model> <plan JSON>

The plan is a list of moves: ``["promote", version, compared_with]`` or ``["rollback"]``.
This process imports MLflow once (with the request-header plugins its HTTP client loads on
its first request: Feast registers one, so that import alone takes seconds), then forks one
child per move; the children wait at a barrier and move at the same instant, each with its
own client, as separate Airflow tasks would. Prints one JSON line: each move's outcome (a
``Promotion`` dict, or the error).
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import traceback


def move(uri: str, model: str, step: list, barrier, results) -> None:
    from mlflow import MlflowClient

    from ctpipe import registry

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    barrier.wait()
    try:
        if step[0] == "promote":
            outcome = registry.promote(client, model, step[1], step[2], f"racer {step[1]}", "race").to_dict()
        else:
            outcome = registry.rollback(client, model, "racer rollback", "race").to_dict()
    except Exception:
        outcome = {"error": traceback.format_exc(limit=3)}
    results.append(outcome)


def main(uri: str, model: str, plan: list) -> None:
    # Imported once, before the fork; the request-header registry loads the plugins (Feast's among them).
    import mlflow.tracking.request_header.registry  # noqa: F401

    import ctpipe.registry  # noqa: F401

    context = multiprocessing.get_context("fork")
    with context.Manager() as manager:
        barrier = manager.Barrier(len(plan))
        results = manager.list()
        children = [context.Process(target=move, args=(uri, model, step, barrier, results)) for step in plan]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=300)
        print(json.dumps(list(results)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
