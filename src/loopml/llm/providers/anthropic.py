"""The adapter for Anthropic's Messages API::

    POST {base_url}/v1/messages     x-api-key: <the key in api_key_env>
                                    anthropic-version: 2023-06-01

The gateway's OpenAI-shaped request is translated with :mod:`loopml.llm.translate` (system
prompt, tools, stop sequences, JSON mode), and the answer and stream events back into OpenAI's
shape, usage included. ``base_url`` is the API's root (``https://api.anthropic.com``); one
ending in ``/v1`` works too. Anthropic has no embeddings API.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import orjson

from loopml.llm.errors import ProviderError
from loopml.llm.providers.base import (
    HTTPProvider,
    error_from_response,
    join_url,
    sse_events,
)
from loopml.llm.translate import (
    AnthropicToOpenAIStream,
    anthropic_to_openai_response,
    anthropic_usage,
    openai_to_anthropic_request,
)
from loopml.llm.types import Body, Completion

if TYPE_CHECKING:
    from loopml.llm.config import Deployment

__all__ = ["ANTHROPIC_VERSION", "AnthropicProvider"]

#: The ``anthropic-version`` header sent (the Messages API's stable version).
ANTHROPIC_VERSION = "2023-06-01"


def messages_url(base_url: str) -> str:
    """``{base_url}/v1/messages`` (``/messages`` when ``base_url`` already ends in ``/v1``)."""
    base = base_url.split("?", 1)[0].rstrip("/")
    return join_url(base_url, "/messages" if base.endswith("/v1") else "/v1/messages")


class AnthropicProvider(HTTPProvider):
    """:class:`~loopml.llm.types.Provider` for Anthropic's Messages API."""

    kind = "anthropic"

    @staticmethod
    def headers(deployment: Deployment) -> dict[str, str]:
        """JSON, ``anthropic-version``, the key as ``x-api-key`` (none when the deployment
        has no key), then the deployment's own ``headers`` (e.g. ``anthropic-beta``)."""
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        key = deployment.api_key
        if key:
            headers["x-api-key"] = key
        if deployment.headers:
            headers.update(deployment.headers)
        return headers

    async def chat(self, deployment: Deployment, body: Body, *, timeout: float) -> Completion:
        """Raises :class:`~loopml.llm.errors.BadRequest` (the client's fault) for a request
        that can't be said in Anthropic's terms, ProviderError for a failed attempt."""
        request = openai_to_anthropic_request(body, deployment.model)
        request.pop("stream", None)
        url = messages_url(deployment.base_url)
        message, status, headers = await self.post_json(
            url, request, self.headers(deployment), timeout
        )
        if isinstance(message, dict) and message.get("type") == "error":
            error = error_from_response(500, {}, orjson.dumps(message))
            error.status = status
            raise error
        model = message.get("model") if isinstance(message, dict) else None
        answer = anthropic_to_openai_response(message, model or deployment.model)
        return Completion(answer, anthropic_usage(message.get("usage")), status, headers)

    async def embed(self, deployment: Deployment, body: Body, *, timeout: float) -> Completion:
        raise ProviderError(
            "bad_request",
            f"Anthropic has no embeddings API ({deployment.name} is an anthropic deployment); "
            "route embeddings to an OpenAI-compatible deployment",
        )

    async def stream(
        self, deployment: Deployment, body: Body, *, timeout: float
    ) -> AsyncIterator[Body]:
        """Yield OpenAI ``chat.completion.chunk`` objects translated from Anthropic's events,
        ending with a ``choices: []`` chunk carrying the usage. A stream that breaks (or an
        ``error`` event) raises ProviderError with ``tokens_sent`` = content chunks yielded."""
        request = openai_to_anthropic_request(body, deployment.model)
        request["stream"] = True
        url = messages_url(deployment.base_url)
        translator = AnthropicToOpenAIStream(deployment.model, f"chatcmpl-{uuid.uuid4().hex}")
        sent = [0]  # content chunks yielded (tokens_sent of an error)
        async with self.post_stream(
            url, request, self.headers(deployment), timeout, sent
        ) as response:
            status = response.status
            received = 0
            async for event, data in sse_events(response.content.iter_any(), sent, status):
                if translator.done:
                    continue  # read to the end: the connection goes back to the pool
                received += 1
                try:
                    decoded = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise ProviderError(
                        "garbage",
                        f"a stream event that is not JSON: {data[:200]!r}",
                        status=200,
                        tokens_sent=sent[0],
                    ) from None
                try:
                    chunks = translator.feed(event, decoded)
                except ProviderError as exc:
                    exc.tokens_sent = sent[0]
                    raise
                for chunk in chunks:
                    yield chunk
                sent[0] = translator.output_text_tokens_seen
            if not translator.done:
                if received == 0:
                    raise ProviderError("garbage", "a stream with no events", status=status)
                raise ProviderError(
                    "connection",
                    f"the stream ended before message_stop after {sent[0]} content chunks ({url})",
                    status=status,
                    tokens_sent=sent[0],
                )
