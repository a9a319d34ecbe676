"""``make bench --quick``: every benchmark runs at its smallest size and the table prints (no thresholds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..services import redis_address

pytestmark = [pytest.mark.services]

ROOT = Path(__file__).resolve().parents[2]
# A row each benchmark always prints, whatever its figures.
MEASURES = (
    "validation gate, ",
    "extraction, ",
    "materialization, ",
    "online read, 1 entity (Redis)",
    "online read, 100 entities (Redis)",
    "feature server, ",
    "reads during materialization of ",
    "drift check, ",
    "prediction service, 1 event a request",
    "prediction service, 100 events a request",
    "daily cycle, ",
    "one interval of ",
    "peak memory, one interval of ",
)


def test_every_benchmark_runs_and_prints_one_table(shop_run, tmp_path):
    redis = redis_address()  # Redis is there (or, under CI=true, this fails saying so)
    state = tmp_path / "state"
    shutil.copytree(shop_run.state, state)  # the serving benchmark runs on a main job's state; it logs predictions
    env = {**os.environ, **shop_run.env, "CTPIPE_STATE_DIR": str(state), "CTPIPE_BENCH_REDIS": redis}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--markdown", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-5000:]
    table = out.read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| measure")]
    assert rows and all(row in done.stdout for row in rows)  # the table is printed
    for measure in MEASURES:
        assert any(row.startswith(f"| {measure}") for row in rows), f"no row for {measure!r} in:\n{table}"
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] not in ("FAILED", "not run"), row
        assert float(cells[4].replace(",", "")) > 0 and float(cells[5].replace(",", "")) > 0, row
