"""OTLP trace export requests → :class:`~loopml.llm.tracing.SpanRecord` rows: what the
gateway's ``POST /v1/traces`` stores, so that any OpenTelemetry SDK's OTLP/HTTP exporter can
send an application's spans (retrieval spans among them) to the gateway.

Both OTLP/HTTP encodings are read: binary protobuf (``application/x-protobuf``) and OTLP/JSON
(``application/json``: trace and span ids as hex, 64-bit integers as strings). A span that
can't be stored is rejected alone, with a reason (:attr:`Received.errors`); the others are
kept::

    received = read_export(body, "json")
    log.add_spans(received.spans)
    answer = encode_response(received, "json")   # partial_success names the rejected ones

Errors (both are :class:`~loopml.exceptions.InvalidInput`)::

    NotOtlp            the body is not an OTLP trace export request at all (HTTP 400)
    └── BodyTooLarge   it is over the size limit once decompressed (HTTP 413)

A span becomes one row: ids as lowercase hex, times in microseconds, the kind and status as
the gateway's own spans have them, attributes as a flat dict (arrays as lists, key-value
lists as dicts, bytes as base64), plus the resource's ``service.name``; a
``loopml.request_id`` attribute fills the row's ``request_id``. Events and links are not
stored (nor are they of the gateway's own spans).

:func:`stamp_sender` marks every span with the virtual key that sent it
(``loopml.sent_by.key``, ``""`` when none, and ``loopml.sent_by.team``), replacing whatever
the sender put there: readers that act on received spans (the online evaluator takes a
request's context from its trace's retrieval spans) trust only the spans that the request's
own key, or its team, sent.
"""

from __future__ import annotations

import base64
import binascii
import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson

from loopml.exceptions import InvalidInput, missing_dependency
from loopml.llm.rag.spans import SENT_BY_KEY, SENT_BY_TEAM
from loopml.llm.tracing import LOOPML_REQUEST_ID, SpanRecord

try:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
except ImportError as exc:  # the `llm` extra is not installed
    raise missing_dependency("opentelemetry-proto", "llm", "The gateway's OTLP receiver") from exc

Encoding = Literal["protobuf", "json"]

#: Largest export request accepted, in bytes once decompressed (bigger ones: HTTP 413).
MAX_EXPORT_BYTES = 16 * 1024 * 1024
#: Longest span name stored (the ``llm_spans.name`` column).
MAX_NAME_CHARS = 250
#: Longest ``loopml.request_id`` stored (the ``llm_spans.request_id`` column).
MAX_REQUEST_ID_CHARS = 32
#: Reasons named in a partial success's ``error_message`` (the rest are counted).
SHOWN_ERRORS = 5

_KINDS: dict[int, str] = {
    Span.SPAN_KIND_UNSPECIFIED: "internal",
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}
_SERVICE_NAME = "service.name"


class NotOtlp(InvalidInput):
    """The body is not an OTLP ``ExportTraceServiceRequest`` in the encoding it claims."""


class BodyTooLarge(NotOtlp):
    """The export request is over :data:`MAX_EXPORT_BYTES` once decompressed."""


@dataclass
class Received:
    """The spans of one export request that can be stored, and why the others can't."""

    spans: list[SpanRecord] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.errors.append(reason)

    @property
    def error_message(self) -> str:
        """The reasons spans were rejected, the first :data:`SHOWN_ERRORS` of them."""
        if not self.rejected:
            return ""
        shown = "; ".join(self.errors[:SHOWN_ERRORS])
        more = len(self.errors) - SHOWN_ERRORS
        return (
            f"{self.rejected} span(s) rejected: {shown}"
            + (f"; and {more} more" if more > 0 else "")
        ) + "."


