"""Feast: register the feature repo, materialize intervals, serve features.

The feature repo (``feature_repo/``) holds the declarations; this module is
how the pipeline and its users reach them. ``load_store`` fills in the
embedded defaults of the variables that ``feature_store.yaml`` reads, without
overriding what the environment already says, and checks what it says: a
malformed value is a ``ConfigurationError`` naming the variable, and a Redis online
store that does not answer is one ``ServiceUnavailableError`` at once, not a
retried connection failure deep inside Feast.

    python -m ctpipe.feature_store serve --port 6566    # HTTP feature server
    python -m ctpipe.feature_store online LAB-001       # one lab's online values
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctpipe.lake import Interval
from ctpipe.settings import FEATURE_REPO, ConfigurationError, Settings, hide_passwords

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore


PROJECT_VARIABLE = "CTPIPE_FEAST_PROJECT"
ONLINE_STORE_VARIABLE = "CTPIPE_FEAST_ONLINE_STORE"
# Each store variable: the key its mapping must have, and an example for the error message.
STORE_VARIABLES = {
    "CTPIPE_FEAST_REGISTRY": ("path", '{registry_type: sql, path: "postgresql+psycopg://feast@db:5432/feast"}'),
    ONLINE_STORE_VARIABLE: ("type", '{type: redis, connection_string: "redis:6379"}'),
    "CTPIPE_FEAST_OFFLINE_STORE": ("type", "{type: file}"),
}
# How long a Redis online store gets to answer the one ping made before Feast uses it.
REDIS_TIMEOUT_S = 5.0


class ServiceUnavailableError(RuntimeError):
    """A service the feature store needs (the Redis online store) does not answer."""


def store_config(name: str, raw: str) -> dict[str, Any]:
    """The mapping a store variable holds, as ``feature_store.yaml`` reads it; ``ConfigurationError`` if malformed."""
    import yaml

    key, example = STORE_VARIABLES[name]
    expected = f"{name} must hold a one-line YAML mapping with a {key!r} key, e.g. {example}"
    try:
        # Parsed in place, as Feast parses it after expanding ${VAR} into the file.
        parsed = yaml.safe_load(f"value: {raw}")["value"]
    except yaml.YAMLError as error:
        reason = str(error).splitlines()[0]
        raise ConfigurationError(
            f"{expected}; got {_redacted(raw)}, which does not parse as YAML in feature_store.yaml ({reason})"
        ) from None
    if not isinstance(parsed, dict) or not parsed.get(key):
        raise ConfigurationError(f"{expected}; got {_redacted(raw)}")
    return parsed


def _redacted(raw: str) -> str:
    """``raw`` quoted for an error message, without the passwords a URL or a Redis parameter may hold."""
    return repr(hide_passwords(raw))


def check_feast_environment(values: Mapping[str, str]) -> None:
    """Raise ``ConfigurationError``, naming the variable, for a value Feast would reject with a deep stack."""
    configs = {name: store_config(name, values[name]) for name in STORE_VARIABLES if name in values}
    project = values.get(PROJECT_VARIABLE)
    if project is not None:
        # Feast's rule, plus SQLite's: the project names its tables there.
        if not re.fullmatch(r"[^\W_][\w-]*", project):
            raise ConfigurationError(
                f"{PROJECT_VARIABLE} must be letters, digits, underscores and hyphens, not starting with "
                f"an underscore or hyphen; got {project!r}"
            )
        if "-" in project and configs.get(ONLINE_STORE_VARIABLE, {}).get("type") == "sqlite":
            raise ConfigurationError(
                f"{PROJECT_VARIABLE} cannot contain hyphens with a SQLite online store; got {project!r}"
            )
    online = configs.get(ONLINE_STORE_VARIABLE)
    if online is not None and online.get("type") == "redis":
        redis_nodes(online)


def feast_environment(settings: Settings | None = None) -> dict[str, str]:
    """The environment Feast runs in: the current one, checked, with embedded defaults where unset."""
    defaults = (settings or Settings.from_env()).feast_environment()
    values = {**defaults, **{k: v for k, v in os.environ.items() if k in defaults and v}}
    check_feast_environment(values)
    return values


def redis_nodes(online_store: Mapping[str, Any]) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The ``(host, port)`` nodes and the parameters of a Redis online store's ``connection_string``.

    Parsed as Feast parses it: ``host:port[,host:port...][,name=value...]``.
    """
    connection = str(online_store.get("connection_string", "localhost:6379"))
    nodes: list[tuple[str, int]] = []
    params: dict[str, Any] = {}
    for part in connection.split(","):
        if "=" in part:
            name, _, value = part.partition("=")
            try:
                params[name] = json.loads(value)
            except json.JSONDecodeError:
                params[name] = value
            continue
        host, _, port = part.partition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(
                f"{ONLINE_STORE_VARIABLE}: connection_string must be host:port[,name=value...], "
                f"got {_redacted(connection)}"
            )
        nodes.append((host, int(port)))
    if not nodes:
        raise ConfigurationError(
            f"{ONLINE_STORE_VARIABLE}: connection_string names no host:port, got {_redacted(connection)}"
        )
    return nodes, params


