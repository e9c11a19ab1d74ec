"""The provider adapters against the fake provider (a real HTTP server speaking OpenAI's and
Anthropic's wire formats): answers, streams, tool calls, embeddings, usage, and every fault
mapped to its ProviderError kind."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import pytest

from llm.fake_provider import FakeProvider, embedding_of
from loopml.exceptions import InvalidConfig
from loopml.llm.config import Deployment
from loopml.llm.errors import BadRequest, ProviderError
from loopml.llm.providers import (
    PROVIDERS,
    AnthropicProvider,
    OpenAIProvider,
    provider_for,
)
from loopml.llm.providers.anthropic import messages_url
from loopml.llm.providers.base import (
    error_from_response,
    join_url,
    parse_retry_after,
    sse_events,
)
from loopml.llm.types import Body, Provider, Usage

T = TypeVar("T")
KEY = "sk-fake-123"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the docs",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", KEY)


def deployment(
    fake: FakeProvider,
    name: str = "d",
    flavour: str = "openai",
    model: str = "fake-model",
    key: bool = True,
    **kwargs: Any,
) -> Deployment:
    return Deployment(
        name=name,
        group="g",
        provider="anthropic" if flavour == "anthropic" else "openai",
        model=model,
        base_url=fake.base_url(name, flavour),
        api_key_env="FAKE_PROVIDER_KEY" if key else None,
        **kwargs,
    )


def ask(text: str, **extra: Any) -> Body:
    return {"model": "alias", "messages": [{"role": "user", "content": text}], **extra}


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(_timed(make))


async def _timed(make: Callable[[], Awaitable[T]]) -> T:
    return await asyncio.wait_for(make(), 60)


def chat(provider: Provider, dep: Deployment, body: Body, timeout: float = 10.0) -> Any:
    async def go() -> Any:
        try:
            return await provider.chat(dep, body, timeout=timeout)
        finally:
            await provider.aclose()

    return run(go)


def stream(
    provider: Provider, dep: Deployment, body: Body, timeout: float = 10.0
) -> tuple[list[Body], ProviderError | None]:
    """Every chunk the adapter yielded, and the error it ended with (None: it completed)."""

    async def go() -> tuple[list[Body], ProviderError | None]:
        chunks: list[Body] = []
        try:
            async for chunk in provider.stream(dep, body, timeout=timeout):
                chunks.append(chunk)
        except ProviderError as exc:
            return chunks, exc
        finally:
            await provider.aclose()
        return chunks, None

    return run(go)


def chat_error(provider: Provider, dep: Deployment, body: Body, timeout: float = 10.0) -> Any:
    with pytest.raises(ProviderError) as info:
        chat(provider, dep, body, timeout)
    return info.value


def text_of(chunks: list[Body]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )


def tool_calls_of(chunks: list[Body]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            for call in choice["delta"].get("tool_calls") or ():
                slot = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["name"] = function.get("name") or slot["name"]
                slot["arguments"] += function.get("arguments") or ""
    return calls


def finish_of(chunks: list[Body]) -> str | None:
    reasons = [
        c["choices"][0]["finish_reason"]
        for c in chunks
        if c.get("choices") and c["choices"][0].get("finish_reason")
    ]
    return reasons[-1] if reasons else None


# ------------------------------------------------------------------------------ registry


def test_provider_for_gives_a_new_adapter_of_each_kind() -> None:
    assert isinstance(provider_for("openai"), OpenAIProvider)
    assert isinstance(provider_for("anthropic"), AnthropicProvider)
    assert provider_for("openai") is not provider_for("openai")
    assert set(PROVIDERS) == {"openai", "anthropic"}
    assert provider_for("openai").kind == "openai"
    assert provider_for("anthropic").kind == "anthropic"


def test_provider_for_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(InvalidConfig, match=r"unknown provider 'bedrock'.*anthropic, openai"):
        provider_for("bedrock")


def test_one_pooled_session_per_adapter_and_loop() -> None:
    provider = OpenAIProvider()

    async def sessions() -> tuple[Any, Any]:
        first, second = provider.session(), provider.session()
        return first, second

    first, second = run(sessions)
    assert first is second
    assert first.connector.limit == 1000 and first.connector.limit_per_host == 0
    assert isinstance(first.cookie_jar, aiohttp.DummyCookieJar)
    assert first.trust_env is False and first.auto_decompress is True
    assert first.raise_for_status is False
    third, _ = run(sessions)  # another event loop: a session of its own, the old one closed
    assert third is not first and first.closed and not third.closed

    async def close() -> None:
        provider.session()
        await provider.aclose()

    run(close)
    assert provider._sessions == {}


def test_two_running_loops_have_a_session_each(fake_provider: FakeProvider) -> None:
    """The gateway's synchronous calls run in a loop of its own while a server's loop uses
    the same adapter: neither closes the other's session under its requests."""
    import threading

    provider, dep = OpenAIProvider(), deployment(fake_provider)
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    try:

        async def answer(text: str) -> tuple[Any, str]:
            completion = await provider.chat(dep, ask(text), timeout=10)
            return provider.session(), completion.body["choices"][0]["message"]["content"]

        theirs, said = asyncio.run_coroutine_threadsafe(answer("there"), other).result(30)
        assert said == "echo: there"

        async def here() -> tuple[Any, str]:
            ours, said = await answer("here")
            assert not theirs.closed  # the other loop still runs: its session stays open
            await provider.aclose()
            return ours, said

        ours, said = run(here)
        assert said == "echo: here" and ours is not theirs and ours.closed
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0.01), other).result(30)
        assert theirs.closed  # aclose closed it in its own loop
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(30)
        other.close()


