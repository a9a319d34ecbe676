"""Champion against challenger on live traffic: a pre-declared sequential test, guardrails, and a ramp.

**The evidence is paired.** During an experiment the service scores every request with both
models, whichever answer it returns (the canary's share decides only that), so each request
whose label has become known gives one difference of losses,

    d = loss(champion) - loss(challenger)        (positive: the challenger did better)

with the loss the request's Brier score, ``(score - outcome)^2``: bounded, so one confident
mistake cannot swamp a day, and the score the offline promotion also reads.

**The test** is a mixture sequential probability ratio test (mSPRT: Robbins 1970; Johari,
Pekelis and Walsh, "Always valid inference", 2017) on the mean difference theta, mixing over
theta ~ N(0, tau^2) with the variance sigma^2 of d estimated from the pairs so far:

    L_n = sqrt(sigma^2 / (sigma^2 + n tau^2)) * exp(n^2 tau^2 mean^2 / (2 sigma^2 (sigma^2 + n tau^2)))

Under theta = 0, L_n is a martingale starting at 1, so the chance it ever reaches 1/alpha
is at most alpha, however often it is looked at: a daily look does not inflate false
promotions the way a fixed-sample test read every day would. Inverting it gives an
always-valid confidence sequence for theta, ``mean +- half_width`` (``msprt``). The rule,
declared in ``ExperimentPolicy`` before any data is seen:

* **roll back** as soon as the challenger is worse: the interval lies wholly below
  ``-harm_margin`` (default 0: any significant harm), or a guardrail breaks: its error rate
  or its p99 latency above their bounds on the traffic it answered;
* **ramp** the challenger's share through ``ramp`` (5% -> 25% -> 50%) after each stage has
  lasted ``stage_days`` with no guardrail broken;
* **promote** once the last stage has lasted ``stage_days`` and the interval lies wholly
  above 0 (the challenger is better);
* **stop** (keep the champion) when ``horizon_days`` pass without either conclusion.

Nothing is decided before ``min_pairs`` pairs, so the variance estimate has settled.
``decide`` is a pure function of the policy, the experiment's state and its evidence; the
caller records each step (tag, description line, alias moves) and carries it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # numpy is imported where it is used: the settings module imports this one
    import numpy as np

Action = Literal["continue", "ramp", "promote", "roll_back", "stop"]


@dataclass(frozen=True)
class ExperimentPolicy:
    """The decision rule, fixed before an experiment starts (``CTPIPE_EXPERIMENT_*``)."""

    alpha: float = 0.05  # the chance that an equally good challenger is ever declared better or worse
    mixture_sd: float = 0.01  # tau: the size of a Brier difference worth finding
    min_pairs: int = 200  # labelled pairs before any conclusion
    harm_margin: float = 0.0  # roll back once the challenger is surely worse by more than this
    ramp: tuple[float, ...] = (0.05, 0.25, 0.5)  # the challenger's share, stage by stage
    stage_days: int = 2  # days at a stage, guardrails holding, before the next
    horizon_days: int = 28  # then the experiment stops without a promotion
    max_error_rate: float = 0.01  # guardrail: share of the challenger's requests that failed
    max_p99_latency_ms: float = 250.0  # guardrail: the challenger's p99 latency

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha {self.alpha} is not between 0 and 1")
        if self.mixture_sd <= 0.0:
            raise ValueError(f"mixture_sd {self.mixture_sd} is not above 0")
        if not self.ramp or any(not 0.0 < s <= 1.0 for s in self.ramp) or list(self.ramp) != sorted(self.ramp):
            raise ValueError(f"ramp {self.ramp} is not a rising list of shares between 0 and 1")


@dataclass(frozen=True)
class Evidence:
    """The paired loss differences so far, as running sums, and the last day's guardrail readings."""

    pairs: int = 0
    total: float = 0.0  # sum of d
    squares: float = 0.0  # sum of d^2
    requests: int = 0  # the challenger's answered requests, last day
    errors: int = 0  # of them, failed
    p99_latency_ms: float = 0.0  # of them

    def add(self, differences: np.ndarray, requests: int = 0, errors: int = 0, p99_latency_ms: float = 0.0) -> Evidence:
        """A day's pairs added; the guardrail readings are the day's."""
        import numpy as np

        d = np.asarray(differences, dtype="float64")
        return Evidence(
            self.pairs + len(d),
            self.total + float(d.sum()),
            self.squares + float((d * d).sum()),
            requests,
            errors,
            p99_latency_ms,
        )

    @property
    def mean(self) -> float:
        return self.total / self.pairs if self.pairs else 0.0

    @property
    def variance(self) -> float:
        if self.pairs < 2:
            return 0.0
        return max(0.0, (self.squares - self.pairs * self.mean**2) / (self.pairs - 1))


@dataclass(frozen=True)
class ConfidenceSequence:
    """The mSPRT against theta = 0, and the always-valid confidence sequence for theta."""

    statistic: float  # L_n
    lower: float
    upper: float


VARIANCE_FLOOR = 1e-12


