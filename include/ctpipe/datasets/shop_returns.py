"""Online shop orders and their returns: the second example dataset.

Sellers on a marketplace take orders; days later each order is either returned or
kept, which is known once the return is booked or the order settles. Its shape is
unlike the lab example's: heavy-tailed amounts, small integer counts, skewed
categories, a few sellers with most of the orders, short feature windows and
labels that take days, not hours.

Nothing in the package refers to this module: a deployment picks it by its import
path, as it would a dataset of its own,
``CTPIPE_DATASET=ctpipe.datasets.shop_returns:SHOP_RETURNS``.
"""

from __future__ import annotations

from datetime import timedelta

from ctpipe.datasets.spec import Aggregate, Column, DatasetSpec, Identifier, Reference, TableSpec

CATEGORIES = ("apparel", "electronics", "home", "beauty", "books", "toys", "grocery")
PAYMENTS = ("card", "wallet", "invoice", "cash_on_delivery")
OUTCOMES = ("returned", "kept")
ORDER_ID = Identifier(max_length=24, pattern=r"^O\d{8}-\d{5}$")
SELLER_ID = Identifier(max_length=16, pattern=r"^seller-\d{2,4}$")

ORDERS = TableSpec(
    name="orders",
    timestamp="ordered_at",
    key="order_id",
    columns=(
        Column("order_id", "string", "Order identifier, unique per order", identifier=ORDER_ID),
        Column("seller_id", "string", "The seller that took the order", identifier=SELLER_ID),
        Column("ordered_at", "timestamp", "When the order was placed (UTC)"),
        Column("category", "string", "Product category", allowed_values=CATEGORIES),
        Column("amount", "float", "Order value, EUR", min_value=0.01, max_value=50_000.0),
        Column("items", "int", "Items in the order", min_value=1, max_value=50),
        Column("discount_pct", "float", "Discount granted, percent", min_value=0.0, max_value=90.0),
        Column("shipping_days", "int", "Days from order to delivery", min_value=0, max_value=30),
        Column("payment", "string", "How the order was paid", allowed_values=PAYMENTS),
    ),
)

ORDER_OUTCOMES = TableSpec(
    name="order_outcomes",
    timestamp="settled_at",
    key="order_id",
    columns=(
        Column("order_id", "string", "The order the outcome belongs to", identifier=ORDER_ID),
        Column("seller_id", "string", "The seller that took the order", identifier=SELLER_ID),
        Column("settled_at", "timestamp", "When the return was booked or the order settled (UTC)"),
        Column("outcome", "string", "Returned or kept", allowed_values=OUTCOMES),
    ),
    # An outcome belongs to an order of the same seller; it is booked days after the order.
    parent=Reference("orders", key="order_id", same=("seller_id",), grace=timedelta(days=2)),
)

DAY = timedelta(days=1)

SHOP_RETURNS = DatasetSpec(
    name="shop_returns",
    description=__doc__.strip().splitlines()[0],
    entity="seller_id",
    events=ORDERS,
    labels=ORDER_OUTCOMES,
    label="outcome",
    positive_label="returned",
    features=("category", "amount", "items", "discount_pct", "shipping_days", "payment"),
    aggregates=(
        Aggregate("orders_3d", "events", "count", 3 * DAY, description="Orders of the last 3 days"),
        Aggregate("orders_7d", "events", "count", 7 * DAY, description="Orders of the last 7 days"),
        Aggregate(
            "mean_amount_7d", "events", "mean", 7 * DAY, column="amount", description="Mean order value, last 7 days"
        ),
        Aggregate("outcomes_7d", "labels", "count", 7 * DAY, description="Outcomes settled in the last 7 days"),
        Aggregate(
            "return_rate_7d",
            "labels",
            "rate",
            7 * DAY,
            column="outcome",
            value="returned",
            description="Share of returns among the outcomes settled in the last 7 days",
        ),
    ),
    feature_view="seller_features",
    feature_service="seller_returns_v1",
    model_name="shop_returns_return",
    generator="ctpipe.datasets.shop_returns_generator:generate",
)