def test_timeouts_bound_connecting_and_each_read_not_the_whole() -> None:
    timeout = OpenAIProvider().timeout(2.5)
    assert (timeout.total, timeout.connect, timeout.sock_connect, timeout.sock_read) == (
        None,
        2.5,
        2.5,
        2.5,
    )
    assert OpenAIProvider().timeout(2.5) == timeout


def test_requests_reuse_one_kept_alive_connection(fake_provider: FakeProvider) -> None:
    provider, dep = OpenAIProvider(), deployment(fake_provider)

    async def go() -> None:
        await provider.chat(dep, ask("one"), timeout=10)
        async for _ in provider.stream(dep, ask("two", stream=True), timeout=10):
            pass
        await provider.chat(dep, ask("three"), timeout=10)
        await provider.aclose()

    run(go)
    peers = {call["_peer"] for call in fake_provider.calls("d")}
    assert len(fake_provider.calls("d")) == 3 and len(peers) == 1


def test_urls_keep_a_query_string(fake_provider: FakeProvider) -> None:
    assert join_url("https://x/openai/v1/?api-version=2", "/chat/completions") == (
        "https://x/openai/v1/chat/completions?api-version=2"
    )
    assert join_url("http://h/v1/", "/embeddings") == "http://h/v1/embeddings"
    assert messages_url("https://proxy/v1?region=eu") == "https://proxy/v1/messages?region=eu"
    dep = Deployment(
        "d",
        "g",
        "openai",
        "m",
        fake_provider.base_url("d") + "?api-version=2024",
        "FAKE_PROVIDER_KEY",
    )
    assert (
        chat(OpenAIProvider(), dep, ask("q")).body["choices"][0]["message"]["content"] == "echo: q"
    )
    assert fake_provider.calls("d")[0]["_path"] == "/d/v1/chat/completions"


# ---------------------------------------------------------------------------- OpenAI chat


def test_openai_chat_answers_with_usage(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider, headers={"x-team": "growth"})
    body = ask("hello there world", stream=False, stream_options={"include_usage": True})
    body["messages"].insert(0, {"role": "system", "content": "be brief"})
    completion = chat(OpenAIProvider(), dep, body)

    assert completion.http_status == 200
    assert completion.body["object"] == "chat.completion"
    assert completion.body["choices"][0]["message"]["content"] == "echo: hello there world"
    assert completion.body["choices"][0]["finish_reason"] == "stop"
    assert completion.usage == Usage(input_tokens=5, output_tokens=4)

    (call,) = fake_provider.calls("d")
    assert call["_path"] == "/d/v1/chat/completions"
    assert call["model"] == "fake-model"  # the deployment's model, not the alias
    assert "stream" not in call and "stream_options" not in call
    assert call["_headers"]["authorization"] == f"Bearer {KEY}"
    assert call["_headers"]["x-team"] == "growth"
    assert call["messages"] == body["messages"]


