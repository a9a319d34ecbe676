"""A challenger's live experiment, carried out: started after a passing review, decided once a day, recorded.

The rule is ``ctpipe.experiment``'s, a pure function; the evidence is
``ctpipe.online_evaluation``'s (served predictions joined to the labels known so far); this
module reads and moves the registry and the traffic policy, and writes the record:

* ``goes_live`` / ``start``: a review that would promote a challenger over a champion, in a
  deployment whose ``CTPIPE_SERVING_CHALLENGER_POLICY`` is ``canary`` or ``ab``, starts an
  experiment instead of promoting at once. The traffic policy becomes the ramp's first
  share (``canary``) or its last (``ab``); the experiment itself is one tag on the
  challenger's version (``experiment``, JSON). Events from the training cutoff on are its
  evidence: the service scores every request with both models, so each labelled one gives a
  pair of losses.
* ``decide_day``: once a day, with the labels known at the day's end: the paired Brier
  differences from the experiment's start, and the challenger's guardrail readings over the
  day (the share of its scoring attempts that failed, the p99 latency of the requests it
  answered), go to ``ctpipe.experiment.decide``. A ramp moves the traffic share; a
  roll-back or a stop sets the policy back to ``champion_only`` and removes the
  ``challenger`` alias (on the audit trail); a promotion is left to ``promote``, after a
  person's approval when the training plan asked for one. A day is decided once: deciding
  it again returns the recorded step. If the champion moved meanwhile, the experiment
  stops: it compared against a model that no longer answers.
* ``promote``: through ``ctpipe.registry.promote``, the offline review's code, with the
  champion the experiment compared against: a promotion never acts on a stale comparison.
  ``close_unpromoted`` stands the challenger down when a decision to promote was rejected by
  a person or refused.

Every step is recorded where MLflow's model review shows it: a tag per step
(``experiment_step.<NNN>``: action, share, reasons, pairs, difference and interval), the
status (``experiment_status``), and a line in the version's description; alias moves go to
the registered model's audit trail.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ctpipe import registry
from ctpipe.experiment import Evidence, ExperimentState, decide
from ctpipe.records import Experiment, ExperimentStep, Interval, Promotion, Review, TrainingPlan
from ctpipe.serving.traffic import LIVE_POLICIES, PIPELINE, set_policy
from ctpipe.settings import Settings
from ctpipe.tracking import connect

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlflow import MlflowClient

EXPERIMENT_TAG = "experiment"
STATUS_TAG = "experiment_status"  # running, promoted (or awaiting approval), rolled_back, stopped
STEP_PREFIX = "experiment_step."
HEADER = "**Live experiment**"
STATUS = {"promote": "promoted", "roll_back": "rolled_back", "stop": "stopped"}


def goes_live(review: Review, settings: Settings) -> bool:
    """Whether a review's promotion goes through a live experiment first: a champion to compare with, and the policy."""
    return (
        review.promote and review.champion_version is not None and settings.serving.challenger_policy in LIVE_POLICIES
    )


def start(review: Review, plan: TrainingPlan, by: str, settings: Settings | None = None) -> ExperimentStep:
    """Start the challenger's live experiment: the traffic policy, the experiment tag, the first step recorded."""
    settings = settings or Settings.from_env()
    if not goes_live(review, settings):
        raise ValueError(f"version {review.version}'s review does not start a live experiment")
    policy, ramp = settings.serving.challenger_policy, settings.experiment.ramp
    stage = 0 if policy == "canary" else len(ramp) - 1  # an A/B test splits at the ramp's last share from the start
    assert review.champion_version is not None
    experiment = Experiment(
        name=review.name,
        champion=review.champion_version,
        challenger=review.version,
        policy=policy,  # type: ignore[arg-type]
        started=plan.cutoff,
        approval=plan.approval,
        stage=stage,
    )
    reason = (
        f"live experiment of version {review.version} against champion {review.champion_version}: "
        f"{policy} at {ramp[stage]:.0%}, after its review on the holdout passed"
    )
    client = connect(settings).client
    set_policy(client, review.name, policy, f"{PIPELINE}{by}", reason, share=ramp[stage])  # type: ignore[arg-type]
    step = ExperimentStep(
        name=review.name,
        champion=experiment.champion,
        challenger=experiment.challenger,
        day=plan.cutoff,
        action="start",
        share=ramp[stage],
        reasons=(reason, *review.reasons),
        approval=experiment.approval,
    )
    _record(client, experiment, step)
    return step


