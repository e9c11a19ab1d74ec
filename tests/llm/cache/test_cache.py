"""The cache over every backend: exact and semantic hits, modes, TTL, eviction, tenant
isolation, corrupt entries, outages, coalescing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from llm.cache.conftest import BACKENDS, Clock
from llm.cache.exchanges import answer, ask
from loopml.llm.cache import NO_CACHE, NO_STORE, Cache, parse_cache_config, request_mode
from loopml.llm.cache.index import VectorIndex
from loopml.llm.cache.store import INLINE_MAX
from loopml.llm.tables import llm_cache_entries
from loopml.workspace import Workspace

A = "key:alice"
B = "key:bob"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def store(cache: Cache, body: dict, text: str, tenant: str = A, **kw) -> bool:  # type: ignore[no-untyped-def]
    return await cache.store(body, answer(text), tenant=tenant, route="cheap", **kw)


async def lookup(cache: Cache, body: dict, tenant: str = A, **kw):  # type: ignore[no-untyped-def]
    return await cache.lookup(body, tenant=tenant, route="cheap", **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_hit_carries_what_the_log_needs(
    backend: str, cache_factory: Callable[..., Cache]
) -> None:
    cache = cache_factory(backend)

    async def go() -> None:
        body = ask("What is the capital of France?", temperature=0)
        assert await lookup(cache, body) is None
        assert await store(cache, body, "Paris.", request_id="r1", cost_usd=0.0021)
        hit = await lookup(cache, {**body, "user": "someone-else", "stream": True})
        assert hit is not None
        assert hit.kind == "exact" and hit.similarity == 1.0
        assert hit.body == answer("Paris.")
        assert hit.request_id == "r1" and hit.saved_usd == pytest.approx(0.0021)
        assert hit.log_entry() == {
            "kind": "exact",
            "similarity": 1.0,
            "matched_request_id": "r1",
            "partition": None,
            "key": hit.key,
        }
        assert await lookup(cache, {**body, "temperature": 0.7}) is None

    run(go())
    cache.flush_hits()
    assert cache.store_backend.counts() == {"cheap": 1}


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_cache_no_store_and_cache_false(
    backend: str, cache_factory: Callable[..., Cache]
) -> None:
    cache = cache_factory(backend)

    async def go() -> None:
        body = ask("hello")
        assert not await store(cache, body, "hi", mode=NO_STORE)
        assert not await store(cache, body, "hi", mode=request_mode({}, {"cache": False}))
        assert await lookup(cache, body) is None  # nothing was kept
        assert await store(cache, body, "hi", mode=NO_CACHE)  # no-cache still writes
        assert await lookup(cache, body, mode=NO_CACHE) is None  # … but doesn't read
        assert await lookup(cache, body, mode=NO_STORE) is None
        assert (await lookup(cache, body)) is not None

    run(go())


def test_incomplete_or_error_answers_are_not_kept(cache_factory: Callable[..., Cache]) -> None:
    cache = cache_factory()

    async def go() -> None:
        body = ask("hello")
        cut = answer("hal")
        cut["choices"][0]["finish_reason"] = None
        for response in (cut, {"error": {"message": "boom"}}, {"choices": []}):
            assert not await cache.store(body, response, tenant=A, route="cheap")
        assert await lookup(cache, body) is None

    run(go())


def test_a_route_with_caching_off_neither_reads_nor_writes(
    cache_factory: Callable[..., Cache],
) -> None:
    cache = cache_factory(routes={"cheap": {"enabled": False}})

    async def go() -> None:
        assert not await store(cache, ask("hi"), "hello")
        assert await cache.store(ask("hi"), answer("hello"), tenant=A, route="other")
        assert await cache.lookup(ask("hi"), tenant=A, route="other") is not None

    run(go())


@pytest.mark.parametrize("backend", BACKENDS)
def test_ttl_expires_entries_and_the_sweep_deletes_them(
    backend: str, cache_factory: Callable[..., Cache], clock: Clock
) -> None:
    cache = cache_factory(backend, ttl=60, semantic=True)

    async def go() -> None:
        await store(cache, ask("How do I reset my password?"), "Settings > Reset.")
        clock.advance(59)
        assert (await lookup(cache, ask("How do I reset my password?"))) is not None
        assert (await lookup(cache, ask("how do I reset my password"))) is not None
        clock.advance(2)
        assert await lookup(cache, ask("How do I reset my password?")) is None
        assert await lookup(cache, ask("how do I reset my password")) is None

    run(go())
    assert cache.maintain() == 1
    assert cache.store_backend.counts() == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_eviction_keeps_the_most_recently_hit(
    backend: str, cache_factory: Callable[..., Cache], clock: Clock
) -> None:
    cache = cache_factory(backend, max_entries=3)

    async def go() -> None:
        for i in range(5):
            await store(cache, ask(f"question {i}"), f"answer {i}")
            clock.advance(1)
        assert await lookup(cache, ask("question 0")) is not None  # hit: recent again
        clock.advance(1)

    run(go())
    cache.flush_hits()
    assert cache.maintain() == 2
    assert cache.store_backend.counts() == {"cheap": 3}

    async def left() -> list[int]:
        return [i for i in range(5) if await lookup(cache, ask(f"question {i}")) is not None]

    assert run(left()) == [0, 3, 4]


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_tenant_never_gets_another_tenants_answer(
    backend: str, cache_factory: Callable[..., Cache]
) -> None:
    cache = cache_factory(backend, semantic=True, threshold=0.5, second_stage="none")

    async def go() -> None:
        await store(cache, ask("What is our Q3 revenue?"), "$4.2M (Alice's company)", tenant=A)
        assert await lookup(cache, ask("What is our Q3 revenue?"), tenant=B) is None
        assert await lookup(cache, ask("what is our q3 revenue"), tenant=B) is None
        hit = await lookup(cache, ask("what is our q3 revenue"), tenant=A)
        assert hit is not None and hit.kind == "semantic"

    run(go())


def test_partition_setting_team_and_none(cache_factory: Callable[..., Cache]) -> None:
    team = cache_factory(partition="team")
    shared = cache_factory(partition="none")

    async def go() -> None:
        t1, t2 = team.tenant(key_id="k1", team="growth"), team.tenant(key_id="k2", team="growth")
        assert t1 == t2
        await team.store(ask("hi"), answer("hello"), tenant=t1, route="cheap")
        assert await team.lookup(ask("hi"), tenant=t2, route="cheap") is not None
        other = team.tenant(key_id="k3", team="ops")
        assert await team.lookup(ask("hi"), tenant=other, route="cheap") is None
        s1, s2 = shared.tenant(key_id="k1"), shared.tenant(key_id="k2", team="x")
        await shared.store(ask("hi"), answer("hello"), tenant=s1, route="cheap")
        assert await shared.lookup(ask("hi"), tenant=s2, route="cheap") is not None

    run(go())


@pytest.mark.parametrize("backend", BACKENDS)
def test_semantic_hit_at_or_above_the_threshold_only(
    backend: str, cache_factory: Callable[..., Cache]
) -> None:
    cache = cache_factory(backend, semantic=True, threshold=0.8)
    strict = cache_factory(backend, semantic=True, threshold=0.99)

    async def go() -> None:
        original = ask("How do I reset my password?", system="You are support.")
        for c in (cache, strict):
            await store(c, original, "Settings > Security > Reset.", request_id="r1")
        near = ask("steps to reset my password", system="You are support.")
        hit = await lookup(cache, near)
        assert hit is not None and hit.kind == "semantic"
        assert 0.8 <= hit.similarity < 0.99
        assert hit.request_id == "r1" and hit.query == "How do I reset my password?"
        assert hit.log_entry()["partition"] == hit.partition and hit.partition
        assert await lookup(strict, near) is None
        # Another system prompt is another partition.
        assert await lookup(cache, ask("steps to reset my password", system="Be rude.")) is None
        assert (
            await lookup(cache, ask("What's the weather like?", system="You are support.")) is None
        )

    run(go())


def test_per_route_threshold_and_semantic_off(cache_factory: Callable[..., Cache]) -> None:
    cache = cache_factory(
        semantic=True,
        threshold=0.8,
        routes={"strict": {"threshold": 0.99}, "exact": {"semantic": False}},
    )

    async def go() -> None:
        for route in ("cheap", "strict", "exact"):
            await cache.store(
                ask("How do I reset my password?"), answer("x"), tenant=A, route=route
            )
        near = ask("steps to reset my password")
        assert await cache.lookup(near, tenant=A, route="cheap") is not None
        assert await cache.lookup(near, tenant=A, route="strict") is None
        assert await cache.lookup(near, tenant=A, route="exact") is None

    run(go())


def test_second_stage_refuses_a_different_number_or_name(
    cache_factory: Callable[..., Cache],
) -> None:
    checked = cache_factory(semantic=True, threshold=0.7)
    unchecked = cache_factory(semantic=True, threshold=0.7, second_stage="none")

    async def go() -> None:
        for c in (checked, unchecked):
            await store(c, ask("What is the battery life of the Pixel 8?"), "24 hours")
        near_miss = ask("What is the battery life of the Pixel 9?")
        assert await lookup(unchecked, near_miss) is not None  # a false hit without it
        assert await lookup(checked, near_miss) is None
        paraphrase = ask("what's the battery life of the pixel 8")
        assert await lookup(checked, paraphrase) is not None

    run(go())


def test_second_stage_falls_through_to_the_next_candidate(
    cache_factory: Callable[..., Cache],
) -> None:
    from loopml.llm.cache import HashedEmbedder

    right = "pixel 8 germany pricing"
    wrong = "What is the price of the Pixel 9 in Germany?"
    query = "What is the price of the Pixel 8 in Germany?"
    vector = HashedEmbedder().vector
    assert vector(query) @ vector(wrong) > vector(query) @ vector(right) > 0.7  # the premise
    cache = cache_factory(semantic=True, threshold=0.7)

    async def go() -> None:
        await store(cache, ask(right), "699 EUR")
        await store(cache, ask(wrong), "899 EUR")
        hit = await lookup(cache, ask(query))
        assert hit is not None and hit.body["choices"][0]["message"]["content"] == "699 EUR"

    run(go())


@pytest.mark.parametrize("backend", ["sqlite-file", "postgres"])
def test_corrupt_entry_is_never_served_and_is_deleted(
    backend: str, cache_factory: Callable[..., Cache], caplog: pytest.LogCaptureFixture
) -> None:
    cache = cache_factory(backend)
    run(store(cache, ask("hi"), "hello"))
    ws = cache.workspace
    assert ws is not None
    ws.db.transact(lambda c: c.execute(update(llm_cache_entries).values(body=b'{"choices": []}')))
    with caplog.at_level(logging.WARNING, logger="loopml.llm.cache"):
        assert run(lookup(cache, ask("hi"))) is None
    assert "does not match its checksum" in caplog.text
    with ws.db.read() as conn:
        assert conn.execute(select(llm_cache_entries.c.key)).all() == []


def test_corrupt_entry_in_redis_is_never_served(cache_factory: Callable[..., Cache]) -> None:
    cache = cache_factory("redis")
    hit_key = cache.key(ask("hi"), tenant=A, route="cheap")
    run(store(cache, ask("hi"), "hello"))
    store_ = cache.store_backend
    store_.client.hset(f"{store_.prefix}e:{hit_key}", "body", b"tampered")  # type: ignore[attr-defined]
    assert run(lookup(cache, ask("hi"))) is None
    assert store_.counts() == {}


def test_large_answer_goes_to_the_blob_store_and_a_lost_blob_is_a_miss(
    cache_factory: Callable[..., Cache],
) -> None:
    cache = cache_factory()
    big = "x" * (INLINE_MAX + 10)
    run(store(cache, ask("long one"), big))
    ws = cache.workspace
    assert ws is not None
    with ws.db.read() as conn:
        (digest,) = conn.execute(select(llm_cache_entries.c.body_blob)).scalars().all()
    assert digest and ws.blobs.exists(digest)
    hit = run(lookup(cache, ask("long one")))
    assert hit is not None and hit.body["choices"][0]["message"]["content"] == big
    ws.blobs.delete(digest)
    assert run(lookup(cache, ask("long one"))) is None
    assert cache.store_backend.counts() == {}


def test_redis_that_is_down_means_misses_and_one_warning(
    workspace_factory: Callable[..., Workspace], caplog: pytest.LogCaptureFixture
) -> None:
    cache = Cache(None, parse_cache_config({"backend": "redis://127.0.0.1:1/0", "semantic": True}))

    async def go() -> None:
        for _ in range(5):
            assert await lookup(cache, ask("hi")) is None
            assert not await store(cache, ask("hi"), "hello")

    with caplog.at_level(logging.WARNING, logger="loopml.llm.cache"):
        run(go())
        cache.close()
    warnings = [r for r in caplog.records if "cache backend failed" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert not cache.available


def test_database_that_is_down_means_misses_and_the_cache_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.open(
        store_url="postgresql+psycopg://loopml@127.0.0.1:1/nothing?connect_timeout=1",
        artifacts_url=str(tmp_path / "blobs"),
    )
    cache = Cache(ws, parse_cache_config({}))
    with caplog.at_level(logging.WARNING, logger="loopml.llm.cache"):
        assert run(lookup(cache, ask("hi"))) is None
        assert not run(store(cache, ask("hi"), "hello"))
    assert "cache backend failed" in caplog.text and not cache.available
    # Back: a working store (swapped in as an operator would fix the URL) is used again
    # once the retry interval has passed.
    from loopml.llm.cache import engine
    from loopml.llm.cache.store import SqlStore

    good = Workspace.init(tmp_path / "good")
    cache._store = SqlStore(good.db, good.blobs)
    monkeypatch.setattr(engine, "RETRY_AFTER", 0.0)
    cache._outage.retry_at = 0.0
    with caplog.at_level(logging.WARNING, logger="loopml.llm.cache"):
        assert run(store(cache, ask("hi"), "hello"))
    assert cache.available and "is back" in caplog.text
    assert run(lookup(cache, ask("hi"))) is not None
    cache.close()
    ws.close()
    good.close()


def test_a_failing_embedder_leaves_the_exact_cache_working(
    workspace_factory: Callable[..., Workspace], caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def embed(alias: str, texts: list[str]) -> list[list[float]]:
        nonlocal calls
        calls += 1
        raise ConnectionError("embedding provider down")

    cache = Cache(
        workspace_factory(),
        parse_cache_config({"semantic": True, "embedder": "gateway:emb"}),
        embed=embed,
    )

    async def go() -> None:
        assert await store(cache, ask("What is loopml?"), "A loop.")
        assert (await lookup(cache, ask("What is loopml?"))) is not None
        assert await lookup(cache, ask("what is loopml")) is None

    with caplog.at_level(logging.WARNING, logger="loopml.llm.cache"):
        run(go())
    cache.close()
    assert calls == 3
    assert caplog.text.count("embedder gateway:emb failed") == 1


def test_gateway_embedder_vectors_are_used(workspace_factory: Callable[..., Workspace]) -> None:
    from loopml.llm.cache import HashedEmbedder

    seen: list[str] = []
    hashed = HashedEmbedder(dim=64)

    async def embed(alias: str, texts: list[str]) -> list[list[float]]:
        seen.append(alias)
        return [list(map(float, hashed.vector(t) * 3)) for t in texts]  # not unit: normalised

    cache = Cache(
        workspace_factory(),
        parse_cache_config({"semantic": True, "embedder": "gateway:emb", "threshold": 0.7}),
        embed=embed,
    )

    async def go() -> None:
        await store(cache, ask("How do I reset my password?"), "x")
        hit = await lookup(cache, ask("how can I reset my password"))
        assert hit is not None and hit.kind == "semantic" and hit.similarity <= 1.0

    run(go())
    cache.close()
    assert seen == ["emb", "emb"]


def test_concurrent_identical_requests_make_one_upstream_call(
    cache_factory: Callable[..., Cache],
) -> None:
    cache = cache_factory()
    calls = 0

    async def upstream() -> dict:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return answer("Paris")

    async def request() -> tuple[dict, bool]:
        body = ask("Capital of France?")
        key = cache.key(body, tenant=A, route="cheap")
        return await cache.flights.run(key, upstream)

    async def go() -> list[tuple[dict, bool]]:
        return await asyncio.gather(*(request() for _ in range(10)))

    results = run(go())
    assert calls == 1
    assert sum(1 for _, shared in results if not shared) == 1
    assert all(body == answer("Paris") for body, _ in results)
    assert len(cache.flights) == 0


def test_coalesced_failure_reaches_every_caller_and_frees_the_key() -> None:
    from loopml.llm.cache import SingleFlight

    flights: SingleFlight[int] = SingleFlight()
    calls = 0

    async def boom() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("upstream 500")

    async def ok() -> int:
        return 7

    async def go() -> None:
        results = await asyncio.gather(
            *(flights.run("k", boom) for _ in range(4)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        assert await flights.run("k", ok) == (7, False)

    run(go())
    assert calls == 1


def test_closed_cache_answers_nothing(cache_factory: Callable[..., Cache]) -> None:
    cache = cache_factory()
    run(store(cache, ask("hi"), "hello"))
    cache.close()
    assert run(lookup(cache, ask("hi"))) is None
    assert not run(store(cache, ask("hi"), "hello"))


def test_index_prefilter_finds_what_brute_force_finds() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(64, exact_below=100)  # forces the bit-code prefilter
    for i, v in enumerate(vectors):
        index.add("p", f"k{i}", v)
    for i in range(0, 3000, 150):
        noisy = vectors[i] + 0.15 * rng.standard_normal(64).astype(np.float32)
        noisy /= np.linalg.norm(noisy)
        truth = vectors @ noisy
        threshold = 0.8
        found = index.search("p", noisy, threshold)
        best = int(np.argmax(truth))
        if truth[best] >= threshold:
            assert found and found[0].key == f"k{best}"
            assert found[0].similarity == pytest.approx(float(truth[best]), abs=1e-5)
        else:
            assert found == []
    assert index.remove(["k0", "nope"]) == 1 and "k0" not in index
    assert index.search("p", vectors[0], 0.999) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_hits_are_counted_in_batches(
    backend: str, cache_factory: Callable[..., Cache], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The background thread writes the counts every HITS_EVERY seconds: on a loaded machine
    # a second can pass between the lookups and the read below, so it waits longer here.
    monkeypatch.setattr("loopml.llm.cache.engine.HITS_EVERY", 3600.0)
    cache = cache_factory(backend)
    run(store(cache, ask("hi"), "hello"))
    for _ in range(3):
        assert run(lookup(cache, ask("hi"))) is not None
    key = cache.key(ask("hi"), tenant=A, route="cheap")
    entry = cache.store_backend.get(key, 0)
    assert entry is not None and entry.hits == 0  # not yet written: no write per hit
    cache.flush_hits()
    entry = cache.store_backend.get(key, 0)
    assert entry is not None and entry.hits == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_clear_one_route_or_all(backend: str, cache_factory: Callable[..., Cache]) -> None:
    cache = cache_factory(backend)

    async def go() -> None:
        for i, route in enumerate(("cheap", "cheap", "frontier")):
            await cache.store(ask(f"question {i}"), answer("x"), tenant=A, route=route)

    run(go())
    assert cache.store_backend.counts() == {"cheap": 2, "frontier": 1}
    assert cache.store_backend.clear("cheap") == 2
    assert cache.store_backend.counts() == {"frontier": 1}
    assert cache.store_backend.clear() == 1
    assert cache.store_backend.counts() == {}
    # The cache keeps working after a clear (a Redis clear keeps the seq counter).
    assert run(store(cache, ask("after"), "y"))
    assert run(lookup(cache, ask("after"))) is not None


def test_evicting_a_large_answer_deletes_its_blob(
    cache_factory: Callable[..., Cache], clock: Clock
) -> None:
    cache = cache_factory(max_entries=1)
    big = "x" * (INLINE_MAX + 10)
    run(store(cache, ask("first"), big))
    ws = cache.workspace
    assert ws is not None
    with ws.db.read() as conn:
        (digest,) = conn.execute(select(llm_cache_entries.c.body_blob)).scalars().all()
    clock.advance(1)
    run(store(cache, ask("second"), "small"))
    assert cache.maintain() == 1
    assert not ws.blobs.exists(digest)
    assert run(lookup(cache, ask("second"))) is not None
