"""Anthropic Messages -> OpenAI Chat Completions: requests, responses, stream events.

An Anthropic provider's answer is turned into the gateway's OpenAI shape
(:data:`~loopml.llm.types.Body`; the Anthropic adapter), and a client's Anthropic request
into the gateway's request (the gateway's ``/v1/messages``)::

    gateway ◄──anthropic_to_openai_response / AnthropicToOpenAIStream── Anthropic provider

    Anthropic client ──anthropic_to_openai_request──► gateway (OpenAI-shaped)

What OpenAI cannot take is dropped (``top_k``, ``thinking`` blocks, server tools, a tool
result's ``is_error``, …), Anthropic's ``thinking`` budget becomes a ``reasoning_effort``
(:func:`reasoning_effort`), never an error; what would change the meaning of a request (an
unknown role, a ``tool_use`` without an id) is a :class:`~loopml.llm.errors.BadRequest`
naming the offending entry.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from loopml.llm.errors import BadRequest, ProviderError
from loopml.llm.translate.to_anthropic import _positive_int, _where
from loopml.llm.translate.usage import _mapping, anthropic_usage, usage_to_openai
from loopml.llm.types import Body, Usage

_FINISH_FROM_ANTHROPIC = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TOOL_CHOICE_TO_OPENAI = {"auto": "auto", "none": "none", "any": "required"}


# ---------------------------------------------------------- Anthropic request -> OpenAI


def reasoning_effort(budget_tokens: int) -> str:
    """The OpenAI ``reasoning_effort`` nearest an Anthropic thinking budget.

    >>> reasoning_effort(1024), reasoning_effort(8192), reasoning_effort(32000)
    ('low', 'medium', 'high')
    """
    if budget_tokens < 4096:
        return "low"
    return "medium" if budget_tokens < 16384 else "high"


def _anthropic_text_parts(content: Any, where: str) -> list[dict[str, Any]]:
    """Anthropic text/image blocks -> OpenAI content parts (other kinds dropped)."""
    if not isinstance(content, list):
        raise BadRequest(f"{where} must be a string or a list of content blocks")
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        if not isinstance(block, Mapping):
            raise BadRequest(f"{where}[{j}] must be a content block object")
        kind = block.get("type")
        part: dict[str, Any]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise BadRequest(f"{where}[{j}].text must be a string")
            part = {"type": "text", "text": block["text"]}
        elif kind == "image":
            source = _mapping(block.get("source"))
            if source.get("type") == "base64":
                url = f"data:{source.get('media_type')};base64,{source.get('data')}"
            elif source.get("type") == "url" and isinstance(source.get("url"), str):
                url = source["url"]
            else:
                raise BadRequest(f"{where}[{j}].source must be a base64 or url image source")
            part = {"type": "image_url", "image_url": {"url": url}}
        else:
            continue
        if isinstance(block.get("cache_control"), Mapping):
            part["cache_control"] = dict(block["cache_control"])
        parts.append(part)
    return parts


def _anthropic_user(content: Any, i: int) -> list[dict[str, Any]]:
    """One Anthropic user turn -> OpenAI messages: its tool results first, as ``tool``
    messages, then the rest as one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise BadRequest(f"{_where(i, 'content')} must be a string or a list of content blocks")
    out: list[dict[str, Any]] = []
    rest = []
    for j, block in enumerate(content):
        if isinstance(block, Mapping) and block.get("type") == "tool_result":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise BadRequest(
                    f"{_where(i, 'content', j)} is a tool_result without a tool_use_id"
                )
            result = block.get("content", "")
            if not isinstance(result, str):
                result = _anthropic_text_parts(result, _where(i, "content", j, "content"))
            out.append({"role": "tool", "tool_call_id": call_id, "content": result})
        else:
            rest.append(block)
    if rest or not out:
        out.append({"role": "user", "content": _anthropic_text_parts(rest, _where(i, "content"))})
    return out


def _anthropic_assistant(content: Any, i: int) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise BadRequest(f"{_where(i, 'content')} must be a string or a list of content blocks")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        if not isinstance(block, Mapping):
            raise BadRequest(f"{_where(i, 'content', j)} must be a content block object")
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            if not isinstance(block.get("name"), str) or not isinstance(block.get("id"), str):
                raise BadRequest(f"{_where(i, 'content', j)} is a tool_use without an id and name")
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {
                        "name": block["name"],
                        "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False),
                    },
                }
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else (None if calls else ""),
    }
    if calls:
        message["tool_calls"] = calls
    return message


