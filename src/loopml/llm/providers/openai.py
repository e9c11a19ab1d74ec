"""The adapter for every OpenAI-compatible API (OpenAI, Azure OpenAI's v1 API, vLLM, Ollama,
llama.cpp's server, TGI, Together, Groq, …), by the deployment's ``base_url``::

    POST {base_url}/chat/completions    Authorization: Bearer <the key in api_key_env>
    POST {base_url}/embeddings

The body goes as the gateway holds it, with ``model`` set to the deployment's model; a stream
asks for usage in its last chunk (``stream_options.include_usage``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from loopml.llm.errors import ProviderError
from loopml.llm.providers.base import (
    HTTPProvider,
    error_from_response,
    join_url,
    sse_events,
)
from loopml.llm.translate import openai_usage
from loopml.llm.types import Body, Completion

if TYPE_CHECKING:
    from loopml.llm.config import Deployment

__all__ = ["OpenAIProvider"]

#: Not sent to an OpenAI-compatible chat API: the stream flags (set per call) and
#: Anthropic's ``thinking`` (``reasoning_effort`` says the same in OpenAI's terms).
_NOT_FOR_CHAT = frozenset({"stream", "stream_options", "thinking"})


class OpenAIProvider(HTTPProvider):
    """:class:`~loopml.llm.types.Provider` for OpenAI-compatible APIs."""

    kind = "openai"

    @staticmethod
    def headers(deployment: Deployment) -> dict[str, str]:
        """The request headers: JSON, the key as a bearer token (none when the deployment has
        no key), then the deployment's own ``headers`` (e.g. Azure's ``api-key``)."""
        headers = {"content-type": "application/json"}
        key = deployment.api_key
        if key:
            headers["authorization"] = f"Bearer {key}"
        if deployment.headers:
            headers.update(deployment.headers)
        return headers

    async def chat(self, deployment: Deployment, body: Body, *, timeout: float) -> Completion:
        payload = {k: v for k, v in body.items() if k not in _NOT_FOR_CHAT}
        payload["model"] = deployment.model
        url = join_url(deployment.base_url, "/chat/completions")
        data, status, headers = await self.post_json(
            url, payload, self.headers(deployment), timeout
        )
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise _not_an_answer(data, status, "a chat completion")
        return Completion(data, openai_usage(data.get("usage")), status, headers)

    async def embed(self, deployment: Deployment, body: Body, *, timeout: float) -> Completion:
        payload = dict(body)
        payload["model"] = deployment.model
        url = join_url(deployment.base_url, "/embeddings")
        data, status, headers = await self.post_json(
            url, payload, self.headers(deployment), timeout
        )
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise _not_an_answer(data, status, "an embeddings list")
        return Completion(data, openai_usage(data.get("usage")), status, headers)

    async def stream(
        self, deployment: Deployment, body: Body, *, timeout: float
    ) -> AsyncIterator[Body]:
        """Yield the provider's ``chat.completion.chunk`` objects as they come, the usage chunk
        (``choices: []``) included. A stream that breaks raises ProviderError with
        ``tokens_sent`` = the content chunks (text or tool-call arguments) yielded before."""
        payload = {k: v for k, v in body.items() if k != "thinking"}
        payload["model"] = deployment.model
        payload["stream"] = True
        options = body.get("stream_options")
        payload["stream_options"] = (
            {**options, "include_usage": True}
            if isinstance(options, dict)
            else {"include_usage": True}
        )
        url = join_url(deployment.base_url, "/chat/completions")
        sent = [0]  # content chunks yielded (tokens_sent of an error)
        async with self.post_stream(
            url, payload, self.headers(deployment), timeout, sent
        ) as response:
            status = response.status
            received = 0
            done = finished = False
            async for _event, data in sse_events(response.content.iter_any(), sent, status):
                if done:
                    continue  # read to the end: the connection goes back to the pool
                received += 1
                if data == b"[DONE]":
                    done = True
                    continue
                chunk = _chunk(data, sent[0])
                content = False
                for choice in chunk["choices"]:
                    delta = choice.get("delta") if isinstance(choice, dict) else None
                    if isinstance(delta, dict) and (
                        delta.get("content") or delta.get("tool_calls")
                    ):
                        content = True
                    if isinstance(choice, dict) and choice.get("finish_reason"):
                        finished = True
                yield chunk
                if content:
                    sent[0] += 1
            if not (done or finished):
                if received == 0:
                    raise ProviderError("garbage", "a stream with no events", status=status)
                raise ProviderError(
                    "connection",
                    f"the stream ended before [DONE] after {sent[0]} content chunks ({url})",
                    status=status,
                    tokens_sent=sent[0],
                )


def _chunk(data: bytes, sent: int) -> Body:
    """One ``data:`` of an OpenAI stream -> a chunk; an error event or a non-chunk raises."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProviderError(
            "garbage",
            f"a stream event that is not JSON: {data[:200]!r}",
            status=200,
            tokens_sent=sent,
        ) from None
    if isinstance(chunk, dict) and isinstance(chunk.get("choices"), list):
        return chunk
    if isinstance(chunk, dict) and "error" in chunk:
        error = error_from_response(500, {}, data)  # errors sent in a stream: the server's
        error.message = error.message.replace("HTTP 500: ", "an error in the stream: ", 1)
        error.args = (error.message,)
        error.tokens_sent = sent
        raise error
    raise ProviderError(
        "garbage",
        f"a stream event that is not a chunk: {data[:200]!r}",
        status=200,
        tokens_sent=sent,
    )


def _not_an_answer(data: Any, status: int, what: str) -> ProviderError:
    if isinstance(data, dict) and "error" in data:  # some servers answer errors with a 200
        error = error_from_response(500, {}, orjson.dumps(data))
        error.status = status
        return error
    text = orjson.dumps(data)[:200].decode("utf-8", "replace")
    return ProviderError("garbage", f"HTTP {status} that is not {what}: {text}", status=status)
