"""The MLflow model registry: versions, their tags and descriptions, and aliases moved on the record.

Every trained model becomes a new version of the dataset's registered model, aliased
``challenger``. Promotion moves ``champion`` and keeps the old one as
``previous_champion`` for a one-step rollback. What decides a promotion is
``ctpipe.promotion``; this module only carries decisions out, so that:

* **No promotion acts on a stale review.** ``promote`` moves the alias only while the
  champion is still the version the review compared against; otherwise it records why
  not on the version (tags and description) and leaves it as challenger.
* **Racing moves cannot interleave.** Every alias move happens under a registry-wide
  lock held in MLflow itself: a registered model named ``<model>.alias-lock``, whose
  creation is atomic in every MLflow backend (SQL stores and tracking servers alike).
  Two promotions, or a promotion and a rollback, run one after the other, and each
  re-reads the champion under the lock.
* **Every move is on the record.** Each alias move is a tag ``alias_audit.<seq>`` of the
  registered model: which alias, from which version to which, when, by whom or what, and
  why. ``champion_on(when)`` answers "which version was champion then?" from MLflow alone.
  A move made by hand in the MLflow UI bypasses the lock and the trail; the next recorded
  move notices it and records it as a move "outside the pipeline" (when it was noticed).

    python -m ctpipe.registry history               # the audit trail
    python -m ctpipe.registry champion-on 2026-02-20T12:00:00+00:00
    python -m ctpipe.registry set-champion 7 --reason "hotfix for the courier outage"
    python -m ctpipe.registry rollback --reason "v8 mislabels plasma samples"
"""

from __future__ import annotations

import argparse
import getpass
import json
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctpipe.promotion import stale_markdown, still_current
from ctpipe.records import AliasMove, Promotion, RegisteredVersion

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous_champion"
AUDIT_PREFIX = "alias_audit."
LOCK_SUFFIX = ".alias-lock"
LOCK_WAIT_S = 120.0  # how long a move waits for another to finish
LOCK_STALE_S = 300.0  # a lock older than this was left by a process that died holding it
LOCK_POLL_S, LOCK_POLL_MAX_S = 0.05, 2.0  # a waiter's first and longest pause between tries
LOCK_LOOK_S = 5.0  # how often a waiter looks at who holds the lock
LOCK_DESCRIPTION = (
    "Held while the pipeline moves an alias of {model}; it exists for a moment. One older than "
    "{stale:.0f} s was left by a process that died holding it, and the next move breaks it."
)


class RegistryBusyError(RuntimeError):
    """Another alias move held the registry's lock for too long; a retry may find it free."""


class RegistryStateError(ValueError):
    """The registry is not in a state that allows the move (nothing to roll back to)."""


def now() -> datetime:
    return datetime.now(UTC)


# -- versions -----------------------------------------------------------------------------------


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of the registered model, oldest first."""
    return sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


def register_version(
    client: MlflowClient, name: str, model_uri: str, run_id: str, tags: dict[str, str], run_link: str | None
) -> RegisteredVersion:
    """A new version of ``name`` from a logged model (``models:/m-...``), tagged, with a link to its run."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    version = client.create_model_version(
        name, source=model_uri, run_id=run_id, tags=tags, run_link=run_link, model_id=model_id
    )
    return RegisteredVersion(name=name, version=str(version.version), run_id=run_id)


def annotate(client: MlflowClient, name: str, version: str, tags: dict[str, str], description: str | None) -> None:
    """Tags and the description of a version: where MLflow's model review shows a decision."""
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if description is not None:
        client.update_model_version(name, version, description=description)


# -- the lock -----------------------------------------------------------------------------------


