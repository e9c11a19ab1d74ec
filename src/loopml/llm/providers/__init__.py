"""Provider adapters: how the gateway talks to an LLM provider over HTTP.

``openai`` (:class:`OpenAIProvider`) serves every OpenAI-compatible API by base URL;
``anthropic`` (:class:`AnthropicProvider`) serves Anthropic's Messages API. Each adapter takes
and gives the gateway's OpenAI-shaped bodies, holds one pooled aiohttp session for all the
deployments of its kind, and raises :class:`~loopml.llm.errors.ProviderError` for a failed
attempt (its ``kind`` says whether to retry, fall back or give up)::

    provider = provider_for("openai")
    completion = await provider.chat(deployment, body, timeout=60.0)
    async for chunk in provider.stream(deployment, {**body, "stream": True}, timeout=60.0):
        ...
    await provider.aclose()
"""

from __future__ import annotations

from collections.abc import Callable

from loopml.exceptions import InvalidConfig
from loopml.llm.providers.anthropic import AnthropicProvider
from loopml.llm.providers.openai import OpenAIProvider
from loopml.llm.types import Provider

__all__ = ["PROVIDERS", "AnthropicProvider", "OpenAIProvider", "provider_for"]

#: The adapters by the ``provider`` a deployment names in the config.
PROVIDERS: dict[str, Callable[[], Provider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
}


def provider_for(kind: str) -> Provider:
    """A new adapter of ``kind`` (``openai`` or ``anthropic``); the caller keeps it (one per
    kind: it pools connections) and closes it with ``aclose()``."""
    try:
        make = PROVIDERS[kind]
    except KeyError:
        raise InvalidConfig(
            f"unknown provider {kind!r}: use one of {', '.join(sorted(PROVIDERS))}"
        ) from None
    return make()