def test_openai_chat_sends_reasoning_effort_but_not_anthropics_thinking(
    fake_provider: FakeProvider,
) -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048}
    body = ask("why", reasoning_effort="low", thinking=thinking)
    chat(OpenAIProvider(), deployment(fake_provider), body)
    (call,) = fake_provider.calls("d")
    assert call["reasoning_effort"] == "low" and "thinking" not in call


def test_openai_chat_reports_cached_and_reasoning_tokens(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider, model="o-reasoning-mini")
    completion = chat(OpenAIProvider(), dep, ask("one two three four", user="cached"))
    # prompt: 4 words, half cached; completion: 5 reply words + 5 reasoning tokens
    assert completion.usage == Usage(
        input_tokens=4, output_tokens=10, cached_read_tokens=2, reasoning_tokens=5
    )


def test_openai_chat_passes_tools_and_json_mode_through(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider)
    completion = chat(OpenAIProvider(), dep, ask("please call:search red shoes", tools=TOOLS))
    choice = completion.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "search"
    assert json.loads(call["function"]["arguments"]) == {"q": "red shoes"}
    assert fake_provider.calls("d")[0]["tools"] == TOOLS

    completion = chat(OpenAIProvider(), dep, ask("a b", response_format={"type": "json_object"}))
    assert json.loads(completion.body["choices"][0]["message"]["content"]) == {"echo": "a b"}


def test_openai_chat_without_a_key_sends_no_authorization(fake_provider: FakeProvider) -> None:
    error = chat_error(OpenAIProvider(), deployment(fake_provider, key=False), ask("hi"))
    assert error.kind == "auth" and error.status == 401
    assert "authorization" not in fake_provider.calls("d")[0]["_headers"]


# -------------------------------------------------------------------------- OpenAI stream


def test_openai_stream_yields_chunks_and_a_usage_chunk(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider)
    chunks, error = stream(OpenAIProvider(), dep, ask("alpha beta gamma", stream=True))
    assert error is None
    assert text_of(chunks) == "echo: alpha beta gamma"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    # one chunk per word, then the finish chunk, then the usage chunk
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:5]] == [
        "echo:",
        " alpha",
        " beta",
        " gamma",
    ]
    assert finish_of(chunks) == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 3
    assert chunks[-1]["usage"]["completion_tokens"] == 4

    (call,) = fake_provider.calls("d")
    assert call["stream"] is True
    assert call["stream_options"] == {"include_usage": True}
    assert call["model"] == "fake-model"
    assert call["_headers"]["authorization"] == f"Bearer {KEY}"


def test_openai_stream_keeps_the_callers_stream_options(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider)
    body = ask("x", stream=True, stream_options={"include_obfuscation": False})
    _, error = stream(OpenAIProvider(), dep, body)
    assert error is None
    assert fake_provider.calls("d")[0]["stream_options"] == {
        "include_obfuscation": False,
        "include_usage": True,
    }


def test_openai_stream_without_usage_still_completes(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider, name="nousage-1")
    chunks, error = stream(OpenAIProvider(), dep, ask("alpha beta", stream=True))
    assert error is None
    assert text_of(chunks) == "echo: alpha beta"
    assert not any(c.get("usage") for c in chunks)
    assert finish_of(chunks) == "stop"


def test_openai_stream_tool_call_deltas(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider)
    chunks, error = stream(
        OpenAIProvider(), dep, ask("call:search blue suede shoes", tools=TOOLS, stream=True)
    )
    assert error is None
    calls = tool_calls_of(chunks)
    assert list(calls) == [0]
    assert calls[0]["name"] == "search" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"q": "blue suede shoes"}
    assert finish_of(chunks) == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


# ---------------------------------------------------------------------- OpenAI embeddings


def test_openai_embeddings(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider, model="fake-embedding")

    async def go() -> Any:
        provider = OpenAIProvider()
        try:
            return await provider.embed(
                dep, {"model": "emb", "input": ["one two", "three"]}, timeout=10
            )
        finally:
            await provider.aclose()

    completion = run(go)
    assert [d["embedding"] for d in completion.body["data"]] == [
        embedding_of("one two"),
        embedding_of("three"),
    ]
    assert completion.usage == Usage(input_tokens=3)
    (call,) = fake_provider.calls("d")
    assert call["_path"] == "/d/v1/embeddings" and call["model"] == "fake-embedding"
    assert call["_headers"]["authorization"] == f"Bearer {KEY}"


