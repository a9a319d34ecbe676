"""The live champion/challenger decision, proven by simulation: daily looks, ramps, promotions and rollbacks.

Each simulated experiment draws, every day, 200 labelled requests: a true failure
probability per request (Beta(2, 5), about the example data's failure rate), its outcome,
and the two models' scores, each the truth blurred by noise on the logit scale (the better
model has less). ``decide`` runs once a day on the pairs so far, as the online-evaluation
DAG runs it, until the experiment ends.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from ctpipe.experiment import (
    Evidence,
    ExperimentPolicy,
    ExperimentState,
    brier_differences,
    decide,
    msprt,
)

PER_DAY = 200
EXPERIMENTS = 200
EQUAL, BETTER, WORSE = (0.8, 0.8), (1.0, 0.6), (0.6, 1.0)  # (champion, challenger) logit noise


def scores(rng: np.random.Generator, p: np.ndarray, noise: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.log(p / (1.0 - p)) + rng.normal(0.0, noise, len(p)))))


def day_of_pairs(rng: np.random.Generator, noise: tuple[float, float], n: int = PER_DAY) -> np.ndarray:
    p = rng.beta(2.0, 5.0, n)
    outcome = rng.random(n) < p
    return brier_differences(scores(rng, p, noise[0]), scores(rng, p, noise[1]), outcome)


def true_gain(noise: tuple[float, float]) -> float:
    """The challenger's expected Brier advantage (positive: better), from two million requests."""
    return float(day_of_pairs(np.random.default_rng(99), noise, 2_000_000).mean())


def run(policy: ExperimentPolicy, noise: tuple[float, float], seed: int) -> tuple[Counter, list[int], list[list]]:
    rng = np.random.default_rng(seed)
    outcomes: Counter = Counter()
    days, ramps = [], []
    for _ in range(EXPERIMENTS):
        state, evidence, shares = ExperimentState(), Evidence(), [policy.ramp[0]]
        while state.outcome is None:
            evidence = evidence.add(day_of_pairs(rng, noise), requests=50, errors=0, p99_latency_ms=20.0)
            step = decide(policy, state, evidence)
            state = step.state
            if step.action == "ramp":
                shares.append(step.share)
        outcomes[state.outcome] += 1
        days.append(state.days)
        ramps.append(shares)
    return outcomes, days, ramps


def test_the_confidence_sequence_excludes_zero_exactly_when_the_test_rejects():
    policy = ExperimentPolicy()
    rng = np.random.default_rng(3)
    for _ in range(500):
        n = int(rng.integers(2, 5000))
        d = rng.normal(rng.normal(0, 0.01), rng.uniform(0.02, 0.2), n)
        result = msprt(Evidence().add(d), policy)
        rejects = result.statistic >= 1.0 / policy.alpha
        assert rejects == (result.lower > 0 or result.upper < 0), (n, result)
        assert result.lower < Evidence().add(d).mean < result.upper


def test_daily_looks_at_an_equally_good_challenger_rarely_promote_it():
    policy = ExperimentPolicy()
    assert abs(true_gain(EQUAL)) < 5e-4
    outcomes, days, _ = run(policy, EQUAL, seed=1)
    assert outcomes["promote"] <= 0.05 * EXPERIMENTS, outcomes
    assert outcomes["promote"] + outcomes["roll_back"] <= 2 * policy.alpha * EXPERIMENTS
    assert outcomes["stop"] >= 0.9 * EXPERIMENTS and set(days) >= {policy.horizon_days}


def test_a_fixed_sample_test_read_every_day_would_promote_far_more_often():
    """What the sequential test buys: a one-sided z-test at 5%, looked at daily, promotes an equal challenger."""
    rng = np.random.default_rng(2)
    promoted = 0
    for _ in range(EXPERIMENTS):
        evidence = Evidence()
        for _ in range(ExperimentPolicy().horizon_days):
            evidence = evidence.add(day_of_pairs(rng, EQUAL))
            z = evidence.mean / math.sqrt(evidence.variance / evidence.pairs)
            if z > 1.645:
                promoted += 1
                break
    assert promoted >= 0.15 * EXPERIMENTS, promoted


def test_a_better_challenger_is_ramped_then_promoted_within_two_weeks():
    policy = ExperimentPolicy()
    gain = true_gain(BETTER)
    assert 0.015 < gain < 0.025  # better by about 0.02 Brier, 13% of the champion's
    outcomes, days, ramps = run(policy, BETTER, seed=3)
    assert all(shares == [0.05, 0.25, 0.5] for shares in ramps)  # every experiment walked the whole ramp
    promoted_in_time = sum(1 for d in days if d <= 14)
    assert outcomes["promote"] >= promoted_in_time >= 0.9 * EXPERIMENTS, (outcomes, sorted(days)[-20:])
    # The ramp is walked in order, a stage of stage_days each: no promotion before day 3 * 2.
    assert min(days) >= len(policy.ramp) * policy.stage_days


def test_a_worse_challenger_is_rolled_back():
    policy = ExperimentPolicy()
    assert -0.025 < true_gain(WORSE) < -0.015
    outcomes, days, _ = run(policy, WORSE, seed=4)
    assert outcomes["roll_back"] >= 0.95 * EXPERIMENTS, outcomes
    assert sorted(days)[int(0.95 * EXPERIMENTS) - 1] <= 14  # and within two weeks
    assert outcomes["promote"] == 0


def test_the_guardrails_roll_back_at_once_and_say_why():
    policy = ExperimentPolicy()
    evidence = Evidence().add(np.zeros(10), requests=1000, errors=30, p99_latency_ms=400.0)
    step = decide(policy, ExperimentState(), evidence)
    assert step.action == "roll_back" and step.state.outcome == "roll_back"
    assert any("error rate 3.00% above the bound 1.00%" in r for r in step.reasons)
    assert any("p99 latency 400 ms above 250 ms" in r for r in step.reasons)
    with pytest.raises(ValueError, match="already ended"):
        decide(policy, step.state, evidence)


def test_nothing_is_concluded_before_the_minimum_pairs():
    policy = ExperimentPolicy(min_pairs=500)
    evidence = Evidence().add(np.full(100, -0.5) + np.linspace(-0.01, 0.01, 100))  # plainly worse, but few
    assert decide(policy, ExperimentState(), evidence).action == "continue"


def test_a_policy_that_cannot_be_followed_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        ExperimentPolicy(alpha=0.0)
    with pytest.raises(ValueError, match="rising list"):
        ExperimentPolicy(ramp=(0.5, 0.25))
    with pytest.raises(ValueError, match="mixture_sd"):
        ExperimentPolicy(mixture_sd=0.0)
