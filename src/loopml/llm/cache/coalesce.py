"""Request coalescing: concurrent identical requests make one upstream call.

    flights = SingleFlight()
    body, shared = await flights.run(key, lambda: call_upstream(request))

The first caller with a key starts the call in a task of its own; callers arriving with the
same key while it runs await that task and get its result (``shared=True``) or its
exception. A caller that is cancelled (its client went away) leaves the call running for the
others; once it is done the key is free again, so the next request with it is a new call (or,
by then, a cache hit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """At most one call in flight per key, on one event loop."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: str, call: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``call()``'s result, shared with every concurrent caller of ``key``: returns
        ``(result, shared)``, ``shared`` false for the caller whose call ran."""
        task = self._flights.get(key)
        if task is not None:
            return await asyncio.shield(task), True

        async def flight() -> T:
            return await call()

        task = asyncio.get_running_loop().create_task(flight())
        self._flights[key] = task
        task.add_done_callback(lambda done: self._land(key, done))
        return await asyncio.shield(task), False

    def _land(self, key: str, task: asyncio.Task[T]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have gone away


__all__ = ["SingleFlight"]
