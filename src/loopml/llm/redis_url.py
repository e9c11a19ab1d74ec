"""Connecting to the Redis that a gateway's limits or cache live in, by URL.

``redis://host:6379/0?prefix=name:`` — ``prefix`` (loopml's own query parameter) keeps
several gateways' keys apart; the rest of the URL is redis-py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from loopml.exceptions import InvalidConfig, missing_dependency


@dataclass
class RedisConnection:
    """A redis-py client, the key prefix, and the URL without its password (for messages)."""

    client: Any  # redis.Redis: its annotations union every reply type of every command
    prefix: str
    url: str  # as given, without the prefix
    safe_url: str
    error: type[Exception]  # redis.RedisError


def connect(url: str, *, default_prefix: str, timeout: float, what: str) -> RedisConnection:
    """A client for ``url`` with short socket timeouts (a Redis that is gone must fail a
    request fast, not hang it). ``what`` names the setting in errors and install hints
    ("[gateway] limits_url", "[gateway.cache] backend")."""
    try:
        import redis
    except ImportError as exc:
        raise missing_dependency("redis", "redis", f"Redis for {what}") from exc
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), default_prefix)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    plain = urlunsplit(parts._replace(query=rest))
    try:
        client = redis.Redis.from_url(plain, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError as exc:
        raise InvalidConfig(f"{what} {url!r} is not a Redis URL: {exc}") from exc
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    safe = urlunsplit(parts._replace(netloc=netloc, query=""))
    return RedisConnection(client, prefix, plain, safe, redis.RedisError)
