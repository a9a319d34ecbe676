"""Feast: register the feature repo, materialize intervals, serve features.

The feature repo (``feature_repo/``) holds the declarations; this module is how the
pipeline and its users reach them. The store's configuration is
``feature_repo/feature_store.yaml`` with its ``${VAR}`` filled in from the settings
layer (the environment, or the embedded defaults), so a malformed value is a
``ConfigurationError`` naming the variable. The store is rooted at the lake's features
folder: Feast resolves the repo's relative file-source path against it, so the same
definitions serve every machine that mounts the lake, wherever it is mounted. A Redis
online store that does not answer is one ``ServiceUnavailableError`` at once, not a
retried connection failure deep inside Feast.

    python -m ctpipe.feature_store serve --port 6566    # HTTP feature server
    python -m ctpipe.feature_store online LAB-001       # one lab's online values (--as-of for the TTL)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctpipe.records import Interval, Publication
from ctpipe.services import Service
from ctpipe.settings import ConfigurationError, Settings, redis_nodes

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

log = logging.getLogger(__name__)

ONLINE_STORE_VARIABLE = "CTPIPE_FEAST_ONLINE_STORE"
# How long a Redis online store gets to answer the one ping made before Feast uses it.
REDIS_TIMEOUT_S = 5.0


class _FlagHoldsForFileRegistries(logging.Filter):
    """Feast warns that ``serve_features_while_materializing`` "typically has no effect" on a file registry.

    It has one: a file registry is shared too (the feature server reads the file the pipeline
    writes) and is flipped to ``MATERIALIZING`` in the same way, so ``bench.feature_server``
    counts failed reads without the flag and none with it. The settings layer sets it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "`serve_features_while_materializing` is enabled but `registry_type`" not in record.getMessage()


