"""OpenAI ⇄ Anthropic translation: exact dicts for each mapping, round trips, streams fed
through the official SDKs' own accumulators, and bad input named by its index."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from loopml.llm.errors import BadRequest, ProviderError
from loopml.llm.translate import (
    DEFAULT_MAX_TOKENS,
    JSON_INSTRUCTION,
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    anthropic_to_openai_request,
    anthropic_to_openai_response,
    anthropic_usage,
    openai_to_anthropic_request,
    openai_to_anthropic_response,
    openai_usage,
    usage_to_anthropic,
    usage_to_openai,
)
from loopml.llm.types import Usage

PNG = "iVBORw0KGgo="
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}

# ------------------------------------------------------------------------------- usage


def test_openai_usage_reads_cached_and_reasoning_tokens() -> None:
    usage = openai_usage(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 256},
        }
    )
    assert usage == Usage(
        input_tokens=1200,
        output_tokens=300,
        cached_read_tokens=1024,
        cached_write_tokens=100,
        reasoning_tokens=256,
    )


def test_usage_of_nothing_or_garbage_is_zero() -> None:
    assert openai_usage(None) == Usage()
    assert anthropic_usage(None) == Usage()
    assert (
        openai_usage(
            {
                "prompt_tokens": "12",
                "completion_tokens": -3,
                "prompt_tokens_details": None,
                "completion_tokens_details": {"reasoning_tokens": True},
            }
        )
        == Usage()
    )
    assert anthropic_usage({"input_tokens": 5, "cache_read_input_tokens": None}) == Usage(
        input_tokens=5
    )


def test_anthropic_usage_counts_cached_parts_as_input() -> None:
    usage = anthropic_usage(
        {
            "input_tokens": 50,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 200,
            "output_tokens": 80,
            "output_tokens_details": {"thinking_tokens": 30},
        }
    )
    assert usage == Usage(
        input_tokens=1250,
        output_tokens=80,
        cached_read_tokens=1000,
        cached_write_tokens=200,
        reasoning_tokens=30,
    )


def test_usage_to_openai_and_anthropic_exact() -> None:
    usage = Usage(1250, 80, cached_read_tokens=1000, cached_write_tokens=200, reasoning_tokens=30)
    assert usage_to_openai(usage) == {
        "prompt_tokens": 1250,
        "completion_tokens": 80,
        "total_tokens": 1330,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 200},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert usage_to_anthropic(usage) == {
        "input_tokens": 50,
        "cache_creation_input_tokens": 200,
        "cache_read_input_tokens": 1000,
        "output_tokens": 80,
        "output_tokens_details": {"thinking_tokens": 30},
    }
    plain = Usage(10, 5)
    assert usage_to_openai(plain) == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert usage_to_anthropic(plain) == {
        "input_tokens": 10,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 5,
    }


@pytest.mark.parametrize(
    "usage",
    [
        Usage(),
        Usage(10, 5),
        Usage(1250, 80, cached_read_tokens=1000, cached_write_tokens=200, reasoning_tokens=30),
    ],
)
def test_usage_round_trips_both_ways(usage: Usage) -> None:
    assert openai_usage(usage_to_openai(usage)) == usage
    assert anthropic_usage(usage_to_anthropic(usage)) == usage
    # and through the other provider's shape: OpenAI -> Usage -> Anthropic -> Usage
    assert anthropic_usage(usage_to_anthropic(openai_usage(usage_to_openai(usage)))) == usage


# ------------------------------------------------------- OpenAI request -> Anthropic


def test_openai_request_to_anthropic_exact() -> None:
    body = {
        "model": "cheap",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What's in these, and the weather?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                    {"type": "input_audio", "input_audio": {"data": "..", "format": "wav"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "18 C"}],
            },
            {"role": "user", "content": "Thanks. Summarise."},
        ],
        "max_completion_tokens": 256,
        "max_tokens": 999,  # max_completion_tokens wins
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "user": "alice",
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 7,
        "logprobs": True,
        "presence_penalty": 0.5,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Weather by city",
                    "parameters": WEATHER_SCHEMA,
                },
            },
            {"type": "function", "function": {"name": "now"}},
        ],
        "tool_choice": "required",
    }
    assert openai_to_anthropic_request(body, "claude-haiku-4-5") == {
        "model": "claude-haiku-4-5",
        "system": "You are terse.\n\nUse metric units.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What's in these, and the weather?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "weather",
                        "input": {"city": "Oslo"},
                    },
                    {
                        "type": "tool_use",
                        "id": "call_2",
                        "name": "weather",
                        "input": {"city": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "-3 C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_2",
                        "content": [{"type": "text", "text": "18 C"}],
                    },
                    {"type": "text", "text": "Thanks. Summarise."},
                ],
            },
        ],
        "max_tokens": 256,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END", "STOP"],
        "metadata": {"user_id": "alice"},
        "stream": True,
        "tools": [
            {"name": "weather", "description": "Weather by city", "input_schema": WEATHER_SCHEMA},
            {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any"},
    }


def test_openai_request_defaults_and_minimal_shape() -> None:
    out = openai_to_anthropic_request(
        {"messages": [{"role": "user", "content": "hi"}], "stop": "END", "stream": False}, "m"
    )
    assert out == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": DEFAULT_MAX_TOKENS,
        "stop_sequences": ["END"],
    }
    assert DEFAULT_MAX_TOKENS == 4096
    legacy = openai_to_anthropic_request(
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 12}, "m"
    )
    assert legacy["max_tokens"] == 12


def test_consecutive_same_role_messages_merge() -> None:
    out = openai_to_anthropic_request(
        {
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]},
                {"role": "system", "content": "mid-conversation system"},
                {"role": "user", "content": "three"},
                {"role": "assistant", "content": "a"},
                {"role": "assistant", "content": ""},  # empty: dropped, Anthropic refuses it
                {"role": "assistant", "content": "b"},
            ]
        },
        "m",
    )
    assert out["system"] == "mid-conversation system"
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "one"},
                {"type": "text", "text": "two"},
                {"type": "text", "text": "three"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"type": "tool", "name": "weather"},
        ),
        (None, None),
    ],
)
def test_tool_choice_to_anthropic(choice: Any, expected: Any) -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "weather"}}],
        "tool_choice": choice,
    }
    assert openai_to_anthropic_request(body, "m").get("tool_choice") == expected


def test_parallel_tool_calls_false_and_tools_anthropic_cannot_take() -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"type": "function", "function": {"name": "weather"}},
            {"type": "custom", "custom": {"name": "grammar"}},
        ],
        "parallel_tool_calls": False,
    }
    out = openai_to_anthropic_request(body, "m")
    assert out["tools"] == [
        {"name": "weather", "input_schema": {"type": "object", "properties": {}}}
    ]
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    body["tool_choice"] = {"type": "function", "function": {"name": "weather"}}
    assert openai_to_anthropic_request(body, "m")["tool_choice"] == {
        "type": "tool",
        "name": "weather",
        "disable_parallel_tool_use": True,
    }
    # tool_choice without tools: nothing for Anthropic to choose from, dropped
    no_tools = {"messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto"}
    assert "tool_choice" not in openai_to_anthropic_request(no_tools, "m")


def test_json_modes_become_a_system_instruction() -> None:
    body: dict[str, Any] = {
        "messages": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "hi"}],
        "response_format": {"type": "json_object"},
    }
    assert openai_to_anthropic_request(body, "m")["system"] == f"Be exact.\n\n{JSON_INSTRUCTION}"
    body["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True},
    }
    system = openai_to_anthropic_request(body, "m")["system"]
    assert system == (
        f"Be exact.\n\n{JSON_INSTRUCTION} The object must match this JSON Schema:\n"
        f"{json.dumps(WEATHER_SCHEMA)}"
    )
    body["response_format"] = {"type": "text"}
    assert openai_to_anthropic_request(body, "m")["system"] == "Be exact."
    no_system = {
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_object"},
    }
    assert openai_to_anthropic_request(no_system, "m")["system"] == JSON_INSTRUCTION


def test_cache_control_keeps_the_system_as_blocks() -> None:
    body = {
        "messages": [
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "long manual", "cache_control": {"type": "ephemeral"}}
                ],
            },
            {"role": "system", "content": "short rule"},
            {"role": "user", "content": "hi"},
        ]
    }
    assert openai_to_anthropic_request(body, "m")["system"] == [
        {"type": "text", "text": "long manual", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "short rule"},
    ]


def test_assistant_with_only_tool_calls_and_empty_arguments() -> None:
    out = openai_to_anthropic_request(
        {
            "messages": [
                {"role": "user", "content": "time?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "now", "arguments": ""},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "noon"},
            ]
        },
        "m",
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "c1", "name": "now", "input": {}}],
    }
    assert out["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "noon"}],
    }


@pytest.mark.parametrize(
    ("messages", "extra", "words"),
    [
        (
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "robot", "content": "c"},
            ],
            {},
            ["messages[2]", "'robot'", "user"],
        ),
        ([{"role": "function", "name": "f", "content": "x"}], {}, ["messages[0]", "'function'"]),
        (
            [
                {"role": "user", "content": "a"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "function": {"name": "f", "arguments": "{city: Oslo"}}
                    ],
                },
            ],
            {},
            ["messages[1].tool_calls[0].function.arguments", "not valid JSON"],
        ),
        (
            [
                {"role": "user", "content": "a"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
                },
            ],
            {},
            ["messages[1].tool_calls[0].function.arguments", "JSON object"],
        ),
        ([{"role": "tool", "content": "x"}], {}, ["messages[0]", "tool_call_id"]),
        ([{"role": "user"}], {}, ["messages[0]", "without content"]),
        ("hello", {}, ["messages", "non-empty list"]),
        ([], {}, ["messages", "non-empty list"]),
        ([{"role": "system", "content": "only a system"}], {}, ["no user or assistant"]),
        ([{"role": "user", "content": "a"}], {"n": 2}, ["n=2", "one choice"]),
        ([{"role": "user", "content": "a"}], {"max_tokens": 0}, ["max_tokens", "positive integer"]),
        (
            [{"role": "user", "content": "a"}],
            {
                "tool_choice": "sometimes",
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            ["tool_choice", "'sometimes'"],
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}
                    ],
                }
            ],
            {},
            ["messages[0].content[0]", "not base64"],
        ),
        ([{"role": "user", "content": [3]}], {}, ["messages[0].content[0]", "content part"]),
    ],
)
def test_bad_openai_request_names_the_entry(
    messages: Any, extra: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(BadRequest) as info:
        openai_to_anthropic_request({"messages": messages, **extra}, "m")
    for word in words:
        assert word in str(info.value)
    assert info.value.status == 400


# ----------------------------------------------------------- Anthropic response -> OpenAI


ANTHROPIC_MESSAGE = {
    "id": "msg_01abc",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5-20251001",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Let me check "},
        {"type": "text", "text": "the weather."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 20,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 0,
        "output_tokens": 40,
    },
}


def test_anthropic_response_to_openai_exact() -> None:
    out = anthropic_to_openai_response(ANTHROPIC_MESSAGE, "frontier")
    assert isinstance(out.pop("created"), int)
    assert out == {
        "id": "msg_01abc",
        "object": "chat.completion",
        "model": "frontier",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check the weather.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 40,
            "total_tokens": 160,
            "prompt_tokens_details": {"cached_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    # what the openai SDK parses
    parsed = ChatCompletion.model_validate(anthropic_to_openai_response(ANTHROPIC_MESSAGE, "f"))
    assert parsed.choices[0].message.tool_calls is not None
    assert parsed.usage is not None and parsed.usage.prompt_tokens_details is not None
    assert parsed.usage.prompt_tokens_details.cached_tokens == 100


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_finish_reason_from_anthropic(stop_reason: str | None, finish_reason: str) -> None:
    message = {
        **ANTHROPIC_MESSAGE,
        "stop_reason": stop_reason,
        "content": [{"type": "text", "text": "x"}],
    }
    out = anthropic_to_openai_response(message, "m")
    assert out["choices"][0]["finish_reason"] == finish_reason
    assert "tool_calls" not in out["choices"][0]["message"]


def test_anthropic_response_with_only_a_tool_call_has_null_content() -> None:
    message = {**ANTHROPIC_MESSAGE, "content": [ANTHROPIC_MESSAGE["content"][3]]}  # type: ignore[index]
    assert anthropic_to_openai_response(message, "m")["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(
    "garbage", [None, "text", {"id": "msg_1"}, {"content": "not a list"}, {"content": [3]}]
)
def test_anthropic_garbage_response_is_a_provider_error(garbage: Any) -> None:
    with pytest.raises(ProviderError) as info:
        anthropic_to_openai_response(garbage, "m")
    assert info.value.kind == "garbage"
    assert info.value.retryable


# ---------------------------------------------------- Anthropic stream -> OpenAI chunks


ANTHROPIC_EVENTS: list[tuple[str, dict[str, Any]]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01abc",
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 20,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 0,
                    "output_tokens": 1,
                },
            },
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Let me "},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "check."},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 40},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "frontier",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def test_anthropic_stream_to_openai_chunks_exact() -> None:
    stream = AnthropicToOpenAIStream("frontier", "chatcmpl-1")
    chunks = []
    for event, data in ANTHROPIC_EVENTS:
        chunks.extend(stream.feed(event, data))
    created = {c.pop("created") for c in chunks}
    assert len(created) == 1
    usage_chunk = _chunk({})
    usage_chunk["choices"] = []
    usage_chunk["usage"] = {
        "prompt_tokens": 120,
        "completion_tokens": 40,
        "total_tokens": 160,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert chunks == [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Let me "}),
        _chunk({"content": "check."}),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        _chunk({}, "tool_calls"),
        usage_chunk,
    ]
    assert stream.usage == Usage(120, 40, cached_read_tokens=100)
    assert stream.output_text_tokens_seen == 4
    assert stream.done


def test_anthropic_stream_accumulates_in_the_openai_sdk() -> None:
    """The chunks are what the openai SDK's own stream accumulator takes."""
    stream = AnthropicToOpenAIStream("frontier", "chatcmpl-1")
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for event, data in ANTHROPIC_EVENTS:
        for chunk in stream.feed(event, data):
            state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    final = state.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Let me check."
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "toolu_1",
        "weather",
        {"city": "Oslo"},
    )
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.completion_tokens == 40


