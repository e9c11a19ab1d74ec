"""The gateway in-process: routing, fallbacks, streams, keys, limits, accounting, logs, traces,
against the fake provider (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from llm.fake_provider import FakeProvider
from loopml.events import read
from loopml.llm.config import GatewayConfig
from loopml.llm.errors import (
    AuthenticationFailed,
    BadRequest,
    BudgetExceeded,
    ContextWindowExceeded,
    PermissionDenied,
    RateLimited,
    UnknownModel,
    UpstreamError,
)
from loopml.llm.gateway import Gateway, StreamInterrupted
from loopml.llm.keys import create_key, revoke_key
from loopml.llm.tables import llm_keys, llm_requests, llm_spans
from loopml.workspace import Workspace

PRICES = {
    "fake-small": {"input": 1.0, "cached_input": 0.5, "output": 2.0},
    "fake-large": {"input": 10.0, "output": 20.0},
    "fake-reasoning": {"input": 1.0, "output": 4.0, "reasoning": 8.0},
}


def deployment(fake: FakeProvider, name: str, model: str, flavour: str = "openai") -> dict:
    return {
        "name": name,
        "provider": flavour,
        "model": model,
        "base_url": fake.base_url(name, flavour),
        "api_key_env": "FAKE_PROVIDER_KEY",
    }


def table(fake: FakeProvider, **extra: Any) -> dict[str, Any]:
    """Groups: cheap (two OpenAI deployments, falls back to frontier), frontier (Anthropic),
    small (context window 8, larger_context: long), long."""
    config: dict[str, Any] = {
        "require_key": False,
        "log_flush_interval": 0.05,
        "num_retries": 3,
        "models": {
            "cheap": {
                "strategy": "least-busy",
                "fallbacks": ["frontier"],
                "deployments": [
                    deployment(fake, "cheap-a", "fake-small"),
                    deployment(fake, "cheap-b", "fake-small"),
                ],
            },
            "frontier": {"deployments": [deployment(fake, "front", "fake-large", "anthropic")]},
            "reasoner": {"deployments": [deployment(fake, "reason", "fake-reasoning")]},
            "bare": {"deployments": [deployment(fake, "nousage-d", "fake-small")]},
            "small": {
                "context_window": 8,
                "larger_context": "long",
                "deployments": [deployment(fake, "small-d", "fake-small")],
            },
            "long": {"deployments": [deployment(fake, "long-d", "fake-large")]},
        },
        "prices": PRICES,
        "teams": {"growth": {"budget": "0.001/day"}},
    }
    config.update(extra)
    return config


@pytest.fixture
def gw(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    gateway = Gateway.from_config(table(fake_provider), workspace=sqlite_ws)
    yield gateway
    gateway.close()


def ask(text: str, model: str = "cheap", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def logged(gw: Gateway) -> list[dict[str, Any]]:
    gw.log.flush()
    with gw.workspace.db.engine.connect() as conn:
        rows = conn.execute(select(llm_requests).order_by(llm_requests.c.created_at)).mappings()
        return [dict(r) for r in rows]


def test_chat_answers_and_logs_tokens_and_cost(gw: Gateway, fake_provider: FakeProvider) -> None:
    reply = gw.chat(ask("hello there"))
    assert reply.body["choices"][0]["message"]["content"] == "echo: hello there"
    assert reply.usage.input_tokens == 2 and reply.usage.output_tokens == 3
    assert reply.cost_usd == pytest.approx((2 * 1.0 + 3 * 2.0) / 1e6)
    (row,) = logged(gw)
    assert row["id"] == reply.request_id
    assert row["model_requested"] == "cheap" and row["model_used"] == "fake-small"
    assert row["status"] == 200 and row["cost_usd"] == pytest.approx(reply.cost_usd)
    assert row["input_tokens"] == 2 and row["output_tokens"] == 3
    assert json.loads(row["request"])["messages"][0]["content"] == "hello there"
    assert fake_provider.calls(reply.deployment)[0]["_headers"]["authorization"] == "Bearer sk-fake"


def test_streamed_and_not_streamed_cost_the_same(gw: Gateway) -> None:
    plain = gw.chat(ask("one two three four", user="cached"))
    chunks = list(gw.stream(ask("one two three four", user="cached", stream=True)))
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )
    assert text == "echo: one two three four"
    assert not any(c.get("usage") for c in chunks)  # not asked for: not forwarded
    rows = logged(gw)
    assert [r["stream"] for r in rows] == [False, True]
    assert rows[0]["cost_usd"] == pytest.approx(rows[1]["cost_usd"])
    assert rows[0]["cached_read_tokens"] == rows[1]["cached_read_tokens"] == 2
    assert rows[1]["usage_estimated"] is False and rows[1]["ttft_ms"] is not None
    assert plain.cost_usd == pytest.approx(rows[1]["cost_usd"])


def test_stream_usage_is_forwarded_when_asked(gw: Gateway) -> None:
    chunks = list(gw.stream(ask("a b", stream=True, stream_options={"include_usage": True})))
    assert chunks[-1]["usage"]["prompt_tokens"] == 2


def test_stream_without_provider_usage_is_counted_and_marked_estimated(gw: Gateway) -> None:
    list(gw.stream(ask("count these words please", model="bare", stream=True)))
    (row,) = logged(gw)
    assert row["usage_estimated"] is True
    assert row["output_tokens"] > 0 and row["input_tokens"] > 0


def test_reasoning_and_cached_tokens_are_priced_apart(gw: Gateway) -> None:
    reply = gw.chat(ask("think", model="reasoner"))
    usage = reply.usage
    assert usage.reasoning_tokens == 5
    expected = (usage.input_tokens * 1.0 + (usage.output_tokens - 5) * 4.0 + 5 * 8.0) / 1e6
    assert reply.cost_usd == pytest.approx(expected)


def test_openai_request_routed_to_anthropic_provider(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    reply = gw.chat(ask("bonjour", model="frontier", max_tokens=50))
    assert reply.body["object"] == "chat.completion"
    assert reply.body["choices"][0]["message"]["content"] == "echo: bonjour"
    assert reply.body["choices"][0]["finish_reason"] == "stop"
    sent = fake_provider.calls("front")[0]
    assert sent["max_tokens"] == 50 and sent["_headers"]["x-api-key"] == "sk-fake"
    chunks = list(gw.stream(ask("bonjour", model="frontier", stream=True)))
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
        == "echo: bonjour"
    )


def test_tool_calls_pass_through_both_providers(gw: Gateway) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    for model in ("cheap", "frontier"):
        reply = gw.chat(ask("call:lookup the weather", model=model, tools=tools))
        choice = reply.body["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        call = choice["message"]["tool_calls"][0]
        assert call["function"]["name"] == "lookup"
        assert json.loads(call["function"]["arguments"]) == {"q": "the weather"}


def test_server_errors_fall_back_and_the_chain_is_logged(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    fake_provider.fail("cheap-a", "500", times=5)
    fake_provider.fail("cheap-b", "429", times=5, retry_after=1)
    reply = gw.chat(ask("hi"))
    assert reply.deployment == "front"  # the fallback group answered
    statuses = [a.status for a in reply.attempts]
    assert statuses[-1] == "ok" and set(statuses[:-1]) == {"server", "rate_limit"}
    (row,) = logged(gw)
    chain = json.loads(row["attempts"])
    assert [a["status"] for a in chain] == statuses


def test_every_deployment_failing_is_an_upstream_error(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    fake_provider.fail("front", "503", times=10)
    with pytest.raises(UpstreamError, match="attempts failed"):
        gw.chat(ask("hi", model="frontier"))
    (row,) = logged(gw)
    assert row["status"] == 502 and "front" in row["error"]


def test_stream_cut_before_first_token_fails_over_silently(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    fake_provider.fail("cheap-a", "cut", after=0)
    fake_provider.fail("cheap-b", "cut", after=0)
    chunks = list(gw.stream(ask("still here", stream=True)))
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )
    assert text == "echo: still here"


def test_stream_cut_after_tokens_ends_with_an_error_and_is_logged_truncated(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    fake_provider.fail("front", "cut", after=2)
    got: list[dict[str, Any]] = []
    with pytest.raises(StreamInterrupted):
        for chunk in gw.stream(ask("one two three four five", model="frontier", stream=True)):
            got.append(chunk)
    assert got  # tokens were sent before the break
    (row,) = logged(gw)
    assert row["truncated"] is True and row["status"] == 502
    assert row["output_tokens"] > 0  # what was sent is billed


def test_prompt_over_the_context_window_goes_to_the_larger_group(gw: Gateway) -> None:
    reply = gw.chat(ask("word " * 40, model="small"))
    assert reply.deployment == "long-d"
    (row,) = logged(gw)
    assert "long" in row["route_reason"]


def test_provider_context_error_falls_back_to_the_larger_group(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    fake_provider.fail("small-d", "context")
    reply = gw.chat(ask("hi", model="small"))
    assert reply.deployment == "long-d"


def test_context_error_without_a_larger_group_is_a_client_error(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    fake_provider.fail("long-d", "context")
    with pytest.raises(ContextWindowExceeded, match="context window"):
        gw.chat(ask("hi", model="long"))


def test_unknown_model_names_the_known_ones(gw: Gateway) -> None:
    with pytest.raises(UnknownModel, match="cheap"):
        gw.chat(ask("hi", model="gpt-17"))


@pytest.mark.parametrize(
    "body",
    [
        {"model": "cheap"},
        {"model": "cheap", "messages": []},
        {"model": "cheap", "messages": ["hi"]},
        {"messages": [{"role": "user", "content": "hi"}]},
    ],
)
def test_malformed_requests_are_bad_requests(gw: Gateway, body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        gw.chat(body)


def test_keys_missing_unknown_revoked_expired(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    gw = Gateway.from_config(table(fake_provider), workspace=sqlite_ws, require_key=True)
    try:
        with pytest.raises(AuthenticationFailed):
            gw.chat(ask("hi"))
        with pytest.raises(AuthenticationFailed):
            gw.chat(ask("hi"), api_key="sk-lml-nope")
        key, secret = create_key(sqlite_ws, name="app", models=["cheap"])
        assert gw.chat(ask("hi"), api_key=secret).body["choices"]
        with pytest.raises(PermissionDenied, match="frontier"):
            gw.chat(ask("hi", model="frontier"), api_key=secret)
        revoked, revoked_secret = create_key(sqlite_ws, name="gone")
        revoke_key(sqlite_ws, revoked.id)
        with pytest.raises(AuthenticationFailed, match="revoked"):
            gw.chat(ask("hi"), api_key=revoked_secret)
        old, old_secret = create_key(sqlite_ws, name="old", expires="30d")
        sqlite_ws.db.transact(
            lambda conn: conn.execute(
                update(llm_keys).where(llm_keys.c.id == old.id).values(expires_at=1)
            )
        )
        with pytest.raises(AuthenticationFailed, match="expired"):
            gw.chat(ask("hi"), api_key=old_secret)
        rows = logged(gw)
        assert [r["key_id"] for r in rows if r["status"] == 200] == [key.id]
    finally:
        gw.close()


def test_rate_limit_per_key_admits_exactly_n(gw: Gateway) -> None:
    _, secret = create_key(gw.workspace, rpm=3)
    for _ in range(3):
        gw.chat(ask("hi"), api_key=secret)
    with pytest.raises(RateLimited, match="3 requests per minute") as info:
        gw.chat(ask("hi"), api_key=secret)
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 60


def test_budget_is_checked_before_dispatch_and_thresholds_become_events(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    _, secret = create_key(gw.workspace, team="growth")
    # team growth: $0.001/day; each answer here costs 2 + 2*... micro-dollars at fake-large
    spent = 0.0
    with pytest.raises(BudgetExceeded, match="growth"):
        for _ in range(100):
            spent += gw.chat(ask("w " * 10, model="long", max_tokens=11), api_key=secret).cost_usd
            gw.flush_books()  # the books are otherwise written in batches
    assert 0.0005 <= spent <= 0.001  # refused before it went over
    kinds = [(e.kind, e.subject, e.payload["fraction"]) for e in read(gw.workspace.db)]
    assert ("llm.budget_threshold", "team:growth", 0.5) in kinds
    assert len([k for k in kinds if k[2] == 0.5]) == 1  # once per period and step
    assert all(k[2] < 1.0 for k in kinds)


def test_max_request_cost_refuses_an_expensive_request(gw: Gateway) -> None:
    _, secret = create_key(gw.workspace, max_request_cost_usd=0.0001)
    with pytest.raises(BudgetExceeded, match="may cost"):
        gw.chat(ask("hi", model="long", max_tokens=100_000), api_key=secret)


def test_redacted_content_keeps_no_text(gw: Gateway) -> None:
    _, secret = create_key(gw.workspace, log_content="redact")
    gw.chat(ask("my secret diagnosis"), api_key=secret)
    (row,) = logged(gw)
    assert "diagnosis" not in (row["request"] or "") + (row["response"] or "")


def test_spans_form_a_tree_and_honour_traceparent(gw: Gateway) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    reply = gw.chat(ask("hi"), headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    gw.log.flush()
    with gw.workspace.db.engine.connect() as conn:
        spans = [
            dict(r)
            for r in conn.execute(
                select(llm_spans).where(llm_spans.c.trace_id == trace_id)
            ).mappings()
        ]
    by_name = {s["name"]: s for s in spans}
    root = by_name["gateway chat"]
    assert root["parent_id"] == parent
    assert by_name["router"]["parent_id"] == root["span_id"]
    attempt = next(s for n, s in by_name.items() if n.startswith("attempt "))
    assert attempt["parent_id"] == root["span_id"]
    attributes = json.loads(root["attributes"])
    assert attributes["gen_ai.usage.input_tokens"] == reply.usage.input_tokens
    (row,) = logged(gw)
    assert row["trace_id"] == trace_id


def test_embeddings(gw: Gateway) -> None:
    reply = gw.embed({"model": "cheap", "input": ["a b", "c"]})
    assert len(reply.body["data"]) == 2 and reply.usage.input_tokens > 0
    with pytest.raises(BadRequest):
        gw.embed({"model": "cheap", "input": ""})


def test_async_chat_and_stream(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")

    async def main() -> tuple[str, int]:
        gw = Gateway.from_config(table(fake_provider), workspace=sqlite_ws)
        try:
            reply = await gw.achat(ask("async"))
            chunks = [c async for c in await gw.astream(ask("async", stream=True))]
        finally:
            await gw.aclose()
        return reply.body["choices"][0]["message"]["content"], len(chunks)

    content, count = asyncio.run(main())
    assert content == "echo: async" and count > 1


def test_config_errors_name_the_entry(fake_provider: FakeProvider) -> None:
    bad = table(fake_provider)
    bad["models"]["cheap"]["fallbacks"] = ["nowhere"]
    with pytest.raises(Exception, match="nowhere"):
        GatewayConfig.from_dict(bad)


def test_a_provider_answering_garbage_is_failed_over_then_a_502(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    fake_provider.fail("cheap-a", "garbage")
    fake_provider.fail("cheap-b", "garbage")
    reply = gw.chat(ask("still fine"))
    assert reply.deployment == "front"
    assert {a.status for a in reply.attempts[:-1]} == {"garbage"}
    fake_provider.fail("front", "garbage", times=5)
    with pytest.raises(UpstreamError) as info:
        gw.chat(ask("x", model="frontier"))
    assert info.value.status == 502


def test_timeouts_fail_over_and_all_timing_out_is_a_504(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    gw = Gateway.from_config(table(fake_provider, timeout=0.5, num_retries=1), workspace=sqlite_ws)
    try:
        fake_provider.fail("long-d", "timeout", times=5, seconds=5)
        with pytest.raises(UpstreamError) as info:
            gw.chat(ask("slow", model="long"))
        assert info.value.status == 504
    finally:
        gw.close()


def test_a_stream_is_cut_when_its_budget_runs_out(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    gw = Gateway.from_config(table(fake_provider, cut_streams_at_budget=True), workspace=sqlite_ws)
    try:
        _, secret = create_key(sqlite_ws, budget="1/day")
        # Another replica spent all but $0.0002 while this stream was being admitted.
        monkeypatch.setattr(gw.limiter, "budget_left", lambda subjects: (subjects[0][0], 0.0002))
        words = " ".join(f"w{i}" for i in range(60))
        got: list[dict[str, Any]] = []
        with pytest.raises(BudgetExceeded, match="ran out during this stream"):
            for chunk in gw.stream(ask(words, model="long", stream=True), api_key=secret):
                got.append(chunk)
        assert got  # it was cut mid-way, not refused
        (row,) = logged(gw)
        assert row["status"] == 402 and row["truncated"] is True
        assert row["cost_usd"] >= 0.0002
    finally:
        gw.close()
