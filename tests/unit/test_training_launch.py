"""How training is launched: the pod spec rendered offline, the local command, and the plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ctpipe.records import RetrainRequest, TrainingPlan
from ctpipe.settings import ConfigurationError, Settings
from ctpipe.training_launch import ENTRYPOINT, PLAN_TEMPLATE, command, make_plan, pod_operator

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: nobody, user: {token: not-a-secret}}]
contexts: [{name: offline, context: {cluster: offline, user: nobody, namespace: default}}]
current-context: offline
"""
REGISTRY_WITH_PASSWORD = '{registry_type: sql, path: "postgresql+psycopg://feast:hunter2-pw@db:5432/feast"}'


@pytest.fixture
def pod_request(tmp_path, monkeypatch):
    """The pod the operator would submit, built without a cluster."""
    from airflow.sdk import DAG

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("CTPIPE_FEAST_ONLINE_STORE", "{type: redis, connection_string: 'redis:6379'}")
    monkeypatch.setenv("CTPIPE_TRAINING_IMAGE", "registry.example/ctpipe-training:1.2.3")
    monkeypatch.setenv("CTPIPE_TRAINING_CPU", "3")
    monkeypatch.setenv("CTPIPE_TRAINING_MEMORY", "6Gi")
    monkeypatch.setenv("CTPIPE_TRAINING_GPUS", "1")
    monkeypatch.setenv("CTPIPE_TRAINING_SECRET", "ctpipe-mlflow-credentials")
    monkeypatch.setenv("CTPIPE_K8S_NAMESPACE", "ml")
    monkeypatch.setenv("CTPIPE_K8S_STATE_PVC", "ctpipe-lake")
    monkeypatch.setenv("CTPIPE_STATE_DIR", "/data/ctpipe")
    monkeypatch.setenv("CTPIPE_FEAST_REGISTRY", REGISTRY_WITH_PASSWORD)
    with DAG("pod_spec_probe", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)):
        operator = pod_operator(Settings.from_env().training_pod, config_file=str(kubeconfig))
    return operator, operator.build_pod_request_obj()


def test_the_pod_runs_the_entrypoint_in_the_configured_image(pod_request):
    operator, pod = pod_request
    container = pod.spec.containers[0]
    assert container.image == "registry.example/ctpipe-training:1.2.3"
    assert container.command == ENTRYPOINT == ["python", "-m", "ctpipe.training"]
    assert container.args == ["--plan", PLAN_TEMPLATE, "--result-path", "/airflow/xcom/return.json"]
    assert pod.metadata.namespace == "ml"
    assert pod.spec.service_account_name == "ctpipe-training"
    assert operator.do_xcom_push  # the result JSON comes back through the xcom sidecar
    assert any(c.name == "airflow-xcom-sidecar" for c in pod.spec.containers)


def test_the_pod_gets_resources_env_and_secret_refs_from_config(pod_request):
    _, pod = pod_request
    container = pod.spec.containers[0]
    assert container.resources.requests == {"cpu": "3", "memory": "6Gi"}
    assert container.resources.limits == {"cpu": "3", "memory": "6Gi", "nvidia.com/gpu": "1"}
    env = {e.name: e.value for e in container.env}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["CTPIPE_FEAST_ONLINE_STORE"].startswith("{type: redis")
    assert [ref.secret_ref.name for ref in container.env_from] == ["ctpipe-mlflow-credentials"]
    assert "not-a-secret" not in str(pod.to_dict())


def test_credentials_reach_the_pod_only_through_the_secret(pod_request, monkeypatch):
    _, pod = pod_request
    env = {e.name for e in pod.spec.containers[0].env}
    assert "CTPIPE_FEAST_REGISTRY" not in env  # it holds a password: the Secret provides it
    assert "hunter2-pw" not in str(pod.to_dict())
    monkeypatch.delenv("CTPIPE_TRAINING_SECRET")
    with pytest.raises(ConfigurationError, match=r"CTPIPE_FEAST_REGISTRY carry credentials.*CTPIPE_TRAINING_SECRET"):
        _ = Settings.from_env().training_pod


