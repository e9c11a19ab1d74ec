"""The filter language parser (pure: no store)."""

from __future__ import annotations

import pytest

from loopml.exceptions import InvalidFilter
from loopml.tracking.filter import BoolOp, Comparison, Key, OrderBy, parse_filter, parse_order_by


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


KEYS = "end_time, experiment_id, id, name, parent_run_id, run_id, run_name, start_time, status"
OPERATORS = "(=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS)"
STRINGS = "(they are strings); use =, !=, LIKE or IN"


@pytest.mark.parametrize(
    ("text", "message", "caret"),
    [
        # tokens and keys
        ("metrics.acc ~ 1", "Unexpected character '~'", 12),
        ("acc > 1", "'acc' needs a prefix: metrics.acc, params.acc, tags.acc or attributes.acc", 0),
        (
            "metricz.acc > 1",
            "Unknown key prefix 'metricz': use metrics., params., tags. or attributes. "
            "Did you mean 'metric'?",
            0,
        ),
        ("zzz.acc > 1", "Unknown key prefix 'zzz': use metrics., params., tags. or attributes.", 0),
        ("attributes.colour = 'x'", f"Unknown attribute 'colour'; valid: {KEYS}", 0),
        # structure
        (
            "metrics.acc > 1 metrics.b > 2",
            "Unexpected 'metrics.b': expected AND, OR or the end",
            16,
        ),
        ("> 1", "Expected a key like metrics.accuracy, found '>'", 0),
        ("(metrics.acc > 1 metrics.b > 2)", "Expected ')' but found 'metrics.b'", 17),
        ("metrics.acc 5", f"Expected an operator {OPERATORS} after 'metrics.acc', found '5'", 12),
        ("params.a = b", "Expected a quoted string or a number, found 'b'", 11),
        # the filter ends where something else is needed
        ("(", "Filter ends early: expected a comparison or '('", 1),
        ("metrics.acc", "Filter ends early: expected a comparison operator", 11),
        ("metrics.acc >", "Filter ends early: expected a value", 13),
        ("metrics.acc > 1 and", "Filter ends early: expected a comparison or '('", 19),
        ("(metrics.acc > 1", "Filter ends early: expected ')'", 16),
        ("params.a NOT", "Filter ends early: expected IN, LIKE or ILIKE after NOT", 12),
        ("params.a LIKE", "Filter ends early: expected a quoted pattern", 13),
        ("params.a IN", "Filter ends early: expected '('", 11),
        ("params.a IN (", "Filter ends early: expected a value", 13),
        ("params.a IN ('x'", "Filter ends early: expected ',' or ')'", 16),
        ("params.a IS", "Filter ends early: expected NULL or NOT NULL", 11),
        ("params.a IS NOT", "Filter ends early: expected NULL", 15),
        # NOT, LIKE, IN, IS
        ("params.a NOT = 'x'", "Expected IN, LIKE or ILIKE after NOT, found '='", 13),
        ("params.a like 5", "LIKE needs a quoted pattern", 14),
        ("metrics.a like 'x%'", "LIKE does not apply to metrics", 10),
        ("metrics.a NOT ilike 'x%'", "ILIKE does not apply to metrics", 14),
        ("params.a IN 'x'", "IN needs a parenthesised list, found \"'x'\"", 12),
        ("params.a IN ('x' 'y')", "Expected ',' or ')' in the IN list, found \"'y'\"", 17),
        ("params.a IN ('x', b)", "Expected a quoted string or a number, found 'b'", 18),
        ("params.a IS 'x'", "Expected NULL, found \"'x'\"", 12),
        ("params.a IS NOT 'x'", "Expected NULL, found \"'x'\"", 16),
        # types: metrics and time attributes are numbers, params and tags strings
        ("metric.acc > 'x'", "metrics.acc is numeric; 'x' is not a number", 13),
        ("metrics.m IN (1, 'x')", "metrics.m is numeric; 'x' is not a number", 17),
        (
            "attributes.start_time > 'soon'",
            "attributes.start_time is numeric; 'soon' is not a number",
            24,
        ),
        ("params.lr > '1'", f"> does not apply to params {STRINGS}", 12),
        ("params.lr < '1'", f"< does not apply to params {STRINGS}", 12),
        ("params.lr <= '1'", f"<= does not apply to params {STRINGS}", 13),
        ("tags.t >= 'a'", f">= does not apply to tags {STRINGS}", 10),
    ],
)
def test_errors_say_what_is_wrong_and_point_at_the_offending_token(
    text: str, message: str, caret: int
) -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_filter(text)
    assert info.value.position == caret
    assert str(info.value) == f"{message}\n  {text}\n  {' ' * caret}^"


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t"])
def test_no_filter(text: str | None) -> None:
    assert parse_filter(text) is None


