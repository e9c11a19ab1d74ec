"""How loopml words counts and embedded messages, the same in every area's output."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 file``, ``2 files``, ``0 branches``: a count with its noun agreeing.

    >>> counted(1, "object"), counted(3, "branch"), counted(2, "copy", "copies")
    ('1 object', '3 branches', '2 copies')
    """
    if n == 1:
        return f"{n} {noun}"
    if plural is None:
        plural = noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{n} {plural}"


def clause(text: object) -> str:
    """Another message (an OS or library error) made fit to go before ``". "`` in ours:
    without its own closing full stop, so a message never reads ``..``."""
    return str(text).rstrip().removesuffix(".")


def shown(value: object, limit: int = 100, *, quote: bool = True) -> str:
    """``value`` for an error message (its repr, or its text with ``quote=False``), cut in the
    middle when longer than ``limit`` characters, so a huge input is not echoed whole.

    >>> shown("x" * 1000, 20)
    "'xxxxxxxx…xxxxxxxxx' (1000 characters)"
    """
    text = repr(value) if quote else str(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str) else len(text)
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]} ({size} characters)"
