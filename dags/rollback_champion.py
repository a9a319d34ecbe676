"""
### Rollback champion: restore the previous champion in one step

Manual only. Moves the `champion` alias of the registered model back to the version held by
`previous_champion` and tags the demoted version `rolled_back`. Use it when a promoted model
misbehaves in production; the next training run will be compared against the restored model.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from ctpipe.dag_policy import DEFAULT_ARGS, START_DATE, fail_fast_on_configuration_error
from ctpipe.datasets import get_dataset

DATASET = get_dataset()


@task
@fail_fast_on_configuration_error
def restore_previous_champion() -> dict:
    from ctpipe.registry import rollback

    return rollback()


@dag(
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["ctpipe", "mlflow", "operations", DATASET.name],
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
)
def rollback_champion():
    restore_previous_champion()


rollback_champion()