def test_anthropic_stream_without_usage_chunk_and_two_tools() -> None:
    stream = AnthropicToOpenAIStream("m", "c", include_usage=False)
    start_usage = {"input_tokens": 5, "cache_read_input_tokens": 3, "output_tokens": 0}
    stream.feed("message_start", {"message": {"usage": start_usage}})
    for index, name in ((0, "a"), (1, "b")):
        block = {"type": "tool_use", "id": f"t{index}", "name": name, "input": {}}
        stream.feed("content_block_start", {"index": index, "content_block": block})
    second = stream.feed(
        "content_block_delta",
        {"index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
    )
    assert second[0]["choices"][0]["delta"] == {
        "tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]
    }
    # message_delta may repeat input counts (cumulative): they overwrite, not add; a null
    # one leaves message_start's figure
    stream.feed(
        "message_delta",
        {
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 9, "input_tokens": 5, "cache_read_input_tokens": None},
        },
    )
    last = stream.feed("message_stop", {"type": "message_stop"})
    assert last == []  # the finish chunk came with message_delta; no usage chunk asked for
    assert stream.finish_reason == "length"
    assert stream.usage == Usage(8, 9, cached_read_tokens=3)


def test_anthropic_stream_without_message_delta_still_finishes() -> None:
    stream = AnthropicToOpenAIStream("m", "c", include_usage=False)
    stream.feed("message_start", {"message": {"usage": {"input_tokens": 5, "output_tokens": 0}}})
    last = stream.feed("message_stop", {})
    assert [c["choices"][0]["finish_reason"] for c in last] == ["stop"]


