"""What tokens cost (the shipped table, overrides, cost math) and how many a request has
(the estimates used before a request is sent)."""

from __future__ import annotations

import re

import pytest

from loopml.llm.config import Deployment, Price
from loopml.llm.prices import PRICES, PRICES_AS_OF, cost_usd, estimate_cost_usd, price_for
from loopml.llm.tokens import count_messages, count_request, count_text
from loopml.llm.types import Usage


def deployment(model: str, price: str | None = None) -> Deployment:
    return Deployment("d", "g", "openai", model, "http://127.0.0.1", price=price)


# -- prices -------------------------------------------------------------------------------


def test_the_table_is_dated_and_covers_the_common_models() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", PRICES_AS_OF)
    for model in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o3",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "claude-sonnet-4",
        "claude-opus-4",
        "claude-3-5-haiku",
        "claude-haiku-4-5",
    ):
        price = PRICES[model]
        assert price.input > 0 and price.output >= 0
        if price.cached_input is not None:
            assert price.cached_input < price.input
    assert PRICES["gpt-4o-mini"] == Price(input=0.15, cached_input=0.075, output=0.60)
    assert PRICES["claude-sonnet-4"].cache_write == 3.75


def test_price_for_prefers_overrides_then_strips_prefix_and_date() -> None:
    overrides = {"gpt-4o": Price(input=1.0, output=2.0), "local": Price(0.0, 0.0)}
    assert price_for(deployment("gpt-4o"), overrides) == Price(1.0, 2.0)
    assert price_for(deployment("gpt-4o"), {}) is PRICES["gpt-4o"]
    assert price_for(deployment("openai/gpt-4o-mini"), {}) is PRICES["gpt-4o-mini"]
    assert price_for(deployment("gpt-4o-2024-08-06"), {}) is PRICES["gpt-4o"]
    assert price_for(deployment("claude-sonnet-4-20250514"), {}) is PRICES["claude-sonnet-4"]
    assert price_for(deployment("claude-3-5-haiku-latest"), {}) is PRICES["claude-3-5-haiku"]
    # An override of the bare name wins over the shipped table for a dated model too.
    assert price_for(deployment("gpt-4o-2024-08-06"), overrides) == Price(1.0, 2.0)
    # deployment.price names the entry instead of the model.
    assert price_for(deployment("llama-3-8b", price="local"), overrides) == Price(0.0, 0.0)
    assert price_for(deployment("llama-3-8b", price="gpt-4.1"), {}) is PRICES["gpt-4.1"]
    # No prefix matching: a different model is not priced as its namesake.
    assert price_for(deployment("gpt-4o-mini-tts"), {}) is None
    assert price_for(deployment("my-model"), {}) is None


def test_cost_of_plain_tokens() -> None:
    price = Price(input=2.5, output=10.0)
    usage = Usage(input_tokens=1000, output_tokens=200)
    assert cost_usd(usage, price) == (1000 * 2.5 + 200 * 10.0) / 1e6
    assert cost_usd(usage, price) == pytest.approx(0.0045)


def test_cost_of_cached_reads_and_writes_each_at_their_price() -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    # 10,000 prompt tokens: 6,000 read from the cache, 1,000 written to it, 3,000 plain.
    usage = Usage(
        input_tokens=10_000, cached_read_tokens=6_000, cached_write_tokens=1_000, output_tokens=500
    )
    expected = (3_000 * 3.0 + 6_000 * 0.3 + 1_000 * 3.75 + 500 * 15.0) / 1e6
    assert cost_usd(usage, price) == expected
    # Without cache prices, cached tokens cost what input costs.
    plain = Price(input=3.0, output=15.0)
    assert cost_usd(usage, plain) == (10_000 * 3.0 + 500 * 15.0) / 1e6
    # A cache price of 0 is a price, not "unset".
    free = Price(input=3.0, output=15.0, cached_input=0.0)
    assert cost_usd(usage, free) == (3_000 * 3.0 + 1_000 * 3.0 + 500 * 15.0) / 1e6


