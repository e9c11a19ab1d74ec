"""Traces: the gateway's span tree stored with its parents, an incoming traceparent honoured,
applications' own spans (``trace`` as a decorator of sync and async functions and as a
context manager) joining the same trace, OTLP export to a real HTTP collector, and spans
stored out of order or twice assembled into one trace."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import select

from loopml.exceptions import InvalidInput
from loopml.llm import tracing as tracing_module
from loopml.llm.logs import RequestLog
from loopml.llm.tables import llm_spans
from loopml.llm.tracing import (
    GEN_AI_REQUEST_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    LOOPML_ATTEMPT,
    LOOPML_COST_USD,
    LOOPML_REQUEST_ID,
    Tracing,
    close_traces,
    flush_traces,
    inject_headers,
    trace,
)
from loopml.workspace import Workspace

INCOMING_TRACE = "0af7651916cd43dd8448eb211c80319c"
INCOMING_SPAN = "b7ad6b7169203331"


def spans(ws: Workspace) -> dict[str, dict[str, Any]]:
    """The stored spans by name."""
    with ws.db.engine.connect() as conn:
        found = conn.execute(select(llm_spans)).mappings().all()
    out = {}
    for row in found:
        span = dict(row)
        span["attributes"] = json.loads(span["attributes"]) if span["attributes"] else {}
        out[span["name"]] = span
    return out


@pytest.fixture
def gateway_tracing(sqlite_ws: Workspace) -> Iterator[Tracing]:
    log = RequestLog(sqlite_ws, flush_interval=3600)
    tracing = Tracing(log)
    yield tracing
    tracing.shutdown()
    log.close()


@pytest.fixture(autouse=True)
def _app_traces_closed() -> Iterator[None]:
    yield
    close_traces()


def gateway_request(tracing: Tracing, headers: dict[str, str] | None = None) -> None:
    """What the gateway records for one request: a server span, the router's, two attempts
    (the first failed)."""
    tracer = tracing.tracer
    context = tracing.context_from_headers(headers or {})
    attributes = {LOOPML_REQUEST_ID: "r" * 32, GEN_AI_REQUEST_MODEL: "cheap"}
    with tracer.start_as_current_span(
        "gateway chat", context=context, kind=SpanKind.SERVER, attributes=attributes
    ) as root:
        with tracer.start_as_current_span("router"):
            pass
        with tracer.start_as_current_span(
            "attempt", kind=SpanKind.CLIENT, attributes={LOOPML_ATTEMPT: 1}
        ) as failed:
            failed.set_status(Status(StatusCode.ERROR, "429 rate limited"))
        with tracer.start_as_current_span(
            "attempt 2", kind=SpanKind.CLIENT, attributes={LOOPML_ATTEMPT: 2}
        ) as ok:
            ok.set_attribute(GEN_AI_USAGE_INPUT_TOKENS, 120)
            ok.set_attribute("gen_ai.response.finish_reasons", ["stop"])
        root.set_attribute(LOOPML_COST_USD, 0.0012)


def test_the_span_tree_is_stored_with_its_parents(
    sqlite_ws: Workspace, gateway_tracing: Tracing
) -> None:
    gateway_request(gateway_tracing)
    gateway_tracing.log.flush()
    found = spans(sqlite_ws)
    root = found["gateway chat"]
    assert root["parent_id"] is None and root["kind"] == "server"
    assert len(root["trace_id"]) == 32 and len(root["span_id"]) == 16
    assert root["request_id"] == "r" * 32
    assert root["attributes"][LOOPML_COST_USD] == 0.0012
    for name in ("router", "attempt", "attempt 2"):
        assert found[name]["parent_id"] == root["span_id"]
        assert found[name]["trace_id"] == root["trace_id"]
    assert found["attempt"]["status"] == "error" and found["attempt"]["kind"] == "client"
    assert found["attempt"]["attributes"]["error"] == "429 rate limited"
    assert found["attempt 2"]["status"] == "ok"
    assert found["attempt 2"]["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert root["start_us"] <= found["router"]["start_us"] <= found["router"]["end_us"]
    assert found["attempt 2"]["end_us"] <= root["end_us"]


def test_an_incoming_traceparent_is_honoured(
    sqlite_ws: Workspace, gateway_tracing: Tracing
) -> None:
    headers = {"TraceParent": f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01", "other": "x"}
    gateway_request(gateway_tracing, headers)
    gateway_tracing.log.flush()
    found = spans(sqlite_ws)
    assert {s["trace_id"] for s in found.values()} == {INCOMING_TRACE}
    assert found["gateway chat"]["parent_id"] == INCOMING_SPAN


@pytest.mark.parametrize(
    "headers",
    [{}, {"traceparent": "garbage"}, {"traceparent": f"00-{'0' * 32}-{INCOMING_SPAN}-01"}],
)
def test_no_or_an_invalid_traceparent_starts_a_new_trace(
    gateway_tracing: Tracing, headers: dict[str, str]
) -> None:
    assert gateway_tracing.context_from_headers(headers) is None


def test_trace_decorates_sync_and_async_functions_and_is_a_context_manager(
    default_ws: Workspace,
) -> None:
    @trace
    def retrieve(query: str) -> list[str]:
        return [query]

    @trace("generate", attributes={"app.step": "llm"})
    async def generate(docs: list[str]) -> str:
        await asyncio.sleep(0)
        return docs[0].upper()

    @trace()
    def fail() -> None:
        raise RuntimeError("tool broke")

    with trace("rag answer") as span:
        span.set_attribute("app.question", "why?")
        assert asyncio.run(generate(retrieve("doc"))) == "DOC"
        with pytest.raises(RuntimeError, match="tool broke"):
            fail()
    assert retrieve.__name__ == "retrieve"
    flush_traces()
    found = spans(default_ws)
    root = found["rag answer"]
    qualname = "test_trace_decorates_sync_and_async_functions_and_is_a_context_manager.<locals>"
    assert root["parent_id"] is None and root["attributes"] == {"app.question": "why?"}
    for name in (f"{qualname}.retrieve", "generate", f"{qualname}.fail"):
        assert found[name]["parent_id"] == root["span_id"], name
        assert found[name]["trace_id"] == root["trace_id"]
    assert found["generate"]["attributes"] == {"app.step": "llm"}
    assert found[f"{qualname}.fail"]["status"] == "error"
    assert found[f"{qualname}.retrieve"]["status"] == "ok"


def test_an_applications_span_and_the_gateways_share_one_trace(
    sqlite_ws: Workspace, gateway_tracing: Tracing
) -> None:
    with trace("my app", workspace=sqlite_ws):
        headers = inject_headers({"authorization": "Bearer x"})
        gateway_request(gateway_tracing, headers)
    assert headers["authorization"] == "Bearer x" and "traceparent" in headers
    flush_traces(sqlite_ws)
    gateway_tracing.log.flush()
    found = spans(sqlite_ws)
    app, gateway = found["my app"], found["gateway chat"]
    assert gateway["trace_id"] == app["trace_id"]
    assert gateway["parent_id"] == app["span_id"]


def test_the_workspace_namespace_traces_into_itself(sqlite_ws: Workspace) -> None:
    with sqlite_ws.llm.trace("step"):
        pass
    sqlite_ws.llm.flush_traces()
    assert list(spans(sqlite_ws)) == ["step"]


def test_trace_into_a_remote_workspace_says_it_is_not_served() -> None:
    from loopml.client import NotServed

    remote = Workspace.open("http://127.0.0.1:9")
    with pytest.raises(NotServed), trace("step", workspace=remote):
        pass


def test_trace_refuses_a_bad_name() -> None:
    with pytest.raises(InvalidInput, match="span name"):
        trace(42)  # type: ignore[call-overload]


class Collector:
    """An OTLP/HTTP collector on 127.0.0.1: counts POSTs to /v1/traces, keeps the bodies."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.paths.append(self.path)
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                outer.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    yield found
    found.close()


