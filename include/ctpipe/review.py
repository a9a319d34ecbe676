"""Model review: what happens to a trained model, from registration to champion.

The training DAG's steps after training, each a function here:

1. ``register_challenger``: a new registry version, aliased ``challenger``, tagged with its
   data interval, metrics and validation status; the prediction services' traffic policy
   for it (``ctpipe.serving.traffic``) is the deployment's default unless a person set one.
2. ``review_challenger``: score it and the champion of the moment on the same holdout
   (``ctpipe.evaluation``), decide by the policy (``ctpipe.promotion``), and record the
   decision, its reasons and its evidence where MLflow's model review shows them. The
   evidence (the validation reports of the training window, the Data Docs page of its
   newest interval, the drift report that asked for the model) is logged as artifacts of
   the model's run, so every link opens in the MLflow UI, on any machine.
3. ``promote_reviewed``: move ``champion`` if the review still holds (``ctpipe.registry``).

``rollback_champion`` restores the previous champion.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ctpipe import artifacts, registry
from ctpipe.evaluation import compare
from ctpipe.promotion import decide, decision_markdown
from ctpipe.records import Interval, Promotion, RegisteredVersion, Review, TrainingPlan, TrainingResult
from ctpipe.rollout import supersede
from ctpipe.serving.traffic import policy_for_new_challenger
from ctpipe.settings import Settings
from ctpipe.tracking import Tracking, connect


def validation_status(settings: Settings, cutoff_interval: Interval) -> str:
    """The gate's verdict on the events of the interval that ends at the training cutoff."""
    report = artifacts.validation_report(settings, settings.dataset.events.name, cutoff_interval)
    return json.loads(report.read_text())["status"] if report.exists() else "unknown"


class SameDataAsChampion(RuntimeError):
    """The model learned from exactly the champion's data: it is no challenger, and is not registered."""


def register_challenger(
    result: TrainingResult, plan: TrainingPlan, by: str, settings: Settings | None = None
) -> RegisteredVersion:
    """Register a training result as a new version, aliased ``challenger`` and tagged for review.

    Not when it was trained on the champion's own data window: a tie at best, and no new
    evidence. Then its run is tagged with why (``registration``) and ``SameDataAsChampion``
    is raised.
    """
    settings = settings or Settings.from_env()
    tracking = connect(settings)
    window = result.training_set.window  # the data the model learned from
    champion = registry.alias_version(tracking.client, settings.dataset.model_name, registry.CHAMPION)
    if champion is not None:
        theirs = tracking.training_set(champion.run_id)
        if (theirs.window, theirs.feature_service) == (window, result.training_set.feature_service):
            why = (
                f"not registered: trained on the same data window as champion version {champion.version} "
                f"({window.start:%Y-%m-%d} .. {window.end:%Y-%m-%d}, {theirs.feature_service})"
            )
            tracking.client.set_tag(result.run_id, "registration", why)
            raise SameDataAsChampion(why)
    tags = {
        "family": result.family,
        "run_id": result.run_id,
        "data_interval_start": window.start.isoformat(),
        "data_interval_end": window.end.isoformat(),
        "training_cutoff": result.training_set.cutoff.isoformat(),
        "feature_service": result.training_set.feature_service,
        "validation_status": validation_status(settings, Interval.ending(plan.cutoff)),
        "trigger": plan.trigger,
        **{f"metric.{k}": f"{v:.6g}" for k, v in result.metrics.items()},
    }
    registered = registry.register_version(
        tracking.client,
        settings.dataset.model_name,
        result.model_uri,
        result.run_id,
        tags,
        run_link=tracking.artifact_link(result.run_id),
    )
    supersede(tracking.client, registered.name, registered.version)  # a live experiment of the one it replaces ends
    registry.mark_challenger(tracking.client, registered.name, registered.version, by, f"trained ({plan.trigger})")
    # The services follow the policy: the deployment's default for a new challenger, unless a person chose one.
    policy_for_new_challenger(
        tracking.client, registered.name, settings.serving.challenger_policy, by, registered.version
    )
    return registered


