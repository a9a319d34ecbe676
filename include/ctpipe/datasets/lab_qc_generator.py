"""Deterministic synthetic data for the ``lab_qc`` dataset.

Each day is drawn from its own random stream, seeded by ``(seed, day)``, so a
day's rows do not depend on the range they were generated in. Labs have a fixed
size, skill and courier habit; a sample's QC outcome follows a logistic risk of
its purity, integrity, concentration, transit and storage, and arrives 2 hours
to 14 days after submission. A configurable share of rows is broken on purpose
(nulls, out-of-range values, unknown categories, duplicate deliveries), and
drift can start on a chosen day: ``covariate`` (longer transit, warmer
storage), ``concept`` (transit and storage matter more for the outcome), or
``both``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from ctpipe.datasets.lab_qc import COURIERS, SAMPLE_TYPES
from ctpipe.datasets.synthetic import GeneratorConfig, day_by_day, redelivered, spoil_labels

SAMPLE_TYPE_SHARES = (0.40, 0.30, 0.15, 0.15)
# Volume of a weekday relative to a weekend day; the week averages to 1.
WEEKDAY_FACTOR = (1.15, 1.15, 1.15, 1.15, 1.15, 0.625, 0.625)
COURIER_TRANSIT_FACTOR = np.array([0.8, 1.0, 2.0, 0.15])
BAD_ROW_KINDS = ("null", "out_of_range", "unknown_category", "duplicate")


@dataclass(frozen=True)
class Labs:
    ids: np.ndarray
    weights: np.ndarray  # share of submissions
    skill: np.ndarray  # higher is better handling, lower failure risk
    courier_probs: np.ndarray  # labs x couriers


def make_labs(n: int, seed: int) -> Labs:
    rng = np.random.default_rng([seed, 0])
    weights = 1.0 / np.arange(1, n + 1) ** 0.8
    courier_probs = rng.dirichlet(np.full(len(COURIERS), 0.7), size=n)
    return Labs(
        ids=np.array([f"LAB-{i:03d}" for i in range(1, n + 1)]),
        weights=weights / weights.sum(),
        skill=rng.normal(0.0, 0.6, size=n),
        courier_probs=courier_probs,
    )


def failure_logit(frame: pd.DataFrame, skill: np.ndarray, concept_shift: bool) -> np.ndarray:
    """The true risk of failing QC, as log-odds; exposed so tests can check it."""
    kind = frame["sample_type"].to_numpy()
    nucleic = np.isin(kind, ("DNA", "RNA"))
    purity_target = np.where(kind == "RNA", 2.05, 1.82)
    purity = np.where(nucleic, 7.0 * np.abs(frame["a260_280"].to_numpy() - purity_target), 0.0)
    salts = np.where(nucleic, 1.5 * np.clip(1.9 - frame["a260_230"].to_numpy(), 0, None), 0.0)
    rin = np.where(kind == "RNA", 0.7 * np.clip(7.0 - frame["rin"].fillna(7.0).to_numpy(), 0, None), 0.0)
    low_conc_limit = np.select([kind == "DNA", kind == "RNA"], [10.0, 20.0], 200.0)
    low_concentration = 1.2 * (frame["concentration_ng_ul"].to_numpy() < low_conc_limit)
    transit_weight, warm_weight = (0.035, 0.06) if concept_shift else (0.02, 0.04)
    transit = transit_weight * frame["transit_hours"].to_numpy()
    warm = warm_weight * np.clip(frame["storage_temp_c"].to_numpy() + 20.0, 0, None)
    return -3.0 + purity + salts + rin + low_concentration + transit + warm - skill


def generate_day(config: GeneratorConfig, day: date, labs: Labs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One day of samples (submitted that day) and every outcome of those samples."""
    rng = np.random.default_rng([config.seed, day.toordinal()])
    n = int(rng.poisson(config.rows_per_day * WEEKDAY_FACTOR[day.weekday()]))
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    covariate_shift = config.drifting(day, "covariate")
    concept_shift = config.drifting(day, "concept")

    lab_index = rng.choice(len(labs.ids), size=n, p=labs.weights)
    kind = rng.choice(SAMPLE_TYPES, size=n, p=SAMPLE_TYPE_SHARES)
    seconds = np.sort(np.clip(rng.normal(13.5, 3.0, size=n), 0.0, 23.99) * 3600 + rng.uniform(0, 36, size=n))
    submitted_at = pd.to_datetime(midnight) + pd.to_timedelta(np.round(seconds, 3), unit="s")

    skill = labs.skill[lab_index]
    contamination = np.abs(rng.normal(0.0, 0.06, size=n)) * (1.0 + np.clip(-skill, 0, None))
    is_rna, is_dna = kind == "RNA", kind == "DNA"
    nucleic = is_rna | is_dna

    concentration = np.exp(
        rng.normal(
            np.select([is_dna, is_rna, kind == "protein"], [np.log(50), np.log(80), np.log(1000)], np.log(60000)),
            np.where(kind == "plasma", 0.25, 0.8),  # plasma protein content varies little
        )
    )
    volume = np.where(nucleic, rng.normal(50, 15, size=n).clip(5, 200), rng.normal(500, 150, size=n).clip(50, 2000))
    a260_280 = np.select(
        [is_dna, is_rna, kind == "protein"],
        [rng.normal(1.82, 0.05, size=n), rng.normal(2.05, 0.05, size=n), rng.normal(0.60, 0.04, size=n)],
        rng.normal(0.95, 0.08, size=n),
    ) - np.where(nucleic, contamination, 0.0)
    a260_230 = np.where(nucleic, rng.normal(2.1, 0.15, size=n) - 3 * contamination, rng.normal(0.9, 0.2, size=n)).clip(
        0.05, None
    )

    courier_index = np.array([rng.choice(len(COURIERS), p=labs.courier_probs[i]) for i in lab_index], dtype=int)
    transit = np.exp(rng.normal(np.log(20.0), 0.5, size=n)) * COURIER_TRANSIT_FACTOR[courier_index]
    if covariate_shift:
        transit *= 1.8
    transit = transit.clip(0.5, 400)

    # Where samples wait before shipping: RNA and plasma mostly deep-frozen, DNA often at -20 or 4 deg C.
    settings = np.array([-80.0, -20.0, 4.0])
    temp_probs = {
        "DNA": (0.10, 0.60, 0.30),
        "RNA": (0.85, 0.15, 0.00),
        "protein": (0.50, 0.50, 0.00),
        "plasma": (0.85, 0.15, 0.00),
    }
    storage = np.empty(n)
    for sample_type, probs in temp_probs.items():
        rows = kind == sample_type
        probs = np.array(probs)
        if covariate_shift:  # warmer: a share of each setting slips to the next warmer one
            warmer = np.array([0.0, probs[0], probs[1] + probs[2]])
            probs = 0.55 * probs + 0.45 * warmer
        storage[rows] = settings[rng.choice(3, size=rows.sum(), p=probs)]
    storage = storage + rng.normal(0.0, 1.5, size=n) + (3.0 if covariate_shift else 0.0)

    rin = np.where(
        is_rna,
        (9.3 - rng.gamma(1.5, 0.6, size=n) - 0.01 * transit - 0.03 * np.clip(storage + 20, 0, None)).clip(1.0, 10.0),
        np.nan,
    )

    samples = pd.DataFrame(
        {
            "sample_id": [f"S{day:%Y%m%d}-{i:05d}" for i in range(n)],
            "lab_id": labs.ids[lab_index],
            "submitted_at": submitted_at,
            "sample_type": kind,
            "concentration_ng_ul": concentration.round(2),
            "volume_ul": volume.round(1),
            "a260_280": a260_280.round(3),
            "a260_230": a260_230.round(3),
            "rin": rin.round(1),
            "storage_temp_c": storage.round(1),
            "transit_hours": transit.round(2),
            "courier": np.array(COURIERS)[courier_index],
        }
    )

    logit = failure_logit(samples, skill, concept_shift)
    failed = rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-logit))
    delay_hours = np.exp(rng.normal(np.log(30.0), 0.7, size=n)).clip(2.0, 14 * 24.0)
    results = pd.DataFrame(
        {
            "sample_id": samples["sample_id"],
            "lab_id": samples["lab_id"],
            "reported_at": samples["submitted_at"] + pd.to_timedelta(np.round(delay_hours * 3600, 3), unit="s"),
            "qc_outcome": np.where(failed, "failed", "passed"),
        }
    )
    return _break_samples(samples, rng, config.bad_row_share), spoil_labels(
        results, rng, config.bad_row_share / 3, "qc_outcome", ("pending",)
    )


