"""Prompt injection and jailbreak attempts, scored by heuristics (and an optional classifier).

Each pattern belongs to a category and carries a weight; a text's score is the noisy-or of
the strongest hit of each category (``1 - Π(1 - w)``), so two weak signals together can
cross the threshold while one weak signal alone does not. Patterns run on the normalized
text with digits read as the letters they imitate (``1gn0re`` → ``ignore``), so zero-width
characters, full-width letters, homoglyphs and leetspeak don't hide a phrase.

=====================  ===========================================================
category               examples
=====================  ===========================================================
instruction_override   "ignore all previous instructions", "disregard the rules
                       above", "from now on you …", "new instructions:"
roleplay_jailbreak     "DAN", "do anything now", "developer mode", "pretend you
                       have no restrictions", "you are no longer bound by …"
prompt_exfiltration    "reveal your system prompt", "repeat the text above",
                       "what were your initial instructions"
delimiter_injection    chat-template tokens (``<|im_start|>``, ``[INST]``,
                       ``<<SYS>>``), fake ``system:`` lines, ``</system>`` tags,
                       markdown images that send data to a URL
encoded_payload        base64 or hex that decodes to any of the above, or an
                       instruction to decode and obey
=====================  ===========================================================

Benign look-alikes stay under the default threshold (0.5): "ignore the noise in this data",
"please disregard my earlier message", "act as a translator", "what are the rules of chess".

A local classifier can add its judgement: ``classifier = "module:function"`` names a
function of the text returning a probability (0-1) that it is an injection; the higher of
the two scores counts. Nothing is downloaded.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any, ClassVar

from loopml.llm.guardrails.findings import Finding, SpanDetector
from loopml.llm.guardrails.normalize import Normalized, normalize
from loopml.llm.guardrails.options import Options, load_function

#: Digits and symbols read as the letters they imitate (one for one, so offsets hold).
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a",
                       "$": "s", "!": "i", "|": "l"})  # fmt: skip

_W = r"(?:\s+[\w'’-]+){0,4}?"  # up to four words in between
_STRONG_NOUNS = (
    r"(?:instructions?|prompts?|rules|guidelines|directives?|directions|programming|guardrails"
    r"|polic(?:y|ies)|constraints|restrictions|system\s+messages?|commands)"
)
_WEAK_NOUNS = r"(?:messages?|context|text|conversation|input|everything)"
_OVERRIDE_VERBS = (
    r"(?:ignore|ignoring|disregard|forget|override|bypass|skip|neglect|abandon|drop|discard)"
)
_SCOPE = r"(?:previous|prior|above|earlier|preceding|all|any|your|the|system|initial|original|these|those|every|old)"

#: Words (lower case) one of which a text must hold for the pattern to be tried at all.
_VERBS = ("ignor", "disregard", "forget", "overrid", "bypass", "skip", "neglect", "abandon",
          "drop", "discard")  # fmt: skip
PATTERNS: tuple[tuple[str, float, tuple[str, ...], str], ...] = (
    # -- instruction override
    (
        "instruction_override",
        0.9,
        _VERBS,
        rf"\b{_OVERRIDE_VERBS}\b{_W}\s+{_SCOPE}\b{_W}\s+{_STRONG_NOUNS}\b",
    ),
    (
        "instruction_override",
        0.4,
        _VERBS,
        rf"\b{_OVERRIDE_VERBS}\b{_W}\s+{_SCOPE}\b{_W}\s+{_WEAK_NOUNS}\b",
    ),
    (
        "instruction_override",
        0.8,
        _VERBS,
        rf"\b{_OVERRIDE_VERBS}\s+(?:everything|all|anything)\s+(?:above|before|earlier|previously|"
        r"you\s+(?:were|have\s+been)\s+told)",
    ),
    (
        "instruction_override",
        0.55,
        ("instruction", "rule", "task", "directive", "order"),
        r"\b(?:new|updated|real|actual|true|revised|secret)\s+(?:instructions?|rules|task|directives?|orders)\s*[:\-]",
    ),
    (
        "instruction_override",
        0.5,
        ("now",),
        r"\bfrom\s+now\s+on\b[,:]?\s+(?:you|your|act|respond|answer|only|always|never|ignore|reply)",
    ),
    (
        "instruction_override",
        0.35,
        ("follow", "obey", "comply"),
        r"\b(?:do\s+not|don't|never)\s+(?:follow|obey|comply\s+with)\s+(?:the|any)\b",
    ),
    (
        "instruction_override",
        0.6,
        ("follow", "obey", "comply"),
        rf"\b(?:do\s+not|don't|never|stop)\s+(?:follow(?:ing)?|obey(?:ing)?|comply(?:ing)?\s+with)"
        rf"\s+(?:your|the\s+system(?:'s)?|the\s+developer(?:'s)?)\s+{_STRONG_NOUNS}",
    ),
    ("instruction_override", 0.3, ("now",), r"\byou\s+(?:will|must|shall)\s+now\b"),
    # -- role-play jailbreaks
    # "I can't do anything now" is no attack: weak alone, strong with "DAN" or in capitals.
    ("roleplay_jailbreak", 0.45, ("anything",), r"\bdo\s+anything\s+now\b"),
    (
        "roleplay_jailbreak",
        0.8,
        ("mode",),
        r"\b(?:developer|god|jailbreak|jailbroken|unrestricted|unfiltered|evil|dan|debug|sudo)\s+mode\b",
    ),
    (
        "roleplay_jailbreak",
        0.85,
        (
            "restriction",
            "rule",
            "limit",
            "filter",
            "guideline",
            "ethic",
            "moral",
            "censor",
            "polic",
            "safety",
        ),
        r"\b(?:pretend|act|roleplay|role-play|imagine|behave|respond)\b[^.\n]{0,60}?"
        r"\b(?:no|without|free\s+(?:of|from)|not\s+bound\s+by|never\s+follow|ignores?|don't\s+have)\b"
        r"[^.\n]{0,30}?\b(?:restrictions?|rules|limits|limitations|filters?|guidelines|ethics|"
        r"morals|censorship|polic(?:y|ies)|safety)\b",
    ),
    (
        "roleplay_jailbreak",
        0.75,
        ("you",),
        r"\byou\s+are\s+(?:now\s+)?(?:no\s+longer|not)\s+(?:bound|restricted|limited|an\s+ai|"
        r"chatgpt|claude|an\s+assistant|required\s+to\s+follow)",
    ),
    ("roleplay_jailbreak", 0.6, ("jailbr",), r"\bjailbr(?:eak|oken|eaking)\b"),
    (
        "roleplay_jailbreak",
        0.35,
        ("restriction", "filter", "censor", "limitation"),
        r"\b(?:without\s+any|no)\s+(?:restrictions|filters|censorship|limitations)\b",
    ),
    ("roleplay_jailbreak", 0.3, ("character",), r"\bstay\s+in\s+character\b"),
    # -- system prompt exfiltration
    (
        "prompt_exfiltration",
        0.8,
        ("prompt", "message", "instruction", "rule", "guideline", "directive", "above", "before"),
        r"\b(?:reveal|show|print|output|repeat|display|tell\s+me|give\s+me|leak|dump|recite|"
        r"spell\s+out|write\s+out|copy|paste|what\s+(?:is|are|was|were))\b[^.\n?]{0,40}?"
        r"\b(?:(?:system|hidden|secret|initial|original|developer)\s+(?:prompt|message|instructions)|"
        r"your\s+(?:instructions|prompt|rules|guidelines|directives)|"
        r"(?:everything|the\s+(?:text|words|message|instructions))\s+(?:above|before\s+this))",
    ),
    (
        "prompt_exfiltration",
        0.7,
        ("above", "before"),
        r"\b(?:repeat|print|output)\s+(?:everything|all|the\s+words|the\s+text)\s+(?:above|before)",
    ),
    # -- delimiter and markdown injection
    (
        "delimiter_injection",
        0.9,
        ("<|",),
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id)\|>",
    ),
    ("delimiter_injection", 0.8, ("inst]", "sys>>", "sys]"), r"\[/?INST\]|<</?SYS>>|\[/?SYS\]"),
    (
        "delimiter_injection",
        0.6,
        ("system>", "instruction>", "instructions>", "system_prompt>", "admin>"),
        r"</?(?:system|instructions?|system_prompt|admin)>",
    ),
    (
        "delimiter_injection",
        0.5,
        ("system", "developer"),
        r"(?:^|\n)[ \t]*(?:#{1,6}[ \t]*|\*\*)?(?:system|developer)[ \t]*(?:\*\*)?[ \t]*:[ \t]*\S",
    ),
    (
        "delimiter_injection",
        0.6,
        ("---", "===", "###", "***"),
        r"(?<![-=#*])[-=#*]{3,}[ \t]*(?:end|begin|start)\s+(?:of\s+)?(?:system|user|prompt|instructions|context)",
    ),
    (
        "delimiter_injection",
        0.5,
        ("![",),
        r"!\[[^\]\n]{0,200}\]\(https?://[^)\s?&]{0,500}[?&][\w-]{1,64}=[^)\s]{0,1000}\)",
    ),
    # -- encoded payloads (the decoded text is scanned as well, below)
    (
        "encoded_payload",
        0.6,
        ("decode", "base64", "rot13", "hex"),
        r"\b(?:decode|base64|rot13|hex)\b[^.\n]{0,60}?\b(?:follow|execute|run|obey|do\s+what|comply)",
    ),
)
_COMPILED = tuple((cat, w, words, re.compile(p, re.IGNORECASE)) for cat, w, words, p in PATTERNS)
#: Letters spaced or dotted apart ("i g n o r e  a l l", "i.g.n.o.r.e") hide words from the
#: patterns above: such runs are read again joined up (a wider gap is a word break).
_SPACED = re.compile(r"(?<!\w)(?:\w[\s.*|/\-]{1,3}){3,}\w(?!\w)")
#: "Do Anything Now" in capitals, as the DAN prompts write it.
_DO_ANYTHING = re.compile(r"\bDo\s+Anything\s+Now\b")
#: "DAN" in capitals (a name otherwise): weak alone, strong as the jailbreak's persona.
_DAN = re.compile(r"\bDAN\b")
_DAN_PERSONA = re.compile(
    r"(?i:\b(?:you\s+are|you're|act\s+as|become|pretend\s+to\s+be)\s+(?:now\s+)?)DAN\b"
    r"|\bDAN\b(?:\s+(?:prompt|mode|jailbreak)|,?\s+(?i:which\s+stands))"
)
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}){16,}(?![0-9A-Fa-f])")
CATEGORIES = (
    "instruction_override",
    "roleplay_jailbreak",
    "prompt_exfiltration",
    "delimiter_injection",
    "encoded_payload",
)


def _hits(text: str) -> list[tuple[str, float, int, int]]:
    hits = _pattern_hits(text)
    joined = _despaced(text)
    if joined is not None:
        other, index = joined
        for category, weight, start, end in _pattern_hits(other):
            hits.append((category, weight, index[start], index[end - 1] + 1))
    return hits


def _pattern_hits(text: str) -> list[tuple[str, float, int, int]]:
    plain = text.translate(_LEET)
    folded = plain != text
    lowered, plain_lowered = text.lower(), plain.lower() if folded else None
    hits = []
    for category, weight, words, pattern in _COMPILED:
        # Patterns read the text as it is ("<|im_start|>" must not fold to "<lim_start") and,
        # when it differs, leet-folded; a pattern runs only on a text that holds one of its
        # words (most texts hold none, and a scan then costs a few µs).
        candidates = [(text, lowered)]
        if folded and plain_lowered is not None:
            candidates.append((plain, plain_lowered))
        for candidate, low in candidates:
            if any(w in low for w in words):
                for m in pattern.finditer(candidate):
                    hits.append((category, weight, m.start(), m.end()))
    if "DAN" in text:
        for m in _DAN.finditer(text):
            hits.append(("roleplay_jailbreak", 0.3, m.start(), m.end()))
        for m in _DAN_PERSONA.finditer(text):
            hits.append(("roleplay_jailbreak", 0.85, m.start(), m.end()))
    if "Anything" in text:
        for m in _DO_ANYTHING.finditer(text):
            hits.append(("roleplay_jailbreak", 0.85, m.start(), m.end()))
    return hits


def _despaced(text: str) -> tuple[str, list[int]] | None:
    """``text`` with spaced-apart letters joined up, and each character's offset in
    ``text``; None when nothing is spaced apart."""
    if _SPACED.search(text) is None:
        return None
    out: list[str] = []
    index: list[int] = []
    at = 0
    for m in _SPACED.finditer(text):
        out.append(text[at : m.start()])
        index.extend(range(at, m.start()))
        i, run = m.start(), m.end()
        while i < run:
            if text[i].isalnum() or text[i] == "_":
                out.append(text[i])
                index.append(i)
                i += 1
                continue
            gap = i
            while i < run and not (text[i].isalnum() or text[i] == "_"):
                i += 1
            if i - gap >= 2:  # a wider gap separates words
                out.append(" ")
                index.append(gap)
        at = m.end()
    out.append(text[at:])
    index.extend(range(at, len(text)))
    return "".join(out), index


def _decoded(payload: str, hexadecimal: bool) -> str | None:
    try:
        raw = bytes.fromhex(payload) if hexadecimal else base64.b64decode(payload + "==")
        decoded = raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    printable = sum(c.isprintable() or c.isspace() for c in decoded)
    return decoded if decoded and printable / len(decoded) > 0.9 else None


def score_hits(hits: list[tuple[str, float, int, int]]) -> float:
    """The noisy-or of the strongest hit per category."""
    best: dict[str, float] = {}
    for category, weight, _, _ in hits:
        best[category] = max(best.get(category, 0.0), weight)
    miss = 1.0
    for weight in best.values():
        miss *= 1.0 - weight
    return 1.0 - miss


class InjectionDetector(SpanDetector):
    """Scored injection and jailbreak heuristics (see the module's table). Options:
    ``threshold`` (0.5), ``categories`` (default all), ``classifier`` ("module:function")."""

    name: ClassVar[str] = "injection"
    options: ClassVar[tuple[str, ...]] = ("threshold", "categories", "classifier")
    # System prompts are the operator's own words; earlier assistant turns talk about
    # instructions all the time. What the user sends and what tools return is what attacks.
    default_roles: ClassVar[tuple[str, ...] | None] = ("user", "tool", "function")
    lookahead = 160

    def __init__(self, options: Options) -> None:
        self.threshold = options.number("threshold", 0.5, high=1.0)
        self.categories = frozenset(options.choices("categories", CATEGORIES, CATEGORIES))
        self.classifier_spec = options.function("classifier")
        self.deterministic = self.classifier_spec is None
        self._classifier: Callable[[str], Any] | None = None

    def classifier(self) -> Callable[[str], Any] | None:
        """The configured classifier, imported on first use."""
        if self.classifier_spec is not None and self._classifier is None:
            self._classifier = load_function(self.classifier_spec)
        return self._classifier

    def score(self, text: Normalized) -> tuple[float, list[tuple[str, float, int, int]]]:
        """The heuristic score of a text and the hits behind it (normalized offsets)."""
        t = text.text
        hits = [h for h in _hits(t) if h[0] in self.categories]
        if "encoded_payload" in self.categories:
            hits.extend(self._encoded(t))
        return score_hits(hits), hits

    def _encoded(self, t: str) -> list[tuple[str, float, int, int]]:
        found = []
        for pattern, hexadecimal in ((_BASE64, False), (_HEX, True)):
            for m in pattern.finditer(t):
                decoded = _decoded(m.group(), hexadecimal)
                if decoded is None:
                    continue
                inner = score_hits(_hits(normalize(decoded).text))
                if inner >= self.threshold:
                    found.append(("encoded_payload", 0.9, m.start(), m.end()))
        return found

    def scan(self, text: Normalized, rule: str) -> list[Finding]:
        score, hits = self.score(text)
        classifier = self.classifier()
        if classifier is not None:
            probability = float(classifier(text.original))
            if probability > score:
                score = probability
                if not hits and probability >= self.threshold:
                    hits = [("classifier", probability, 0, len(text.text))]
        if score < self.threshold:
            return []
        findings = []
        for category, _, start, end in sorted(hits, key=lambda h: h[2]):
            a, b = text.span(start, end)
            findings.append(Finding(rule, category, a, b, score))
        return findings