def _openai_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list of {'name', 'description', 'input_schema'}")
    out = []
    for j, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise BadRequest(f"tools[{j}] must be an object")
        if tool.get("type", "custom") != "custom":
            continue  # a server tool (web search, code execution, …): OpenAI has none
        if not isinstance(tool.get("name"), str):
            raise BadRequest(f"tools[{j}] has no name")
        function: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        schema = tool.get("input_schema")
        function["parameters"] = (
            dict(schema) if isinstance(schema, Mapping) else {"type": "object", "properties": {}}
        )
        out.append({"type": "function", "function": function})
    return out


def anthropic_to_openai_request(body: Mapping[str, Any]) -> Body:
    """An Anthropic Messages request (a client of ``/v1/messages``) -> the gateway's
    OpenAI-shaped request.

    ``system`` becomes a system message (text blocks with ``cache_control`` kept as parts);
    ``tool_result`` blocks become ``tool`` messages ahead of the rest of their user turn;
    ``tool_use`` blocks become ``tool_calls``. A stream asks for usage in the stream.
    Raises :class:`BadRequest` naming what is missing or wrong.
    """
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("model is required: the model alias to answer with")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list of {'role': ..., 'content': ...}")
    if body.get("max_tokens") is None:
        raise BadRequest("max_tokens is required: the most tokens the answer may have")
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        out.append({"role": "system", "content": system})
    elif isinstance(system, list) and system:
        parts = _anthropic_text_parts(system, "system")
        if any("cache_control" in p for p in parts):
            out.append({"role": "system", "content": parts})
        elif parts:
            out.append({"role": "system", "content": "\n\n".join(p["text"] for p in parts)})
    elif system not in (None, "", []):
        raise BadRequest("system must be a string or a list of text blocks")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise BadRequest(f"{_where(i)} must be an object with a role and content")
        role = message.get("role")
        if role == "user":
            out.extend(_anthropic_user(message.get("content"), i))
        elif role == "assistant":
            out.append(_anthropic_assistant(message.get("content"), i))
        else:
            raise BadRequest(
                f"{_where(i)} has role {role!r}; use user or assistant "
                "(the system prompt goes in the top-level system)"
            )

    request: dict[str, Any] = {
        "model": body["model"],
        "messages": out,
        "max_tokens": _positive_int(body["max_tokens"], "max_tokens"),
    }
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = body[name]
    stop = body.get("stop_sequences")
    if isinstance(stop, list) and stop:
        request["stop"] = [s for s in stop if isinstance(s, str)]
    user = _mapping(body.get("metadata")).get("user_id")
    if isinstance(user, str):
        request["user"] = user
    if body.get("stream"):
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, Mapping) or thinking.get("type") not in ("enabled", "disabled"):
            raise BadRequest(
                "thinking must be {'type': 'enabled', 'budget_tokens': N} or {'type': 'disabled'}"
            )
        if thinking["type"] == "enabled":
            budget = _positive_int(thinking.get("budget_tokens"), "thinking.budget_tokens")
            # reasoning_effort for an OpenAI-compatible provider; thinking, exact, for an
            # Anthropic one (OpenAI adapters leave it out)
            request["reasoning_effort"] = reasoning_effort(budget)
            request["thinking"] = {"type": "enabled", "budget_tokens": budget}

    tools = _openai_tools(body["tools"]) if body.get("tools") is not None else []
    if tools:
        request["tools"] = tools
        choice = body.get("tool_choice")
        if isinstance(choice, Mapping):
            kind = choice.get("type")
            if kind == "tool":
                if not isinstance(choice.get("name"), str):
                    raise BadRequest("tool_choice of type tool must name the tool")
                request["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
            elif kind in _TOOL_CHOICE_TO_OPENAI:
                request["tool_choice"] = _TOOL_CHOICE_TO_OPENAI[kind]
            else:
                raise BadRequest(f"tool_choice type {kind!r} is not one of auto, any, tool, none")
            if choice.get("disable_parallel_tool_use"):
                request["parallel_tool_calls"] = False
        elif choice is not None:
            raise BadRequest("tool_choice must be an object such as {'type': 'auto'}")
    return request


# ----------------------------------------------------------- Anthropic response -> OpenAI


def _garbage(what: str) -> ProviderError:
    return ProviderError("garbage", f"the Anthropic provider answered {what}")


def anthropic_to_openai_response(message: Mapping[str, Any], model: str) -> Body:
    """An Anthropic Message -> an OpenAI ``chat.completion`` (Anthropic's ``msg_…`` id kept).

    Text blocks are joined into ``content``; ``tool_use`` blocks become ``tool_calls`` with
    the input as a JSON string; ``thinking`` blocks are dropped. Raises
    ``ProviderError("garbage")`` for something that is not a Message.
    """
    if not isinstance(message, Mapping) or not isinstance(message.get("content"), list):
        raise _garbage("something that is not a Message (no content list)")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if not isinstance(block, Mapping):
            raise _garbage("a content block that is not an object")
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False),
                    },
                }
            )
    content = "".join(texts) if texts else (None if calls else "")
    reply: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    message_id = message.get("id")
    return {
        "id": message_id if isinstance(message_id, str) else f"msg_{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": _FINISH_FROM_ANTHROPIC.get(
                    message.get("stop_reason") or "", "stop"
                ),
            }
        ],
        "usage": usage_to_openai(anthropic_usage(message.get("usage"))),
    }


