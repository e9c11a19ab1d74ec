"""The cache the gateway asks before going upstream, and tells afterwards.

    cache = Cache(ws, parse_cache_config(gateway_config.raw.get("cache")), embed=embed_route)
    tenant = cache.tenant(key_id=key.id, team=key.team)
    hit = await cache.lookup(body, tenant=tenant, route="cheap", mode=request_mode(headers, body))
    if hit is not None:
        return hit.body                     # or hit.chunks(...) for a streaming request
    response = await upstream(body)
    await cache.store(body, response, tenant=tenant, route="cheap", request_id=rid, cost_usd=c)
    cache.close()

Every method is safe to call on the event loop: the store is read and written in the cache's
worker threads, the in-memory index is searched there too, and hits are counted in memory
and written in batches by a background thread, which also polls the shared store for other
replicas' entries (every ``sync_interval``, default 0.25 s) and sweeps expired entries and
those beyond ``max_entries`` (every :data:`SWEEP_EVERY` seconds).

Nothing the cache does fails a request: a backend that is down makes lookups misses and
drops stores, with one warning per outage (retried every :data:`RETRY_AFTER` seconds); an
entry whose answer no longer matches its checksum is never served (a miss; it is deleted and
logged); an embedding that fails leaves that request to the exact cache (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import orjson

from loopml.llm.cache.coalesce import SingleFlight
from loopml.llm.cache.config import CacheConfig, RouteCache
from loopml.llm.cache.embedders import EmbedCall, Embedder, make_embedder
from loopml.llm.cache.entities import same_entities
from loopml.llm.cache.index import VectorIndex
from loopml.llm.cache.request import (
    DEFAULT_MODE,
    Mode,
    canonical,
    exact_key,
    normalize,
    semantic_view,
    tenant_of,
)
from loopml.llm.cache.store import CacheStore, CorruptEntry, Entry, IndexRow, RedisStore, SqlStore
from loopml.llm.cache.stream import replay
from loopml.llm.types import Body
from loopml.store.blobs import hash_bytes

if TYPE_CHECKING:
    from loopml.workspace import Workspace

log = logging.getLogger("loopml.llm.cache")
T = TypeVar("T")

#: Seconds between sweeps of expired entries and entries beyond ``max_entries``.
SWEEP_EVERY = 30.0
#: Seconds a backend that failed is left alone before it is tried again.
RETRY_AFTER = 1.0
#: Seconds between writes of the hit counts.
HITS_EVERY = 1.0
#: Candidates a semantic lookup checks (nearest first) before it gives up.
CANDIDATES = 8


@dataclass(frozen=True)
class CacheHit:
    """An answer from the cache, and what the request log records of it."""

    body: Body  # the cached chat.completion
    kind: Literal["exact", "semantic"]
    similarity: float  # 1.0 for an exact hit
    request_id: str | None  # the request whose answer this is
    partition: str | None  # the semantic partition (None: exact only)
    saved_usd: float  # what the cached request cost upstream
    key: str
    query: str | None = None  # the cached question, for a semantic hit

    def log_entry(self) -> dict[str, Any]:
        """The request log's ``cache`` column (``saved_usd`` goes in its own)."""
        return {
            "kind": self.kind,
            "similarity": round(self.similarity, 6),
            "matched_request_id": self.request_id,
            "partition": self.partition,
            "key": self.key,
        }

    def chunks(self, *, include_usage: bool = True) -> list[Body]:
        """The answer as a stream of ``chat.completion.chunk`` objects (see
        :func:`loopml.llm.cache.stream.replay`)."""
        return replay(self.body, include_usage=include_usage)


@dataclass
class _Outage:
    """One warning per outage; the backend is retried every RETRY_AFTER seconds."""

    down: bool = False
    retry_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def cacheable(response: Mapping[str, Any]) -> bool:
    """True for a complete ``chat.completion`` worth keeping: it has choices, each with a
    message and a finish reason."""
    choices = response.get("choices")
    if response.get("error") or not isinstance(choices, list) or not choices:
        return False
    return all(
        isinstance(c, Mapping) and isinstance(c.get("message"), Mapping) and c.get("finish_reason")
        for c in choices
    )


