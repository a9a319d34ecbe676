"""A secrets backend that records every connection and Variable asked for, then answers "not here".

Installed through ``AIRFLOW__SECRETS__BACKEND`` in the parse probe, it sits
first in Airflow's lookup chain, so any lookup made while parsing DAG files is
written to the file named by ``CTPIPE_LOOKUP_LOG``.
"""

from __future__ import annotations

import os

from airflow.secrets import BaseSecretsBackend


class RecordingSecretsBackend(BaseSecretsBackend):
    def _record(self, kind: str, key: str) -> None:
        with open(os.environ["CTPIPE_LOOKUP_LOG"], "a") as log:
            log.write(f"{kind}:{key}\n")

    def get_conn_value(self, conn_id: str, team_name: str | None = None) -> str | None:
        self._record("connection", conn_id)
        return None

    def get_variable(self, key: str, team_name: str | None = None) -> str | None:
        self._record("variable", key)
        return None
