"""Retrieval spans: what a RAG application retrieved for a query, recorded as attributes of
a span of :func:`loopml.llm.trace` (stored in ``llm_spans``, exported over OTLP where
configured).

Attribute names (lists are parallel: item *i* of each describes the *i*-th document, best
first; a missing score, source, hash or timestamp is ``""``/``NaN`` in its list):

=================================  ======================================================
``loopml.rag.query``               the query text
``loopml.rag.index``               the index's name (as registered with ``register_index``)
``loopml.rag.index_version``       the index version searched (int), when known
``loopml.rag.document_ids``        the retrieved documents' (or chunks') ids
``loopml.rag.document_scores``     their retrieval scores
``loopml.rag.document_sources``    the file each came from (absolute, or relative to the
                                   index's root)
``loopml.rag.document_hashes``     the BLAKE3 of that file as indexed
``loopml.rag.document_timestamps`` when each was indexed (ISO 8601 or epoch seconds)
``loopml.rag.document_texts``      the retrieved texts themselves, when given (what the
                                   online evaluation judges the answer against)
``loopml.rag.cited_ids``           the ids the answer cited (weak relevance labels)
=================================  ======================================================

A call to the gateway made inside the same trace (``inject_headers()``) stores its
generation span under the same trace id, so ``loopml traces show`` puts retrieval and
generation side by side.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from loopml.exceptions import InvalidInput
from loopml.wording import shown
from loopml.workspace import WorkspaceLike, resolve_workspace

QUERY = "loopml.rag.query"
INDEX = "loopml.rag.index"
INDEX_VERSION = "loopml.rag.index_version"
DOCUMENT_IDS = "loopml.rag.document_ids"
DOCUMENT_SCORES = "loopml.rag.document_scores"
DOCUMENT_SOURCES = "loopml.rag.document_sources"
DOCUMENT_HASHES = "loopml.rag.document_hashes"
DOCUMENT_TIMESTAMPS = "loopml.rag.document_timestamps"
DOCUMENT_TEXTS = "loopml.rag.document_texts"
CITED_IDS = "loopml.rag.cited_ids"
#: Who sent a span over OTLP, set by the gateway's receiver (never taken from the sender):
#: the virtual key's id ("" when the span came without a key) and the key's team.
SENT_BY_KEY = "loopml.sent_by.key"
SENT_BY_TEAM = "loopml.sent_by.team"

_DOCUMENT_KEYS = frozenset({"id", "score", "source", "source_hash", "timestamp", "text"})


@dataclass(frozen=True)
class Document:
    """One retrieved document as a retrieval span records it."""

    id: str
    score: float | None = None
    source: str | None = None
    source_hash: str | None = None
    timestamp: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Retrieval:
    """A stored retrieval span: the query, the index searched, the documents (best first)."""

    trace_id: str
    span_id: str
    start_us: int
    query: str | None
    index: str
    index_version: int | None
    documents: tuple[Document, ...]
    cited_ids: tuple[str, ...] | None
    #: Who sent the span over OTLP: (the virtual key's id, "" for none; its team). None: not
    #: received over OTLP (written by loopml itself, in-process).
    sent_by: tuple[str, str | None] | None = None

    def sent_for(self, key_id: str | None, team: str | None) -> bool:
        """Whether a request made with the virtual key ``key_id`` (of ``team``) may use this
        span: one written in-process, or sent by that key or a key of that team; any span
        for a request made without a key."""
        if self.sent_by is None or key_id is None:
            return True
        sender, sender_team = self.sent_by
        return sender == key_id or (team is not None and sender_team == team)

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.start_us / 1e6).astimezone()

    @property
    def document_ids(self) -> list[str]:
        return [d.id for d in self.documents]


def retrieval_attributes(
    query: str | None,
    documents: Sequence[Mapping[str, Any] | str],
    *,
    index: str,
    index_version: int | None = None,
    cited: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The span attributes of a retrieval (see the module's table); raises
    :class:`InvalidInput` naming a malformed document.

    >>> a = retrieval_attributes("refund?", [{"id": "faq#2", "score": 0.8, "source": "faq.md"}],
    ...                          index="docs", index_version=3)
    >>> a["loopml.rag.document_ids"], a["loopml.rag.document_sources"], a["loopml.rag.index"]
    (['faq#2'], ['faq.md'], 'docs')
    """
    if not isinstance(index, str) or not index.strip():
        raise InvalidInput(f"A retrieval names its index (a non-empty string), got {shown(index)}.")
    if index_version is not None and (
        isinstance(index_version, bool) or not isinstance(index_version, int)
    ):
        raise InvalidInput(f"index_version is an integer, got {shown(index_version)}.")
    docs = [_document(item, i) for i, item in enumerate(documents)]
    attributes: dict[str, Any] = {INDEX: index, DOCUMENT_IDS: [d.id for d in docs]}
    if query is not None:
        attributes[QUERY] = str(query)
    if index_version is not None:
        attributes[INDEX_VERSION] = index_version
    if any(d.score is not None for d in docs):
        attributes[DOCUMENT_SCORES] = [math.nan if d.score is None else d.score for d in docs]
    for key, field in (
        (DOCUMENT_SOURCES, "source"),
        (DOCUMENT_HASHES, "source_hash"),
        (DOCUMENT_TIMESTAMPS, "timestamp"),
        (DOCUMENT_TEXTS, "text"),
    ):
        values = [getattr(d, field) for d in docs]
        if any(v is not None for v in values):
            attributes[key] = ["" if v is None else v for v in values]
    if cited is not None:
        if isinstance(cited, str) or not all(isinstance(c, str) for c in cited):
            raise InvalidInput(f"cited is a list of document ids, got {shown(cited)}.")
        attributes[CITED_IDS] = list(cited)
    return attributes


