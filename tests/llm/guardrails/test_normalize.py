"""Normalization undoes Unicode tricks and maps every span back to the original text."""

from __future__ import annotations

import pytest

from loopml.llm.guardrails.normalize import fold_term, normalize


def test_ascii_is_left_alone_with_identity_offsets() -> None:
    n = normalize("plain text 123")
    assert n.text == "plain text 123"
    assert n.span(6, 10) == (6, 10)
    assert n.position(14) == 14


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("４１１１", "4111"),  # full-width digits
        ("Ｉｇｎｏｒｅ", "Ignore"),  # full-width letters
        ("ig\u200bn\u200core\u2060", "ignore"),  # zero-width space, joiner, word joiner
        ("s\u00adecret", "secret"),  # soft hyphen
        ("\ufeffbom", "bom"),
        ("ignоre", "ignore"),  # Cyrillic о
        ("ΙGΝΟRΕ", "IGNORE"),  # Greek capitals
        ("ìgnóre", "ignore"),  # combining accents dropped
        ("ﬁle", "file"),  # ligature
        ("a\u00a0b", "a b"),  # no-break space
    ],
)
def test_tricks_are_undone(original: str, expected: str) -> None:
    assert normalize(original).text == expected


def test_spans_map_back_over_dropped_characters() -> None:
    original = "x 4\u200b1\u200b1\u200b1 y"
    n = normalize(original)
    assert n.text == "x 4111 y"
    start = n.text.index("4111")
    a, b = n.span(start, start + 4)
    assert original[a:b] == "4\u200b1\u200b1\u200b1"
    assert n.position(len(n.text)) == len(original)


def test_expanding_characters_map_to_their_source() -> None:
    original = "aﬁb"
    n = normalize(original)
    assert n.text == "afib"
    assert n.span(1, 2) == (1, 2)  # "f" comes from the ligature
    assert n.span(1, 3) == (1, 2)
    assert original[slice(*n.span(3, 4))] == "b"


def test_terms_fold_like_texts() -> None:
    assert fold_term("Ｂｏｍｂ") == "Bomb"