@contextmanager
def alias_lock(client: MlflowClient, name: str, holder: str, wait: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the registry-wide lock on ``name``'s aliases for the block.

    The lock is a registered model that exists only while held: creating a registered model
    whose name exists fails atomically in every MLflow store, so exactly one creator wins.
    """
    from mlflow.exceptions import MlflowException

    lock = name + LOCK_SUFFIX
    token = f"{holder} #{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + wait
    backoff, looked = LOCK_POLL_S, None
    while True:
        try:
            client.create_registered_model(
                lock,
                tags={"holder": token},
                description=LOCK_DESCRIPTION.format(model=name, stale=LOCK_STALE_S),
            )
            break
        except MlflowException as error:
            # Taken; or taken and released while the store looked it up (it then says "not found"); or,
            # on SQLite, another writer holds the database for a moment. Each means: try again shortly.
            if error.error_code not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST") and (
                "database is locked" not in str(error)
            ):
                raise
        # Now and then, look at who holds it: our own creation whose answer was lost (the client
        # retried it), or a lock left by a process that died holding it.
        if looked is None or time.monotonic() - looked > LOCK_LOOK_S:
            looked = time.monotonic()
            held = _lock_holder(client, lock)
            if held is not None and held[0] == token:
                break
            if held is not None and time.time() - held[1] / 1000 > LOCK_STALE_S:
                _release(client, lock, held[0])
                continue
        if time.monotonic() > deadline:
            raise RegistryBusyError(
                f"the aliases of {name} stayed locked for {wait:.0f} s by {_lock_holder(client, lock)}; "
                "another alias move is running or died holding the lock"
            )
        # Exponential backoff with full jitter: many waiters must not drown the holder's own requests.
        time.sleep(random.uniform(0, backoff))
        backoff = min(backoff * 2, LOCK_POLL_MAX_S)
    try:
        yield
    finally:
        _release(client, lock, token)


def _lock_holder(client: MlflowClient, lock: str) -> tuple[str, int] | None:
    """(holder, creation time in ms) of the lock, or None when it is free."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(lock)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return model.tags.get("holder", ""), model.creation_timestamp


def _release(client: MlflowClient, lock: str, token: str) -> None:
    from mlflow.exceptions import MlflowException

    held = _lock_holder(client, lock)
    if held is None or held[0] != token:
        return
    try:
        client.delete_registered_model(lock)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


# -- the audit trail ----------------------------------------------------------------------------


@dataclass
class _Aliases:
    """The registered model's aliases and the end of its audit trail, read once and kept up to date."""

    live: dict[str, str]  # alias -> version
    recorded: dict[str, str | None]  # alias -> where its last recorded move left it
    next_entry: int


def _read(client: MlflowClient, name: str) -> _Aliases:
    model = client.get_registered_model(name)
    trail = _trail(model.tags)
    recorded: dict[str, str | None] = {}
    for move in trail:
        recorded[move.alias] = move.to_version
    numbers = [int(k.removeprefix(AUDIT_PREFIX)) for k in model.tags if k.startswith(AUDIT_PREFIX)]
    live = {alias: str(version) for alias, version in (model.aliases or {}).items()}
    return _Aliases(live=live, recorded=recorded, next_entry=max(numbers, default=0) + 1)


def _trail(tags: dict[str, str]) -> list[AliasMove]:
    entries = sorted((int(k.removeprefix(AUDIT_PREFIX)), v) for k, v in tags.items() if k.startswith(AUDIT_PREFIX))
    return [AliasMove.from_dict(json.loads(value)) for _, value in entries]


def audit_trail(client: MlflowClient, name: str) -> list[AliasMove]:
    """Every recorded alias move of ``name``, oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        return _trail(client.get_registered_model(name).tags)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise


def alias_on(client: MlflowClient, name: str, alias: str, when: datetime) -> str | None:
    """The version ``alias`` pointed at, at instant ``when``, by the audit trail (None: not set then)."""
    held = None
    for move in audit_trail(client, name):
        if move.alias == alias and move.at <= when:
            held = move.to_version
    return held


def champion_on(client: MlflowClient, name: str, when: datetime) -> str | None:
    """Which version was champion at ``when``: the question a reviewer asks of an incident."""
    return alias_on(client, name, CHAMPION, when)


def _move(
    client: MlflowClient, name: str, state: _Aliases, alias: str, version: str | None, by: str, reason: str
) -> list[AliasMove]:
    """Point ``alias`` at ``version`` (None removes it), record it, and keep ``state`` up to date."""
    # MLflow hands versions out as int or str by store and call; the trail records text.
    version = None if version is None else str(version)
    live = state.live.get(alias)
    moves = []
    if state.recorded.get(alias) != live:  # moved by hand since the last recorded move
        was = state.recorded.get(alias)
        moves.append(
            AliasMove(
                alias=alias,
                from_version=was,
                to_version=live,
                at=now(),
                by="outside the pipeline",
                reason=f"noticed at the next recorded move: the alias was on version {live}, last recorded on {was}",
            )
        )
    if live != version:
        if version is None:
            client.delete_registered_model_alias(name, alias)
            state.live.pop(alias, None)
        else:
            client.set_registered_model_alias(name, alias, version)
            state.live[alias] = version
        moves.append(AliasMove(alias=alias, from_version=live, to_version=version, at=now(), by=by, reason=reason))
    for move in moves:
        key = f"{AUDIT_PREFIX}{state.next_entry:06d}"
        client.set_registered_model_tag(name, key, json.dumps(move.to_dict(), separators=(",", ":")))
        state.next_entry += 1
        state.recorded[alias] = move.to_version
    return moves


def move_alias(
    client: MlflowClient, name: str, alias: str, version: str | None, by: str, reason: str
) -> list[AliasMove]:
    """Point ``alias`` at ``version`` (None removes it) and record it; call it under ``alias_lock``.

    Returns the moves recorded: none when the alias is already there; two when it was found
    moved by hand since the last recorded move (that move is recorded first, as noticed now).
    """
    return _move(client, name, _read(client, name), alias, version, by, reason)


# -- the moves the pipeline makes ---------------------------------------------------------------


def mark_challenger(client: MlflowClient, name: str, version: str, by: str, reason: str) -> list[AliasMove]:
    with alias_lock(client, name, by):
        return move_alias(client, name, CHALLENGER, version, by, reason)


def promote(
    client: MlflowClient, name: str, version: str, compared_with: str | None, by: str, reason: str
) -> Promotion:
    """Make ``version`` champion if the review's champion (``compared_with``) still is; record either way."""
    with alias_lock(client, name, by):
        return _promote(client, name, _read(client, name), version, compared_with, by, reason)


def set_champion(client: MlflowClient, name: str, version: str, by: str, reason: str) -> Promotion:
    """A person's move, from the command line: champion to ``version`` whatever the reviews said."""
    version = str(version)  # typed at a prompt, or an MLflow ModelVersion's int
    with alias_lock(client, name, by):
        state = _read(client, name)
        return _promote(client, name, state, version, state.live.get(CHAMPION), by, reason)


def _promote(
    client: MlflowClient, name: str, state: _Aliases, version: str, compared_with: str | None, by: str, reason: str
) -> Promotion:
    """``promote``'s work, under the lock."""
    current = state.live.get(CHAMPION)
    fresh, why = still_current(compared_with, current)
    if not fresh:
        at = now().isoformat()
        description = client.get_model_version(name, version).description or ""
        annotate(
            client,
            name,
            version,
            {"promotion_outcome": "not_promoted", "promotion_outcome_reason": why, "promotion_outcome_at": at},
            stale_markdown(description, why, at),
        )
        return Promotion(version, False, current, state.live.get(PREVIOUS), why)
    moves: list[AliasMove] = []
    if current is not None and current != version:
        moves += _move(client, name, state, PREVIOUS, current, by, f"replaced as champion by version {version}")
    moves += _move(client, name, state, CHAMPION, version, by, reason)
    annotate(client, name, version, {"promotion_outcome": "promoted", "promotion_outcome_at": now().isoformat()}, None)
    return Promotion(version, True, version, state.live.get(PREVIOUS), why, tuple(moves))


def rollback(client: MlflowClient, name: str, by: str, reason: str) -> Promotion:
    """Restore ``previous_champion`` as ``champion``; the demoted version is tagged with why."""
    with alias_lock(client, name, by):
        state = _read(client, name)
        restored = state.live.get(PREVIOUS)
        if restored is None:
            raise RegistryStateError(f"{name} has no {PREVIOUS} alias: nothing to roll back to")
        demoted = state.live.get(CHAMPION)
        moves = _move(client, name, state, CHAMPION, restored, by, f"rollback: {reason}")
        moves += _move(client, name, state, PREVIOUS, None, by, f"rollback: version {restored} is champion again")
        if demoted is not None:
            client.set_model_version_tag(name, demoted, "rolled_back", f"replaced by {restored}: {reason}")
        return Promotion(restored, True, restored, None, f"rollback from version {demoted}: {reason}", tuple(moves))


# -- the command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    from ctpipe.settings import Settings
    from ctpipe.tracking import connect

    parser = argparse.ArgumentParser(description="The registered model's aliases: history, and moves by hand.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("history", help="every recorded alias move")
    on = commands.add_parser("champion-on", help="which version was champion at an instant")
    on.add_argument("when", type=datetime.fromisoformat)
    manual = commands.add_parser("set-champion", help="make a version champion, recorded as a manual move")
    manual.add_argument("version")
    manual.add_argument("--reason", required=True)
    back = commands.add_parser("rollback", help="restore previous_champion")
    back.add_argument("--reason", required=True)
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    client = connect(settings).client
    name = settings.dataset.model_name
    by = f"{getpass.getuser()} (command line)"
    result: Any
    if args.command == "history":
        result = [m.to_dict() for m in audit_trail(client, name)]
    elif args.command == "champion-on":
        when = args.when if args.when.tzinfo else args.when.replace(tzinfo=UTC)
        result = {"when": when.isoformat(), "champion": champion_on(client, name, when)}
    elif args.command == "set-champion":
        result = set_champion(client, name, args.version, by, args.reason).to_dict()
    else:
        result = rollback(client, name, by, args.reason).to_dict()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