def test_spans_are_exported_over_otlp_and_stored(
    sqlite_ws: Workspace, collector: Collector
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    log = RequestLog(sqlite_ws, flush_interval=3600)
    tracing = Tracing(log, otlp_endpoint=collector.url, service_name="gw-test")
    gateway_request(tracing)
    tracing.shutdown()  # exports what the batch processor holds
    log.close()
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    names, services, traces = set(), set(), set()
    for body in collector.bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    names.add(span.name)
                    traces.add(span.trace_id.hex())
    assert names == {"gateway chat", "router", "attempt", "attempt 2"}
    assert services == {"gw-test"}
    stored = spans(sqlite_ws)
    assert traces == {stored["gateway chat"]["trace_id"]}


def test_without_an_endpoint_nothing_is_exported(
    gateway_tracing: Tracing, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gateway_tracing.otlp_endpoint == ""
    assert gateway_tracing.provider is None  # no SDK provider, no exporter
    assert isinstance(gateway_tracing.tracer, tracing_module.StoreTracer)


def _stored_rows(ws: Workspace, otlp_endpoint: str) -> list[dict[str, Any]]:
    """The rows one request and one failing application span leave, made by the tracer a
    Tracing with ``otlp_endpoint`` uses (the SDK's with one, StoreTracer without)."""
    log = RequestLog(ws, flush_interval=3600)
    tracing = Tracing(log, otlp_endpoint=otlp_endpoint)
    try:
        gateway_request(tracing)
        tracer = tracing.tracer
        with (
            pytest.raises(ValueError),
            tracer.start_as_current_span("app", attributes={"k": (1, 2)}) as span,
        ):
            span.set_attribute("skipped", None)
            raise ValueError("bad input")
        span.set_attribute("after-end", 1)  # ignored: the span has ended
        tracing.force_flush()
    finally:
        tracing.shutdown()
        log.close()
    with ws.db.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(llm_spans)).mappings().all()]
    with ws.db.engine.begin() as conn:
        conn.execute(llm_spans.delete())
    ids = {row["span_id"]: row["name"] for row in rows}
    for row in rows:
        row["attributes"] = json.loads(row["attributes"]) if row["attributes"] else {}
        row["parent"] = ids.get(row.pop("parent_id"))
        for name in ("trace_id", "span_id", "start_us", "end_us"):
            row.pop(name)
    return sorted(rows, key=lambda row: row["name"])