def test_anthropic_stream_error_event_raises_with_tokens_sent() -> None:
    stream = AnthropicToOpenAIStream("m", "c")
    for event, data in ANTHROPIC_EVENTS[:5]:
        stream.feed(event, data)
    with pytest.raises(ProviderError) as info:
        stream.feed(
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
    assert info.value.kind == "server"
    assert "Overloaded" in info.value.message
    assert info.value.tokens_sent == 2


def test_anthropic_stream_ignores_unknown_events_and_deltas() -> None:
    stream = AnthropicToOpenAIStream("m", "c")
    assert stream.feed("ping", {"type": "ping"}) == []
    assert stream.feed("something_new", {"type": "something_new"}) == []
    thinking = {"index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}
    assert stream.feed("content_block_delta", thinking) == []
    assert (
        stream.feed("content_block_start", {"index": 0, "content_block": {"type": "thinking"}})
        == []
    )
    with pytest.raises(ProviderError) as info:
        stream.feed("content_block_delta", "nonsense")  # type: ignore[arg-type]
    assert info.value.kind == "garbage"


# ------------------------------------------------------ Anthropic request -> OpenAI


def test_anthropic_request_to_openai_exact() -> None:
    body = {
        "model": "cheap",
        "max_tokens": 300,
        "system": [
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Use metric units."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}},
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "weather",
                        "input": {"city": "Oslo"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3 C"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "temperature": 0.1,
        "top_p": 0.8,
        "top_k": 40,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "alice"},
        "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [
            {"name": "weather", "description": "Weather by city", "input_schema": WEATHER_SCHEMA},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        ],
        "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
    }
    assert anthropic_to_openai_request(body) == {
        "model": "cheap",
        "messages": [
            {"role": "system", "content": "You are terse.\n\nUse metric units."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "-3 C"},
            {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
        ],
        "max_tokens": 300,
        "temperature": 0.1,
        "top_p": 0.8,
        "stop": ["END"],
        "user": "alice",
        "stream": True,
        "stream_options": {"include_usage": True},
        "reasoning_effort": "low",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Weather by city",
                    "parameters": WEATHER_SCHEMA,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": False,
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none")],
)
def test_tool_choice_to_openai(choice: dict[str, Any], expected: str) -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": choice,
    }
    assert anthropic_to_openai_request(body)["tool_choice"] == expected


def test_anthropic_tool_results_become_tool_messages_with_cache_control_kept() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "system": [{"type": "text", "text": "manual", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "ok"}],
                    },
                ],
            },
        ],
    }
    assert anthropic_to_openai_request(body)["messages"] == [
        {
            "role": "system",
            "content": [{"type": "text", "text": "manual", "cache_control": {"type": "ephemeral"}}],
        },
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": "ok"}]},
    ]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}],
            },
            ["messages[1]", "'system'", "top-level system"],
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "a"}]},
            ["max_tokens is required"],
        ),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "a"}]}, ["model is required"]),
        ({"model": "m", "max_tokens": 5, "messages": []}, ["messages", "non-empty"]),
        (
            {"model": "m", "max_tokens": "5", "messages": [{"role": "user", "content": "a"}]},
            ["max_tokens", "positive"],
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "system": 3,
                "messages": [{"role": "user", "content": "a"}],
            },
            ["system"],
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "content": "x"}]}
                ],
            },
            ["messages[0].content[0]", "tool_use_id"],
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "assistant", "content": [{"type": "tool_use", "input": {}}]}],
            },
            ["messages[0].content[0]", "tool_use"],
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "a"}],
                "tools": [{"name": "f"}],
                "tool_choice": {"type": "sometimes"},
            },
            ["tool_choice", "'sometimes'"],
        ),
        ("not a body", ["JSON object"]),
    ],
)
def test_bad_anthropic_request_names_the_entry(body: Any, words: list[str]) -> None:
    with pytest.raises(BadRequest) as info:
        anthropic_to_openai_request(body)
    for word in words:
        assert word in str(info.value)