class Cache:
    """The exact and semantic cache of the gateway's chat requests (see the module).

    ``store`` replaces the backend ``config.backend`` names (tests, benchmarks); ``embed`` is
    the gateway's embeddings route (``async (alias, texts) -> vectors``), needed by
    ``embedder = "gateway:<alias>"``; ``clock`` gives seconds since the epoch.
    """

    def __init__(
        self,
        workspace: Workspace | None,
        config: CacheConfig,
        *,
        embed: EmbedCall | None = None,
        store: CacheStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.workspace = workspace
        self._store_given = store
        self._store: CacheStore | None = store
        self._embed_call = embed
        self._embedder: Embedder | None = None
        self.clock = clock
        self.flights: SingleFlight[Any] = SingleFlight()
        self._index: VectorIndex | None = None
        self._seen: set[int] = set()
        self._cursor = 0
        self._hits: dict[str, tuple[int, int]] = {}
        self._hits_lock = threading.Lock()
        self._outage = _Outage()
        self._embed_failing = False
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._closed = False
        self._last_sweep = 0.0
        self._synced = threading.Event()
        if config.semantic_anywhere:  # a bad embedder spec fails here, not per request
            self._embedder = make_embedder(config.embedder, embed)

    # -- opening --------------------------------------------------------------------------

    @property
    def store_backend(self) -> CacheStore:
        """The backend: the workspace's tables, or Redis (opened on first use)."""
        if self._store is None:
            if self.config.backend:
                self._store = RedisStore(self.config.backend)
            else:
                if self.workspace is None:
                    raise ValueError("a Cache over the workspace needs one (workspace=None)")
                self._store = SqlStore(self.workspace.db, self.workspace.blobs)
        return self._store

    @property
    def embedder(self) -> Embedder:
        """The embedder ``[gateway.cache] embedder`` names (made on first use)."""
        if self._embedder is None:
            self._embedder = make_embedder(self.config.embedder, self._embed_call)
        return self._embedder

    def _start(self) -> None:
        if self._pool is not None:
            return
        with self._state_lock:
            if self._pool is not None or self._closed:
                return
            self._pool = ThreadPoolExecutor(4, thread_name_prefix="loopml-llm-cache")
            self._thread = threading.Thread(
                target=self._background, name="loopml-llm-cache-sync", daemon=True
            )
            self._thread.start()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        self._start()
        if self._pool is None:  # closed
            raise RuntimeError("the cache is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(fn, *args)
        )

    # -- outages ---------------------------------------------------------------------------

    def _guard(self, what: str, fn: Callable[[], T], default: T) -> T:
        """``fn()``, or ``default`` while the backend is down (one warning per outage)."""
        outage = self._outage
        if outage.down and time.monotonic() < outage.retry_at:
            return default
        try:
            result = fn()
        except Exception as exc:
            with outage.lock:
                outage.retry_at = time.monotonic() + RETRY_AFTER
                if not outage.down:
                    outage.down = True
                    log.warning(
                        "The gateway's cache backend failed (%s: %s); requests are served "
                        "uncached and answers not kept until it is back.",
                        what,
                        exc,
                    )
            return default
        if outage.down:
            with outage.lock:
                if outage.down:
                    outage.down = False
                    log.warning("The gateway's cache backend is back (%s succeeded).", what)
        return result

    @property
    def available(self) -> bool:
        """False while the backend is in an outage."""
        return not self._outage.down

    # -- the request path -----------------------------------------------------------------

    def tenant(self, *, key_id: str | None = None, team: str | None = None) -> str:
        """The tenant a request belongs to under ``[gateway.cache] partition``."""
        return tenant_of(self.config.partition, key_id, team)

    def key(self, body: Mapping[str, Any], *, tenant: str, route: str) -> str:
        """The exact key of a request (what :attr:`flights` coalesces on)."""
        return exact_key(normalize(body, route, self.config.ignore), tenant)

    async def _vector(self, text: str) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """The text's unit vector, or None when the embedder fails (logged once a run)."""
        try:
            rows = await self.embedder.embed([text])
            vector = np.asarray(rows[0], dtype=np.float32)
        except Exception as exc:
            if not self._embed_failing:
                self._embed_failing = True
                log.warning(
                    "The cache's embedder %s failed (%s: %s); requests use the exact cache "
                    "only until it works again.",
                    self.config.embedder,
                    type(exc).__name__,
                    exc,
                )
            return None
        if self._embed_failing:
            self._embed_failing = False
            log.warning("The cache's embedder %s works again.", self.config.embedder)
        return vector

    async def lookup(
        self,
        body: Mapping[str, Any],
        *,
        tenant: str,
        route: str,
        mode: Mode = DEFAULT_MODE,
    ) -> CacheHit | None:
        """The cached answer for a chat request, or None (a miss, a request that asked not
        to be served from the cache, a route with caching off, a backend that is down).

        ``tenant``: :meth:`tenant`'s answer for the request's key; ``route``: the model
        alias the client asked for; ``mode``: :func:`~loopml.llm.cache.request_mode`'s.
        An exact match is tried first, then (on a route with ``semantic = true``) the
        nearest earlier question of the same partition at or above the route's threshold
        whose named facts match (``second_stage = "entities"``).
        """
        settings = self.config.route(route)
        if self._closed or not settings.enabled or not mode.read:
            return None
        normalized = normalize(body, route, self.config.ignore)
        key = exact_key(normalized, tenant)
        view = semantic_view(normalized, tenant, settings.embed) if settings.semantic else None
        vector = await self._vector(view[1]) if view is not None else None
        return await self._run(
            self._guard,
            "lookup",
            functools.partial(self._lookup, key, view, vector, settings),
            None,
        )

    def _read(self, key: str, now: int) -> Entry | None:
        """The entry, or None; a corrupt one is deleted and logged, never returned."""
        store = self.store_backend
        try:
            entry = store.get(key, now)
        except CorruptEntry as exc:
            log.warning("Cache entry %s is corrupt (%s); deleted, never served.", key[:12], exc)
            store.delete([key])
            if self._index is not None:
                self._index.remove([key])
            return None
        if entry is not None and hash_bytes(entry.body) != entry.checksum:
            log.warning(
                "Cache entry %s does not match its checksum; deleted, never served.", key[:12]
            )
            store.delete([key])
            if self._index is not None:
                self._index.remove([key])
            return None
        return entry

    def _lookup(
        self,
        key: str,
        view: tuple[str, str] | None,
        vector: np.ndarray[Any, np.dtype[np.float32]] | None,
        settings: RouteCache,
    ) -> CacheHit | None:
        now = int(self.clock() * 1000)
        entry = self._read(key, now)
        if entry is not None:
            return self._hit(entry, "exact", 1.0, now)
        if view is None or vector is None:
            return None
        index = self._ensure_index(len(vector))
        if index is None:
            return None
        partition, text = view
        for match in index.search(partition, vector, settings.threshold, k=CANDIDATES, now_ms=now):
            entry = self._read(match.key, now)
            if entry is None or entry.partition != partition:
                index.remove([match.key])  # gone (evicted, cleared, expired) elsewhere
                continue
            if settings.second_stage == "entities" and not same_entities(text, entry.query or ""):
                continue
            return self._hit(entry, "semantic", match.similarity, now)
        return None

    def _hit(
        self, entry: Entry, kind: Literal["exact", "semantic"], similarity: float, now: int
    ) -> CacheHit:
        with self._hits_lock:
            count, _ = self._hits.get(entry.key, (0, 0))
            self._hits[entry.key] = (count + 1, now)
        return CacheHit(
            body=orjson.loads(entry.body),
            kind=kind,
            similarity=similarity,
            request_id=entry.request_id,
            partition=entry.partition,
            saved_usd=entry.cost_usd,
            key=entry.key,
            query=entry.query if kind == "semantic" else None,
        )

    async def store(
        self,
        body: Mapping[str, Any],
        response: Mapping[str, Any],
        *,
        tenant: str,
        route: str,
        request_id: str | None = None,
        cost_usd: float = 0.0,
        mode: Mode = DEFAULT_MODE,
    ) -> bool:
        """Keep ``response`` (a ``chat.completion``; for a stream, :class:`Assembler`'s) as
        the answer to ``body``. Returns whether it was kept: not when the request said
        ``no-store`` / ``cache: false``, the route has caching off, the answer is
        incomplete or an error, or the backend is down."""
        settings = self.config.route(route)
        if self._closed or not settings.enabled or not mode.write or not cacheable(response):
            return False
        normalized = normalize(body, route, self.config.ignore)
        key = exact_key(normalized, tenant)
        view = semantic_view(normalized, tenant, settings.embed) if settings.semantic else None
        vector = await self._vector(view[1]) if view is not None else None
        now = int(self.clock() * 1000)
        payload = orjson.dumps(dict(response))
        entry = Entry(
            key=key,
            route=route,
            tenant=tenant,
            request=canonical(normalized).decode(),
            body=payload,
            checksum=hash_bytes(payload),
            created_at=now,
            expires_at=now + int(settings.ttl * 1000) if settings.ttl is not None else None,
            cost_usd=float(cost_usd),
            request_id=request_id,
        )
        if view is not None and vector is not None:
            entry.partition, entry.query = view
            entry.embedding = vector.astype(np.float32).tobytes()
            entry.embedder = self.embedder.name
        return await self._run(
            self._guard, "store", functools.partial(self._put, entry, vector), False
        )

    def _put(self, entry: Entry, vector: np.ndarray[Any, np.dtype[np.float32]] | None) -> bool:
        self.store_backend.put(entry)
        if entry.partition is not None and vector is not None:
            index = self._ensure_index(len(vector))
            if index is not None:
                index.add(entry.partition, entry.key, vector, entry.expires_at or float("inf"))
        return True

    # -- replicas, hits, eviction ----------------------------------------------------------

    def _ensure_index(self, dim: int) -> VectorIndex | None:
        if self._index is None:
            with self._state_lock:
                if self._index is None:
                    self._index = VectorIndex(dim)
        return self._index if self._index.dim == dim else None

    def sync(self) -> int:
        """Add other replicas' new entries to this process's index now (the background
        thread does this every ``sync_interval``); returns how many were added."""
        with self._sync_lock:  # the background thread, or a caller of sync()
            store = self.store_backend
            rows, cursor = store.changes(self._cursor, int(self.clock() * 1000), self._seen)
            added = self._index_rows(rows)
            self._cursor = cursor
            return added

    def _index_rows(self, rows: list[IndexRow]) -> int:
        name = self.embedder.name if self.config.semantic_anywhere else None
        added = 0
        for row in rows:
            self._seen.add(row.seq)
            if row.embedder != name:
                continue  # another embedder's vectors can't be compared with ours
            vector = np.frombuffer(row.embedding, dtype=np.float32)
            index = self._ensure_index(len(vector))
            if index is None:
                continue
            index.add(
                row.partition,
                row.key,
                vector,
                row.expires_at if row.expires_at is not None else float("inf"),
            )
            added += 1
        if len(self._seen) > 100_000:  # only late commits need it: keep the recent ones
            self._seen = set(sorted(self._seen)[-10_000:])
        return added

    def flush_hits(self) -> None:
        """Write the hit counts gathered since the last write (the background thread does
        this every second)."""
        with self._hits_lock:
            hits, self._hits = self._hits, {}
        if hits:
            self.store_backend.touch(hits)

    def maintain(self) -> int:
        """Sweep now: delete expired entries and the least recently hit beyond
        ``max_entries``, and drop expired ones from the index; returns how many went."""
        now = int(self.clock() * 1000)
        gone = self.store_backend.sweep(now, self.config.max_entries)
        if self._index is not None:
            self._index.remove(self._index.expired(now))
            if len(self._index) > self.config.max_entries * 1.25:
                # Evicted elsewhere: rebuild from the store rather than grow without bound.
                with self._sync_lock:
                    self._index = None
                    self._cursor = 0
                    self._seen.clear()
        self._last_sweep = time.monotonic()
        return gone

    def _background(self) -> None:
        next_hits = time.monotonic() + HITS_EVERY
        self._last_sweep = time.monotonic()
        while not self._stop.is_set():
            if self.config.semantic_anywhere:
                self._guard("sync", self.sync, 0)
            self._synced.set()
            now = time.monotonic()
            if now >= next_hits:
                self._guard("hit counts", self.flush_hits, None)
                next_hits = now + HITS_EVERY
            if now - self._last_sweep >= SWEEP_EVERY:
                self._guard("sweep", self.maintain, 0)
                self._last_sweep = now
            self._stop.wait(self.config.sync_interval)

    def start(self) -> None:
        """Start the worker threads and the background sync now (else the first lookup
        does): a new replica begins loading the other replicas' entries at once."""
        self._start()

    def wait_synced(self, timeout: float = 10.0) -> bool:
        """Block until the background thread finished its first poll (tests, startup)."""
        self._start()
        return self._synced.wait(timeout)

    def close(self) -> None:
        """Stop the background thread, write the last hit counts and release the backend
        (the workspace's engine stays open)."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._store is not None:
            self._guard("hit counts", self.flush_hits, None)
            if self._store_given is None:
                with contextlib.suppress(Exception):
                    self._store.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["CANDIDATES", "Cache", "CacheHit", "cacheable"]
