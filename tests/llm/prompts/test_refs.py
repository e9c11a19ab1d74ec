"""Prompt names, labels and references."""

from __future__ import annotations

import doctest

import pytest

from loopml.exceptions import InvalidInput
from loopml.llm.prompts import refs, template
from loopml.llm.prompts.refs import PromptRef, check_label, check_name


@pytest.mark.parametrize("name", ["support/answer", "a", "team-x/v2.prompt/answer_1", "x/2b"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("support@answer", "'@' is not allowed"),
        ("support answer", "' ' is not allowed"),
        ("/answer", "a part is empty"),
        ("a//b", "a part is empty"),
        ("a/.hidden", "starts with"),
        ("support/3", "only digits"),
        ("", "text like"),
        ("x" * 251, "longer than 250"),
    ],
)
def test_bad_names_are_named(name: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_name(name)
    assert fragment in str(caught.value)


def test_labels() -> None:
    assert check_label("production") == "production"
    with pytest.raises(InvalidInput, match="NAME@latest"):
        check_label("latest")
    for bad in ("", "a/b", "a@b", "x" * 65, "-x"):
        with pytest.raises(InvalidInput, match="Bad label"):
            check_label(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("support/answer", PromptRef("support/answer")),
        ("support/answer@latest", PromptRef("support/answer")),
        ("support/answer@production", PromptRef("support/answer", label="production")),
        ("support/answer/12", PromptRef("support/answer", version=12)),
        ("  answer/1 ", PromptRef("answer", version=1)),
    ],
)
def test_references(text: str, expected: PromptRef) -> None:
    assert PromptRef.parse(text) == expected


def test_a_reference_prints_back_as_itself() -> None:
    for text in ("a/b", "a/b@prod", "a/b/3"):
        assert str(PromptRef.parse(text)) == text


@pytest.mark.parametrize("text", ["a/b@", "a/b@x/y", "a/b/0", "@prod", "a@b@c"])
def test_bad_references(text: str) -> None:
    with pytest.raises(InvalidInput):
        PromptRef.parse(text)


@pytest.mark.parametrize("module", [refs, template])
def test_docstring_examples(module: object) -> None:
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0  # type: ignore[arg-type]
