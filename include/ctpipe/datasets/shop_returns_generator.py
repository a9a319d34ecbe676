"""Deterministic synthetic data for the ``shop_returns`` dataset: a small generator of its own.

Sellers have a fixed share of the orders (a few take most of them), a category mix,
a shipping speed and a return propensity. Amounts are log-normal with a Pareto tail,
items and shipping days small integers. An order is returned with a logistic
probability of its category, amount, items, discount, shipping days and payment, and
its outcome settles after delivery plus a few days' inspection: about 5 days after the
order, up to 30. ``covariate`` drift raises prices by half, moves the mix towards
electronics and slows shipping by two days; ``concept`` drift makes slow shipping and
discounts lead to returns more often. Broken rows: nulls, out-of-range values, unknown
categories, orders delivered twice, outcomes that are neither returned nor kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from ctpipe.datasets.shop_returns import CATEGORIES, OUTCOMES, PAYMENTS
from ctpipe.datasets.synthetic import GeneratorConfig, day_by_day, redelivered, spoil_labels

CATEGORY_SHARES = np.array([0.38, 0.18, 0.14, 0.12, 0.09, 0.06, 0.03])
MEDIAN_AMOUNT = np.array([45.0, 180.0, 70.0, 25.0, 18.0, 35.0, 40.0])
RETURN_EFFECT = np.array([2.0, 0.8, 0.0, -0.6, -1.6, 0.0, -3.0])
PAYMENT_SHARES = (0.55, 0.25, 0.12, 0.08)
DISCOUNTS = np.array([0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0])
DISCOUNT_SHARES = (0.62, 0.12, 0.10, 0.06, 0.05, 0.03, 0.02)
# Shops are busier at the weekend; the week averages to 1.
WEEKDAY_FACTOR = (0.9, 0.9, 0.9, 0.95, 1.05, 1.15, 1.15)
ELECTRONICS = CATEGORIES.index("electronics")


@dataclass(frozen=True)
class Sellers:
    ids: np.ndarray
    weights: np.ndarray  # share of orders
    category_cdf: np.ndarray  # sellers x categories, cumulative
    speed: np.ndarray  # mean shipping days
    propensity: np.ndarray  # log-odds added to every order's return risk


def make_sellers(n: int, seed: int) -> Sellers:
    rng = np.random.default_rng([seed, 0])
    weights = 1.0 / np.arange(1, n + 1) ** 1.1
    return Sellers(
        ids=np.array([f"seller-{i:02d}" for i in range(1, n + 1)]),
        weights=weights / weights.sum(),
        category_cdf=rng.dirichlet(40 * CATEGORY_SHARES, size=n).cumsum(axis=1),
        speed=rng.uniform(1.0, 5.0, size=n),
        propensity=rng.normal(0.0, 0.4, size=n),
    )


def return_logit(frame: pd.DataFrame, propensity: np.ndarray, concept_shift: bool) -> np.ndarray:
    """The true risk of a return, as log-odds; exposed so tests can check it."""
    category = pd.Categorical(frame["category"], categories=CATEGORIES).codes
    shipping_weight, discount_weight = (0.8, 0.08) if concept_shift else (0.35, 0.03)
    return (
        -4.1
        + RETURN_EFFECT[category]
        + 0.6 * np.log(frame["amount"].to_numpy() / 50.0)
        + 0.4 * np.minimum(frame["items"].to_numpy() - 1, 5)
        + discount_weight * frame["discount_pct"].to_numpy()
        + shipping_weight * frame["shipping_days"].to_numpy()
        + 0.8 * (frame["payment"].to_numpy() == "cash_on_delivery")
        + propensity
    )


def generate_day(config: GeneratorConfig, day: date, sellers: Sellers) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One day of orders and every outcome of those orders."""
    rng = np.random.default_rng([config.seed, day.toordinal()])
    n = int(rng.poisson(config.rows_per_day * WEEKDAY_FACTOR[day.weekday()]))
    covariate_shift = config.drifting(day, "covariate")
    concept_shift = config.drifting(day, "concept")

    seller = rng.choice(len(sellers.ids), size=n, p=sellers.weights)
    category_cdf = sellers.category_cdf[seller]
    if covariate_shift:  # the mix moves towards electronics
        towards = np.zeros(len(CATEGORIES))
        towards[ELECTRONICS:] = 1.0
        category_cdf = 0.6 * category_cdf + 0.4 * towards
    category = (rng.uniform(size=(n, 1)) > category_cdf[:, :-1]).sum(axis=1)
    seconds = np.sort(np.clip(rng.normal(19.0, 4.0, size=n), 0.0, 23.99) * 3600 + rng.uniform(0, 36, size=n))
    midnight = pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))

    amount = MEDIAN_AMOUNT[category] * np.exp(rng.normal(0.0, 0.6, size=n)) * (1.0 + rng.pareto(2.5, size=n))
    if covariate_shift:
        amount *= 1.5
    grocery = category == CATEGORIES.index("grocery")
    items = 1 + rng.poisson(np.where(grocery, 4.0, 0.6))
    shipping = rng.poisson(sellers.speed[seller] + (2.0 if covariate_shift else 0.0))
    orders = pd.DataFrame(
        {
            "order_id": [f"O{day:%Y%m%d}-{i:05d}" for i in range(n)],
            "seller_id": sellers.ids[seller],
            "ordered_at": midnight + pd.to_timedelta(np.round(seconds, 3), unit="s"),
            "category": np.array(CATEGORIES)[category],
            "amount": amount.clip(1.0, 50_000.0).round(2),
            "items": np.minimum(items, 50),
            "discount_pct": rng.choice(DISCOUNTS, size=n, p=DISCOUNT_SHARES),
            "shipping_days": np.minimum(shipping, 30),
            "payment": rng.choice(PAYMENTS, size=n, p=PAYMENT_SHARES),
        }
    )

    logit = return_logit(orders, sellers.propensity[seller], concept_shift)
    returned = rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-logit))
    settle_days = (orders["shipping_days"].to_numpy() + np.exp(rng.normal(np.log(2.5), 0.5, size=n))).clip(0.5, 30.0)
    outcomes = pd.DataFrame(
        {
            "order_id": orders["order_id"],
            "seller_id": orders["seller_id"],
            "settled_at": orders["ordered_at"] + pd.to_timedelta(np.round(settle_days * 86400, 3), unit="s"),
            "outcome": np.where(returned, OUTCOMES[0], OUTCOMES[1]),
        }
    )
    return _break_orders(orders, rng, config.bad_row_share), spoil_labels(
        outcomes, rng, config.bad_row_share / 3, "outcome", ("exchanged",)
    )


