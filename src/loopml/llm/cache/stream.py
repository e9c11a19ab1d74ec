"""Cached answers and streams: a hit for a streaming request is replayed as OpenAI
``chat.completion.chunk`` objects (:func:`replay`), and a streamed answer is put back
together into one ``chat.completion`` to be cached (:class:`Assembler`).

``loopml.llm.translate`` converts between providers' stream formats; neither direction
here existed there, so they live with the cache, their only user.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from loopml.llm.types import Body

#: Characters of content per replayed chunk (a client renders a replay like a live stream).
CHUNK_CHARS = 64


def _base(completion: Mapping[str, Any]) -> Body:
    return {
        "id": completion.get("id", ""),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
        **(
            {"system_fingerprint": completion["system_fingerprint"]}
            if completion.get("system_fingerprint")
            else {}
        ),
    }


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or []


def replay(
    completion: Mapping[str, Any], *, include_usage: bool = True, chunk_chars: int = CHUNK_CHARS
) -> list[Body]:
    """The chunks a provider would have streamed for ``completion``: per choice a role
    chunk, content chunks of ``chunk_chars`` characters, tool-call chunks (name and id
    first, then the arguments), a finish chunk; then, with ``include_usage`` (a request's
    ``stream_options.include_usage``), a usage chunk with no choices.

    >>> chunks = replay({"id": "c1", "model": "m", "created": 1, "choices": [{"index": 0,
    ...     "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    ...     "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
    >>> [c["choices"][0]["delta"] if c["choices"] else c["usage"]["total_tokens"] for c in chunks]
    [{'role': 'assistant', 'content': ''}, {'content': 'hello'}, {}, 4]
    """
    base = _base(completion)
    out: list[Body] = []
    for position, choice in enumerate(completion.get("choices") or ()):
        index = choice.get("index", position)
        message = choice.get("message") or {}

        def chunk(delta: Body, finish: str | None = None, *, _index: int = index) -> Body:
            return {
                **base,
                "choices": [
                    {"index": _index, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }

        out.append(chunk({"role": message.get("role", "assistant"), "content": ""}))
        if message.get("reasoning_content"):
            for piece in _pieces(str(message["reasoning_content"]), chunk_chars):
                out.append(chunk({"reasoning_content": piece}))
        content = message.get("content")
        if isinstance(content, str):
            for piece in _pieces(content, chunk_chars):
                out.append(chunk({"content": piece}))
        if message.get("refusal"):
            out.append(chunk({"refusal": message["refusal"]}))
        for number, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            out.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": number,
                                "id": call.get("id"),
                                "type": call.get("type", "function"),
                                "function": {"name": function.get("name"), "arguments": ""},
                            }
                        ]
                    }
                )
            )
            for piece in _pieces(str(function.get("arguments") or ""), chunk_chars):
                out.append(
                    chunk({"tool_calls": [{"index": number, "function": {"arguments": piece}}]})
                )
        out.append(chunk({}, choice.get("finish_reason") or "stop"))
    if include_usage and completion.get("usage"):
        out.append({**base, "choices": [], "usage": dict(completion["usage"])})
    return out


class Assembler:
    """Puts a stream of ``chat.completion.chunk`` objects back together into the
    ``chat.completion`` it streams, to cache a streamed answer.

    >>> a = Assembler()
    >>> for c in replay({"id": "c1", "model": "m", "created": 1, "choices": [{"index": 0,
    ...     "message": {"role": "assistant", "content": "x" * 100}, "finish_reason": "stop"}]}):
    ...     a.feed(c)
    >>> a.completion()["choices"][0]["message"]["content"] == "x" * 100
    True
    """

    def __init__(self) -> None:
        self._head: Body = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: Body | None = None

    def feed(self, chunk: Mapping[str, Any]) -> None:
        """Take one chunk in stream order."""
        if not self._head:
            self._head = {k: chunk[k] for k in ("id", "created", "model") if k in chunk}
            if chunk.get("system_fingerprint"):
                self._head["system_fingerprint"] = chunk["system_fingerprint"]
        if chunk.get("usage"):
            self._usage = dict(chunk["usage"])
        for choice in chunk.get("choices") or ():
            state = self._choices.setdefault(
                int(choice.get("index", 0)),
                {"role": "assistant", "content": [], "reasoning": [], "tools": {}, "finish": None},
            )
            delta = choice.get("delta") or {}
            if delta.get("role"):
                state["role"] = delta["role"]
            if isinstance(delta.get("content"), str):
                state["content"].append(delta["content"])
            if isinstance(delta.get("reasoning_content"), str):
                state["reasoning"].append(delta["reasoning_content"])
            if delta.get("refusal"):
                state["refusal"] = delta["refusal"]
            for call in delta.get("tool_calls") or ():
                slot = state["tools"].setdefault(
                    int(call.get("index", 0)),
                    {"id": None, "type": "function", "name": None, "arguments": []},
                )
                slot["id"] = call.get("id") or slot["id"]
                slot["type"] = call.get("type") or slot["type"]
                function = call.get("function") or {}
                slot["name"] = function.get("name") or slot["name"]
                if isinstance(function.get("arguments"), str):
                    slot["arguments"].append(function["arguments"])
            if choice.get("finish_reason"):
                state["finish"] = choice["finish_reason"]

    def feed_all(self, chunks: Iterable[Mapping[str, Any]]) -> Body:
        """Feed every chunk; returns :meth:`completion`."""
        for chunk in chunks:
            self.feed(chunk)
        return self.completion()

    @property
    def finished(self) -> bool:
        """True when every choice seen has a finish reason (a complete answer)."""
        return bool(self._choices) and all(s["finish"] for s in self._choices.values())

    def completion(self) -> Body:
        """The ``chat.completion`` streamed so far."""
        choices = []
        for index in sorted(self._choices):
            state = self._choices[index]
            message: Body = {"role": state["role"], "content": "".join(state["content"])}
            if state["reasoning"]:
                message["reasoning_content"] = "".join(state["reasoning"])
            if state.get("refusal"):
                message["refusal"] = state["refusal"]
            if state["tools"]:
                message["tool_calls"] = [
                    {
                        "id": slot["id"],
                        "type": slot["type"],
                        "function": {"name": slot["name"], "arguments": "".join(slot["arguments"])},
                    }
                    for _, slot in sorted(state["tools"].items())
                ]
                if not message["content"]:
                    message["content"] = None
            choices.append({"index": index, "message": message, "finish_reason": state["finish"]})
        body: Body = {"object": "chat.completion", **self._head, "choices": choices}
        if self._usage is not None:
            body["usage"] = self._usage
        return body


__all__ = ["CHUNK_CHARS", "Assembler", "replay"]