def test_openai_embeddings_fault(fake_provider: FakeProvider) -> None:
    fake_provider.fail("d", "503")

    async def go() -> Any:
        provider = OpenAIProvider()
        try:
            return await provider.embed(deployment(fake_provider), {"input": "x"}, timeout=10)
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError) as info:
        run(go)
    assert info.value.kind == "server" and info.value.status == 503


# ------------------------------------------------------------------------ OpenAI failures


@pytest.mark.parametrize(
    ("fault", "opts", "kind", "status"),
    [
        ("429", {"retry_after": 7}, "rate_limit", 429),
        ("500", {}, "server", 500),
        ("503", {}, "server", 503),
        ("context", {}, "context_window", 400),
        ("garbage", {}, "garbage", 200),
        ("cut", {}, "connection", None),
        ("timeout", {"seconds": 5}, "timeout", None),
        ("400", {}, "bad_request", 400),
        ("401", {}, "auth", 401),
        ("403", {}, "auth", 403),
    ],
)
def test_openai_chat_faults(
    fake_provider: FakeProvider, fault: str, opts: dict[str, Any], kind: str, status: int | None
) -> None:
    fake_provider.fail("d", fault, **opts)
    error = chat_error(OpenAIProvider(), deployment(fake_provider), ask("hi"), timeout=0.5)
    assert error.kind == kind
    assert error.status == status
    assert error.retry_after == (7.0 if fault == "429" else None)
    assert error.retryable == (kind in {"rate_limit", "server", "timeout", "connection", "garbage"})
    assert error.tokens_sent == 0


def test_openai_rate_limit_message_quotes_the_provider(fake_provider: FakeProvider) -> None:
    fake_provider.fail("d", "429")
    error = chat_error(OpenAIProvider(), deployment(fake_provider), ask("hi"))
    assert error.retry_after is None
    assert "HTTP 429" in error.message and "Rate limit reached" in error.message


def test_openai_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    dep = Deployment("gone", "g", "openai", "m", f"http://127.0.0.1:{port}/v1")
    error = chat_error(OpenAIProvider(), dep, ask("hi"))
    assert error.kind == "connection"
    assert f"127.0.0.1:{port}" in error.message


def test_a_bad_base_url_is_a_bad_request() -> None:
    dep = Deployment("bad", "g", "openai", "m", "ftp://example.invalid/v1")
    error = chat_error(OpenAIProvider(), dep, ask("hi"))
    assert error.kind == "bad_request" and "base_url" in error.message


@pytest.mark.parametrize(
    ("fault", "opts", "kind", "status"),
    [
        ("429", {"retry_after": 3}, "rate_limit", 429),
        ("500", {}, "server", 500),
        ("context", {}, "context_window", 400),
        ("garbage", {}, "garbage", 200),
        ("timeout", {"seconds": 5}, "timeout", None),
        ("slow_first", {"seconds": 5}, "timeout", None),
        ("cut", {"after": 0}, "connection", None),
    ],
)
def test_openai_stream_faults_before_the_first_token(
    fake_provider: FakeProvider, fault: str, opts: dict[str, Any], kind: str, status: int | None
) -> None:
    fake_provider.fail("d", fault, **opts)
    chunks, error = stream(
        OpenAIProvider(), deployment(fake_provider), ask("a b c", stream=True), timeout=0.5
    )
    assert error is not None
    assert (error.kind, error.status, error.tokens_sent) == (kind, status, 0)
    assert text_of(chunks) == ""
    if fault == "429":
        assert error.retry_after == 3.0


def test_openai_stream_cut_after_tokens_says_how_many(fake_provider: FakeProvider) -> None:
    fake_provider.fail("d", "cut", after=2)
    chunks, error = stream(OpenAIProvider(), deployment(fake_provider), ask("a b c d", stream=True))
    assert error is not None
    assert error.kind == "connection" and error.tokens_sent == 2
    assert text_of(chunks) == "echo: a"
    assert finish_of(chunks) is None


def test_openai_stream_slow_first_token_within_the_timeout(
    fake_provider: FakeProvider,
) -> None:
    fake_provider.fail("d", "slow_first", seconds=0.3)
    chunks, error = stream(OpenAIProvider(), deployment(fake_provider), ask("a", stream=True))
    assert error is None and text_of(chunks) == "echo: a"


