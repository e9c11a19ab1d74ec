"""The gateway's OTLP receiver: the converter (protobuf and OTLP/JSON → span rows, one bad
span rejected alone with its reason, bodies that are not OTLP refused) and ``POST /v1/traces``
on a real gateway server, fed by the real OpenTelemetry SDK's OTLP/HTTP exporter: a
retrieval span sent over OTLP and the generation made inside it land in one trace."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import math
import re
import socket
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from google.protobuf import json_format
from google.rpc.status_pb2 import Status as RpcStatus
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import func, select

from llm.fake_provider import FakeProvider
from llm.test_gateway import table
from loopml.cli.main import cli
from loopml.exceptions import InvalidInput
from loopml.llm import otlp
from loopml.llm.gateway import Gateway
from loopml.llm.keys import create_key
from loopml.llm.logs import RequestLog
from loopml.llm.otlp import (
    BodyTooLarge,
    NotOtlp,
    Received,
    decompress,
    encode_response,
    encode_status,
    read_export,
)
from loopml.llm.rag import retrieval_attributes, stored_retrievals
from loopml.llm.server import create_gateway_app
from loopml.llm.tables import llm_spans
from loopml.llm.tracing import inject_headers
from loopml.workspace import Workspace
from server.conftest import start_server

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
ROOT = bytes.fromhex("00f067aa0ba902b7")
CHILD = bytes.fromhex("00f067aa0ba902b8")


def _kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=_any(value))


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        found = AnyValue()
        found.array_value.values.extend(_any(v) for v in value)
        return found
    if isinstance(value, dict):
        found = AnyValue()
        found.kvlist_value.values.extend(_kv(k, v) for k, v in value.items())
        return found
    return AnyValue(string_value=value)


def _span(
    name: str = "retrieval",
    *,
    trace_id: bytes = TRACE,
    span_id: bytes = ROOT,
    parent: bytes = b"",
    start: int = 1_700_000_000_123_456_789,
    end: int = 1_700_000_000_223_456_789,
    kind: int = Span.SPAN_KIND_INTERNAL,
    attributes: dict[str, Any] | None = None,
    status: Status | None = None,
) -> Span:
    span = Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        status=status,
    )
    span.attributes.extend(_kv(k, v) for k, v in (attributes or {}).items())
    return span


def _request(*spans: Span, service: str | None = "rag-app") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    if service is not None:
        resource_spans.resource.attributes.append(_kv("service.name", service))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def _as_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """``request`` as OTLP/JSON writes it: ids in hex, 64-bit integers as strings."""
    body = json_format.MessageToDict(request)
    for resource_spans in body.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return body


RAG = retrieval_attributes(
    "refund window?",
    [
        {
            "id": "faq#2",
            "score": 0.82,
            "source": "faq.md",
            "source_hash": "b3:aa",
            "timestamp": "2026-11-30T10:00:00+00:00",
        },
        {"id": "policy#7", "source": "policy.md"},
    ],
    index="docs",
    index_version=3,
)


# -- the converter ---------------------------------------------------------------------------


def test_protobuf_spans_become_rows() -> None:
    attributes = {
        **RAG,
        "loopml.request_id": "req_0123",
        "flag": True,
        "count": 7,
        "raw": b"\x00\xff",
        "nested": {"a": [1, "x"], "b": 0.5},
    }
    request = _request(
        _span(kind=Span.SPAN_KIND_CLIENT, attributes=attributes),
        _span(
            "answer",
            span_id=CHILD,
            parent=ROOT,
            kind=Span.SPAN_KIND_SERVER,
            attributes={"service.name": "own"},
            status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
        ),
    )
    received = read_export(request.SerializeToString(), "protobuf")
    assert (received.rejected, received.errors, received.error_message) == (0, [], "")
    first, second = received.spans
    assert (first.trace_id, first.span_id, first.parent_id) == (TRACE.hex(), ROOT.hex(), None)
    assert (first.name, first.kind, first.status) == ("retrieval", "client", "ok")
    assert (first.start_us, first.end_us) == (1_700_000_000_123_456, 1_700_000_000_223_456)
    assert first.request_id == "req_0123"
    assert first.attributes["loopml.rag.document_ids"] == ["faq#2", "policy#7"]
    assert first.attributes["loopml.rag.document_scores"][0] == 0.82
    assert math.isnan(first.attributes["loopml.rag.document_scores"][1])
    assert first.attributes["loopml.rag.document_hashes"] == ["b3:aa", ""]
    assert first.attributes["loopml.rag.index_version"] == 3
    assert first.attributes["service.name"] == "rag-app"  # from the resource
    assert (first.attributes["flag"], first.attributes["count"]) == (True, 7)
    assert first.attributes["raw"] == base64.b64encode(b"\x00\xff").decode()
    assert first.attributes["nested"] == {"a": [1, "x"], "b": 0.5}
    assert (second.parent_id, second.kind, second.status) == (ROOT.hex(), "server", "error")
    assert second.attributes == {"service.name": "own", "error": "boom"}  # its own wins
    assert second.request_id is None


def test_otlp_json_reads_like_protobuf() -> None:
    request = _request(
        _span(attributes={**RAG, "big": 2**62, "raw": b"\x01", "kv": {"k": [True]}}),
        _span("child", span_id=CHILD, parent=ROOT, kind=Span.SPAN_KIND_PRODUCER),
    )
    as_json = _as_json(request)
    as_json["resourceSpans"][0]["unknownField"] = 1  # receivers ignore unknown fields
    span = as_json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == TRACE.hex() and span["startTimeUnixNano"] == "1700000000123456789"
    span["events"] = [{"name": "e", "timeUnixNano": "1"}]  # events and links: not stored
    span["links"] = [{"traceId": "ab" * 16, "spanId": "cd" * 8}]
    from_json = read_export(json.dumps(as_json).encode(), "json")
    from_protobuf = read_export(request.SerializeToString(), "protobuf")
    assert from_json.rejected == 0

    def plain(received: Received) -> list[str]:  # NaN != NaN: compare as JSON text
        return [json.dumps(vars(s), sort_keys=True) for s in received.spans]

    assert plain(from_json) == plain(from_protobuf)
    assert from_json.spans[1].kind == "producer" and from_json.spans[0].attributes["big"] == 2**62
    # OTLP/JSON as an exporter writes it by hand: enum names, numbers as numbers, an empty
    # parent, a "NaN" double
    hand = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": TRACE.hex().upper(),
                                "spanId": ROOT.hex(),
                                "parentSpanId": "",
                                "name": "by hand",
                                "kind": "SPAN_KIND_CONSUMER",
                                "startTimeUnixNano": 2_000_000,
                                "endTimeUnixNano": "3000000",
                                "attributes": [
                                    {"key": "s", "value": {"doubleValue": "NaN"}},
                                    {"key": "n", "value": {"intValue": 5}},
                                    {"key": "empty", "value": {}},
                                ],
                                "status": {"code": 2},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    (row,) = read_export(json.dumps(hand).encode(), "json").spans
    assert (row.trace_id, row.parent_id, row.kind, row.status) == (
        TRACE.hex(),
        None,
        "consumer",
        "error",
    )
    assert (row.start_us, row.end_us, row.attributes["n"], row.attributes["empty"]) == (
        2000,
        3000,
        5,
        None,
    )
    assert math.isnan(row.attributes["s"]) and "service.name" not in row.attributes


_scalars = (
    st.text(max_size=8)
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.binary(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _values, max_size=5), st.sampled_from(range(6)))
def test_the_json_reader_agrees_with_the_protobuf_one(
    attributes: dict[str, Any], kind: int
) -> None:
    request = _request(_span(attributes=attributes, kind=kind))
    from_json = read_export(json.dumps(_as_json(request)).encode(), "json")
    from_protobuf = read_export(request.SerializeToString(), "protobuf")
    assert from_json.rejected == from_protobuf.rejected == 0
    (a,), (b,) = from_json.spans, from_protobuf.spans
    assert json.dumps(vars(a), sort_keys=True) == json.dumps(vars(b), sort_keys=True)


def test_otlp_json_spellings_and_values() -> None:
    span = {
        "trace_id": TRACE.hex(),
        "span_id": ROOT.hex(),
        "parent_span_id": CHILD.hex(),
        "name": "snake",
        "kind": 3,
        "start_time_unix_nano": 5000,
        "end_time_unix_nano": 6000.0,
        "status": {"code": "STATUS_CODE_OK", "message": "ignored when ok"},
        "attributes": [
            {"key": "s", "value": {"string_value": "x"}},
            {"key": "f", "value": {"doubleValue": "-Infinity"}},
            {"key": "g", "value": {"doubleValue": "2.5"}},
            {"key": "i", "value": {"intValue": 5.0}},
            {"key": "b", "value": {"bytesValue": "-_8"}},  # the URL-safe alphabet, unpadded
            {"key": "a", "value": {"arrayValue": {}}},
            {"key": "k", "value": {"kvlist_value": {"values": [{"key": "x"}]}}},
            {"key": "u", "value": {"somethingNew": 1}},
        ],
    }
    body = {"resource_spans": [{"scope_spans": [{"spans": [span]}]}]}
    (row,) = read_export(json.dumps(body).encode(), "json").spans
    assert (row.parent_id, row.kind, row.status, row.end_us) == (CHILD.hex(), "client", "ok", 6)
    assert row.attributes == {
        "s": "x",
        "f": -math.inf,
        "g": 2.5,
        "i": 5,
        "b": base64.b64encode(b"\xfb\xff").decode(),
        "a": [],
        "k": {"x": None},
        "u": None,
    }
    bad_values = [
        ({"stringValue": 1}, "stringValue is a JSON number"),
        ({"boolValue": "yes"}, "boolValue is a JSON string"),
        ({"intValue": 2**63}, "out of range"),
        ({"intValue": True}, "intValue is an integer, got a JSON boolean"),
        ({"doubleValue": "many"}, "doubleValue is a number"),
        ({"bytesValue": "***"}, "bytesValue is base64"),
        ({"arrayValue": []}, "arrayValue is a JSON array"),
        ({"arrayValue": {"values": 1}}, "arrayValue.values is not an array"),
        ("plain", "a value is an object, got a JSON string"),
    ]
    spans = [
        {**span, "attributes": [{"key": "v", "value": value}]} for value, _message in bad_values
    ]
    spans += [
        {**span, "name": 5},
        {**span, "status": "fine"},
        {**span, "status": {"message": 3}},
        {**span, "kind": [1]},
        {**span, "start_time_unix_nano": -1},
        {**span, "attributes": {"k": "v"}},
        {**span, "attributes": [{"key": 1, "value": {}}]},
        span,
    ]
    received = read_export(
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode(), "json"
    )
    assert [s.name for s in received.spans] == ["snake"]
    # nesting past what the JSON parser takes refuses the body, in one clear error
    deep = '{"arrayValue":{"values":[' * 400 + '{"stringValue":"bottom"}' + "]}}" * 400
    attribute = f'{{"key":"deep","value":{deep}}}'
    with pytest.raises(NotOtlp, match="not valid JSON"):
        read_export(
            json.dumps(body).replace('"attributes": [', f'"attributes": [{attribute},').encode(),
            "json",
        )
    for error, (_value, message) in zip(received.errors, bad_values, strict=False):
        assert message in error
    for error, message in zip(
        received.errors[len(bad_values) :],
        [
            "name is a string, got a JSON number",
            "status is an object, got a JSON string",
            "status.message is a string",
            "kind is a number or an enum name",
            "startTimeUnixNano is out of range",
            "attributes is an array, got a JSON object",
            'an attribute is {"key"',
        ],
        strict=True,
    ):
        assert message in error


def test_one_bad_span_never_takes_the_good_ones_with_it() -> None:
    bad = [
        _span("short trace", trace_id=b"\x01" * 8),
        _span("zero span", span_id=b"\x00" * 8),
        _span("bad parent", parent=b"\x01" * 4),
        _span(""),
        _span("backwards", start=10, end=5),
        _span("unstarted", start=0, end=0),
        _span("x" * 251),
        _span("long request", attributes={"loopml.request_id": "r" * 40}),
    ]
    good = [_span("good", span_id=bytes([i + 1]) * 8) for i in range(3)]
    received = read_export(_request(good[0], *bad, *good[1:]).SerializeToString(), "protobuf")
    assert [s.name for s in received.spans] == ["good"] * 3
    assert received.rejected == len(bad) == len(received.errors)
    reasons = "\n".join(received.errors)
    for expected in (
        "resource_spans[0].scope_spans[0].spans[1] ('short trace'): trace_id is 16 bytes, got 8",
        "('zero span'): span_id is all zeros",
        "('bad parent'): parent_span_id is 8 bytes (or empty), got 4",
        "spans[4]: the span has no name",
        "('backwards'): the span ends before it starts",
        "('unstarted'): the span has no start time",
        "name is over 250 characters",
        "loopml.request_id is over 32 characters",
    ):
        assert expected in reasons
    message = received.error_message
    assert message.startswith("8 span(s) rejected: resource_spans[0].scope_spans[0].spans[1] (")
    assert message.endswith("; and 3 more.") and message.count(";") == 5
    # OTLP/JSON: ids that are not hex of the right length, values that don't parse, a span
    # that is not an object
    as_json = _as_json(_request(*good))
    spans = as_json["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[1:1] = [
        {**spans[0], "name": "odd trace", "traceId": "zz" * 16},
        {**spans[0], "name": "short span", "spanId": "ab" * 4},
        {**spans[0], "name": "bad int", "attributes": [{"key": "n", "value": {"intValue": "x"}}]},
        {**spans[0], "name": "bad time", "startTimeUnixNano": "soon"},
        "a string",
    ]
    received = read_export(json.dumps(as_json).encode(), "json")
    assert [s.name for s in received.spans] == ["good"] * 3 and received.rejected == 5
    reasons = "\n".join(received.errors)
    assert "spans[1] ('odd trace'): traceId is 32 hex digits, got 'zzzz" in reasons
    assert "('short span'): spanId is 16 hex digits, got 8" in reasons
    assert "('bad int'): " in reasons and "('bad time'): " in reasons
    assert "spans[5]: a span is a JSON object, not a string" in reasons
    # a resource that does not parse rejects its own spans, not the next resource's
    two = {"resourceSpans": [as_json["resourceSpans"][0], as_json["resourceSpans"][0]]}
    two["resourceSpans"][0] = {**two["resourceSpans"][0], "resource": {"attributes": 5}}
    received = read_export(json.dumps(two).encode(), "json")
    assert received.rejected == 8 + 5 and len(received.spans) == 3
    assert (
        "resourceSpans[0].scopeSpans[0].spans[0]: its resource does not parse"
        in (received.errors[0])
    )


@pytest.mark.parametrize(
    ("body", "encoding", "message"),
    [
        (b"not a protobuf", "protobuf", "not a protobuf OTLP ExportTraceServiceRequest"),
        (
            ExportTraceServiceResponse().SerializeToString() + b"\x1a\x00",
            "protobuf",
            "no resource_spans",
        ),
        (b"{not json", "json", "not valid JSON"),
        (b"[1, 2]", "json", "is a JSON array, not an OTLP/JSON"),
        (b'{"resourceMetrics": []}', "json", "no resourceSpans"),
        (b'{"resourceSpans": {}}', "json", "resourceSpans is a JSON object, not an array"),
        (b'{"resourceSpans": [1]}', "json", "resourceSpans[0] is a JSON number, not an object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": 3}]}]}',
            "json",
            "resourceSpans[0].scopeSpans[0].spans is a JSON number, not an array",
        ),
    ],
)
def test_bodies_that_are_not_otlp_are_refused(body: bytes, encoding: Any, message: str) -> None:
    with pytest.raises(NotOtlp, match=re.escape(message)) as caught:
        read_export(body, encoding)
    assert isinstance(caught.value, InvalidInput) and str(caught.value).endswith(".")


def test_the_sender_is_stamped_and_never_taken_from_the_span() -> None:
    forged = {**RAG, "loopml.sent_by.key": "key_ceo", "loopml.sent_by.other": "x"}
    body = _request(_span(attributes=forged), _span("b", span_id=b"\x02" * 8)).SerializeToString()
    received = read_export(body, "protobuf")
    otlp.stamp_sender(received, "key_app", "support")
    for span in received.spans:
        sent_by = {k: v for k, v in span.attributes.items() if k.startswith("loopml.sent_by.")}
        assert sent_by == {"loopml.sent_by.key": "key_app", "loopml.sent_by.team": "support"}
    assert received.spans[0].attributes["loopml.rag.index"] == "docs"  # the rest is kept
    otlp.stamp_sender(received, None, "support")  # no key: "" and no team
    assert {k: v for k, v in received.spans[1].attributes.items() if "sent_by" in k} == {
        "loopml.sent_by.key": ""
    }


def test_empty_exports_hold_no_spans() -> None:
    for body, encoding in ((b"", "protobuf"), (b"{}", "json"), (b'{"resourceSpans": []}', "json")):
        assert read_export(body, encoding) == Received()  # type: ignore[arg-type]


def test_decompress() -> None:
    body = b"spans" * 1000
    assert decompress(gzip.compress(body), "gzip") == body
    assert decompress(zlib.compress(body), "deflate") == body
    with pytest.raises(BodyTooLarge, match="over 4000 bytes once decompressed"):
        decompress(gzip.compress(body), "gzip", limit=4000)
    with pytest.raises(NotOtlp, match="not valid gzip"):
        decompress(body, "gzip")
    with pytest.raises(NotOtlp, match="ends early"):
        decompress(gzip.compress(body)[:-20], "gzip")


def test_answers() -> None:
    assert encode_response(Received(), "json") == b"{}"
    assert encode_response(Received(), "protobuf") == b""
    received = Received()
    received.reject("spans[0]: the span has no name")
    answer = json.loads(encode_response(received, "json"))
    assert answer == {
        "partialSuccess": {
            "rejectedSpans": "1",
            "errorMessage": "1 span(s) rejected: spans[0]: the span has no name.",
        }
    }
    parsed = ExportTraceServiceResponse.FromString(encode_response(received, "protobuf"))
    assert parsed.partial_success.rejected_spans == 1
    assert parsed.partial_success.error_message == answer["partialSuccess"]["errorMessage"]
    long = "é" * 200  # a length over 127 bytes: a two-byte varint
    status = RpcStatus.FromString(encode_status(413, long, "protobuf"))
    assert (status.code, status.message) == (8, long)
    assert json.loads(encode_status(401, "no key", "json")) == {"code": 16, "message": "no key"}


@pytest.mark.parametrize("store", ["sqlite-file", "postgres"])
def test_received_spans_fit_the_span_table(
    store: str, workspace_factory: Callable[..., Workspace]
) -> None:
    """The longest name and request id accepted are stored; a span received twice (in one
    batch, or replayed) is one row, and the database refuses nothing."""
    ws = workspace_factory(store)
    request = _request(
        _span("n" * otlp.MAX_NAME_CHARS, attributes={"loopml.request_id": "r" * 32, **RAG}),
        _span("n" * otlp.MAX_NAME_CHARS, attributes={"loopml.request_id": "r" * 32, **RAG}),
        _span("child", span_id=CHILD, parent=ROOT),
    )
    received = read_export(request.SerializeToString(), "protobuf")
    assert received.rejected == 0 and len(received.spans) == 3
    log = RequestLog(ws)
    try:
        log.add_spans(received.spans)
        log.add_spans(read_export(request.SerializeToString(), "protobuf").spans)
        log.flush()
        assert log.rejected == 0
    finally:
        log.close()
    with ws.db.read() as conn:
        rows = conn.execute(select(llm_spans.c.span_id, llm_spans.c.request_id)).all()
    assert sorted(rows) == [(ROOT.hex(), "r" * 32), (CHILD.hex(), None)]
    (retrieval,) = stored_retrievals(ws)
    assert retrieval.document_ids == ["faq#2", "policy#7"]


# -- POST /v1/traces on a real gateway -------------------------------------------------------


@pytest.fixture
def served(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Gateway, str]]:
    """A gateway requiring keys on 127.0.0.1 → (base URL, gateway, a key's secret). Its log
    is written only when flushed (the test flushes it before reading)."""
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    config = table(fake_provider, require_key=True)
    config["log_flush_interval"] = 60.0
    gateway = Gateway.from_config(config, workspace=sqlite_ws, require_key=True)
    _, secret = create_key(sqlite_ws, name="rag-app")
    url, stop = start_server(create_gateway_app(gateway, watch_config=False))
    yield url, gateway, secret
    stop()
    gateway.close()


def _sdk(url: str | None, **exporter: Any) -> tuple[TracerProvider, list[SpanExportResult]]:
    """The OpenTelemetry SDK exporting each span as it ends to the gateway at ``url`` (None:
    where the OTEL_EXPORTER_OTLP_* variables say) with its OTLP/HTTP exporter → (its
    provider, the result of each export, in order)."""
    results: list[SpanExportResult] = []
    if url is not None:
        exporter["endpoint"] = f"{url}/v1/traces"
    sink = OTLPSpanExporter(timeout=10, **exporter)

    class Exporting(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            results.append(sink.export((span,)))

        def shutdown(self) -> None:
            sink.shutdown()

    provider = TracerProvider(resource=Resource.create({"service.name": "rag-app"}))
    provider.add_span_processor(Exporting())
    return provider, results


def _stored(ws: Workspace) -> list[tuple[str, str]]:
    with ws.db.read() as conn:
        rows = conn.execute(select(llm_spans.c.name, llm_spans.c.span_id)).all()
    return sorted((row.name, row.span_id) for row in rows)


def test_an_sdks_retrieval_span_joins_the_generation_in_one_trace(
    served: tuple[str, Gateway, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, gateway, secret = served
    ws = gateway.workspace
    auth = {"authorization": f"Bearer {secret}"}
    # configured as docs/rag.md says: the variables (the header's space URL-encoded)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{url}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{secret}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    provider, results = _sdk(None)
    tracer = provider.get_tracer("rag-app")
    try:
        with tracer.start_as_current_span("retrieval", kind=SpanKind.CLIENT) as span:
            span.set_attributes(RAG)
            answer = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "cheap", "messages": [{"role": "user", "content": "refunds?"}]},
                headers={**auth, **inject_headers()},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            trace_id = f"{span.get_span_context().trace_id:032x}"
            span_id = f"{span.get_span_context().span_id:016x}"
        with tracer.start_as_current_span("failed step") as failing:
            failing.set_status(StatusCode.ERROR, "index offline")
    finally:
        provider.shutdown()
    assert results == [SpanExportResult.SUCCESS] * 2
    gateway.log.flush()

    (retrieval,) = stored_retrievals(ws, index="docs")
    assert (retrieval.trace_id, retrieval.span_id) == (trace_id, span_id)
    assert (retrieval.query, retrieval.index_version) == ("refund window?", 3)
    assert retrieval.document_ids == ["faq#2", "policy#7"]
    assert [d.score for d in retrieval.documents] == [0.82, None]
    assert [d.source for d in retrieval.documents] == ["faq.md", "policy.md"]
    assert retrieval.documents[0].source_hash == "b3:aa"
    assert retrieval.documents[0].timestamp == "2026-11-30T10:00:00+00:00"

    shown = CliRunner().invoke(cli, ["-w", str(ws.root), "traces", "show", trace_id, "--json"])
    assert shown.exit_code == 0, shown.output
    (root,) = json.loads(shown.stdout)["roots"]
    assert (root["name"], root["kind"], root["attributes"]["service.name"]) == (
        "retrieval",
        "client",
        "rag-app",
    )
    generation = root["children"][0]
    assert generation["name"] == "gateway chat"
    assert generation["request_id"] == answer.headers["x-request-id"]
    with ws.db.read() as conn:
        failed = conn.execute(
            select(llm_spans.c.status, llm_spans.c.attributes).where(
                llm_spans.c.name == "failed step"
            )
        ).one()
    assert failed.status == "error" and json.loads(failed.attributes)["error"] == "index offline"


def test_otlp_json_gzip_partial_success_and_replays(served: tuple[str, Gateway, str]) -> None:
    url, gateway, secret = served
    ws = gateway.workspace
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
    good = [_span(f"step {i}", span_id=bytes([i + 1]) * 8, attributes=RAG) for i in range(3)]
    body = json.dumps(_as_json(_request(*good))).encode()

    answer = httpx.post(f"{url}/v1/traces", content=body, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.json() == {}, answer.text
    assert answer.headers["content-type"] == "application/json"
    zipped = httpx.post(
        f"{url}/v1/traces",
        content=gzip.compress(body),
        headers={**headers, "content-encoding": "gzip"},
        timeout=10,
    )
    assert zipped.status_code == 200 and zipped.json() == {}
    gateway.log.flush()
    assert [name for name, _ in _stored(ws)] == ["step 0", "step 1", "step 2"]  # stored once

    # one bad span among good ones, as OTLP/JSON and as protobuf
    mixed = _request(
        _span("fine", span_id=b"\x21" * 8), _span("backwards", span_id=b"\x22" * 8, end=1)
    )
    answer = httpx.post(
        f"{url}/v1/traces", content=json.dumps(_as_json(mixed)), headers=headers, timeout=10
    )
    assert answer.status_code == 200
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "('backwards'): the span ends before it starts" in partial["errorMessage"]
    answer = httpx.post(
        f"{url}/v1/traces",
        content=mixed.SerializeToString(),
        headers={**headers, "content-type": "application/x-protobuf"},
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    assert ExportTraceServiceResponse.FromString(answer.content).partial_success.rejected_spans == 1
    gateway.log.flush()
    assert [name for name, _ in _stored(ws)] == ["fine", "step 0", "step 1", "step 2"]
    with ws.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(llm_spans)).scalar() == 4


def test_refusals(served: tuple[str, Gateway, str], monkeypatch: pytest.MonkeyPatch) -> None:
    url, gateway, secret = served
    auth = {"authorization": f"Bearer {secret}"}
    proto = {**auth, "content-type": "application/x-protobuf"}
    body = _request(_span()).SerializeToString()

    def post(content: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{url}/v1/traces", content=content, headers=headers, timeout=10)

    def status(answer: httpx.Response) -> RpcStatus:
        assert answer.headers["content-type"] == "application/x-protobuf"
        return RpcStatus.FromString(answer.content)

    missing = post(body, {"content-type": "application/x-protobuf"})
    assert missing.status_code == 401 and "Missing API key" in status(missing).message
    assert status(missing).code == 16
    wrong = post(body, {**proto, "authorization": "Bearer sk-lml-nosuch"})
    assert wrong.status_code == 401
    garbage = post(b"not a protobuf", proto)
    assert garbage.status_code == 400
    assert "not a protobuf OTLP ExportTraceServiceRequest" in status(garbage).message
    bad_json = post(b"[1]", {**auth, "content-type": "application/json; charset=utf-8"})
    assert bad_json.status_code == 400 and bad_json.json()["code"] == 3
    assert "not an OTLP/JSON" in bad_json.json()["message"]
    not_gzip = post(body, {**proto, "content-encoding": "gzip"})
    assert not_gzip.status_code == 400 and "not valid gzip" in status(not_gzip).message
    text = post(body, {**auth, "content-type": "text/plain"})
    assert text.status_code == 415 and "application/x-protobuf" in text.json()["message"]
    assert post(body, auth).status_code == 415  # no content type at all
    brotli = post(body, {**proto, "content-encoding": "br"})
    assert brotli.status_code == 415 and "'br' is not supported" in status(brotli).message
    bomb = gzip.compress(b"\x00" * (otlp.MAX_EXPORT_BYTES + 1))
    too_big = post(bomb, {**proto, "content-encoding": "gzip"})
    assert too_big.status_code == 413 and "once decompressed" in status(too_big).message
    with monkeypatch.context() as patched:
        patched.setattr(otlp, "MAX_EXPORT_BYTES", len(body) - 1)
        assert post(body, proto).status_code == 413  # as announced by Content-Length
        chunked = httpx.post(
            f"{url}/v1/traces", content=iter([body[:10], body[10:]]), headers=proto, timeout=10
        )
        assert "content-length" not in chunked.request.headers
        assert chunked.status_code == 413  # as it comes
    # the SDK's exporter without a key: a failed export, nothing stored
    provider, results = _sdk(url)
    with provider.get_tracer("t").start_as_current_span("unsent"):
        pass
    provider.shutdown()
    assert results == [SpanExportResult.FAILURE]
    assert post(body, proto).status_code == 200  # the limit is back
    gateway.log.flush()
    assert [name for name, _ in _stored(gateway.workspace)] == ["retrieval"]


def test_without_required_keys_a_key_is_optional(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    gateway = Gateway.from_config(table(fake_provider), workspace=sqlite_ws)
    url, stop = start_server(create_gateway_app(gateway, watch_config=False))
    try:
        headers = {"content-type": "application/x-protobuf"}
        body = _request(_span()).SerializeToString()
        assert httpx.post(f"{url}/v1/traces", content=body, headers=headers).status_code == 200
        sent = {**headers, "authorization": "Bearer sk-lml-nosuch"}  # a key sent is checked
        assert httpx.post(f"{url}/v1/traces", content=body, headers=sent).status_code == 401
    finally:
        stop()
        gateway.close()
    assert [name for name, _ in _stored(sqlite_ws)] == ["retrieval"]


def test_received_exports_are_forwarded_to_the_gateways_collector(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With [gateway] otlp_endpoint the collector sees whole traces: an application's spans
    sent to the gateway go on to it as they came (encoding and compression kept), beside the
    gateway's own; a forwarded export is not forwarded again (no loop)."""
    from llm.test_tracing import Collector

    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    collector = Collector()
    config = table(fake_provider)
    config["otlp_endpoint"] = collector.url
    gateway = Gateway.from_config(config, workspace=sqlite_ws)
    url, stop = start_server(create_gateway_app(gateway, watch_config=False))
    protobuf = _request(_span("retrieval", span_id=b"\x01" * 8)).SerializeToString()
    as_json = json.dumps(_as_json(_request(_span("rerank", span_id=b"\x02" * 8)))).encode()
    zipped = gzip.compress(as_json)
    looped = _request(_span("looped", span_id=b"\x03" * 8)).SerializeToString()
    try:
        sent = [
            (protobuf, {"content-type": "application/x-protobuf"}),
            (
                zipped,
                {"content-type": "application/json", "content-encoding": "gzip"},
            ),
            (looped, {"content-type": "application/x-protobuf", "x-loopml-forwarded": "1"}),
        ]
        for body, headers in sent:
            assert httpx.post(f"{url}/v1/traces", content=body, headers=headers).status_code == 200
        gateway.tracing.force_flush()
    finally:
        stop()
        gateway.close()
        collector.close()
    forwarded = [
        (body, headers["content-type"], headers.get("content-encoding"))
        for body, headers in zip(collector.bodies, collector.headers, strict=True)
        if headers.get("x-loopml-forwarded") == "1"
    ]
    assert forwarded == [  # in the order received, as received
        (protobuf, "application/x-protobuf", None),
        (zipped, "application/json", "gzip"),
    ]
    assert [n for n, _ in _stored(sqlite_ws)] == ["looped", "rerank", "retrieval"]  # all stored


def test_a_collector_that_is_down_costs_no_span(sqlite_ws: Workspace) -> None:
    from loopml.llm.tracing import Tracing

    log = RequestLog(sqlite_ws, flush_interval=3600)
    with socket_closed() as dead:
        tracing = Tracing(log, otlp_endpoint=dead)
        try:
            assert tracing.forward(b"\x0a\x00", "application/x-protobuf")
            tracing.force_flush()
            forwarder = tracing._forwarder
            assert forwarder is not None and (forwarder.forwarded, forwarder.failed) == (0, 1)
        finally:
            tracing.shutdown()
            log.close()
    assert not tracing.forward(b"", "application/x-protobuf")  # shut down: refused, no raise


@contextlib.contextmanager
def socket_closed() -> Iterator[str]:
    """An OTLP URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1/traces"
