"""Two gateway replicas, two processes, one cache: a semantic entry one stores is served by
the other once its background poll has indexed it (PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llm.cache.conftest import fresh_redis_url
from llm.cache.exchanges import answer, ask
from loopml.llm.cache import Cache, parse_cache_config
from loopml.workspace import Workspace

REPLICA = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from loopml.llm.cache import Cache, parse_cache_config
    from loopml.workspace import Workspace

    store_url, blobs, backend = sys.argv[1:4]
    table = {"semantic": True, "threshold": 0.8, "sync_interval": 0.1}
    ws = None
    if backend:
        table["backend"] = backend
    else:
        ws = Workspace.open(store_url=store_url, artifacts_url=blobs)
    cache = Cache(ws, parse_cache_config(table))
    cache.wait_synced()
    print("ready", flush=True)

    def ask(text):
        return {"model": "cheap", "messages": [{"role": "user", "content": text}]}

    async def main():
        for line in sys.stdin:
            verb, _, text = line.strip().partition(" ")
            if verb == "store":
                ok = await cache.store(ask(text), json.loads(sys.stdin.readline()),
                                       tenant="key:k1", route="cheap", request_id="r-child")
                print("stored" if ok else "refused", flush=True)
            elif verb == "await":
                start = time.monotonic()
                while time.monotonic() - start < 20:
                    hit = await cache.lookup(ask(text), tenant="key:k1", route="cheap")
                    if hit is not None:
                        print(json.dumps({"kind": hit.kind, "request_id": hit.request_id,
                                          "seconds": time.monotonic() - start}), flush=True)
                        break
                    await asyncio.sleep(0.02)
                else:
                    print("null", flush=True)
        cache.close()

    asyncio.run(main())
    """
)


@pytest.fixture(params=["postgres", "redis"])
def shared(
    request: pytest.FixtureRequest, db_url_factory: Callable[[str], str], tmp_path: Path
) -> Iterator[tuple[str, str, str]]:
    """(store URL, blob folder, Redis URL or "") both replicas use."""
    if request.param == "redis":
        yield "", "", fresh_redis_url()
    else:
        yield db_url_factory("postgres"), str(tmp_path / "blobs"), ""


def test_a_new_entry_reaches_the_other_replica(shared: tuple[str, str, str]) -> None:
    import json

    store_url, blobs, backend = shared
    child = subprocess.Popen(
        [sys.executable, "-c", REPLICA, store_url, blobs, backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ws = Workspace.open(store_url=store_url, artifacts_url=blobs) if not backend else None
    table = {"semantic": True, "threshold": 0.8, "sync_interval": 0.1}
    if backend:
        table["backend"] = backend
    cache = Cache(ws, parse_cache_config(table))
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready", child.stderr.read()  # type: ignore[union-attr]

        def say(*lines: str) -> str:
            for line in lines:
                child.stdin.write(line + "\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
            return child.stdout.readline().strip()  # type: ignore[union-attr]

        # This process stores; the other finds it by meaning (an exact hit would not need
        # the index) once its poll has seen the entry.
        asyncio.run(
            cache.store(
                ask("How do I reset my password?"),
                answer("Settings > Security."),
                tenant="key:k1",
                route="cheap",
                request_id="r-parent",
            )
        )
        seen = json.loads(say("await how can I reset my password"))
        assert seen is not None, child.stderr.read()  # type: ignore[union-attr]
        assert seen["kind"] == "semantic" and seen["request_id"] == "r-parent"
        print(f"visible in the other replica after {seen['seconds']:.3f} s")

        # And the other way round.
        assert say("store Where is my order 1234?", json.dumps(answer("Shipped."))) == "stored"
        cache.wait_synced()

        async def wait() -> object:
            for _ in range(1000):
                hit = await cache.lookup(
                    ask("where is my order 1234"), tenant="key:k1", route="cheap"
                )
                if hit is not None:
                    return hit
                await asyncio.sleep(0.02)
            return None

        hit = asyncio.run(wait())
        assert hit is not None and hit.kind == "semantic" and hit.request_id == "r-child"  # type: ignore[attr-defined]
    finally:
        cache.close()
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
        if backend:
            cleanup = Cache(None, parse_cache_config({"backend": backend}))
            cleanup.store_backend.clear()
            cleanup.close()
        if ws is not None:
            ws.close()
