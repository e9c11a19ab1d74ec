"""What the provider adapters share: one pooled ``httpx.AsyncClient`` per adapter, a
server-sent-events reader, and the mapping of every way an HTTP call to a provider can fail
onto a :class:`~loopml.llm.errors.ProviderError` kind.

Timeouts: ``timeout`` seconds to connect, to send the request, and between two reads of the
answer, so a provider must start answering within ``timeout`` and a stream must not stall for
longer, but a long stream is not cut by it.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from loopml.llm.errors import FailureKind, ProviderError

__all__ = [
    "HTTPProvider",
    "join_url",
    "error_from_response",
    "error_from_exception",
    "parse_retry_after",
    "sse_events",
]

#: Connection pool of one adapter, shared by all its deployments.
POOL_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)

#: The start of a provider's error body quoted in a ProviderError message.
_QUOTE = 300

#: What says "the prompt is over the model's context window" in a 400 from a provider
#: (OpenAI's codes, and words of OpenAI's, Anthropic's, vLLM's and llama.cpp's messages).
_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_WORDS = (
    "context length",
    "context_length",
    "context window",
    "prompt is too long",
    "maximum context",
    "context size",
    "exceeds the context",
)


class HTTPProvider:
    """The HTTP half of an adapter. The client is created on first use in the running event
    loop (an ``httpx.AsyncClient`` is bound to one loop: a call from another loop gets a new
    client, and the old one is dropped)."""

    kind: str = ""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[float, httpx.Timeout] = {}

    def client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._client
        if client is None or self._loop is not loop or client.is_closed:
            client = self._client = httpx.AsyncClient(limits=POOL_LIMITS, timeout=None)
            self._loop = loop
        return client

    def timeout(self, seconds: float) -> httpx.Timeout:
        """``seconds`` to connect, to write, between reads and to get a pooled connection."""
        found = self._timeouts.get(seconds)
        if found is None:
            found = self._timeouts[seconds] = httpx.Timeout(seconds)
        return found

    async def aclose(self) -> None:
        """Close the pooled connections (when called in the loop that opened them)."""
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:  # pragma: no cover - aclose is a coroutine
                running = None
            if running is self._loop:
                await client.aclose()
        self._loop = None

    async def post_json(
        self, url: str, payload: Mapping[str, Any], headers: Mapping[str, str], timeout: float
    ) -> tuple[Any, httpx.Response]:
        """POST ``payload``; → (the decoded JSON answer, the response). A non-2xx answer, a
        failed call and a 2xx that isn't JSON raise :class:`ProviderError`."""
        try:
            response = await self.client().post(
                url, content=orjson.dumps(payload), headers=headers, timeout=self.timeout(timeout)
            )
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, url) from exc
        if response.status_code >= 300:
            raise error_from_response(response.status_code, response.headers, response.content)
        try:
            return orjson.loads(response.content), response
        except orjson.JSONDecodeError:
            raise ProviderError(
                "garbage",
                f"HTTP {response.status_code} whose body is not JSON: {_quote(response.content)}",
                status=response.status_code,
            ) from None


async def sse_events(response: httpx.Response, sent: list[int]) -> AsyncIterator[tuple[str, bytes]]:
    """The events of a ``text/event-stream`` body: (event name or "", data). Raises
    ``ProviderError("garbage")`` for a line that is not SSE, and maps a failed read (a
    dropped connection, a stall over the timeout) with ``tokens_sent=sent[0]`` (the caller
    keeps ``sent[0]`` up to date)."""
    event = ""
    data: list[bytes] = []
    buffer = b""
    try:
        async for block in response.aiter_bytes():
            buffer = buffer + block if buffer else block
            lines = buffer.split(b"\n")
            buffer = lines.pop()
            for line in lines:
                if line.endswith(b"\r"):
                    line = line[:-1]
                if not line:
                    if data:
                        yield event, b"\n".join(data)
                    event, data = "", []
                elif line.startswith(b"data:"):
                    value = line[5:]
                    data.append(value[1:] if value.startswith(b" ") else value)
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode("utf-8", "replace")
                elif line.startswith((b":", b"id:", b"retry:")):
                    pass
                else:
                    raise ProviderError(
                        "garbage",
                        f"a stream that is not server-sent events: {_quote(line)}",
                        status=response.status_code,
                        tokens_sent=sent[0],
                    )
    except httpx.HTTPError as exc:
        error = error_from_exception(exc, str(response.request.url))
        error.tokens_sent = sent[0]
        raise error from exc
    if buffer.strip():
        raise ProviderError(
            "garbage",
            f"a stream that ends inside a line: {_quote(buffer)}",
            status=response.status_code,
            tokens_sent=sent[0],
        )
    if data:
        yield event, b"\n".join(data)


