"""Text as detectors see it: Unicode tricks undone, with a map back to the original.

An attacker hides a card number or an injection phrase from a pattern with characters a
reader never notices: zero-width spaces inside ``4111​1111…``, full-width digits
``４１１１``, a Cyrillic ``о`` in ``ignоre``, combining accents. :func:`normalize` undoes
each of them character by character (compatibility decomposition, format characters and
combining marks dropped, common Cyrillic and Greek look-alikes mapped to Latin letters) and
remembers, for every character it keeps, where it came from, so a finding on the normalized
text redacts the right span of the original text:

>>> n = normalize("card: ４１１１\\u200b1111")
>>> n.text
'card: 41111111'
>>> n.span(6, 14)
(6, 15)
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

#: Cyrillic and Greek letters drawn like Latin ones (what homoglyph attacks use), lower and
#: upper case.
HOMOGLYPHS: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
    "ј": "j", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ɡ": "g", "ӏ": "l", "ь": "b",
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "К": "K", "М": "M", "Н": "H", "О": "O",
    "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ї": "I",
    "Ј": "J", "Һ": "H", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "γ": "y",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Latin look-alikes outside ASCII that compatibility decomposition keeps
    "ı": "i", "ȷ": "j", "ł": "l", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ß": "ss",
}  # fmt: skip

#: Categories dropped: format characters (zero-width space and joiners, soft hyphen, BOM,
#: bidirectional marks) and combining marks (accents, variation selectors).
_DROPPED = frozenset({"Cf", "Mn", "Me"})


@lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """What one character becomes ("" when dropped)."""
    out = []
    for c in unicodedata.normalize("NFKD", char):
        if unicodedata.category(c) in _DROPPED:
            continue
        out.append(HOMOGLYPHS.get(c, c))
    folded = "".join(out)
    # A compatibility form can hide another look-alike (full-width Cyrillic does not exist,
    # but a mapped letter might decompose): one more pass is enough.
    return folded if folded.isascii() else "".join(HOMOGLYPHS.get(c, c) for c in folded)


@dataclass(frozen=True)
class Normalized:
    """A normalized text and where each of its characters came from in ``original``.

    ``starts[i]``/``ends[i]`` bound the original characters normalized character ``i`` came
    from; both are None when the text needed no change (plain ASCII), and offsets are then
    the same in both texts.
    """

    original: str
    text: str
    starts: tuple[int, ...] | None = None
    ends: tuple[int, ...] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the normalized span ``[start, end)``."""
        if self.starts is None or self.ends is None:
            return start, end
        if end <= start:
            at = self.starts[start] if start < len(self.starts) else len(self.original)
            return at, at
        return self.starts[start], self.ends[end - 1]

    def position(self, index: int) -> int:
        """The original offset of normalized offset ``index`` (the length maps to the end)."""
        if self.starts is None:
            return index
        return self.starts[index] if index < len(self.starts) else len(self.original)


def normalize(text: str) -> Normalized:
    """``text`` with zero-width and other format characters and combining marks removed,
    compatibility forms (full-width digits and letters, ligatures, non-breaking spaces)
    decomposed, and Cyrillic/Greek look-alikes mapped to Latin, plus the offset map back."""
    if text.isascii():
        return Normalized(text, text)
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for i, char in enumerate(text):
        if char.isascii():
            pieces.append(char)
            starts.append(i)
            ends.append(i + 1)
            continue
        folded = _fold(char)
        for c in folded:
            pieces.append(c)
            starts.append(i)
            ends.append(i + 1)
    return Normalized(text, "".join(pieces), tuple(starts), tuple(ends))


def fold_term(term: str) -> str:
    """A banned term or phrase normalized the way texts are, for matching against them."""
    return normalize(term).text
