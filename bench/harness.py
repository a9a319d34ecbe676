"""What every benchmark shares: timing by median, peak memory of a side's own process, and the rows of the table.

A benchmark measures the project's way of doing some work against a raw baseline doing
the same work, in the same run (the machines are shared and noisy: only the ratio means
something), and hands its findings on as ``Row``s through ``emit``. ``python -m bench``
runs every benchmark and prints their rows as one table.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROWS_FILE = "CTPIPE_BENCH_ROWS"  # where ``python -m bench`` collects the rows of the benchmarks it runs
RESULT_PREFIX = "BENCH-RESULT "  # a side run in a child process answers with one such line


@dataclass(frozen=True)
class Row:
    """One line of the table: the project's figure against the raw baseline's, for the same work."""

    measure: str  # what was done, with its size: "drift check, 100,000 rows x 16 columns"
    project: str  # how the project does it
    raw: str  # the baseline doing the same work
    unit: str  # of both figures: "s" (median seconds), "ms p99", ...
    project_value: float
    raw_value: float
    n: int  # repeats (or requests) behind each figure
    project_peak_mb: float | None = None  # peak resident memory of the side's own process
    raw_peak_mb: float | None = None
    goal: float | None = None  # the largest ratio the issue accepts
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.project_value / self.raw_value if self.raw_value else float("inf")

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        return "met" if self.ratio <= self.goal else "missed"


def emit(rows: list[Row]) -> None:
    """Print the rows, and hand them to ``python -m bench`` when it runs this benchmark."""
    for row in rows:
        print(json.dumps({**asdict(row), "ratio": round(row.ratio, 3)}))
    target = os.environ.get(ROWS_FILE)
    if target:
        with Path(target).open("a") as out:
            for row in rows:
                out.write(json.dumps(asdict(row)) + "\n")


def median_seconds(work: Callable[[], object], repeats: int, warmups: int = 1) -> float:
    """The median wall time of ``repeats`` calls of ``work``, after ``warmups`` untimed ones."""
    for _ in range(warmups):
        work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0.99: p99) of ``values``, by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def peak_rss_mb() -> float:
    """This process's own peak resident memory (``VmHWM``; a child's ``ru_maxrss`` starts at its parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def answer(result: dict) -> None:
    """A child side's result, for ``in_child`` to read back."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def in_child(module: str, *args: str, timeout: float = 3600, env: dict[str, str] | None = None) -> dict:
    """Run ``python -m module args`` in a fresh process (``env``: its environment) and return what it ``answer``-ed."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise SystemExit(f"{module} {' '.join(args)} gave no result (exit {done.returncode}):\n{done.stderr[-3000:]}")
