"""Traces: spans of the gateway (gateway → router → each provider attempt) and of
applications, stored in the workspace's ``llm_spans`` and optionally exported over OTLP.

:class:`Tracing` owns a private OpenTelemetry ``TracerProvider`` (the process's global one is
left alone): every finished span becomes a :class:`SpanRecord` handed to a
:class:`~loopml.llm.logs.RequestLog`, which writes it in batches off the request path; with
an OTLP endpoint the same spans also go to that collector (``BatchSpanProcessor``).

Applications add their own spans with :func:`trace`, without running a gateway::

    from loopml.llm import trace

    @trace                               # a span named after the function, sync or async
    def answer(question): ...

    with trace("retrieval", attributes={"k": 5}) as span:
        span.set_attribute("docs", 3)
        headers = inject_headers({})     # a call to the gateway with these joins the trace

Spans nest under the current span of the OpenTelemetry context, whichever provider made it;
a gateway honours an incoming ``traceparent`` (:meth:`Tracing.context_from_headers`), so the
application's spans and the gateway's share one trace id.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from loopml.exceptions import missing_dependency

try:
    from opentelemetry import trace as otel_trace
    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # the `llm` extra is not installed
    raise missing_dependency(
        "opentelemetry-sdk", "llm", "loopml's LLM gateway, its request log and traces"
    ) from exc

from loopml.llm.logs import RequestLog

if TYPE_CHECKING:
    from loopml.llm.otlp_forward import OtlpForwarder
    from loopml.workspace import Workspace, WorkspaceLike

F = TypeVar("F", bound=Callable[..., Any])

# GenAI semantic-convention attribute names (and loopml's own) the gateway sets on its spans.
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
LOOPML_COST_USD = "loopml.cost_usd"
LOOPML_DEPLOYMENT = "loopml.deployment"
LOOPML_ATTEMPT = "loopml.attempt"
#: The gateway request a span belongs to (stored in the span row's ``request_id``).
LOOPML_REQUEST_ID = "loopml.request_id"

_KINDS = {
    SpanKind.INTERNAL: "internal",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}
_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass
class SpanRecord:
    """One finished span: a row of ``llm_spans``. Ids are lowercase hex (W3C trace context),
    times microseconds since the epoch."""

    trace_id: str  # 32 hex
    span_id: str  # 16 hex
    parent_id: str | None
    name: str
    kind: str  # internal | server | client | producer | consumer
    start_us: int
    end_us: int
    status: str  # ok | error
    attributes: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None

    @classmethod
    def from_span(cls, span: ReadableSpan) -> SpanRecord:
        context = span.context
        parent = span.parent
        attributes = dict(span.attributes or {})
        for key, value in attributes.items():  # OTel keeps sequences as tuples
            if isinstance(value, tuple):
                attributes[key] = list(value)
        request_id = attributes.get(LOOPML_REQUEST_ID)
        if span.status.status_code is StatusCode.ERROR and span.status.description:
            attributes.setdefault("error", span.status.description)
        start = span.start_time or 0
        return cls(
            trace_id=format(context.trace_id, "032x") if context else "0" * 32,
            span_id=format(context.span_id, "016x") if context else "0" * 16,
            parent_id=format(parent.span_id, "016x") if parent is not None else None,
            name=span.name,
            kind=_KINDS.get(span.kind, "internal"),
            start_us=start // 1000,
            end_us=(span.end_time or start) // 1000,
            status="error" if span.status.status_code is StatusCode.ERROR else "ok",
            attributes=attributes,
            request_id=str(request_id) if request_id is not None else None,
        )


class StoreSpanProcessor(SpanProcessor):
    """Hands every finished span to a :class:`RequestLog` (which writes it in batches)."""

    def __init__(self, log: RequestLog) -> None:
        self.log = log

    def on_end(self, span: ReadableSpan) -> None:
        self.log.add_spans((span,))  # made a SpanRecord by the writer thread

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            self.log.flush()
        except Exception:
            return False
        return True


class StoreTracer(otel_trace.Tracer):
    """An OpenTelemetry tracer whose spans are only stored (handed to a :class:`RequestLog`
    as :class:`SpanRecord` rows when they end): no sampler, span processors or attribute
    limits, so a span costs a few microseconds instead of the SDK's tens. Spans nest under the
    current span of the OpenTelemetry context (or the ``context`` given) whichever tracer made
    it, and are what the OpenTelemetry API expects (``use_span``, ``set_span_in_context``,
    ``traceparent`` injection all work). Events and links are not stored."""

    def __init__(self, log: RequestLog) -> None:
        self.log = log

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> StoredSpan:
        parent = otel_trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id, parent_id = parent.trace_id, parent.span_id
        else:
            trace_id, parent_id = _random_id(128), None
        return StoredSpan(
            self.log,
            name,
            SpanContext(trace_id, _random_id(64), False, _SAMPLED),
            parent_id,
            kind,
            start_time if start_time is not None else time.time_ns(),
            attributes,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[StoredSpan]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with otel_trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ):
            yield span


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _random_id(bits: int) -> int:
    while True:  # W3C trace context: an all-zero id is invalid
        value = random.getrandbits(bits)
        if value:
            return value


class StoredSpan(otel_trace.Span):
    """A span of :class:`StoreTracer`: becomes a :class:`SpanRecord` when it ends."""

    __slots__ = (
        "_attributes",
        "_context",
        "_end_ns",
        "_error",
        "_kind",
        "_log",
        "_name",
        "_parent_id",
        "_start_ns",
    )

    def __init__(
        self,
        log: RequestLog,
        name: str,
        context: SpanContext,
        parent_id: int | None,
        kind: SpanKind,
        start_ns: int,
        attributes: Mapping[str, Any] | None,
    ) -> None:
        self._log = log
        self._name = name
        self._context = context
        self._parent_id = parent_id
        self._kind = kind
        self._start_ns = start_ns
        self._end_ns: int | None = None
        self._error: str | None = None  # None: ok; else the error's description ("" if none)
        self._attributes: dict[str, Any] = {}
        if attributes:
            self.set_attributes(attributes)

    def get_span_context(self) -> SpanContext:
        return self._context

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end_ns is not None:
            return
        if isinstance(value, list | tuple):  # the SDK keeps tuples; stored as lists
            value = list(value)
        elif value is not None and not isinstance(value, str | bool | int | float):
            value = str(value)
        self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        """Events are not stored (nor are they by the SDK path's store)."""

    def update_name(self, name: str) -> None:
        if self._end_ns is None:
            self._name = name

    def is_recording(self) -> bool:
        return self._end_ns is None

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_ns is not None:
            return
        if isinstance(status, Status):
            code, description = status.status_code, status.description
        else:
            code = status
        if code is StatusCode.ERROR:
            self._error = description or ""
        elif code is StatusCode.OK:
            self._error = None

    def record_exception(
        self,
        exception: BaseException,
        attributes: Any = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Exceptions are events, not stored; the span's status says it failed."""

    def end(self, end_time: int | None = None) -> None:
        if self._end_ns is not None:
            return
        self._end_ns = end_time if end_time is not None else time.time_ns()
        attributes = self._attributes
        if self._error:
            attributes.setdefault("error", self._error)
        request_id = attributes.get(LOOPML_REQUEST_ID)
        self._log.add_spans(
            (
                SpanRecord(
                    trace_id=f"{self._context.trace_id:032x}",
                    span_id=f"{self._context.span_id:016x}",
                    parent_id=f"{self._parent_id:016x}" if self._parent_id is not None else None,
                    name=self._name,
                    kind=_KINDS.get(self._kind, "internal"),
                    start_us=self._start_ns // 1000,
                    end_us=self._end_ns // 1000,
                    status="ok" if self._error is None else "error",
                    attributes=attributes,
                    request_id=str(request_id) if request_id is not None else None,
                ),
            )
        )


class Tracing:
    """A private tracer provider whose spans are stored through ``log`` and, with
    ``otlp_endpoint`` (``http://collector:4318/v1/traces``), exported over OTLP/HTTP."""

    def __init__(
        self,
        log: RequestLog,
        *,
        otlp_endpoint: str = "",
        service_name: str = "loopml-gateway",
    ) -> None:
        self.log = log
        self.otlp_endpoint = otlp_endpoint
        #: The OpenTelemetry SDK's provider, when spans are also exported over OTLP; None when
        #: they are only stored (then :class:`StoreTracer` makes them, at a fraction of the
        #: SDK's cost per span).
        self.provider: TracerProvider | None = None
        self.tracer: otel_trace.Tracer
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            self.provider = TracerProvider(
                resource=Resource.create({"service.name": service_name}), shutdown_on_exit=False
            )
            self.provider.add_span_processor(StoreSpanProcessor(log))
            self.provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint))
            )
            self.tracer = self.provider.get_tracer("loopml.llm")
        else:
            self.tracer = StoreTracer(log)
        self._forwarder: OtlpForwarder | None = None
        self._forwarder_lock = threading.Lock()
        self._shut = False

    def forward(self, body: bytes, content_type: str, content_encoding: str = "") -> bool:
        """Send an OTLP export request the gateway received on to ``otlp_endpoint`` as it
        came (:mod:`loopml.llm.otlp_forward`), so the collector sees the applications' spans
        beside the gateway's; False without an endpoint, or when it was dropped."""
        if not self.otlp_endpoint or self._shut:
            return False
        if self._forwarder is None:
            with self._forwarder_lock:
                if self._forwarder is None:
                    from loopml.llm.otlp_forward import OtlpForwarder

                    self._forwarder = OtlpForwarder(self.otlp_endpoint)
        return self._forwarder.forward(body, content_type, content_encoding)

    def context_from_headers(self, headers: Mapping[str, str]) -> Context | None:
        """The trace context of an incoming request's W3C ``traceparent`` (and
        ``tracestate``) headers, to start the request's span in; None without a valid one.
        Header names are matched case-insensitively."""
        carrier = {}
        for name in ("traceparent", "tracestate"):
            value = headers.get(name)
            if value is None:
                value = next((v for k, v in headers.items() if k.lower() == name), None)
            if value is not None:
                carrier[name] = value
        if "traceparent" not in carrier:
            return None
        context = _PROPAGATOR.extract(carrier)
        if not otel_trace.get_current_span(context).get_span_context().is_valid:
            return None
        return context

    def force_flush(self) -> None:
        """Hand finished spans to the store's queue and the OTLP exporter, and write them."""
        if self.provider is not None:
            self.provider.force_flush()
        else:
            self.log.flush()
        if self._forwarder is not None:
            self._forwarder.flush()

    def shutdown(self) -> None:
        """Export what is pending and stop the exporters; idempotent. The request log is
        not closed (its owner closes it)."""
        if not self._shut:
            self._shut = True
            if self.provider is not None:
                self.provider.shutdown()
            if self._forwarder is not None:
                self._forwarder.close()


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """``headers`` with the current span's ``traceparent`` (and ``tracestate``) added, so
    that a request to the gateway made with them joins the current trace.

    >>> with trace("my-app"):                                         # doctest: +SKIP
    ...     client.chat.completions.create(..., extra_headers=inject_headers())
    """
    headers = {} if headers is None else headers
    _PROPAGATOR.inject(headers)
    return headers


