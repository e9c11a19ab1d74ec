"""OpenAI Chat Completions -> Anthropic Messages: requests, responses, stream events.

The gateway speaks OpenAI's shape inside (:data:`~loopml.llm.types.Body`); a request is
turned into what an Anthropic provider takes (the Anthropic adapter), and the gateway's
answer into what a client of ``/v1/messages`` expects::

    OpenAI-shaped body ──openai_to_anthropic_request──► Anthropic provider

    Anthropic client ◄──openai_to_anthropic_response / OpenAIToAnthropicStream── gateway

What Anthropic cannot take is dropped (``seed``, ``logprobs``, ``stream_options``, …),
``reasoning_effort`` becomes a ``thinking`` budget, never an error; what would change the
meaning of a request (an unknown role, tool arguments that are not JSON, ``n > 1``) is a
:class:`~loopml.llm.errors.BadRequest` naming the offending entry.

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
import uuid
from collections.abc import Mapping
from typing import Any

from loopml.llm.errors import BadRequest
from loopml.llm.translate.usage import _mapping, openai_usage, usage_to_anthropic
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

_STOP_FROM_OPENAI = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_TOOL_CHOICE_TO_ANTHROPIC = {"auto": "auto", "none": "none", "required": "any"}


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