class AnthropicToOpenAIStream:
    """Turns an Anthropic Messages event stream into OpenAI ``chat.completion.chunk`` s.

    Feed each server-sent event (its name and decoded data); each call returns the chunks
    to pass on. ``message_stop`` ends with a ``choices: []`` chunk carrying ``usage`` when
    ``include_usage``; an ``error`` event raises ``ProviderError("server")`` with
    ``tokens_sent`` set. ``usage`` is the running usage; ``output_text_tokens_seen`` the
    content deltas (text and tool arguments) passed on so far.
    """

    def __init__(self, model: str, completion_id: str, include_usage: bool = True) -> None:
        self.model = model
        self.completion_id = completion_id
        self.include_usage = include_usage
        self.created = int(time.time())
        self.usage = Usage()
        self.output_text_tokens_seen = 0
        self.finish_reason: str | None = None
        #: True once ``message_stop`` was fed.
        self.done = False
        self._raw_usage: dict[str, Any] = {}
        self._tools: dict[Any, int] = {}  # Anthropic block index -> OpenAI tool_calls index

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> Body:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def _merge_usage(self, usage: Any) -> None:
        # message_delta's counts are cumulative and optional: present ones overwrite.
        if isinstance(usage, Mapping):
            self._raw_usage.update((k, v) for k, v in usage.items() if v is not None)
            self.usage = anthropic_usage(self._raw_usage)

    def feed(self, event: str, data: Mapping[str, Any]) -> list[Body]:
        """One Anthropic event -> 0..n OpenAI chunks."""
        if not isinstance(data, Mapping):
            raise _garbage(f"a stream event {event!r} whose data is not an object")
        kind = event or data.get("type")
        if kind == "content_block_delta":
            delta = _mapping(data.get("delta"))
            if delta.get("type") == "text_delta" and delta.get("text"):
                self.output_text_tokens_seen += 1
                return [self._chunk({"content": delta["text"]})]
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                tool = self._tools.get(data.get("index"))
                if tool is None:
                    raise _garbage("tool arguments for a block that is not a tool_use")
                self.output_text_tokens_seen += 1
                return [
                    self._chunk(
                        {
                            "tool_calls": [
                                {"index": tool, "function": {"arguments": delta["partial_json"]}}
                            ]
                        }
                    )
                ]
            return []  # thinking, signature and citation deltas have no OpenAI equivalent
        if kind == "message_start":
            self._merge_usage(_mapping(data.get("message")).get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = _mapping(data.get("content_block"))
            if block.get("type") == "text" and block.get("text"):
                self.output_text_tokens_seen += 1
                return [self._chunk({"content": block["text"]})]
            if block.get("type") == "tool_use":
                tool = self._tools[data.get("index")] = len(self._tools)
                start = block.get("input")
                call = {
                    "index": tool,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": json.dumps(start, ensure_ascii=False) if start else "",
                    },
                }
                return [self._chunk({"tool_calls": [call]})]
            return []
        if kind == "message_delta":
            self._merge_usage(data.get("usage"))
            reason = _mapping(data.get("delta")).get("stop_reason")
            if reason is None:
                return []
            self.finish_reason = _FINISH_FROM_ANTHROPIC.get(reason, "stop")
            return [self._chunk({}, self.finish_reason)]
        if kind == "message_stop":
            self.done = True
            chunks = []
            if self.finish_reason is None:
                self.finish_reason = "stop"
                chunks.append(self._chunk({}, "stop"))
            if self.include_usage:
                last = self._chunk({})
                last["choices"] = []
                last["usage"] = usage_to_openai(self.usage)
                chunks.append(last)
            return chunks
        if kind == "error":
            error = _mapping(data.get("error"))
            raise ProviderError(
                "server",
                f"{error.get('type', 'error')}: {error.get('message', 'the stream failed')}",
                tokens_sent=self.output_text_tokens_seen,
            )
        return []  # ping, content_block_stop, and event kinds added later
