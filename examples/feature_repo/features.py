"""The example's feature definitions: `loopml features apply` versions them."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from loopml.features import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    RequestSource,
)

customer = Entity("customer", join_keys=["customer_id"], description="A shop's customer.")

# Daily statistics, computed by a nightly job: a row is visible from its created time on, so a
# training row never sees a value that wasn't known yet.
customer_stats = FeatureView(
    "customer_stats",
    entities=[customer],
    source=FileSource(
        "data/customer_stats.parquet",
        timestamp_field="event_ts",
        created_timestamp_field="created_ts",
    ),
    ttl=timedelta(days=2),
    schema=[Field("avg_purchase_30d", "float64"), Field("n_orders_7d", "int64")],
)

# Features derived from raw orders by SQL (DuckDB) over the source, named `source`: the same
# query runs for training sets and for materialization.
last_order = FeatureView(
    "last_order",
    entities=[customer],
    source=FileSource("data/orders.parquet", timestamp_field="order_ts"),
    ttl=timedelta(days=30),
    transform_sql=(
        "SELECT customer_id, order_ts, amount AS last_amount, amount >= 100 AS last_was_big "
        "FROM source"
    ),
    schema=[Field("last_amount", "float64"), Field("last_was_big", "bool")],
)

# Computed at request time from a stored feature and a field of the request, by this one
# function in training sets and online lookups alike.
checkout = RequestSource("checkout", [Field("discount", "float64")])


def discounted_spend(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"expected_spend": frame["avg_purchase_30d"] * (1 - frame["discount"])})


spend = OnDemandFeatureView(
    "spend",
    sources=[customer_stats[["avg_purchase_30d"]], checkout],
    schema=[Field("expected_spend", "float64")],
    function=discounted_spend,
)

# What the churn model uses: a model version records this service's version.
churn_v1 = FeatureService(
    "churn_v1",
    [
        customer_stats[["avg_purchase_30d", "n_orders_7d"]],
        last_order[["last_amount"]],
        spend,
    ],
)