def test_cost_of_reasoning_tokens() -> None:
    usage = Usage(input_tokens=100, output_tokens=1_000, reasoning_tokens=800)
    # Default: reasoning costs what output costs, and is not counted twice.
    assert cost_usd(usage, Price(input=1.0, output=4.0)) == (100 * 1.0 + 1_000 * 4.0) / 1e6
    own = Price(input=1.0, output=4.0, reasoning=2.0)
    assert cost_usd(usage, own) == (100 * 1.0 + 200 * 4.0 + 800 * 2.0) / 1e6


def test_shipped_prices_with_anthropic_style_usage() -> None:
    usage = Usage(input_tokens=2_000_000, cached_read_tokens=1_000_000, output_tokens=1_000_000)
    # claude-haiku-4-5: 1M uncached at $1, 1M cache reads at $0.10, 1M out at $5.
    assert cost_usd(usage, PRICES["claude-haiku-4-5"]) == pytest.approx(6.10)


def test_unknown_price_costs_nothing() -> None:
    assert cost_usd(Usage(input_tokens=10, output_tokens=10), None) == 0.0
    assert estimate_cost_usd(10, 10, None) == 0.0


def test_estimate_is_input_plus_max_output() -> None:
    price = PRICES["gpt-4o-mini"]
    assert estimate_cost_usd(1000, 256, price) == (1000 * 0.15 + 256 * 0.60) / 1e6
    # The estimate bounds the real cost of any answer up to max_tokens.
    real = cost_usd(Usage(input_tokens=1000, cached_read_tokens=500, output_tokens=256), price)
    assert real <= estimate_cost_usd(1000, 256, price)


# -- token estimates ----------------------------------------------------------------------

ENGLISH = (
    "The gateway routes every request to a deployment, retries on rate limits and server "
    "errors, and records the tokens, the cost and the latency of each attempt. Budgets are "
    "checked before a request is sent, with an estimate of its prompt and the most it can "
    "generate, so that a team never spends more than it was given."
)


def test_count_text_is_about_a_quarter_of_the_length_for_english() -> None:
    n = count_text(ENGLISH)
    assert len(ENGLISH) / 5.5 <= n <= len(ENGLISH) / 3
    assert count_text("Hello, world!") == 4
    assert count_text("") == 0
    assert count_text("   ") == 0
    assert count_text("a") == 1


def test_count_text_counts_digits_symbols_and_other_scripts() -> None:
    assert count_text("1234567") == 3  # 123 456 7
    assert count_text("internationalization") == 4  # long words are several tokens
    assert count_text("你好世界") == 4  # about one a character
    code = "def square(x):\n    return x ** 2\n"
    assert 8 <= count_text(code) <= 20


def test_a_long_text_is_sampled_and_still_scales() -> None:
    short = count_text(ENGLISH)
    long = count_text(ENGLISH * 200)  # ~65,000 characters
    assert 0.8 * 200 * short <= long <= 1.2 * 200 * short
    assert count_text(ENGLISH * 200) == long  # deterministic


def test_count_messages_follows_openais_framing() -> None:
    one = [{"role": "user", "content": "Hello, world!"}]
    # 3 for the reply + 3 for the message + "user" (1) + 4.
    assert count_messages(one) == 3 + 3 + 1 + 4
    named = [{"role": "user", "name": "ann", "content": "Hello, world!"}]
    assert count_messages(named) == count_messages(one) + 1 + 1
    parts = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hello, world!"},
                {"type": "image_url", "image_url": {"url": "data:...", "detail": "low"}},
            ],
        }
    ]
    assert count_messages(parts) == count_messages(one) + 85
    calls = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]
    without_args = count_messages(calls[:1])
    assert count_messages(calls) > without_args + count_text('{"city": "Paris"}')


def test_count_request_adds_tools_and_counts_embeddings_input() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": ENGLISH}]}
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    plain = count_request(body)
    assert plain == count_messages(body["messages"])
    assert count_request({**body, "tools": tools}) > plain + 10
    assert count_request({"model": "e", "input": "Hello, world!"}) == 4
    assert count_request({"model": "e", "input": ["Hello, world!", "a"]}) == 5
    assert count_request({"model": "e", "input": [1, 2, 3]}) == 3  # token ids, exact