def running(client: MlflowClient, name: str) -> Experiment | None:
    """The experiment of the version aliased ``challenger``, while it has not ended."""
    challenger = registry.alias_version(client, name, registry.CHALLENGER)
    raw = None if challenger is None else challenger.tags.get(EXPERIMENT_TAG)
    if raw is None:
        return None
    experiment = Experiment.from_dict(json.loads(raw))
    return None if experiment.outcome is not None else experiment


def decide_day(
    day_end: datetime,
    by: str,
    settings: Settings | None = None,
    on_roll_back: Callable[[ExperimentStep], object] | None = None,
) -> ExperimentStep | None:
    """Decide the running experiment's day that ends at ``day_end``, and carry out all but a promotion.

    None when no experiment is running. A day already decided returns its recorded step.
    ``on_roll_back`` (the alert) is called once a roll-back has been carried out, once.
    """
    settings = settings or Settings.from_env()
    client = connect(settings).client
    name = settings.dataset.model_name
    challenger = registry.alias_version(client, name, registry.CHALLENGER)
    raw = None if challenger is None else challenger.tags.get(EXPERIMENT_TAG)
    if challenger is None or raw is None:
        return None
    experiment = Experiment.from_dict(json.loads(raw))
    if experiment.decided_through is not None and day_end <= experiment.decided_through:
        return recorded_step(challenger.tags, day_end)
    if experiment.outcome is not None or day_end <= experiment.started:  # ended, or no day of it has passed yet
        return None

    champion = registry.alias_version(client, name, registry.CHAMPION)
    champion_now = None if champion is None else str(champion.version)
    if champion_now != experiment.champion:
        why = (
            f"the champion moved from version {experiment.champion} to {champion_now or 'none'} during the "
            "experiment: its evidence compared against a model that no longer answers; the challenger stands down"
        )
        step = _step(experiment, day_end, "stop", 0.0, (why,))
        _stand_down(client, experiment, step, by)
        _record(client, replace(experiment, days=experiment.days + 1, outcome="stop", decided_through=day_end), step)
        return step

    policy = settings.experiment
    evidence = gather_evidence(settings, experiment, day_end)
    state = ExperimentState(experiment.stage, experiment.days, experiment.stage_days)
    decision = decide(policy, state, evidence)
    action = decision.action
    step = ExperimentStep(
        name=experiment.name,
        champion=experiment.champion,
        challenger=experiment.challenger,
        day=day_end,
        action=action,
        share=decision.share if action in ("continue", "ramp", "promote") else 0.0,
        reasons=decision.reasons,
        pairs=decision.pairs,
        mean_difference=decision.mean_difference,
        lower=_finite(decision.interval.lower),
        upper=_finite(decision.interval.upper),
        approval=experiment.approval,
    )
    if action == "ramp":
        set_policy(client, name, experiment.policy, f"{PIPELINE}{by}", step.reasons[-1], share=step.share)
    elif action in ("roll_back", "stop"):
        _stand_down(client, experiment, step, by)
    after = replace(
        experiment,
        stage=decision.state.stage,
        days=decision.state.days,
        stage_days=decision.state.stage_days,
        decided_through=day_end,
        outcome=decision.state.outcome,
    )
    _record(client, after, step)
    if action == "roll_back" and on_roll_back is not None:
        on_roll_back(step)
    return step


