"""What of a chat request the cache compares: its normalized form, its exact key, its
partition (whose answers it may be served) and the text a semantic lookup embeds.

Pure functions over the request body; no store, no clock.

- :func:`normalize` drops the fields that don't change the answer (the ignore list), ``None``
  values and parameters equal to their documented defaults (``temperature = 1``,
  ``top_p = 1``, ``n = 1``, zero penalties), writes ``1.0`` as ``1`` and trims the outer
  whitespace of message texts. The result is compared as canonical JSON, so key order and
  JSON formatting never matter.
- :func:`exact_key` hashes the tenant, the route and the normalized request (SHA-256).
- :func:`partition_of` hashes everything a semantic hit must share with the cached request:
  the tenant, the route, every parameter and every message the lookup does not embed (the
  system prompt, tools, ``response_format``, earlier turns of the conversation).
- :func:`request_mode` reads ``Cache-Control`` and the body's ``cache`` field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from loopml.llm.cache.config import EmbedPart

#: Parameters left out of the key when they hold their documented default.
_DEFAULTS: Mapping[str, Any] = {
    "temperature": 1,
    "top_p": 1,
    "n": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
}


@dataclass(frozen=True)
class Mode:
    """Whether a request may be answered from the cache (``read``) and whether its answer
    may be kept (``write``)."""

    read: bool = True
    write: bool = True


DEFAULT_MODE = Mode()
NO_CACHE = Mode(read=False, write=True)
NO_STORE = Mode(read=False, write=False)


def request_mode(
    headers: Mapping[str, str] | None = None, body: Mapping[str, Any] | None = None
) -> Mode:
    """The cache mode a request asks for: ``Cache-Control: no-cache`` (don't answer from
    the cache, but keep the fresh answer), ``no-store`` (neither) or the body field
    ``"cache": false`` (neither). Header names are matched case-insensitively.

    >>> request_mode({"Cache-Control": "no-cache"})
    Mode(read=False, write=True)
    >>> request_mode({}, {"cache": False})
    Mode(read=False, write=False)
    """
    mode = DEFAULT_MODE
    for name, value in (headers or {}).items():
        if name.lower() != "cache-control":
            continue
        directives = {part.strip().lower().split("=", 1)[0] for part in value.split(",")}
        if "no-store" in directives:
            return NO_STORE
        if "no-cache" in directives or "max-age" in directives and "max-age=0" in value.lower():
            mode = NO_CACHE
    if body is not None and body.get("cache") is False:
        return NO_STORE
    return mode


def _plain(value: Any) -> Any:
    """JSON values with integral floats as ints and dict keys as strings."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _message(message: Any) -> Any:
    if not isinstance(message, Mapping):
        return _plain(message)
    out = _plain(message)
    content = out.get("content")
    if isinstance(content, str):
        out["content"] = content.strip()
    elif isinstance(content, list):
        out["content"] = [
            {**part, "text": part["text"].strip()}
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return out


def normalize(body: Mapping[str, Any], route: str, ignore: Collection[str]) -> dict[str, Any]:
    """The request as the cache compares it: ``model`` is the route (the alias asked for),
    the ignored fields and defaults are gone (see the module).

    >>> normalize({"model": "x", "messages": [{"role": "user", "content": " hi "}],
    ...            "temperature": 1.0, "user": "u1"}, "cheap", {"user"})
    {'messages': [{'role': 'user', 'content': 'hi'}], 'model': 'cheap'}
    """
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in ignore or name == "model" or value is None:
            continue
        value = _plain(value)
        if name in _DEFAULTS and value == _DEFAULTS[name]:
            continue
        if name == "messages" and isinstance(value, list):
            value = [_message(m) for m in value]
        out[name] = value
    out["model"] = route
    return out


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace (what keys are hashed from)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()


def exact_key(normalized: Mapping[str, Any], tenant: str) -> str:
    """The exact cache's key: SHA-256 of the tenant and the normalized request (the route is
    in it as ``model``), hex."""
    return _digest(b"exact/v1", tenant.encode(), canonical(normalized))


def _text(content: Any) -> str | None:
    """A message's text, or None when it holds anything but text (an image, audio)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text":
                return None
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    return None


def _embedded(messages: list[Any], part: EmbedPart) -> list[int]:
    """Indexes of the messages a semantic lookup embeds: the last user message, or every
    user message."""
    users = [
        i for i, m in enumerate(messages) if isinstance(m, Mapping) and m.get("role") == "user"
    ]
    if not users:
        return []
    return users[-1:] if part == "last" else users


def semantic_view(
    normalized: Mapping[str, Any], tenant: str, part: EmbedPart
) -> tuple[str, str] | None:
    """``(partition, text)`` of a semantic lookup, or None when the request can't have one
    (no user message, or one holding more than text).

    The text is what is embedded (the last user message, or every user message joined by
    blank lines); the partition is a hash of everything else, so a semantic hit differs from
    the cached request in that text only.
    """
    messages = normalized.get("messages")
    if not isinstance(messages, list):
        return None
    embedded = _embedded(messages, part)
    texts = [_text(messages[i].get("content")) for i in embedded]
    if not texts or any(t is None for t in texts):
        return None
    text = "\n\n".join(t for t in texts if t is not None).strip()
    if not text:
        return None
    rest = dict(normalized)
    rest["messages"] = [
        m if i not in embedded else {"role": "user", "embedded": True}
        for i, m in enumerate(messages)
    ]
    return partition_id(tenant, rest, part), text


def partition_id(tenant: str, rest: Mapping[str, Any], part: EmbedPart) -> str:
    """A semantic partition's id: SHA-256 of the tenant, what is embedded and the rest of
    the request, hex (32 characters)."""
    return _digest(b"partition/v1", tenant.encode(), part.encode(), canonical(rest))[:32]


def tenant_of(partition: str, key_id: str | None, team: str | None) -> str:
    """The tenant whose answers a request may be served, as ``[gateway.cache] partition``
    says: its virtual key's id, its team (a key without one stays on its own), or everyone.
    Requests without a key share the tenant ``""``."""
    if partition == "none":
        return ""
    if partition == "team" and team:
        return f"team:{team}"
    return f"key:{key_id}" if key_id else ""


__all__ = [
    "DEFAULT_MODE",
    "NO_CACHE",
    "NO_STORE",
    "Mode",
    "canonical",
    "exact_key",
    "normalize",
    "partition_id",
    "request_mode",
    "semantic_view",
    "tenant_of",
]
