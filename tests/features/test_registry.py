"""Applied definitions: a version per change with a readable diff, ``feature.applied`` events,
history, and the service version a model records; on every metadata backend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from loopml.features import (
    Entity,
    FeatureDefinitionError,
    FeatureNotFound,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    registry,
)
from loopml.features.registry import spec_diff
from loopml.workspace import Workspace

customer = Entity("customer", join_keys=["customer_id"])


def stats(ttl_days: int = 30, schema: list[Field] | None = None) -> FeatureView:
    return FeatureView(
        "stats",
        entities=[customer],
        source=FileSource("data/stats.parquet", "event_ts", "created_ts"),
        schema=schema or [Field("spend"), Field("orders", "int64")],
        ttl=timedelta(days=ttl_days),
    )


def churn(view: FeatureView, *features: str) -> FeatureService:
    return FeatureService("churn", [view[list(features or ("spend",))]])


def statuses(changes: list[registry.Change]) -> dict[str, tuple[str, int]]:
    return {c.name: (c.status, c.version) for c in changes}


def applied_events(ws: Workspace) -> list[tuple[str | None, dict[str, Any] | None]]:
    return [(e.subject, e.payload) for e in ws.events.read(kinds="feature.applied")]


# -- apply ---------------------------------------------------------------------------------------


def test_first_apply_stores_version_one_of_everything(ws: Workspace) -> None:
    view = stats()
    changes = ws.features.use(view, churn(view)).apply()
    assert statuses(changes) == {
        "customer": ("new", 1),
        "stats": ("new", 1),
        "churn": ("new", 1),
    }
    assert all(c.diff == () for c in changes)
    assert [(d.kind, d.name, d.version) for d in ws.features.list()] == [
        ("entity", "customer", 1),
        ("feature_view", "stats", 1),
        ("feature_service", "churn", 1),
    ]
    assert sorted(applied_events(ws), key=str) == sorted(
        [
            ("customer", {"kind": "entity", "version": 1, "previous": None}),
            ("stats", {"kind": "feature_view", "version": 1, "previous": None}),
            ("churn", {"kind": "feature_service", "version": 1, "previous": None}),
        ],
        key=str,
    )
    stored = ws.features.list("feature_view")[0]
    assert stored.spec == view.spec()
    assert stored.to_dict()["spec"]["ttl_seconds"] == 30 * 86400


def test_applying_again_unchanged_keeps_the_version(ws: Workspace) -> None:
    view = stats()
    fs = ws.features.use(view, churn(view))
    fs.apply()
    before = ws.events.last_id()
    # Definitions built again from scratch (as a new process would) are the same.
    again = stats()
    changes = ws.features.use(again, churn(again)).apply()
    assert {c.status for c in changes} == {"unchanged"}
    assert {c.version for c in changes} == {1}
    assert ws.events.read(after_id=before, kinds="feature.applied") == []
    assert [d.version for d in ws.features.history("stats")] == [1]


def test_a_change_makes_version_two_with_a_diff(ws: Workspace) -> None:
    ws.features.use(stats(), churn(stats())).apply()
    before = ws.events.last_id()
    shorter = stats(ttl_days=1, schema=[Field("spend"), Field("orders", "int32"), Field("visits")])
    changes = ws.features.use(shorter, churn(shorter)).apply()
    assert statuses(changes) == {
        "customer": ("unchanged", 1),
        "stats": ("changed", 2),
        "churn": ("unchanged", 1),  # it names the same features
    }
    diff = next(c for c in changes if c.name == "stats").diff
    assert diff == (
        '+ schema: {"dtype": "float64", "name": "visits"}',
        '~ schema.orders: {"dtype": "int64", "name": "orders"} → {"dtype": "int32", "name": "orders"}',
        "~ ttl_seconds: 2592000.0 → 86400.0",
    )
    assert [(s, p) for s, p in applied_events(ws) if p and p["version"] == 2] == [
        ("stats", {"kind": "feature_view", "version": 2, "previous": 1})
    ]
    assert len(ws.events.read(after_id=before, kinds="feature.applied")) == 1
    history = ws.features.history("stats")
    assert [d.version for d in history] == [1, 2]
    assert history[0].spec["ttl_seconds"] == 30 * 86400
    assert history[1].spec == shorter.spec()
    assert history[0].digest != history[1].digest
    assert history[0].created_at <= history[1].created_at
    assert [d.version for d in ws.features.list("feature_view")] == [2]


def test_dry_run_says_what_would_change_and_stores_nothing(ws: Workspace) -> None:
    changes = ws.features.use(stats()).apply(dry_run=True)
    assert statuses(changes) == {"customer": ("new", 1), "stats": ("new", 1)}
    assert ws.features.list() == []
    assert applied_events(ws) == []
    ws.features.apply()
    changes = ws.features.use(stats(ttl_days=7)).apply(dry_run=True)
    assert statuses(changes)["stats"] == ("changed", 2)
    assert next(c for c in changes if c.name == "stats").diff == (
        "~ ttl_seconds: 2592000.0 → 604800.0",
    )
    assert [d.version for d in ws.features.history("stats")] == [1]
    assert len(applied_events(ws)) == 2


def test_history_of_an_unknown_name_suggests_applied_ones(ws: Workspace) -> None:
    ws.features.use(stats()).apply()
    with pytest.raises(
        FeatureNotFound, match=r"'stat' has been applied\. Did you mean 'stats'.*apply"
    ):
        ws.features.history("stat")
    with pytest.raises(FeatureNotFound, match="Unknown kind 'view': one of entity, feature_view"):
        ws.features.list("view")
    assert [d.name for d in ws.features.list("entity")] == ["customer"]


# -- the service version a model records -----------------------------------------------------


def test_service_version_follows_applies(ws: Workspace) -> None:
    view = stats()
    service = churn(view)
    fs = ws.features.use(view, service)
    with pytest.raises(FeatureDefinitionError, match="'churn' is not applied as it is defined now"):
        fs.service_version(service)
    fs.apply()
    assert fs.service_version(service) == "churn:1"
    assert fs.service_version("churn") == "churn:1"
    assert registry.current_version(ws.db, service) == 1
    wider = churn(view, "spend", "orders")
    fs = ws.features.use(view, wider)
    with pytest.raises(FeatureDefinitionError, match="run `loopml features apply`"):
        fs.service_version("churn")
    assert registry.current_version(ws.db, wider) is None
    changes = fs.apply()
    assert statuses(changes)["churn"] == ("changed", 2)
    assert next(c for c in changes if c.name == "churn").diff == (
        '~ features: ["stats:spend"] → ["stats:spend", "stats:orders"]',
    )
    assert fs.service_version("churn") == "churn:2"
    # The old definition is still version 1 as applied, but not the latest.
    assert registry.current_version(ws.db, service) is None


def test_kind_of_refuses_what_is_not_a_definition() -> None:
    assert registry.kind_of(customer) == "entity"
    with pytest.raises(FeatureNotFound, match="is not a feature definition"):
        registry.kind_of("stats")  # type: ignore[arg-type]


# -- spec_diff -----------------------------------------------------------------------------------


def test_spec_diff_added_removed_changed() -> None:
    assert spec_diff({"a": 1}, {"a": 1}) == []
    assert spec_diff({"a": 1, "b": "x"}, {"a": 2, "c": [1]}) == [
        "~ a: 1 → 2",
        '- b: "x"',
        "+ c: [1]",
    ]


def test_spec_diff_nested_mappings_by_dotted_key() -> None:
    old = {"source": {"path": "a.parquet", "options": {"x": 1}}, "name": "v"}
    new = {"source": {"path": "b.parquet", "options": {"x": 1, "y": 2}}, "name": "v"}
    assert spec_diff(old, new) == [
        "+ source.options.y: 2",
        '~ source.path: "a.parquet" → "b.parquet"',
    ]


def test_spec_diff_named_lists_by_element() -> None:
    old = {"schema": [{"name": "a", "dtype": "int64"}, {"name": "b", "dtype": "string"}]}
    new = {"schema": [{"name": "a", "dtype": "float64"}, {"name": "c", "dtype": "bool"}]}
    assert spec_diff(old, new) == [
        '+ schema: {"dtype": "bool", "name": "c"}',
        '- schema: {"dtype": "string", "name": "b"}',
        '~ schema.a: {"dtype": "int64", "name": "a"} → {"dtype": "float64", "name": "a"}',
    ]
    # Reordered (the columns come out in another order): still a line, not an empty diff.
    assert spec_diff({"schema": old["schema"]}, {"schema": old["schema"][::-1]}) == [
        "~ schema: order a, b → b, a"
    ]
    # Several added or removed elements read in list order, every time.
    many = [{"name": n} for n in "zyxwv"]
    assert spec_diff({"schema": []}, {"schema": many}) == [
        f'+ schema: {{"name": "{n}"}}' for n in "zyxwv"
    ]
    assert spec_diff({"schema": many}, {"schema": many[:1]}) == [
        f'- schema: {{"name": "{n}"}}' for n in "yxwv"
    ]


def test_spec_diff_other_lists_and_types_whole() -> None:
    assert spec_diff({"k": [1, 2]}, {"k": [2, 1]}) == ["~ k: [1, 2] → [2, 1]"]
    assert spec_diff({"k": {"a": 1}}, {"k": None}) == ['~ k: {"a": 1} → null']


def test_spec_diff_shortens_long_values() -> None:
    (line,) = spec_diff({}, {"query": "x" * 500})
    assert line.startswith('+ query: "xxx') and line.endswith("...")
    assert len(line) == len("+ query: ") + 120