#: Content-Encodings read (OTLP/HTTP names gzip; the Python exporter also offers deflate).
COMPRESSIONS = ("gzip", "deflate")
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decompress(body: bytes, coding: str, limit: int = MAX_EXPORT_BYTES) -> bytes:
    """``body`` decompressed (``coding``: one of :data:`COMPRESSIONS`); :class:`BodyTooLarge`
    past ``limit`` bytes, and :class:`NotOtlp` when it is not in that encoding.

    >>> import gzip
    >>> decompress(gzip.compress(b"spans"), "gzip")
    b'spans'
    """
    inflater = zlib.decompressobj(wbits=_WBITS[coding])
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise NotOtlp(
            f"The body is not valid {coding} ({exc}), though Content-Encoding says {coding}."
        ) from None
    if len(out) > limit:
        raise BodyTooLarge(
            f"The export request is over {limit} bytes once decompressed: send smaller "
            "batches (OTEL_BSP_MAX_EXPORT_BATCH_SIZE)."
        )
    if not inflater.eof:
        raise NotOtlp(f"The {coding} body ends early (truncated): resend the whole request.")
    return out


def read_export(body: bytes, encoding: Encoding) -> Received:
    """The spans of an OTLP ``ExportTraceServiceRequest`` (``encoding``: ``"protobuf"`` or
    ``"json"``); :class:`NotOtlp` when the body is not one. A span that can't be stored is
    counted in :attr:`Received.rejected` with its reason, and the others are kept."""
    if encoding == "protobuf":
        try:
            request = ExportTraceServiceRequest.FromString(body)
        except DecodeError:
            raise NotOtlp(
                "The body is not a protobuf OTLP ExportTraceServiceRequest (the wire format "
                "does not parse): send application/x-protobuf from an OTLP/HTTP exporter, or "
                "OTLP/JSON as application/json."
            ) from None
        if body and not request.resource_spans:
            raise NotOtlp(
                "The body holds no resource_spans: it is not an OTLP trace export request "
                "(metrics and logs go elsewhere)."
            )
        received = Received()
        for r, resource_spans in enumerate(request.resource_spans):
            service = _service(_attributes(resource_spans.resource.attributes))
            for s, scope_spans in enumerate(resource_spans.scope_spans):
                for i, span in enumerate(scope_spans.spans):
                    place = f"resource_spans[{r}].scope_spans[{s}].spans[{i}]"
                    _store(_protobuf_parts(span), service, place, received)
        return received
    return _read_json(body)


_SENT_BY_PREFIX = SENT_BY_KEY.rpartition(".")[0] + "."


def stamp_sender(received: Received, key_id: str | None, team: str | None) -> None:
    """Mark the received spans as sent by the virtual key ``key_id`` (None: no key) of
    ``team``, dropping any ``loopml.sent_by.*`` attributes the sender set itself."""
    for span in received.spans:
        attributes = {k: v for k, v in span.attributes.items() if not k.startswith(_SENT_BY_PREFIX)}
        attributes[SENT_BY_KEY] = key_id or ""
        if key_id and team:
            attributes[SENT_BY_TEAM] = team
        span.attributes = attributes


class _Parts(NamedTuple):
    """A span's fields as either encoding gives them."""

    trace_id: bytes
    span_id: bytes
    parent_id: bytes
    name: str
    kind: int
    start_ns: int
    end_ns: int
    failed: bool
    message: str
    attributes: dict[str, Any]


def _protobuf_parts(span: Span) -> _Parts:
    return _Parts(
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        span.name,
        span.kind,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        span.status.code == Status.STATUS_CODE_ERROR,
        span.status.message,
        _attributes(span.attributes),
    )


def _service(resource: Mapping[str, Any]) -> Any:
    return resource.get(_SERVICE_NAME)


