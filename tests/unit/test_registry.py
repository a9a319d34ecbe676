"""Alias moves on a real MLflow registry (SQLite store): stale reviews, racing promotions, the audit trail."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from ctpipe import registry
from ctpipe.registry import CHALLENGER, CHAMPION, PREVIOUS, alias_version, audit_trail, champion_on

from ..conftest import ROOT

MODEL = "lab_qc_failure"


@pytest.fixture
def registry_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def client(registry_uri):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)
    client.create_registered_model(MODEL)
    return client


def new_versions(client, count: int) -> list[str]:
    """``count`` new versions (the registry only needs a source; these tests never load a model)."""
    return [str(client.create_model_version(MODEL, source="s3://ctpipe-tests/model").version) for _ in range(count)]


def alias(client, name: str) -> str | None:
    found = alias_version(client, MODEL, name)
    return str(found.version) if found is not None else None


def test_the_first_promotion_and_the_next_move_champion_and_previous_champion(client):
    v1, v2 = new_versions(client, 2)
    first = registry.promote(client, MODEL, v1, None, "Airflow training / run1 / promote_champion", "first model")
    assert first.promoted and (first.champion, first.previous_champion) == (v1, None)
    second = registry.promote(client, MODEL, v2, v1, "Airflow training / run2 / promote_champion", "beats it")
    assert second.promoted and (alias(client, CHAMPION), alias(client, PREVIOUS)) == (v2, v1)
    assert [(m.alias, m.from_version, m.to_version) for m in second.moves] == [(PREVIOUS, None, v1), (CHAMPION, v1, v2)]
    assert client.get_model_version(MODEL, v2).tags["promotion_outcome"] == "promoted"


def test_an_approval_that_comes_after_another_promotion_does_not_promote(client):
    """Reviewed against v1; while a person took days to approve, v3 became champion: v2 is left for a new review."""
    v1, v2, v3 = new_versions(client, 3)
    registry.promote(client, MODEL, v1, None, "first", "first model")
    registry.mark_challenger(client, MODEL, v2, "Airflow training / run2 / register_model", "trained")
    client.update_model_version(MODEL, v2, description="**Decision: promote**\n\nbeats the champion")
    registry.promote(client, MODEL, v3, v1, "Airflow training / run3 / promote_champion", "beats it")
    registry.mark_challenger(client, MODEL, v3, "Airflow training / run3 / register_model", "trained")
    registry.mark_challenger(client, MODEL, v2, "a person", "back to v2 for its approval")

    late = registry.promote(client, MODEL, v2, v1, "Airflow training / run2 / promote_champion", "approved")
    assert not late.promoted and late.moves == ()
    assert "compared against version 1, but the champion is now version 3" in late.reason
    assert (alias(client, CHAMPION), alias(client, PREVIOUS), alias(client, CHALLENGER)) == (v3, v1, v2)
    version = client.get_model_version(MODEL, v2)
    assert version.tags["promotion_outcome"] == "not_promoted"
    assert version.tags["promotion_outcome_reason"] == late.reason
    assert version.description.startswith("**Not promoted (")
    assert late.reason in version.description and version.description.endswith("beats the champion")
    assert [m.to_version for m in audit_trail(client, MODEL) if m.alias == CHAMPION] == [v1, v3]  # nothing for v2


def test_a_rollback_between_review_and_promotion_makes_the_review_stale_too(client):
    v1, v2, v3 = new_versions(client, 3)
    registry.promote(client, MODEL, v1, None, "first", "first")
    registry.promote(client, MODEL, v2, v1, "second", "better")
    registry.rollback(client, MODEL, "a person", "v2 mislabels plasma samples")
    assert (alias(client, CHAMPION), alias(client, PREVIOUS)) == (v1, None)
    late = registry.promote(client, MODEL, v3, v2, "Airflow training / run3 / promote_champion", "approved")
    assert not late.promoted and alias(client, CHAMPION) == v1
    assert client.get_model_version(MODEL, v2).tags["rolled_back"] == f"replaced by {v1}: v2 mislabels plasma samples"


def test_nothing_to_roll_back_to_is_a_clear_error(client):
    (v1,) = new_versions(client, 1)
    registry.promote(client, MODEL, v1, None, "first", "first")
    with pytest.raises(registry.RegistryStateError, match="has no previous_champion alias: nothing to roll back to"):
        registry.rollback(client, MODEL, "a person", "just because")
    assert alias(client, CHAMPION) == v1


def test_the_audit_trail_answers_which_version_was_champion_when(client):
    v1, v2, v3 = new_versions(client, 3)
    instants = [datetime.now(UTC)]
    for version, compared in ((v1, None), (v2, v1), (v3, v2)):
        time.sleep(0.02)
        registry.promote(client, MODEL, version, compared, f"promoter of {version}", f"promote {version}")
        time.sleep(0.02)
        instants.append(datetime.now(UTC))
    registry.rollback(client, MODEL, "a person at the command line", "v3 misbehaves")
    instants.append(datetime.now(UTC))

    assert [champion_on(client, MODEL, when) for when in instants] == [None, v1, v2, v3, v2]
    trail = audit_trail(client, MODEL)
    champion_moves = [m for m in trail if m.alias == CHAMPION]
    assert [(m.from_version, m.to_version) for m in champion_moves] == [(None, v1), (v1, v2), (v2, v3), (v3, v2)]
    assert champion_moves[1].by == f"promoter of {v2}" and champion_moves[1].reason == f"promote {v2}"
    assert champion_moves[-1].by == "a person at the command line" and "v3 misbehaves" in champion_moves[-1].reason
    assert all(a.at <= b.at for a, b in itertools.pairwise(trail))
    # The trail is MLflow's own: tags of the registered model, readable without this package.
    tags = client.get_registered_model(MODEL).tags
    assert len([k for k in tags if k.startswith(registry.AUDIT_PREFIX)]) == len(trail)
    assert json.loads(tags[f"{registry.AUDIT_PREFIX}000001"])["to_version"] == v1


def test_a_move_made_by_hand_in_the_mlflow_ui_is_noticed_at_the_next_recorded_move(client):
    v1, v2, v3 = new_versions(client, 3)
    registry.promote(client, MODEL, v1, None, "first", "first")
    client.set_registered_model_alias(MODEL, CHAMPION, v2)  # by hand, bypassing the pipeline
    noticed = datetime.now(UTC)
    registry.promote(client, MODEL, v3, v2, "Airflow training / run3 / promote_champion", "beats v2")
    moves = [(m.from_version, m.to_version, m.by) for m in audit_trail(client, MODEL) if m.alias == CHAMPION]
    assert moves == [
        (None, v1, "first"),
        (v1, v2, "outside the pipeline"),
        (v2, v3, "Airflow training / run3 / promote_champion"),
    ]
    assert champion_on(client, MODEL, noticed) == v1  # the trail knows the hand move only from when it noticed it
    assert alias(client, PREVIOUS) == v2


def test_the_command_line_records_a_persons_move(registry_uri, client, monkeypatch, state_dir):
    v1, v2 = new_versions(client, 2)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry_uri)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ctpipe.registry", *args], capture_output=True, text=True, timeout=120
        )

    done = run("set-champion", v1, "--reason", "hotfix")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["champion"] == v1
    assert run("set-champion", v2, "--reason", "the better one").returncode == 0
    history = json.loads(run("history").stdout)
    assert [(m["alias"], m["to_version"]) for m in history] == [(CHAMPION, v1), (PREVIOUS, v1), (CHAMPION, v2)]
    assert history[0]["by"].endswith("(command line)") and history[0]["reason"] == "hotfix"
    when = json.loads(run("champion-on", history[0]["at"]).stdout)
    assert when["champion"] == v1


def race(registry_uri: str, plan: list) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit.registry_race", registry_uri, MODEL, json.dumps(plan)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(outcomes) == len(plan)
    assert not [o for o in outcomes if "error" in o], outcomes
    return outcomes


def replay(trail) -> dict[str, str | None]:
    """The aliases the audit trail adds up to; each move must start where the one before it left the alias."""
    state: dict[str, str | None] = {}
    for move in trail:
        assert move.from_version == state.get(move.alias), f"a lost update: {move} after {state}"
        state[move.alias] = move.to_version
    return state


def test_twenty_concurrent_promotions_leave_one_champion_and_the_right_previous_champion(registry_uri, client):
    twenty_concurrent_promotions(registry_uri, client)


@pytest.mark.services
def test_twenty_concurrent_promotions_through_an_mlflow_server_on_postgresql(tmp_path):
    """The production registry: the lock holds over HTTP, on the server's PostgreSQL store."""
    from mlflow import MlflowClient

    from ..conftest import free_port
    from ..services import mlflow_server, postgres_database

    with (
        postgres_database("registry") as backend,
        mlflow_server(backend, tmp_path / "artifacts", free_port(), tmp_path / "server.log") as url,
    ):
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        client.create_registered_model(MODEL)
        twenty_concurrent_promotions(url, client)


