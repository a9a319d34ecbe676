"""
### Rollback champion: restore the previous champion in one step

Manual only. Moves the `champion` alias of the registered model back to the version held by
`previous_champion` and tags the demoted version `rolled_back`. Use it when a promoted model
misbehaves in production; the next training run will be compared against the restored model.
The move, who made it and the reason from the trigger form go into the registered model's
audit trail (`python -m ctpipe.registry history`).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from ctpipe.dag_policy import DATASET, DEFAULT_ARGS, START_DATE, fail_fast_on_configuration_error, task_actor


@task(multiple_outputs=False)
@fail_fast_on_configuration_error
def restore_previous_champion(params=None, ti=None) -> dict:
    from airflow.sdk.exceptions import AirflowFailException

    from ctpipe.registry import RegistryStateError
    from ctpipe.review import rollback_champion as rollback

    try:
        return rollback(task_actor(ti), params["reason"]).to_dict()
    except RegistryStateError as error:  # nothing to roll back to: a retry finds nothing either
        raise AirflowFailException(str(error)) from error


@dag(
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["ctpipe", "mlflow", "operations", DATASET.name],
    default_args=DEFAULT_ARGS,
    params={
        "reason": Param(
            "rolled back by hand from the Airflow UI",
            type="string",
            minLength=3,
            description="Why: recorded in the registered model's audit trail and on the demoted version",
        ),
    },
    doc_md=__doc__,
)
def rollback_champion():
    restore_previous_champion()


rollback_champion()