def test_operator_spellings() -> None:
    assert parse_filter("params.a == '1'") == Comparison(Key("param", "a"), "=", "1")
    assert parse_filter("params.a <> '1'") == Comparison(Key("param", "a"), "!=", "1")
    assert parse_filter("params.a NOT LIKE 'x%'") == Comparison(Key("param", "a"), "not like", "x%")
    assert parse_filter("tags.t ilike 'X%'") == Comparison(Key("tag", "t"), "ilike", "X%")
    assert parse_filter("params.a IS NULL") == Comparison(Key("param", "a"), "is null", None)
    assert parse_filter("metrics.m IN (1, -2.5e3)") == Comparison(
        Key("metric", "m"), "in", ("1", "-2.5e3")
    )
    assert parse_filter("metrics.m >= -inf") == Comparison(Key("metric", "m"), ">=", "-inf")


def test_keys_prefixes_and_attributes() -> None:
    assert parse_filter("METRICS.acc > 1").key == Key("metric", "acc")  # type: ignore[union-attr]
    assert parse_filter("run.run_id = 'abc'").key == Key("attribute", "id")  # type: ignore[union-attr]
    assert parse_filter("attr.RUN_NAME = 'x'").key == Key("attribute", "name")  # type: ignore[union-attr]
    # time attributes are numbers (a string there is an error, see above)
    assert parse_filter("attributes.start_time > 1700000000000") == Comparison(
        Key("attribute", "start_time"), ">", "1700000000000"
    )


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("params.`a.b` = 'x'", "a.b"),  # a quoted key keeps its dots
        ("params.\"a.b\" = 'x'", "a.b"),
        ("params.a.b = 'x'", "a.b"),  # so does an unquoted one: only the first dot is the prefix's
        ("params.`lr (log)` = 'x'", "lr (log)"),
    ],
)
def test_key_names_with_dots_and_quotes(text: str, name: str) -> None:
    assert parse_filter(text) == Comparison(Key("param", name), "=", "x")


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'a\\'b'", "a'b"),  # backslash escapes in single quotes ...
        ("'it''s'", "it's"),  # ... and SQL's doubled quote
        ('"say \\"hi\\""', 'say "hi"'),
        ("'back\\\\slash'", "back\\slash"),
        ("'100%'", "100%"),
    ],
)
def test_string_escapes(literal: str, value: str) -> None:
    assert parse_filter(f"params.p = {literal}") == Comparison(Key("param", "p"), "=", value)
    assert parse_filter(f"tags.t LIKE {literal}") == Comparison(Key("tag", "t"), "like", value)


def test_order_by() -> None:
    clauses = parse_order_by(["metrics.acc DESC", "params.lr", "attributes.start_time asc"])
    assert [(c.key.kind, c.key.name, c.descending) for c in clauses] == [
        ("metric", "acc", True),
        ("param", "lr", False),
        ("attribute", "start_time", False),
    ]
    with pytest.raises(InvalidFilter, match="ASC or DESC"):
        parse_order_by("metrics.acc DOWN")


def test_order_by_forms() -> None:
    assert parse_order_by(None) == []
    assert parse_order_by([]) == []
    assert parse_order_by("metrics.`val loss` desc") == [OrderBy(Key("metric", "val loss"), True)]
    assert parse_order_by("attributes.run_name") == [OrderBy(Key("attribute", "name"), False)]


ONE_KEY = (
    "one key per order-by clause; on the command line repeat -o/--order-by, in Python pass a list"
)


@pytest.mark.parametrize(
    ("clause", "message", "caret"),
    [
        ("(metrics.acc)", "order_by needs a key like metrics.accuracy", 0),
        (
            "acc DESC",
            "'acc' needs a prefix: metrics.acc, params.acc, tags.acc or attributes.acc",
            0,
        ),
        ("attributes.colour", f"Unknown attribute 'colour'; valid: {KEYS}", 0),
        ("metrics.acc DOWN", "Expected ASC or DESC after metrics.acc, got 'DOWN'", 12),
        ("metrics.acc DESC params.lr", f"Unexpected 'params.lr' after DESC: {ONE_KEY}", 17),
        (
            "metrics.acc asc ,",
            "One key per order-by clause: on the command line repeat -o/--order-by "
            "(-o 'metrics.acc DESC' -o 'params.lr'); in Python pass a list "
            "(order_by=['metrics.acc DESC', 'params.lr'])",
            16,
        ),
        (
            "metrics.acc, params.lr",
            "One key per order-by clause: on the command line repeat "
            "-o/--order-by (-o 'metrics.acc DESC' -o 'params.lr'); in Python pass a list "
            "(order_by=['metrics.acc DESC', 'params.lr'])",
            11,
        ),
    ],
)
def test_order_by_errors(clause: str, message: str, caret: int) -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_order_by(["metrics.ok", clause])
    assert info.value.position == caret
    assert str(info.value) == f"{message}\n  {clause}\n  {' ' * caret}^"


def test_empty_order_by_clause() -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_order_by("")
    assert str(info.value) == "order_by needs a key like metrics.accuracy"
