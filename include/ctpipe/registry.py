"""The MLflow model registry: versions, aliases, and champion/challenger promotion.

Every trained model becomes a new version of the dataset's registered model
with the alias ``challenger`` and tags for its data interval, metrics and
validation status. ``decide`` is the whole promotion policy, a pure function:
the challenger must pass the absolute thresholds and beat the champion by the
margin on the same holdout; the first model only needs the thresholds; a tie
keeps the champion; a backfill never promotes. Promotion moves ``champion``
and keeps the old one as ``previous_champion`` for a one-step rollback. The
decision and its reasons go into the version's tags and description, where
MLflow's model review shows them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous_champion"
METRIC = "roc_auc"  # higher is better; the one the margin applies to


@dataclass(frozen=True)
class PromotionPolicy:
    min_roc_auc: float = 0.65
    # No worse than a coin flip (0.25); unlike log loss it stays meaningful when the base rate moves.
    max_brier: float = 0.25
    margin: float = 0.005  # the challenger must beat the champion's roc_auc by more than this

    @classmethod
    def from_env(cls) -> PromotionPolicy:
        def read(name: str, default: float) -> float:
            raw = os.environ.get(name)
            try:
                return float(raw) if raw else default
            except ValueError:
                raise ValueError(f"{name} must be a number, got {raw!r}") from None

        return cls(
            min_roc_auc=read("CTPIPE_PROMOTION_MIN_ROC_AUC", cls.min_roc_auc),
            max_brier=read("CTPIPE_PROMOTION_MAX_BRIER", cls.max_brier),
            margin=read("CTPIPE_PROMOTION_MARGIN", cls.margin),
        )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "promote" if self.promote else "keep_champion"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


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
    return Decision(promote=passes and beats and not backfill, reasons=reasons)


def client() -> Any:
    from mlflow import MlflowClient

    from ctpipe.tracking import configure

    configure()
    return MlflowClient()


def alias_version(mlflow_client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register_challenger(result: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """Register a training result as a new version, aliased ``challenger`` and tagged for review."""
    import mlflow

    from ctpipe.datasets import get_dataset

    name = get_dataset().model_name
    mlflow_client = client()
    from ctpipe.training_set import TrainingSetSpec

    window = TrainingSetSpec(**result["training_set"]).window.to_dict()  # the data the model learned from
    version = mlflow.register_model(result["model_uri"], name)
    tags = {
        "family": result["family"],
        "run_id": result["run_id"],
        "data_interval_start": window["start"],
        "data_interval_end": window["end"],
        "training_cutoff": result["training_set"]["cutoff"],
        "feature_service": result["training_set"]["feature_service"],
        "validation_status": validation_status(plan),
        "trigger": plan.get("trigger", "manual"),
        **{f"metric.{k}": f"{v:.6g}" for k, v in result["metrics"].items()},
    }
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, version.version, key, value)
    mlflow_client.set_registered_model_alias(name, CHALLENGER, version.version)
    return {"name": name, "version": version.version, "model_uri": f"models:/{name}/{version.version}"}


def decision_markdown(
    decision: Decision, challenger: dict[str, float], champion: dict[str, float] | None, links: dict[str, str]
) -> str:
    rows = ["| metric | challenger | champion |", "|---|---|---|"]
    for metric in sorted(challenger):
        theirs = "-" if champion is None or metric not in champion else f"{champion[metric]:.4f}"
        rows.append(f"| {metric} | {challenger[metric]:.4f} | {theirs} |")
    reasons = "\n".join(f"- {r}" for r in decision.reasons)
    evidence = "\n".join(f"- {label}: {url}" for label, url in links.items())
    return f"**Decision: {decision.verdict}**\n\n{reasons}\n\n" + "\n".join(rows) + f"\n\nEvidence:\n{evidence}\n"


def record_decision(
    version: str,
    decision: Decision,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None,
    links: dict[str, str],
) -> None:
    """Write the decision where MLflow's model review shows it: version tags and description."""
    from ctpipe.datasets import get_dataset

    name = get_dataset().model_name
    mlflow_client = client()
    tags = {
        "promotion_decision": decision.verdict,
        "promotion_reasons": " | ".join(decision.reasons),
        "compared_with_version": champion_version or "none",
        "validation_status": "passed" if decision.promote else "rejected",
        **{f"holdout.{k}": f"{v:.6g}" for k, v in challenger.items()},
        **({f"champion_holdout.{k}": f"{v:.6g}" for k, v in champion.items()} if champion else {}),
        **{f"evidence.{k}": v for k, v in links.items()},
    }
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, version, key, value)
    mlflow_client.update_model_version(
        name, version, description=decision_markdown(decision, challenger, champion, links)
    )


