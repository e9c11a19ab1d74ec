"""A fake LLM provider: a real HTTP server on 127.0.0.1 speaking OpenAI's and Anthropic's wire
formats (streaming included), with deterministic answers, usage figures and injected faults.

Routes, per deployment ``name`` (faults and call counts are kept per name)::

    POST /{name}/v1/chat/completions   OpenAI Chat Completions (stream or not)
    POST /{name}/v1/embeddings         OpenAI embeddings (float or base64)
    GET  /{name}/v1/models             OpenAI model list
    POST /{name}/v1/messages           Anthropic Messages (stream or not)

Answers: the reply text is ``"echo: " + <last user message text>``, one token per
whitespace-separated word (a stream sends one chunk per word). Usage: prompt tokens = words
of every message text (system included); completion tokens = reply words. The request's
``user`` (OpenAI) / ``metadata.user_id`` (Anthropic) ``"cached"`` reports half the prompt
tokens as cached; a model whose name contains ``"reasoning"`` reports 5 reasoning tokens
(OpenAI only, counted inside ``completion_tokens``). ``max_tokens`` (or
``max_completion_tokens``) shorter than the reply cuts it (finish ``length`` /
``max_tokens``). A deployment whose name starts with ``"nousage"`` never sends usage in an
OpenAI stream. With tools and ``call:NAME`` in the last user message the answer is a call
of tool NAME with arguments ``{"q": <the text after call:NAME>}``; OpenAI JSON mode
(``response_format`` ``json_object``) answers ``{"echo": <last user text>}``.

Every request needs a key, else a 401 in the flavour's shape: ``Authorization: Bearer …``
(OpenAI), ``x-api-key`` or ``Authorization: Bearer`` (Anthropic, whose 2.x SDK sends the
latter); Anthropic requests also need ``anthropic-version`` (else 400). Calls are recorded
before any check, so refused and faulted attempts count too.

Faults (``fail(name, fault, times=1, **opts)``), consumed one per request to that name:
``"429"`` (``retry_after=`` seconds: a ``Retry-After`` header), ``"500"``, ``"503"``,
``"529"``, any other HTTP status as a string (``"400"``, ``"401"``, …) with the flavour's
error body, ``"timeout"`` (``seconds=``, default 30, before any byte of the answer),
``"cut"`` (stream: ``after=`` N content chunks, default 1, then the connection drops;
non-stream: the connection drops inside the body), ``"slow_first"`` (``seconds=``, default 1: a
delay before the first token), ``"drip"`` (stream: ``seconds=``, default 0.05, between two
chunks; an answer slow enough to disconnect from mid-way), ``"stream_error"`` (stream:
``after=`` N content chunks, default 1, then the flavour's error event — OpenAI's
``data: {"error": …}``, Anthropic's ``event: error`` overloaded_error — and the stream
ends), ``"garbage"`` (200 with a non-JSON body / a non-SSE stream),
``"context"`` (400 context length exceeded in the flavour's error shape).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import struct
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["FakeProvider", "start_fake_provider"]

FAULTS = (
    "429",
    "500",
    "503",
    "529",
    "timeout",
    "cut",
    "slow_first",
    "drip",
    "stream_error",
    "garbage",
    "context",
)
REASONING_TOKENS = 5


class _Cut(Exception):
    """Raised inside a response to drop the connection (silenced in uvicorn's log)."""


class _QuietCut(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, _Cut):
                return False
            exc = exc.__cause__ or exc.__context__
        return "returned without completing response" not in record.getMessage()


@dataclass
class _Fault:
    kind: str
    opts: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Answer:
    """What the fake says to one chat request, flavour-neutral."""

    text: str | None  # None: a tool call
    tool: tuple[str, str, dict[str, Any]] | None  # (call id, name, arguments)
    pieces: list[str]  # the stream's content chunks (text words, or argument fragments)
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    truncated: bool  # cut by max_tokens


# --- request reading ------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """The text of an OpenAI or Anthropic message content (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") in ("text", "input_text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "tool_result":
                texts.append(_text_of(part.get("content")))
    return " ".join(t for t in texts if t)


def _words(text: str) -> int:
    return len(text.split())


def _answer(body: dict[str, Any], flavour: str) -> _Answer:
    messages = body.get("messages") or []
    prompt = sum(_words(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    if flavour == "anthropic":
        prompt += _words(_text_of(body.get("system")))
        user = (body.get("metadata") or {}).get("user_id")
    else:
        user = body.get("user")
    last = ""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            last = _text_of(m.get("content"))
            break
    cached = prompt // 2 if user == "cached" else 0
    reasoning = (
        REASONING_TOKENS if flavour == "openai" and "reasoning" in str(body.get("model", "")) else 0
    )
    limit = body.get("max_completion_tokens") or body.get("max_tokens")

    words = last.split()
    tool_name = next((w[5:] for w in words if w.startswith("call:") and len(w) > 5), None)
    if body.get("tools") and tool_name is not None:
        rest = last.split(f"call:{tool_name}", 1)[1].strip()
        args = {"q": rest}
        arguments = json.dumps(args)
        prefix = "call_" if flavour == "openai" else "toolu_"
        call_id = prefix + hashlib.sha256(last.encode()).hexdigest()[:24]
        pieces = [arguments[i : i + 8] for i in range(0, len(arguments), 8)]
        return _Answer(
            None,
            (call_id, tool_name, args),
            pieces,
            prompt,
            1 + _words(arguments) + reasoning,
            cached,
            reasoning,
            False,
        )

    fmt = body.get("response_format") or {}
    if flavour == "openai" and isinstance(fmt, dict) and fmt.get("type") == "json_object":
        reply = json.dumps({"echo": last})
    else:
        reply = "echo: " + last
    tokens = reply.split()
    truncated = isinstance(limit, int) and 0 < limit < len(tokens)
    if truncated:
        tokens = tokens[:limit]
    pieces = [w if i == 0 else " " + w for i, w in enumerate(tokens)]
    return _Answer(
        "".join(pieces),
        None,
        pieces,
        prompt,
        len(tokens) + reasoning,
        cached,
        reasoning,
        truncated,
    )


def _openai_usage(a: _Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "total_tokens": a.prompt_tokens + a.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": a.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": a.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _anthropic_usage(a: _Answer, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": a.prompt_tokens - a.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": a.cached_tokens,
        "output_tokens": output_tokens,
    }


def _error_body(flavour: str, status: int, message: str, code: str | None) -> dict[str, Any]:
    if flavour == "anthropic":
        kinds = {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            413: "request_too_large",
            429: "rate_limit_error",
            500: "api_error",
            503: "overloaded_error",
            529: "overloaded_error",
        }
        return {
            "type": "error",
            "error": {"type": kinds.get(status, "api_error"), "message": message},
        }
    types = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests"}
    kind = types.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


# --- the server -----------------------------------------------------------------------


class FakeProvider:
    """A running fake provider (see the module docstring). Thread-safe: tests configure it
    from their thread while it serves in its own."""

    def __init__(self) -> None:
        self.url = ""
        self._lock = threading.Lock()
        self._faults: dict[str, list[_Fault]] = defaultdict(list)
        self._calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/{name}/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/{name}/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/{name}/v1/models", self._models, methods=["GET"]),
                Route("/{name}/v1/messages", self._messages, methods=["POST"]),
            ]
        )

    # -- the test's side --

    def base_url(self, name: str = "d", flavour: str = "openai") -> str:
        """The base URL a deployment ``name`` of the ``flavour`` ("openai"/"anthropic") uses."""
        if flavour == "openai":
            return f"{self.url}/{name}/v1"
        if flavour == "anthropic":
            return f"{self.url}/{name}"
        raise ValueError(f"unknown flavour {flavour!r}: use 'openai' or 'anthropic'")

    def fail(self, name: str, fault: str, times: int = 1, **opts: Any) -> None:
        """Make the next ``times`` requests to ``name`` fail with ``fault`` (queued after any
        faults already set)."""
        if fault not in FAULTS and not (fault.isdigit() and 400 <= int(fault) <= 599):
            raise ValueError(f"unknown fault {fault!r}: use one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults[name].extend(_Fault(fault, dict(opts)) for _ in range(times))

    def calls(self, name: str) -> list[dict[str, Any]]:
        """The request bodies ``name`` received, oldest first; each has its headers
        (lower-case names) under ``"_headers"``, its path under ``"_path"``, the client's
        address under ``"_peer"`` (one per connection: keep-alive shows); a stream
        answered has ``"_stream_end"``: "complete", "cut" (the fault) or "disconnected" (the
        client went away; set when the server noticed)."""
        with self._lock:
            return [dict(c) for c in self._calls.get(name, [])]

    def reset(self) -> None:
        """Forget every fault and call."""
        with self._lock:
            self._faults.clear()
            self._calls.clear()

    def start(self) -> FakeProvider:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        logging.getLogger("uvicorn.error").addFilter(_QuietCut())
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="fake-llm")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake provider did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)

    # -- the server's side --

    async def _begin(self, request: Request, flavour: str) -> tuple[str, Any, _Fault | None]:
        """Record the call, check the key header; → (name, body or an error Response, fault)."""
        name = request.path_params["name"]
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        record = dict(body) if isinstance(body, dict) else {"_raw": raw.decode(errors="replace")}
        record["_headers"] = {k.lower(): v for k, v in request.headers.items()}
        record["_path"] = request.url.path
        record["_peer"] = f"{request.client.host}:{request.client.port}" if request.client else ""
        request.state.record = record
        with self._lock:
            self._calls[name].append(record)
        if flavour == "anthropic":
            # Anthropic's SDK (2.x) sends its key as ``Authorization: Bearer``; the API takes both.
            bearer = request.headers.get("authorization", "").startswith("Bearer ")
            if not request.headers.get("x-api-key") and not bearer:
                message = "x-api-key or Authorization: Bearer header is required"
                return name, self._error(flavour, 401, message), None
            if not request.headers.get("anthropic-version"):
                return name, self._error(flavour, 400, "anthropic-version header is required"), None
        else:
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or not auth[7:].strip():
                return (
                    name,
                    self._error(flavour, 401, "You didn't provide an API key.", "invalid_api_key"),
                    None,
                )
        if not isinstance(body, dict):
            return name, self._error(flavour, 400, "We could not parse the JSON body."), None
        with self._lock:
            queue = self._faults.get(name)
            fault = queue.pop(0) if queue else None
        return name, body, fault

    def _error(
        self,
        flavour: str,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return JSONResponse(_error_body(flavour, status, message, code), status, headers=headers)

    async def _fault_response(
        self, request: Request, flavour: str, fault: _Fault, stream: bool
    ) -> Response | None:
        """The response of a fault that answers before the body (None: the fault acts later)."""
        kind, opts = fault.kind, fault.opts
        if kind == "timeout":
            await _sleep_unless_gone(request, float(opts.get("seconds", 30)))
            return None
        if kind == "429":
            headers = {}
            if opts.get("retry_after") is not None:
                headers["retry-after"] = str(opts["retry_after"])
            return self._error(
                flavour, 429, "Rate limit reached (fake provider).", "rate_limit_exceeded", headers
            )
        if kind == "context":
            if flavour == "anthropic":
                msg = "prompt is too long: 210000 tokens > 200000 maximum"
                return self._error(flavour, 400, msg)
            msg = (
                "This model's maximum context length is 128000 tokens. However, your messages "
                "resulted in 130000 tokens. Please reduce the length of the messages."
            )
            return self._error(flavour, 400, msg, "context_length_exceeded")
        if kind == "garbage":
            if stream:
                return StreamingResponse(
                    iter([b"<html><body>502 Bad Gateway</body></html>\n"]),
                    media_type="text/event-stream",
                )
            return Response(
                b"<html><body>502 Bad Gateway</body></html>", 200, media_type="text/html"
            )
        if kind == "cut" and not stream:
            return _CutResponse()
        if kind.isdigit():
            status = int(kind)
            messages = {
                500: "The server had an error while processing your request.",
                503: "The engine is currently overloaded, please try again later.",
                529: "Overloaded",
                401: "Incorrect API key provided.",
            }
            return self._error(flavour, status, messages.get(status, f"fake error {status}"))
        return None

    def _streaming(
        self, request: Request, events: AsyncIterator[bytes], fault: _Fault | None
    ) -> StreamingResponse:
        """The SSE response of ``events``; how it ended goes in the call's ``_stream_end``
        (with the "drip" fault the chunks come ``seconds`` apart)."""
        record = request.state.record
        drip = float(fault.opts.get("seconds", 0.05)) if fault and fault.kind == "drip" else None

        async def tracked() -> AsyncIterator[bytes]:
            outcome = "disconnected"  # unless it ends otherwise: cancelled by a disconnect
            try:
                first = True
                async for data in events:
                    if drip is not None and not first:
                        await asyncio.sleep(drip)
                    first = False
                    yield data
                outcome = "complete"
            except _Cut:
                outcome = "cut"
                raise
            finally:
                with self._lock:
                    record["_stream_end"] = outcome

        return StreamingResponse(tracked(), media_type="text/event-stream")

    async def _chat(self, request: Request) -> Response:
        name, body, fault = await self._begin(request, "openai")
        if isinstance(body, Response):
            return body
        stream = bool(body.get("stream"))
        if fault is not None:
            response = await self._fault_response(request, "openai", fault, stream)
            if response is not None:
                return response
        answer = _answer(body, "openai")
        model = str(body.get("model", "fake-model"))
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        finish = "tool_calls" if answer.tool else ("length" if answer.truncated else "stop")
        if not stream:
            if fault is not None and fault.kind == "slow_first":
                await _sleep_unless_gone(request, float(fault.opts.get("seconds", 1)))
            message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
            if answer.tool:
                call_id, tool, args = answer.tool
                message["tool_calls"] = [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": tool, "arguments": json.dumps(args)},
                    }
                ]
            return JSONResponse(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                    ],
                    "usage": _openai_usage(answer),
                    "system_fingerprint": "fp_fake",
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        include_usage = include_usage and not name.startswith("nousage")

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                data["usage"] = None
            return _sse(data)

        async def events() -> AsyncIterator[bytes]:
            if fault is not None and fault.kind == "slow_first":
                await _sleep_unless_gone(request, float(fault.opts.get("seconds", 1)))
            cut_after = int(fault.opts.get("after", 1)) if fault and fault.kind == "cut" else None
            error_after = _after(fault, "stream_error")
            if answer.tool:
                call_id, tool, _ = answer.tool
                yield chunk(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": tool, "arguments": ""},
                            }
                        ],
                    }
                )
            else:
                yield chunk({"role": "assistant", "content": "", "refusal": None})
            for i, piece in enumerate(answer.pieces):
                if cut_after is not None and i >= cut_after:
                    raise _Cut()
                if error_after is not None and i >= error_after:
                    yield _sse(_error_body("openai", 500, "The server had an error.", None))
                    return
                if answer.tool:
                    yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                else:
                    yield chunk({"content": piece})
            if cut_after is not None:
                raise _Cut()
            if error_after is not None:
                yield _sse(_error_body("openai", 500, "The server had an error.", None))
                return
            yield chunk({}, finish)
            if include_usage:
                yield _sse(
                    {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": _openai_usage(answer),
                    }
                )
            yield _sse("[DONE]")

        return self._streaming(request, events(), fault)

    async def _messages(self, request: Request) -> Response:
        name, body, fault = await self._begin(request, "anthropic")
        if isinstance(body, Response):
            return body
        stream = bool(body.get("stream"))
        if fault is not None:
            response = await self._fault_response(request, "anthropic", fault, stream)
            if response is not None:
                return response
        answer = _answer(body, "anthropic")
        model = str(body.get("model", "fake-model"))
        mid = "msg_" + uuid.uuid4().hex[:24]
        stop = "tool_use" if answer.tool else ("max_tokens" if answer.truncated else "end_turn")
        if not stream:
            if fault is not None and fault.kind == "slow_first":
                await _sleep_unless_gone(request, float(fault.opts.get("seconds", 1)))
            content: list[dict[str, Any]]
            if answer.tool:
                call_id, tool, args = answer.tool
                content = [{"type": "tool_use", "id": call_id, "name": tool, "input": args}]
            else:
                content = [{"type": "text", "text": answer.text}]
            return JSONResponse(
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": _anthropic_usage(answer, answer.completion_tokens),
                }
            )

        async def events() -> AsyncIterator[bytes]:
            if fault is not None and fault.kind == "slow_first":
                await _sleep_unless_gone(request, float(fault.opts.get("seconds", 1)))
            cut_after = int(fault.opts.get("after", 1)) if fault and fault.kind == "cut" else None
            error_after = _after(fault, "stream_error")
            overloaded = _sse(_error_body("anthropic", 529, "Overloaded", None), "error")
            start: dict[str, Any] = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": _anthropic_usage(answer, 1),
            }
            yield _sse({"type": "message_start", "message": start}, "message_start")
            if answer.tool:
                call_id, tool, _ = answer.tool
                block: dict[str, Any] = {
                    "type": "tool_use",
                    "id": call_id,
                    "name": tool,
                    "input": {},
                }
            else:
                block = {"type": "text", "text": ""}
            yield _sse(
                {"type": "content_block_start", "index": 0, "content_block": block},
                "content_block_start",
            )
            yield _sse({"type": "ping"}, "ping")
            for i, piece in enumerate(answer.pieces):
                if cut_after is not None and i >= cut_after:
                    raise _Cut()
                if error_after is not None and i >= error_after:
                    yield overloaded
                    return
                delta = (
                    {"type": "input_json_delta", "partial_json": piece}
                    if answer.tool
                    else {"type": "text_delta", "text": piece}
                )
                yield _sse(
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                    "content_block_delta",
                )
            if cut_after is not None:
                raise _Cut()
            if error_after is not None:
                yield overloaded
                return
            yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            yield _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": answer.completion_tokens},
                },
                "message_delta",
            )
            yield _sse({"type": "message_stop"}, "message_stop")

        return self._streaming(request, events(), fault)

    async def _embeddings(self, request: Request) -> Response:
        name, body, fault = await self._begin(request, "openai")
        if isinstance(body, Response):
            return body
        if fault is not None:
            response = await self._fault_response(request, "openai", fault, False)
            if response is not None:
                return response
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        elif isinstance(inputs, list) and inputs and isinstance(inputs[0], int):
            inputs = [" ".join(map(str, inputs))]  # one input given as token ids
        if not isinstance(inputs, list) or not inputs:
            return self._error("openai", 400, "'input' must be a string or a list of strings")
        texts = [i if isinstance(i, str) else " ".join(map(str, i)) for i in inputs]
        base64_out = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embedding_of(text)
            value: Any = (
                base64.b64encode(struct.pack("<8f", *vector)).decode() if base64_out else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(_words(t) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model", "fake-embedding")),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _models(self, request: Request) -> Response:
        name = request.path_params["name"]
        with self._lock:
            self._calls[name].append(
                {
                    "_headers": {k.lower(): v for k, v in request.headers.items()},
                    "_path": request.url.path,
                }
            )
        models = ["fake-model", "fake-embedding"]
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in models
                ],
            }
        )


def _after(fault: _Fault | None, kind: str) -> int | None:
    """The fault's ``after`` (default 1) when it is of ``kind``, else None."""
    return int(fault.opts.get("after", 1)) if fault is not None and fault.kind == kind else None


def embedding_of(text: str) -> list[float]:
    """The fake's embedding of ``text``: 8 floats in [-1, 1) from its SHA-256 (exact in
    float32, so a base64 answer decodes to the same numbers)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(int.from_bytes(digest[i * 2 : i * 2 + 2], "big") - 32768) / 32768 for i in range(8)]


class _CutResponse(Response):
    """Headers promising a body, half of it, then the connection drops."""

    def __init__(self) -> None:
        super().__init__(b"", 200, media_type="application/json")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"200")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": True})
        raise _Cut()


async def _sleep_unless_gone(request: Request, seconds: float) -> None:
    """Sleep ``seconds``, returning early when the client disconnects."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(0.05, left))
        if await request.is_disconnected():
            return


def start_fake_provider() -> FakeProvider:
    """Start a fake provider on a free 127.0.0.1 port in a daemon thread (stop() ends it)."""
    return FakeProvider().start()