def _store(parts: _Parts, service: Any, place: str, received: Received) -> None:
    """Append the span to ``received`` as a :class:`SpanRecord`, or reject it saying why."""
    where = f"{place}{f' ({parts.name!r})' if parts.name else ''}"
    problem = _problem(parts)
    if problem:
        received.reject(f"{where}: {problem}")
        return
    attributes = parts.attributes
    if service is not None:
        attributes.setdefault(_SERVICE_NAME, service)
    if parts.failed and parts.message:
        attributes.setdefault("error", parts.message)
    request_id = attributes.get(LOOPML_REQUEST_ID)
    if request_id is not None:
        request_id = str(request_id)
        if len(request_id) > MAX_REQUEST_ID_CHARS:
            received.reject(
                f"{where}: {LOOPML_REQUEST_ID} is over {MAX_REQUEST_ID_CHARS} characters "
                f"({request_id[:40]!r}): a gateway request id looks like req_…"
            )
            return
    received.spans.append(
        SpanRecord(
            trace_id=parts.trace_id.hex(),
            span_id=parts.span_id.hex(),
            parent_id=parts.parent_id.hex() if any(parts.parent_id) else None,
            name=parts.name,
            kind=_KINDS.get(parts.kind, "internal"),
            start_us=parts.start_ns // 1000,
            end_us=parts.end_ns // 1000,
            status="error" if parts.failed else "ok",
            attributes=attributes,
            request_id=request_id,
        )
    )


def _problem(parts: _Parts) -> str | None:
    """Why the span can't be stored; None when it can."""
    for key, value, size in (("trace_id", parts.trace_id, 16), ("span_id", parts.span_id, 8)):
        if len(value) != size:
            return f"{key} is {size} bytes, got {len(value)}"
        if not any(value):
            return f"{key} is all zeros (an invalid id)"
    if parts.parent_id and len(parts.parent_id) != 8:
        return f"parent_span_id is 8 bytes (or empty), got {len(parts.parent_id)}"
    if not parts.name:
        return "the span has no name"
    if len(parts.name) > MAX_NAME_CHARS:
        return f"the span's name is over {MAX_NAME_CHARS} characters"
    if not parts.start_ns:
        return "the span has no start time"
    if parts.end_ns < parts.start_ns:
        return "the span ends before it starts"
    return None


# -- OTLP/JSON -------------------------------------------------------------------------------
# Read directly rather than through protobuf's JSON parser (ten times slower a span): the
# spec's JSON mapping of the few fields stored, both field spellings (lowerCamelCase and the
# proto's snake_case), unknown fields ignored.


def _read_json(body: bytes) -> Received:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotOtlp(f"The body is not valid JSON ({exc}): send OTLP/JSON.") from None
    if not isinstance(request, dict):
        raise NotOtlp(
            f"The body is a JSON {_kind(request)}, not an OTLP/JSON "
            'ExportTraceServiceRequest ({"resourceSpans": [...]}).'
        )
    resources = _field(request, "resourceSpans", "resource_spans")
    if resources is None and request:
        raise NotOtlp(
            "The JSON object has no resourceSpans: it is not an OTLP/JSON trace export "
            f"request (its keys: {', '.join(sorted(request)[:5])})."
        )
    received = Received()
    for r, resource_spans in enumerate(_list(resources, "resourceSpans")):
        where = f"resourceSpans[{r}]"
        _object(resource_spans, where)
        scopes = _list(_field(resource_spans, "scopeSpans", "scope_spans"), f"{where}.scopeSpans")
        spans = [
            (f"{where}.scopeSpans[{s}].spans[{i}]", span)
            for s, scope_spans in enumerate(scopes)
            for i, span in enumerate(
                _list(
                    _field(_object(scope_spans, f"{where}.scopeSpans[{s}]"), "spans"),
                    f"{where}.scopeSpans[{s}].spans",
                )
            )
        ]
        try:
            resource = _field(resource_spans, "resource") or {}
            if not isinstance(resource, dict):
                raise ValueError(f"it is a JSON {_kind(resource)}, not an object")
            service = _service(_json_attributes(_field(resource, "attributes")))
        except (ValueError, RecursionError) as exc:
            for place, _span in spans:
                received.reject(f"{place}: its resource does not parse ({_reason(exc)})")
            continue
        for place, raw in spans:
            try:
                parts = _json_parts(raw)
            except (ValueError, RecursionError) as exc:
                received.reject(f"{place}{_named(raw)}: {_reason(exc)}")
                continue
            _store(parts, service, place, received)
    return received