def join_url(base_url: str, path: str) -> str:
    """``base_url`` + ``path``, a query string kept at the end (``…/v1?api-version=x``)."""
    if "?" in base_url:
        base, query = base_url.split("?", 1)
        return f"{base.rstrip('/')}{path}?{query}"
    return base_url.rstrip("/") + path


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``
    (OpenAI); None when absent or unreadable."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(status: int, headers: Mapping[str, str], content: bytes) -> ProviderError:
    """A provider's non-2xx answer -> the ProviderError of its kind: 429 rate_limit (with
    ``retry_after``), 5xx/529 server, 408 timeout, 401/403 auth, a 400/413/422 about the
    context window context_window, any other 4xx bad_request."""
    message, code = _error_message(content)
    text = f"HTTP {status}: {message}"
    kind: FailureKind
    retry_after = None
    if status == 429:
        kind, retry_after = "rate_limit", parse_retry_after(headers)
    elif status >= 500 or status == 409:
        kind = "server"
    elif status == 408:
        kind = "timeout"
    elif status in (401, 403):
        kind = "auth"
    elif status in (400, 413, 422) and _about_context(message, code):
        kind = "context_window"
    elif 400 <= status < 500:
        kind = "bad_request"
    else:  # 1xx/3xx: not an answer of this protocol
        kind = "garbage"
    return ProviderError(kind, text, status=status, retry_after=retry_after)


def error_from_exception(exc: httpx.HTTPError, url: str) -> ProviderError:
    """A failed HTTP call -> timeout (any httpx timeout), connection (refused, reset,
    dropped mid-body), bad_request (an invalid URL: the deployment's base_url) or garbage
    (a body that can't be decoded)."""
    kind: FailureKind
    if isinstance(exc, httpx.TimeoutException):
        kind, what = "timeout", f"no answer within the timeout ({type(exc).__name__})"
    elif isinstance(exc, httpx.TransportError) and not isinstance(
        exc, httpx.UnsupportedProtocol | httpx.ProxyError
    ):
        kind, what = "connection", f"{type(exc).__name__}: {exc or 'connection failed'}"
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        kind, what = "bad_request", f"invalid URL {url!r} ({exc}); check the deployment's base_url"
    elif isinstance(exc, httpx.DecodingError):
        kind, what = "garbage", f"a body that can't be decoded ({exc})"
    else:
        kind, what = "connection", f"{type(exc).__name__}: {exc}"
    return ProviderError(kind, f"{what} ({url})")


def _error_message(content: bytes) -> tuple[str, str | None]:
    """(message, code) from an OpenAI- or Anthropic-shaped error body, else the body's start."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return _quote(content) or "(empty body)", None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code") or error.get("type")
        return (
            str(message) if message else _quote(content),
            str(code) if code is not None else None,
        )
    if isinstance(error, str):  # {"error": "..."} (vLLM, llama.cpp, Ollama)
        return error, None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"], None
    return _quote(content), None


def _about_context(message: str, code: str | None) -> bool:
    if code in _CONTEXT_CODES:
        return True
    lowered = message.lower()
    return any(words in lowered for words in _CONTEXT_WORDS)


def _quote(content: bytes) -> str:
    text = content[:_QUOTE].decode("utf-8", "replace").strip()
    return text + ("…" if len(content) > _QUOTE else "")
