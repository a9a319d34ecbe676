"""How the training DAG launches the entrypoint: a Kubernetes pod or a local process, by configuration.

``CTPIPE_TRAINING_BACKEND=kubernetes`` makes ``train_model`` a
KubernetesPodOperator running ``python -m ctpipe.training --plan '<json>'`` in
the training image, with resources, environment and secret references from
the environment; its result comes back through ``/airflow/xcom/return.json``.
The default, ``local``, runs the identical command and environment as a
subprocess of the worker. Either way the task returns the same small JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctpipe.settings import ConfigurationError

TASK_ID = "train_model"
PLAN_TEMPLATE = "{{ ti.xcom_pull(task_ids='plan_training') | tojson }}"
# What the pod needs to reach the same stores as the scheduler's workers. A value that carries a
# credential (a password in a URL, a Redis password=) is never copied into the pod spec: the pod gets
# it from the Kubernetes Secret named by CTPIPE_TRAINING_SECRET.
FORWARDED_ENV = (
    "MLFLOW_TRACKING_URI",
    "CTPIPE_DATASET",
    "CTPIPE_STATE_DIR",
    "CTPIPE_LAKE_DIR",
    "CTPIPE_FEAST_PROJECT",
    "CTPIPE_FEAST_REGISTRY",
    "CTPIPE_FEAST_ONLINE_STORE",
    "CTPIPE_FEAST_OFFLINE_STORE",
    "CTPIPE_FEATURES_DIR",
)


CREDENTIAL = re.compile(r"://[^/@\s]*:[^/@\s]+@|password=", re.IGNORECASE)
# Where the pod mounts the state volume (the lake) when CTPIPE_K8S_STATE_PVC names its claim.
DEFAULT_STATE_MOUNT = "/opt/ctpipe/state"

ENTRYPOINT = ["python", "-m", "ctpipe.training"]


def command(plan: dict[str, Any], result_path: str) -> list[str]:
    return [*ENTRYPOINT, "--plan", json.dumps(plan), "--result-path", result_path]


@dataclass(frozen=True)
class PodSettings:
    image: str = "ctpipe-training:latest"
    namespace: str = "ctpipe"
    service_account: str = "ctpipe-training"
    image_pull_policy: str = "IfNotPresent"
    cpu: str = "2"
    memory: str = "4Gi"
    gpus: int = 0
    secret: str | None = None  # a Kubernetes Secret whose keys become env vars (MLflow credentials...)
    state_claim: str | None = None  # a PersistentVolumeClaim holding the state folder (the lake), shared
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> PodSettings:
        get = os.environ.get
        return cls(
            image=get("CTPIPE_TRAINING_IMAGE", cls.image),
            namespace=get("CTPIPE_K8S_NAMESPACE", cls.namespace),
            service_account=get("CTPIPE_K8S_SERVICE_ACCOUNT", cls.service_account),
            image_pull_policy=get("CTPIPE_TRAINING_PULL_POLICY", cls.image_pull_policy),
            cpu=get("CTPIPE_TRAINING_CPU", cls.cpu),
            memory=get("CTPIPE_TRAINING_MEMORY", cls.memory),
            gpus=int(get("CTPIPE_TRAINING_GPUS", str(cls.gpus))),
            secret=get("CTPIPE_TRAINING_SECRET") or None,
            state_claim=get("CTPIPE_K8S_STATE_PVC") or None,
            env=forwarded_env(secret=get("CTPIPE_TRAINING_SECRET") or None),
        )

    @property
    def state_mount(self) -> str:
        return self.env.get("CTPIPE_STATE_DIR", DEFAULT_STATE_MOUNT)


def forwarded_env(secret: str | None) -> dict[str, str]:
    """The worker's store settings for the pod, without those that carry credentials.

    Those must reach the pod through the Secret; without one the pod could not reach
    the stores, so that is an error naming the variables.
    """
    values = {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}
    with_credentials = sorted(name for name, value in values.items() if CREDENTIAL.search(value))
    if with_credentials and not secret:
        raise ConfigurationError(
            f"{', '.join(with_credentials)} carry credentials, which are never written into a pod spec: "
            "put them in a Kubernetes Secret and name it in CTPIPE_TRAINING_SECRET (its keys become the pod's env)"
        )
    return {name: value for name, value in values.items() if name not in with_credentials}


def backend() -> str:
    chosen = os.environ.get("CTPIPE_TRAINING_BACKEND", "local")
    if chosen not in ("local", "kubernetes"):
        raise ConfigurationError(f"CTPIPE_TRAINING_BACKEND must be 'local' or 'kubernetes', got {chosen!r}")
    return chosen


def pod_operator(settings: PodSettings | None = None, **task_kwargs: Any) -> Any:
    """The training task as a KubernetesPodOperator; imports the provider only when asked for."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

    settings = settings or PodSettings.from_env()
    pod_env, volumes, mounts = settings.env, [], []
    if settings.state_claim:  # the lake lives on the claim, at the path the pod is told
        pod_env = {**settings.env, "CTPIPE_STATE_DIR": settings.state_mount}
        claim = k8s.V1PersistentVolumeClaimVolumeSource(claim_name=settings.state_claim)
        volumes = [k8s.V1Volume(name="ctpipe-state", persistent_volume_claim=claim)]
        mounts = [k8s.V1VolumeMount(name="ctpipe-state", mount_path=settings.state_mount)]
    limits = {"cpu": settings.cpu, "memory": settings.memory}
    if settings.gpus:
        limits["nvidia.com/gpu"] = str(settings.gpus)
    return KubernetesPodOperator(
        task_id=TASK_ID,
        name="ctpipe-training",
        namespace=settings.namespace,
        image=settings.image,
        image_pull_policy=settings.image_pull_policy,
        service_account_name=settings.service_account,
        cmds=ENTRYPOINT,
        arguments=["--plan", PLAN_TEMPLATE, "--result-path", "/airflow/xcom/return.json"],
        env_vars=[k8s.V1EnvVar(name=k, value=v) for k, v in sorted(pod_env.items())],
        secrets=[Secret("env", None, settings.secret)] if settings.secret else [],
        volumes=volumes,
        volume_mounts=mounts,
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": settings.cpu, "memory": settings.memory}, limits=limits
        ),
        do_xcom_push=True,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        **task_kwargs,
    )


