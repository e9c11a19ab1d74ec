"""The semantic cache's second stage: a near question is served a cached answer only when
the facts it names — numbers, dates, names, product codes — are the ones the cached question
named. "What does the Pro 14 cost?" is close to "What does the Pro 16 cost?" in any embedding;
here they differ.

Pure functions, no model: a regular-expression pass over NFKC-normalised text.
"""

from __future__ import annotations

import re
import unicodedata

_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
]
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?%?(?![\w])")
_CODE = re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*\b")
_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_SENTENCE_END = re.compile(r"[.!?:;\n]\s*$")
#: Capitalised words that name nothing (sentence starts are skipped anyway).
_COMMON = frozenset(
    [
        "i",
        "i'm",
        "i've",
        "i'd",
        "i'll",
        "what",
        "who",
        "whom",
        "whose",
        "which",
        "when",
        "where",
        "why",
        "how",
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "please",
        "tell",
        "give",
        "show",
        "explain",
        "list",
        "the",
        "a",
        "an",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "its",
        "this",
        "that",
        "these",
        "those",
        "hi",
        "hello",
        "hey",
        "thanks",
        "ok",
        "okay",
        "yes",
        "no",
    ]
)


def _number(token: str) -> str:
    plain = token.replace(",", "").lstrip("+")
    percent = plain.endswith("%")
    plain = plain.rstrip("%")
    try:
        value = float(plain)
    except ValueError:
        return token
    text = str(int(value)) if value.is_integer() else repr(value)
    return text + ("%" if percent else "")


def _scan(text: str) -> tuple[set[str], set[str], set[str]]:
    """(facts: numbers, codes and months; names: capitalised words not starting a
    sentence; every word), case-folded."""
    text = unicodedata.normalize("NFKC", text)
    facts: set[str] = set()
    names: set[str] = set()
    for match in _CODE.finditer(text):
        facts.add(match.group(0).casefold())
    stripped = _CODE.sub(" ", text)
    for match in _NUMBER.finditer(stripped):
        facts.add(_number(match.group(0)))
    words: set[str] = set()
    for match in _WORD.finditer(stripped):
        word = match.group(0).rstrip("'’-")
        folded = word.casefold()
        words.add(folded)
        if folded in _MONTHS:
            facts.add(folded)
            continue
        if not any(c.isupper() for c in word) or folded in _COMMON:
            continue
        before = stripped[: match.start()]
        starts = not before.strip() or _SENTENCE_END.search(before)
        if starts and word[0].isupper() and word[1:].islower():
            continue  # an ordinary word starting a sentence
        names.add(folded)
    return facts, names, words


def entities(text: str) -> frozenset[str]:
    """The facts ``text`` names: numbers (``1,000`` = ``1000.0`` = ``1000``), product codes
    (``XPS-13``, ``A17``), month names, and capitalised words that don't start a sentence,
    case-folded.

    >>> sorted(entities("What's the price of the Galaxy S24 in Berlin on March 3, 2025?"))
    ['2025', '3', 'berlin', 'galaxy', 'march', 's24']
    """
    facts, names, _ = _scan(text)
    return frozenset(facts | names)


def same_entities(query: str, cached: str) -> bool:
    """True when ``query`` and ``cached`` name the same facts: equal numbers, codes and
    months, and each one's capitalised names among the other's words (so "iphone" written
    in lower case still matches "iPhone").

    >>> same_entities("How much is the iPhone 15?", "iphone 15 price please")
    True
    >>> same_entities("How much is the iPhone 15?", "How much is the iPhone 14?")
    False
    >>> same_entities("Weather in Paris today?", "Weather in Lyon today?")
    False
    """
    facts_q, names_q, words_q = _scan(query)
    facts_c, names_c, words_c = _scan(cached)
    return facts_q == facts_c and names_q <= words_c and names_c <= words_q


__all__ = ["entities", "same_entities"]