# ------------------------------------------------------ OpenAI response -> Anthropic


OPENAI_COMPLETION = {
    "id": "chatcmpl-9xyz",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 256},
    },
}


def test_openai_response_to_anthropic_exact() -> None:
    out = openai_to_anthropic_response(OPENAI_COMPLETION, "cheap")
    assert out == {
        "id": "msg_chatcmpl-9xyz",
        "type": "message",
        "role": "assistant",
        "model": "cheap",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 176,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1024,
            "output_tokens": 300,
            "output_tokens_details": {"thinking_tokens": 256},
        },
    }
    parsed = Message.model_validate(out)  # what the anthropic SDK parses
    assert parsed.usage.cache_read_input_tokens == 1024


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reason_from_openai(finish_reason: str | None, stop_reason: str) -> None:
    body = {
        "id": "msg_kept",
        "choices": [{"message": {"content": "x"}, "finish_reason": finish_reason}],
    }
    out = openai_to_anthropic_response(body, "m")
    assert out["stop_reason"] == stop_reason
    assert out["id"] == "msg_kept"  # already an Anthropic id: not prefixed twice


def test_openai_response_odd_shapes_do_not_crash() -> None:
    bad_args = {
        "id": "x",
        "choices": [
            {
                "message": {
                    "content": None,
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    out = openai_to_anthropic_response(bad_args, "m")
    assert out["content"] == [
        {"type": "tool_use", "id": "c", "name": "f", "input": {"_raw_arguments": "{oops"}}
    ]
    assert out["usage"]["output_tokens"] == 0
    empty = openai_to_anthropic_response({"choices": []}, "m")
    assert empty["content"] == [] and empty["stop_reason"] == "end_turn"
    assert empty["id"].startswith("msg_")
    refusal = openai_to_anthropic_response(
        {
            "id": "r",
            "choices": [
                {"message": {"content": None, "refusal": "I can't."}, "finish_reason": "stop"}
            ],
        },
        "m",
    )
    assert refusal["content"] == [{"type": "text", "text": "I can't."}]


# ---------------------------------------------------- OpenAI chunks -> Anthropic events


def _openai_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


OPENAI_CHUNKS: list[dict[str, Any]] = [
    _openai_chunk({"role": "assistant", "content": ""}),
    _openai_chunk({"content": "Let me "}),
    _openai_chunk({"content": "check."}),
    _openai_chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": ""},
                }
            ]
        }
    ),
    _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
    _openai_chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "now", "arguments": "{}"},
                }
            ]
        }
    ),
    _openai_chunk({}, "tool_calls"),
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 30,
            "total_tokens": 1230,
            "prompt_tokens_details": {"cached_tokens": 1024},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    },
]


