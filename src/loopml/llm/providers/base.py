"""What the provider adapters share: one pooled ``aiohttp.ClientSession`` per adapter (and
event loop), a server-sent-events reader, and the mapping of every way an HTTP call to a
provider can fail onto a :class:`~loopml.llm.errors.ProviderError` kind.

Timeouts: ``timeout`` seconds to get a connection (from the pool or a new one) and between two
reads of the answer (its first byte included), so a provider must start answering within
``timeout`` and a stream must not stall for longer, but a long stream is not cut by it.

The transport is aiohttp rather than httpx for speed: a POST and its read cost about a third
of httpx's client time, and the gateway's whole budget is 2 ms a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import orjson

from loopml.exceptions import missing_dependency
from loopml.llm.errors import FailureKind, ProviderError

try:
    import aiohttp
    from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
    from yarl import URL
except ImportError as exc:  # the `llm` extra is not installed
    raise missing_dependency(
        "aiohttp", "llm", "loopml's LLM gateway (its provider adapters)"
    ) from exc

__all__ = [
    "HTTPProvider",
    "join_url",
    "error_from_response",
    "error_from_exception",
    "parse_retry_after",
    "sse_events",
]

#: Connections of one adapter's pool (all its deployments together; no limit per host).
POOL_LIMIT = 1000

#: Seconds an idle connection stays in the pool. Under the 5 s keep-alive of uvicorn-based
#: servers (vLLM, TGI's router, the fake provider), so a pooled connection is never one the
#: server is closing at that moment.
KEEPALIVE_SECONDS = 4.0

#: What a failed call or read raises: aiohttp's errors, its timeouts (TimeoutError) and a
#: response it can't parse (HttpProcessingError is not a ClientError).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    TimeoutError,
    HttpProcessingError,
)

#: The start of a provider's error body quoted in a ProviderError message.
_QUOTE = 300

#: Parsed URLs kept (one or two per deployment); the cache is emptied when it is full.
_URL_CACHE = 1024

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


def _new_session() -> aiohttp.ClientSession:
    """The pooled session: no cookies kept between providers' answers, no proxy settings from
    the environment, compressed answers decoded, non-2xx answers returned (not raised)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=POOL_LIMIT, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        trust_env=False,
        raise_for_status=False,
        timeout=aiohttp.ClientTimeout(total=None),
    )


