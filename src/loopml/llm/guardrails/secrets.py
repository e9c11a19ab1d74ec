"""Credentials by their published formats, plus high-entropy values assigned to a key name.

==================  =============================================================
kind                format
==================  =============================================================
openai_key          ``sk-``, ``sk-proj-``, ``sk-svcacct-``, ``sk-admin-`` + 20 or more
anthropic_key       ``sk-ant-api03-…`` / ``sk-ant-admin01-…``
loopml_key          the gateway's own virtual keys, ``sk-lml-`` + 40
aws_access_key      ``AKIA``/``ASIA``/``ABIA``/``ACCA`` + 16 upper-case letters or digits
github_token        ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_`` + 36, ``github_pat_…``
slack_token         ``xoxb-``/``xoxp-``/``xoxa-``/``xoxr-``/``xoxs-``, Slack webhook URLs
google_api_key      ``AIza`` + 35
stripe_key          ``sk_live_``/``sk_test_``/``rk_live_``/``rk_test_`` + 16 or more
jwt                 three base64url parts whose header decodes to JSON with ``alg``
private_key         a PEM ``-----BEGIN … PRIVATE KEY-----`` block (to its END line, or
                    to the end of the text when the END line is missing)
assignment          ``api_key = …``, ``token: …``, ``password=…``, ``client_secret``…
                    whose value has 12+ characters, letters and digits, and at least
                    ``min_entropy`` bits of Shannon entropy per character (3.0)
==================  =============================================================
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from typing import ClassVar

from loopml.llm.guardrails.findings import Finding, SpanDetector
from loopml.llm.guardrails.normalize import Normalized
from loopml.llm.guardrails.options import Options

_PATTERNS: dict[str, re.Pattern[str]] = {
    "anthropic_key": re.compile(r"(?<![\w-])sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_\-]{32,}"),
    "loopml_key": re.compile(r"(?<![\w-])sk-lml-[A-Za-z0-9_\-]{32,}"),
    "openai_key": re.compile(
        r"(?<![\w-])sk-(?!ant-|lml-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}"
    ),
    "aws_access_key": re.compile(
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"
    ),
    "github_token": re.compile(
        r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"
    ),
    "slack_token": re.compile(
        r"(?<![A-Za-z0-9-])xox[abposr]-[A-Za-z0-9-]{10,}"
        r"|https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"
    ),
    "google_api_key": re.compile(r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_\-]{35}(?![A-Za-z0-9_-])"),
    "stripe_key": re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}"),
    "jwt": re.compile(
        r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    ),
    "private_key": re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)"
    ),
}
KINDS = (*_PATTERNS, "assignment")
_SCORES = {"assignment": 0.8, "openai_key": 0.9, "jwt": 0.9}
_ASSIGNMENT = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?:[A-Za-z0-9]{1,24}[_-]){0,4}"
    r"(?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?key|access[_-]?token|auth[_-]?token|"
    r"token|password|passwd|pwd|client[_-]?secret|private[_-]?key|credentials?)"
    r"[\"']?\s*(?::=|=>|[:=])\s*[\"']?([A-Za-z0-9/+_\-.=!@#$%^&*~]{12,})"
)
#: A cheap test that rules a text out before any pattern runs.
_HINTS = re.compile(
    r"sk-|AKIA|ASIA|ABIA|ACCA|gh[pousr]_|github_pat|xox|hooks\.slack|AIza|_live_|_test_|eyJ"
    r"|PRIVATE KEY"
)
_ASSIGN_HINTS = re.compile(r"(?i)key|secret|token|passw|pwd|credential")


def shannon_entropy(value: str) -> float:
    """Bits of entropy per character of ``value`` (by its own character frequencies).

    >>> round(shannon_entropy("aaaa"), 2), round(shannon_entropy("abcd"), 2)
    (0.0, 2.0)
    """
    if not value:
        return 0.0
    n = len(value)
    return abs(sum(c / n * math.log2(c / n) for c in Counter(value).values()))


def _jwt_header_ok(token: str) -> bool:
    head = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
        header = json.loads(decoded)
    except (binascii.Error, ValueError):
        # A header cut off mid-stream still starts like one: trust the eyJ prefix then.
        return len(head) < 16
    return isinstance(header, dict) and ("alg" in header or "typ" in header)


class SecretsDetector(SpanDetector):
    """Credentials (see the module's table). Options: ``kinds`` (default all),
    ``min_entropy`` (bits per character for ``assignment`` values, 3.0)."""

    name: ClassVar[str] = "secrets"
    options: ClassVar[tuple[str, ...]] = ("kinds", "min_entropy")
    lookahead = 80

    def __init__(self, options: Options) -> None:
        self.kinds = frozenset(options.choices("kinds", KINDS, KINDS))
        self.min_entropy = options.number("min_entropy", 3.0, high=8.0)
        self.patterns = [(k, p) for k, p in _PATTERNS.items() if k in self.kinds]

    def scan(self, text: Normalized, rule: str) -> list[Finding]:
        t = text.text
        found: list[tuple[str, int, int]] = []
        if _HINTS.search(t):
            for kind, pattern in self.patterns:
                for m in pattern.finditer(t):
                    if kind == "jwt" and not _jwt_header_ok(m.group()):
                        continue
                    if kind == "openai_key" and not _random_looking(m.group()[3:]):
                        continue
                    found.append((kind, m.start(), m.end()))
        if "assignment" in self.kinds and _ASSIGN_HINTS.search(t):
            for m in _ASSIGNMENT.finditer(t):
                value = m.group(1).rstrip(".")
                start = m.start(1)
                end = start + len(value)
                if any(s < end and start < e for _, s, e in found):
                    continue
                if _random_looking(value) and shannon_entropy(value) >= self.min_entropy:
                    found.append(("assignment", start, end))
        out = []
        for kind, start, end in sorted(found, key=lambda f: f[1]):
            a, b = text.span(start, end)
            out.append(Finding(rule, kind, a, b, _SCORES.get(kind, 0.95)))
        return out


def _random_looking(value: str) -> bool:
    """Letters and digits both, 12 characters or more: what generated secrets look like
    (and what ``get_api_key_from_vault`` or ``sk-learn-tutorial`` do not)."""
    return len(value) >= 12 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