def test_a_fault_is_used_once_then_the_deployment_answers(fake_provider: FakeProvider) -> None:
    fake_provider.fail("d", "500", times=2)
    provider, dep = OpenAIProvider(), deployment(fake_provider)
    assert chat_error(provider, dep, ask("x")).kind == "server"
    assert chat_error(provider, dep, ask("x")).kind == "server"
    assert chat(provider, dep, ask("x")).body["choices"][0]["message"]["content"] == "echo: x"
    assert len(fake_provider.calls("d")) == 3


def test_a_stream_closed_by_the_consumer_stops_cleanly(fake_provider: FakeProvider) -> None:
    provider, dep = OpenAIProvider(), deployment(fake_provider)

    async def go() -> list[Body]:
        got: list[Body] = []
        chunks = provider.stream(dep, ask("a b c d e f", stream=True), timeout=10)
        iterator = chunks.__aiter__()
        got.append(await iterator.__anext__())
        got.append(await iterator.__anext__())
        await iterator.aclose()  # type: ignore[attr-defined]
        # the pooled client still works afterwards
        completion = await provider.chat(dep, ask("after"), timeout=10)
        got.append(completion.body)
        await provider.aclose()
        return got

    got = run(go)
    assert got[1]["choices"][0]["delta"]["content"] == "echo:"
    assert got[2]["choices"][0]["message"]["content"] == "echo: after"


# ------------------------------------------------------------------------------ Anthropic