# -- applications' own spans --------------------------------------------------------------

_app_lock = threading.Lock()
_app_tracing: dict[int, tuple[Workspace, RequestLog, Tracing]] = {}
_atexit_registered = False


def tracing_for(workspace: Workspace) -> Tracing:
    """The :class:`Tracing` that stores an application's spans in ``workspace`` (one per
    workspace and process, flushed at exit)."""
    global _atexit_registered
    found = _app_tracing.get(id(workspace))
    if found is not None and found[0] is workspace:
        return found[2]
    with _app_lock:
        found = _app_tracing.get(id(workspace))
        if found is None or found[0] is not workspace:
            workspace.db  # noqa: B018 -- a remote workspace (a loopml server) raises NotServed
            if not _atexit_registered:
                atexit.register(_close_app_tracing)
                _atexit_registered = True
            log = RequestLog(workspace)
            found = (workspace, log, Tracing(log, service_name="loopml-app"))
            _app_tracing[id(workspace)] = found
    return found[2]


def flush_traces(workspace: Workspace | None = None) -> None:
    """Write the application spans finished so far (of ``workspace``, or of every
    workspace); they are written within a second anyway, and at exit."""
    for ws, log, _tracing in list(_app_tracing.values()):
        if workspace is None or ws is workspace:
            log.flush()


