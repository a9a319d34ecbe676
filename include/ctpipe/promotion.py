"""The promotion policy and its decisions: pure functions, no I/O.

* ``decide``: whether a challenger replaces the champion. It must pass the absolute
  thresholds and beat the champion by the margin on the same holdout; the first model
  only needs the thresholds; a tie keeps the champion; a backfill never promotes.
* ``still_current``: whether a review may still be acted on when the promotion runs,
  possibly days later after a human approval. It may only if the champion it was
  compared with is still the champion.
* ``decision_markdown`` / ``stale_markdown``: the words a reviewer reads in MLflow.

The registry (``ctpipe.registry``) carries the decisions out; the evaluation
(``ctpipe.evaluation``) produces the scores they are made on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctpipe.records import Review

METRIC = "roc_auc"  # higher is better; the one the margin applies to


@dataclass(frozen=True)
class PromotionPolicy:
    min_roc_auc: float = 0.65
    # No worse than a coin flip (0.25); unlike log loss it stays meaningful when the base rate moves.
    max_brier: float = 0.25
    margin: float = 0.005  # the challenger must beat the champion's roc_auc by more than this


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]

    @property
    def verdict(self) -> str:
        return "promote" if self.promote else "keep_champion"


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    policy: PromotionPolicy,
    backfill: bool = False,
) -> Decision:
    """Whether the challenger replaces the champion, and why, in words a reviewer reads."""
    reasons = []
    passes = True
    if challenger["roc_auc"] >= policy.min_roc_auc:
        reasons.append(f"roc_auc {challenger['roc_auc']:.4f} >= threshold {policy.min_roc_auc:.4f}")
    else:
        passes = False
        reasons.append(f"roc_auc {challenger['roc_auc']:.4f} below threshold {policy.min_roc_auc:.4f}")
    if challenger["brier"] <= policy.max_brier:
        reasons.append(f"brier {challenger['brier']:.4f} <= limit {policy.max_brier:.4f}")
    else:
        passes = False
        reasons.append(f"brier {challenger['brier']:.4f} above limit {policy.max_brier:.4f}")

    if champion is None:
        beats = True
        reasons.append("no champion yet: the first model only has to pass the thresholds")
    else:
        gain = challenger[METRIC] - champion[METRIC]
        beats = gain > policy.margin
        relation = "beats" if beats else ("ties" if abs(gain) <= policy.margin else "trails")
        reasons.append(
            f"{relation} the champion on the same holdout: {METRIC} {challenger[METRIC]:.4f} vs "
            f"{champion[METRIC]:.4f} (gain {gain:+.4f}, margin {policy.margin:.4f})"
        )
    if backfill:
        reasons.append("backfill run: promotion is never decided in a backfill")
    return Decision(promote=passes and beats and not backfill, reasons=tuple(reasons))


def still_current(compared_with: str | None, champion_now: str | None) -> tuple[bool, str]:
    """(may the review be acted on?, why): only while the champion it was compared with still is."""
    if compared_with == champion_now:
        what = f"version {champion_now}" if champion_now else "no champion"
        return True, f"the champion is still {what}, as when the review compared them"
    then = f"version {compared_with}" if compared_with else "no champion yet"
    now = f"version {champion_now}" if champion_now else "no champion"
    return False, (
        f"stale review: it compared against {then}, but the champion is now {now}; "
        "the challenger needs a new review against the current champion"
    )


def decision_markdown(review: Review, links: dict[str, str]) -> str:
    """The model version's description: the verdict, its reasons, both models' metrics and the evidence."""
    rows = ["| metric | challenger | champion |", "|---|---|---|"]
    for metric in sorted(review.challenger):
        theirs = "-" if review.champion is None or metric not in review.champion else f"{review.champion[metric]:.4f}"
        rows.append(f"| {metric} | {review.challenger[metric]:.4f} | {theirs} |")
    compared = f"version {review.champion_version}" if review.champion_version else "none (first model)"
    reasons = "\n".join(f"- {r}" for r in review.reasons)
    evidence = "\n".join(f"- [{label}]({url})" for label, url in links.items()) or "- none recorded"
    return (
        f"**Decision: {review.verdict}**\n\nCompared with champion: {compared}, on {review.holdout_rows} "
        f"holdout rows.\n\n{reasons}\n\n" + "\n".join(rows) + f"\n\nEvidence:\n{evidence}\n"
    )


def stale_markdown(description: str, reason: str, at: str) -> str:
    """The description of a version whose approved promotion was refused as stale: the review, then why not."""
    return (
        f"**Not promoted ({at}): {reason}.** Clear `evaluate_models` in the training run (with its downstream "
        f"tasks) to review it against the current champion.\n\n---\n\n{description}"
    )