class HTTPProvider:
    """The HTTP half of an adapter. A session is created on first use in each event loop that
    calls (an ``aiohttp.ClientSession`` is bound to the loop it was made in): the server's
    loop and the loop of the gateway's synchronous calls each get their own pool, and the
    session of a loop that has been closed is closed when the next session is made."""

    kind: str = ""

    def __init__(self) -> None:
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._urls: dict[str, URL] = {}

    def session(self) -> aiohttp.ClientSession:
        """The pooled session of the running event loop."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            for other, old in list(self._sessions.items()):
                if other.is_closed():  # its loop is gone: let its sockets go
                    self._sessions.pop(other, None)
                    _drop(old, other)
            session = self._sessions[loop] = _new_session()
        return session

    def timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        """``seconds`` to get a connection and between two reads; no limit on the whole."""
        found = self._timeouts.get(seconds)
        if found is None:
            found = self._timeouts[seconds] = aiohttp.ClientTimeout(
                total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
            )
        return found

    def url(self, url: str) -> URL:
        """``url`` parsed (once); one that can't be is a ``bad_request`` naming it."""
        found = self._urls.get(url)
        if found is None:
            try:
                found = URL(url)
            except (ValueError, TypeError) as exc:
                raise ProviderError(
                    "bad_request", f"invalid URL {url!r} ({exc}); check the deployment's base_url"
                ) from None
            if len(self._urls) >= _URL_CACHE:
                self._urls.clear()
            self._urls[url] = found
        return found

    async def aclose(self) -> None:
        """Close the pooled connections: the running loop's session here, the sessions of
        other loops in their loop (while it runs) or at once."""
        sessions, self._sessions = self._sessions, {}
        running = asyncio.get_running_loop()
        for loop, session in sessions.items():
            if loop is running:
                if not session.closed:
                    await session.close()
            else:
                _drop(session, loop)

    async def post_json(
        self, url: str, payload: Mapping[str, Any], headers: Mapping[str, str], timeout: float
    ) -> tuple[Any, int, Mapping[str, str]]:
        """POST ``payload``; → (the decoded JSON answer, its HTTP status, its headers). A
        non-2xx answer, a failed call and a 2xx that isn't JSON raise :class:`ProviderError`."""
        try:
            async with self.session().post(
                self.url(url),
                data=orjson.dumps(payload),
                headers=headers,
                timeout=self.timeout(timeout),
            ) as response:
                content = await response.read()
                status, answer_headers = response.status, response.headers
        except TRANSPORT_ERRORS as exc:
            raise error_from_exception(exc, url) from exc
        if status >= 300:
            raise error_from_response(status, answer_headers, content)
        try:
            return orjson.loads(content), status, answer_headers
        except orjson.JSONDecodeError:
            raise ProviderError(
                "garbage",
                f"HTTP {status} whose body is not JSON: {_quote(content)}",
                status=status,
            ) from None

    @contextlib.asynccontextmanager
    async def post_stream(
        self,
        url: str,
        payload: Mapping[str, Any],
        headers: Mapping[str, str],
        timeout: float,
        sent: list[int],
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST ``payload`` for a streamed answer; → the 2xx response, to read its body (a
        non-2xx one raises :class:`ProviderError` once its body is read). A failed call or
        read raises ProviderError with ``tokens_sent=sent[0]`` (the caller keeps ``sent[0]``
        up to date). Leaving the block before the body's end (an error, the consumer closing
        the stream, a cancelled task) closes the connection, so the provider sees the client
        go and stops generating; a body read to its end leaves it in the pool."""
        try:
            async with self.session().post(
                self.url(url),
                data=orjson.dumps(payload),
                headers=headers,
                timeout=self.timeout(timeout),
            ) as response:
                try:
                    if response.status >= 300:
                        content = await response.read()
                        raise error_from_response(response.status, response.headers, content)
                    yield response
                except BaseException:
                    if not response.content.is_eof():
                        response.close()
                    raise
        except TRANSPORT_ERRORS as exc:
            error = error_from_exception(exc, url)
            error.tokens_sent = sent[0]
            raise error from exc


def _drop(session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> None:
    """Close ``session`` of another event loop: in that loop while it runs, else at once (the
    sockets of a stopped loop can only be let go)."""
    if session.closed:
        return
    if loop.is_running() and not loop.is_closed():
        asyncio.run_coroutine_threadsafe(session.close(), loop)
        return
    connector = session.connector
    if connector is not None:
        with contextlib.suppress(Exception):
            connector._close()  # synchronous; what an unclosed connector's finaliser calls


async def sse_events(
    blocks: AsyncIterable[bytes], sent: list[int], status: int = 200
) -> AsyncIterator[tuple[str, bytes]]:
    """The events of a ``text/event-stream`` body read in ``blocks`` (any split): (event name
    or "", data). CRLF and LF line ends, comments, ``id:``/``retry:`` lines and multi-line
    data are understood; a line that is not SSE, or a body that ends inside a line, raises
    ``ProviderError("garbage", status=status, tokens_sent=sent[0])``. A failed read raises
    what the transport raises (:meth:`HTTPProvider.post_stream` maps it)."""
    event = ""
    data: list[bytes] = []
    buffer = b""
    async for block in blocks:
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
                    status=status,
                    tokens_sent=sent[0],
                )
    if buffer.strip():
        raise ProviderError(
            "garbage",
            f"a stream that ends inside a line: {_quote(buffer)}",
            status=status,
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


def error_from_exception(exc: BaseException, url: str) -> ProviderError:
    """A failed HTTP call -> timeout (any timeout: connecting, waiting for a pooled
    connection, between two reads), connection (refused, reset, dropped before or inside the
    body), bad_request (an invalid or non-HTTP URL: the deployment's base_url) or garbage (an
    answer that is not HTTP, or a body that can't be decoded)."""
    kind: FailureKind
    name = type(exc).__name__
    if isinstance(exc, TimeoutError):
        kind, what = "timeout", f"no answer within the timeout ({name})"
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        kind, what = "bad_request", f"invalid URL {url!r} ({name}); check the deployment's base_url"
    elif _undecodable(exc):
        kind, what = "garbage", f"a body that can't be decoded ({exc})"
    elif isinstance(exc, HttpProcessingError | aiohttp.ClientResponseError):
        kind, what = "garbage", f"an answer that is not valid HTTP ({name}: {exc})"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        kind, what = "connection", f"the connection dropped inside the answer ({exc})"
    else:
        kind, what = "connection", f"{name}: {exc or 'connection failed'}"
    return ProviderError(kind, f"{what} ({url})")


def _undecodable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a body in a content-encoding that fails to decode."""
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 5:
        if isinstance(cause, ContentEncodingError):
            return True
        cause, seen = cause.__cause__, seen + 1
    return "Can not decode content-encoding" in str(exc)


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