def msprt(evidence: Evidence, policy: ExperimentPolicy) -> ConfidenceSequence:
    n, mean = evidence.pairs, evidence.mean
    sigma2 = max(evidence.variance, VARIANCE_FLOOR)
    tau2 = policy.mixture_sd**2
    if n == 0:
        return ConfidenceSequence(1.0, -math.inf, math.inf)
    spread = sigma2 + n * tau2
    log_statistic = 0.5 * math.log(sigma2 / spread) + (n * n * tau2 * mean * mean) / (2.0 * sigma2 * spread)
    # {theta : L_n(theta) < 1/alpha}: the always-valid confidence sequence around the mean.
    bound = 2.0 * math.log(1.0 / policy.alpha) + math.log(spread / sigma2)
    half = math.sqrt(sigma2 * spread / (n * n * tau2) * bound)
    return ConfidenceSequence(math.exp(min(log_statistic, 700.0)), mean - half, mean + half)


@dataclass(frozen=True)
class ExperimentState:
    """Where an experiment stands: its stage on the ramp and the days it has run."""

    stage: int = 0  # index into the policy's ramp
    days: int = 0  # days run
    stage_days: int = 0  # days at this stage
    outcome: Action | None = None  # set once it has ended: promote, roll_back or stop

    def share(self, policy: ExperimentPolicy) -> float:
        return policy.ramp[self.stage]


@dataclass(frozen=True)
class Step:
    """One day's decision: what to do, the state after it, and why (for the version's record)."""

    action: Action
    state: ExperimentState
    share: float
    reasons: tuple[str, ...]
    interval: ConfidenceSequence
    pairs: int
    mean_difference: float
    evidence: dict[str, float] = field(default_factory=dict)


def decide(policy: ExperimentPolicy, state: ExperimentState, evidence: Evidence) -> Step:
    """The day's step, after one more day of evidence; an ended experiment stays ended."""
    if state.outcome is not None:
        raise ValueError(f"the experiment has already ended ({state.outcome})")
    now = replace(state, days=state.days + 1, stage_days=state.stage_days + 1)
    interval = msprt(evidence, policy)
    reasons: list[str] = []
    if evidence.requests and evidence.errors / evidence.requests > policy.max_error_rate:
        reasons.append(
            f"error rate {evidence.errors / evidence.requests:.2%} above the bound {policy.max_error_rate:.2%}"
        )
    if evidence.requests and evidence.p99_latency_ms > policy.max_p99_latency_ms:
        reasons.append(f"p99 latency {evidence.p99_latency_ms:.0f} ms above {policy.max_p99_latency_ms:.0f} ms")
    settled = evidence.pairs >= policy.min_pairs
    if settled and interval.upper < -policy.harm_margin:
        reasons.append(
            f"live Brier worse than the champion's: difference {evidence.mean:+.4f}, always-valid "
            f"{1 - policy.alpha:.0%} interval [{interval.lower:+.4f}, {interval.upper:+.4f}] below "
            f"{-policy.harm_margin:+.4f} over {evidence.pairs} labelled requests"
        )
    if reasons:
        action: Action = "roll_back"
    elif settled and interval.lower > 0 and now.stage == len(policy.ramp) - 1 and now.stage_days >= policy.stage_days:
        action = "promote"
        reasons.append(
            f"live Brier better than the champion's: difference {evidence.mean:+.4f}, always-valid "
            f"{1 - policy.alpha:.0%} interval [{interval.lower:+.4f}, {interval.upper:+.4f}] above 0 "
            f"over {evidence.pairs} labelled requests"
        )
    elif now.days >= policy.horizon_days:
        action = "stop"
        reasons.append(
            f"no conclusion in {policy.horizon_days} days: interval [{interval.lower:+.4f}, {interval.upper:+.4f}] "
            f"over {evidence.pairs} labelled requests holds 0; the champion stays"
        )
    elif now.stage < len(policy.ramp) - 1 and now.stage_days >= policy.stage_days:
        action = "ramp"
        now = replace(now, stage=now.stage + 1, stage_days=0)
        reasons.append(
            f"guardrails held for {policy.stage_days} days at {policy.ramp[state.stage]:.0%}: "
            f"to {policy.ramp[now.stage]:.0%}"
        )
    else:
        action = "continue"
    if action in ("promote", "roll_back", "stop"):
        now = replace(now, outcome=action)
    return Step(
        action=action,
        state=now,
        share=policy.ramp[now.stage],
        reasons=tuple(reasons),
        interval=interval,
        pairs=evidence.pairs,
        mean_difference=evidence.mean,
        evidence={
            "pairs": float(evidence.pairs),
            "mean_difference": evidence.mean,
            "lower": interval.lower,
            "upper": interval.upper,
            "msprt": interval.statistic,
        },
    )


def brier_differences(champion: np.ndarray, challenger: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Per labelled request: champion's Brier loss minus the challenger's (positive: the challenger did better)."""
    import numpy as np

    y = np.asarray(outcome, dtype="float64")
    return (np.asarray(champion, dtype="float64") - y) ** 2 - (np.asarray(challenger, dtype="float64") - y) ** 2