def repo_config(settings: Settings) -> RepoConfig:
    """``feature_store.yaml`` with every ``${VAR}`` taken from the settings layer, as Feast's own loader would."""
    import yaml
    from feast.repo_config import RepoConfig
    from pydantic import ValidationError

    feast_log = logging.getLogger("feast.repo_config")
    if not any(isinstance(f, _FlagHoldsForFileRegistries) for f in feast_log.filters):
        feast_log.addFilter(_FlagHoldsForFileRegistries())

    path = settings.feature_repo / "feature_store.yaml"
    values = settings.feast_variables

    def value(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise ConfigurationError(
                f"{path} reads ${{{match.group(1)}}}, which is not a Feast setting of the pipeline; "
                f"it provides {sorted(values)}"
            )
        return values[match.group(1)]

    lines = [
        line if line.lstrip().startswith("#") else re.sub(r"\$\{(\w+)\}", value, line)
        for line in path.read_text().splitlines()
    ]
    raw = yaml.safe_load("\n".join(lines))
    try:
        config = RepoConfig(**raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ConfigurationError(
            f"Feast rejects the store configuration from {', '.join(values)}: {problems}"
        ) from None
    config.repo_path = settings.features_dir  # relative file-source paths resolve against the lake's features
    return config


def load_store(settings: Settings | None = None) -> FeatureStore:
    """The deployment's feature store; its settings are checked before anything is created."""
    from feast import FeatureStore

    settings = settings or Settings.from_env()
    config = repo_config(settings)
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(settings.features_dir), config=config)


def online_store_service(online_store: Mapping[str, Any]) -> Service:
    """The Redis online store as messages name it: its nodes, never the parameters (they hold the password)."""
    nodes, params = redis_nodes(online_store)
    address = "redis://" + ",".join(f"{host}:{port}" for host, port in nodes)
    secrets = tuple(str(params[name]) for name in ("password",) if params.get(name))
    return Service("Feast online store", address, ONLINE_STORE_VARIABLE, timeout=REDIS_TIMEOUT_S, secrets=secrets)


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

    def pings() -> None:
        error: Exception | None = None
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
            except redis.exceptions.RedisError as failed:
                error = failed
            finally:
                client.close()
        raise error  # type: ignore[misc]

    online_store_service(online_store).probe(pings, errors=(redis.exceptions.RedisError,))


@contextmanager
def reaching_online_store(store: FeatureStore) -> Iterator[None]:
    """Check a Redis online store before the block, and turn a connection lost during it into the same error."""
    config = store.config.online_store
    if getattr(config, "type", None) != "redis":
        yield
        return
    check_online_store(config)
    import redis

    with online_store_service(config.model_dump()).reaching(
        (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    ):
        yield


def feature_definitions(repo: Path) -> list[Any]:
    """Every Feast object declared in the repo's modules, each module run afresh in a namespace of its own.

    Nothing is put on ``sys.path`` or in ``sys.modules``: the repo's modules may import Feast
    and ``ctpipe``, not each other (keep what belongs together in one file, as Feast's templates do).
    """
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    found: list[Any] = []
    for path in sorted(p for p in repo.glob("*.py") if not p.name.startswith("_")):
        spec = importlib.util.spec_from_file_location(f"ctpipe_feature_repo.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except ModuleNotFoundError as error:
            raise ConfigurationError(
                f"{path} imports {error.name!r}, which is not installed; a feature repo module may import Feast "
                "and ctpipe, not another module of the repo"
            ) from None
        for value in vars(module).values():
            if isinstance(value, (Entity, DataSource, FeatureView, FeatureService)) and not any(
                value is f for f in found
            ):
                found.append(value)
    return found


def apply_definitions(store: FeatureStore, settings: Settings | None = None) -> list[str]:
    """Register the repo's definitions (idempotent), like ``feast apply``."""
    objects = feature_definitions((settings or Settings.from_env()).feature_repo)
    store.apply(objects)
    return sorted(f"{type(o).__name__}:{o.name}" for o in objects)


def materialize(store: FeatureStore, interval: Interval) -> None:
    """Load the feature rows stamped within ``interval`` (both ends included) into the online store.

    The offline source (a month file per month of daily partitions) is brought up to date
    first, for every view with daily partitions in the store's repo path.
    """
    from ctpipe.features import sync_offline_source

    features_dir = Path(store.config.repo_path)
    for view in store.list_feature_views():
        if (features_dir / view.name).is_dir():
            sync_offline_source(features_dir, view.name)
    with reaching_online_store(store):
        store.materialize(start_date=interval.start, end_date=interval.end)


# The key, in what ``online_features`` returns, that says which entities' values had expired.
STALE = "stale_features"


def scalar(value: Any) -> Any:
    """A stored feature value (Feast's ``Value`` proto) as Python: the int or float set, or None when unset."""
    if value is None:
        return None
    kind = value.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(value, kind)


class OnlineReader:
    """Reads one feature service's online values, resolved once: for a process that reads on every request.

    The feature service's views, their TTLs and the feature names are looked up when the
    reader is made, and a Redis online store is pinged then, once. Each ``read`` is then one
    round trip per view for the whole batch of entities, over a connection the reader keeps:
    what ``FeatureStore.get_online_features`` does, without resolving the references, the
    registry and the response again on every call. On Redis the read is one pipeline of
    ``HMGET``s of the keys and fields Feast's own Redis store reads, each entity's key built
    once and kept (``RedisRead``), the values decoded straight to Python; other stores go
    through the store's ``online_read``. A Redis connection lost during a read is a
    ``ServiceUnavailableError``.
    """

    def __init__(self, store: FeatureStore, service: str, entity: str):
        from feast.infra.online_stores.helpers import get_online_store_from_config

        self.store = store
        self.entity = entity
        self.service = store.get_feature_service(service)
        self.ttls: dict[str, Any] = {}  # feature name -> its view's TTL (a timedelta, or None: never stale)
        self._views: list[tuple[Any, list[str]]] = []  # (feature view, the service's features of it)
        for projection in self.service.feature_view_projections:
            view = store.get_feature_view(projection.name)
            names = [feature.name for feature in projection.features]
            self._views.append((view, names))
            for name in names:
                self.ttls[name] = view.ttl or None
        self.features = list(self.ttls)
        self._online = get_online_store_from_config(store.config.online_store)
        config = store.config.online_store
        self._errors: tuple[type[BaseException], ...] = ()
        self._service: Service | None = None
        self._redis: list[RedisRead] | None = None
        if getattr(config, "type", None) == "redis":
            import redis

            check_online_store(config)
            self._service = online_store_service(config.model_dump())
            self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
            self._redis = [RedisRead(self._online, store.config, view, names, entity) for view, names in self._views]

    def _held(self, index: int, keys: list[Any]) -> tuple[list[datetime | None], list[list[Any] | None]]:
        """Each entity's (stamp, values) in the ``index``-th view: None for an entity the store never held."""
        view, names = self._views[index]
        # A copy: Feast's Redis store appends its timestamp field to the list it is given.
        read = self._online.online_read(self.store.config, view, keys, list(names))
        stamps = [stamp for stamp, _ in read]
        found = [[scalar(got.get(name)) for name in names] if got else None for _, got in read]
        # Redis answers a key it never held with every field unset (stamped 1970): an unknown entity.
        return stamps, [held if held and any(v is not None for v in held) else None for held in found]

    def read(self, values: list[str], as_of: datetime | list[datetime] | None = None) -> dict[str, list[Any]]:
        """The values for each entity as they stand at ``as_of`` (default: now; or one time per entity).

        A value stamped before ``as_of - ttl`` is None and its entity marked in ``stale_features``;
        an entity the store never held is None throughout, and not stale.
        """
        now = datetime.now(UTC)
        times = as_of if isinstance(as_of, list) else [as_of or now] * len(values)
        unique = list(dict.fromkeys(str(v) for v in values))  # each entity read once, however often asked for
        served: dict[str, list[Any]] = {self.entity: list(values)}
        stale = [False] * len(values)
        where = {value: i for i, value in enumerate(unique)}
        positions = [where[str(v)] for v in values]
        keys: list[Any] = []
        if self._redis is None and unique:
            from feast.protos.feast.types.EntityKey_pb2 import EntityKey
            from feast.protos.feast.types.Value_pb2 import Value

            keys = [EntityKey(join_keys=[self.entity], entity_values=[Value(string_val=v)]) for v in unique]
        for index, (view, names) in enumerate(self._views):
            if not unique:
                stamps, found = [], []
            else:
                with self._service.reaching(self._errors) if self._service else nullcontext():
                    stamps, found = self._redis[index].read(unique) if self._redis else self._held(index, keys)
            ttl = view.ttl or None
            # Each entity's values once; then, per row, them or nothing (stale at that row's time).
            nothing = [None] * len(names)
            picked = []
            for row, position in enumerate(positions):
                held, stamp = found[position], stamps[position]
                if held is not None and ttl is not None and stamp is not None and stamp < times[row] - ttl:
                    stale[row] = True
                    held = None
                picked.append(held or nothing)
            for i, name in enumerate(names):
                served[name] = [held[i] for held in picked]
        served[STALE] = stale
        return served


class RedisRead:
    """One feature view's values for a batch of entities, in one pipeline of ``HMGET``s on Feast's Redis layout.

    The hash fields (each feature's hash and the view's timestamp field) and the key bytes
    come from Feast's Redis store itself, so the layout is the one ``materialize`` wrote:
    the fields once, each entity's key the first time it is read (up to ``KEPT_KEYS`` kept).
    The values are decoded straight to Python scalars. The same as the store's ``online_read``
    followed by ``scalar``, which ``test_feast_production`` holds, at a fraction of its cost.
    """

    KEPT_KEYS = 200_000

    def __init__(self, online: Any, config: RepoConfig, view: Any, names: list[str], join_key: str):
        from feast.infra.online_stores.redis import _versioned_fv_name

        self._online, self._config, self._join_key = online, config, join_key
        name = _versioned_fv_name(view, config)
        # Feast appends the timestamp field to both lists: the features' hashes, then "_ts:<view>".
        _, self._fields = online._generate_hset_keys_for_features(view, list(names), fv_name_override=name)
        self._width = len(names)
        self._keys: dict[str, bytes] = {}

    def _key(self, value: str) -> bytes:
        key = self._keys.get(value)
        if key is None:
            from feast.protos.feast.types.EntityKey_pb2 import EntityKey
            from feast.protos.feast.types.Value_pb2 import Value

            entity = EntityKey(join_keys=[self._join_key], entity_values=[Value(string_val=value)])
            key = self._online._generate_redis_keys_for_entities(self._config, [entity])[0]
            if len(self._keys) >= self.KEPT_KEYS:
                self._keys.clear()
            self._keys[value] = key
        return key

    def read(self, values: list[str]) -> tuple[list[datetime | None], list[list[Any] | None]]:
        from feast.protos.feast.types.Value_pb2 import Value
        from google.protobuf.timestamp_pb2 import Timestamp

        client = self._online._get_client(self._config.online_store)
        pipe = client.pipeline(transaction=False)
        for value in values:
            pipe.hmget(self._key(value), self._fields)
        stamps: list[datetime | None] = []
        found: list[list[Any] | None] = []
        parse = Value.FromString
        for answer in pipe.execute():
            held = [None if raw is None else scalar(parse(raw)) for raw in answer[: self._width]]
            stamp = answer[self._width]
            if stamp is None or all(v is None for v in held):
                stamps.append(None)
                found.append(None)
                continue
            when = Timestamp.FromString(stamp)
            stamps.append(datetime.fromtimestamp(when.seconds + when.nanos / 1e9, UTC))
            found.append(held)
        return stamps, found


def online_features(
    store: FeatureStore, service: str, entity: str, values: list[str], as_of: datetime | None = None
) -> dict[str, list[Any]]:
    """The online values of ``service``'s features for each entity, as they stand at ``as_of`` (default: now).

    Feast's online read ignores the feature view's TTL (feast#6821); its offline read, which
    builds the training sets, does not. So this read applies the TTL as the offline read
    does: a value stamped before ``as_of - ttl`` is served as missing (None), and the entity
    is marked in ``stale_features``. The offline read drops such an entity's rows from
    training sets, so a model is never served, for a lab that went quiet, numbers it was
    never trained on; callers see that the values were stale and decide what to answer.
    An entity the store never held is None throughout, and not stale. One read; a process
    that reads again and again keeps an ``OnlineReader``.
    """
    return OnlineReader(store, service, entity).read(values, as_of)


def historical_features(store: FeatureStore, service: str, entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join: each entity row gets the latest values stamped at or before its ``event_timestamp``."""
    return store.get_historical_features(entity_df=entity_rows, features=store.get_feature_service(service)).to_df()


def materialized_until(store: FeatureStore, feature_view: str) -> datetime | None:
    """How far the online store has been loaded: the latest end Feast recorded for the view, in UTC."""
    newest = store.get_feature_view(feature_view).most_recent_end_time
    if newest is None:
        return None
    return newest.replace(tzinfo=UTC) if newest.tzinfo is None else newest.astimezone(UTC)


def publish_online(intervals: list[Interval], settings: Settings | None = None) -> Publication:
    """Register the definitions, then materialize the span the intervals cover, in one pass.

    The online store only moves forward. Feast writes, for each entity, its newest row
    within the span materialized, and the SQLite store overwrites whatever it holds: a
    rerun or backfill of an older interval would put every entity back to that day. So
    the span materialized reaches at least as far as the store was already loaded; the
    newest row of each entity is then the one it serves.
    """
    settings = settings or Settings.from_env()
    store = load_store(settings)
    registered = apply_definitions(store, settings)
    span = Interval(min(i.start for i in intervals), max(i.end for i in intervals))
    newest = materialized_until(store, settings.dataset.feature_view)
    if newest is not None and newest > span.end:
        log.info("materializing %s through %s, where the online store already is", span, newest.isoformat())
        materialize(store, Interval(span.start, newest))
    else:
        materialize(store, span)
    return Publication(feature_view=settings.dataset.feature_view, materialized=span, registered=tuple(registered))


def serve(settings: Settings, host: str, port: int, metrics: bool = False) -> None:
    """Run Feast's HTTP feature server on the configured stores until stopped (``ctpipe.feature_server``).

    Its workers, their recycling and its access log are ``settings.feature_server``'s
    (``CTPIPE_FEATURE_SERVER_*``): by default two workers, so that one answers while the other
    is recycled, and no access log. ``metrics``: Feast's Prometheus endpoint too (``feast
    serve --metrics``), on port 8000 of every interface (Feast's fixed choice), with request
    counts and latencies, online reads and each feature view's freshness
    (``feast_feature_freshness_seconds``).
    """
    from ctpipe.feature_server import run

    check_online_store(settings.feast_online_store)
    dataset = settings.dataset
    run(load_store(settings), settings.feature_server, host, port, dataset.feature_service, dataset.entity, metrics)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve or read the pipeline's features.")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("serve", help="run Feast's HTTP feature server on the configured stores")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=6566)
    server.add_argument("--metrics", action="store_true", help="also serve Prometheus metrics on port 8000")
    online = commands.add_parser("online", help="print online feature values")
    online.add_argument("entities", nargs="+")
    online.add_argument(
        "--as-of", type=datetime.fromisoformat, help="read as at this ISO time (default: now), for the TTL"
    )
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    if args.command == "serve":
        serve(settings, args.host, args.port, args.metrics)
        return
    dataset = settings.dataset
    as_of = args.as_of and (args.as_of.replace(tzinfo=UTC) if args.as_of.tzinfo is None else args.as_of)
    values = online_features(load_store(settings), dataset.feature_service, dataset.entity, args.entities, as_of)
    print(json.dumps(values, indent=2, default=str))


if __name__ == "__main__":
    main()
