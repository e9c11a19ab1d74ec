"""``ws.llm.rag``: RAG monitoring of one workspace (:mod:`loopml.llm.rag`).

ws.llm.rag.register_index("docs", "knowledge/**/*.md")   # right after a (re)build
ws.llm.rag.check_index("docs").stale
ws.llm.rag.metrics(index="docs", days=7)                 # hit rate / MRR from citations
ws.llm.rag.online(index="docs", days=1)                  # online evaluation, per window
"""

from __future__ import annotations

from loopml.llm.rag import indexes as _indexes
from loopml.llm.rag import online as _online
from loopml.llm.rag import quality as _quality
from loopml.llm.rag import spans as _spans
from loopml.namespaces import Namespace, WithWorkspace


class Rag(Namespace):
    """``ws.llm.rag``: indexes and their freshness, stored retrievals, retrieval quality and
    the online evaluation's time series."""

    register_index = WithWorkspace(_indexes.register_index)
    check_index = WithWorkspace(_indexes.check_index)
    get_index = WithWorkspace(_indexes.get_index)
    indexes = WithWorkspace(_indexes.list_indexes)
    manifest = WithWorkspace(_indexes.index_manifest)
    retrievals = WithWorkspace(_spans.stored_retrievals)
    metrics = WithWorkspace(_quality.rag_metrics)
    evaluate_labels = WithWorkspace(_quality.evaluate_labels)
    online = WithWorkspace(_online.online_series)
    roll_windows = WithWorkspace(_online.roll_windows)
