"""Every detector a rule can name, and the two simplest ones: banned terms and a custom
pattern.

==============  ======================================================  ==================
detector        finds                                                   module
==============  ======================================================  ==================
pii             personal data by pattern and checksum                   ``pii``
secrets         API keys, tokens, private keys, high-entropy values     ``secrets``
injection       prompt injection and jailbreak attempts (scored)        ``injection``
banned          banned terms and topics                                 here
regex           a pattern of your own                                   here
max_tokens      a conversation or answer over a token limit             ``checks``
json_schema     an answer that is not JSON valid for a schema           ``checks``
groundedness    an answer a function scores as not grounded in context  ``checks``
==============  ======================================================  ==================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from loopml.exceptions import InvalidConfig
from loopml.llm.guardrails.checks import GroundednessCheck, JsonSchemaCheck, MaxTokensCheck
from loopml.llm.guardrails.findings import Finding, SpanDetector, TextCheck
from loopml.llm.guardrails.injection import InjectionDetector
from loopml.llm.guardrails.normalize import Normalized, fold_term
from loopml.llm.guardrails.options import Options
from loopml.llm.guardrails.pii import PIIDetector
from loopml.llm.guardrails.secrets import SecretsDetector


def _term_pattern(term: str) -> str:
    words = fold_term(term).split()
    return r"\s+".join(re.escape(w) for w in words)


class BannedDetector(SpanDetector):
    """Banned terms and topics, matched as whole words, case-insensitively, on normalized
    text (so ``ｂｏｍｂ`` and ``b\u200bomb`` match ``bomb``).

    Options: ``terms`` (a list; kind ``banned_term``) and/or ``topics`` (a table of topic
    name → terms; the kind is the topic's name)."""

    name: ClassVar[str] = "banned"
    options: ClassVar[tuple[str, ...]] = ("terms", "topics")

    def __init__(self, options: Options) -> None:
        groups: dict[str, tuple[str, ...]] = {}
        terms = options.strings("terms")
        if terms:
            groups["banned_term"] = terms
        topics = options.table.get("topics", {})
        if not isinstance(topics, Mapping):
            raise options.fail("topics", f"must be a table of topic = [terms], got {topics!r}")
        for topic, words in topics.items():
            sub = Options({"terms": words}, f"{options.where}.topics", ("terms",))
            groups[str(topic)] = sub.strings("terms")
        if not groups:
            raise InvalidConfig(
                f"{options.where}: the banned detector needs terms = [...] or "
                '[topics] (e.g. topics = {weapons = ["bomb", "explosive"]})'
            )
        self.lookahead = max(len(fold_term(t)) for ts in groups.values() for t in ts) + 2
        alternatives = []
        self.kinds: list[str] = []
        for i, (kind, words) in enumerate(groups.items()):
            self.kinds.append(kind)
            body = "|".join(sorted((_term_pattern(w) for w in words), key=len, reverse=True))
            alternatives.append(f"(?P<g{i}>{body})")
        self.pattern = re.compile(
            r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE
        )

    def scan(self, text: Normalized, rule: str) -> list[Finding]:
        out = []
        for m in self.pattern.finditer(text.text):
            kind = self.kinds[int((m.lastgroup or "g0")[1:])]
            a, b = text.span(m.start(), m.end())
            out.append(Finding(rule, kind, a, b, 1.0))
        return out


class RegexDetector(SpanDetector):
    """A pattern of your own (Python ``re`` syntax), matched on the normalized text.
    Options: ``pattern`` (required), ``kind`` (the findings' kind, default ``match``),
    ``ignore_case`` (true), ``lookahead`` (the longest match, for streams; 64)."""

    name: ClassVar[str] = "regex"
    options: ClassVar[tuple[str, ...]] = ("pattern", "kind", "ignore_case", "lookahead")

    def __init__(self, options: Options) -> None:
        source = options.string("pattern")
        if source is None:
            raise InvalidConfig(f"{options.where}: the regex detector needs pattern = '…'")
        flags = re.IGNORECASE if options.boolean("ignore_case", True) else 0
        try:
            self.pattern = re.compile(source, flags)
        except re.error as exc:
            raise options.fail("pattern", f"{source!r} is not a valid pattern: {exc}") from None
        if self.pattern.search(""):
            raise options.fail("pattern", f"{source!r} matches the empty text; it must not")
        self.kind = options.string("kind", "match") or "match"
        self.lookahead = options.integer("lookahead", 64) or 64

    def scan(self, text: Normalized, rule: str) -> list[Finding]:
        out = []
        for m in self.pattern.finditer(text.text):
            a, b = text.span(m.start(), m.end())
            out.append(Finding(rule, self.kind, a, b, 1.0))
        return out


#: Detector name → class.
DETECTORS: dict[str, type[SpanDetector] | type[TextCheck]] = {
    "pii": PIIDetector,
    "secrets": SecretsDetector,
    "injection": InjectionDetector,
    "banned": BannedDetector,
    "regex": RegexDetector,
    "max_tokens": MaxTokensCheck,
    "json_schema": JsonSchemaCheck,
    "groundedness": GroundednessCheck,
}


def build(detector: str, options: Options) -> SpanDetector | TextCheck:
    """The detector named ``detector`` configured from ``options``."""
    return DETECTORS[detector](options)