def twenty_concurrent_promotions(registry_uri: str, client) -> None:
    v1, *challengers = new_versions(client, 21)
    registry.promote(client, MODEL, v1, None, "first", "first model")
    # Twenty training runs, all reviewed against champion v1, approved and promoting at the same instant.
    outcomes = race(registry_uri, [["promote", v, v1] for v in challengers])
    promoted = [o for o in outcomes if o["promoted"]]
    assert len(promoted) == 1, outcomes
    winner = promoted[0]["version"]
    assert (alias(client, CHAMPION), alias(client, PREVIOUS)) == (winner, v1)
    refused = [o for o in outcomes if not o["promoted"]]
    assert len(refused) == 19 and all(f"the champion is now version {winner}" in o["reason"] for o in refused)
    trail = audit_trail(client, MODEL)
    assert replay(trail) == {CHAMPION: winner, PREVIOUS: v1}
    assert [(m.alias, m.to_version) for m in trail[1:]] == [(PREVIOUS, v1), (CHAMPION, winner)]
    assert client.search_registered_models(f"name = '{MODEL}{registry.LOCK_SUFFIX}'") == []  # the lock is gone


def test_promotions_racing_a_rollback_never_lose_an_alias_move(registry_uri, client):
    v1, v2, *challengers = new_versions(client, 8)
    registry.promote(client, MODEL, v1, None, "first", "first")
    registry.promote(client, MODEL, v2, v1, "second", "better")
    outcomes = race(registry_uri, [["rollback"], *[["promote", v, v2] for v in challengers]])
    trail = audit_trail(client, MODEL)
    live = {CHAMPION: alias(client, CHAMPION), PREVIOUS: alias(client, PREVIOUS)}
    assert {k: v for k, v in replay(trail).items() if k in live} == live
    last_promotion = [m for m in trail if m.alias == CHAMPION][-1]
    if last_promotion.reason.startswith("rollback"):
        assert live[PREVIOUS] is None  # a rollback consumes previous_champion
    else:
        assert live[PREVIOUS] == last_promotion.from_version  # the champion it replaced
    [rolled_back] = [o for o in outcomes if o["reason"].startswith("rollback")]
    assert rolled_back["promoted"] and rolled_back["champion"] in (v1, v2)
    promotions = [m for m in trail if m.alias == CHAMPION and m.reason == "race"]
    assert len(promotions) == sum(o["promoted"] for o in outcomes if o is not rolled_back) <= 2


def test_a_version_given_as_mlflow_hands_it_out_is_recorded_as_text(client):
    """search_model_versions gives int versions on some stores; the trail and the aliases hold text."""
    v1, v2 = new_versions(client, 2)
    registry.set_champion(client, MODEL, int(v1), "a person", "first")
    moved = registry.set_champion(client, MODEL, int(v2), "a person", "second")
    assert (moved.champion, moved.previous_champion) == (v2, v1)
    assert [(m.from_version, m.to_version) for m in audit_trail(client, MODEL) if m.alias == CHAMPION] == [
        (None, v1),
        (v1, v2),
    ]
    assert registry.rollback(client, MODEL, "a person", "back").champion == v1
