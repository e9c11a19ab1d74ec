"""Prompt templates, pure: parsing, the variables a template uses, rendering, and the
content digest a version is addressed by.

A template is text (a ``str``) or a chat (a list of ``{"role", "content"}`` messages). A
variable is written ``{{ name }}`` (spaces inside the braces optional); a name is letters,
digits and ``_``, not starting with a digit. Everything else is literal text: a single
``{`` or ``}`` (JSON examples, say) needs no escaping, and ``\\{{`` writes a literal ``{{``.

>>> parse_text("Answer {{ question }} using {{context}}.").variables
('question', 'context')
>>> render_text(parse_text('Say {"a": {{ x }}} or \\\\{{ x }}'), {"x": 1})
'Say {"a": 1} or {{ x }}'
>>> parse_text("Hello {{ name")
Traceback (most recent call last):
...
loopml.exceptions.InvalidInput: Template: '{{' at line 1, character 7 is not closed by '}}'; write \\{{ for a literal '{{'
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loopml.exceptions import InvalidInput

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Message keys a chat template may hold besides ``role`` and ``content``.
_MESSAGE_KEYS = frozenset({"role", "content", "name"})
ROLES = ("system", "developer", "user", "assistant", "tool")

Template = str | list[dict[str, Any]]


@dataclass(frozen=True)
class Parsed:
    """One text split into literal pieces and variables: ``pieces[i]`` is literal text when
    ``i`` is even and a variable name when it is odd."""

    pieces: tuple[str, ...]

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables, in order of first use."""
        return tuple(dict.fromkeys(self.pieces[1::2]))


def _where(text: str, index: int, prefix: str) -> str:
    """``line 2, character 5`` of ``text`` at ``index`` (1-based), after ``prefix``."""
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    if prefix and line == 1:
        return f"{prefix}, character {column}"
    lead = f"{prefix}, " if prefix else ""
    return f"{lead}line {line}, character {column}"


def parse_text(text: str, where: str = "") -> Parsed:
    """Split ``text`` into literal pieces and ``{{ variable }}`` names; an unclosed ``{{``
    or a bad variable name is an :class:`InvalidInput` naming the line and character
    (``where`` prefixes it: ``"message 2"``)."""
    pieces: list[str] = []
    literal: list[str] = []
    i = 0
    while True:
        start = text.find("{{", i)
        if start < 0:
            literal.append(text[i:])
            break
        if start > 0 and text[start - 1] == "\\":
            literal.append(text[i : start - 1] + "{{")
            i = start + 2
            continue
        while text.startswith("{", start + 2):  # "{{{ x }}}": a literal '{', then {{ x }}
            start += 1
        literal.append(text[i:start])
        end = text.find("}}", start + 2)
        opened = text.find("{{", start + 2)
        if end < 0 or (0 <= opened < end):
            raise InvalidInput(
                f"Template: '{{{{' at {_where(text, start, where)} is not closed by '}}}}'; "
                "write \\{{ for a literal '{{'"
            )
        name = text[start + 2 : end].strip()
        if not _NAME.match(name):
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise InvalidInput(
                f"Template: bad variable {{{{ {shown} }}}} at {_where(text, start, where)}: a "
                "variable is one name of letters, digits and '_' (no filters or expressions); "
                "write \\{{ for a literal '{{'"
            )
        pieces.append("".join(literal))
        pieces.append(name)
        literal = []
        i = end + 2
    pieces.append("".join(literal))
    return Parsed(tuple(pieces))


def check_template(template: Any) -> tuple[str, tuple[Parsed, ...]]:
    """The template's kind (``"text"`` or ``"chat"``) and each text parsed (one for a text
    template, one per message for a chat); anything malformed is an :class:`InvalidInput`
    naming the message and the spot."""
    if isinstance(template, str):
        return "text", (parse_text(template),)
    if not isinstance(template, Sequence) or isinstance(template, bytes | bytearray):
        raise InvalidInput(
            "A prompt template is text (a str) or a chat: a list of "
            f'{{"role": ..., "content": ...}} messages, not {type(template).__name__}'
        )
    if not template:
        raise InvalidInput("A chat template needs at least one message")
    parsed = []
    for number, message in enumerate(template, start=1):
        if not isinstance(message, Mapping):
            raise InvalidInput(
                f"Chat template message {number} is {type(message).__name__}, not a "
                '{"role": ..., "content": ...} object'
            )
        extra = sorted(set(message) - _MESSAGE_KEYS)
        if extra:
            raise InvalidInput(
                f"Chat template message {number} has unknown key(s) {', '.join(map(repr, extra))}; "
                "a message holds role, content and optionally name"
            )
        role = message.get("role")
        if role not in ROLES:
            raise InvalidInput(
                f"Chat template message {number} has role {role!r}; use one of: {', '.join(ROLES)}"
            )
        content = message.get("content")
        if not isinstance(content, str):
            raise InvalidInput(
                f"Chat template message {number} ({role}) needs 'content' text, got "
                f"{type(content).__name__}"
            )
        if "name" in message and not isinstance(message["name"], str):
            raise InvalidInput(f"Chat template message {number}: 'name' must be text")
        parsed.append(parse_text(content, f"message {number}"))
    return "chat", tuple(parsed)


def variables_of(parsed: Sequence[Parsed]) -> tuple[str, ...]:
    """Every variable of a template's texts, in order of first use."""
    return tuple(dict.fromkeys(name for p in parsed for name in p.variables))


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def check_variables(expected: Sequence[str], given: Mapping[str, Any], what: str) -> None:
    """A missing or extra variable is an :class:`InvalidInput` naming it and the ones the
    template uses."""
    uses = f"{what} uses: {', '.join(expected) or 'no variables'}"
    missing = [name for name in expected if name not in given]
    if missing:
        raise InvalidInput(f"Missing variable(s) {', '.join(map(repr, missing))}; {uses}")
    extra = sorted(name for name in given if name not in expected)
    if extra:
        raise InvalidInput(f"Unknown variable(s) {', '.join(map(repr, extra))}; {uses}")


def render_text(parsed: Parsed, variables: Mapping[str, Any]) -> str:
    """``parsed`` with each variable replaced by its value (text as is, lists and dicts as
    JSON, anything else by ``str``)."""
    return "".join(
        piece if i % 2 == 0 else _value(variables[piece]) for i, piece in enumerate(parsed.pieces)
    )


def canonical(value: Any, what: str) -> str:
    """``value`` as canonical JSON (sorted keys, no spaces); not JSON-able: InvalidInput."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"The prompt's {what} must be JSON data: {exc}") from None


def content_digest(
    template: Template, model: str | None, params: Mapping[str, Any], schema: Any
) -> str:
    """SHA-256 of the canonical JSON of what makes a version: the same template, model,
    params and schema give the same digest (the commit message is not part of it)."""
    body = {"template": template, "model": model, "params": dict(params), "schema": schema}
    return hashlib.sha256(canonical(body, "content").encode("utf-8")).hexdigest()
