"""The filter language parser (pure: no store)."""

from __future__ import annotations

import pytest

from loopml.exceptions import InvalidFilter
from loopml.tracking.filter import BoolOp, Comparison, Key, parse_filter, parse_order_by


def test_simple_comparisons() -> None:
    assert parse_filter("metrics.acc > 0.9") == Comparison(Key("metric", "acc"), ">", "0.9")
    assert parse_filter("params.lr = '0.01'") == Comparison(Key("param", "lr"), "=", "0.01")
    assert parse_filter('tags.team != "a"') == Comparison(Key("tag", "team"), "!=", "a")
    assert parse_filter("attributes.status = 'FINISHED'") == Comparison(
        Key("attribute", "status"), "=", "FINISHED"
    )


def test_boolean_structure_and_precedence() -> None:
    expr = parse_filter("metrics.a > 1 or metrics.b < 2 and (params.c = 'x' OR tags.d = 'y')")
    assert isinstance(expr, BoolOp) and expr.op == "or"
    right = expr.items[1]
    assert isinstance(right, BoolOp) and right.op == "and"
    assert isinstance(right.items[1], BoolOp) and right.items[1].op == "or"


def test_like_in_and_null() -> None:
    assert parse_filter("params.opt LIKE 'ad%'") == Comparison(Key("param", "opt"), "like", "ad%")
    assert parse_filter("params.opt NOT ILIKE 'AD%'") == Comparison(
        Key("param", "opt"), "not ilike", "AD%"
    )
    assert parse_filter("tags.t IN ('a', 'b')") == Comparison(Key("tag", "t"), "in", ("a", "b"))
    assert parse_filter("tags.t NOT IN ('a')") == Comparison(Key("tag", "t"), "not in", ("a",))
    assert parse_filter("metrics.m IS NOT NULL") == Comparison(
        Key("metric", "m"), "is not null", None
    )


def test_quoted_keys_and_escapes() -> None:
    assert parse_filter("metrics.`val loss` <= 0.2") == Comparison(
        Key("metric", "val loss"), "<=", "0.2"
    )
    assert parse_filter("params.name = 'it''s'") == Comparison(Key("param", "name"), "=", "it's")
    assert parse_filter("metrics.train/loss < 1e-3").key == Key("metric", "train/loss")  # type: ignore[union-attr]


def test_values_are_data_never_sql() -> None:
    expr = parse_filter("params.x = 'a''; DROP TABLE runs; --'")
    assert expr == Comparison(Key("param", "x"), "=", "a'; DROP TABLE runs; --")


@pytest.mark.parametrize(
    ("text", "message", "caret"),
    [
        ("metrics.acc >", "ends early", 13),
        ("metric.acc > 'x'", "not a number", 13),
        ("acc > 1", "needs a prefix", 0),
        ("metricz.acc > 1", "Did you mean 'metric", 0),
        ("metrics.acc > 1 and", "ends early", 19),
        ("(metrics.acc > 1", "ends early", 16),
        ("metrics.acc > 1 metrics.b > 2", "Unexpected", 16),
        ("params.lr > '1'", "does not apply to params", 12),
        ("attributes.colour = 'x'", "Unknown attribute", 0),
        ("metrics.acc ~ 1", "Unexpected character", 12),
        ("params.a IN 'x'", "parenthesised", 12),
        ("", "empty", 0),
    ],
)
def test_errors_point_at_the_offending_token(text: str, message: str, caret: int) -> None:
    if not text:
        assert parse_filter(text) is None
        return
    with pytest.raises(InvalidFilter, match=message) as info:
        parse_filter(text)
    assert info.value.position == caret
    assert str(info.value).splitlines()[-1] == "  " + " " * caret + "^"


def test_order_by() -> None:
    clauses = parse_order_by(["metrics.acc DESC", "params.lr", "attributes.start_time asc"])
    assert [(c.key.kind, c.key.name, c.descending) for c in clauses] == [
        ("metric", "acc", True),
        ("param", "lr", False),
        ("attribute", "start_time", False),
    ]
    with pytest.raises(InvalidFilter, match="ASC or DESC"):
        parse_order_by("metrics.acc DOWN")