def test_openai_stream_to_anthropic_events_exact() -> None:
    stream = OpenAIToAnthropicStream("cheap", "msg_1", input_tokens=1200)
    events = []
    for chunk in OPENAI_CHUNKS:
        events.extend(stream.feed(chunk))
    events.extend(stream.finish())
    assert events == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "cheap",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 1200,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 0,
                    },
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Let me "},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "check."},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "weather",
                    "input": {},
                },
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {"type": "tool_use", "id": "call_2", "name": "now", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "{}"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {
                    "input_tokens": 176,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 1024,
                    "output_tokens": 30,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    for name, data in events:
        assert data["type"] == name
    assert stream.finish() == []  # once only


def test_openai_stream_accumulates_in_the_anthropic_sdk() -> None:
    """The events are what the anthropic SDK's own stream accumulator takes."""
    stream = OpenAIToAnthropicStream("cheap", "msg_1", input_tokens=1200)
    events = [e for chunk in OPENAI_CHUNKS for e in stream.feed(chunk)] + stream.finish()
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for _, data in events:
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=json_bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    assert snapshot.stop_reason == "tool_use"
    assert [b.type for b in snapshot.content] == ["text", "tool_use", "tool_use"]
    assert snapshot.content[0].text == "Let me check."  # type: ignore[union-attr]
    assert snapshot.content[1].input == {"city": "Oslo"}  # type: ignore[union-attr]
    assert snapshot.content[2].input == {}  # type: ignore[union-attr]
    assert (snapshot.usage.input_tokens, snapshot.usage.cache_read_input_tokens) == (176, 1024)
    assert snapshot.usage.output_tokens == 30


def test_openai_stream_edge_cases() -> None:
    # nothing fed at all: still a well-formed, empty message
    empty = OpenAIToAnthropicStream("m", "msg_e", input_tokens=7).finish()
    assert [name for name, _ in empty] == ["message_start", "message_delta", "message_stop"]
    assert empty[1][1]["usage"]["input_tokens"] == 7
    assert empty[1][1]["delta"]["stop_reason"] == "end_turn"
    # a usage given to finish() (the gateway's own count) wins over the chunks' none
    stream = OpenAIToAnthropicStream("m", "msg_2")
    stream.feed(_openai_chunk({"content": "hi"}, "length"))
    stream.feed("garbage")  # type: ignore[arg-type]
    stream.feed({"choices": [{"index": 1, "delta": {"content": "second choice"}}]})
    events = stream.finish(Usage(3, 1, estimated=True))
    assert [name for name, _ in events] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[1][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[1][1]["usage"]["output_tokens"] == 1


def test_openai_stream_error_event() -> None:
    stream = OpenAIToAnthropicStream("m", "msg_3")
    stream.feed(_openai_chunk({"content": "partial"}))
    assert stream.error("upstream cut the stream", "overloaded_error") == [
        (
            "error",
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "upstream cut the stream"},
            },
        )
    ]
    assert stream.finish() == []  # a failed stream is not then finished as if complete


# ---------------------------------------------------------------------- round trips


def test_anthropic_request_round_trips_through_openai() -> None:
    body = {
        "model": "m",
        "max_tokens": 100,
        "system": "S",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "x"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, 2]}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "done"},
                    {"type": "text", "text": "next"},
                ],
            },
        ],
        "temperature": 0.5,
        "stop_sequences": ["Z"],
        "metadata": {"user_id": "u"},
        "tools": [{"name": "f", "description": "d", "input_schema": WEATHER_SCHEMA}],
        "tool_choice": {"type": "any"},
    }
    assert openai_to_anthropic_request(anthropic_to_openai_request(body), "m") == body


