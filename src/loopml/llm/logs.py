"""The gateway's request log: one row of ``llm_requests`` per request, and the trace spans
(``llm_spans``), written in batches by a background thread, never on the response path.

:meth:`RequestLog.add` appends a :class:`RequestRecord` to an in-memory queue (O(1), no I/O,
no encoding); a daemon thread writes the queue every ``flush_interval`` seconds, or as soon as
``batch_rows`` are waiting, with one multi-row INSERT per table in one transaction. The
thread also does what the response needn't wait for: JSON-encoding the tags, attempts,
messages and response, and redacting them as the key's ``log_content`` says
(:func:`redact`).

What can go wrong, and what happens then:

- the store is down or locked: the batch stays queued and is retried on the next interval
  (a warning is logged); the queue is bounded by ``max_queue`` records per table, beyond
  which the oldest are dropped and counted in :attr:`RequestLog.dropped`, so memory stays
  bounded however long the store is away;
- a record's content can't be encoded as JSON: it is logged without its content (the
  ``request`` column says why), never lost;
- the database refuses one row (a duplicate id, a value too long): that row alone is
  refused (counted in :attr:`RequestLog.rejected`, logged), the rest of its batch is written.

:meth:`RequestLog.close` (the gateway's shutdown, SIGTERM) writes what is left; a SIGKILL
loses at most one interval.

    log = RequestLog(ws, flush_interval=1.0)
    log.add(RequestRecord(id=..., created_at=now_ms(), endpoint="chat", model_requested="cheap",
                          status=200, latency_ms=412.0, usage=Usage(120, 40), cost_usd=0.00012))
    log.close()
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, insert
from sqlalchemy.exc import DataError, IntegrityError

from loopml.llm.tables import llm_requests, llm_spans
from loopml.llm.types import Attempt, Usage
from loopml.store.db import upsert

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from loopml.llm.tracing import SpanRecord
    from loopml.store.db import Database
    from loopml.workspace import Workspace

log = logging.getLogger(__name__)

LOG_CONTENT = ("full", "redact", "none")
#: Errors that belong to the rows of a batch, not to the store: the batch is split to find
#: the row(s) at fault. Anything else (the store is down, locked, gone) keeps every row.
_ROW_ERRORS = (IntegrityError, DataError, OverflowError, ValueError, TypeError)
_LOGGED_REFUSALS = 20
#: Keys whose values are what people wrote or a model answered (redacted by "redact").
_TEXT_KEYS = frozenset(
    {
        "content",
        "text",
        "arguments",
        "system",
        "input",
        "prompt",
        "refusal",
        "reasoning_content",
        "thinking",
        "partial_json",
        "url",
        "data",
    }
)
#: Keys kept as they are even inside text (the structure: a content part's type).
_STRUCTURE_KEYS = frozenset({"type", "role", "id", "name", "index", "tool_call_id"})


@dataclass
class RequestRecord:
    """One request the gateway answered (or refused after authenticating): a row of
    ``llm_requests``.

    ``request`` and ``response`` are the JSON-able bodies (OpenAI-shaped, or as the client
    sent them), kept as ``log_content`` says: ``"full"``, ``"redact"`` (structure and roles,
    every text replaced by ``[redacted N chars]``) or ``"none"`` (neither is kept). They are
    encoded by the writer thread: don't change them after :meth:`RequestLog.add`.
    """

    id: str
    created_at: int  # ms since the epoch
    endpoint: str  # chat | messages | embeddings
    model_requested: str
    status: int  # the HTTP status answered
    latency_ms: float
    key_id: str | None = None
    team: str | None = None
    user: str | None = None
    tags: list[str] = field(default_factory=list)
    model_used: str | None = None
    deployment: str | None = None
    provider: str | None = None
    route_reason: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    error: str | None = None
    stream: bool = False
    truncated: bool = False
    ttft_ms: float | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    cache_hit: bool = False
    trace_id: str | None = None
    request: Any = None
    response: Any = None
    log_content: str = "full"  # not a column: what of request/response the row keeps
    #: How the cache answered (:meth:`loopml.llm.cache.CacheHit.log_entry`), and what the
    #: answer had cost upstream; None when it did not.
    cache: dict[str, Any] | None = None
    saved_usd: float | None = None
    #: The guardrail policy that judged the request (name, version) and its findings.
    guardrails: dict[str, Any] | None = None
    #: The registered prompt version it was made from (``NAME/VERSION``).
    prompt: str | None = None
    #: The label ``prompt`` was resolved through (``NAME@LABEL``); "" when named directly.
    prompt_label: str | None = None

    def to_row(self) -> dict[str, Any]:
        """The ``llm_requests`` row: JSON columns encoded, content kept as ``log_content``
        says. Content that can't be encoded is replaced by a note saying why."""
        usage = self.usage
        row: dict[str, Any] = {
            "id": self.id,
            "created_at": self.created_at,
            "endpoint": self.endpoint,
            "key_id": self.key_id,
            "team": self.team,
            "user": self.user,
            "tags": _json(list(self.tags)) if self.tags else None,
            "model_requested": self.model_requested,
            "model_used": self.model_used,
            "deployment": self.deployment,
            "provider": self.provider,
            "route_reason": self.route_reason,
            "attempts": _json([_attempt(a) for a in self.attempts]) if self.attempts else None,
            "status": self.status,
            "error": self.error,
            "stream": bool(self.stream),
            "truncated": bool(self.truncated),
            "latency_ms": float(self.latency_ms),
            "ttft_ms": None if self.ttft_ms is None else float(self.ttft_ms),
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_read_tokens": usage.cached_read_tokens,
            "cached_write_tokens": usage.cached_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "usage_estimated": bool(usage.estimated),
            "cost_usd": float(self.cost_usd),
            "cache_hit": bool(self.cache_hit),
            "trace_id": self.trace_id,
            "request": None,
            "response": None,
            "cache": _json(self.cache) if self.cache else None,
            "saved_usd": self.saved_usd,
            "guardrails": _json(self.guardrails) if self.guardrails else None,
            "prompt": self.prompt,
            "prompt_label": self.prompt_label,
        }
        if self.log_content == "none":
            return row
        request, response = self.request, self.response
        if self.log_content == "redact":
            request, response = redact(request), redact(response)
        try:
            row["request"] = None if request is None else _json(request)
            row["response"] = None if response is None else _json(response)
        except (TypeError, ValueError) as exc:
            note = {"loopml_error": f"the content could not be encoded as JSON: {exc}"}
            row["request"], row["response"] = _json(note), None
            log.warning("loopml: request %s is logged without its content: %s", self.id, exc)
        return row


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _attempt(attempt: Attempt | Mapping[str, Any]) -> dict[str, Any]:
    return dict(attempt) if isinstance(attempt, Mapping) else attempt.to_dict()


