"""Retrieval quality: the standard ranking metrics as pure functions, their mean over
labelled queries, and hit rate / MRR over time from the weak labels stored retrieval spans
carry (the ids an answer cited) or that feedback supplies.

Every metric reads the retrieved ids best first, counts a repeated id once, and looks at the
top ``k`` only. ``relevant`` is a collection of ids (each with gain 1) or, for nDCG, a
mapping of id → graded gain.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from loopml.exceptions import InvalidInput
from loopml.llm.rag.spans import Retrieval, stored_retrievals
from loopml.wording import shown
from loopml.workspace import WorkspaceLike, resolve_workspace

Relevant = Collection[str] | Mapping[str, float]


def _top(retrieved: Sequence[str], k: int | None) -> list[str]:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise InvalidInput(f"k is a positive integer, got {shown(k)}.")
    seen: dict[str, None] = {}
    for doc in retrieved:
        seen.setdefault(doc, None)
    ranked = list(seen)
    return ranked if k is None else ranked[:k]


def _gains(relevant: Relevant) -> dict[str, float]:
    if isinstance(relevant, Mapping):
        return {str(d): float(g) for d, g in relevant.items() if float(g) > 0}
    return {str(d): 1.0 for d in relevant}


def precision_at_k(retrieved: Sequence[str], relevant: Relevant, k: int) -> float:
    """The share of the top ``k`` slots holding a relevant document.

    >>> precision_at_k(["a", "x", "b", "y"], {"a", "b", "c"}, 4)
    0.5
    """
    gains = _gains(relevant)
    return sum(1 for d in _top(retrieved, k) if d in gains) / k


def recall_at_k(retrieved: Sequence[str], relevant: Relevant, k: int) -> float:
    """The share of the relevant documents found in the top ``k`` (0 when none is relevant).

    >>> recall_at_k(["a", "x", "b", "y"], {"a", "b", "c"}, 2)
    0.3333333333333333
    """
    gains = _gains(relevant)
    if not gains:
        return 0.0
    return sum(1 for d in _top(retrieved, k) if d in gains) / len(gains)


def reciprocal_rank(retrieved: Sequence[str], relevant: Relevant, k: int | None = None) -> float:
    """1 / the rank of the first relevant document in the top ``k`` (0 when there is none).

    >>> reciprocal_rank(["x", "y", "a"], {"a"}), reciprocal_rank(["x", "y", "a"], {"a"}, 2)
    (0.3333333333333333, 0.0)
    """
    gains = _gains(relevant)
    for rank, doc in enumerate(_top(retrieved, k), start=1):
        if doc in gains:
            return 1.0 / rank
    return 0.0


def hit_at_k(retrieved: Sequence[str], relevant: Relevant, k: int | None = None) -> float:
    """1 when a relevant document is in the top ``k``, else 0.

    >>> hit_at_k(["x", "a"], ["a"], 1), hit_at_k(["x", "a"], ["a"], 2)
    (0.0, 1.0)
    """
    return 1.0 if reciprocal_rank(retrieved, relevant, k) > 0 else 0.0


def ndcg_at_k(retrieved: Sequence[str], relevant: Relevant, k: int) -> float:
    """Normalized discounted cumulative gain: ``Σ gain_i / log2(i + 1)`` over the top ``k``
    ranks, divided by the same sum of the ideal ranking (0 when nothing is relevant).

    >>> round(ndcg_at_k(["x", "a", "b"], {"a": 1, "b": 1}, 3), 4)
    0.6934
    >>> ndcg_at_k(["b", "a"], {"a": 3, "b": 1}, 2) < ndcg_at_k(["a", "b"], {"a": 3, "b": 1}, 2)
    True
    """
    gains = _gains(relevant)
    dcg = sum(
        gains.get(doc, 0.0) / math.log2(rank + 1)
        for rank, doc in enumerate(_top(retrieved, k), start=1)
    )
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg else 0.0


@dataclass(frozen=True)
class RetrievalScores:
    """Mean metrics over labelled queries (None: no query had a relevant document)."""

    queries: int
    k: int
    precision: float | None
    recall: float | None
    mrr: float | None
    ndcg: float | None
    hit_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(pairs: Iterable[tuple[Sequence[str], Relevant]], k: int) -> RetrievalScores:
    """The mean precision@k, recall@k, MRR (within k), nDCG@k and hit rate@k of
    ``(retrieved, relevant)`` pairs; a query with no relevant document is left out (its
    metrics are undefined).

    >>> s = evaluate([(["a", "x"], {"a"}), (["x", "b"], {"b", "c"})], k=2)
    >>> s.queries, s.precision, s.recall, s.mrr, s.hit_rate
    (2, 0.5, 0.75, 0.75, 1.0)
    """
    _top([], k)
    rows = [(list(r), rel) for r, rel in pairs if _gains(rel)]
    if not rows:
        return RetrievalScores(0, k, None, None, None, None, None)
    n = len(rows)
    return RetrievalScores(
        queries=n,
        k=k,
        precision=sum(precision_at_k(r, rel, k) for r, rel in rows) / n,
        recall=sum(recall_at_k(r, rel, k) for r, rel in rows) / n,
        mrr=sum(reciprocal_rank(r, rel, k) for r, rel in rows) / n,
        ndcg=sum(ndcg_at_k(r, rel, k) for r, rel in rows) / n,
        hit_rate=sum(hit_at_k(r, rel, k) for r, rel in rows) / n,
    )


# -- weak labels over stored retrieval spans --------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Hit rate and MRR of one day's labelled retrievals."""

    day: str  # YYYY-MM-DD, local time
    queries: int
    hit_rate: float
    mrr: float


