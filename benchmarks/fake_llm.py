"""A fast fake OpenAI-compatible provider for the gateway benchmark (``benchmarks/gateway.py``).

::

    python benchmarks/fake_llm.py --port 8901          # serves until SIGTERM / Ctrl-C
    python benchmarks/fake_llm.py --port 0             # any free port; prints "listening on N"

It answers on 127.0.0.1 with no added delay (``--delay S`` adds one), written on raw ``asyncio`` (no web
framework) so that it is "the limit" the gateways are measured against:

* ``POST /v1/chat/completions`` (and ``/chat/completions``): a deterministic answer
  (``"Hello from the fake provider."``) with ``usage``. With ``"stream": true`` the answer is
  Server-Sent Events: a role chunk, one chunk per word, a finish chunk, a usage chunk when
  ``stream_options.include_usage`` is true, then ``data: [DONE]``; all written at once.
* ``POST /v1/embeddings``: one 8-float vector per input, with usage.
* ``GET /v1/models``, ``GET /health``: for readiness checks.

Token figures are deterministic: prompt tokens = the characters of every message's content
divided by 4 (at least 1), completion tokens = the words of the answer. Any path not listed
answers 404 with an OpenAI-shaped error body; a body that is not JSON answers 400.

HTTP/1.1 keep-alive; request bodies with ``Content-Length`` or ``Transfer-Encoding: chunked``.
Only the standard library (and ``orjson`` when it is installed) is used.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

try:  # orjson when present: a few µs less a request
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def loads(raw: bytes) -> Any:
        return orjson.loads(raw)

except ImportError:  # pragma: no cover - the project's venv has orjson
    import json

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(raw: bytes) -> Any:
        return json.loads(raw)


ANSWER = "Hello from the fake provider."
WORDS = ANSWER.split(" ")
MAX_HEAD = 64 * 1024


def prompt_tokens(body: dict[str, Any]) -> int:
    chars = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
    return max(1, chars // 4)


def completion(body: dict[str, Any], rid: str, created: int) -> bytes:
    p = prompt_tokens(body)
    c = len(WORDS)
    return dumps(
        {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ANSWER},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        }
    )


def stream_events(body: dict[str, Any], rid: str, created: int) -> bytes:
    model = body.get("model", "fake")
    head = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return b"data: " + dumps({**head, "choices": [choice]}) + b"\n\n"

    parts = [chunk({"role": "assistant", "content": ""})]
    for i, word in enumerate(WORDS):
        parts.append(chunk({"content": word if i == 0 else " " + word}))
    parts.append(chunk({}, "stop"))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        p, c = prompt_tokens(body), len(WORDS)
        usage = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        parts.append(b"data: " + dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def embeddings(body: dict[str, Any]) -> bytes:
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    data = [
        {"object": "embedding", "index": i, "embedding": [0.125 * (k + 1) for k in range(8)]}
        for i in range(len(items))
    ]
    tokens = sum(max(1, len(str(x)) // 4) for x in items)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return dumps({"object": "list", "data": data, "model": body.get("model"), "usage": usage})


def response(status: int, body: bytes, ctype: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n"
        % (status, reason, ctype, len(body))
        + body
    )


def sse_response(events: bytes) -> bytes:
    # One chunk of the whole stream, then the last chunk: zero delay between events.
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(events), events)
    )


def error(status: int, message: str, kind: str) -> bytes:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return response(status, dumps(body))


MODELS = dumps({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "me"}]})


class Handler(asyncio.Protocol):
    """One connection: parse requests out of the buffer as they arrive, answer each."""

    counter = 0
    #: Seconds before each chat answer is written (``--delay``): a provider's thinking time.
    delay = 0.0

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.transport.write(error(400, "request head too large", "invalid_request"))
                    self.transport.close()
                return
            head = self.buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            try:
                method, target, _ = lines[0].split(" ", 2)
            except ValueError:
                self.transport.write(error(400, "bad request line", "invalid_request"))
                self.transport.close()
                return
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            start = end + 4
            if headers.get("transfer-encoding", "").lower() == "chunked":
                parsed = dechunk(self.buffer, start)
                if parsed is None:
                    return  # wait for more
                body, stop = parsed
            else:
                length = int(headers.get("content-length") or 0)
                stop = start + length
                if len(self.buffer) < stop:
                    return
                body = self.buffer[start:stop]
            self.buffer = self.buffer[stop:]
            answer = self.answer(method, target.split("?", 1)[0], body)
            close = headers.get("connection", "").lower() == "close"
            if Handler.delay > 0 and method == "POST":
                asyncio.get_running_loop().call_later(Handler.delay, self._send, answer, close)
                continue
            self.transport.write(answer)
            if close:
                self.transport.close()
                return

    def _send(self, answer: bytes, close: bool) -> None:
        if self.transport is not None:
            self.transport.write(answer)
            if close:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def answer(self, method: str, path: str, raw: bytes) -> bytes:
        if path.startswith("/v1/"):
            path = path[3:]
        if method == "GET":
            if path == "/models":
                return response(200, MODELS)
            if path in ("/health", "/", "/health/readiness"):
                return response(200, b'{"status":"ok"}')
            return error(404, f"no route GET {path}", "not_found")
        if method != "POST" or path not in ("/chat/completions", "/embeddings"):
            return error(404, f"no route {method} {path}", "not_found")
        try:
            body = loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            return error(400, f"the body is not a JSON object: {exc}", "invalid_request_error")
        if path == "/embeddings":
            return response(200, embeddings(body))
        Handler.counter += 1
        rid = f"chatcmpl-fake{Handler.counter}"
        created = int(time.time())
        if body.get("stream"):
            return sse_response(stream_events(body, rid, created))
        return response(200, completion(body, rid, created))


def dechunk(buffer: bytes, at: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``at``: (body, end offset), or None when incomplete."""
    out: list[bytes] = []
    while True:
        eol = buffer.find(b"\r\n", at)
        if eol < 0:
            return None
        size = int(buffer[at:eol].split(b";", 1)[0], 16)
        at = eol + 2
        if size == 0:
            end = buffer.find(b"\r\n", at)  # no trailers expected: the empty line
            return (b"".join(out), end + 2) if end >= 0 else None
        if len(buffer) < at + size + 2:
            return None
        out.append(buffer[at : at + size])
        at += size + 2


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Handler, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def start(delay: float = 0.0) -> tuple[subprocess.Popen[str], int]:
    """This fake provider in a subprocess on a free port (``delay`` seconds per POST):
    (the process, its port). Stop it with ``proc.terminate()``."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--port", "0", "--delay", str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"the fake provider did not start: {line!r}")
    return proc, int(line.split()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8901, help="0: any free port (printed)")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each POST is answered")
    args = ap.parse_args(argv)
    Handler.delay = args.delay
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
