"""How a deployment is configured: environment variables with embedded defaults.

Nothing here touches the disk or the network; call ``Settings.from_env()`` at
task time. Every value has a default that works on a laptop with no services,
rooted in one state folder (``<repo>/state`` unless ``CTPIPE_STATE_DIR`` says
otherwise). Production overrides them through the environment (secret-bearing values
filled from a secret store); messages quote settings only through ``hide_passwords``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Where feature_repo/ is when the package is installed apart from the checkout (an image).
FEATURE_REPO = Path(os.environ.get("CTPIPE_FEATURE_REPO") or PROJECT_ROOT / "feature_repo")


def hide_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` and ``password=`` replaced by ``***``.

    For messages that quote a setting; it works on malformed values too. A password may
    hold ``/`` or an unescaped ``@``: everything up to the token's last ``@`` is hidden.
    """
    text = re.sub(r"(://[^/@:\s'\"]*:)[^\s'\",{}]*@", r"\1***@", text)
    return re.sub(r"(password=)[^,}'\"\s]*", r"\1***", text, flags=re.IGNORECASE)


class ConfigurationError(ValueError):
    """A setting is missing or malformed: a deployment mistake that no retry fixes.

    Each stage raises a subclass naming the setting; the DAGs fail such a task at once
    instead of retrying it (``ctpipe.dag_policy.fail_fast_on_configuration_error``).
    """


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    lake_dir: Path
    source_conn_id: str = "ctpipe_source"
    # An interval fails validation when more than this share of its rows is bad.
    max_bad_row_share: float = 0.2
    # Rows fetched from the source per round trip; bounds extraction memory.
    extract_chunk_rows: int = 50_000

    @classmethod
    def from_env(cls) -> Settings:
        airflow_home = os.environ.get("AIRFLOW_HOME")
        default_state = (Path(airflow_home) if airflow_home else PROJECT_ROOT) / "state"
        state_dir = Path(os.environ.get("CTPIPE_STATE_DIR") or default_state).resolve()
        share = _env_float("CTPIPE_MAX_BAD_ROW_SHARE", cls.max_bad_row_share)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"CTPIPE_MAX_BAD_ROW_SHARE must be between 0 and 1, got {share}")
        chunk = int(_env_float("CTPIPE_EXTRACT_CHUNK_ROWS", cls.extract_chunk_rows))
        if chunk < 1:
            raise ValueError(f"CTPIPE_EXTRACT_CHUNK_ROWS must be positive, got {chunk}")
        return cls(
            state_dir=state_dir,
            lake_dir=Path(os.environ.get("CTPIPE_LAKE_DIR") or state_dir / "lake").resolve(),
            source_conn_id=os.environ.get("CTPIPE_SOURCE_CONN_ID", cls.source_conn_id),
            max_bad_row_share=share,
            extract_chunk_rows=chunk,
        )

    @property
    def mlflow_tracking_uri(self) -> str:
        """An MLflow server in production (``MLFLOW_TRACKING_URI``); a SQLite file by default."""
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.state_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifacts_uri(self) -> str:
        """Where a new experiment keeps artifacts when the tracking store is local."""
        return (self.state_dir / "mlflow" / "artifacts").as_uri()

    @property
    def gx_dir(self) -> Path:
        return self.state_dir / "gx"

    @property
    def reports_dir(self) -> Path:
        return self.state_dir / "reports"

    @property
    def feast_dir(self) -> Path:
        return self.state_dir / "feast"

    def feast_environment(self) -> dict[str, str]:
        """The variables ``feature_repo/feature_store.yaml`` reads, embedded defaults.

        Each store variable holds a YAML mapping; production sets them to a SQL
        registry and a Redis online store. The project name scopes the registry's
        rows and suffixes every Redis key, so deployments (or test runs) sharing a
        server stay apart.
        """
        return {
            "CTPIPE_FEAST_PROJECT": "ctpipe",
            "CTPIPE_FEAST_REGISTRY": f"{{registry_type: file, path: '{self.feast_dir / 'registry.db'}'}}",
            "CTPIPE_FEAST_ONLINE_STORE": f"{{type: sqlite, path: '{self.feast_dir / 'online_store.db'}'}}",
            "CTPIPE_FEAST_OFFLINE_STORE": "{type: file}",
            "CTPIPE_FEATURES_DIR": str(self.lake_dir / "features"),
        }