@dataclass(frozen=True)
class RagMetrics:
    """Retrieval quality from weak labels over a window of stored retrieval spans."""

    index: str | None
    days: float
    k: int
    retrievals: int  # retrieval spans in the window
    labelled: int  # … that had a weak label (cited ids, or feedback for their trace/query)
    hit_rate: float | None
    mrr: float | None
    series: tuple[Period, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weak_label(
    retrieval: Retrieval, feedback: Mapping[str, Collection[str]] | None
) -> Collection[str] | None:
    if feedback:
        for key in (retrieval.trace_id, retrieval.query):
            if key is not None and key in feedback:
                return feedback[key]
    return retrieval.cited_ids


def rag_metrics(
    workspace: WorkspaceLike = None,
    *,
    index: str | None = None,
    days: float = 7.0,
    k: int = 5,
    feedback: Mapping[str, Collection[str]] | None = None,
) -> RagMetrics:
    """Hit rate@k and MRR@k of the retrieval spans of the last ``days`` (of ``index``, or
    every index), per day and overall. A retrieval's relevant documents are the ids its
    answer cited (``cited=`` when it was recorded) or, taking precedence, ``feedback[trace
    id]`` or ``feedback[query]`` (e.g. the documents a user marked helpful); a retrieval
    with neither is counted but not scored."""
    if isinstance(days, bool) or not isinstance(days, int | float) or not days > 0:
        raise InvalidInput(f"days is a positive number, got {shown(days)}.")
    _top([], k)
    ws = resolve_workspace(workspace)
    retrievals = stored_retrievals(
        ws, index=index, since_us=int((time.time() - days * 86_400) * 1e6)
    )
    per_day: dict[str, list[tuple[float, float]]] = {}
    scored: list[tuple[float, float]] = []
    for retrieval in retrievals:
        relevant = _weak_label(retrieval, feedback)
        if relevant is None:
            continue
        ids = retrieval.document_ids
        point = (hit_at_k(ids, relevant, k), reciprocal_rank(ids, relevant, k))
        scored.append(point)
        day = datetime.fromtimestamp(retrieval.start_us / 1e6).date().isoformat()
        per_day.setdefault(day, []).append(point)
    series = tuple(
        Period(
            day=day,
            queries=len(points),
            hit_rate=sum(p[0] for p in points) / len(points),
            mrr=sum(p[1] for p in points) / len(points),
        )
        for day, points in sorted(per_day.items())
    )
    return RagMetrics(
        index=index,
        days=float(days),
        k=k,
        retrievals=len(retrievals),
        labelled=len(scored),
        hit_rate=sum(p[0] for p in scored) / len(scored) if scored else None,
        mrr=sum(p[1] for p in scored) / len(scored) if scored else None,
        series=series,
    )


# -- labelled queries ------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledQuery:
    """A query with its relevant documents (id → gain) and, optionally, what was retrieved
    (otherwise taken from the newest stored retrieval span of the same query)."""

    query: str
    relevant: Mapping[str, float]
    retrieved: tuple[str, ...] | None = None


def load_labels(path: str | Path) -> list[LabelledQuery]:
    """Labelled queries from a JSON Lines file (or a JSON list): one object per query,
    ``{"query": "…", "relevant": ["id", …] or {"id": gain, …}, "retrieved": [...]?}``;
    a malformed line is an :class:`InvalidInput` naming the file and line."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"No labels file {str(path)!r}: give a JSON Lines file.") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise InvalidInput(f"{path} is not a UTF-8 text file of labelled queries.") from None
    stripped = raw.lstrip()
    items: list[tuple[int, Any]] = []
    if stripped.startswith("["):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InvalidInput(f"{path} does not parse as JSON: {exc}") from None
        items = [(i + 1, item) for i, item in enumerate(data)]
        where = "item"
    else:
        where = "line"
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((number, json.loads(line)))
            except ValueError as exc:
                raise InvalidInput(f"{path}, line {number}: not JSON ({exc}).") from None
    out = [_labelled(item, f"{path}, {where} {number}") for number, item in items]
    if not out:
        raise InvalidInput(f"{path} holds no labelled query.")
    return out


def _labelled(item: Any, where: str) -> LabelledQuery:
    if not isinstance(item, dict) or not isinstance(item.get("query"), str):
        raise InvalidInput(f"{where}: a labelled query is an object with a 'query' string.")
    extra = sorted(set(item) - {"query", "relevant", "retrieved"})
    if extra:
        raise InvalidInput(
            f"{where}: unknown key(s) {', '.join(extra)}; expected query, relevant, retrieved."
        )
    relevant = item.get("relevant")
    gains: dict[str, float]
    if isinstance(relevant, list) and all(isinstance(d, str) for d in relevant):
        gains = {d: 1.0 for d in relevant}
    elif isinstance(relevant, dict) and all(
        isinstance(g, int | float) and not isinstance(g, bool) for g in relevant.values()
    ):
        gains = {str(d): float(g) for d, g in relevant.items()}
    else:
        raise InvalidInput(
            f"{where}: 'relevant' is a list of document ids or an object of id → gain, got "
            f"{shown(relevant)}."
        )
    retrieved = item.get("retrieved")
    if retrieved is not None and not (
        isinstance(retrieved, list) and all(isinstance(d, str) for d in retrieved)
    ):
        raise InvalidInput(f"{where}: 'retrieved' is a list of document ids.")
    return LabelledQuery(item["query"], gains, tuple(retrieved) if retrieved is not None else None)


@dataclass(frozen=True)
class LabelledEval:
    """Metrics over labelled queries, with the queries no retrieval was found for."""

    scores: RetrievalScores
    per_query: tuple[dict[str, Any], ...]
    unmatched: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.scores.to_dict(),
            "per_query": list(self.per_query),
            "unmatched": list(self.unmatched),
        }


def evaluate_labels(
    labels: Sequence[LabelledQuery],
    *,
    k: int = 5,
    index: str | None = None,
    workspace: WorkspaceLike = None,
) -> LabelledEval:
    """precision@k, recall@k, MRR, nDCG@k and hit rate of labelled queries; a query
    without ``retrieved`` is scored on the newest stored retrieval span of the same query
    text (of ``index`` when given), and listed as unmatched when there is none."""
    _top([], k)
    newest: dict[str, tuple[str, ...]] = {}
    if any(label.retrieved is None for label in labels):
        for retrieval in stored_retrievals(workspace, index=index):
            if retrieval.query is not None:
                newest[retrieval.query] = tuple(retrieval.document_ids)
    pairs: list[tuple[Sequence[str], Relevant]] = []
    rows: list[dict[str, Any]] = []
    unmatched: list[str] = []
    for label in labels:
        retrieved = label.retrieved if label.retrieved is not None else newest.get(label.query)
        if retrieved is None:
            unmatched.append(label.query)
            continue
        pairs.append((retrieved, label.relevant))
        rows.append(
            {
                "query": label.query,
                "precision": precision_at_k(retrieved, label.relevant, k),
                "recall": recall_at_k(retrieved, label.relevant, k),
                "rr": reciprocal_rank(retrieved, label.relevant, k),
                "ndcg": ndcg_at_k(retrieved, label.relevant, k),
            }
        )
    return LabelledEval(evaluate(pairs, k), tuple(rows), tuple(unmatched))
