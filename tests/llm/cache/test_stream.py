"""A cached answer replayed as a stream, and a stream put back together to be cached."""

from __future__ import annotations

from loopml.llm.cache import Assembler, replay

COMPLETION = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "created": 1_800_000_000,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_1",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me look that up. " * 10,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "search", "arguments": '{"q": "' + "x" * 150 + '"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "now", "arguments": "{}"},
                    },
                ],
            },
            "finish_reason": "tool_calls",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "Other."},
            "finish_reason": "stop",
        },
    ],
    "usage": {"prompt_tokens": 30, "completion_tokens": 70, "total_tokens": 100},
}


def test_replay_has_the_shape_of_a_provider_stream() -> None:
    chunks = replay(COMPLETION)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["id"] == "chatcmpl-9" and c["model"] == "gpt-4o-mini" for c in chunks)
    assert all(c["system_fingerprint"] == "fp_1" for c in chunks)
    first = [c for c in chunks if c["choices"] and c["choices"][0]["index"] == 0]
    assert first[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    contents = [c["choices"][0]["delta"].get("content") for c in first[1:]]
    text = "".join(t for t in contents if t)
    assert text == COMPLETION["choices"][0]["message"]["content"]
    assert max(len(t) for t in contents if t) <= 64 and len([t for t in contents if t]) > 1
    tools = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in first
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert tools[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "search", "arguments": ""},
    }
    assert "".join(t["function"]["arguments"] for t in tools if t["index"] == 0) == (
        '{"q": "' + "x" * 150 + '"}'
    )
    assert first[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 100
    assert all(
        c["choices"][0]["finish_reason"] is None
        for c in chunks[:-1]
        if c["choices"] and c["choices"][0]["delta"]
    )
    assert not any("usage" in c for c in replay(COMPLETION, include_usage=False))


def test_a_stream_assembles_back_into_the_completion() -> None:
    assembler = Assembler()
    rebuilt = assembler.feed_all(replay(COMPLETION))
    assert assembler.finished
    assert rebuilt == COMPLETION


def test_an_unfinished_stream_is_not_finished() -> None:
    assembler = Assembler()
    assembler.feed_all(replay(COMPLETION)[:5])
    assert not assembler.finished
