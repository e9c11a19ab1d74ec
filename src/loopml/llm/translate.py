"""OpenAI Chat Completions ⇄ Anthropic Messages: requests, responses, stream events, usage.

Pure functions over JSON-decoded dicts (no I/O). The gateway speaks OpenAI's shape inside
(:data:`~loopml.llm.types.Body`); these functions turn it into what an Anthropic provider
takes and back (the Anthropic adapter), and turn a client's Anthropic request into the
gateway's shape and the answer back (the gateway's ``/v1/messages``)::

    OpenAI-shaped body ──openai_to_anthropic_request──► Anthropic provider
            ▲                                                │
            └──anthropic_to_openai_response / AnthropicToOpenAIStream

    Anthropic client ──anthropic_to_openai_request──► gateway (OpenAI-shaped)
            ▲                                                │
            └──openai_to_anthropic_response / OpenAIToAnthropicStream

What the other side cannot take is dropped (``seed``, ``logprobs``, ``stream_options``,
``top_k`` for OpenAI, ``thinking`` blocks, server tools, a tool result's ``is_error``, …),
``reasoning_effort`` and Anthropic's ``thinking`` budget are translated both ways,
never an error; what would change the meaning of a request (an unknown role, tool arguments
that are not JSON, ``n > 1`` for Anthropic) is a :class:`~loopml.llm.errors.BadRequest`
naming the offending entry.

Example::

    >>> req = openai_to_anthropic_request(
    ...     {"messages": [{"role": "system", "content": "Be brief."},
    ...                   {"role": "user", "content": "Hi"}], "stop": "END"},
    ...     "claude-haiku-4-5")
    >>> req["system"], req["messages"], req["max_tokens"], req["stop_sequences"]
    ('Be brief.', [{'role': 'user', 'content': 'Hi'}], 4096, ['END'])
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from loopml.llm.errors import BadRequest, ProviderError
from loopml.llm.types import Body, Usage

#: ``max_tokens`` sent to Anthropic (which requires it) when an OpenAI request names none.
DEFAULT_MAX_TOKENS = 4096
#: Anthropic ``thinking.budget_tokens`` for each OpenAI ``reasoning_effort``.
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
#: Anthropic's smallest thinking budget.
MIN_THINKING_BUDGET = 1024

#: The instruction added to the system prompt for OpenAI's JSON modes (Anthropic has none).
JSON_INSTRUCTION = (
    "Answer with a single JSON object and nothing else: no text before or after it, "
    "no Markdown code fences."
)

_FINISH_FROM_ANTHROPIC = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STOP_FROM_OPENAI = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_TOOL_CHOICE_TO_ANTHROPIC = {"auto": "auto", "none": "none", "required": "any"}
_TOOL_CHOICE_TO_OPENAI = {"auto": "auto", "none": "none", "any": "required"}


# ---------------------------------------------------------------------------------- usage


def _count(value: Any) -> int:
    """A token count from a usage field: missing, null, negative or not a number -> 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return 0
    return int(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def openai_usage(usage: Mapping[str, Any] | None) -> Usage:
    """OpenAI's ``usage`` object -> :class:`Usage` (``None`` or garbage -> ``Usage()``).

    ``prompt_tokens`` already counts the cached part (``prompt_tokens_details.cached_tokens``
    read, ``cache_write_tokens`` written), and ``completion_tokens`` the reasoning part
    (``completion_tokens_details.reasoning_tokens``).
    """
    if not isinstance(usage, Mapping):
        return Usage()
    prompt = _mapping(usage.get("prompt_tokens_details"))
    completion = _mapping(usage.get("completion_tokens_details"))
    return Usage(
        input_tokens=_count(usage.get("prompt_tokens")),
        output_tokens=_count(usage.get("completion_tokens")),
        cached_read_tokens=_count(prompt.get("cached_tokens")),
        cached_write_tokens=_count(prompt.get("cache_write_tokens")),
        reasoning_tokens=_count(completion.get("reasoning_tokens")),
    )


def anthropic_usage(usage: Mapping[str, Any] | None) -> Usage:
    """Anthropic's ``usage`` object -> :class:`Usage` (``None`` or garbage -> ``Usage()``).

    Anthropic's ``input_tokens`` leaves out the cached parts, so :attr:`Usage.input_tokens`
    is ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``; the
    reasoning part of ``output_tokens`` is ``output_tokens_details.thinking_tokens``.
    """
    if not isinstance(usage, Mapping):
        return Usage()
    read = _count(usage.get("cache_read_input_tokens"))
    write = _count(usage.get("cache_creation_input_tokens"))
    return Usage(
        input_tokens=_count(usage.get("input_tokens")) + read + write,
        output_tokens=_count(usage.get("output_tokens")),
        cached_read_tokens=read,
        cached_write_tokens=write,
        reasoning_tokens=_count(
            _mapping(usage.get("output_tokens_details")).get("thinking_tokens")
        ),
    )


def usage_to_openai(usage: Usage) -> dict[str, Any]:
    """:class:`Usage` -> OpenAI's ``usage`` object (``cache_write_tokens`` only when some)."""
    prompt: dict[str, int] = {"cached_tokens": usage.cached_read_tokens}
    if usage.cached_write_tokens:
        prompt["cache_write_tokens"] = usage.cached_write_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": prompt,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def usage_to_anthropic(usage: Usage) -> dict[str, Any]:
    """:class:`Usage` -> Anthropic's ``usage`` object, whose ``input_tokens`` excludes the
    cached parts (``output_tokens_details`` only when there were reasoning tokens)."""
    out: dict[str, Any] = {
        "input_tokens": max(
            0, usage.input_tokens - usage.cached_read_tokens - usage.cached_write_tokens
        ),
        "cache_creation_input_tokens": usage.cached_write_tokens,
        "cache_read_input_tokens": usage.cached_read_tokens,
        "output_tokens": usage.output_tokens,
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


# ------------------------------------------------------------- OpenAI request -> Anthropic


def _where(i: int, *path: str | int) -> str:
    return f"messages[{i}]" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _image_source(url: Any, where: str) -> dict[str, Any]:
    """An OpenAI ``image_url`` -> an Anthropic image ``source`` (base64 data URL or URL)."""
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.image_url.url must be a URL or a base64 data URL")
    if url.startswith("data:"):
        head, sep, data = url[5:].partition(",")
        media_type, _, encoding = head.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise BadRequest(
                f"{where}.image_url.url is a data URL that is not base64; "
                "send it as data:<media type>;base64,<data>"
            )
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def _openai_part(part: Any, where: str) -> dict[str, Any] | None:
    """One OpenAI content part -> an Anthropic block (``None``: a kind Anthropic can't take)."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, Mapping):
        raise BadRequest(f"{where} must be a content part object, got {type(part).__name__}")
    kind = part.get("type")
    block: dict[str, Any]
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise BadRequest(f"{where}.{kind} must be a string")
        block = {"type": "text", "text": text}
    elif kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        block = {"type": "image", "source": _image_source(url, where)}
    else:
        return None
    if isinstance(part.get("cache_control"), Mapping):
        block["cache_control"] = dict(part["cache_control"])
    return block


def _openai_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of content parts")
    blocks = (_openai_part(p, f"{where}.content[{j}]") for j, p in enumerate(content))
    return [b for b in blocks if b is not None]


def _tool_use(call: Any, i: int, j: int) -> dict[str, Any]:
    where = _where(i, "tool_calls", j)
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise BadRequest(
            f"{where} must be {{'id', 'type': 'function', 'function': {{'name', ...}}}}"
        )
    arguments = function.get("arguments")
    if isinstance(arguments, Mapping):
        args: Any = dict(arguments)
    elif arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        args = {}
    elif isinstance(arguments, str):
        try:
            args = json.loads(arguments)
        except ValueError as exc:
            raise BadRequest(
                f"{where}.function.arguments is not valid JSON ({exc}); "
                "send the arguments as a JSON object in a string"
            ) from None
    else:
        args = None
    if not isinstance(args, dict):
        raise BadRequest(f"{where}.function.arguments must be a JSON object")
    call_id = call.get("id")
    return {
        "type": "tool_use",
        "id": call_id if isinstance(call_id, str) and call_id else f"toolu_{i}_{j}",
        "name": function["name"],
        "input": args,
    }


def _assistant_content(message: Mapping[str, Any], i: int) -> str | list[dict[str, Any]]:
    content = message.get("content")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise BadRequest(f"{_where(i, 'tool_calls')} must be a list")
    if isinstance(content, str) and not calls:
        return content
    # Anthropic refuses empty text blocks: an assistant turn that only calls tools has none.
    blocks = [b for b in _openai_parts(content, _where(i)) if b["type"] != "text" or b["text"]]
    blocks.extend(_tool_use(call, i, j) for j, call in enumerate(calls))
    return blocks


def _tool_result(message: Mapping[str, Any], i: int) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"{_where(i)} is a tool message without a tool_call_id")
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        result["content"] = content
    else:
        result["content"] = _openai_parts(content, _where(i))
    return result


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _append(out: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Append a turn; Anthropic wants user and assistant turns alternating, so a turn of the
    same role as the last one is merged into it."""
    if out and out[-1]["role"] == role:
        out[-1]["content"] = _as_blocks(out[-1]["content"]) + _as_blocks(content)
    else:
        out.append({"role": role, "content": content})


def _json_instruction(response_format: Any) -> str | None:
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return JSON_INSTRUCTION
    if kind == "json_schema":
        spec = _mapping(response_format.get("json_schema"))
        schema = spec.get("schema")
        if schema is None:
            return JSON_INSTRUCTION
        return (
            f"{JSON_INSTRUCTION} The object must match this JSON Schema:\n"
            f"{json.dumps(schema, ensure_ascii=False)}"
        )
    return None


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadRequest(f"{name} must be a positive integer, got {value!r}")
    return value


def _anthropic_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list of {'type': 'function', 'function': {...}}")
    out = []
    for j, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise BadRequest(f"tools[{j}] must be an object")
        if tool.get("type", "function") != "function":
            continue  # a tool kind Anthropic has no equivalent for
        function = tool.get("function")
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise BadRequest(f"tools[{j}].function must be an object with a name")
        spec: dict[str, Any] = {"name": function["name"]}
        if isinstance(function.get("description"), str):
            spec["description"] = function["description"]
        parameters = function.get("parameters")
        spec["input_schema"] = (
            dict(parameters)
            if isinstance(parameters, Mapping)
            else {"type": "object", "properties": {}}
        )
        out.append(spec)
    return out


def _anthropic_tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICE_TO_ANTHROPIC:
            raise BadRequest(
                f"tool_choice {choice!r} is not one of auto, none, required or "
                "{'type': 'function', 'function': {'name': ...}}"
            )
        return {"type": _TOOL_CHOICE_TO_ANTHROPIC[choice]}
    name = _mapping(choice.get("function")).get("name") if isinstance(choice, Mapping) else None
    if not isinstance(name, str):
        raise BadRequest(
            "tool_choice must name a function: {'type': 'function', 'function': {'name': ...}}"
        )
    return {"type": "tool", "name": name}


def openai_to_anthropic_request(body: Body, model: str) -> dict[str, Any]:
    """An OpenAI Chat Completions request -> an Anthropic Messages request for ``model``.

    ``system``/``developer`` messages become the top-level ``system``; ``tool`` messages
    become ``tool_result`` blocks of a user turn; consecutive turns of one role are merged.
    ``max_tokens`` defaults to :data:`DEFAULT_MAX_TOKENS`; JSON modes become an instruction
    in the system prompt. Raises :class:`BadRequest` naming the entry that can't translate.
    """
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list of {'role': ..., 'content': ...}")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise BadRequest(f"{_where(i)} must be an object with a role and content")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(
                b for b in _openai_parts(message.get("content"), _where(i)) if b["type"] == "text"
            )
        elif role == "user":
            content = message.get("content")
            if content is None:
                raise BadRequest(f"{_where(i)} is a user message without content")
            _append(
                turns,
                "user",
                content if isinstance(content, str) else _openai_parts(content, _where(i)),
            )
        elif role == "assistant":
            assistant = _assistant_content(message, i)
            if assistant:  # an empty assistant turn says nothing, and Anthropic refuses it
                _append(turns, "assistant", assistant)
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, i)])
        else:
            raise BadRequest(
                f"{_where(i)} has role {role!r}; use one of system, developer, user, "
                "assistant or tool"
            )
    if not turns:
        raise BadRequest("messages has no user or assistant message (Anthropic needs one)")

    n = body.get("n")
    if n is not None and n != 1:
        raise BadRequest(f"n={n!r}: Anthropic models answer with one choice; send n=1")
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    out: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": DEFAULT_MAX_TOKENS
        if max_tokens is None
        else _positive_int(max_tokens, "max_tokens"),
    }

    instruction = _json_instruction(body.get("response_format"))
    if instruction:
        system.append({"type": "text", "text": instruction})
    if system:
        cached = any("cache_control" in b for b in system)
        out["system"] = system if cached else "\n\n".join(b["text"] for b in system)

    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = [s for s in stop if isinstance(s, str)]
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("stream"):
        out["stream"] = True

    tools = _anthropic_tools(body["tools"]) if body.get("tools") is not None else []
    if tools:
        out["tools"] = tools
        choice = _anthropic_tool_choice(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False:
            choice = choice or {"type": "auto"}
            if choice["type"] != "none":
                choice["disable_parallel_tool_use"] = True
        if choice is not None:
            out["tool_choice"] = choice
    _thinking_to_anthropic(body, out, max_tokens is None)
    return out


def _thinking_to_anthropic(body: Body, out: dict[str, Any], default_max: bool) -> None:
    """``reasoning_effort`` (or a ``thinking`` object passed as is) -> Anthropic's extended
    thinking with a token budget (:data:`THINKING_BUDGETS`). As OpenAI counts reasoning in
    ``max_tokens``, the budget is fitted under a given ``max_tokens`` (no thinking when under
    :data:`MIN_THINKING_BUDGET` would be left); without one, the answer's default is added to
    the budget. Thinking can't be combined with sampling settings (dropped) or a forced tool
    (then there is no thinking)."""
    thinking = body.get("thinking")
    effort = body.get("reasoning_effort")
    budget: int | None = None
    if thinking is not None:
        if not isinstance(thinking, Mapping) or thinking.get("type") not in ("enabled", "disabled"):
            raise BadRequest(
                "thinking must be {'type': 'enabled', 'budget_tokens': N} or {'type': 'disabled'}"
            )
        if thinking["type"] == "disabled":
            return
        budget = _positive_int(thinking.get("budget_tokens"), "thinking.budget_tokens")
    elif effort is not None:
        if effort == "none":
            return
        if effort not in THINKING_BUDGETS:
            raise BadRequest(
                f"reasoning_effort {effort!r} is not one of none, " + ", ".join(THINKING_BUDGETS)
            )
        budget = THINKING_BUDGETS[effort]
    if budget is None:
        return
    choice = out.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") in ("any", "tool"):
        return
    if default_max:
        out["max_tokens"] = budget + DEFAULT_MAX_TOKENS
    else:
        budget = min(budget, out["max_tokens"] - 1)
        if budget < MIN_THINKING_BUDGET:
            return
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    for name in ("temperature", "top_p", "top_k"):
        out.pop(name, None)


def reasoning_effort(budget_tokens: int) -> str:
    """The OpenAI ``reasoning_effort`` nearest an Anthropic thinking budget.

    >>> reasoning_effort(1024), reasoning_effort(8192), reasoning_effort(32000)
    ('low', 'medium', 'high')
    """
    if budget_tokens < 4096:
        return "low"
    return "medium" if budget_tokens < 16384 else "high"


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


# ---------------------------------------------------------- Anthropic request -> OpenAI


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


# ---------------------------------------------------------- OpenAI response -> Anthropic


def _message_id(openai_id: Any) -> str:
    if not isinstance(openai_id, str) or not openai_id:
        return f"msg_{uuid.uuid4().hex}"
    return openai_id if openai_id.startswith("msg_") else f"msg_{openai_id}"


def _tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments string -> Anthropic's ``input`` object. A model that wrote
    arguments that are not a JSON object gets them kept under ``_raw_arguments``."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


def openai_to_anthropic_response(body: Body, model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` -> an Anthropic Message (id ``msg_`` + the OpenAI id).

    The first choice's text becomes a text block and its tool calls ``tool_use`` blocks;
    ``finish_reason`` becomes ``stop_reason`` and usage Anthropic's (cached parts apart).
    """
    choices = body.get("choices") if isinstance(body, Mapping) else None
    choice = _mapping(choices[0]) if isinstance(choices, list) and choices else {}
    message = _mapping(choice.get("message"))
    blocks: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(
            p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"
        )
    text = content or message.get("refusal")
    if isinstance(text, str) and text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = _mapping(_mapping(call).get("function"))
        blocks.append(
            {
                "type": "tool_use",
                "id": _mapping(call).get("id") or f"toolu_{uuid.uuid4().hex}",
                "name": function.get("name"),
                "input": _tool_input(function.get("arguments")),
            }
        )
    return {
        "id": _message_id(_mapping(body).get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": _STOP_FROM_OPENAI.get(choice.get("finish_reason") or "", "end_turn"),
        "stop_sequence": None,
        "usage": usage_to_anthropic(openai_usage(_mapping(body).get("usage"))),
    }


class OpenAIToAnthropicStream:
    """Turns OpenAI ``chat.completion.chunk`` s into Anthropic's stream events.

    ``feed`` each chunk and send the ``(event, data)`` pairs it returns; ``finish()`` after
    the last one (``message_delta`` with ``stop_reason`` and usage, then ``message_stop``);
    ``error()`` instead when the stream failed. Blocks get consecutive indexes, each opened
    with ``content_block_start`` and closed with ``content_block_stop``. ``input_tokens``
    is the prompt's size, if known before the answer, for ``message_start``.
    """

    def __init__(self, model: str, message_id: str, input_tokens: int = 0) -> None:
        self.model = model
        self.message_id = message_id
        self.input_tokens = input_tokens
        #: The usage the chunks reported (the usage-only last chunk), or ``None``.
        self.usage: Usage | None = None
        self.stop_reason: str | None = None
        self._started = False
        self._finished = False
        self._open: int | None = None  # index of the open block
        self._open_kind: Any = None  # "text", or the OpenAI tool_calls index
        self._blocks = 0
        self._tools: dict[Any, int] = {}  # OpenAI tool_calls index -> block index

    def _start(self) -> list[tuple[str, dict[str, Any]]]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_to_anthropic(Usage(input_tokens=self.input_tokens)),
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[tuple[str, dict[str, Any]]]:
        if self._open is None:
            return []
        index, self._open, self._open_kind = self._open, None, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open_block(self, kind: Any, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events = self._close()
        self._open, self._open_kind = self._blocks, kind
        self._blocks += 1
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": self._open, "content_block": block},
            )
        )
        return events

    def _text(self, text: str) -> list[tuple[str, dict[str, Any]]]:
        events = (
            []
            if self._open_kind == "text"
            else self._open_block("text", {"type": "text", "text": ""})
        )
        delta = {"type": "text_delta", "text": text}
        events.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": self._open, "delta": delta},
            )
        )
        return events

    def _tool(self, call: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        key = call.get("index", 0)
        function = _mapping(call.get("function"))
        events: list[tuple[str, dict[str, Any]]] = []
        if key not in self._tools:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{self.message_id}_{key}",
                "name": function.get("name") or "",
                "input": {},
            }
            events = self._open_block(key, block)
            self._tools[key] = self._blocks - 1
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": self._tools[key], "delta": delta},
                )
            )
        return events

    def feed(self, chunk: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """One OpenAI chunk -> 0..n ``(event name, data)`` pairs (the first call also
        yields ``message_start``)."""
        events = self._start()
        if not isinstance(chunk, Mapping):
            return events
        if isinstance(chunk.get("usage"), Mapping):
            self.usage = openai_usage(chunk["usage"])
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue  # Anthropic has one choice
            delta = _mapping(choice.get("delta"))
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                events.extend(self._text(text))
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else []:
                if isinstance(call, Mapping):
                    events.extend(self._tool(call))
            reason = choice.get("finish_reason")
            if reason:
                self.stop_reason = _STOP_FROM_OPENAI.get(reason, "end_turn")
        return events

    def finish(self, usage: Usage | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Close the open block, then ``message_delta`` (stop reason, usage: ``usage`` if
        given, else what the chunks reported) and ``message_stop``. Once only."""
        if self._finished:
            return []
        self._finished = True
        events = self._start() + self._close()
        final = usage or self.usage or Usage(input_tokens=self.input_tokens)
        delta = {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None}
        events.append(
            (
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": usage_to_anthropic(final)},
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def error(self, message: str, type: str = "api_error") -> list[tuple[str, dict[str, Any]]]:
        """The ``error`` event that ends a failed stream (Anthropic clients raise it)."""
        self._finished = True
        return [("error", {"type": "error", "error": {"type": type, "message": message}})]