def promote(version: str) -> dict[str, str | None]:
    """Move ``champion`` to ``version``, keeping the current one as ``previous_champion``."""
    from ctpipe.datasets import get_dataset

    name = get_dataset().model_name
    mlflow_client = client()
    current = alias_version(mlflow_client, name, CHAMPION)
    if current is not None and str(current.version) != str(version):
        mlflow_client.set_registered_model_alias(name, PREVIOUS, str(current.version))
    mlflow_client.set_registered_model_alias(name, CHAMPION, str(version))
    return {"champion": str(version), "previous_champion": str(current.version) if current else None}


def rollback() -> dict[str, str]:
    """Restore ``previous_champion`` as ``champion``; the demoted version is tagged with why."""
    from ctpipe.datasets import get_dataset

    name = get_dataset().model_name
    mlflow_client = client()
    previous = alias_version(mlflow_client, name, PREVIOUS)
    if previous is None:
        raise ValueError(f"{name} has no {PREVIOUS} alias: nothing to roll back to")
    current = alias_version(mlflow_client, name, CHAMPION)
    mlflow_client.set_registered_model_alias(name, CHAMPION, previous.version)
    mlflow_client.delete_registered_model_alias(name, PREVIOUS)
    if current is not None:
        mlflow_client.set_model_version_tag(name, current.version, "rolled_back", f"replaced by {previous.version}")
    return {"champion": previous.version, "demoted": current.version if current else None}


def interval_ending(cutoff: str) -> Any:
    from datetime import datetime, timedelta

    from ctpipe.lake import Interval

    end = datetime.fromisoformat(cutoff)
    return Interval(end - timedelta(days=1), end)


def evidence(plan: dict[str, Any]) -> dict[str, str]:
    """Where a reviewer finds the data behind a decision: validation report, Data Docs, drift report."""
    from ctpipe.datasets import get_dataset
    from ctpipe.settings import Settings

    settings = Settings.from_env()
    interval = interval_ending(plan["cutoff"])
    reports = settings.reports_dir / "validation" / get_dataset().events.name
    links = {
        "validation_report": str(reports / f"{interval.key}.json"),
        "data_docs": str(settings.gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"),
    }
    if plan.get("drift_report"):
        links["drift_report"] = plan["drift_report"]
    return links


def validation_status(plan: dict[str, Any]) -> str:
    """The validation outcome of the interval that ends at the training cutoff."""
    import json
    from pathlib import Path

    report = Path(evidence(plan)["validation_report"])
    return json.loads(report.read_text())["status"] if report.exists() else "unknown"


def review(registered: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """Score challenger and champion on the same recent holdout, decide, and record the decision."""
    from datetime import datetime

    from ctpipe.evaluation import compare

    mlflow_client = client()
    champion = alias_version(mlflow_client, registered["name"], CHAMPION)
    champion_uri = f"models:/{registered['name']}/{champion.version}" if champion else None
    comparison = compare(
        registered["model_uri"], champion_uri, datetime.fromisoformat(plan["cutoff"]), plan["holdout_days"]
    )
    decision = decide(comparison["challenger"], comparison["champion"], PromotionPolicy.from_env(), plan["backfill"])
    record_decision(
        str(registered["version"]),
        decision,
        comparison["challenger"],
        comparison["champion"],
        str(champion.version) if champion else None,
        evidence(plan),
    )
    return {
        **decision.to_dict(),
        "version": str(registered["version"]),
        "champion_version": str(champion.version) if champion else None,
        "challenger": comparison["challenger"],
        "champion": comparison["champion"],
        "holdout_rows": comparison["holdout_rows"],
    }