def _document(item: Mapping[str, Any] | str, i: int) -> Document:
    if isinstance(item, str):
        return Document(item)
    if not isinstance(item, Mapping) or "id" not in item:
        raise InvalidInput(
            f"Retrieved document {i} must be an id or a mapping with 'id' (and optionally "
            f"score, source, source_hash, timestamp, text), got {shown(item)}."
        )
    extra = sorted(set(item) - _DOCUMENT_KEYS)
    if extra:
        raise InvalidInput(
            f"Retrieved document {i} ({item['id']!r}) has unknown key(s) {', '.join(extra)}; "
            "a document has id, score, source, source_hash, timestamp, text."
        )
    score = item.get("score")
    if score is not None:
        try:
            score = float(score)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"Retrieved document {i} ({item['id']!r}): score is a number, got {shown(score)}."
            ) from None
    timestamp = item.get("timestamp")
    if isinstance(timestamp, datetime):
        timestamp = timestamp.isoformat()
    return Document(
        id=str(item["id"]),
        score=score,
        source=None if item.get("source") is None else str(item["source"]),
        source_hash=None if item.get("source_hash") is None else str(item["source_hash"]),
        timestamp=None if timestamp is None else str(timestamp),
        text=None if item.get("text") is None else str(item["text"]),
    )


def record_retrieval(
    query: str | None,
    documents: Sequence[Mapping[str, Any] | str],
    *,
    index: str,
    index_version: int | None = None,
    cited: Sequence[str] | None = None,
) -> None:
    """Set the retrieval attributes on the current span (one of :func:`loopml.llm.trace`).

    >>> with trace("retrieve"):                                       # doctest: +SKIP
    ...     hits = retriever.search(question, k=5)
    ...     record_retrieval(question, [{"id": h.id, "score": h.score, "source": h.path,
    ...                                  "source_hash": h.file_hash} for h in hits],
    ...                      index="docs", index_version=3)
    """
    from opentelemetry import trace as otel_trace

    attributes = retrieval_attributes(
        query, documents, index=index, index_version=index_version, cited=cited
    )
    span = otel_trace.get_current_span()
    if not span.is_recording():
        raise InvalidInput(
            "record_retrieval() sets attributes on the current span, and there is none: call "
            "it inside `with loopml.llm.trace(...)`, or use `retrieval_span(...)`."
        )
    span.set_attributes(attributes)


