"""Seed the source database with the dataset's synthetic data.

    python -m ctpipe.seed --start 2026-01-01 --days 60 --rows-per-day 400 \\
        --drift-start 2026-02-15 --url sqlite:///state/source.db

The dataset is the deployment's (``CTPIPE_DATASET``), its data drawn by the generator
its spec names. Replaces the dataset's tables, so seeding twice with the same
arguments gives the same database. ``--url`` is any SQLAlchemy URL (SQLite or PostgreSQL).
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import sqlalchemy as sa

from ctpipe.datasets import DatasetSpec, get_generator
from ctpipe.datasets.synthetic import DRIFT_KINDS, GeneratorConfig
from ctpipe.settings import Settings
from ctpipe.source import write_source


def seed(url: str, config: GeneratorConfig, dataset: DatasetSpec | None = None) -> dict[str, int]:
    """Draw ``dataset``'s data (default: the deployment's) and write it as the source at ``url``."""
    dataset = dataset or Settings.from_env().dataset
    events, labels = get_generator(dataset)(config)
    engine = sa.create_engine(url)
    try:
        write_source(engine, dataset, {dataset.events.name: events, dataset.labels.name: labels})
    finally:
        engine.dispose()
    return {dataset.events.name: len(events), dataset.labels.name: len(labels)}


def default_url() -> str:
    return f"sqlite:///{Settings.from_env().state_dir / 'source.db'}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=None, help="SQLAlchemy URL of the source (default: the state folder's SQLite file)"
    )
    parser.add_argument("--start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--rows-per-day", type=int, default=GeneratorConfig.rows_per_day)
    parser.add_argument(
        "--entities", type=int, default=GeneratorConfig.entities, help="how many of the entity (labs, sellers)"
    )
    parser.add_argument("--seed", type=int, default=GeneratorConfig.seed)
    parser.add_argument("--bad-row-share", type=float, default=GeneratorConfig.bad_row_share)
    parser.add_argument("--drift-start", type=date.fromisoformat, default=None, help="first drifting day, YYYY-MM-DD")
    parser.add_argument("--drift-kind", choices=DRIFT_KINDS, default="both")
    args = parser.parse_args(argv)
    config = GeneratorConfig(
        start=args.start,
        days=args.days,
        rows_per_day=args.rows_per_day,
        entities=args.entities,
        seed=args.seed,
        bad_row_share=args.bad_row_share,
        drift_start=args.drift_start,
        drift_kind=args.drift_kind,
    )
    url = args.url or default_url()
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    counts = seed(url, config)
    print(
        f"seeded {sa.make_url(url).render_as_string(hide_password=True)}: "
        + ", ".join(f"{n} rows in {t}" for t, n in counts.items())
        + f" ({config.start} .. {config.end}, {time.perf_counter() - started:.1f}s)"
    )


if __name__ == "__main__":
    main()