def test_anthropic_chat_translates_both_ways(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider, name="a", flavour="anthropic", model="claude-fake")
    body = ask("hello there", user="cached", max_tokens=50, stop="END")
    body["messages"].insert(0, {"role": "system", "content": "be brief"})
    completion = chat(AnthropicProvider(), dep, body)

    choice = completion.body["choices"][0]
    assert completion.body["object"] == "chat.completion"
    assert choice["message"]["content"] == "echo: hello there"
    assert choice["finish_reason"] == "stop"
    # prompt: 2 system + 2 user words, half read from the cache; reply: 3 words
    assert completion.usage == Usage(input_tokens=4, output_tokens=3, cached_read_tokens=2)
    assert completion.body["usage"]["prompt_tokens"] == 4

    (call,) = fake_provider.calls("a")
    assert call["_path"] == "/a/v1/messages"
    assert call["_headers"]["x-api-key"] == KEY
    assert call["_headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in call["_headers"]
    assert call["model"] == "claude-fake"
    assert call["system"] == "be brief"
    assert call["messages"] == [{"role": "user", "content": "hello there"}]
    assert call["max_tokens"] == 50 and call["stop_sequences"] == ["END"]
    assert call["metadata"] == {"user_id": "cached"}
    assert "stream" not in call


def test_anthropic_chat_tool_use(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider, name="a", flavour="anthropic")
    completion = chat(AnthropicProvider(), dep, ask("call:search cheap flights", tools=TOOLS))
    choice = completion.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("toolu_") and call["function"]["name"] == "search"
    assert json.loads(call["function"]["arguments"]) == {"q": "cheap flights"}
    sent = fake_provider.calls("a")[0]["tools"]
    assert sent[0]["name"] == "search" and "input_schema" in sent[0]


def test_anthropic_stream(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider, name="a", flavour="anthropic")
    chunks, error = stream(AnthropicProvider(), dep, ask("one two three", stream=True))
    assert error is None
    assert text_of(chunks) == "echo: one two three"
    assert finish_of(chunks) == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 3
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert len({c["id"] for c in chunks}) == 1
    call = fake_provider.calls("a")[0]
    assert call["stream"] is True and call["_headers"]["x-api-key"] == KEY


def test_anthropic_stream_tool_use(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider, name="a", flavour="anthropic")
    chunks, error = stream(
        AnthropicProvider(), dep, ask("call:search red wine", tools=TOOLS, stream=True)
    )
    assert error is None
    calls = tool_calls_of(chunks)
    assert calls[0]["name"] == "search"
    assert json.loads(calls[0]["arguments"]) == {"q": "red wine"}
    assert finish_of(chunks) == "tool_calls"


def test_anthropic_stream_and_chat_report_the_same_usage(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider, name="a", flavour="anthropic")
    body = ask("a b c d e", user="cached")
    completion = chat(AnthropicProvider(), dep, body)
    chunks, _ = stream(AnthropicProvider(), dep, {**body, "stream": True})
    assert chunks[-1]["usage"] == completion.body["usage"]


@pytest.mark.parametrize(
    ("fault", "opts", "kind", "status"),
    [
        ("429", {"retry_after": 4}, "rate_limit", 429),
        ("500", {}, "server", 500),
        ("529", {}, "server", 529),
        ("context", {}, "context_window", 400),
        ("garbage", {}, "garbage", 200),
        ("cut", {}, "connection", None),
        ("timeout", {"seconds": 5}, "timeout", None),
        ("401", {}, "auth", 401),
    ],
)
def test_anthropic_chat_faults(
    fake_provider: FakeProvider, fault: str, opts: dict[str, Any], kind: str, status: int | None
) -> None:
    fake_provider.fail("a", fault, **opts)
    dep = deployment(fake_provider, name="a", flavour="anthropic")
    error = chat_error(AnthropicProvider(), dep, ask("hi"), timeout=0.5)
    assert (error.kind, error.status) == (kind, status)
    assert error.retry_after == (4.0 if fault == "429" else None)


@pytest.mark.parametrize(
    ("fault", "opts", "kind"),
    [
        ("429", {}, "rate_limit"),
        ("context", {}, "context_window"),
        ("garbage", {}, "garbage"),
        ("slow_first", {"seconds": 5}, "timeout"),
        ("cut", {"after": 0}, "connection"),
    ],
)
def test_anthropic_stream_faults_before_the_first_token(
    fake_provider: FakeProvider, fault: str, opts: dict[str, Any], kind: str
) -> None:
    fake_provider.fail("a", fault, **opts)
    dep = deployment(fake_provider, name="a", flavour="anthropic")
    chunks, error = stream(AnthropicProvider(), dep, ask("a b", stream=True), timeout=0.5)
    assert error is not None
    assert (error.kind, error.tokens_sent) == (kind, 0)
    assert text_of(chunks) == ""


def test_anthropic_stream_cut_after_tokens(fake_provider: FakeProvider) -> None:
    fake_provider.fail("a", "cut", after=3)
    dep = deployment(fake_provider, name="a", flavour="anthropic")
    chunks, error = stream(AnthropicProvider(), dep, ask("a b c d", stream=True))
    assert error is not None
    assert error.kind == "connection" and error.tokens_sent == 3
    assert text_of(chunks) == "echo: a b"


def test_anthropic_has_no_embeddings(fake_provider: FakeProvider) -> None:
    dep = deployment(fake_provider, name="a", flavour="anthropic")

    async def go() -> Any:
        return await AnthropicProvider().embed(dep, {"input": "x"}, timeout=1)

    with pytest.raises(ProviderError, match="no embeddings API") as info:
        run(go)
    assert info.value.kind == "bad_request" and not info.value.retryable
    assert fake_provider.calls("a") == []


def test_anthropic_rejects_what_it_cannot_translate_before_sending(
    fake_provider: FakeProvider,
) -> None:
    dep = deployment(fake_provider, name="a", flavour="anthropic")
    with pytest.raises(BadRequest, match="n=2"):
        chat(AnthropicProvider(), dep, ask("x", n=2))
    assert fake_provider.calls("a") == []


def test_anthropic_messages_url() -> None:
    assert messages_url("https://api.anthropic.com") == "https://api.anthropic.com/v1/messages"
    assert messages_url("https://api.anthropic.com/") == "https://api.anthropic.com/v1/messages"
    assert messages_url("https://proxy/v1") == "https://proxy/v1/messages"


@pytest.mark.parametrize(
    ("flavour", "name", "after"), [("openai", "d", 0), ("openai", "d", 2), ("anthropic", "a", 2)]
)
def test_an_error_event_in_a_stream(
    fake_provider: FakeProvider, flavour: str, name: str, after: int
) -> None:
    fake_provider.fail(name, "stream_error", after=after)
    provider = provider_for("anthropic" if flavour == "anthropic" else "openai")
    dep = deployment(fake_provider, name=name, flavour=flavour)
    chunks, error = stream(provider, dep, ask("a b c d", stream=True))
    assert error is not None
    assert error.kind == "server" and error.tokens_sent == after
    assert text_of(chunks) == " ".join(["echo:", "a", "b", "c", "d"][:after])
    assert finish_of(chunks) is None


# ---------------------------------------------------------------------------- SSE reader


async def _blocks(blocks: list[bytes]) -> AsyncIterator[bytes]:
    for block in blocks:
        yield block


def sse(blocks: list[bytes]) -> list[tuple[str, bytes]] | ProviderError:
    async def go() -> list[tuple[str, bytes]] | ProviderError:
        try:
            return [event async for event in sse_events(_blocks(blocks), [4])]
        except ProviderError as exc:
            return exc

    return run(go)


def test_sse_events_across_block_boundaries_crlf_comments_and_multiline_data() -> None:
    body = (
        b": keep-alive comment\r\n"
        b'event: message_start\r\ndata: {"a": 1}\r\n\r\n'
        b'id: 7\nretry: 100\ndata:{"b":\n'
        b"data: 2}\n\n"
        b"data: [DONE]\n\n"
    )
    expected = [("message_start", b'{"a": 1}'), ("", b'{"b":\n2}'), ("", b"[DONE]")]
    assert sse([body]) == expected
    assert sse([body[i : i + 3] for i in range(0, len(body), 3)]) == expected
    assert sse([bytes([c]) for c in body]) == expected
    assert sse([b"data: last-without-blank-line\n"]) == [("", b"last-without-blank-line")]


def test_sse_events_refuse_what_is_not_sse() -> None:
    error = sse([b"data: {}\n\n<html>oops</html>\n"])
    assert isinstance(error, ProviderError)
    assert error.kind == "garbage" and error.tokens_sent == 4 and "<html>" in error.message
    error = sse([b"data: {}\n\ndata: half a li"])
    assert isinstance(error, ProviderError) and error.kind == "garbage"


# ------------------------------------------------------------------------- error mapping


def test_retry_after_in_seconds_an_http_date_or_ms() -> None:
    assert parse_retry_after({"retry-after": "12"}) == 12.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < (parse_retry_after({"retry-after": later}) or 0) <= 120
    past = email.utils.formatdate(time.time() - 120, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, b'{"error": {"message": "slow down"}}', "rate_limit"),
        (529, b'{"type": "error", "error": {"type": "overloaded_error"}}', "server"),
        (502, b"<html>bad gateway</html>", "server"),
        (408, b"", "timeout"),
        (409, b"", "server"),
        (403, b'{"error": {"message": "forbidden"}}', "auth"),
        (404, b'{"error": {"message": "no such model"}}', "bad_request"),
        (422, b'{"error": {"message": "bad temperature"}}', "bad_request"),
        (
            400,
            b'{"error": "This model\'s maximum context length is 4096 tokens."}',
            "context_window",
        ),  # vLLM
        (413, b'{"type": "error", "error": {"message": "prompt is too long"}}', "context_window"),
        (400, b'{"error": {"message": "x", "code": "context_length_exceeded"}}', "context_window"),
        (400, b'{"error": {"message": "temperature must be <= 2"}}', "bad_request"),
    ],
)
def test_error_from_response(status: int, body: bytes, kind: str) -> None:
    error = error_from_response(status, {}, body)
    assert error.kind == kind and error.status == status
    assert error.message.startswith(f"HTTP {status}: ")


