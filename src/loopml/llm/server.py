"""``loopml gateway serve``: the gateway over HTTP, speaking OpenAI's and Anthropic's APIs.

    POST /v1/chat/completions   OpenAI Chat Completions (SSE when "stream": true)
    POST /v1/embeddings         OpenAI embeddings
    GET  /v1/models             the model names this key may use
    POST /v1/messages           Anthropic Messages (SSE when "stream": true)
    POST /v1/feedback           feedback on a request: {"request_id", "value", "name", "comment"}
    POST /v1/traces             OTLP/HTTP trace export (protobuf or JSON, gzip or not): an
                                application's spans, stored like the gateway's own
    GET  /health                {"status": "ok"}
    GET  /metrics               Prometheus

Any OpenAI or Anthropic SDK pointed at it works (``base_url="http://127.0.0.1:4000/v1"``;
for Anthropic's SDK ``base_url="http://127.0.0.1:4000"``), with a virtual key as its API key.
Every answer carries its request id in ``x-request-id`` (what feedback is given on).
The config file (``--config``, else ``loopml.toml``) is re-read when it changes: a config
that doesn't check out is refused with its error in the log, and the running one stays.
SIGTERM stops taking requests, lets streams in flight finish, then writes the request log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from loopml.exceptions import LoopmlError
from loopml.heap import settle_for_serving
from loopml.llm.errors import BadRequest, GatewayError, PermissionDenied, RateLimited

if TYPE_CHECKING:
    from loopml.llm.gateway import Gateway
    from loopml.llm.otlp import Encoding
    from loopml.workspace import Workspace

log = logging.getLogger("loopml.llm.server")

#: Largest request body accepted (bytes): bigger ones get a 413.
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Seconds between checks of the config file for changes.
RELOAD_INTERVAL = 2.0
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(obj), status_code=status, media_type="application/json", headers=headers
    )


def _api_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or request.headers.get("api-key")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"The request body is over {MAX_BODY_BYTES} bytes.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _error(exc: Exception, flavour: str) -> Response:
    if not isinstance(exc, GatewayError):
        if isinstance(exc, LoopmlError):
            exc = BadRequest(str(exc))
        else:
            log.exception("Unexpected error in the gateway")
            exc = GatewayError(f"Internal error: {type(exc).__name__}: {exc}")
    headers = {}
    if isinstance(exc, RateLimited) and exc.retry_after:
        headers["retry-after"] = str(max(1, round(exc.retry_after)))
    body = exc.anthropic_body() if flavour == "anthropic" else exc.openai_body()
    return _json(body, exc.status, headers)


class RequestUnknown(GatewayError):
    """Feedback named a request id the request log does not hold."""

    status, type, code = 404, "invalid_request_error", "request_not_found"


class FeedbackRefused(PermissionDenied):
    """The key did not make the request it gives feedback on (nor did its team)."""

    code = "feedback_not_allowed"


def _sse_openai(chunk: Any) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _sse_anthropic(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class EventStream(Response):
    """A Server-Sent Events answer: each event is sent as it comes, and a client that goes
    away cancels the stream (the gateway closes the upstream request and bills what was
    used). Starlette's ``StreamingResponse`` does the same through an anyio task group per
    request; one plain task watching for the disconnect costs a fraction of it."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], request_id: str | None = None) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers(
            {**_SSE_HEADERS, "x-request-id": request_id} if request_id else _SSE_HEADERS
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            async for data in self.events:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()  # the client left: the stream was cancelled on purpose
        finally:
            watcher.cancel()