def review_challenger(registered: RegisteredVersion, plan: TrainingPlan, settings: Settings | None = None) -> Review:
    """Score challenger and champion on the same recent holdout, decide, and record the decision."""
    settings = settings or Settings.from_env()
    tracking = connect(settings)
    champion = registry.alias_version(tracking.client, registered.name, registry.CHAMPION)
    champion_version = str(champion.version) if champion is not None else None
    comparison = compare(
        tracking,
        settings,
        registered.model_uri,
        f"models:/{registered.name}/{champion_version}" if champion_version else None,
        plan.cutoff,
        plan.holdout_days,
    )
    decision = decide(comparison.challenger, comparison.champion, settings.promotion, plan.backfill)
    review = Review(
        name=registered.name,
        version=registered.version,
        promote=decision.promote,
        reasons=decision.reasons,
        champion_version=champion_version,
        challenger=comparison.challenger,
        champion=comparison.champion,
        holdout_rows=comparison.holdout_rows,
        evidence=log_evidence(tracking, registered.run_id, plan, settings),
    )
    tags = {
        "promotion_decision": review.verdict,
        "promotion_reasons": " | ".join(review.reasons),
        "compared_with_version": champion_version or "none",
        "validation_status": "passed" if review.promote else "rejected",
        **{f"holdout.{k}": f"{v:.6g}" for k, v in review.challenger.items()},
        **({f"champion_holdout.{k}": f"{v:.6g}" for k, v in review.champion.items()} if review.champion else {}),
        **{f"evidence.{k}": v for k, v in review.evidence.items()},
    }
    registry.annotate(tracking.client, review.name, review.version, tags, decision_markdown(review, review.evidence))
    return review


def promote_reviewed(review: Review, by: str, settings: Settings | None = None) -> Promotion:
    """Move ``champion`` to the reviewed version, unless the champion changed since the review."""
    tracking = connect(settings or Settings.from_env())
    reason = "promoted on review: " + "; ".join(review.reasons)
    return registry.promote(tracking.client, review.name, review.version, review.champion_version, by, reason)


def rollback_champion(by: str, reason: str, settings: Settings | None = None) -> Promotion:
    settings = settings or Settings.from_env()
    return registry.rollback(connect(settings).client, settings.dataset.model_name, by, reason)


# -- evidence -----------------------------------------------------------------------------------


def log_evidence(tracking: Tracking, run_id: str, plan: TrainingPlan, settings: Settings) -> dict[str, str]:
    """Log what a decision rests on as artifacts of the model's run; returns label -> link into the MLflow UI.

    * ``validation_reports``: the gate's report for every interval of the training window, both tables;
    * ``data_docs_<table>``: the Data Docs page of the newest interval's validation, per table;
    * ``drift_report``: the drift check that asked for this model, already in its monitoring run.
    """
    dataset = settings.dataset
    window = plan.training_set(dataset.name, dataset.feature_service).window
    newest = Interval.ending(plan.cutoff)
    links: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        reports = {table.name: _reports(settings, table.name, window) for table in dataset.tables}
        if any(reports.values()):
            path = Path(tmp) / Path(artifacts.VALIDATION_EVIDENCE).name
            path.write_text(json.dumps({"window": window.to_dict(), "reports": reports}, indent=2, sort_keys=True))
            tracking.client.log_artifact(run_id, str(path), str(Path(artifacts.VALIDATION_EVIDENCE).parent))
            links["validation_reports"] = tracking.artifact_link(run_id, artifacts.VALIDATION_EVIDENCE)
        for table, by_interval in reports.items():
            page = _local_file(by_interval.get(newest.key, {}).get("data_docs_uri"))
            if page is None:
                continue
            target = artifacts.data_docs_evidence(table, newest)
            copy = Path(tmp) / Path(target).name
            copy.write_bytes(page.read_bytes())
            tracking.client.log_artifact(run_id, str(copy), str(Path(target).parent))
            links[f"data_docs_{table}"] = tracking.artifact_link(run_id, target)
    if plan.drift_report:
        drift_run, path = artifacts.parse_run_artifact_uri(plan.drift_report)
        links["drift_report"] = tracking.artifact_link(drift_run, path)
    return links


def _reports(settings: Settings, table: str, window: Interval) -> dict[str, dict]:
    folder = artifacts.validation_reports_dir(settings) / table
    found = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if Interval.from_key(path.stem).overlaps(window):
            found[path.stem] = json.loads(path.read_text())
    return found


def _local_file(uri: str | None) -> Path | None:
    """The file behind a ``file://`` Data Docs URL, if it is on this machine."""
    if not uri or not uri.startswith("file://"):
        return None
    path = Path(unquote(urlsplit(uri).path))
    return path if path.is_file() else None