def test_the_store_tracer_stores_what_the_sdk_would(sqlite_ws: Workspace) -> None:
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{collector.server_port}/v1/traces"
        sdk = _stored_rows(sqlite_ws, url)
    finally:
        collector.shutdown()
    light = _stored_rows(sqlite_ws, "")
    assert light == sdk
    app = next(row for row in light if row["name"] == "app")
    assert app["status"] == "error"
    assert app["attributes"] == {"k": [1, 2], "skipped": None, "error": "ValueError: bad input"}


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that accepts and forgets."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_store_tracer_ids_are_valid_and_nest_under_an_sdk_span(
    gateway_tracing: Tracing, sqlite_ws: Workspace
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    outer = TracerProvider().get_tracer("app")
    with (
        outer.start_as_current_span("sdk-made") as parent,
        gateway_tracing.tracer.start_as_current_span("inner") as child,
    ):
        context = child.get_span_context()
        assert context.is_valid and context.trace_flags.sampled
        headers = inject_headers({})
    gateway_tracing.force_flush()
    inner = spans(sqlite_ws)["inner"]
    assert inner["trace_id"] == f"{parent.get_span_context().trace_id:032x}"
    assert inner["parent_id"] == f"{parent.get_span_context().span_id:016x}"
    assert headers["traceparent"].split("-")[2] == inner["span_id"]


# -- spans that arrive out of order, or twice ------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite-file", "postgres"])
def test_spans_out_of_order_or_twice_assemble_into_one_trace(
    store: str, workspace_factory: Callable[..., Workspace]
) -> None:
    """A child stored before its parent, and a span delivered twice (a retried batch), make
    one trace with each span once, nested as recorded, in the reader and `traces show`."""
    from click.testing import CliRunner

    from loopml.cli.main import cli
    from loopml.llm.reports import trace_tree
    from loopml.llm.tracing import SpanRecord

    ws = workspace_factory(store)
    trace_id, t0 = "1" * 32, 1_700_000_000_000_000

    def span(span_id: str, parent: str | None, name: str, start_ms: int) -> SpanRecord:
        start = t0 + start_ms * 1000
        return SpanRecord(trace_id, span_id, parent, name, "internal", start, start + 5000, "ok")

    root = span("a" * 16, None, "rag answer", 0)
    retrieval = span("b" * 16, root.span_id, "retrieval", 1)
    embed = span("c" * 16, retrieval.span_id, "embed query", 2)
    generate = span("d" * 16, root.span_id, "gateway chat", 3)
    log = RequestLog(ws, flush_interval=3600)
    try:
        log.add_spans([embed, generate, embed])  # children first; one span twice in a batch
        log.flush()
        early = trace_tree(ws, trace_id)  # what a reader sees before the parents arrive
        assert sorted(r["name"] for r in early["roots"]) == ["embed query", "gateway chat"]
        log.add_spans([retrieval, root, generate])  # the parents, and a span again
        log.flush()
        log.add_spans([root])  # a whole batch again
        log.flush()
        assert log.rejected == 0  # the copies are stored once, quietly: nothing refused
    finally:
        log.close()

    def shape(nodes: list[dict[str, Any]]) -> list[Any]:
        return [(n["name"], shape(n["children"])) for n in nodes]

    tree = trace_tree(ws, trace_id)
    assert tree["spans"] == 4 and tree["name"] == "rag answer"
    assert shape(tree["roots"]) == [
        ("rag answer", [("retrieval", [("embed query", [])]), ("gateway chat", [])])
    ]
    if store == "sqlite-file":  # the CLI opens a workspace folder (the Postgres one has none)
        where = ["-w", str(ws.root)]
        shown = CliRunner().invoke(cli, [*where, "traces", "show", trace_id[:12], "--json"])
        assert shown.exit_code == 0, shown.output
        assert shape(json.loads(shown.stdout)["roots"]) == shape(tree["roots"])
        text = CliRunner().invoke(cli, [*where, "traces", "show", trace_id]).stdout
        lines = [line for line in text.splitlines() if "embed query" in line]
        assert len(lines) == 1 and "4 span(s)" in text
