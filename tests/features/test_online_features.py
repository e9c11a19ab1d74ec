"""get_online_features: services and names, full names, on-demand features computed by the
same function as training sets, bad entity rows, cached plans."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from features.conftest import NOW, customer, stats_view
from loopml.features import (
    FeatureNotFound,
    FeatureService,
    Field,
    InvalidEntityFrame,
    OnDemandFeatureView,
    RequestSource,
)
from loopml.workspace import Workspace


def with_discount(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"discounted": frame["avg_purchase"] * (1 - frame["discount"])})


def test_service_and_names_give_the_same_values(feature_ws: Workspace) -> None:
    fs = feature_ws.features
    fs.materialize(NOW - timedelta(days=1), NOW)
    view = stats_view()
    service = FeatureService("churn", [view[["n_orders", "avg_purchase"]]])
    fs.use(view, service)
    by_service = fs.get_online_features(service, [{"customer_id": 3}, {"customer_id": 4}])
    assert by_service.to_dict() == {
        "customer_id": [3, 4],
        "n_orders": [7, 8],
        "avg_purchase": [304.0, 404.0],
    }
    by_name = fs.get_online_features("churn", [{"customer_id": 3}, {"customer_id": 4}])
    assert by_name.to_dict() == by_service.to_dict()
    full = fs.get_online_features(
        ["customer_stats:n_orders"], [{"customer_id": "3"}], full_feature_names=True
    )
    assert full.to_dict() == {"customer_id": ["3"], "customer_stats__n_orders": [7]}
    frame = by_service.to_df()
    assert list(frame.columns) == ["customer_id", "n_orders", "avg_purchase"]
    assert frame["avg_purchase"].tolist() == [304.0, 404.0]


def test_on_demand_features_match_the_training_set(feature_ws: Workspace) -> None:
    fs = feature_ws.features
    stats = stats_view()
    discounted = OnDemandFeatureView(
        "discounted",
        sources=[stats[["avg_purchase"]], RequestSource("req", [Field("discount")])],
        schema=[Field("discounted")],
        function=with_discount,
    )
    fs.use(stats, discounted)
    fs.materialize(NOW - timedelta(days=1), NOW)
    rows = [{"customer_id": 1, "discount": 0.5}, {"customer_id": 77, "discount": 0.1}]
    got = fs.get_online_features(["discounted:discounted", "customer_stats:n_orders"], rows)
    assert got.to_dict() == {
        "customer_id": [1, 77],
        "discounted": [52.0, None],
        "n_orders": [5, None],
    }
    entity = pd.DataFrame(
        {"customer_id": [1], "discount": [0.5], "event_timestamp": [pd.Timestamp.now(tz="UTC")]}
    )
    offline = fs.get_historical_features(entity, ["discounted:discounted"])
    assert offline["discounted"].tolist() == got.to_dict()["discounted"][:1]
    with pytest.raises(InvalidEntityFrame, match="'discount'"):
        fs.get_online_features(["discounted:discounted"], [{"customer_id": 1}])


def test_bad_requests_name_the_problem(feature_ws: Workspace) -> None:
    fs = feature_ws.features
    with pytest.raises(InvalidEntityFrame, match="Entity row 1 has no join key 'customer_id'"):
        fs.get_online_features(["customer_stats:n_orders"], [{"customer_id": 1}, {"id": 2}])
    with pytest.raises(FeatureNotFound, match="Did you mean 'n_orders'"):
        fs.get_online_features(["customer_stats:n_order"], [{"customer_id": 1}])
    with pytest.raises(FeatureNotFound, match="customer_stats"):
        fs.get_online_features(["customer_stat:n_orders"], [{"customer_id": 1}])


def test_plans_are_cached_until_the_definitions_change(feature_ws: Workspace) -> None:
    fs = feature_ws.features
    features = ["customer_stats:n_orders"]
    first = fs.online_plan(features)
    assert fs.online_plan(list(features)) is first
    fs.use(stats_view(), customer)
    assert fs.online_plan(features) is not first


def test_offline_only_views_cannot_be_looked_up(feature_ws: Workspace) -> None:
    from loopml.features import FeatureDefinitionError

    fs = feature_ws.features
    fs.use(stats_view(online=False))
    with pytest.raises(FeatureDefinitionError, match="online=False"):
        fs.get_online_features(["customer_stats:n_orders"], [{"customer_id": 1}])
    with pytest.raises(FeatureDefinitionError, match="online=False"):
        fs.materialize(NOW - timedelta(days=1), NOW, "customer_stats")
