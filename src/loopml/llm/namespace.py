"""``ws.llm``: what the LLM gateway recorded in this workspace, read back
(:mod:`loopml.llm.reports`), and the workspace's tracer for applications' own spans.

    ws.llm.costs(by="team", since="7d")
    ws.llm.requests(errors_only=True, limit=20); ws.llm.request("3f2a9c1e")
    ws.llm.traces(since="1h"); ws.llm.trace_tree("4bf92f35")
    with ws.llm.trace("retrieval") as span: ...
    ws.llm.prompts.get("support/answer@production"); ws.llm.rag.check_index("docs")
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from loopml.llm import reports
from loopml.namespaces import Namespace, WithWorkspace

if TYPE_CHECKING:
    from loopml.llm.prompts.namespace import Prompts
    from loopml.llm.rag.namespace import Rag


class LLM(Namespace):
    """``ws.llm``: the LLM gateway's request log, spend and traces in one workspace."""

    costs = WithWorkspace(reports.costs)
    requests = WithWorkspace(reports.requests)
    traces = WithWorkspace(reports.traces)

    @cached_property
    def prompts(self) -> Prompts:
        """The prompt registry (:class:`loopml.llm.prompts.namespace.Prompts`)."""
        from loopml.llm.prompts.namespace import Prompts

        return Prompts(self.workspace)

    @cached_property
    def rag(self) -> Rag:
        """RAG monitoring (:class:`loopml.llm.rag.namespace.Rag`)."""
        from loopml.llm.rag.namespace import Rag

        return Rag(self.workspace)

    def feedback(self, request_id: str, value: float | bool, **options: Any) -> Any:
        """Store feedback on a logged gateway request (:func:`loopml.llm.feedback.
        record_feedback`; in-process right after the answer, ``Gateway.feedback``)."""
        from loopml.llm.feedback import record_feedback

        return record_feedback(request_id, value, workspace=self.workspace, **options)

    def request(self, request_id: str) -> dict[str, Any]:
        """One logged request with its messages, response and attempts
        (:func:`loopml.llm.reports.request`)."""
        return reports.request(self.workspace, request_id)

    def trace_tree(self, trace_id: str) -> dict[str, Any]:
        """One trace as a tree of spans (:func:`loopml.llm.reports.trace_tree`)."""
        return reports.trace_tree(self.workspace, trace_id)

    def trace(self, name: str | None = None, *, attributes: Mapping[str, Any] | None = None) -> Any:
        """:func:`loopml.llm.tracing.trace` recording into this workspace: a context manager
        and a decorator (``@ws.llm.trace("answer")``)."""
        from loopml.llm.tracing import trace

        return trace(name, workspace=self.workspace, attributes=attributes)

    def flush_traces(self) -> None:
        """Write this workspace's application spans finished so far (else within a second)."""
        from loopml.llm.tracing import flush_traces

        flush_traces(self.workspace)
