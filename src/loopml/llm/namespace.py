"""``ws.llm``: what the LLM gateway recorded in this workspace, read back
(:mod:`loopml.llm.reports`), and the workspace's tracer for applications' own spans.

    ws.llm.costs(by="team", since="7d")
    ws.llm.requests(errors_only=True, limit=20); ws.llm.request("3f2a9c1e")
    ws.llm.traces(since="1h"); ws.llm.trace_tree("4bf92f35")
    with ws.llm.trace("retrieval") as span: ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopml.llm import reports
from loopml.namespaces import Namespace, WithWorkspace


class LLM(Namespace):
    """``ws.llm``: the LLM gateway's request log, spend and traces in one workspace."""

    costs = WithWorkspace(reports.costs)
    requests = WithWorkspace(reports.requests)
    traces = WithWorkspace(reports.traces)

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
