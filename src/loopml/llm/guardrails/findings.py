"""What a detector reports and the two shapes of detector a rule can run.

A :class:`SpanDetector` points at spans of a text (an email address, a key, an injection
phrase): its findings can be redacted. A :class:`TextCheck` judges a whole text (too many
tokens, not valid JSON for the schema, not grounded in the context): its findings can block
or flag, never redact. Findings never hold the matched value, only where it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from loopml.llm.guardrails.normalize import Normalized
from loopml.llm.guardrails.options import Options


@dataclass(frozen=True)
class Finding:
    """One thing a rule found: its ``kind`` (``credit_card``, ``aws_access_key``,
    ``instruction_override``…), where it is in the original text (``[start, end)``), how sure
    the detector is (``score``, 0 to 1), and for input the index of the message it is in."""

    rule: str
    kind: str
    start: int
    end: int
    score: float
    message: int | None = None
    #: What was wrong, for checks of a whole text (``$.age: type``); never the text itself.
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rule": self.rule,
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 3),
        }
        if self.message is not None:
            data["message"] = self.message
        if self.detail is not None:
            data["detail"] = self.detail
        return data


class SpanDetector(ABC):
    """Finds spans in one text. Subclasses set ``name`` and ``options`` (the option keys a
    rule may give) and build themselves from those options in ``__init__``."""

    name: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()
    #: Roles of input messages scanned when a rule gives no ``roles`` (None: every role).
    default_roles: ClassVar[tuple[str, ...] | None] = None
    #: The longest value (in normalized characters) this detector can recognize only once it
    #: is complete; a stream holds back at least this much (see ``loopml.llm.guardrails.stream``).
    lookahead: int = 64
    #: The same text always gives the same findings (so they can be cached); false for a
    #: detector that calls out to a function of the user's.
    deterministic: bool = True

    @abstractmethod
    def __init__(self, options: Options) -> None:
        """Read the rule's options (an unknown or bad one raises ``InvalidConfig``)."""

    @abstractmethod
    def scan(self, text: Normalized, rule: str) -> list[Finding]:
        """Findings on ``text.original`` (offsets of the original), matched on ``text.text``."""


class TextCheck(ABC):
    """Judges a whole text (output) or a whole conversation (input)."""

    name: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()
    stages: ClassVar[frozenset[str]] = frozenset({"input", "output"})

    @abstractmethod
    def __init__(self, options: Options) -> None:
        """Read the rule's options (an unknown or bad one raises ``InvalidConfig``)."""

    def check_messages(self, messages: Sequence[Mapping[str, Any]], rule: str) -> list[Finding]:
        """Findings on a conversation (input stage)."""
        raise NotImplementedError(f"the {self.name} detector does not check input")

    def check_text(self, text: str, rule: str, *, context: Any = None) -> list[Finding] | None:
        """Findings on an answer (output stage); None when the check does not apply (a
        groundedness check given no context)."""
        raise NotImplementedError(f"the {self.name} detector does not check output")