def promote(step: ExperimentStep, by: str, settings: Settings | None = None) -> Promotion:
    """Carry out a step that decided to promote: the registry's promotion, then the traffic back to the champion."""
    if step.action != "promote":
        raise ValueError(f"the experiment's step is {step.action}, not promote")
    settings = settings or Settings.from_env()
    client = connect(settings).client
    reason = "promoted on live evidence: " + "; ".join(step.reasons)
    promotion = registry.promote(client, step.name, step.challenger, step.champion, by, reason)
    if promotion.promoted:
        set_policy(
            client,
            step.name,
            "champion_only",
            f"{PIPELINE}{by}",
            f"experiment ended: version {step.challenger} promoted",
        )
    outcome = "promoted" if promotion.promoted else f"not promoted: {promotion.reason}"
    _describe(client, step.name, step.challenger, f"- {_now():%Y-%m-%d %H:%M} UTC: {outcome} ({by})")
    return promotion


def supersede(client: MlflowClient, name: str, version: str) -> ExperimentStep | None:
    """A new challenger is being registered: the running experiment of the one it replaces ends, undecided."""
    experiment = running(client, name)
    if experiment is None or experiment.challenger == version:
        return None
    why = f"replaced as challenger by version {version}, trained since; the experiment ends undecided"
    step = _step(experiment, _now(), "stop", 0.0, (why,))
    _record(client, replace(experiment, days=experiment.days + 1, outcome="stop"), step)
    return step


def close_unpromoted(step: ExperimentStep, by: str, settings: Settings | None = None) -> ExperimentStep | None:
    """After a decision to promote that was not carried out (a person rejected it, or the champion moved and the
    promotion was refused as stale): the challenger stands down and the champion answers everything again.

    None when there is nothing to close: the step was not a promotion, or the version is champion now.
    """
    settings = settings or Settings.from_env()
    client = connect(settings).client
    champion = registry.alias_version(client, step.name, registry.CHAMPION)
    if step.action != "promote" or (champion is not None and str(champion.version) == step.challenger):
        return None
    version = client.get_model_version(step.name, step.challenger)
    if version.tags.get(STATUS_TAG) in ("stopped", "rolled_back"):  # closed already: a rerun changes nothing
        return None
    experiment = Experiment.from_dict(json.loads(version.tags[EXPERIMENT_TAG]))
    why = (
        f"the decision to promote on {step.day:%Y-%m-%d} was not carried out (a person rejected it, or the "
        "promotion was refused as stale): the champion stays"
    )
    closed = _step(experiment, _now(), "stop", 0.0, (why,))
    _stand_down(client, experiment, closed, by)
    client.set_model_version_tag(step.name, step.challenger, STATUS_TAG, "stopped")
    _describe(client, step.name, step.challenger, step_line(closed))
    return closed


def gather_evidence(settings: Settings, experiment: Experiment, day_end: datetime) -> Evidence:
    """The paired Brier differences from the experiment's start, and the challenger's guardrail readings of the day."""
    import numpy as np

    from ctpipe.lake import Lake
    from ctpipe.online_evaluation import join_labels, known_labels, paired_differences, read_predictions
    from ctpipe.serving.prediction_log import FAILED
    from ctpipe.training_set import EVENT_TIMESTAMP

    dataset = settings.dataset
    window = Interval(experiment.started, max(day_end, experiment.started + timedelta(microseconds=1)))
    predictions = read_predictions(settings.predictions_dir, window)
    if predictions.empty:
        return Evidence()
    labels = known_labels(dataset, Lake(settings.lake_dir), window, day_end)
    joined = join_labels(dataset, predictions, labels)
    differences = paired_differences(dataset, joined, experiment.champion, experiment.challenger)
    today = predictions[
        (predictions[EVENT_TIMESTAMP] >= day_end - timedelta(days=1))
        & (predictions.model_version == experiment.challenger)
    ]
    answered = today[today.returned & ~today[FAILED]]
    p99 = float(np.percentile(answered.latency_ms, 99)) if len(answered) else 0.0
    return Evidence().add(differences, requests=len(today), errors=int(today[FAILED].sum()), p99_latency_ms=p99)


def recorded_step(tags: dict[str, str], day_end: datetime) -> ExperimentStep | None:
    """The step recorded for the day ending at ``day_end``, from a version's tags."""
    for key, value in tags.items():
        if key.startswith(STEP_PREFIX):
            step = ExperimentStep.from_dict(json.loads(value))
            if step.day == day_end and step.action != "start":
                return step
    return None


