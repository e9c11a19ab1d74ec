"""Feature definitions: every definition that can't work is refused with a message that says
why, and a definition's spec (its version identity) is stable."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from loopml.exceptions import InvalidInput, LoopmlError, NotFound
from loopml.features import (
    DataFrameSource,
    Definitions,
    Entity,
    FeatureDefinitionError,
    FeatureNotFound,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    PostgresSource,
    RequestSource,
    SqlSource,
)
from loopml.features.definitions import code_digest, spec_digest

customer = Entity("customer", join_keys=["customer_id"])


def source() -> FileSource:
    return FileSource("data/stats.parquet", "event_ts", "created_ts")


def view(name: str = "stats", **options: Any) -> FeatureView:
    arguments: dict[str, Any] = {
        "entities": [customer],
        "source": source(),
        "schema": [Field("spend"), Field("orders", "int64")],
        "ttl": timedelta(days=30),
    }
    arguments.update(options)
    return FeatureView(name, **arguments)


def double(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(spend=frame["spend"] * 2)


def test_errors_are_loopml_errors_callers_can_catch_as_builtins() -> None:
    assert issubclass(FeatureDefinitionError, InvalidInput)
    assert issubclass(FeatureDefinitionError, ValueError)
    assert issubclass(FeatureNotFound, NotFound)
    assert issubclass(FeatureNotFound, LookupError)
    assert issubclass(FeatureNotFound, LoopmlError)


# -- names and fields ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "1st", "with-dash", "with space", "é", "x" * 129, 7, None])
def test_bad_names_are_refused_everywhere(bad: Any) -> None:
    message = r"name .* must be a letter or _ then letters, digits or _"
    with pytest.raises(FeatureDefinitionError, match=rf"Entity {message}"):
        Entity(bad, join_keys=["id"])
    with pytest.raises(FeatureDefinitionError, match=rf"join key {message}"):
        Entity("customer", join_keys=[bad])
    with pytest.raises(FeatureDefinitionError, match=rf"Field {message}"):
        Field(bad)
    with pytest.raises(FeatureDefinitionError, match=rf"FeatureView {message}"):
        view(bad)
    with pytest.raises(FeatureDefinitionError, match=rf"Timestamp field {message}"):
        FileSource("a.parquet", bad)
    with pytest.raises(FeatureDefinitionError, match=rf"RequestSource {message}"):
        RequestSource(bad, [Field("amount")])
    with pytest.raises(FeatureDefinitionError, match=rf"FeatureService {message}"):
        FeatureService(bad, [view()])


def test_good_names_pass() -> None:
    assert Field("_x" + "9" * 126).name.startswith("_x")
    assert Entity("Customer2", join_keys="id").join_keys == ("id",)


def test_entity_join_keys() -> None:
    with pytest.raises(FeatureDefinitionError, match="'customer' needs at least one join key"):
        Entity("customer", join_keys=[])
    with pytest.raises(FeatureDefinitionError, match="join key names repeat: id, id"):
        Entity("customer", join_keys=["id", "id"])


def test_field_types() -> None:
    with pytest.raises(
        FeatureDefinitionError, match=r"Field 'spend' has type 'double'; use one of float64, "
    ):
        Field("spend", "double")
    assert Field("spend").dtype == "float64"


# -- sources -------------------------------------------------------------------------------------


def test_source_errors() -> None:
    with pytest.raises(FeatureDefinitionError, match="created_timestamp_field must differ"):
        FileSource("a.parquet", "ts", "ts")
    with pytest.raises(FeatureDefinitionError, match="Created timestamp field name"):
        FileSource("a.parquet", "ts", "created at")
    with pytest.raises(FeatureDefinitionError, match=r"format 'json': use 'parquet' or 'csv'"):
        FileSource("a.json", "ts", format="json")
    with pytest.raises(FeatureDefinitionError, match="FileSource needs a path"):
        FileSource("  ", "ts")
    with pytest.raises(FeatureDefinitionError, match="SqlSource needs a query"):
        SqlSource(" ", "ts")
    with pytest.raises(
        FeatureDefinitionError, match="pandas DataFrame or an Arrow table, not dict"
    ):
        DataFrameSource({"a": [1]}, "ts")
    with pytest.raises(FeatureDefinitionError, match="table= or query=, one of them"):
        PostgresSource("ts")
    with pytest.raises(FeatureDefinitionError, match="table= or query=, one of them"):
        PostgresSource("ts", table="t", query="select 1")


def test_file_format_comes_from_the_suffix() -> None:
    assert FileSource("a/b.CSV", "ts").format == "csv"
    assert FileSource("a/b.csv.gz", "ts").format == "csv"
    assert FileSource("a/*.parquet", "ts").format == "parquet"
    assert FileSource("a/folder", "ts").format == "parquet"
    assert FileSource("a/b.txt", "ts", format="csv").format == "csv"


def test_source_specs() -> None:
    assert source().spec() == {
        "kind": "file",
        "path": "data/stats.parquet",
        "format": "parquet",
        "timestamp_field": "event_ts",
        "created_timestamp_field": "created_ts",
    }
    assert SqlSource("select 1;", "ts").spec()["query"] == "select 1"
    frame = pd.DataFrame({"id": [1], "ts": [pd.Timestamp(0)]})
    assert DataFrameSource(frame, "ts").spec()["columns"] == ["id", "ts"]
    assert DataFrameSource(pa.Table.from_pandas(frame), "ts").spec()["columns"] == ["id", "ts"]
    secret = PostgresSource("ts", table="stats", url="postgresql+psycopg://me:hunter2@db/x")
    assert "hunter2" not in str(secret.spec())
    assert secret.spec()["url"] == "postgresql+psycopg://me:***@db/x"


# -- views ---------------------------------------------------------------------------------------


def test_view_errors() -> None:
    with pytest.raises(FeatureDefinitionError, match=r"'stats' needs entities=\[Entity"):
        view(entities=[])
    with pytest.raises(FeatureDefinitionError, match=r"'stats' needs entities=\[Entity"):
        view(entities=["customer"])
    with pytest.raises(FeatureDefinitionError, match="source must be a FileSource.*not str"):
        view(source="data/stats.parquet")
    with pytest.raises(FeatureDefinitionError, match=r"'stats' needs schema=\[Field"):
        view(schema=[])
    with pytest.raises(FeatureDefinitionError, match=r"'stats' needs schema=\[Field"):
        view(schema=["spend"])
    with pytest.raises(FeatureDefinitionError, match="'stats' repeats a feature name"):
        view(schema=[Field("spend"), Field("spend", "int64")])


@pytest.mark.parametrize("name", ["customer_id", "event_ts", "created_ts"])
def test_a_feature_named_like_a_key_or_timestamp(name: str) -> None:
    with pytest.raises(
        FeatureDefinitionError, match=rf"'stats': {name} is a join key or timestamp field"
    ):
        view(schema=[Field("spend"), Field(name)])


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1), 30, "30d"])
def test_ttl_must_be_a_positive_timedelta(ttl: Any) -> None:
    with pytest.raises(FeatureDefinitionError, match="ttl must be a positive timedelta"):
        view(ttl=ttl)


def test_transforms() -> None:
    with pytest.raises(FeatureDefinitionError, match="give transform_sql or transform, not both"):
        view(transform_sql="select * from source", transform=double)
    with pytest.raises(FeatureDefinitionError, match="transform must be callable"):
        view(transform="double")
    assert view(ttl=None).ttl is None


def test_selecting_features() -> None:
    stats = view()
    assert stats[["orders"]].names == ["stats:orders"]
    assert stats["spend"].features == ("spend",)
    assert stats.ref().features == ("spend", "orders")
    assert stats.join_keys == ("customer_id",)
    with pytest.raises(
        FeatureNotFound, match=r"'stats' has no feature 'order'\. Did you mean 'orders'"
    ):
        stats[["spend", "order"]]
    with pytest.raises(FeatureNotFound, match=r"'stats' has no feature 'zzz'\.$"):
        stats.field("zzz")


def test_join_keys_of_several_entities_keep_their_order_once() -> None:
    pair = Entity("pair", join_keys=["customer_id", "store_id"])
    both = view(entities=[customer, pair])
    assert both.join_keys == ("customer_id", "store_id")


def test_on_demand_view_errors() -> None:
    request = RequestSource("order", [Field("amount")])
    with pytest.raises(FeatureDefinitionError, match="'ratio' needs a function"):
        OnDemandFeatureView("ratio", [view()], [Field("r")], function="ratio")  # type: ignore[arg-type]
    with pytest.raises(FeatureDefinitionError, match="a source is a view.*not str"):
        OnDemandFeatureView("ratio", ["stats:spend"], [Field("r")], function=double)  # type: ignore[list-item]
    with pytest.raises(FeatureDefinitionError, match="'ratio' needs a schema"):
        OnDemandFeatureView("ratio", [view(), request], [], function=double)
    ratio = OnDemandFeatureView("ratio", [view()[["spend"]], request], [Field("r")], double)
    assert [ref.names for ref in ratio.inputs] == [["stats:spend"]]
    assert ratio.request_fields == [Field("amount")]
    assert ratio.spec()["sources"][0] == {"kind": "features", "features": ["stats:spend"]}


def test_service_errors() -> None:
    with pytest.raises(FeatureDefinitionError, match="'churn' names no features"):
        FeatureService("churn", [])
    with pytest.raises(FeatureDefinitionError, match="use views or view.*not str"):
        FeatureService("churn", ["stats:spend"])  # type: ignore[list-item]
    service = FeatureService("churn", [view()[["orders"]], view("other")])
    assert service.spec()["features"] == ["stats:orders", "other:spend", "other:orders"]


# -- specs ---------------------------------------------------------------------------------------


def test_the_same_definition_has_the_same_digest() -> None:
    assert spec_digest(view().spec()) == spec_digest(view().spec())
    assert spec_digest(view(tags={"b": "2", "a": "1"}).spec()) == spec_digest(
        view(tags={"a": "1", "b": "2"}).spec()
    )
    assert spec_digest(view(transform=double).spec()) == spec_digest(view(transform=double).spec())


@pytest.mark.parametrize(
    "change",
    [
        {"ttl": timedelta(days=31)},
        {"ttl": None},
        {"schema": [Field("spend"), Field("orders", "int32")]},
        {"schema": [Field("spend")]},
        {"source": FileSource("data/stats.parquet", "event_ts")},
        {"transform_sql": "select * from source"},
        {"transform": double},
        {"online": False},
        {"description": "what customers spent"},
        {"entities": [Entity("customer", join_keys=["id"])]},
    ],
)
def test_a_changed_definition_has_another_digest(change: dict[str, Any]) -> None:
    assert spec_digest(view(**change).spec()) != spec_digest(view().spec())


def test_a_python_transform_is_versioned_by_its_code() -> None:
    def triple(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(spend=frame["spend"] * 3)

    assert code_digest(double) != code_digest(triple)
    assert view(transform=double).spec()["transform"] == code_digest(double)
    # Without source code (a lambda made by eval), the bytecode is the identity.
    made = eval("lambda frame: frame")
    assert code_digest(made) == code_digest(eval("lambda frame: frame"))


def test_spec_digest_is_canonical_json() -> None:
    assert spec_digest({"a": 1, "b": [1, 2]}) == spec_digest({"b": [1, 2], "a": 1})
    assert spec_digest({"a": 1}) != spec_digest({"a": 2})
    assert len(spec_digest({})) == 32


# -- definitions by name -------------------------------------------------------------------------


def test_definitions_collect_what_views_and_services_use() -> None:
    stats = view()
    ratio = OnDemandFeatureView("ratio", [stats[["spend"]]], [Field("r")], double)
    found = Definitions([FeatureService("churn", [ratio])])
    assert set(found.views) == {"ratio", "stats"}
    assert set(found.entities) == {"customer"}
    assert set(found.services) == {"churn"}
    assert [d.name for d in found] == ["customer", "stats", "ratio", "churn"]


def test_two_different_definitions_with_one_name() -> None:
    found = Definitions([view()])
    found.add(view())  # the same spec again is the same definition
    with pytest.raises(FeatureDefinitionError, match="Two different definitions are named 'stats'"):
        found.add(view(ttl=timedelta(days=1)))
    with pytest.raises(FeatureDefinitionError, match="named 'customer'; rename one"):
        Definitions([customer, Entity("customer", join_keys=["id"])])
    with pytest.raises(FeatureDefinitionError, match="is not a feature definition"):
        Definitions(["stats"])  # type: ignore[list-item]


def test_lookups_suggest_close_names() -> None:
    found = Definitions([view(), FeatureService("churn_v1", [view()])])
    with pytest.raises(FeatureNotFound, match=r"No feature view 'stat'\. Did you mean 'stats'"):
        found.view("stat")
    with pytest.raises(
        FeatureNotFound, match=r"No feature service 'churn_v2'\. Did you mean 'churn_v1'"
    ):
        found.service("churn_v2")


def test_resolve_groups_features_by_view() -> None:
    stats, other = view(), view("other")
    found = Definitions([stats, other])
    refs = found.resolve(
        ["stats:orders", "other:spend", "stats:spend", "stats:orders", stats[["spend"]]]
    )
    assert [(r.view.name, r.features) for r in refs] == [
        ("stats", ("orders", "spend")),
        ("other", ("spend",)),
    ]
    assert [r.features for r in found.resolve("stats:spend")] == [("spend",)]
    assert [r.features for r in found.resolve(other)] == [("spend", "orders")]
    with pytest.raises(FeatureNotFound, match="is not a feature reference"):
        found.resolve([3])  # type: ignore[list-item]
