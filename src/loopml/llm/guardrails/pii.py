"""Personal data found by pattern and checksum, with no model to download.

Every kind is matched on the normalized text (full-width digits, zero-width characters and
look-alike letters undone) and checked the way its issuer defines it, so a number that only
looks like one is not reported:

=============  ==================================================================
kind           what is checked
=============  ==================================================================
email          local part, dotted domain, a TLD of letters
phone          E.164 (``+`` and 8-15 digits) or a national format with separators
               (North American ``(415) 555-0132``, trunk-``0`` European numbers,
               French pairs); a bare digit run is never a phone number
credit_card    13-19 digits (spaces or dashes allowed), a known issuer prefix
               (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro)
               and the Luhn checksum
iban           the country's length and the ISO 13616 mod-97 checksum
ssn            US Social Security number, separated (``123-45-6789``), never area
               000/666/900-999, group 00 or serial 0000; bare 9 digits only after
               "SSN" or "social security"
nino           UK National Insurance number: valid prefix letters and suffix A-D
dni / nie      Spanish DNI (8 digits and the mod-23 control letter) and NIE
               (X/Y/Z, 7 digits, control letter)
bsn            Dutch citizen service number: the 11-check; scores 0.4 unless "BSN"
               or "burgerservicenummer" comes before it (below the default min_score)
ipv4 / ipv6    a valid address (Python's ``ipaddress``); private, loopback and
               link-local addresses score lower (0.6)
=============  ==================================================================

With ``presidio = true`` in the rule's options, Presidio's pattern recognizers (the
``presidio-analyzer`` package) add the entities loopml does not find itself (US passports,
driver's licences, ITINs and bank numbers, UK NHS numbers, crypto wallets, MAC addresses,
medical licences…) as kinds ``presidio_<entity>``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any, ClassVar

from loopml.llm.guardrails.findings import Finding, SpanDetector
from loopml.llm.guardrails.normalize import Normalized
from loopml.llm.guardrails.options import Options

KINDS = (
    "email",
    "phone",
    "credit_card",
    "iban",
    "ssn",
    "nino",
    "dni",
    "nie",
    "bsn",
    "ipv4",
    "ipv6",
)
#: When two findings overlap, the kind earlier here wins (checksummed kinds first).
_PRIORITY = {
    kind: i
    for i, kind in enumerate(
        (
            "iban",
            "credit_card",
            "email",
            "dni",
            "nie",
            "ssn",
            "nino",
            "bsn",
            "ipv6",
            "ipv4",
            "phone",
        )
    )
}

# -- checksums ------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a card number.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """The issuer a card number's prefix and length belong to, or None.

    >>> card_brand("378282246310005"), card_brand("9111111111111111")
    ('amex', None)
    """
    n = len(digits)
    two, four, six = int(digits[:2]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= two <= 55 or 2221 <= four <= 2720) and n == 16:
        return "mastercard"
    if two in (34, 37) and n == 15:
        return "amex"
    if (four == 6011 or 644 <= int(digits[:3]) <= 649 or two == 65) and 16 <= n <= 19:
        return "discover"
    if 3528 <= four <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (300 <= int(digits[:3]) <= 305 or two in (36, 38, 39)) and 14 <= n <= 19:
        return "diners"
    if two == 62 and 16 <= n <= 19:
        return "unionpay"
    maestro = (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763)
    if (four in maestro or 500000 <= six <= 509999 or 560000 <= six <= 589999) and 12 <= n <= 19:
        return "maestro"
    return None


#: IBAN length by country (ISO 13616 registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """An IBAN (no spaces) of its country's length whose mod-97 checksum is 1.

    >>> iban_valid("GB82WEST12345698765432"), iban_valid("GB82WEST12345698765433")
    (True, False)
    """
    iban = iban.upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """A US SSN the SSA could have issued (never area 000, 666 or 9xx, group 00, serial 0000,
    nor the numbers published in advertisements)."""
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return f"{area}{group}{serial}" not in ("078051120", "219099999", "123456789")


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_letter(number: int) -> str:
    """The control letter of a Spanish DNI number (and of a NIE, X/Y/Z read as 0/1/2).

    >>> dni_letter(12345678)
    'Z'
    """
    return _DNI_LETTERS[number % 23]


def bsn_valid(digits: str) -> bool:
    """The Dutch BSN 11-check (9 digits, weights 9..2 and -1).

    >>> bsn_valid("111222333"), bsn_valid("111222334")
    (True, False)
    """
    if len(digits) != 9 or digits == "000000000":
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    return (total - int(digits[8])) % 11 == 0


_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})

# -- patterns -------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d[\d ().\-]{5,22}\d(?![\w])")
_PHONE_NANP = re.compile(
    r"(?<![\w+.-])(?<!\d[ .])(?:\+?1[ .\-]?)?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .\-])[2-9]\d{2}[ .\-]\d{4}(?![\w-])"
)
_PHONE_TRUNK = re.compile(
    r"(?<![\w+./:-])(?<!\d[ .])0[1-9]\d{0,3}(?:[ /\-]\d{2,8}){1,4}(?![\w/:-])(?![ .]\d)"
)
_PHONE_FR = re.compile(r"(?<![\w+.-])(?<!\d )0[1-9](?:[ .]\d{2}){4}(?![\w-]|[ .]\d)")
_CARD = re.compile(r"(?<![\d-])\d(?:[ \-]?\d){11,18}(?![\d-])")
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})(\d{2})")
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
_SSN_BARE = re.compile(
    r"(?i)\b(?:ssn|social security(?: number| no\.?| #)?)\D{0,12}?(?<!\d)(\d{3})(\d{2})(\d{4})(?!\d)"
)
_NINO = re.compile(
    r"(?<![A-Za-z0-9])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-D])"
    r"(?![A-Za-z0-9])"
)
_DNI = re.compile(r"(?<![\w-])(\d{8})[ -]?([A-Za-z])(?!\w)")
_NIE = re.compile(r"(?<![\w-])([XYZxyz])[ -]?(\d{7})[ -]?([A-Za-z])(?!\w)")
_BSN = re.compile(r"(?<![\w.-])(\d{9}|\d{4}\.\d{2}\.\d{3})(?![\w-]|\.\d)")
_BSN_CONTEXT = re.compile(
    r"(?i)\b(?:bsn|burgerservicenummer|sofi-?nummer|citizen service number)\b"
)
#: Six digits with at most two separators between each: in every phone number, card, IBAN
#: and national id; a text without it skips those patterns.
_NUMERIC = re.compile(r"\d(?:[ .\-/()]{0,2}\d){5}")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
    r"(?:%[\w.]+)?(?![\w:])"
)


class PIIDetector(SpanDetector):
    """Personal data by pattern and checksum (see the module's table). Options: ``entities``
    (kinds to report, default all), ``min_score`` (0.5), ``presidio`` (false) and
    ``presidio_entities`` (Presidio's entity names; default: those loopml does not find
    itself, but dates and URLs)."""

    name: ClassVar[str] = "pii"
    options: ClassVar[tuple[str, ...]] = ("entities", "min_score", "presidio", "presidio_entities")
    lookahead = 64

    def __init__(self, options: Options) -> None:
        self.entities = frozenset(options.choices("entities", KINDS, KINDS))
        self.min_score = options.number("min_score", 0.5, high=1.0)
        self.presidio: Any = None
        if options.boolean("presidio", False):
            self.presidio = _PresidioRecognizers(options)
        elif "presidio_entities" in options:
            raise options.fail("presidio_entities", "needs presidio = true")

    def scan(self, text: Normalized, rule: str) -> list[Finding]:
        found: list[tuple[str, int, int, float]] = []
        t = text.text
        for kind, start, end, score in self._candidates(t):
            if kind in self.entities and score >= self.min_score:
                found.append((kind, start, end, score))
        if self.presidio is not None:
            found.extend(
                (k, s, e, sc) for k, s, e, sc in self.presidio.scan(t) if sc >= self.min_score
            )
        kept = _resolve_overlaps(found)
        out = []
        for kind, start, end, score in kept:
            a, b = text.span(start, end)
            out.append(Finding(rule, kind, a, b, score))
        return out

    def _candidates(self, t: str) -> Iterator[tuple[str, int, int, float]]:
        if "@" in t:
            for m in _EMAIL.finditer(t):
                yield "email", m.start(), m.end(), 0.9
        if "." in t or ":" in t:
            yield from _ips(t)
        if _NUMERIC.search(t) is None:
            return  # every other kind has six digits or more, close together
        yield from _phones(t)
        for m in _CARD.finditer(t):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and card_brand(digits) and luhn_valid(digits):
                yield "credit_card", m.start(), m.end(), 0.95
        yield from _ibans(t)
        for m in _SSN.finditer(t):
            if ssn_valid(m.group(1), m.group(3), m.group(4)):
                yield "ssn", m.start(), m.end(), 0.85
        for m in _SSN_BARE.finditer(t):
            if ssn_valid(m.group(1), m.group(2), m.group(3)):
                yield "ssn", m.start(1), m.end(3), 0.85
        for m in _NINO.finditer(t):
            if m.group(1) not in _NINO_BAD_PREFIXES:
                yield "nino", m.start(), m.end(), 0.8
        for m in _DNI.finditer(t):
            if m.group(2).upper() == dni_letter(int(m.group(1))):
                yield "dni", m.start(), m.end(), 0.9
        for m in _NIE.finditer(t):
            number = int("XYZ".index(m.group(1).upper()) * 10_000_000 + int(m.group(2)))
            if m.group(3).upper() == dni_letter(number):
                yield "nie", m.start(), m.end(), 0.9
        for m in _BSN.finditer(t):
            if bsn_valid(m.group(1).replace(".", "")):
                before = t[max(0, m.start() - 40) : m.start()]
                yield "bsn", m.start(), m.end(), 0.85 if _BSN_CONTEXT.search(before) else 0.4


def _ips(t: str) -> Iterator[tuple[str, int, int, float]]:
    for m in _IPV4.finditer(t):
        try:
            v4 = ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        yield "ipv4", m.start(), m.end(), 0.8 if v4.is_global else 0.6
    if "::" in t or t.count(":") >= 7:
        for m in _IPV6.finditer(t):
            value = m.group()
            if sum(c.isalnum() for c in value) < 3:
                continue
            try:
                v6 = ipaddress.IPv6Address(value)
            except ValueError:
                continue
            yield "ipv6", m.start(), m.end(), 0.8 if v6.is_global else 0.6


def _phones(t: str) -> Iterator[tuple[str, int, int, float]]:
    for m in _PHONE_INTL.finditer(t):
        value = m.group()
        digits = sum(c.isdigit() for c in value)
        if not 8 <= digits <= 15 or value.count("(") != value.count(")"):
            continue
        if re.search(r"[ ().\-]{3,}|\.\.|--", value):
            continue
        yield "phone", m.start(), m.end(), 0.8
    for m in _PHONE_NANP.finditer(t):
        yield "phone", m.start(), m.end(), 0.75
    for m in _PHONE_FR.finditer(t):
        yield "phone", m.start(), m.end(), 0.75
    for m in _PHONE_TRUNK.finditer(t):
        digits = sum(c.isdigit() for c in m.group())
        if 9 <= digits <= 12:
            yield "phone", m.start(), m.end(), 0.7


def _ibans(t: str) -> Iterator[tuple[str, int, int, float]]:
    """IBANs written with or without single spaces: read exactly the country's length of
    characters from each country code and check the sum."""
    for m in _IBAN_START.finditer(t):
        length = IBAN_LENGTHS.get(m.group(1))
        if length is None:
            continue
        chars = [m.group(1), m.group(2)]
        count, i, n = 4, m.end(), len(t)
        while count < length and i < n:
            c = t[i]
            if c == " " and i + 1 < n and t[i + 1].isalnum() and t[i - 1] != " ":
                i += 1
                continue
            if not (c.isascii() and c.isalnum()):
                break
            chars.append(c)
            count += 1
            i += 1
        if count != length or (i < n and t[i].isascii() and t[i].isalnum()):
            continue
        if iban_valid("".join(chars)):
            yield "iban", m.start(), i, 0.95


def _resolve_overlaps(
    found: list[tuple[str, int, int, float]],
) -> list[tuple[str, int, int, float]]:
    """Of overlapping findings, keep the highest-priority kind (then the longest)."""
    if len(found) < 2:
        return found
    ranked = sorted(found, key=lambda f: (_PRIORITY.get(f[0], 99), -(f[2] - f[1]), f[1]))
    kept: list[tuple[str, int, int, float]] = []
    for f in ranked:
        if all(f[2] <= k[1] or f[1] >= k[2] for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f[1])


#: Presidio entities loopml finds itself (with checksums), and those left out by default:
#: dates, URLs and UUIDs are rarely personal data, and Presidio's URL recognizer fetches the
#: public suffix list over the network.
PRESIDIO_NATIVE = frozenset({"CREDIT_CARD", "US_SSN", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS"})
PRESIDIO_OFF = frozenset({"DATE_TIME", "URL", "UUID"})


class _PresidioRecognizers:
    """Presidio's predefined pattern recognizers, run without an NLP engine (so no spaCy
    model is needed); recognizers that need one (names, locations, phone numbers) are not
    used. ``entities`` (None: every pattern entity but :data:`PRESIDIO_NATIVE` and
    :data:`PRESIDIO_OFF`) chooses which."""

    def __init__(self, options: Options) -> None:
        try:
            from presidio_analyzer import PatternRecognizer, RecognizerRegistry
        except ImportError as exc:
            from loopml.exceptions import MissingDependency

            # Not a loopml extra: Presidio is the user's choice to add.
            raise MissingDependency(
                "The pii detector's presidio option needs the 'presidio-analyzer' package, "
                "which is not installed. Install it with: pip install presidio-analyzer "
                "(or set presidio = false)"
            ) from exc
        registry = RecognizerRegistry()
        registry.load_predefined_recognizers(languages=["en"])
        patterns = [r for r in registry.recognizers if isinstance(r, PatternRecognizer)]
        known = sorted({e for r in patterns for e in r.supported_entities})
        default = [e for e in known if e not in PRESIDIO_NATIVE | PRESIDIO_OFF]
        wanted = set(options.choices("presidio_entities", known, default))
        self.recognizers = [
            (r, [e for e in r.supported_entities if e in wanted])
            for r in patterns
            if wanted.intersection(r.supported_entities)
        ]

    def scan(self, text: str) -> Iterator[tuple[str, int, int, float]]:
        for recognizer, entities in self.recognizers:
            for result in recognizer.analyze(text, entities, None) or []:
                kind = f"presidio_{str(result.entity_type).lower()}"
                yield kind, int(result.start), int(result.end), float(result.score)
