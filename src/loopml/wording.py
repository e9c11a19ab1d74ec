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