@contextmanager
def retrieval_span(
    query: str | None,
    documents: Sequence[Mapping[str, Any] | str] = (),
    *,
    index: str,
    index_version: int | None = None,
    cited: Sequence[str] | None = None,
    name: str = "retrieval",
    workspace: WorkspaceLike = None,
) -> Iterator[Any]:
    """A span named ``name`` holding a retrieval (nested under the current span): the
    documents may be given now, or later with :func:`record_retrieval` inside the block.

    >>> with retrieval_span(question, hits, index="docs", index_version=3):  # doctest: +SKIP
    ...     answer = client.chat.completions.create(..., extra_headers=inject_headers())
    """
    from loopml.llm.tracing import trace

    attributes = retrieval_attributes(
        query, documents, index=index, index_version=index_version, cited=cited
    )
    with trace(name, workspace=workspace, attributes=attributes) as span:
        yield span


# -- reading ---------------------------------------------------------------------------------


def stored_retrievals(
    workspace: WorkspaceLike = None,
    *,
    index: str | None = None,
    since_us: int | None = None,
    trace_id: str | None = None,
) -> list[Retrieval]:
    """The retrieval spans stored in the workspace (oldest first), of ``index`` (any when
    None), started at or after ``since_us`` (microseconds since the epoch), of one trace
    (``trace_id``, 32 hex digits) when given."""
    from loopml.llm.tables import llm_spans

    ws = resolve_workspace(workspace)
    stmt = (
        select(
            llm_spans.c.trace_id,
            llm_spans.c.span_id,
            llm_spans.c.start_us,
            llm_spans.c.attributes,
        )
        .where(llm_spans.c.attributes.like(f'%"{INDEX}"%'))
        .order_by(llm_spans.c.start_us, llm_spans.c.span_id)
    )
    if since_us is not None:
        stmt = stmt.where(llm_spans.c.start_us >= since_us)
    if trace_id is not None:
        stmt = stmt.where(llm_spans.c.trace_id == trace_id)
    with ws.db.read() as conn:
        rows = conn.execute(stmt).all()
    found = []
    for row in rows:
        retrieval = _parse(row.trace_id, row.span_id, int(row.start_us), row.attributes)
        if retrieval is not None and (index is None or retrieval.index == index):
            found.append(retrieval)
    return found


def _sent_by(attributes: Mapping[str, Any]) -> tuple[str, str | None] | None:
    key = attributes.get(SENT_BY_KEY)
    if key is None:
        return None
    team = attributes.get(SENT_BY_TEAM)
    return str(key), team if isinstance(team, str) else None


def _parse(trace_id: str, span_id: str, start_us: int, raw: str | None) -> Retrieval | None:
    try:
        attributes = json.loads(raw or "{}")
    except ValueError:
        return None
    name = attributes.get(INDEX)
    if not isinstance(name, str):
        return None
    ids = _strings(attributes.get(DOCUMENT_IDS))
    scores = attributes.get(DOCUMENT_SCORES)
    scores = scores if isinstance(scores, list) else []
    sources = _strings(attributes.get(DOCUMENT_SOURCES))
    hashes = _strings(attributes.get(DOCUMENT_HASHES))
    stamps = _strings(attributes.get(DOCUMENT_TIMESTAMPS))
    texts = _strings(attributes.get(DOCUMENT_TEXTS))

    def item(values: list[Any], i: int) -> Any:
        value = values[i] if i < len(values) else None
        return None if value in ("", None) else value

    documents = tuple(
        Document(
            id=doc_id,
            score=_score(item(scores, i)),
            source=item(sources, i),
            source_hash=item(hashes, i),
            timestamp=item(stamps, i),
            text=item(texts, i),
        )
        for i, doc_id in enumerate(ids)
    )
    version = attributes.get(INDEX_VERSION)
    cited = attributes.get(CITED_IDS)
    return Retrieval(
        trace_id=trace_id,
        span_id=span_id,
        start_us=start_us,
        query=attributes.get(QUERY) if isinstance(attributes.get(QUERY), str) else None,
        index=name,
        index_version=version if isinstance(version, int) else None,
        documents=documents,
        cited_ids=tuple(_strings(cited)) if isinstance(cited, list) else None,
        sent_by=_sent_by(attributes),
    )


def _strings(value: Any) -> list[str]:
    return [str(v) if v is not None else "" for v in value] if isinstance(value, list) else []


def _score(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
