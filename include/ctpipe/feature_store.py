"""Feast: register the feature repo, materialize intervals, serve features.

The feature repo (``feature_repo/``) holds the declarations; this module is
how the pipeline and its users reach them. ``load_store`` fills in the
embedded defaults of the store variables that ``feature_store.yaml`` reads,
without overriding what the environment already says.

    python -m ctpipe.feature_store serve --port 6566    # HTTP feature server
    python -m ctpipe.feature_store online LAB-001       # one lab's online values
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctpipe.lake import Interval
from ctpipe.settings import FEATURE_REPO, Settings

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore


def feast_environment(settings: Settings | None = None) -> dict[str, str]:
    """The environment Feast runs in: the current one, with embedded defaults where unset."""
    defaults = (settings or Settings.from_env()).feast_environment()
    return {**defaults, **{k: v for k, v in os.environ.items() if k in defaults and v}}


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
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    with feast_env(settings):
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
    store.materialize(start_date=interval.start, end_date=interval.end)


def online_features(store: FeatureStore, service: str, entity: str, values: list[str]) -> dict[str, list[Any]]:
    return store.get_online_features(
        features=store.get_feature_service(service),
        entity_rows=[{entity: v} for v in values],
    ).to_dict()


def historical_features(store: FeatureStore, service: str, entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join: each entity row gets the latest values stamped at or before its ``event_timestamp``."""
    return store.get_historical_features(entity_df=entity_rows, features=store.get_feature_service(service)).to_df()


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
        os.environ.update(feast_environment())
        feast = Path(sys.executable).with_name("feast")
        os.execv(
            feast, [str(feast), "--chdir", str(FEATURE_REPO), "serve", "--host", args.host, "--port", str(args.port)]
        )
    dataset = get_dataset()
    values = online_features(load_store(), dataset.feature_service, dataset.entity, args.entities)
    print(json.dumps(values, indent=2, default=str))


if __name__ == "__main__":
    main()


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