def test_openai_request_round_trips_through_anthropic() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": "x",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": [1, 2]}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "user", "content": [{"type": "text", "text": "next"}]},
        ],
        "max_tokens": 100,
        "temperature": 0.5,
        "stop": ["Z"],
        "user": "u",
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "description": "d", "parameters": WEATHER_SCHEMA},
            }
        ],
        "tool_choice": "required",
    }
    assert anthropic_to_openai_request(openai_to_anthropic_request(body, "m")) == body


def test_responses_round_trip() -> None:
    there = anthropic_to_openai_response(ANTHROPIC_MESSAGE, "claude-haiku-4-5-20251001")
    back = openai_to_anthropic_response(there, "claude-haiku-4-5-20251001")
    assert back == {
        **ANTHROPIC_MESSAGE,
        "content": [
            {
                "type": "text",
                "text": "Let me check the weather.",
            },  # blocks joined, thinking dropped
            ANTHROPIC_MESSAGE["content"][3],  # type: ignore[index]
        ],
    }
    completion = openai_to_anthropic_response(OPENAI_COMPLETION, "m")
    again = anthropic_to_openai_response(completion, "gpt-4o-mini")
    assert again["usage"] == OPENAI_COMPLETION["usage"]
    assert again["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(again["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Oslo"
    }