def _field(obj: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise NotOtlp(f"{where} is a JSON {_kind(value)}, not an array: send OTLP/JSON.")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NotOtlp(f"{where} is a JSON {_kind(value)}, not an object: send OTLP/JSON.")
    return value


def _kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words."""
    if isinstance(value, bool):
        return "boolean"
    kinds = {dict: "object", list: "array", str: "string", int: "number", float: "number"}
    return kinds.get(type(value), "null")


def _named(raw: Any) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f" ({name!r})" if isinstance(name, str) and name else ""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "attribute values nest too deeply"
    return str(exc).rstrip(".")


_JSON_KINDS: dict[str, int] = dict(Span.SpanKind.items())
_JSON_STATUS: dict[str, int] = dict(Status.StatusCode.items())


def _json_parts(raw: Any) -> _Parts:
    """One OTLP/JSON span's fields; ValueError naming the first that doesn't parse."""
    if not isinstance(raw, dict):
        raise ValueError(f"a span is a JSON object, not a {_kind(raw)}")
    name = _field(raw, "name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"name is a string, got a JSON {_kind(name)}")
    status = _field(raw, "status") or {}
    if not isinstance(status, dict):
        raise ValueError(f"status is an object, got a JSON {_kind(status)}")
    message = _field(status, "message") or ""
    if not isinstance(message, str):
        raise ValueError(f"status.message is a string, got a JSON {_kind(message)}")
    return _Parts(
        _hex(raw, 16, "traceId", "trace_id"),
        _hex(raw, 8, "spanId", "span_id"),
        _hex(raw, 8, "parentSpanId", "parent_span_id"),
        name or "",
        _enum(_field(raw, "kind"), _JSON_KINDS, "kind"),
        _integer(_field(raw, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano"),
        _integer(_field(raw, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano"),
        _enum(_field(status, "code"), _JSON_STATUS, "status.code") == Status.STATUS_CODE_ERROR,
        message,
        _json_attributes(_field(raw, "attributes")),
    )


def _hex(raw: dict[str, Any], size: int, *names: str) -> bytes:
    """The id in ``raw`` under one of ``names`` (OTLP/JSON writes ids as hex)."""
    value = _field(raw, *names)
    if value is None or value == "":
        return b""
    key = names[0]
    if not isinstance(value, str):
        raise ValueError(f"{key} is {size * 2} hex digits, got a JSON {_kind(value)}")
    try:
        found = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{key} is {size * 2} hex digits, got {value[:40]!r}") from None
    if len(found) != size:
        raise ValueError(f"{key} is {size * 2} hex digits, got {len(value)}: {value[:40]!r}")
    return found


def _enum(value: Any, names: Mapping[str, int], key: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return names.get(value, 0)  # an unknown name: as protobuf's parser, unspecified
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{key} is a number or an enum name, got a JSON {_kind(value)}")


def _integer(value: Any, key: str, low: int = 0, high: int = 2**64 - 1) -> int:
    """An integer as OTLP/JSON writes it (64-bit ones as strings); 0 when missing."""
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ValueError(f"{key} is an integer, got {value[:40]!r}") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} is an integer, got a JSON {_kind(value)}")
    if not low <= value <= high:
        raise ValueError(f"{key} is out of range: {value}")
    return value


def _json_attributes(items: Any) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise ValueError(f"attributes is an array, got a JSON {_kind(items)}")
    found = {}
    for item in items:
        key = item.get("key", "") if isinstance(item, dict) else None  # "" is left out
        if not isinstance(key, str):
            raise ValueError(f'an attribute is {{"key": "…", "value": {{…}}}}, got {item!r:.60}')
        found[key] = _json_value(item.get("value"), key)
    return found


def _json_value(value: Any, key: str) -> Any:
    """An OTLP/JSON ``AnyValue`` as :func:`_value` gives a protobuf one."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"attribute {key!r}: a value is an object, got a JSON {_kind(value)}")
    for field_name, item in value.items():
        which = _VALUE_FIELDS.get(field_name)
        if which is None:
            continue  # an unknown field
        if which == "string":
            if not isinstance(item, str):
                raise ValueError(f"attribute {key!r}: stringValue is a JSON {_kind(item)}")
            return item
        if which == "bool":
            if not isinstance(item, bool):
                raise ValueError(f"attribute {key!r}: boolValue is a JSON {_kind(item)}")
            return item
        if which == "int":
            return _integer(item, f"attribute {key!r}: intValue", -(2**63), 2**63 - 1)
        if which == "double":
            return _double(item, key)
        if which == "bytes":
            return _base64(item, key)
        if not isinstance(item, dict):
            raise ValueError(f"attribute {key!r}: {field_name} is a JSON {_kind(item)}")
        values = item.get("values")
        if which == "array":
            if values is None:
                return []
            if not isinstance(values, list):
                raise ValueError(f"attribute {key!r}: arrayValue.values is not an array")
            return [_json_value(v, key) for v in values]
        return _json_attributes(values)
    return None


_VALUE_FIELDS = {
    **{f"{kind}Value": kind for kind in ("string", "bool", "int", "double", "bytes")},
    **{f"{kind}_value": kind for kind in ("string", "bool", "int", "double", "bytes")},
    "arrayValue": "array",
    "array_value": "array",
    "kvlistValue": "kvlist",
    "kvlist_value": "kvlist",
}
_SPECIAL_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _double(item: Any, key: str) -> float:
    if isinstance(item, int | float) and not isinstance(item, bool):
        return float(item)
    if isinstance(item, str):
        if item in _SPECIAL_DOUBLES:
            return _SPECIAL_DOUBLES[item]
        try:
            return float(item)
        except ValueError:
            pass
    raise ValueError(f"attribute {key!r}: doubleValue is a number, got {item!r:.40}")


def _base64(item: Any, key: str) -> str:
    """Bytes (base64 in OTLP/JSON, either alphabet) as standard base64."""
    if isinstance(item, str):
        text = item.replace("-", "+").replace("_", "/")
        try:
            return base64.b64encode(
                base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            ).decode()
        except (binascii.Error, ValueError):
            pass
    raise ValueError(f"attribute {key!r}: bytesValue is base64, got {item!r:.40}")


# -- protobuf --------------------------------------------------------------------------------


def _attributes(items: Iterable[Any]) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


def _value(value: AnyValue) -> Any:
    """An ``AnyValue`` as plain JSON-able Python: arrays as lists, key-value lists as dicts,
    bytes as base64, an empty value as None."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bool_value":
        return value.bool_value
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def encode_response(received: Received, encoding: Encoding) -> bytes:
    """The ``ExportTraceServiceResponse`` to ``received``'s request: empty when every span
    was kept, else a ``partial_success`` with the rejected count and why."""
    if encoding == "json":
        if not received.rejected:
            return b"{}"
        return orjson.dumps(
            {
                "partialSuccess": {
                    "rejectedSpans": str(received.rejected),  # int64: a string in OTLP/JSON
                    "errorMessage": received.error_message,
                }
            }
        )
    response = ExportTraceServiceResponse()
    if received.rejected:
        response.partial_success.rejected_spans = received.rejected
        response.partial_success.error_message = received.error_message
    return response.SerializeToString()


#: gRPC status codes of the HTTP statuses the receiver answers with (google.rpc.Code).
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 429: 8, 500: 13, 503: 14}


def encode_status(status: int, message: str, encoding: Encoding) -> bytes:
    """The body of an error answer: a ``google.rpc.Status`` (as OTLP/HTTP specifies) with
    the gRPC code of HTTP ``status`` and ``message``.

    >>> encode_status(400, "bad", "json")
    b'{"code":3,"message":"bad"}'
    >>> encode_status(400, "bad", "protobuf")
    b'\\x08\\x03\\x12\\x03bad'
    """
    code = _GRPC_CODES.get(status, 2)  # 2: UNKNOWN
    if encoding == "json":
        return orjson.dumps({"code": code, "message": message})
    # Status{int32 code = 1; string message = 2}, encoded by hand: the googleapis protos are
    # not a dependency of the receiver.
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
