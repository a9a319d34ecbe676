"""Airflow's side of alerts: the notifier every task of the project gets as its ``on_failure_callback``.

Airflow calls ``on_failure_callback`` once a task has failed for good: after its last try,
or at once when it fails without retries (a wrong setting, the validation gate). A failed
try that will be retried calls ``on_retry_callback`` instead, so a flaky service that comes
back alerts nobody. ``ctpipe.dag_policy.DEFAULT_ARGS`` sets it for every task.

Cheap at DAG parse time: this module imports only Airflow's notifier base; the alert is
built and sent (``ctpipe.alerts``) when a task fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context


class FailureAlert(BaseNotifier):
    """Sends a ``task_failed`` alert, or ``gate_failed`` when the validation gate rejected the task's interval."""

    def notify(self, context: Context) -> None:
        from ctpipe.alerts import alert_failure

        alert_failure(context, redact=_airflow_redact())


def _airflow_redact():
    """Airflow's masker of connection passwords and other secrets it saw, for the text of the alert."""
    try:
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:  # an Airflow without it: the alert still hides passwords in URLs itself
        return str
    return lambda text: str(redact(text))
