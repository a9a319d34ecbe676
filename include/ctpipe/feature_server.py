"""Feast's HTTP feature server, run under gunicorn so that recycling a worker costs no request.

``feast serve`` runs Feast's FastAPI app under gunicorn with uvicorn workers. A worker is
recycled after its request limit (gunicorn's guard against slow leaks), and as it comes:
- the retiring worker stops taking connections, then spends about 1.5 s in the Python
  interpreter's teardown before gunicorn sees it gone and forks its replacement;
- the replacement's first reads take about 300 ms (Feast resolves and caches on first use).
With two workers whose limits fall close together, nobody answers for those 1.5 s.

This module runs the same app (``feast.feature_server.FeastServeApplication``, set up as
``feast serve`` sets it up) with a worker class and three gunicorn hooks more:
- ``pre_fork``: the first workers' limits are spread over one limit's span, so that under an
  even load their recycles stay apart;
- the worker (``DrainingWorker``) stops accepting, then waits ``DRAIN_SECONDS`` for the
  requests of connections it has just accepted before closing the idle ones (uvicorn would
  reset them at once);
- ``post_worker_init``: the new worker reads the feature service once before it takes a
  connection, so its first caller does not pay for the warm-up;
- ``worker_exit``: the retiring worker, its requests answered and its app shut down, flushes
  its logs and leaves at once (``os._exit``), skipping the teardown.
``bench.feature_server`` holds the result: no failed request, none waiting over 100 ms,
across recycles under load. The workers, their limits and the access log are
``settings.feature_server`` (``CTPIPE_FEATURE_SERVER_*``).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feast import FeatureStore

    from ctpipe.settings import FeatureServer

log = logging.getLogger(__name__)

DRAIN_SECONDS = 0.2  # how long a retiring worker waits, no longer accepting, before closing idle connections


def warm_up(store: FeatureStore, feature_service: str, entity: str) -> None:
    """One read of the feature service for an entity no one has: what a worker's first request would pay."""
    store.get_online_features(
        features=store.get_feature_service(feature_service), entity_rows=[{entity: "__warm_up__"}]
    ).to_dict()


def run(
    store: FeatureStore,
    config: FeatureServer,
    host: str,
    port: int,
    feature_service: str,
    entity: str,
    metrics: bool = False,
) -> None:
    """Serve ``store`` over HTTP on ``host:port`` until stopped, as ``feast serve`` with ``config`` would."""
    from feast import feature_server
    from feast.permissions.server.utils import (
        ServerType,
        init_auth_manager,
        init_security_manager,
        str_to_auth_manager_type,
    )

    if metrics:
        # Feast's Prometheus endpoint (port 8000); its per-worker monitors start in Feast's own worker hook.
        from feast import metrics as feast_metrics

        metrics_config = getattr(getattr(store.config, "feature_server", None), "metrics", None)
        feast_metrics.start_metrics_server(
            store,
            metrics_config=feast_metrics.build_metrics_flags(metrics_config),
            start_resource_monitoring=False,
            start_freshness_monitoring=False,
        )
    auth_type = str_to_auth_manager_type(store.config.auth_config.type)
    init_security_manager(auth_type=auth_type, fs=store)
    init_auth_manager(auth_type=auth_type, server_type=ServerType.REST, auth_config=store.config.auth_config)

    import asyncio
    import sys

    import uvicorn
    from gunicorn.arbiter import Arbiter
    from uvicorn_worker import UvicornWorker

    class DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            # Stop accepting first, then give connections accepted a moment ago the time for their request to
            # arrive: uvicorn closes a connection with no request yet at once, and its caller sees a reset.
            for server in self.servers:
                server.close()
            for sock in sockets or []:
                sock.close()
            await asyncio.sleep(DRAIN_SECONDS)
            await super().shutdown(sockets)

    class DrainingWorker(UvicornWorker):
        async def _serve(self) -> None:
            self.config.app = self.wsgi
            server = DrainingServer(config=self.config)
            self._install_sigquit_handler()
            await server.serve(sockets=self.sockets)
            if not server.started:
                sys.exit(Arbiter.WORKER_BOOT_ERROR)

    spawned = [0]

    class Application(feature_server.FeastServeApplication):
        def load_config(self) -> None:
            super().load_config()
            self.cfg.set("worker_class", DrainingWorker)

            def pre_fork(server: Any, worker: Any) -> None:
                # The first workers' limits are spread over one limit's span, so that, under an even load,
                # their recycles (and their replacements', each with the plain limit) stay that far apart.
                if spawned[0] < config.workers and config.max_requests:
                    worker.max_requests += spawned[0] * config.max_requests // config.workers
                    worker.config.limit_max_requests = worker.max_requests  # uvicorn's copy, made in __init__
                spawned[0] += 1

            feast_init = self.cfg.post_worker_init  # Feast's (metrics) hook when --metrics, else gunicorn's no-op

            def post_worker_init(worker: Any) -> None:
                feast_init(worker)
                try:
                    warm_up(store, feature_service, entity)
                except Exception:  # a worker that cannot warm up still serves, and says why
                    log.exception("worker %s could not warm up; its first reads will be slow", worker.pid)

            def worker_exit(server: Any, worker: Any) -> None:
                # gunicorn calls this in the retiring worker once it is done (and in the master for a worker
                # that vanished): only the worker itself leaves here.
                if os.getpid() == worker.pid:
                    logging.shutdown()
                    os._exit(0)

            self.cfg.set("pre_fork", pre_fork)
            self.cfg.set("post_worker_init", post_worker_init)
            self.cfg.set("worker_exit", worker_exit)

    Application(
        store=store,
        metrics_enabled=metrics,
        bind=f"{host}:{port}",
        accesslog="-" if config.access_log else None,
        workers=config.workers,
        max_requests=config.max_requests,
        max_requests_jitter=config.max_requests_jitter,
        keepalive=30,
        registry_ttl_sec=60,
    ).run()