BREAKS = (
    ("null", "seller_id", None),
    ("null", "category", None),
    ("null", "amount", None),
    ("null", "items", None),
    ("out_of_range", "amount", -3.0),
    ("out_of_range", "items", 0),
    ("out_of_range", "discount_pct", 120.0),
    ("out_of_range", "shipping_days", 99),
    ("unknown_category", "category", "gift_cards"),
    ("unknown_category", "payment", "crypto"),
    ("duplicate", None, None),
)


def _break_orders(orders: pd.DataFrame, rng: np.random.Generator, share: float) -> pd.DataFrame:
    n_bad = int(rng.binomial(len(orders), share)) if len(orders) else 0
    if not n_bad:
        return orders
    orders = orders.astype({"seller_id": object, "category": object, "payment": object, "items": "Int64"})
    rows = rng.choice(len(orders), size=n_bad, replace=False)
    duplicates = []
    for row, which in zip(rows, rng.integers(len(BREAKS), size=n_bad), strict=True):
        kind, column, value = BREAKS[which]
        if kind == "duplicate":
            duplicates.append(row)
        else:
            orders.loc[row, column] = value
    return redelivered(orders, duplicates, "ordered_at")  # the same records delivered twice


def generate(config: GeneratorConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Orders placed in ``[start, end)`` and the outcomes settled by ``end``."""
    sellers = make_sellers(config.entities, config.seed)
    return day_by_day(config, lambda day: generate_day(config, day, sellers), "settled_at")