def run_locally(plan: dict[str, Any]) -> dict[str, Any]:
    """The pod's command as a subprocess with the worker's environment; returns its result JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "return.json"
        argv = command(plan, str(result_path))
        done = subprocess.run([sys.executable, *argv[1:]], env=os.environ.copy(), capture_output=True, text=True)
        sys.stdout.write(done.stdout[-20_000:])
        sys.stderr.write(done.stderr[-20_000:])
        if done.returncode != 0:
            raise RuntimeError(f"training exited with {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
        return json.loads(result_path.read_text())


HYPERPARAMETERS = {"sklearn": ("max_iter", "learning_rate"), "torch": ("hidden_units", "epochs", "learning_rate")}


def make_plan(params: dict[str, Any], event_extras: list[dict[str, Any]], run_type: str) -> dict[str, Any]:
    """What to train, from the trigger form or the retrain request that triggered the run."""
    from ctpipe.datasets import get_dataset
    from ctpipe.lake import Lake
    from ctpipe.settings import Settings

    request = next((e for e in reversed(event_extras) if e and e.get("cutoff")), {}) or {
        # A run triggered with conf in place of the asset event (the local main job does this).
        "reason": params.get("retrain_reason"),
        "report_uri": params.get("drift_report"),
    }
    cutoff = params.get("cutoff") or request.get("cutoff")
    if not cutoff:  # the end of the newest validated interval
        partitions = Lake(Settings.from_env().lake_dir).partitions("validated", get_dataset().events.name)
        if not partitions:
            raise ValueError("no validated data yet: run the ingest DAG first, or give a cutoff")
        cutoff = partitions[-1][0].end.isoformat()
    family = params.get("family") or "sklearn"
    hyper = {name: params[name] for name in HYPERPARAMETERS[family] if params.get(name) is not None}
    return {
        "cutoff": cutoff,
        "family": family,
        "days": int(params.get("days") or 14),
        "holdout_days": int(params.get("holdout_days") or 4),
        "params": hyper,
        "seed": int(params.get("seed") or 0),
        "approval": params.get("approval_mode") or "auto",
        "backfill": run_type == "backfill",
        "trigger": request.get("reason") or "manual",
        "drift_report": request.get("report_uri"),
    }
