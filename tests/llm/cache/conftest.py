"""Fixtures of the cache's tests: a cache over each backend, with a clock the test moves."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from loopml.llm.cache import Cache, parse_cache_config
from loopml.workspace import Workspace
from services import redis_url, require_module

BACKENDS = ["sqlite-file", "postgres", "redis"]


class Clock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fresh_redis_url() -> str:
    require_module("redis")
    return f"{redis_url()}?prefix=loopml-test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache_factory(
    workspace_factory: Callable[..., Workspace], clock: Clock
) -> Iterator[Callable[..., Cache]]:
    """``make(backend="sqlite-file", ws=None, **[gateway.cache] keys)`` → an open cache
    (closed, and a Redis one emptied, after the test)."""
    made: list[Cache] = []

    def make(backend: str = "sqlite-file", ws: Workspace | None = None, **table: Any) -> Cache:
        if backend == "redis":
            table.setdefault("backend", fresh_redis_url())
            workspace = ws
        else:
            workspace = ws or workspace_factory(backend)
        cache = Cache(workspace, parse_cache_config(table), clock=clock)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        if cache.config.backend:
            cache.store_backend.clear()
        cache.close()
