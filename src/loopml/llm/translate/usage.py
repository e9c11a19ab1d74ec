"""Token usage: OpenAI's and Anthropic's ``usage`` objects ⇄ :class:`~loopml.llm.types.Usage`.

Pure functions over JSON-decoded dicts (no I/O). OpenAI's ``prompt_tokens`` counts the
cached part and Anthropic's ``input_tokens`` leaves it out; :class:`Usage` counts it in
``input_tokens``, as OpenAI does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopml.llm.types import Usage


def _count(value: Any) -> int:
    """A token count from a usage field: missing, null, negative or not a number -> 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return 0
    return int(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def openai_usage(usage: Mapping[str, Any] | None) -> Usage:
    """OpenAI's ``usage`` object -> :class:`Usage` (``None`` or garbage -> ``Usage()``).

    ``prompt_tokens`` already counts the cached part (``prompt_tokens_details.cached_tokens``
    read, ``cache_write_tokens`` written), and ``completion_tokens`` the reasoning part
    (``completion_tokens_details.reasoning_tokens``).
    """
    if not isinstance(usage, Mapping):
        return Usage()
    prompt = _mapping(usage.get("prompt_tokens_details"))
    completion = _mapping(usage.get("completion_tokens_details"))
    return Usage(
        input_tokens=_count(usage.get("prompt_tokens")),
        output_tokens=_count(usage.get("completion_tokens")),
        cached_read_tokens=_count(prompt.get("cached_tokens")),
        cached_write_tokens=_count(prompt.get("cache_write_tokens")),
        reasoning_tokens=_count(completion.get("reasoning_tokens")),
    )


def anthropic_usage(usage: Mapping[str, Any] | None) -> Usage:
    """Anthropic's ``usage`` object -> :class:`Usage` (``None`` or garbage -> ``Usage()``).

    Anthropic's ``input_tokens`` leaves out the cached parts, so :attr:`Usage.input_tokens`
    is ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``; the
    reasoning part of ``output_tokens`` is ``output_tokens_details.thinking_tokens``.
    """
    if not isinstance(usage, Mapping):
        return Usage()
    read = _count(usage.get("cache_read_input_tokens"))
    write = _count(usage.get("cache_creation_input_tokens"))
    return Usage(
        input_tokens=_count(usage.get("input_tokens")) + read + write,
        output_tokens=_count(usage.get("output_tokens")),
        cached_read_tokens=read,
        cached_write_tokens=write,
        reasoning_tokens=_count(
            _mapping(usage.get("output_tokens_details")).get("thinking_tokens")
        ),
    )


def usage_to_openai(usage: Usage) -> dict[str, Any]:
    """:class:`Usage` -> OpenAI's ``usage`` object (``cache_write_tokens`` only when some)."""
    prompt: dict[str, int] = {"cached_tokens": usage.cached_read_tokens}
    if usage.cached_write_tokens:
        prompt["cache_write_tokens"] = usage.cached_write_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": prompt,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def usage_to_anthropic(usage: Usage) -> dict[str, Any]:
    """:class:`Usage` -> Anthropic's ``usage`` object, whose ``input_tokens`` excludes the
    cached parts (``output_tokens_details`` only when there were reasoning tokens)."""
    out: dict[str, Any] = {
        "input_tokens": max(
            0, usage.input_tokens - usage.cached_read_tokens - usage.cached_write_tokens
        ),
        "cache_creation_input_tokens": usage.cached_write_tokens,
        "cache_read_input_tokens": usage.cached_read_tokens,
        "output_tokens": usage.output_tokens,
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out