def test_streams_round_trip_and_match_the_unstreamed_usage() -> None:
    """Anthropic events -> OpenAI chunks -> Anthropic events: the same message and usage."""
    to_openai = AnthropicToOpenAIStream("m", "chatcmpl-1")
    to_anthropic = OpenAIToAnthropicStream("m", "msg_01abc", input_tokens=0)
    events = []
    for event, data in ANTHROPIC_EVENTS:
        for chunk in to_openai.feed(event, data):
            events.extend(to_anthropic.feed(chunk))
    events.extend(to_anthropic.finish())
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for _, data in events:
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=json_bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    assert snapshot.content[0].text == "Let me check."  # type: ignore[union-attr]
    assert snapshot.content[1].input == {"city": "Oslo"}  # type: ignore[union-attr]
    assert snapshot.stop_reason == "tool_use"
    unstreamed = anthropic_usage(ANTHROPIC_MESSAGE["usage"])  # type: ignore[arg-type]
    assert anthropic_usage(snapshot.usage.model_dump()) == unstreamed == to_openai.usage


# -- reasoning_effort ⇄ thinking --------------------------------------------------------------


def _to_anthropic(**fields: Any) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": "Why?"}], **fields}
    return openai_to_anthropic_request(body, "claude-sonnet-4-5")


