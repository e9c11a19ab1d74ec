"""Skew checks, and a feature service as a model version's contract (lineage and the gate)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from loopml.exceptions import PromotionBlocked
from loopml.features import (
    DataFrameSource,
    Entity,
    FeatureDefinitionError,
    FeatureService,
    FeatureView,
    Field,
    InvalidEntityFrame,
    SourceNotFound,
)
from loopml.features.skew import same, skew_check
from loopml.registry import GatePolicy
from loopml.workspace import Workspace

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def _stats() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 2],
            "event_ts": [T0, T0 + timedelta(days=2), T0 + timedelta(days=1)],
            "spend": [10.0, 20.0, 5.0],
            "orders": [1, 2, 3],
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> Workspace:
    customer = Entity("customer", ["customer_id"])
    view = FeatureView(
        "stats",
        [customer],
        DataFrameSource(_stats(), "event_ts"),
        [Field("spend", "float64"), Field("orders", "int64")],
        ttl=timedelta(days=10),
    )
    ws = Workspace.init(tmp_path)
    ws.features.use(customer, view, FeatureService("churn", [view]))
    ws.features.apply()
    return ws


def _log(**changes: list[object]) -> pd.DataFrame:
    rows = {
        "customer_id": [1, 1, 2, 3],
        "event_timestamp": [
            T0 + timedelta(hours=1),
            T0 + timedelta(days=3),
            T0 + timedelta(days=1, hours=1),
            T0 + timedelta(days=1),
        ],
        "spend": [10.0, 20.0, 5.0, None],
        "orders": [1, 2, 3, None],
    }
    rows.update(changes)
    return pd.DataFrame(rows)


def test_a_log_matching_the_offline_values_has_no_skew(store: Workspace) -> None:
    report = skew_check(store.features, "churn", _log())
    assert report.rows == 4
    assert [(f.feature, f.mismatches) for f in report.features] == [("spend", 0), ("orders", 0)]
    assert report.worst is not None and report.worst.rate == 0.0


def test_skew_is_counted_per_feature_with_examples(store: Workspace, tmp_path: Path) -> None:
    log = _log(spend=[10.0, 19.0, 5.0, 1.0])  # a stale value, and a value for an unknown entity
    path = tmp_path / "served.parquet"
    log.to_parquet(path)
    report = skew_check(store.features, "churn", path)
    spend = report.features[0]
    assert (spend.mismatches, spend.rate) == (2, 0.5)
    assert spend.examples[0]["served"] == 19.0 and spend.examples[0]["offline"] == 20.0
    assert spend.examples[1]["customer_id"] == 3 and spend.examples[1]["offline"] is None
    # ISO 8601 with the offset, like every time in the CLI's JSON
    assert spend.examples[0]["event_timestamp"] == (T0 + timedelta(days=3)).isoformat()
    assert spend.examples[0]["event_timestamp"].endswith("T00:00:00+00:00")
    assert report.features[1].mismatches == 0
    csv = tmp_path / "served.csv"
    log.to_csv(csv, index=False)
    from_csv = skew_check(store.features, "churn", csv).features[0]
    assert from_csv.mismatches == 2
    assert from_csv.examples[0]["event_timestamp"] == "2026-01-04T00:00:00+00:00"


def test_a_log_without_a_feature_column_or_file_is_a_clear_error(
    store: Workspace, tmp_path: Path
) -> None:
    with pytest.raises(InvalidEntityFrame, match="no column for 'orders'"):
        skew_check(store.features, "churn", _log().drop(columns=["orders"]))
    with pytest.raises(SourceNotFound, match="No serving log"):
        skew_check(store.features, "churn", tmp_path / "missing.parquet")


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1.0, 1.0 + 1e-12, True),
        (1.0, 1.01, False),
        (None, float("nan"), True),
        (None, 0.0, False),
        ("x", "x", True),
        (3, 3.0, True),
    ],
)
def test_served_and_offline_values_compare_sensibly(a: object, b: object, equal: bool) -> None:
    assert same(a, b) is equal


class _Model:
    def predict(self, frame: pd.DataFrame) -> list[int]:
        return [int(v > 7) for v in frame["spend"]]


def test_a_model_version_records_its_feature_service(store: Workspace, tmp_path: Path) -> None:
    version = store.models.register("churn_model", _Model(), features="churn")
    assert version.feature_service == "churn:1"
    assert store.models.get(version.uri).feature_service == "churn:1"
    lineage = store.models.lineage(version.uri)
    assert lineage["features"] == {
        "service": "churn",
        "version": 1,
        "features": ["spend", "orders"],
    }

    holdout = tmp_path / "holdout.csv"
    pd.DataFrame({"spend": [10.0, 5.0], "label": [1, 0]}).to_csv(holdout, index=False)
    policy = GatePolicy(metric="accuracy", holdout=str(holdout), label="label")
    with pytest.raises(PromotionBlocked) as blocked:
        store.models.promote("churn_model", version.version, policy=policy)
    check = next(c for c in blocked.value.verdict.checks if c.name == "features")
    assert not check.passed and check.details["missing"] == ["orders"]
    pd.DataFrame({"spend": [10.0, 5.0], "orders": [1, 2], "label": [1, 0]}).to_csv(
        holdout, index=False
    )
    verdict = store.models.promote("churn_model", version.version, policy=policy)
    assert verdict is not None and any(c.name == "features" and c.passed for c in verdict.checks)


def test_a_service_changed_since_apply_cannot_be_a_contract(store: Workspace) -> None:
    view = store.features.definitions.view("stats")
    store.features.use(
        *[d for d in store.features.definitions if d.name != "churn"],
        FeatureService("churn", [view[["spend"]]]),
    )
    with pytest.raises(FeatureDefinitionError, match="not applied as it is defined now"):
        store.models.register("churn_model", _Model(), features="churn")
    changes = {c.name: c for c in store.features.apply()}
    assert changes["churn"].status == "changed" and changes["churn"].version == 2
    assert changes["churn"].diff == (
        '~ features: ["stats:spend", "stats:orders"] → ["stats:spend"]',
    )
    version = store.models.register("churn_model", _Model(), features="churn")
    assert version.feature_service == "churn:2"
