"""Token counts estimated without a tokenizer's vocabulary (none can be downloaded here).

The estimate approximates byte-pair encodings such as OpenAI's ``o200k``/``cl100k`` and
Anthropic's: a run of up to 6 ASCII letters is one token (most English words are one), a run
of up to 3 digits is one token, a run of up to 2 punctuation marks is one, each other non-ASCII
character (CJK, emoji, accented letters) is one, and a run of line breaks is one. English prose
comes out near a quarter of its length in characters, like the real encoders; code and other
languages land within about ±30%. Long texts are sampled (:func:`count_text`). It is an *estimate*: the gateway uses it to route and to
check budgets before a request is sent, and for a stream whose provider reported no usage
(then :attr:`loopml.llm.types.Usage.estimated` is true). Costs come from the provider's own
figures whenever it gives them.

>>> count_text("Hello, world!")
4
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from loopml.llm.types import Body

_TOKEN = re.compile(
    r"[A-Za-z]{1,6}"  # a word or a piece of a long one
    r"|[0-9]{1,3}"  # numbers split in groups of up to 3 digits
    r"|\n+"  # line breaks
    r"|[^\x00-\x7f\s]"  # any other script, emoji, accents: about one token a character
    r"|[^A-Za-z0-9\s\x80-\U0010ffff]{1,2}"  # punctuation and symbols
)
#: OpenAI's formula: every message costs 3 tokens of framing, a name 1 more, and the reply
#: is primed with 3.
PER_MESSAGE = 3
PER_NAME = 1
REPLY_PRIMING = 3
#: A picture, which no text count can see: OpenAI bills 85 tokens at detail "low" and
#: 85 + 170 per 512 px tile otherwise (765 for a 1024 x 1024 image).
IMAGE_LOW = 85
IMAGE_HIGH = 765


#: Texts longer than this are estimated from evenly spread samples of it, so that one call
#: costs about the same (well under a millisecond) however long the prompt.
SAMPLE_CHARS = 2048
_SLICES = 8


def count_text(text: str) -> int:
    """An estimate of the tokens in ``text`` (see the module's docstring for how); a text
    over :data:`SAMPLE_CHARS` characters is counted in 8 slices spread over it and scaled."""
    n = len(text)
    if n <= SAMPLE_CHARS:
        return len(_TOKEN.findall(text)) if n else 0
    width = SAMPLE_CHARS // _SLICES
    step = (n - width) / (_SLICES - 1)
    found = 0
    for i in range(_SLICES):
        start = int(i * step)
        found += len(_TOKEN.findall(text, start, start + width))
    return round(found * n / (width * _SLICES))


def _count_content(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += count_text(part)
            elif isinstance(part, Mapping):
                kind = part.get("type")
                if kind == "text":
                    total += count_text(part.get("text") or "")
                elif kind in ("image_url", "image", "input_image"):
                    image = part.get("image_url")
                    detail = image.get("detail") if isinstance(image, Mapping) else None
                    total += IMAGE_LOW if detail == "low" else IMAGE_HIGH
                else:
                    total += count_text(json.dumps(part, ensure_ascii=False, default=str))
        return total
    return count_text(json.dumps(content, ensure_ascii=False, default=str))


def count_messages(messages: Iterable[Mapping[str, Any]]) -> int:
    """Estimated prompt tokens of OpenAI chat ``messages``: text and content parts, images,
    the assistant's tool calls (name and arguments) and tool results, 3 tokens of framing
    per message and 3 for the reply, as OpenAI counts them."""
    total = REPLY_PRIMING
    for message in messages:
        total += PER_MESSAGE
        if not isinstance(message, Mapping):
            total += _count_content(message)
            continue
        role = message.get("role")
        if isinstance(role, str):
            total += count_text(role)
        total += _count_content(message.get("content"))
        name = message.get("name")
        if isinstance(name, str):
            total += PER_NAME + count_text(name)
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping):
                    total += PER_MESSAGE + count_text(str(function.get("name") or ""))
                    total += count_text(str(function.get("arguments") or ""))
        function_call = message.get("function_call")  # the older, single-call form
        if isinstance(function_call, Mapping):
            total += count_text(str(function_call.get("name") or ""))
            total += count_text(str(function_call.get("arguments") or ""))
        call_id = message.get("tool_call_id")
        if isinstance(call_id, str):
            total += count_text(call_id)
    return total


def count_request(body: Body) -> int:
    """Estimated prompt tokens of an OpenAI request: a chat body's messages, tools (their
    JSON schemas) and response format, or an embeddings body's ``input``."""
    total = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        total += count_messages(messages)
    for key in ("tools", "functions", "response_format"):
        extra = body.get(key)
        if extra:
            total += count_text(json.dumps(extra, ensure_ascii=False, default=str))
    if "input" in body and messages is None:
        total += _count_input(body["input"])
    return total


def _count_input(value: Any) -> int:
    """An embeddings ``input``: a string, a list of strings, or token ids (counted exactly)."""
    if isinstance(value, str):
        return count_text(value)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)
        return sum(_count_input(v) for v in value)
    return 0