def redact(value: Any) -> Any:
    """``value`` (a list of chat messages, or a whole request or response body) with every
    text replaced by ``[redacted N chars]``; roles, structure, tool names and numbers are
    kept. A new object; ``value`` is not changed.

    >>> redact([{"role": "user", "content": "Hello there"}])
    [{'role': 'user', 'content': '[redacted 11 chars]'}]
    >>> redact({"model": "cheap", "messages": [{"role": "user", "content": [
    ...     {"type": "text", "text": "hi"}]}], "max_tokens": 5})["messages"][0]["content"]
    [{'type': 'text', 'text': '[redacted 2 chars]'}]
    """
    return _redact(value, False)


def _redact(value: Any, text: bool) -> Any:
    if isinstance(value, str):
        return f"[redacted {len(value)} chars]" if text else value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if text:
                out[key] = item if key in _STRUCTURE_KEYS else _redact(item, True)
            else:
                out[key] = _redact(item, key in _TEXT_KEYS)
        return out
    if isinstance(value, list | tuple):
        return [_redact(item, text) for item in value]
    return value


def _span_row(span: SpanRecord | ReadableSpan) -> dict[str, Any]:
    from loopml.llm.tracing import SpanRecord  # (tracing imports this module)

    if not isinstance(span, SpanRecord):  # converted here, off the request path
        span = SpanRecord.from_span(span)
    try:
        attributes = _json(span.attributes) if span.attributes else None
    except (TypeError, ValueError) as exc:
        attributes = _json({"loopml_error": f"attributes not encodable as JSON: {exc}"})
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "kind": span.kind,
        "start_us": span.start_us,
        "end_us": span.end_us,
        "status": span.status,
        "attributes": attributes,
        "request_id": span.request_id,
    }