def test_the_pod_mounts_the_state_claim_where_the_workers_keep_the_lake(pod_request):
    _, pod = pod_request
    [volume] = [v for v in pod.spec.volumes if v.name == "ctpipe-state"]
    assert volume.persistent_volume_claim.claim_name == "ctpipe-lake"
    [mount] = [m for m in pod.spec.containers[0].volume_mounts if m.name == "ctpipe-state"]
    assert mount.mount_path == "/data/ctpipe"
    assert {e.name: e.value for e in pod.spec.containers[0].env}["CTPIPE_STATE_DIR"] == "/data/ctpipe"


def test_the_backend_is_chosen_by_configuration(monkeypatch):
    monkeypatch.delenv("CTPIPE_TRAINING_BACKEND", raising=False)
    assert Settings.from_env().training_backend == "local"
    monkeypatch.setenv("CTPIPE_TRAINING_BACKEND", "kubernetes")
    assert Settings.from_env().training_backend == "kubernetes"
    monkeypatch.setenv("CTPIPE_TRAINING_BACKEND", "yarn")
    with pytest.raises(ConfigurationError, match="CTPIPE_TRAINING_BACKEND='yarn' is not one of them"):
        _ = Settings.from_env().training_backend


CUTOFF = datetime(2026, 2, 1, tzinfo=UTC)


def test_a_plan_from_the_trigger_form():
    plan = make_plan(
        {"family": "torch", "epochs": 5, "max_iter": 99, "cutoff": "2026-02-01T00:00:00+00:00", "days": 10},
        [],
        "manual",
    )
    assert plan.family == "torch" and plan.params == {"epochs": 5}  # sklearn's knob is not torch's
    assert plan.cutoff == CUTOFF and plan.days == 10 and plan.holdout_days == TrainingPlan.holdout_days
    assert plan.trigger == "manual" and plan.backfill is False and plan.approval == "auto"


def test_a_plan_from_a_retrain_request_and_in_a_backfill():
    request = RetrainRequest(cutoff=CUTOFF, reason="drift: 60% of inputs drifted", drift_report="runs:/abc/r.html")
    plan = make_plan({}, [request], "backfill")
    assert plan.cutoff == request.cutoff and plan.trigger == request.reason
    assert plan.drift_report == "runs:/abc/r.html" and plan.backfill is True and plan.family == "sklearn"


def test_the_form_the_command_line_and_a_retrain_request_share_one_set_of_defaults(monkeypatch, state_dir):
    """The form's defaults, the entrypoint's and a plan built from a bare retrain request are TrainingPlan's."""
    from airflow.dag_processing.dagbag import DagBag

    from ctpipe.training import plan_from_arguments

    from ..conftest import ROOT

    form = DagBag(dag_folder=str(ROOT / "dags" / "training.py")).dags["training"].params
    from_request = make_plan({}, [RetrainRequest(cutoff=CUTOFF, reason="drift")], "asset_triggered")
    from_command_line, _ = plan_from_arguments(["--cutoff", CUTOFF.isoformat()])
    defaults = TrainingPlan(cutoff=CUTOFF)
    for plan in (from_request, from_command_line):
        assert (plan.family, plan.days, plan.holdout_days, plan.seed, plan.approval) == (
            defaults.family,
            defaults.days,
            defaults.holdout_days,
            defaults.seed,
            defaults.approval,
        )
    assert (form["family"], form["days"], form["holdout_days"], form["seed"], form["approval_mode"]) == (
        defaults.family,
        defaults.days,
        defaults.holdout_days,
        defaults.seed,
        defaults.approval,
    )


def test_a_bad_plan_from_the_form_fails_once_with_the_reason():
    with pytest.raises(ConfigurationError, match=r"holdout_days \(9\) must be fewer than days \(5\)"):
        make_plan({"cutoff": "2026-02-01T00:00:00+00:00", "days": 5, "holdout_days": 9}, [], "manual")


def test_the_local_command_carries_the_plan_as_its_record():
    plan = TrainingPlan(cutoff=CUTOFF, family="torch", params={"epochs": 3})
    argv = command(plan, "/tmp/result.json")
    assert argv[:3] == ENTRYPOINT and argv[3] == "--plan" and argv[-2:] == ["--result-path", "/tmp/result.json"]
    assert TrainingPlan.from_dict(json.loads(argv[4])) == plan
