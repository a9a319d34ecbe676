"""A real Airflow deployment for tests: api-server, scheduler, dag-processor and triggerer as processes.

Configured the way production is, by environment alone: metadata on PostgreSQL,
LocalExecutor, authentication required (the simple auth manager with a user and a
password file, not the all-admins development mode). Talks to it only through the
public REST API with a JWT, as the UI and any client do.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ..conftest import ROOT
from ..services import group_alive, stop, wait_for_http

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
FINISHED = {"success", "failed"}


def production_environment(home: Path, metadata_url: str, api_port: int, extra: dict[str, str]) -> dict[str, str]:
    """The environment every Airflow component gets: only variables, no file edits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "CTPIPE_", "MLFLOW_"))}
    jwt_secret, api_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    env.update(
        {
            "AIRFLOW_HOME": str(ROOT),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__API__SECRET_KEY": api_secret,
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(home / "logs" / "dag_processor"),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        }
    )
    env.update(extra)
    return env


@dataclass
class AirflowStack:
    home: Path
    env: dict[str, str]
    api_port: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def airflow(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        migrated = self.airflow("db", "migrate")
        if migrated.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrated.stderr[-3000:]}")
        for component in COMPONENTS:
            log = self.home / f"{component}.log"
            with open(log, "w") as out:
                self.processes[component] = subprocess.Popen(
                    [str(Path(sys.executable).with_name("airflow")), component],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stopping it stops the tasks it forked
                )
        wait_for_http(f"{self.url}/api/v2/monitor/health", self.processes["api-server"], 180, self.log("api-server"))
        self.token = self.login("admin", self.password)

    def stop(self) -> list[str]:
        """Stop every component and what it started; returns the components still alive afterwards (none)."""
        for process in self.processes.values():
            stop(process)
        return [name for name, process in self.processes.items() if group_alive(process)]

    def log(self, component: str) -> Path:
        return self.home / f"{component}.log"

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"airflow {name} exited with {process.returncode}:\n{self.log(name).read_text()[-3000:]}"
                )

    # The REST API, as the UI uses it.
    def login(self, username: str, password: str) -> str:
        response = requests.post(
            f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=60, **kwargs)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:1000]}")
        return response.json() if response.content else None

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            found = {d["dag_id"] for d in self.api("GET", "/dags", params={"limit": 100})["dags"]}
            if set(dag_ids) <= found:
                errors = self.api("GET", "/importErrors")
                if errors["total_entries"]:
                    raise RuntimeError(f"DAG import errors: {errors['import_errors']}")
                return
            time.sleep(2)
        raise TimeoutError(f"DAGs {dag_ids} were not parsed within {timeout:.0f}s")

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "run_after"})["dag_runs"]

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """A manual run with the trigger form's Params, as the UI submits it."""
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in FINISHED else None

        try:
            return self.wait_until(finished, f"{dag_id} run {run_id} finishing", timeout, poll=2)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; {self.task_states(dag_id, run_id)}") from None

    def wait_until(self, condition, what: str, timeout: float, poll: float = 3, on_timeout=None) -> Any:
        """Poll ``condition`` until it is truthy; on timeout the error carries ``on_timeout()``'s diagnosis."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if value := condition():
                return value
            time.sleep(poll)
        diagnosis = f"\n{on_timeout()}" if on_timeout else ""
        raise TimeoutError(f"{what} did not happen within {timeout:.0f}s{diagnosis}")

    def diagnosis(self, dag_id: str, run_id: str | None = None, tail: int = 2500) -> str:
        """What a reader needs when a run went wrong: the runs' and tasks' states, queued events,
        the log tails of tasks that did not succeed, and the scheduler's last lines."""
        lines = []
        runs = [r for r in self.dag_runs(dag_id) if run_id in (None, r["dag_run_id"])]
        for run in runs:
            lines.append(f"{dag_id} {run['dag_run_id']}: {run['state']} {self.task_states(dag_id, run['dag_run_id'])}")
        queued = self.api("GET", f"/dags/{dag_id}/assets/queuedEvents")
        lines.append(f"queued events of {dag_id}: {queued}")
        for run in runs:
            folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run['dag_run_id']}"
            for ti in self.task_instances(dag_id, run["dag_run_id"]):
                if ti["state"] in ("success", "skipped"):
                    continue
                for log in sorted(folder.glob(f"task_id={ti['task_id']}/**/attempt=*.log")):
                    lines.append(f"--- {log.relative_to(self.home)} ---\n{log.read_text()[-tail:]}")
        lines.append(f"--- scheduler.log ---\n{self.log('scheduler').read_text()[-tail:]}")
        return "\n".join(lines)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})[
            "task_instances"
        ]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """An XCom as stored (JSON): what a task of another process would read."""
        entry = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index},
        )
        value = entry["value"]
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value  # a plain string XCom
        return value
