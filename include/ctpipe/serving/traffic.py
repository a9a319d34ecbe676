"""Which model answers which request: the traffic policy, kept in the registry, and sticky assignment.

Airflow decides and the service follows: the policy is one tag on the registered model
(``traffic_policy``, JSON: a service never reads half of a change), set by ``set_policy``
(the training DAG, when it registers a challenger, and ``python -m ctpipe.serving.traffic``),
and read by the service with the aliases. The policies:

* ``champion_only``: the champion answers everything;
* ``shadow``: the challenger also scores every request; only the champion's answer is
  returned, both are logged;
* ``canary``: a share (``share``, small) of the entities is answered by the challenger;
* ``ab``: the same with a split (``share``, default one half).

In a canary or an A/B test both models score every request, as in shadow, and both scores
are logged; the assignment decides only whose answer is returned. So every labelled request
gives the live experiment (``ctpipe.rollout``) a pair of losses on the same event.

A policy other than ``champion_only`` needs a challenger distinct from the champion;
without one the champion answers everything. Assignment is sticky: a hash of the request's
``key`` column (the entity by default) and the challenger's version places each value on
[0, 1), and values under ``share`` go to the challenger. So an entity sees one model for a
whole experiment, across restarts and replicas; a new challenger starts a new draw.

    python -m ctpipe.serving.traffic show
    python -m ctpipe.serving.traffic set canary --share 0.1 --reason "first look at version 7"
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlflow import MlflowClient

Policy = Literal["champion_only", "shadow", "canary", "ab"]
POLICIES: tuple[Policy, ...] = get_args(Policy)
# One tag holds the whole policy (JSON), so a service never reads half of a change.
TAG = "traffic_policy"
PERSON, PIPELINE = "person: ", "pipeline: "  # who set a policy: a person's choice outlives new challengers
DEFAULT_SHARES = {"champion_only": 0.0, "shadow": 0.0, "canary": 0.05, "ab": 0.5}
LIVE_POLICIES: tuple[Policy, ...] = ("canary", "ab")  # the challenger answers: a live experiment (ctpipe.rollout)


@dataclass(frozen=True)
class TrafficPolicy:
    policy: Policy = "champion_only"
    share: float = 0.0  # of the entities answered by the challenger (canary, ab)
    key: str | None = None  # the event column assignment hashes; None: the dataset's entity
    set_by: str = ""
    reason: str = "no policy set: the champion answers"
    set_at: str = ""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown traffic policy {self.policy!r}; one of {POLICIES}")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"a traffic share is between 0 and 1, got {self.share}")
        if self.policy in ("champion_only", "shadow") and self.share:
            raise ValueError(f"policy {self.policy} sends no answer from the challenger: give it no share")

    @property
    def needs_challenger(self) -> bool:
        return self.policy != "champion_only"

    def to_tag(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> TrafficPolicy:
        """The policy a registered model's tags describe; none set: ``champion_only``.

        A tag edited by hand into nonsense raises ``ValueError`` naming it.
        """
        raw = tags.get(TAG)
        if raw is None:
            return cls()
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError) as error:
            raise ValueError(f"tag {TAG}={raw!r} is not a traffic policy: {error}") from None


def bucket(value: str, salt: str) -> float:
    """``value``'s place on [0, 1), the same in every process: the first 8 bytes of a SHA-256."""
    digest = hashlib.sha256(f"{salt}\x1f{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def to_challenger(policy: TrafficPolicy, values: list[str], challenger_version: str) -> list[bool]:
    """For each key value, whether the challenger answers it (canary and A/B; never otherwise)."""
    if policy.policy not in ("canary", "ab") or policy.share <= 0.0:
        return [False] * len(values)
    salt = f"challenger {challenger_version}"
    return [bucket(v, salt) < policy.share for v in values]


def read_policy(client: MlflowClient, name: str) -> TrafficPolicy:
    return TrafficPolicy.from_tags(client.get_registered_model(name).tags)


def set_policy(
    client: MlflowClient,
    name: str,
    policy: Policy,
    by: str,
    reason: str,
    share: float | None = None,
    key: str | None = None,
) -> TrafficPolicy:
    """Record a traffic policy on the registered model; the services follow within their poll interval."""
    chosen = TrafficPolicy(
        policy=policy,
        share=DEFAULT_SHARES.get(policy, 0.0) if share is None else share,
        key=key,
        set_by=by,
        reason=reason,
        set_at=datetime.now(UTC).isoformat(),
    )
    client.set_registered_model_tag(name, TAG, chosen.to_tag())
    return chosen


def policy_for_new_challenger(client: MlflowClient, name: str, default: Policy, by: str, version: str) -> TrafficPolicy:
    """What the training DAG does on registering a challenger: a policy a person chose stays; else ``default``.

    A challenger answers no request before its review: with a ``canary`` or ``ab`` default it
    shadows until a passing review starts its live experiment (``ctpipe.rollout.start``).
    """
    current = read_policy(client, name)
    if current.set_by.startswith(PERSON):
        return current
    if default in LIVE_POLICIES:
        why = f"new challenger, version {version}: shadow until its review passes, then a live {default}"
        return set_policy(client, name, "shadow", f"{PIPELINE}{by}", why)
    return set_policy(client, name, default, f"{PIPELINE}{by}", f"new challenger, version {version}: the default")


def main(argv: list[str] | None = None) -> None:
    from ctpipe.settings import Settings
    from ctpipe.tracking import connect

    parser = argparse.ArgumentParser(description="Show or set the traffic policy between champion and challenger.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", help="print the policy in force")
    chosen = commands.add_parser("set", help="record a new policy; the services follow within their poll interval")
    chosen.add_argument("policy", choices=POLICIES)
    chosen.add_argument("--share", type=float, default=None, help="of entities to the challenger (canary, ab)")
    chosen.add_argument("--key", default=None, help="the event column to hash (default: the dataset's entity)")
    chosen.add_argument("--reason", required=True, help="why: recorded with the policy")
    chosen.add_argument("--by", default="cli", help="who sets it (recorded)")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    client = connect(settings).client
    name = settings.dataset.model_name
    if args.command == "show":
        policy = read_policy(client, name)
    else:
        if args.key and args.key not in {c.name for c in settings.dataset.events.columns}:
            parser.error(f"--key {args.key!r} is not a column of {settings.dataset.events.name}")
        try:
            policy = set_policy(client, name, args.policy, f"{PERSON}{args.by}", args.reason, args.share, args.key)
        except ValueError as error:
            parser.error(str(error))
    print(f"{name}: {policy.policy}" + (f", share {policy.share:g}" if policy.share else ""))
    print(f"  key: {policy.key or settings.dataset.entity}; set by {policy.set_by or '-'} at {policy.set_at or '-'}")
    print(f"  reason: {policy.reason}")


if __name__ == "__main__":
    main()