def test_closing_a_stream_cancels_the_upstream_request(fake_provider: FakeProvider) -> None:
    fake_provider.fail("d", "drip", seconds=0.2)
    provider, dep = OpenAIProvider(), deployment(fake_provider)

    async def go() -> list[Body]:
        got: list[Body] = []
        iterator = provider.stream(dep, ask(" ".join("w" * 40), stream=True), timeout=10)
        async for chunk in iterator:
            got.append(chunk)
            if len(got) == 3:
                break
        await iterator.aclose()  # type: ignore[attr-defined]
        await provider.aclose()
        return got

    assert len(run(go)) == 3
    deadline = time.monotonic() + 10
    while fake_provider.calls("d")[0].get("_stream_end") is None:
        assert time.monotonic() < deadline, "the fake never saw the stream end"
        time.sleep(0.02)
    assert fake_provider.calls("d")[0]["_stream_end"] == "disconnected"


# ----------------------------------------------- the fake speaks the real protocols


def test_the_fake_satisfies_the_openai_sdk(fake_provider: FakeProvider) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=fake_provider.base_url("sdk"), api_key="k", max_retries=0)
    reply = client.chat.completions.create(
        model="m-reasoning", messages=[{"role": "user", "content": "a b"}], user="cached"
    )
    assert reply.choices[0].message.content == "echo: a b"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == 1
    assert reply.usage.completion_tokens_details.reasoning_tokens == 5

    pieces, usage = [], None
    for chunk in client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "a b"}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        pieces += [c.delta.content or "" for c in chunk.choices]
        usage = chunk.usage or usage
    assert "".join(pieces) == "echo: a b" and usage is not None and usage.total_tokens == 5
    assert fake_provider.calls("sdk")[-1]["_stream_end"] == "complete"

    embedded = client.embeddings.create(model="e", input="a b")  # base64 on the wire
    assert embedded.data[0].embedding == embedding_of("a b")
    assert [m.id for m in client.models.list()] == ["fake-model", "fake-embedding"]

    fake_provider.fail("sdk", "429", retry_after=2)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