def close_traces(workspace: Workspace | None = None) -> None:
    """Write the application spans of ``workspace`` (None: of every workspace) and stop
    their writer; a later :func:`trace` starts a new one. Done at exit anyway."""
    with _app_lock:
        found = [
            _app_tracing.pop(key)
            for key, (ws, _log, _tracing) in list(_app_tracing.items())
            if workspace is None or ws is workspace
        ]
    for _ws, log, tracing in found:
        tracing.shutdown()
        log.close()


def _close_app_tracing() -> None:
    close_traces()


class _Trace:
    """What :func:`trace` returns: a context manager and a decorator."""

    def __init__(
        self, name: str | None, workspace: WorkspaceLike, attributes: Mapping[str, Any] | None
    ) -> None:
        self.name = name
        self.workspace = workspace
        self.attributes = dict(attributes or {})
        self._open: list[Any] = []

    @contextmanager
    def _span(self, name: str) -> Iterator[otel_trace.Span]:
        from loopml.workspace import resolve_workspace

        tracer = tracing_for(resolve_workspace(self.workspace)).tracer
        with tracer.start_as_current_span(name, attributes=self.attributes) as span:
            yield span

    def __enter__(self) -> otel_trace.Span:
        manager = self._span(self.name or "span")
        span = manager.__enter__()
        self._open.append(manager)
        return span

    def __exit__(self, *exc: Any) -> bool | None:
        return self._open.pop().__exit__(*exc)

    def __call__(self, function: F) -> F:
        name = self.name or function.__qualname__
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self._span(name):
                    return await function(*args, **kwargs)

            return cast(F, run_async)

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self._span(name):
                return function(*args, **kwargs)

        return cast(F, run)


@overload
def trace(name: F, *, workspace: WorkspaceLike = None, attributes: None = None) -> F: ...


@overload
def trace(
    name: str | None = None,
    *,
    workspace: WorkspaceLike = None,
    attributes: Mapping[str, Any] | None = None,
) -> _Trace: ...


def trace(
    name: str | Callable[..., Any] | None = None,
    *,
    workspace: WorkspaceLike = None,
    attributes: Mapping[str, Any] | None = None,
) -> Any:
    """Record an application's own span in ``workspace`` (the default workspace if None),
    nested under the current span: a decorator of sync and async functions (``@trace``,
    ``@trace("name")``) and a context manager yielding the OpenTelemetry span
    (``with trace("retrieval") as span: span.set_attribute("k", 5)``). An exception leaving
    the span marks it as an error and is raised on. Spans are written in batches within a
    second, and at exit (:func:`flush_traces` writes them now).
    """
    if callable(name):
        return _Trace(None, workspace, attributes)(name)
    if name is not None and not isinstance(name, str):
        from loopml.exceptions import InvalidInput

        raise InvalidInput(f"trace() takes a span name or a function, not {name!r}.")
    return _Trace(name, workspace, attributes)