def _break_samples(samples: pd.DataFrame, rng: np.random.Generator, share: float) -> pd.DataFrame:
    n_bad = int(rng.binomial(len(samples), share)) if len(samples) else 0
    if not n_bad:
        return samples
    samples = samples.astype({"lab_id": object, "sample_type": object, "courier": object})
    rows = rng.choice(len(samples), size=n_bad, replace=False)
    kinds = rng.choice(BAD_ROW_KINDS, size=n_bad)
    duplicates = []
    for row, kind in zip(rows, kinds, strict=True):
        if kind == "null":
            column = rng.choice(["lab_id", "sample_type", "concentration_ng_ul", "transit_hours", "rin"])
            if column == "rin":  # RIN may be null for other types; for RNA it is required
                samples.loc[row, "sample_type"] = "RNA"
            samples.loc[row, column] = None
        elif kind == "out_of_range":
            column, value = [("a260_280", 9.9), ("volume_ul", -5.0), ("transit_hours", 2000.0), ("rin", 14.0)][
                rng.integers(4)
            ]
            if column == "rin":
                samples.loc[row, "sample_type"] = "RNA"
            samples.loc[row, column] = value
        elif kind == "unknown_category":
            column, value = [("sample_type", "tissue"), ("courier", "Drone Drop")][rng.integers(2)]
            samples.loc[row, column] = value
        else:
            duplicates.append(row)
    return redelivered(samples, duplicates, "submitted_at")  # the same records delivered twice


def generate(config: GeneratorConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Samples submitted in ``[start, end)`` and the outcomes known by ``end``."""
    labs = make_labs(config.entities, config.seed)
    return day_by_day(config, lambda day: generate_day(config, day, labs), "reported_at")
