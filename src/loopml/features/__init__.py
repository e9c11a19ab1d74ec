"""The feature store: one definition for training and serving, point-in-time-correct
training sets, online lookups in milliseconds.

    from datetime import timedelta
    from loopml.features import Entity, FeatureView, Field, FileSource, FeatureService

    customer = Entity("customer", join_keys=["customer_id"])
    stats = FeatureView(
        "customer_stats", entities=[customer],
        source=FileSource("data/customer_stats.parquet", timestamp_field="event_ts",
                          created_timestamp_field="created_ts"),
        ttl=timedelta(days=30),
        schema=[Field("avg_purchase_30d", "float64"), Field("n_orders_7d", "int64")],
    )
    churn_v1 = FeatureService("churn_v1", [stats[["avg_purchase_30d", "n_orders_7d"]]])

Put definitions in the workspace's ``features.py``; ``loopml features apply`` versions them;
``ws.features`` (:class:`~loopml.features.store.FeatureStore`) builds training sets
(:meth:`~loopml.features.store.FeatureStore.get_historical_features`), materializes and
serves online values. Errors: :mod:`loopml.features.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.exports import lazy_exports

if TYPE_CHECKING:
    from loopml.features.definitions import (
        DataFrameSource,
        Definitions,
        Entity,
        FeatureRef,
        FeatureService,
        FeatureView,
        Field,
        FileSource,
        OnDemandFeatureView,
        PostgresSource,
        RequestSource,
        SqlSource,
    )
    from loopml.features.errors import (
        FeatureDefinitionError,
        FeatureNotFound,
        InvalidEntityFrame,
        MaterializationFailed,
        OnlineStoreUnavailable,
        SourceNotFound,
    )
    from loopml.features.online import OnlineResponse
    from loopml.features.store import FeatureStore

_NAMES = {
    **dict.fromkeys(
        [
            "DataFrameSource",
            "Definitions",
            "Entity",
            "FeatureRef",
            "FeatureService",
            "FeatureView",
            "Field",
            "FileSource",
            "OnDemandFeatureView",
            "PostgresSource",
            "RequestSource",
            "SqlSource",
        ],
        "loopml.features.definitions",
    ),
    **dict.fromkeys(
        [
            "FeatureDefinitionError",
            "FeatureNotFound",
            "InvalidEntityFrame",
            "MaterializationFailed",
            "OnlineStoreUnavailable",
            "SourceNotFound",
        ],
        "loopml.features.errors",
    ),
    "FeatureStore": "loopml.features.store",
    "OnlineResponse": "loopml.features.online",
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
__all__ = [
    "DataFrameSource",
    "Definitions",
    "Entity",
    "FeatureDefinitionError",
    "FeatureNotFound",
    "FeatureRef",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "Field",
    "FileSource",
    "InvalidEntityFrame",
    "MaterializationFailed",
    "OnDemandFeatureView",
    "OnlineResponse",
    "OnlineStoreUnavailable",
    "PostgresSource",
    "RequestSource",
    "SourceNotFound",
    "SqlSource",
]
