"""Every benchmark, one table: ``python -m bench [--quick] [--only drift_speed,online_reads] [--markdown FILE]``.

Runs each benchmark of ``BENCHMARKS`` in a process of its own (``python -m bench.<name>``),
collects the ``Row``s it emits, and prints them as one table: what was measured, the
project's figure, the raw baseline's doing the same work in the same run, their ratio,
the goal and whether it was met, how many repeats, and each side's peak memory where it
ran in a process of its own. ``--quick`` runs every benchmark at a small size, once: a
smoke test (the tests run it), whose figures mean little. A benchmark that fails is a
row saying so, and the exit status is 1.

The serving benchmark runs on the state ``make run`` leaves (``CTPIPE_STATE_DIR``); without
a champion there it is reported as not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import ROWS_FILE

# (module, what it measures); each is ``python -m bench.<module>`` with ``--quick`` understood.
BENCHMARKS = (
    ("gate", "the validation gate against the same checks in pandas"),
    ("extraction", "extraction of an interval against a plain read of the same rows into Parquet"),
    ("materialization", "Feast materialization against a raw write of the same values"),
    ("online_reads", "online reads: the project's reader, the SDK, the feature server, against raw HMGET"),
    ("feature_server", "the feature server across worker recycles and during materialization"),
    ("drift_speed", "the drift check's Evidently report against scipy"),
    ("serving", "the prediction service against a raw read and predict"),
    ("daily_cycle", "a day's DAG runs through dag.test() against the same task calls without Airflow"),
    ("interval_scale", "one large interval from the source to the online store: time against rows, peak memory"),
)
COLUMNS = ("measure", "project", "raw", "unit", "project", "raw", "ratio", "goal", "n", "peak MB", "note")


def machine() -> str:
    cores = os.cpu_count()
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kb = int(meminfo.read_text().split()[1])
        memory = f", {total_kb / 1024 / 1024:.0f} GB"
    return f"{platform.machine()}, {cores} cores{memory}, Python {platform.python_version()}, {platform.system()}"


def cells(row: dict) -> list[str]:
    ratio = row["project_value"] / row["raw_value"] if row["raw_value"] else float("inf")
    goal = ""
    if row.get("goal") is not None:
        goal = f"<= {row['goal']:g}x: {'met' if ratio <= row['goal'] else 'missed'}"
    peaks = [row.get("project_peak_mb"), row.get("raw_peak_mb")]
    peak = " / ".join("-" if p is None else f"{p:,.0f}" for p in peaks) if any(p is not None for p in peaks) else ""
    return [
        row["measure"],
        row["project"],
        row["raw"],
        row["unit"],
        f"{row['project_value']:,.3g}",
        f"{row['raw_value']:,.3g}",
        f"{ratio:.2f}",
        goal,
        str(row["n"]),
        peak,
        row.get("note", ""),
    ]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark small and once: a smoke test")
    parser.add_argument("--only", type=lambda t: t.split(","), help="comma-separated benchmark modules")
    parser.add_argument("--markdown", type=Path, help="also write the table, as Markdown, to this file")
    args = parser.parse_args()
    chosen = [(name, what) for name, what in BENCHMARKS if not args.only or name in args.only]
    unknown = set(args.only or ()) - {name for name, _ in BENCHMARKS}
    if unknown:
        raise SystemExit(f"no benchmark named {sorted(unknown)}; there are {[name for name, _ in BENCHMARKS]}")

    table: list[list[str]] = []
    failed = False
    started = time.monotonic()
    for name, what in chosen:
        print(f"== bench.{name}: {what}", file=sys.stderr, flush=True)
        with tempfile.NamedTemporaryFile(suffix=".jsonl") as out:
            env = {**os.environ, ROWS_FILE: out.name}
            done = subprocess.run(
                [sys.executable, "-m", f"bench.{name}", *(["--quick"] if args.quick else [])],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            rows = [json.loads(line) for line in Path(out.name).read_text().splitlines() if line.strip()]
        if done.returncode != 0 or not rows:
            reason = (done.stderr.strip().splitlines() or ["no rows"])[-1][:200]
            not_run = "no champion" in reason
            failed = failed or not not_run
            table.append([f"bench.{name}", "not run" if not_run else "FAILED", "", "", "", "", "", "", "", "", reason])
            continue
        table += [cells(row) for row in rows]

    text = markdown(table)
    header = (
        f"{'quick smoke run' if args.quick else 'bench'} on {machine()}; "
        f"{time.monotonic() - started:.0f} s; ratios are project / raw, lower is better"
    )
    print(header)
    print(text)
    if args.markdown:
        args.markdown.write_text(f"{header}\n\n{text}\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
