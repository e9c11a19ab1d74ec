"""Retrieval metrics against values computed by hand, and labelled-query files."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from loopml.exceptions import InvalidInput
from loopml.llm.rag import (
    LabelledQuery,
    evaluate,
    evaluate_labels,
    hit_at_k,
    load_labels,
    ndcg_at_k,
    precision_at_k,
    rag_metrics,
    recall_at_k,
    reciprocal_rank,
    retrieval_span,
)
from loopml.llm.tracing import close_traces, flush_traces
from loopml.workspace import Workspace


@pytest.fixture(autouse=True)
def _app_traces_closed() -> Iterator[None]:
    yield
    close_traces()


RETRIEVED = ["d3", "d1", "d7", "d2", "d9"]
RELEVANT = {"d1", "d2", "d4"}


def test_metrics_of_one_ranking_by_hand() -> None:
    # relevant at ranks 2 and 4; d4 never retrieved
    assert precision_at_k(RETRIEVED, RELEVANT, 1) == 0.0
    assert precision_at_k(RETRIEVED, RELEVANT, 2) == 0.5
    assert precision_at_k(RETRIEVED, RELEVANT, 5) == 2 / 5
    assert recall_at_k(RETRIEVED, RELEVANT, 3) == 1 / 3
    assert recall_at_k(RETRIEVED, RELEVANT, 5) == 2 / 3
    assert reciprocal_rank(RETRIEVED, RELEVANT) == 0.5
    assert reciprocal_rank(RETRIEVED, RELEVANT, 1) == 0.0
    assert hit_at_k(RETRIEVED, RELEVANT, 1) == 0.0 and hit_at_k(RETRIEVED, RELEVANT, 2) == 1.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RETRIEVED, RELEVANT, 5) == pytest.approx(dcg / idcg)


def test_graded_ndcg_and_repeated_ids() -> None:
    gains = {"a": 3.0, "b": 2.0, "c": 0.0}
    # ranking b, a: dcg = 2 + 3/log2(3); ideal a, b: 3 + 2/log2(3)
    expected = (2 + 3 / math.log2(3)) / (3 + 2 / math.log2(3))
    assert ndcg_at_k(["b", "a", "c"], gains, 3) == pytest.approx(expected)
    assert ndcg_at_k(["a", "b"], gains, 2) == pytest.approx(1.0)
    assert ndcg_at_k(["x"], {}, 3) == 0.0
    # a repeated id counts once: precision@2 of [a, a] is 1/2, not 1
    assert precision_at_k(["a", "a", "b"], {"a"}, 2) == 0.5
    assert recall_at_k(["x"], set(), 3) == 0.0


def test_means_leave_out_queries_without_relevant_documents() -> None:
    scores = evaluate([(RETRIEVED, RELEVANT), (["x", "d4"], {"d4"}), (["x"], set())], k=2)
    assert scores.queries == 2
    assert scores.precision == pytest.approx((0.5 + 0.5) / 2)
    assert scores.recall == pytest.approx((1 / 3 + 1) / 2)
    assert scores.mrr == pytest.approx(0.5)
    assert scores.hit_rate == 1.0
    assert evaluate([], k=3).mrr is None
    with pytest.raises(InvalidInput, match="k is a positive integer"):
        evaluate([], k=0)


def test_labels_file_parses_and_bad_lines_are_named(tmp_path: Path) -> None:
    good = tmp_path / "labels.jsonl"
    good.write_text(
        '{"query": "refunds?", "relevant": ["faq#2"], "retrieved": ["faq#1", "faq#2"]}\n'
        "\n"
        '{"query": "hours?", "relevant": {"hours#1": 2, "hours#2": 1}}\n'
    )
    labels = load_labels(good)
    assert labels[0] == LabelledQuery("refunds?", {"faq#2": 1.0}, ("faq#1", "faq#2"))
    assert labels[1].relevant == {"hours#1": 2.0, "hours#2": 1.0} and labels[1].retrieved is None
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "a", "relevant": ["x"]}\n{"query": "b", "relevant": "x"}\n')
    with pytest.raises(InvalidInput, match=r"bad.jsonl, line 2: 'relevant' is a list"):
        load_labels(bad)
    bad.write_text('{"query": "a", "relevant": ["x"], "answer": 1}\n')
    with pytest.raises(InvalidInput, match=r"line 1: unknown key\(s\) answer"):
        load_labels(bad)
    bad.write_text("{nope\n")
    with pytest.raises(InvalidInput, match="line 1: not JSON"):
        load_labels(bad)
    with pytest.raises(InvalidInput, match="No labels file"):
        load_labels(tmp_path / "missing.jsonl")


def test_labelled_queries_with_their_own_retrievals_need_no_store() -> None:
    result = evaluate_labels(
        [LabelledQuery("q", {"d1": 1.0, "d2": 1.0, "d4": 1.0}, tuple(RETRIEVED))], k=5
    )
    assert result.scores.queries == 1 and result.unmatched == ()
    assert result.scores.recall == pytest.approx(2 / 3)
    assert result.per_query[0]["rr"] == 0.5


def test_rag_metrics_from_cited_ids_and_feedback(ws: Workspace) -> None:
    with retrieval_span("a?", ["d1", "d2", "d3"], index="docs", cited=["d2"], workspace=ws):
        pass
    with retrieval_span("b?", ["d4", "d5"], index="docs", cited=["d9"], workspace=ws):
        pass
    with retrieval_span("c?", ["d6", "d7"], index="docs", workspace=ws):  # no label
        pass
    with retrieval_span("d?", ["d8"], index="other", cited=["d8"], workspace=ws):
        pass
    flush_traces(ws)
    metrics = rag_metrics(ws, index="docs", days=1, k=5)
    assert (metrics.retrievals, metrics.labelled) == (3, 2)
    assert metrics.hit_rate == 0.5 and metrics.mrr == pytest.approx(0.25)
    (day,) = metrics.series
    assert day.queries == 2 and day.day == date.today().isoformat()
    # feedback (by query or trace id) labels the unlabelled one and overrides a citation
    fed = rag_metrics(ws, index="docs", k=1, feedback={"c?": ["d6"], "b?": ["d4"]})
    assert (fed.labelled, fed.hit_rate, fed.mrr) == (3, 2 / 3, 2 / 3)
    everything = rag_metrics(ws, days=1)
    assert (everything.retrievals, everything.labelled) == (4, 3)
    with pytest.raises(InvalidInput, match="days is a positive number"):
        rag_metrics(ws, days=0)
