"""Prompt names, label names and references, pure.

A name is one or more ``/``-separated parts of letters, digits, ``-``, ``_`` and ``.``
(``support/answer``), each starting with a letter or digit; its last part is not only
digits, because a reference's ``/3`` is a version::

    support/answer             the latest version
    support/answer@latest      the same
    support/answer@production  the version the label points at
    support/answer/3           version 3

>>> PromptRef.parse("support/answer@production")
PromptRef(name='support/answer', version=None, label='production')
>>> PromptRef.parse("support/answer/3")
PromptRef(name='support/answer', version=3, label=None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loopml.exceptions import InvalidInput
from loopml.store.tables import KEY

_PART = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
_NAME = re.compile(rf"{_PART}(?:/{_PART})*\Z")
_LABEL = re.compile(rf"{_PART}\Z")
MAX_LABEL = 64
#: A label no one can set: ``NAME@latest`` is always the newest version.
LATEST = "latest"


def check_name(name: object) -> str:
    """``name`` if it is a valid prompt name, else an :class:`InvalidInput` naming it."""
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"A prompt name is text like 'support/answer', got {name!r}")
    if len(name) > KEY:
        raise InvalidInput(f"The prompt name {name[:40]!r}... is longer than {KEY} characters")
    if not _NAME.match(name):
        bad = next((c for c in name if not (c.isascii() and (c.isalnum() or c in "-_./"))), None)
        why = (
            f"{bad!r} is not allowed"
            if bad is not None
            else "a part is empty or starts with '-', '_' or '.'"
        )
        raise InvalidInput(
            f"Bad prompt name {name!r}: {why}. A name is parts of letters, digits, '-', '_' and "
            "'.' separated by '/' (like 'support/answer'); '@' starts a label in a reference"
        )
    if name.rsplit("/", 1)[-1].isdigit():
        raise InvalidInput(
            f"Bad prompt name {name!r}: its last part is only digits, which a reference reads "
            f"as a version ({name.rsplit('/', 1)[0]}/VERSION); add a letter"
        )
    return name


def check_label(label: object) -> str:
    """``label`` if it is a valid label name (``latest`` is reserved)."""
    if not isinstance(label, str) or not _LABEL.match(label) or len(label) > MAX_LABEL:
        raise InvalidInput(
            f"Bad label {label!r}: a label is letters, digits, '-', '_' and '.' (at most "
            f"{MAX_LABEL}), like 'production' or 'staging'"
        )
    if label == LATEST:
        raise InvalidInput(
            "'latest' is not a label you can move: NAME@latest always means the newest version"
        )
    return label


@dataclass(frozen=True)
class PromptRef:
    """A parsed reference: a name with a version, a label, or neither (the latest)."""

    name: str
    version: int | None = None
    label: str | None = None

    @classmethod
    def parse(cls, ref: str) -> PromptRef:
        if not isinstance(ref, str):
            raise InvalidInput(
                f"A prompt reference is text like 'support/answer@production', got {ref!r}"
            )
        text = ref.strip()
        name, at, label = text.partition("@")
        if at:
            if label == LATEST:
                return cls(check_name(name))
            if not _LABEL.match(label):
                raise InvalidInput(
                    f"Bad prompt reference {ref!r}: after '@' comes a label like 'production' "
                    "(NAME@LABEL, NAME/VERSION or NAME)"
                )
            return cls(check_name(name), label=label)
        head, slash, tail = text.rpartition("/")
        if slash and tail.isdigit():
            version = int(tail)
            if version < 1:
                raise InvalidInput(f"Bad prompt reference {ref!r}: versions start at 1")
            return cls(check_name(head), version=version)
        return cls(check_name(text))

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        if self.label is not None:
            return f"{self.name}@{self.label}"
        return self.name


# -- A/B splits of a label -------------------------------------------------------------------

#: A label's traffic split: ``((version, weight), ...)``, weights in percent summing to 100,
#: in the order their bucket ranges are laid out.
Split = tuple[tuple[int, float], ...]


def check_split(weights: object) -> Split:
    """``weights`` (``{4: 50, 5: 50}`` or ``[(4, 50), (5, 50)]``) as a :data:`Split`: two or
    more distinct versions, each weight above 0, the weights summing to 100.

    >>> check_split({4: 90, 5: 10})
    ((4, 90), (5, 10))
    """
    items = list(weights.items()) if isinstance(weights, dict) else weights
    if not isinstance(items, list | tuple) or not all(
        isinstance(item, list | tuple) and len(item) == 2 for item in items
    ):
        raise InvalidInput(
            f"A split maps versions to percent weights, like {{4: 50, 5: 50}}, got {weights!r}"
        )
    out: list[tuple[int, float]] = []
    for version, weight in items:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInput(f"A split's versions are whole numbers from 1, got {version!r}")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InvalidInput(
                f"The weight of version {version} is {weight!r}: a percentage above 0"
            )
        if not (weight > 0 and weight <= 100):  # also refuses NaN
            raise InvalidInput(
                f"The weight of version {version} is {weight!r}: a percentage above 0 and at "
                "most 100"
            )
        if any(v == version for v, _ in out):
            raise InvalidInput(f"Version {version} is in the split twice")
        out.append((version, weight))
    if len(out) < 2:
        raise InvalidInput(
            f"A split needs two or more versions, got {len(out)}; to point the label at one "
            "version, set it (`loopml prompts label NAME LABEL VERSION`)"
        )
    total = sum(w for _, w in out)
    if abs(total - 100) > 1e-9:
        shown = " + ".join(f"{w:g} (version {v})" for v, w in out)
        raise InvalidInput(f"A split's weights sum to 100; {shown} = {total:g}")
    return tuple(out)


def split_text(split: Split) -> str:
    """``4 (50%) / 5 (50%)``: how listings show a split.

    >>> split_text(((4, 90), (5, 10)))
    '4 (90%) / 5 (10%)'
    """
    return " / ".join(f"{v} ({w:g}%)" for v, w in split)


def choose(split: Split, name: str, label: str, key: str) -> int:
    """The version of ``split`` that answers the end user ``key`` under ``NAME@LABEL``: the
    key hashes (as a serving A/B test's does, :func:`loopml.serving.router.bucket` of
    ``"NAME@LABEL"``) to a bucket in [0, 100); the versions own consecutive ranges of it, in
    the split's order, as wide as their weights. The same key always gets the same version;
    changing the weights moves only the keys whose range changed hands."""
    from loopml.serving.router import bucket

    place = bucket(f"{name}@{label}", key)
    edge = 0.0
    for version, weight in split:
        edge += weight
        if place < edge:
            return version
    return split[-1][0]  # a sum of 99.99999… within rounding