def test_the_fake_satisfies_the_anthropic_sdk(fake_provider: FakeProvider) -> None:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(
        base_url=fake_provider.base_url("sdk", "anthropic"), api_key="k", max_retries=0
    )
    message = client.messages.create(
        model="claude",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "a b"}],
        metadata={"user_id": "cached"},
    )
    assert message.content[0].text == "echo: a b" and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (2, 2)
    with client.messages.stream(
        model="claude", max_tokens=100, messages=[{"role": "user", "content": "a b"}]
    ) as events:
        final = events.get_final_message()
    assert final.content[0].text == "echo: a b" and final.usage.output_tokens == 3

    tool = {"name": "search", "input_schema": {"type": "object"}}
    with client.messages.stream(
        model="claude",
        max_tokens=100,
        tools=[tool],
        messages=[{"role": "user", "content": "call:search x y"}],
    ) as events:
        final = events.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].name == "search" and final.content[0].input == {"q": "x y"}

    fake_provider.fail("sdk", "context")
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
        client.messages.create(
            model="claude", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )


# ------------------------------------------------------- answers that are not HTTP or JSON


def _raw_server_chat(answer: bytes, stream_: bool = False) -> ProviderError:
    """A chat (or stream) against a TCP server that reads the request and writes ``answer``."""

    async def go() -> ProviderError:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        dep = Deployment("raw", "g", "openai", "m", f"http://127.0.0.1:{port}/v1")
        provider = OpenAIProvider()
        try:
            if stream_:
                async for _ in provider.stream(dep, ask("x", stream=True), timeout=5):
                    pass
            else:
                await provider.chat(dep, ask("x"), timeout=5)
        except ProviderError as exc:
            return exc
        finally:
            await provider.aclose()
            server.close()
            await server.wait_closed()
        raise AssertionError("no ProviderError")

    return run(go)


@pytest.mark.parametrize("stream_", [False, True])
def test_an_answer_that_is_not_http_is_garbage(stream_: bool) -> None:
    error = _raw_server_chat(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", stream_)
    assert error.kind == "garbage" and error.retryable
    assert "not valid HTTP" in error.message and "127.0.0.1" in error.message


def test_a_body_that_fails_to_decompress_is_garbage() -> None:
    body = b"this is not gzip"
    error = _raw_server_chat(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert error.kind == "garbage" and "decode" in error.message


def test_a_body_cut_short_is_a_connection_error() -> None:
    error = _raw_server_chat(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"
    )
    assert error.kind == "connection" and error.status is None


def test_a_gzipped_answer_is_decoded() -> None:
    import gzip

    body = gzip.compress(
        json.dumps({"choices": [{"message": {"content": "hi"}}], "usage": None}).encode()
    )

    async def go() -> Any:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip"
                b"\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        dep = Deployment("raw", "g", "openai", "m", f"http://127.0.0.1:{port}/v1")
        provider = OpenAIProvider()
        try:
            return await provider.chat(dep, ask("x"), timeout=5)
        finally:
            await provider.aclose()
            server.close()
            await server.wait_closed()

    completion = run(go)
    assert completion.body["choices"][0]["message"]["content"] == "hi"
    assert completion.headers["Content-Encoding"] == "gzip"  # headers: case-insensitive
