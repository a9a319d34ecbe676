"""The models behind the registry's aliases, kept loaded and swapped atomically when an alias moves.

``LiveModels.refresh()`` reads the registered model once (its aliases and its traffic
tags come in one answer), loads any version it does not hold yet, and then replaces the
``Snapshot`` in one assignment. A request takes the snapshot once, at its start, and uses
it throughout: it never waits on a reload and never sees half of one. A background thread
refreshes every ``poll_seconds``; ``wake()`` (a registry webhook) refreshes at once. A
reload that fails, or a version that fails the service's check (it scores the model's own
input example, assembled as requests are), keeps the versions already loaded and is retried
at the next poll.

A load is a few hundred milliseconds of Python (reading and rebuilding the model) in the
same process as the requests. While it runs, the interpreter hands its lock between threads
every millisecond instead of every five, so a request waits on the load in small slices
rather than large ones.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctpipe.registry import CHALLENGER, CHAMPION
from ctpipe.serving.traffic import TrafficPolicy

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    version: str
    run_id: str
    model: Any = field(repr=False)  # an MLflow pyfunc
    loaded_at: datetime


@dataclass(frozen=True)
class Snapshot:
    """What answers requests now: the champion, the challenger when the policy uses one, and the policy."""

    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None
    policy: TrafficPolicy = field(default_factory=TrafficPolicy)
    aliases: dict[str, str] = field(default_factory=dict)
    checked_at: datetime | None = None

    def aliases_of(self, version: str) -> list[str]:
        return sorted(alias for alias, held in self.aliases.items() if held == version)


def registry_view(client: MlflowClient, name: str) -> tuple[dict[str, str], TrafficPolicy]:
    """What the registry says the service should serve: ``name``'s aliases (alias -> version) and traffic policy."""
    registered = client.get_registered_model(name)
    aliases = {alias: str(version) for alias, version in (registered.aliases or {}).items()}
    return aliases, TrafficPolicy.from_tags(registered.tags)


class LiveModels:
    def __init__(
        self,
        client: MlflowClient,
        name: str,
        load: Callable[[str], Any],
        poll_seconds: float,
        check: Callable[[Any], None] | None = None,
    ):
        self.client = client
        self.name = name
        self.load = load  # models:/ URI -> pyfunc
        self.poll_seconds = poll_seconds
        self.check = check  # raises when a loaded model cannot score what the service sends it
        self.snapshot = Snapshot()
        self.failures = 0  # reloads that failed in a row
        self._woken = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._refreshing = threading.Lock()

    def refresh(self) -> bool:
        """Bring the snapshot in line with the registry; True when it changed what answers."""
        with self._refreshing:
            aliases, policy = registry_view(self.client, self.name)
            current = self.snapshot
            champion = self._loaded(aliases.get(CHAMPION), current)
            wanted = aliases.get(CHALLENGER)
            challenger = None
            if policy.needs_challenger and wanted and wanted != aliases.get(CHAMPION):
                challenger = self._loaded(wanted, current)
            fresh = Snapshot(champion, challenger, policy, aliases, datetime.now(UTC))
            changed = (
                _version(fresh.champion) != _version(current.champion)
                or _version(fresh.challenger) != _version(current.challenger)
                or fresh.policy != current.policy
            )
            self.snapshot = fresh  # the swap: one assignment
            if changed:
                log.info(
                    "serving %s: champion %s, challenger %s, policy %s",
                    self.name,
                    _version(champion),
                    _version(challenger),
                    policy.policy,
                )
            return changed

    def _loaded(self, version: str | None, current: Snapshot) -> LoadedModel | None:
        if version is None:
            return None
        for held in (current.champion, current.challenger):
            if held is not None and held.version == version:
                return held
        details = self.client.get_model_version(self.name, version)
        with _fine_thread_switching():
            model = self.load(f"models:/{self.name}/{version}")
            if self.check is not None:
                self.check(model)  # before the swap: a version that cannot answer never serves
        return LoadedModel(version, details.run_id, model, datetime.now(UTC))

    # -- the background refresh ---------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="live-models", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._woken.set()

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _follow(self) -> None:
        while not self._stopping.is_set():
            self._woken.wait(self.poll_seconds * (2 ** min(self.failures, 4)))
            self._woken.clear()
            if self._stopping.is_set():
                return
            try:
                self.refresh()
                self.failures = 0
            except Exception:  # the registry is down or a version will not load: keep serving what is loaded
                self.failures += 1
                log.exception("could not refresh the models of %s; still serving the loaded versions", self.name)


LOAD_SWITCH_INTERVAL_S = 0.001


@contextmanager
def _fine_thread_switching() -> Iterator[None]:
    """Switch threads every millisecond for the duration (Python's default is 5 ms)."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(min(saved, LOAD_SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


def _version(model: LoadedModel | None) -> str | None:
    return None if model is None else model.version
