"""RAG monitoring: retrieval spans, index freshness, retrieval quality and the online
evaluation of sampled gateway traffic (``[gateway.online_eval]``).

    from loopml.llm import trace
    from loopml.llm.rag import check_index, record_retrieval, register_index

    register_index("docs", source="knowledge/**/*.md")   # right after (re)building the index
    with trace("answer"):
        hits = retriever.search(question)
        record_retrieval(question, [{"id": h.id, "score": h.score, "source": h.path,
                                     "source_hash": h.file_hash} for h in hits],
                         index="docs", index_version=1)
    check_index("docs", days=7).stale                     # corpus moved on since the build?

On the command line: ``loopml rag …`` (see docs/rag.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.exports import lazy_exports

if TYPE_CHECKING:
    from loopml.llm.rag.corpus import (
        Changes,
        CorpusFile,
        SourceNotFound,
    )
    from loopml.llm.rag.indexes import (
        IndexCheck,
        IndexNotFound,
        IndexVersion,
        StaleDocument,
        check_index,
        get_index,
        index_manifest,
        list_indexes,
        register_index,
    )
    from loopml.llm.rag.online import (
        OnlineEvaluator,
        OnlinePoint,
        Rolled,
        online_series,
        roll_windows,
        sampled,
    )
    from loopml.llm.rag.quality import (
        LabelledEval,
        LabelledQuery,
        RagMetrics,
        RetrievalScores,
        evaluate,
        evaluate_labels,
        hit_at_k,
        load_labels,
        ndcg_at_k,
        precision_at_k,
        rag_metrics,
        recall_at_k,
        reciprocal_rank,
    )
    from loopml.llm.rag.spans import (
        Document,
        Retrieval,
        record_retrieval,
        retrieval_attributes,
        retrieval_span,
        stored_retrievals,
    )

_LAZY = {
    "Changes": "loopml.llm.rag.corpus",
    "CorpusFile": "loopml.llm.rag.corpus",
    "Document": "loopml.llm.rag.spans",
    "IndexCheck": "loopml.llm.rag.indexes",
    "IndexNotFound": "loopml.llm.rag.indexes",
    "IndexVersion": "loopml.llm.rag.indexes",
    "LabelledEval": "loopml.llm.rag.quality",
    "LabelledQuery": "loopml.llm.rag.quality",
    "OnlineEvaluator": "loopml.llm.rag.online",
    "OnlinePoint": "loopml.llm.rag.online",
    "RagMetrics": "loopml.llm.rag.quality",
    "Retrieval": "loopml.llm.rag.spans",
    "RetrievalScores": "loopml.llm.rag.quality",
    "Rolled": "loopml.llm.rag.online",
    "SourceNotFound": "loopml.llm.rag.corpus",
    "StaleDocument": "loopml.llm.rag.indexes",
    "check_index": "loopml.llm.rag.indexes",
    "evaluate": "loopml.llm.rag.quality",
    "evaluate_labels": "loopml.llm.rag.quality",
    "get_index": "loopml.llm.rag.indexes",
    "hit_at_k": "loopml.llm.rag.quality",
    "index_manifest": "loopml.llm.rag.indexes",
    "list_indexes": "loopml.llm.rag.indexes",
    "load_labels": "loopml.llm.rag.quality",
    "ndcg_at_k": "loopml.llm.rag.quality",
    "online_series": "loopml.llm.rag.online",
    "precision_at_k": "loopml.llm.rag.quality",
    "rag_metrics": "loopml.llm.rag.quality",
    "recall_at_k": "loopml.llm.rag.quality",
    "reciprocal_rank": "loopml.llm.rag.quality",
    "record_retrieval": "loopml.llm.rag.spans",
    "register_index": "loopml.llm.rag.indexes",
    "retrieval_attributes": "loopml.llm.rag.spans",
    "retrieval_span": "loopml.llm.rag.spans",
    "roll_windows": "loopml.llm.rag.online",
    "sampled": "loopml.llm.rag.online",
    "stored_retrievals": "loopml.llm.rag.spans",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "Changes",
    "CorpusFile",
    "Document",
    "IndexCheck",
    "IndexNotFound",
    "IndexVersion",
    "LabelledEval",
    "LabelledQuery",
    "OnlineEvaluator",
    "OnlinePoint",
    "RagMetrics",
    "Retrieval",
    "RetrievalScores",
    "Rolled",
    "SourceNotFound",
    "StaleDocument",
    "check_index",
    "evaluate",
    "evaluate_labels",
    "get_index",
    "hit_at_k",
    "index_manifest",
    "list_indexes",
    "load_labels",
    "ndcg_at_k",
    "online_series",
    "precision_at_k",
    "rag_metrics",
    "recall_at_k",
    "reciprocal_rank",
    "record_retrieval",
    "register_index",
    "retrieval_attributes",
    "retrieval_span",
    "roll_windows",
    "sampled",
    "stored_retrievals",
]
