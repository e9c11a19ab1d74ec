"""OpenAI Chat Completions ⇄ Anthropic Messages: requests, responses, stream events, usage.

Pure functions over JSON-decoded dicts (no I/O). The gateway speaks OpenAI's shape inside
(:data:`~loopml.llm.types.Body`); these functions turn it into what an Anthropic provider
takes and back (the Anthropic adapter), and turn a client's Anthropic request into the
gateway's shape and the answer back (the gateway's ``/v1/messages``)::

    OpenAI-shaped body ──openai_to_anthropic_request──► Anthropic provider
            ▲                                                │
            └──anthropic_to_openai_response / AnthropicToOpenAIStream

    Anthropic client ──anthropic_to_openai_request──► gateway (OpenAI-shaped)
            ▲                                                │
            └──openai_to_anthropic_response / OpenAIToAnthropicStream

What the other side cannot take is dropped (``seed``, ``logprobs``, ``stream_options``,
``top_k`` for OpenAI, ``thinking`` blocks, server tools, a tool result's ``is_error``, …),
``reasoning_effort`` and Anthropic's ``thinking`` budget are translated both ways,
never an error; what would change the meaning of a request (an unknown role, tool arguments
that are not JSON, ``n > 1`` for Anthropic) is a :class:`~loopml.llm.errors.BadRequest`
naming the offending entry.

- :mod:`~loopml.llm.translate.to_anthropic`: OpenAI -> Anthropic
  (:func:`openai_to_anthropic_request`, :func:`openai_to_anthropic_response`,
  :class:`OpenAIToAnthropicStream`).
- :mod:`~loopml.llm.translate.to_openai`: Anthropic -> OpenAI
  (:func:`anthropic_to_openai_request`, :func:`anthropic_to_openai_response`,
  :class:`AnthropicToOpenAIStream`).
- :mod:`~loopml.llm.translate.usage`: the ``usage`` objects of both ⇄
  :class:`~loopml.llm.types.Usage`.

Example::

    >>> req = openai_to_anthropic_request(
    ...     {"messages": [{"role": "system", "content": "Be brief."},
    ...                   {"role": "user", "content": "Hi"}], "stop": "END"},
    ...     "claude-haiku-4-5")
    >>> req["system"], req["messages"], req["max_tokens"], req["stop_sequences"]
    ('Be brief.', [{'role': 'user', 'content': 'Hi'}], 4096, ['END'])
"""

from __future__ import annotations

from loopml.llm.translate.to_anthropic import (
    DEFAULT_MAX_TOKENS,
    JSON_INSTRUCTION,
    MIN_THINKING_BUDGET,
    THINKING_BUDGETS,
    OpenAIToAnthropicStream,
    openai_to_anthropic_request,
    openai_to_anthropic_response,
)
from loopml.llm.translate.to_openai import (
    AnthropicToOpenAIStream,
    anthropic_to_openai_request,
    anthropic_to_openai_response,
    reasoning_effort,
)
from loopml.llm.translate.usage import (
    anthropic_usage,
    openai_usage,
    usage_to_anthropic,
    usage_to_openai,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "JSON_INSTRUCTION",
    "MIN_THINKING_BUDGET",
    "THINKING_BUDGETS",
    "AnthropicToOpenAIStream",
    "OpenAIToAnthropicStream",
    "anthropic_to_openai_request",
    "anthropic_to_openai_response",
    "anthropic_usage",
    "openai_to_anthropic_request",
    "openai_to_anthropic_response",
    "openai_usage",
    "reasoning_effort",
    "usage_to_anthropic",
    "usage_to_openai",
]