def recorded_steps(settings: Settings, day_end: datetime | None = None) -> list[ExperimentStep]:
    """Every recorded step of every version's experiment (those of one day, with ``day_end``), oldest first."""
    client = connect(settings).client
    found = []
    for version in registry.versions(client, settings.dataset.model_name):
        found += [s for s in steps(version.tags) if day_end is None or s.day == day_end]
    return found


def steps(tags: dict[str, str]) -> list[ExperimentStep]:
    """Every recorded step of a version's experiment, in order."""
    found = sorted((k, v) for k, v in tags.items() if k.startswith(STEP_PREFIX))
    return [ExperimentStep.from_dict(json.loads(value)) for _, value in found]


# -- the record ---------------------------------------------------------------------------------


def _step(
    experiment: Experiment, day_end: datetime, action: str, share: float, reasons: tuple[str, ...]
) -> ExperimentStep:
    return ExperimentStep(
        name=experiment.name,
        champion=experiment.champion,
        challenger=experiment.challenger,
        day=day_end,
        action=action,  # type: ignore[arg-type]
        share=share,
        reasons=reasons,
        approval=experiment.approval,
    )


def _stand_down(client: MlflowClient, experiment: Experiment, step: ExperimentStep, by: str) -> None:
    """The champion answers everything again, and the challenger alias leaves the version, on the audit trail."""
    why = "; ".join(step.reasons)
    what = "rolled back" if step.action == "roll_back" else "stopped"
    set_policy(client, experiment.name, "champion_only", f"{PIPELINE}{by}", f"experiment {what}: {why}")
    with registry.alias_lock(client, experiment.name, by):
        if registry.alias_version(client, experiment.name, registry.CHALLENGER) is not None:
            registry.move_alias(client, experiment.name, registry.CHALLENGER, None, by, f"experiment {what}: {why}")
    if step.action == "roll_back":
        client.set_model_version_tag(
            experiment.name, experiment.challenger, "rolled_back", f"canary rolled back: {why}"
        )


def _record(client: MlflowClient, experiment: Experiment, step: ExperimentStep) -> None:
    """The step's tag, a line in the description for every step but a quiet day, then the experiment's new state."""
    name, version = experiment.name, experiment.challenger
    number = 0 if step.action == "start" else experiment.days
    client.set_model_version_tag(name, version, f"{STEP_PREFIX}{number:03d}", json.dumps(step.to_dict()))
    status = "running" if experiment.outcome is None else STATUS[experiment.outcome]
    if step.action == "promote" and step.approval == "human":
        status = "awaiting_approval"
    client.set_model_version_tag(name, version, STATUS_TAG, status)
    if step.action != "continue":
        _describe(client, name, version, step_line(step))
    client.set_model_version_tag(name, version, EXPERIMENT_TAG, json.dumps(experiment.to_dict()))


def step_line(step: ExperimentStep) -> str:
    """One line of the version's description for a step."""
    evidence = ""
    if step.pairs:
        interval = f" [{step.lower:+.4f}, {step.upper:+.4f}]" if step.lower is not None else ""
        evidence = f" ({step.pairs} labelled pairs, Brier difference {step.mean_difference:+.4f}{interval})"
    what = {
        "start": f"started at {step.share:.0%}",
        "ramp": f"ramped to {step.share:.0%}",
        "promote": "promote" + (", awaiting a person's approval" if step.approval == "human" else ""),
        "roll_back": "rolled back",
        "stop": "stopped",
        "continue": f"continued at {step.share:.0%}",
    }[step.action]
    return f"- {step.day:%Y-%m-%d}: {what}: {'; '.join(step.reasons)}{evidence}"


def _describe(client: MlflowClient, name: str, version: str, line: str) -> None:
    description = client.get_model_version(name, version).description or ""
    if HEADER not in description:
        description += f"\n\n---\n\n{HEADER} (champion against this challenger on served traffic):\n"
    client.update_model_version(name, version, description=f"{description}\n{line}")


def _finite(value: float) -> float | None:
    return value if value not in (float("inf"), float("-inf")) else None


def _now() -> datetime:
    return registry.now()