def check_online_store(online_store: Mapping[str, Any] | Any) -> None:
    """One ping, with a short timeout and no retries, to a Redis online store; other stores pass.

    ``online_store`` is the variable's mapping or Feast's parsed config (``store.config.online_store``).
    Raises ``ServiceUnavailableError`` naming the address and the reason when no node answers.
    """
    if not isinstance(online_store, Mapping):
        online_store = online_store.model_dump()
    if online_store.get("type") != "redis" or online_store.get("redis_type") == "redis_sentinel":
        return  # a sentinel's nodes are not the store: Feast asks them where the master is
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    nodes, params = redis_nodes(online_store)
    options = {name: params[name] for name in ("db", "password", "username", "ssl") if name in params}
    reasons = []
    for host, port in nodes:  # a cluster needs one startup node that answers
        client = redis.Redis(
            host=host,
            port=port,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            **options,
        )
        try:
            client.ping()
            return
        except redis.exceptions.RedisError as error:
            reasons.append(str(error))
        finally:
            client.close()
    raise _unreachable(nodes, "did not answer", "; ".join(reasons))


def _unreachable(nodes: list[tuple[str, int]], what: str, reason: str) -> ServiceUnavailableError:
    address = ",".join(f"{host}:{port}" for host, port in nodes)  # never the parameters: they hold the password
    return ServiceUnavailableError(
        f"The Feast online store is unreachable: Redis at {address} (from {ONLINE_STORE_VARIABLE}) {what}: {reason}"
    )


@contextmanager
def reaching_online_store(store: FeatureStore) -> Iterator[None]:
    """Check a Redis online store before the block, and turn a connection lost during it into the same error."""
    config = store.config.online_store
    if getattr(config, "type", None) != "redis":
        yield
        return
    check_online_store(config)
    import redis

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        raise _unreachable(redis_nodes(config.model_dump())[0], "stopped answering", str(error)) from error


@contextmanager
def feast_env(settings: Settings | None = None) -> Iterator[None]:
    """The store variables ``feature_store.yaml`` and the feature repo read, set only while Feast reads them.

    Setting them for good would leak one state folder's stores into the next ``Settings``.
    """
    values = feast_environment(settings)
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_store(settings: Settings | None = None, repo: Path = FEATURE_REPO) -> FeatureStore:
    from feast import FeatureStore

    settings = settings or Settings.from_env()
    with feast_env(settings):  # checks the variables before anything is created
        settings.feast_dir.mkdir(parents=True, exist_ok=True)
        return FeatureStore(repo_path=str(repo))


def feature_definitions(repo: Path = FEATURE_REPO) -> list[Any]:
    """Every Feast object declared in the repo's modules, freshly imported."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    names = sorted(p.stem for p in repo.glob("*.py") if not p.name.startswith("_"))
    sys.path.insert(0, str(repo))
    try:
        for name in names:  # re-import, so paths follow the current settings
            sys.modules.pop(name, None)
        modules = [importlib.import_module(name) for name in names]
    finally:
        sys.path.remove(str(repo))
    found: list[Any] = []
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, (Entity, DataSource, FeatureView, FeatureService)) and not any(
                value is f for f in found
            ):
                found.append(value)
    return found


def apply_definitions(store: FeatureStore, repo: Path = FEATURE_REPO, settings: Settings | None = None) -> list[str]:
    """Register the repo's definitions (idempotent), like ``feast apply``."""
    with feast_env(settings):
        objects = feature_definitions(repo)
    store.apply(objects)
    return sorted(f"{type(o).__name__}:{o.name}" for o in objects)


def materialize(store: FeatureStore, interval: Interval) -> None:
    """Load the feature rows stamped within ``interval`` (both ends included) into the online store."""
    with reaching_online_store(store):
        store.materialize(start_date=interval.start, end_date=interval.end)


def online_features(store: FeatureStore, service: str, entity: str, values: list[str]) -> dict[str, list[Any]]:
    with reaching_online_store(store):
        return store.get_online_features(
            features=store.get_feature_service(service),
            entity_rows=[{entity: v} for v in values],
        ).to_dict()


def historical_features(store: FeatureStore, service: str, entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join: each entity row gets the latest values stamped at or before its ``event_timestamp``."""
    return store.get_historical_features(entity_df=entity_rows, features=store.get_feature_service(service)).to_df()


def publish_online(intervals: list[dict[str, str]]) -> dict[str, Any]:
    """Register the definitions, then materialize the span the intervals cover, in one pass.

    One pass over the whole span keeps the newest row per entity: materializing
    intervals one by one out of order could leave older values online.
    """
    from ctpipe.datasets import get_dataset

    dataset = get_dataset()
    store = load_store()
    registered = apply_definitions(store)
    parsed = [Interval.parse(i["start"], i["end"]) for i in intervals]
    span = Interval(min(i.start for i in parsed), max(i.end for i in parsed))
    materialize(store, span)
    return {"feature_view": dataset.feature_view, "materialized": span.to_dict(), "registered": registered}


def main(argv: list[str] | None = None) -> None:
    from ctpipe.datasets import get_dataset

    parser = argparse.ArgumentParser(description="Serve or read the pipeline's features.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run Feast's HTTP feature server on the configured stores")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=6566)
    online = commands.add_parser("online", help="print online feature values")
    online.add_argument("entities", nargs="+")
    args = parser.parse_args(argv)

    if args.command == "serve":
        environment = feast_environment()
        check_online_store(store_config(ONLINE_STORE_VARIABLE, environment[ONLINE_STORE_VARIABLE]))
        os.environ.update(environment)
        feast = Path(sys.executable).with_name("feast")
        os.execv(
            feast, [str(feast), "--chdir", str(FEATURE_REPO), "serve", "--host", args.host, "--port", str(args.port)]
        )
    dataset = get_dataset()
    values = online_features(load_store(), dataset.feature_service, dataset.entity, args.entities)
    print(json.dumps(values, indent=2, default=str))


if __name__ == "__main__":
    main()