class GatewayApp:
    """The Starlette app around one :class:`~loopml.llm.gateway.Gateway`."""

    def __init__(self, gateway: Gateway, *, watch_config: bool = True) -> None:
        self.gateway = gateway
        self.watch_config = watch_config
        self._watcher: asyncio.Task[None] | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/models", self.models, methods=["GET"]),
                Route("/v1/messages", self.messages, methods=["POST"]),
                Route("/v1/feedback", self.feedback, methods=["POST"]),
                Route("/feedback", self.feedback, methods=["POST"]),
                Route("/v1/traces", self.traces, methods=["POST"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
            ],
            lifespan=self.lifespan,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        cache = self.gateway.cache
        if cache is not None:  # serve once the entries other replicas kept are loaded
            await asyncio.to_thread(cache.wait_synced)
        if self.watch_config:
            self._watcher = asyncio.create_task(self._watch())
        try:
            yield
        finally:
            if self._watcher is not None:
                self._watcher.cancel()
            await self.gateway.aclose()

    # -- config reload -----------------------------------------------------------------------

    def _config_file(self) -> Path | None:
        gw = self.gateway
        if gw.config_path is not None:
            return gw.config_path
        return gw.workspace.settings.config_path

    async def _watch(self) -> None:
        path = self._config_file()
        if path is None:
            return
        seen = _mtime(path)
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            now = _mtime(path)
            if now == seen:
                continue
            seen = now
            self.reload()

    def reload(self) -> bool:
        """Re-read the config file; keep the running config if the new one is refused."""
        from loopml.config import load_settings
        from loopml.llm.config import load_gateway_config

        gw = self.gateway
        try:
            if gw.config_path is not None:
                config = load_gateway_config(gw.config_path)
            else:
                root = gw.workspace.settings.root
                config = load_gateway_config(settings=load_settings(root))
        except LoopmlError as exc:
            log.error("Config not reloaded, the running one stays: %s", exc)
            return False
        if config.raw == gw.config.raw:
            return False
        gw.reload(config)
        log.warning("Config reloaded from %s", config.source)
        return True

    # -- routes ------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(
            generate_latest(self.gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    async def models(self, request: Request) -> Response:
        try:
            names = self.gateway.model_names(_api_key(request))
        except Exception as exc:
            return _error(exc, "openai")
        return _json(
            {
                "object": "list",
                "data": [
                    {"id": n, "object": "model", "created": 0, "owned_by": "loopml"} for n in names
                ],
            }
        )

    async def chat(self, request: Request) -> Response:
        try:
            body = await _body(request)
            key, headers = _api_key(request), _trace_headers(request)
            if body.get("stream"):
                chunks = await self.gateway.astream(body, api_key=key, headers=headers)
                return EventStream(_openai_events(chunks), _stream_id(chunks))
            reply = await self.gateway.achat(body, api_key=key, headers=headers)
        except Exception as exc:
            return _error(exc, "openai")
        return _json(reply.body, headers=reply.headers())

    async def embeddings(self, request: Request) -> Response:
        try:
            body = await _body(request)
            reply = await self.gateway.aembed(
                body, api_key=_api_key(request), headers=_trace_headers(request)
            )
        except Exception as exc:
            return _error(exc, "openai")
        return _json(reply.body, headers=reply.headers())

    async def messages(self, request: Request) -> Response:
        from loopml.llm import translate

        try:
            raw = await _body(request)
            body = translate.anthropic_to_openai_request(raw)
            key, headers = _api_key(request), _trace_headers(request)
            model = str(raw.get("model"))
            if raw.get("stream"):
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
                chunks = await self.gateway.astream(
                    body, api_key=key, headers=headers, endpoint="messages"
                )
                return EventStream(_anthropic_events(chunks, model), _stream_id(chunks))
            reply = await self.gateway.achat(
                body, api_key=key, headers=headers, endpoint="messages"
            )
            message = translate.openai_to_anthropic_response(reply.body, model)
        except Exception as exc:
            return _error(exc, "anthropic")
        return _json(message, headers=reply.headers())

    async def feedback(self, request: Request) -> Response:
        """``{"request_id", "value", "name"?, "comment"?}`` → 201 and the stored feedback.
        With a key (required when the gateway requires keys), only on a request that key or
        its team made."""
        from loopml.llm.feedback import FeedbackNotAllowed, RequestNotFound, record_feedback

        gw = self.gateway
        try:
            body = await _body(request)
            api_key = _api_key(request)
            key = None if api_key is None and not gw.require_key else gw.keys.authenticate(api_key)
            unknown = set(body) - {"request_id", "value", "name", "comment"}
            if unknown:
                raise BadRequest(
                    f"Unknown field(s) {', '.join(sorted(unknown))}: feedback takes request_id, "
                    "value, name and comment."
                )
            if "request_id" not in body or "value" not in body:
                raise BadRequest("Feedback needs 'request_id' and 'value' (a number or a bool).")
            args: dict[str, Any] = {
                "name": body.get("name") or "user",
                "comment": body.get("comment"),
                "key": key,
                "workspace": gw.workspace,
            }
            try:
                stored = await asyncio.to_thread(
                    record_feedback, body["request_id"], body["value"], **args
                )
            except RequestNotFound:
                # The request may still wait in the log's batch: write it out, look again.
                await asyncio.to_thread(gw.log.flush)
                stored = await asyncio.to_thread(
                    record_feedback, body["request_id"], body["value"], **args
                )
        except RequestNotFound as exc:
            return _error(RequestUnknown(str(exc)), "openai")
        except FeedbackNotAllowed as exc:
            return _error(FeedbackRefused(str(exc)), "openai")
        except Exception as exc:
            return _error(exc, "openai")
        return _json(stored.to_dict(), 201)

    async def traces(self, request: Request) -> Response:
        """OTLP/HTTP trace export (what an OpenTelemetry SDK's OTLP/HTTP exporter posts):
        the spans are stored in the request log's span batches, and the answer is an
        ``ExportTraceServiceResponse`` whose ``partial_success`` counts the spans that could
        not be stored, and says why. Errors are a ``google.rpc.Status`` in the request's
        encoding: 400 not OTLP, 401 no valid key (when one is required, or one is sent),
        413 over the size limit, 415 an unsupported content type or encoding."""
        from loopml.llm import otlp

        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        encoding = _OTLP_ENCODINGS.get(media)
        if encoding is None:
            return _otlp_error(
                415,
                f"Content-Type {media or '(none)'!r} is not an OTLP encoding: send "
                "application/x-protobuf or application/json (OTLP/JSON).",
                "json",
            )
        gw = self.gateway
        try:
            api_key = _api_key(request)
            key = gw.keys.authenticate(api_key) if api_key is not None or gw.require_key else None
            coding = request.headers.get("content-encoding", "").strip().lower()
            if coding not in ("", "identity", *otlp.COMPRESSIONS):
                return _otlp_error(
                    415,
                    f"Content-Encoding {coding!r} is not supported: send gzip, deflate or "
                    "no encoding.",
                    encoding,
                )
            body = await _capped_body(request, otlp.MAX_EXPORT_BYTES)

            def read(body: bytes) -> otlp.Received:  # off the event loop: CPU-bound
                if coding in otlp.COMPRESSIONS:
                    body = otlp.decompress(body, coding, otlp.MAX_EXPORT_BYTES)
                received = otlp.read_export(body, encoding)
                if key is None:
                    otlp.stamp_sender(received, None, None)
                else:
                    otlp.stamp_sender(received, key.id, key.team)
                return received

            received = await asyncio.to_thread(read, body)
        except GatewayError as exc:
            return _otlp_error(exc.status, exc.message, encoding)
        except otlp.BodyTooLarge as exc:
            return _otlp_error(413, str(exc), encoding)
        except otlp.NotOtlp as exc:
            return _otlp_error(400, str(exc), encoding)
        except ClientDisconnect:  # the exporter gave up mid-body: no one to answer
            return Response(status_code=400)
        except Exception as exc:
            log.exception("Unexpected error in the gateway's OTLP receiver")
            return _otlp_error(500, f"Internal error: {type(exc).__name__}: {exc}", encoding)
        if received.spans:
            gw.log.add_spans(received.spans)  # written in batches, off the request path
            # and on to the gateway's collector, as received, so its traces are whole there
            # (not what another gateway forwarded: an endpoint pointing back can't loop)
            from loopml.llm.otlp_forward import FORWARDED_HEADER

            if FORWARDED_HEADER not in request.headers:
                gw.tracing.forward(body, media, coding)
        if received.rejected:
            log.warning("OTLP export: %s", received.error_message)
        return Response(otlp.encode_response(received, encoding), media_type=_OTLP_MEDIA[encoding])


_OTLP_ENCODINGS: dict[str, Encoding] = {
    "application/x-protobuf": "protobuf",
    "application/protobuf": "protobuf",
    "application/json": "json",
}
_OTLP_MEDIA: dict[Encoding, str] = {
    "protobuf": "application/x-protobuf",
    "json": "application/json",
}


def _otlp_error(status: int, message: str, encoding: Encoding) -> Response:
    from loopml.llm.otlp import encode_status

    return Response(
        encode_status(status, message, encoding),
        status_code=status,
        media_type=_OTLP_MEDIA[encoding],
    )


async def _capped_body(request: Request, limit: int) -> bytes:
    """The request's body; :class:`~loopml.llm.otlp.BodyTooLarge` as soon as it passes
    ``limit`` bytes (announced or sent), without reading the rest into memory."""
    from loopml.llm.otlp import BodyTooLarge

    too_large = BodyTooLarge(
        f"The export request is over {limit} bytes: send smaller batches "
        "(OTEL_BSP_MAX_EXPORT_BATCH_SIZE) or compress them (OTEL_EXPORTER_OTLP_COMPRESSION=gzip)."
    )
    announced = request.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        raise too_large
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


def _stream_id(chunks: AsyncIterator[Any]) -> str | None:
    """The request id of a stream the gateway opened (its ``GatewayStream.request_id``)."""
    found = getattr(chunks, "request_id", None)
    return found if isinstance(found, str) else None


def _trace_headers(request: Request) -> dict[str, str]:
    headers = request.headers
    found = {
        name: headers[name]
        for name in ("traceparent", "tracestate", "x-loopml-tags")
        if name in headers
    }
    return found


async def _openai_events(chunks: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield _sse_openai(chunk)
    except GatewayError as exc:
        # Never a stream that looks complete: an error event, and no [DONE].
        yield _sse_openai(exc.openai_body())
        return
    yield b"data: [DONE]\n\n"


async def _anthropic_events(chunks: AsyncIterator[Any], model: str) -> AsyncIterator[bytes]:
    from loopml.llm.translate import OpenAIToAnthropicStream

    stream = OpenAIToAnthropicStream(model, f"msg_{uuid.uuid4().hex[:24]}")
    try:
        async for chunk in chunks:
            for event, data in stream.feed(chunk):
                yield _sse_anthropic(event, data)
    except GatewayError as exc:
        for event, data in stream.error(exc.message):
            yield _sse_anthropic(event, data)
        return
    for event, data in stream.finish():
        yield _sse_anthropic(event, data)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def create_gateway_app(gateway: Gateway, *, watch_config: bool = True) -> Starlette:
    """The ASGI app serving ``gateway``."""
    return GatewayApp(gateway, watch_config=watch_config).app


# -- loopml gateway serve ---------------------------------------------------------------------

_ENV_CONFIG = "LOOPML_GATEWAY_CONFIG"
_ENV_ROOT = "LOOPML_GATEWAY_WORKSPACE"


def app_from_env() -> Starlette:
    """The app of one ``--workers`` process (uvicorn's factory): the workspace and config
    named by the variables :func:`serve` sets."""
    from loopml.llm.gateway import Gateway
    from loopml.workspace import Workspace

    root = os.environ.get(_ENV_ROOT)
    ws = Workspace.open(root) if root else Workspace.open()
    gateway = Gateway.from_config(
        os.environ.get(_ENV_CONFIG) or None, workspace=ws, require_key=None
    )
    app = create_gateway_app(gateway)
    settle_for_serving()
    return app


def serve(
    *,
    workspace: Workspace,
    config_path: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 4000,
    workers: int = 1,
    log_level: str = "warning",
    announce: Callable[[], None] | None = None,
) -> None:
    """Run the gateway until SIGINT/SIGTERM (``loopml gateway serve``). ``announce`` is
    called once the gateway is built and its port is free, just before it starts serving."""
    import uvicorn

    from loopml.llm import tracing  # noqa: F401 -- without the llm extra: one clear error now
    from loopml.llm.gateway import Gateway
    from loopml.ports import ensure_port_free

    ensure_port_free(host, port)
    if workers > 1:
        if announce is not None:
            announce()
        os.environ[_ENV_ROOT] = str(workspace.settings.root)
        if config_path is not None:
            os.environ[_ENV_CONFIG] = str(Path(config_path).resolve())
        uvicorn.run(
            "loopml.llm.server:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            timeout_graceful_shutdown=30,
        )
        return
    gateway = Gateway.from_config(config_path, workspace=workspace, require_key=None)
    app = create_gateway_app(gateway)
    settle_for_serving()
    if announce is not None:
        announce()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=30,
    )
