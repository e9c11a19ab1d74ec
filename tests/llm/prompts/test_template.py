"""Templates, pure: variables, where a malformed one goes wrong, rendering, the digest."""

from __future__ import annotations

import pytest

from loopml.exceptions import InvalidInput
from loopml.llm.prompts.template import (
    check_template,
    check_variables,
    content_digest,
    parse_text,
    render_text,
    variables_of,
)


def test_variables_in_order_of_first_use_with_or_without_spaces() -> None:
    parsed = parse_text("{{b}} then {{ a }} then {{  b  }}")
    assert parsed.variables == ("b", "a")
    assert render_text(parsed, {"a": 1, "b": "x"}) == "x then 1 then x"


def test_single_braces_and_escaped_double_braces_are_literal() -> None:
    text = 'JSON: {"k": {"n": {{ n }}}} and \\{{ not_a_var }} and {{{ x }}}'
    parsed = parse_text(text)
    assert parsed.variables == ("n", "x")
    assert render_text(parsed, {"n": 2, "x": "y"}) == (
        'JSON: {"k": {"n": 2}} and {{ not_a_var }} and {y}'
    )


def test_values_render_as_text_json_or_str() -> None:
    parsed = parse_text("{{ a }}|{{ b }}|{{ c }}")
    assert render_text(parsed, {"a": "é", "b": {"k": [1]}, "c": 2.5}) == 'é|{"k": [1]}|2.5'


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("Hello {{ name", "line 1, character 7"),
        ("one\ntwo {{ a }} {{ b", "line 2, character 13"),
        ("{{ a {{ b }}", "line 1, character 1"),
    ],
)
def test_an_unclosed_variable_names_its_line_and_character(text: str, where: str) -> None:
    with pytest.raises(InvalidInput, match="not closed") as caught:
        parse_text(text)
    assert where in str(caught.value)
    assert "\\{{" in str(caught.value)  # how to write a literal one


@pytest.mark.parametrize("inner", ["", " ", "a b", "1x", "x | upper", "x.y", "f(x)"])
def test_a_bad_variable_name_is_refused(inner: str) -> None:
    with pytest.raises(InvalidInput, match="bad variable"):
        parse_text(f"Hi {{{{{inner}}}}}")


def test_chat_errors_name_the_message_and_character() -> None:
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Question: {{ q!}}"},
    ]
    with pytest.raises(InvalidInput) as caught:
        check_template(chat)
    assert "message 2, character 11" in str(caught.value)
    multi = [{"role": "user", "content": "a\nbb {{ x"}]
    with pytest.raises(InvalidInput, match="message 1, line 2, character 4"):
        check_template(multi)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        (42, "not int"),
        ([], "at least one message"),
        (["hi"], "message 1 is str"),
        ([{"role": "boss", "content": "x"}], "role 'boss'"),
        ([{"role": "user", "content": ["x"]}], "needs 'content' text"),
        ([{"role": "user", "content": "x", "tools": []}], "unknown key(s) 'tools'"),
    ],
)
def test_malformed_chats_are_refused(template: object, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_template(template)
    assert fragment in str(caught.value)


def test_a_chat_template_variables_span_its_messages() -> None:
    kind, parsed = check_template(
        [
            {"role": "system", "content": "{{ tone }}"},
            {"role": "user", "content": "{{ q }} {{ tone }}"},
        ]
    )
    assert kind == "chat"
    assert variables_of(parsed) == ("tone", "q")


def test_missing_and_unknown_variables_are_named() -> None:
    with pytest.raises(InvalidInput, match="Missing variable\\(s\\) 'b'; p uses: a, b"):
        check_variables(("a", "b"), {"a": 1}, "p")
    with pytest.raises(InvalidInput, match="Unknown variable\\(s\\) 'c'"):
        check_variables(("a",), {"a": 1, "c": 2}, "p")
    check_variables((), {}, "p")


def test_the_digest_is_canonical_and_covers_model_params_and_schema() -> None:
    base = content_digest("t {{ x }}", None, {"a": 1, "b": 2}, None)
    assert base == content_digest("t {{ x }}", None, {"b": 2, "a": 1}, None)
    assert base != content_digest("t {{ x }}", "gpt", {"a": 1, "b": 2}, None)
    assert base != content_digest("t {{ x }}", None, {"a": 1, "b": 3}, None)
    assert base != content_digest("t {{ x }}", None, {"a": 1, "b": 2}, {"type": "object"})
    assert base != content_digest("t {{x}}", None, {"a": 1, "b": 2}, None)
    with pytest.raises(InvalidInput, match="JSON"):
        content_digest("t", None, {"a": object()}, None)
