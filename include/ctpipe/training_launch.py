"""How the training DAG plans a run and launches the entrypoint: a Kubernetes pod or a local process.

``CTPIPE_TRAINING_BACKEND=kubernetes`` makes ``train_model`` a KubernetesPodOperator
running ``python -m ctpipe.training --plan '<json>'`` in the training image, with
resources, environment and secret references from the settings; its result comes back
through ``/airflow/xcom/return.json``. The default, ``local``, runs the identical command
with the worker's environment as a subprocess. Either way the task returns the same
``TrainingResult``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ctpipe.dag_policy import TrainingTasks
from ctpipe.lake import Lake
from ctpipe.records import RetrainRequest, TrainingPlan, TrainingResult
from ctpipe.settings import ConfigurationError, Settings, TrainingPod

PLAN_TEMPLATE = f"{{{{ ti.xcom_pull(task_ids='{TrainingTasks.PLAN}') | tojson }}}}"
ENTRYPOINT = ["python", "-m", "ctpipe.training"]
POD_RESULT_PATH = "/airflow/xcom/return.json"
# The hyperparameters the training DAG's trigger form offers, per family; the others keep the family's defaults.
FORM_HYPERPARAMETERS = {"sklearn": ("max_iter", "learning_rate"), "torch": ("hidden_units", "epochs", "learning_rate")}


def command(plan: TrainingPlan, result_path: str) -> list[str]:
    return [*ENTRYPOINT, "--plan", json.dumps(plan.to_dict()), "--result-path", result_path]


def pod_operator(pod: TrainingPod | None = None, **task_kwargs: Any) -> Any:
    """The training task as a KubernetesPodOperator; imports the provider only when asked for."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

    pod = pod or Settings.from_env().training_pod
    pod_env, volumes, mounts = pod.env, [], []
    if pod.state_claim:  # the lake lives on the claim, at the path the pod is told
        pod_env = {**pod.env, "CTPIPE_STATE_DIR": pod.state_mount}
        claim = k8s.V1PersistentVolumeClaimVolumeSource(claim_name=pod.state_claim)
        volumes = [k8s.V1Volume(name="ctpipe-state", persistent_volume_claim=claim)]
        mounts = [k8s.V1VolumeMount(name="ctpipe-state", mount_path=pod.state_mount)]
    limits = {"cpu": pod.cpu, "memory": pod.memory}
    if pod.gpus:
        limits["nvidia.com/gpu"] = str(pod.gpus)
    return KubernetesPodOperator(
        task_id=TrainingTasks.TRAIN,
        name="ctpipe-training",
        namespace=pod.namespace,
        image=pod.image,
        image_pull_policy=pod.image_pull_policy,
        service_account_name=pod.service_account,
        cmds=ENTRYPOINT,
        arguments=["--plan", PLAN_TEMPLATE, "--result-path", POD_RESULT_PATH],
        env_vars=[k8s.V1EnvVar(name=k, value=v) for k, v in sorted(pod_env.items())],
        secrets=[Secret("env", None, pod.secret)] if pod.secret else [],
        volumes=volumes,
        volume_mounts=mounts,
        container_resources=k8s.V1ResourceRequirements(requests={"cpu": pod.cpu, "memory": pod.memory}, limits=limits),
        do_xcom_push=True,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        **task_kwargs,
    )


def run_locally(plan: TrainingPlan) -> TrainingResult:
    """The pod's command as a subprocess, inheriting the worker's environment; returns its result."""
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "return.json"
        argv = command(plan, str(result_path))
        done = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True)
        sys.stdout.write(done.stdout[-20_000:])
        sys.stderr.write(done.stderr[-20_000:])
        if done.returncode != 0:
            raise RuntimeError(f"training exited with {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
        return TrainingResult.from_dict(json.loads(result_path.read_text()))


def make_plan(
    params: Mapping[str, Any], requests: list[RetrainRequest], run_type: str, settings: Settings | None = None
) -> TrainingPlan:
    """What to train, from the trigger form and the newest retrain request that triggered the run."""
    request = requests[-1] if requests else None
    cutoff = datetime.fromisoformat(params["cutoff"]) if params.get("cutoff") else None
    cutoff = cutoff or (request.cutoff if request else None) or newest_validated_end(settings or Settings.from_env())
    family = params.get("family") or TrainingPlan.family
    hyper = {name: params[name] for name in FORM_HYPERPARAMETERS.get(family, ()) if params.get(name) is not None}
    try:
        return TrainingPlan(
            cutoff=cutoff,
            family=family,
            days=int(params.get("days") or TrainingPlan.days),
            holdout_days=int(params.get("holdout_days") or TrainingPlan.holdout_days),
            params=hyper,
            seed=int(params.get("seed") or TrainingPlan.seed),
            approval=params.get("approval_mode") or TrainingPlan.approval,
            backfill=run_type == "backfill",
            trigger=request.reason if request else TrainingPlan.trigger,
            drift_report=request.drift_report if request else None,
        )
    except ValueError as error:  # the form's values: a retry would not change them
        raise ConfigurationError(f"cannot plan the training run: {error}") from None


def newest_validated_end(settings: Settings) -> datetime:
    """The end of the newest validated interval of the events: what a run without a cutoff trains up to."""
    partitions = Lake(settings.lake_dir).partitions("validated", settings.dataset.events.name)
    if not partitions:
        raise ConfigurationError("no validated data yet: run the ingest DAG first, or give a cutoff")
    return partitions[-1][0].end
