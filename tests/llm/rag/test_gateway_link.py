"""A retrieval span and the gateway's generation made inside it share one trace: the
generation's spans and its request log line carry the retrieval's trace id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from llm.fake_provider import FakeProvider
from loopml.llm.gateway import Gateway
from loopml.llm.rag import retrieval_span, stored_retrievals
from loopml.llm.tables import llm_requests, llm_spans
from loopml.llm.tracing import close_traces, flush_traces, inject_headers
from loopml.workspace import Workspace


@pytest.fixture
def gw(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    config = {
        "require_key": False,
        "log_flush_interval": 0.05,
        "models": {
            "cheap": {
                "deployments": [
                    {
                        "name": "cheap-a",
                        "provider": "openai",
                        "model": "fake-small",
                        "base_url": fake_provider.base_url("cheap-a", "openai"),
                        "api_key_env": "FAKE_PROVIDER_KEY",
                    }
                ]
            }
        },
    }
    gateway = Gateway.from_config(config, workspace=sqlite_ws)
    yield gateway
    gateway.close()
    close_traces()


def test_the_generation_joins_the_retrievals_trace(gw: Gateway, sqlite_ws: Workspace) -> None:
    documents = [{"id": "faq#2", "score": 0.82, "source": "faq.md"}]
    with retrieval_span("refunds?", documents, index="docs", workspace=sqlite_ws) as span:
        context = "\n".join(d["id"] for d in documents)
        gw.chat(
            {"model": "cheap", "messages": [{"role": "user", "content": f"{context}\nrefunds?"}]},
            headers=inject_headers(),
        )
        retrieval_span_id = f"{span.get_span_context().span_id:016x}"
    flush_traces(sqlite_ws)
    gw.log.flush()
    (retrieval,) = stored_retrievals(sqlite_ws, index="docs")
    with sqlite_ws.db.read() as conn:
        generation = conn.execute(select(llm_spans).where(llm_spans.c.name == "gateway chat")).one()
        request = conn.execute(select(llm_requests)).one()
    assert generation.trace_id == retrieval.trace_id == request.trace_id
    assert generation.parent_id == retrieval.span_id == retrieval_span_id
