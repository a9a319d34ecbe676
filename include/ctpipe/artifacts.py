"""Where every report and model artifact lives: each path has its one owner here.

Two kinds of place:

* files under the state folder that a task writes and a person may open on the worker
  (validation report, Data Docs, drift report);
* paths inside an MLflow run, which open in the MLflow UI wherever it runs
  (the model, its reference sample and lineage, the drift report, the evidence of a
  promotion decision). ``run_artifact_uri`` names them for MLflow's clients
  (``runs:/<run>/<path>``), ``ui_link`` for a person (a link into the UI);
  ``model_version_link`` opens a registered model's version there.

The lake's partitions are ``ctpipe.lake``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from ctpipe.records import Interval
    from ctpipe.settings import Settings

# -- in an MLflow run -----------------------------------------------------------------------------
MODEL = "model"
REFERENCE_SAMPLE = "reference/reference.parquet"  # the drift check's reference: the holdout days' events
LINEAGE_TRAINING_SET = "lineage/training_set.json"  # what rebuilds the training set
LINEAGE_ENTITY_ROWS = "lineage/entity_rows.parquet"
DRIFT_REPORT_DIR = "drift_report"  # in a monitoring run: the Evidently HTML report
EVIDENCE_DIR = "evidence"  # in a training run: what its promotion decision was made on
VALIDATION_EVIDENCE = f"{EVIDENCE_DIR}/validation_reports.json"  # every interval of the training window


def data_docs_evidence(table: str, interval: Interval) -> str:
    return f"{EVIDENCE_DIR}/data_docs/{table}_{interval.key}.html"


def drift_report_artifact(interval: Interval) -> str:
    return f"{DRIFT_REPORT_DIR}/{drift_report_name(interval)}"


# -- under the state folder -----------------------------------------------------------------------


def validation_report(settings: Settings, table: str, interval: Interval) -> Path:
    """The gate's JSON report for one table and interval."""
    return settings.reports_dir / "validation" / table / f"{interval.key}.json"


def validation_reports_dir(settings: Settings) -> Path:
    return settings.reports_dir / "validation"


def data_docs_index(settings: Settings) -> Path:
    """The front page of GX's Data Docs; every validation run adds a page."""
    return settings.gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def drift_report_name(interval: Interval) -> str:
    return f"{interval.key}.html"


def served_drift_report(settings: Settings, interval: Interval) -> Path:
    """The Evidently HTML report comparing the inputs the champion served in the window with its reference."""
    return drift_reports_dir(settings) / f"served_{drift_report_name(interval)}"


def drift_reports_dir(settings: Settings) -> Path:
    return settings.reports_dir / "drift"


def drift_report(settings: Settings, interval: Interval) -> Path:
    """The Evidently HTML report of the drift check for the window ending with ``interval``."""
    return drift_reports_dir(settings) / drift_report_name(interval)


# -- how to name an artifact of a run -------------------------------------------------------------


def run_artifact_uri(run_id: str, path: str) -> str:
    """The artifact as MLflow's clients address it: ``mlflow.artifacts.download_artifacts(uri)``."""
    return f"runs:/{run_id}/{path}"


def parse_run_artifact_uri(uri: str) -> tuple[str, str]:
    """``(run_id, path)`` of a ``runs:/`` URI."""
    if not uri.startswith("runs:/"):
        raise ValueError(f"not an MLflow run artifact URI (runs:/<run>/<path>): {uri!r}")
    run_id, _, path = uri.removeprefix("runs:/").partition("/")
    return run_id, path


def ui_link(ui_url: str, experiment_id: str, run_id: str, path: str | None = None) -> str:
    """A link that opens a run, or one of its artifacts, in the MLflow UI at ``ui_url``."""
    link = f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{link}/artifacts/{quote(path)}" if path else link


def model_version_link(ui_url: str, name: str, version: str) -> str:
    """A link that opens a registered model's version in the MLflow UI at ``ui_url``."""
    return f"{ui_url.rstrip('/')}/#/models/{quote(name, safe='')}/versions/{quote(str(version), safe='')}"