def test_reasoning_effort_becomes_a_thinking_budget() -> None:
    out = _to_anthropic(reasoning_effort="medium", temperature=0.2, top_p=0.9)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert out["max_tokens"] == 8192 + 4096  # the answer's default on top of the budget
    assert "temperature" not in out and "top_p" not in out  # Anthropic refuses them with it
    # OpenAI counts reasoning in max_tokens: the budget fits under it ...
    fitted = _to_anthropic(reasoning_effort="high", max_completion_tokens=5000)
    assert fitted["thinking"]["budget_tokens"] == 4999 and fitted["max_tokens"] == 5000
    # ... or there is no thinking when too little would be left for it
    assert "thinking" not in _to_anthropic(reasoning_effort="low", max_tokens=900)
    assert "thinking" not in _to_anthropic(reasoning_effort="none")
    assert "thinking" not in _to_anthropic(temperature=0.2)


def test_a_thinking_object_passes_as_is_and_a_forced_tool_wins() -> None:
    exact = _to_anthropic(thinking={"type": "enabled", "budget_tokens": 3000}, max_tokens=8000)
    assert exact["thinking"] == {"type": "enabled", "budget_tokens": 3000}
    assert "thinking" not in _to_anthropic(thinking={"type": "disabled"}, reasoning_effort="high")
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    forced = _to_anthropic(
        reasoning_effort="high",
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "f"}},
    )
    assert "thinking" not in forced and forced["tool_choice"]["type"] == "tool"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"reasoning_effort": "max"}, ["reasoning_effort 'max'", "minimal, low, medium, high"]),
        ({"thinking": {"type": "on"}}, ["thinking must be"]),
        ({"thinking": {"type": "enabled"}}, ["thinking.budget_tokens"]),
    ],
)
def test_bad_reasoning_settings_name_the_entry(fields: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(BadRequest) as caught:
        _to_anthropic(**fields)
    assert all(w in str(caught.value) for w in words)


def test_anthropic_thinking_becomes_reasoning_effort_and_round_trips_exactly() -> None:
    body = {
        "model": "frontier",
        "max_tokens": 20000,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "messages": [{"role": "user", "content": "Why?"}],
    }
    request = anthropic_to_openai_request(body)
    assert request["reasoning_effort"] == "medium"
    back = openai_to_anthropic_request(request, "claude-sonnet-4-5")
    assert back["thinking"] == {"type": "enabled", "budget_tokens": 10000}
    assert back["max_tokens"] == 20000
    disabled = anthropic_to_openai_request({**body, "thinking": {"type": "disabled"}})
    assert "reasoning_effort" not in disabled and "thinking" not in disabled
    with pytest.raises(BadRequest, match="thinking must be"):
        anthropic_to_openai_request({**body, "thinking": "yes"})