class RequestLog:
    """The request log and span log of one workspace, written by a background thread.

    :meth:`add` and :meth:`add_spans` are thread-safe, O(1) and never touch the database;
    :meth:`flush` writes what is queued now; :meth:`close` flushes and stops the thread (also
    a context manager). ``dropped`` counts records lost because the store stayed away while
    more than ``max_queue`` of them waited; ``rejected`` those the database refused alone.
    """

    def __init__(
        self,
        ws: Workspace | Database,
        *,
        flush_interval: float = 1.0,
        batch_rows: int = 1000,
        max_queue: int = 100_000,
    ) -> None:
        if flush_interval <= 0 or batch_rows < 1 or max_queue < batch_rows:
            from loopml.exceptions import InvalidConfig

            raise InvalidConfig(
                f"RequestLog needs flush_interval > 0 and 1 <= batch_rows <= max_queue; got "
                f"flush_interval={flush_interval}, batch_rows={batch_rows}, "
                f"max_queue={max_queue}."
            )
        self._source = ws
        self.flush_interval = flush_interval
        self.batch_rows = batch_rows
        self.max_queue = max_queue
        self.written = 0  # requests written so far
        self.spans_written = 0
        self.dropped = 0
        self.rejected = 0
        self.last_error: BaseException | None = None
        self._requests: deque[RequestRecord] = deque()
        self._spans: deque[SpanRecord | ReadableSpan] = deque()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._warned_dropped = 0

    @property
    def db(self) -> Database:
        source = self._source
        return source.db if hasattr(source, "db") else source

    # -- the caller's side: O(1), no I/O ----------------------------------------------------

    def add(self, record: RequestRecord) -> None:
        """Queue one request's record (written by the thread within ``flush_interval``)."""
        with self._lock:
            queue = self._requests
            if len(queue) >= self.max_queue:
                queue.popleft()
                self.dropped += 1
            queue.append(record)
            full = len(queue) >= self.batch_rows
        if self._thread is None:
            self._start()
        if full:
            self._wake.set()
        if self._closed:
            self._late()

    def add_spans(self, spans: Iterable[SpanRecord | ReadableSpan]) -> None:
        """Queue finished spans: :class:`~loopml.llm.tracing.SpanRecord` objects, or the
        OpenTelemetry SDK's finished spans as they are (converted by the writer thread)."""
        with self._lock:
            queue = self._spans
            queue.extend(spans)
            while len(queue) > self.max_queue:
                queue.popleft()
                self.dropped += 1
            full = len(queue) >= self.batch_rows
        if self._thread is None:
            self._start()
        if full:
            self._wake.set()
        if self._closed:
            self._late()

    def _late(self) -> None:
        """A record that came after :meth:`close` (a stream that ended during shutdown):
        written now, by the caller, since no thread is left to write it."""
        try:
            self.flush()
        except Exception as exc:
            log.error("loopml: a late LLM request log record could not be written: %s", exc)

    def pending(self) -> int:
        """Records and spans queued, not yet written."""
        return len(self._requests) + len(self._spans)

    # -- the writer -------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._loop, name="loopml-llm-request-log", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._closed:
                return
            try:
                self.flush()
            except Exception as exc:  # the store is away: kept, retried on the next interval
                log.warning(
                    "loopml: the LLM request log could not be written, %d record(s) kept "
                    "and retried: %s",
                    self.pending(),
                    exc,
                )

    def flush(self) -> int:
        """Write every record and span queued now; the number of records written.

        When the store fails, what was not written stays queued (oldest first, still bounded
        by ``max_queue``) and the error is raised; rows the database refuses one by one are
        dropped alone and counted in :attr:`rejected`.
        """
        with self._flush_lock:
            written = 0
            while True:
                with self._lock:
                    records = _take(self._requests, self.batch_rows)
                    spans = _take(self._spans, self.batch_rows)
                if not records and not spans:
                    break
                request_pairs = self._encode(records, RequestRecord.to_row)
                span_pairs = self._encode(spans, _span_row)
                before, done = self.written, set[int]()
                try:
                    self._write(
                        [row for row, _ in request_pairs], [row for row, _ in span_pairs], done
                    )
                except BaseException as exc:  # the store: what is not written is kept
                    self._requeue(
                        [item for row, item in request_pairs if id(row) not in done],
                        [item for row, item in span_pairs if id(row) not in done],
                    )
                    self.last_error = exc
                    raise
                written += self.written - before
            self._warn_dropped()
            self.last_error = None
            return written

    def _requeue(
        self, records: list[RequestRecord], spans: list[SpanRecord | ReadableSpan]
    ) -> None:
        with self._lock:
            self._requests.extendleft(reversed(records))
            self._spans.extendleft(reversed(spans))
            for queue in (self._requests, self._spans):
                while len(queue) > self.max_queue:
                    queue.popleft()
                    self.dropped += 1

    def _write(
        self, request_rows: list[dict[str, Any]], span_rows: list[dict[str, Any]], done: set[int]
    ) -> None:
        """Both batches in one transaction; when the database refuses a row, split the batch
        until the row at fault is alone, and refuse it alone. ``done`` collects the ``id()``
        of every row written or refused (the others are kept when the store fails)."""
        pending: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = [
            (request_rows, span_rows)
        ]
        while pending:
            requests, spans = pending.pop()
            try:
                self.db.transact(functools.partial(_insert, requests=requests, spans=spans))
            except _ROW_ERRORS as exc:
                if len(requests) + len(spans) == 1:
                    self._refuse(requests or spans, exc)
                    done.update(id(row) for row in (*requests, *spans))
                    continue
                pending += _halves(requests, spans)
                continue
            self.written += len(requests)
            self.spans_written += len(spans)
            done.update(id(row) for row in (*requests, *spans))

    def _encode(
        self, items: list[Any], encode: Callable[[Any], dict[str, Any]]
    ) -> list[tuple[dict[str, Any], Any]]:
        """``(row, item)`` of each of ``items``; one that can't be made a row is refused."""
        rows = []
        for item in items:
            try:
                rows.append((encode(item), item))
            except Exception as exc:
                self._refuse(_describe(item), exc)
        return rows

    def _refuse(self, what: str | list[dict[str, Any]], exc: BaseException) -> None:
        self.rejected += 1
        if self.rejected > _LOGGED_REFUSALS and self.rejected % 1000:
            return  # the first ones, then one in a thousand: a bad batch can't flood the log
        if not isinstance(what, str):
            row = what[0]
            what = f"span {row['span_id']}" if "span_id" in row else f"request {row['id']}"
        reason = (str(exc).strip().splitlines() or [repr(exc)])[0]
        log.warning(
            "loopml: the LLM request log refused %s (%d refused so far): %s",
            what,
            self.rejected,
            reason,
        )

    def _warn_dropped(self) -> None:
        if self.dropped > self._warned_dropped:
            log.warning(
                "loopml: the LLM request log dropped %d record(s) so far: the store was "
                "unavailable while more than %d waited",
                self.dropped,
                self.max_queue,
            )
            self._warned_dropped = self.dropped

    def close(self) -> None:
        """Stop the thread and write what is queued; idempotent. Records added later are
        written at once, by the caller. A store that is still away
        leaves the queued records unwritten: that is logged as an error (with the count),
        not raised, so a shutdown always completes."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()
        try:
            self.flush()
        except Exception as exc:
            log.error(
                "loopml: the LLM request log lost %d record(s) at close, the store is "
                "unavailable: %s",
                self.pending(),
                exc,
            )

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe(item: Any) -> str:
    if isinstance(item, RequestRecord):
        return f"request {getattr(item, 'id', '?')}"
    return f"span {getattr(item, 'name', '?')!r}"


def _take(queue: deque[Any], count: int) -> list[Any]:
    taken: list[Any] = []
    while queue and len(taken) < count:
        taken.append(queue.popleft())
    return taken


def _halves(
    requests: list[dict[str, Any]], spans: list[dict[str, Any]]
) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Split a refused batch of more than one row in two (the last part is tried next)."""
    if requests and spans:
        return [([], spans), (requests, [])]
    if requests:
        middle = len(requests) // 2
        return [(requests[middle:], []), (requests[:middle], [])]
    middle = len(spans) // 2
    return [([], spans[middle:]), ([], spans[:middle])]


def _insert(conn: Connection, requests: list[dict[str, Any]], spans: list[dict[str, Any]]) -> None:
    if requests:
        conn.execute(insert(llm_requests), requests)
    if spans:
        # A span delivered twice (an exporter's retry, a replayed batch) is stored once.
        conn.execute(upsert(conn.dialect.name, llm_spans).on_conflict_do_nothing(), spans)
