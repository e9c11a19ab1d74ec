"""Where cached answers live, shared by every gateway replica: the workspace
(:class:`SqlStore`: the metadata store's ``llm_cache_entries`` table, large answers in the
blob store) or Redis (:class:`RedisStore`). Both are synchronous; the cache calls them from
its worker threads, never from the event loop.

Miss semantics: :meth:`get` returns None for a key that is not there or has expired. Store
errors are raised (translated to :class:`~loopml.exceptions.StoreUnavailable` for Redis); the
cache turns them into misses and dropped stores, with one warning per outage.

Replicas keep their vector indexes in step with :meth:`changes`: every entry gets a ``seq``
that only grows. In PostgreSQL a transaction may commit after one that took a later ``seq``,
so a poll also re-reads the ids of the last :data:`LOOKBACK_MS` of entries and fetches those
it has not seen; in Redis ``seq`` is taken and the entry written in one Lua script, so order
and visibility agree.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import bindparam, delete, func, insert, or_, select, update

from loopml.exceptions import (
    BlobNotFound,
    CorruptBlob,
    StoreUnavailable,
)
from loopml.llm.tables import llm_cache_entries

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from loopml.store.blobs import BlobStore
    from loopml.store.db import Database

log = logging.getLogger("loopml.llm.cache")

#: A poll re-reads the ids of entries created this recently (ms), for late commits.
LOOKBACK_MS = 5_000
#: Responses larger than this (bytes) go to the blob store, not into the row.
INLINE_MAX = 64 * 1024
#: Rows deleted per statement when sweeping.
SWEEP_BATCH = 1_000

_E = llm_cache_entries.c


class CorruptEntry(Exception):
    """A stored answer's bytes are gone or no longer match its checksum."""


@dataclass
class Entry:
    """One cached answer and what a hit needs to be served, explained and accounted."""

    key: str
    route: str
    tenant: str
    request: str  # canonical JSON of the normalized request
    body: bytes  # the response (OpenAI chat.completion JSON)
    checksum: str  # BLAKE3 of body
    created_at: int
    expires_at: int | None
    cost_usd: float = 0.0
    request_id: str | None = None
    partition: str | None = None  # None: served by the exact cache only
    query: str | None = None
    embedding: bytes | None = None  # float32 unit vector
    embedder: str | None = None
    hits: int = 0
    seq: int = 0


@dataclass(frozen=True)
class IndexRow:
    """What a replica's vector index needs of a new entry."""

    seq: int
    key: str
    partition: str
    embedding: bytes
    embedder: str
    expires_at: int | None


class CacheStore(Protocol):
    """Cached answers shared by every replica (see the module for miss semantics)."""

    def get(self, key: str, now_ms: int) -> Entry | None:
        """The live entry under ``key``, or None. Raises :class:`CorruptEntry` when its
        answer can't be read back intact."""
        ...

    def put(self, entry: Entry) -> None:
        """Keep ``entry`` (replacing any under its key), with a new ``seq``."""
        ...

    def changes(self, cursor: int, now_ms: int, seen: set[int]) -> tuple[list[IndexRow], int]:
        """Entries with an embedding added since ``cursor`` (and late commits not in
        ``seen``), and the new cursor."""
        ...

    def touch(self, hits: Mapping[str, tuple[int, int]]) -> None:
        """Count hits: ``{key: (hits, last hit ms)}``."""
        ...

    def delete(self, keys: Sequence[str]) -> int:
        """Delete these entries; returns how many were there."""
        ...

    def sweep(self, now_ms: int, max_entries: int) -> int:
        """Delete expired entries, then the least recently hit beyond ``max_entries``;
        returns how many went."""
        ...

    def clear(self, route: str | None = None) -> int:
        """Delete every entry (of ``route``); returns how many went."""
        ...

    def counts(self) -> dict[str, int]:
        """Live entries by route."""
        ...

    def close(self) -> None:
        """Release connections (a workspace's engine stays the workspace's)."""
        ...


# -- the workspace --------------------------------------------------------------------------


class SqlStore:
    """Entries in the metadata store's ``llm_cache_entries`` table; answers over
    :data:`INLINE_MAX` bytes in the blob store (content-addressed, so equal answers share
    one blob; a blob is deleted with the last entry that names it)."""

    def __init__(self, db: Database, blobs: BlobStore | None = None) -> None:
        self.db = db
        self.blobs = blobs

    def get(self, key: str, now_ms: int) -> Entry | None:
        with self.db.read() as conn:
            row = conn.execute(select(llm_cache_entries).where(_E.key == key)).mappings().first()
        if row is None or (row["expires_at"] is not None and row["expires_at"] <= now_ms):
            return None
        body = row["body"]
        if body is None:
            if self.blobs is None or row["body_blob"] is None:
                raise CorruptEntry(f"entry {key[:12]} has no body")
            try:
                body = self.blobs.get_bytes(row["body_blob"])
            except (BlobNotFound, CorruptBlob) as exc:
                raise CorruptEntry(str(exc)) from exc
        return Entry(
            key=row["key"],
            route=row["route"],
            tenant=row["tenant"],
            request=row["request"],
            body=bytes(body),
            checksum=row["checksum"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            cost_usd=row["cost_usd"],
            request_id=row["request_id"],
            partition=row["partition"],
            query=row["query"],
            embedding=bytes(row["embedding"]) if row["embedding"] is not None else None,
            embedder=row["embedder"],
            hits=row["hits"],
            seq=row["seq"],
        )

    def put(self, entry: Entry) -> None:
        blob = None
        if len(entry.body) > INLINE_MAX and self.blobs is not None:
            blob = self.blobs.put_bytes(entry.body)
        values = {
            "key": entry.key,
            "partition": entry.partition,
            "route": entry.route,
            "tenant": entry.tenant,
            "request": entry.request,
            "query": entry.query,
            "body": None if blob else entry.body,
            "body_blob": blob,
            "checksum": entry.checksum,
            "embedding": entry.embedding,
            "embedder": entry.embedder,
            "request_id": entry.request_id,
            "cost_usd": entry.cost_usd,
            "hits": 0,
            "created_at": entry.created_at,
            "last_hit_at": entry.created_at,
            "expires_at": entry.expires_at,
        }

        def tx(conn: Connection) -> list[str]:
            # Delete + insert (not an upsert): the entry must get a new seq, so replicas
            # index the new vector.
            old = (
                conn.execute(
                    delete(llm_cache_entries).where(_E.key == entry.key).returning(_E.body_blob)
                )
                .scalars()
                .all()
            )
            conn.execute(insert(llm_cache_entries).values(**values))
            return [b for b in old if b and b != blob]

        self._drop_blobs(self.db.transact(tx))

    def changes(self, cursor: int, now_ms: int, seen: set[int]) -> tuple[list[IndexRow], int]:
        columns = (_E.seq, _E.key, _E.partition, _E.embedding, _E.embedder, _E.expires_at)
        with self.db.read() as conn:
            late = (
                conn.execute(
                    select(_E.seq).where(
                        _E.created_at >= now_ms - LOOKBACK_MS,
                        _E.seq <= cursor,
                        _E.embedding.is_not(None),
                    )
                )
                .scalars()
                .all()
            )
            missing = [s for s in late if s not in seen]
            condition = _E.seq > cursor
            if missing:
                condition = or_(condition, _E.seq.in_(missing))
            rows = conn.execute(
                select(*columns)
                .where(condition, _E.embedding.is_not(None), _E.partition.is_not(None))
                .order_by(_E.seq)
            ).all()
            # Entries without an embedding move the cursor too.
            top = conn.execute(select(func.max(_E.seq))).scalar()
        out = [
            IndexRow(r.seq, r.key, r.partition, bytes(r.embedding), r.embedder, r.expires_at)
            for r in rows
        ]
        return out, max(cursor, int(top or 0), *(r.seq for r in out))

    def touch(self, hits: Mapping[str, tuple[int, int]]) -> None:
        if not hits:
            return
        statement = (
            update(llm_cache_entries)
            .where(_E.key == bindparam("k"))
            .values(hits=_E.hits + bindparam("n"), last_hit_at=bindparam("at"))
        )
        params = [{"k": k, "n": n, "at": at} for k, (n, at) in hits.items()]
        self.db.transact(lambda conn: conn.execute(statement, params))

    def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        return self._delete(_E.key.in_(list(keys)))

    def _delete(self, condition: Any, limit: int | None = None) -> int:
        def tx(conn: Connection) -> list[str | None]:
            target: Any = condition
            if limit is not None:
                target = _E.seq.in_(
                    select(_E.seq).where(condition).order_by(_E.last_hit_at).limit(limit)
                )
            return list(
                conn.execute(delete(llm_cache_entries).where(target).returning(_E.body_blob))
                .scalars()
                .all()
            )

        gone = self.db.transact(tx)
        self._drop_blobs([b for b in gone if b])
        return len(gone)

    def _drop_blobs(self, digests: Sequence[str]) -> None:
        if not digests or self.blobs is None:
            return
        with self.db.read() as conn:
            still = set(
                conn.execute(select(_E.body_blob).where(_E.body_blob.in_(set(digests))))
                .scalars()
                .all()
            )
        for digest in set(digests) - still:
            with contextlib.suppress(BlobNotFound):
                self.blobs.delete(digest)

    def sweep(self, now_ms: int, max_entries: int) -> int:
        gone = 0
        while True:
            batch = self._delete(
                (_E.expires_at.is_not(None)) & (_E.expires_at <= now_ms), SWEEP_BATCH
            )
            gone += batch
            if batch < SWEEP_BATCH:
                break
        with self.db.read() as conn:
            total = int(
                conn.execute(select(func.count()).select_from(llm_cache_entries)).scalar() or 0
            )
        over = total - max_entries
        while over > 0:
            batch = self._delete(_E.seq.is_not(None), min(over, SWEEP_BATCH))
            gone += batch
            over -= batch
            if batch == 0:
                break
        return gone

    def clear(self, route: str | None = None) -> int:
        return self._delete(_E.route == route if route is not None else _E.seq.is_not(None))

    def counts(self) -> dict[str, int]:
        from loopml.store.clock import now_ms

        live = or_(_E.expires_at.is_(None), _E.expires_at > now_ms())
        with self.db.read() as conn:
            rows = conn.execute(select(_E.route, func.count()).where(live).group_by(_E.route)).all()
        return {route: int(n) for route, n in rows}

    def close(self) -> None:
        """Nothing to release: the engine is the workspace's."""


# -- Redis ----------------------------------------------------------------------------------

# KEYS: entry hash, log zset, lru zset, seq counter. ARGV: key, expire-at ms (0: never),
# then field/value pairs. Takes a seq and writes the entry in one step.
_PUT = """
local seq = redis.call('INCR', KEYS[4])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'seq', seq, unpack(ARGV, 3))
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('ZADD', KEYS[3], redis.call('HGET', KEYS[1], 'created_at'), ARGV[1])
return seq
"""

_FIELDS = (
    "route",
    "tenant",
    "request",
    "body",
    "checksum",
    "created_at",
    "expires_at",
    "cost_usd",
    "request_id",
    "partition",
    "query",
    "embedding",
    "embedder",
    "hits",
    "seq",
)


class RedisStore:
    """Entries in Redis: one hash per entry (expiring with it), a sorted set of keys by
    ``seq`` (what replicas poll) and one by last hit (what eviction pops). ``url``:
    ``redis://host:6379/0``, with ``?prefix=name:`` to keep several caches apart (default
    ``loopml:llm:cache:``). Timeouts are short: a Redis that is gone must cost a request a
    miss, not a wait."""

    def __init__(self, url: str, *, timeout: float = 0.5) -> None:
        from loopml.llm.redis_url import connect

        redis = connect(
            url, default_prefix="loopml:llm:cache:", timeout=timeout, what="[gateway.cache] backend"
        )
        self.client: Any = redis.client
        self.prefix, self.safe_url, self._error = redis.prefix, redis.safe_url, redis.error
        self._put = self.client.register_script(_PUT)
        self._log = f"{self.prefix}log"
        self._lru = f"{self.prefix}lru"
        self._seq = f"{self.prefix}seq"

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except self._error as exc:
            raise StoreUnavailable(
                f"The cache's Redis at {self.safe_url} is unavailable: {exc}. Check "
                "[gateway.cache] backend and that Redis is running."
            ) from exc

    def _entry(self, key: str) -> str:
        return f"{self.prefix}e:{key}"

    def get(self, key: str, now_ms: int) -> Entry | None:
        with self._unavailable():
            values = self.client.hmget(self._entry(key), _FIELDS)
        row = dict(zip(_FIELDS, values, strict=True))
        if row["seq"] is None:
            return None
        expires = int(row["expires_at"]) if row["expires_at"] else None
        if expires is not None and expires <= now_ms:
            return None
        if row["body"] is None or row["checksum"] is None:
            raise CorruptEntry(f"entry {key[:12]} has no body")

        def text(name: str) -> str | None:
            value = row[name]
            return value.decode() if value else None

        return Entry(
            key=key,
            route=text("route") or "",
            tenant=text("tenant") or "",
            request=text("request") or "{}",
            body=bytes(row["body"]),
            checksum=text("checksum") or "",
            created_at=int(row["created_at"] or 0),
            expires_at=expires,
            cost_usd=float(row["cost_usd"] or 0.0),
            request_id=text("request_id"),
            partition=text("partition"),
            query=text("query"),
            embedding=row["embedding"] or None,
            embedder=text("embedder"),
            hits=int(row["hits"] or 0),
            seq=int(row["seq"]),
        )

    def put(self, entry: Entry) -> None:
        fields: dict[str, Any] = {
            "route": entry.route,
            "tenant": entry.tenant,
            "request": entry.request,
            "body": entry.body,
            "checksum": entry.checksum,
            "created_at": entry.created_at,
            "expires_at": entry.expires_at or "",
            "cost_usd": entry.cost_usd,
            "request_id": entry.request_id or "",
            "partition": entry.partition or "",
            "query": entry.query or "",
            "embedding": entry.embedding or b"",
            "embedder": entry.embedder or "",
            "hits": 0,
        }
        args: list[Any] = [entry.key, entry.expires_at or 0]
        for name, value in fields.items():
            args.extend((name, value))
        with self._unavailable():
            self._put(keys=[self._entry(entry.key), self._log, self._lru, self._seq], args=args)

    def changes(self, cursor: int, now_ms: int, seen: set[int]) -> tuple[list[IndexRow], int]:
        with self._unavailable():
            found = self.client.zrangebyscore(self._log, f"({cursor}", "+inf", withscores=True)
            if not found:
                return [], cursor
            pipe = self.client.pipeline(transaction=False)
            for member, _ in found:
                pipe.hmget(
                    self._entry(member.decode()),
                    ("seq", "partition", "embedding", "embedder", "expires_at"),
                )
            rows = pipe.execute()
        out = []
        for (member, score), (seq, partition, embedding, embedder, expires) in zip(
            found, rows, strict=True
        ):
            if seq is None or int(seq) != int(score) or not embedding or not partition:
                continue  # gone, replaced since, or exact only
            out.append(
                IndexRow(
                    int(seq),
                    member.decode(),
                    partition.decode(),
                    bytes(embedding),
                    embedder.decode(),
                    int(expires) if expires else None,
                )
            )
        return out, max(cursor, int(found[-1][1]))

    def touch(self, hits: Mapping[str, tuple[int, int]]) -> None:
        if not hits:
            return
        pipe = self.client.pipeline(transaction=False)
        for key, (n, at) in hits.items():
            pipe.hincrby(self._entry(key), "hits", n)
            pipe.zadd(self._lru, {key: at}, xx=True)
        with self._unavailable():
            pipe.execute()
        # HINCRBY on an entry that expired meanwhile made a hash with only "hits": drop them.
        with self._unavailable():
            pipe = self.client.pipeline(transaction=False)
            for key in hits:
                pipe.hexists(self._entry(key), "seq")
            exists = pipe.execute()
            orphans = [self._entry(k) for k, ok in zip(hits, exists, strict=True) if not ok]
            if orphans:
                self.client.delete(*orphans)

    def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        with self._unavailable():
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(*(self._entry(k) for k in keys))
            pipe.zrem(self._log, *keys)
            pipe.zrem(self._lru, *keys)
            return int(pipe.execute()[0])

    def sweep(self, now_ms: int, max_entries: int) -> int:
        gone = 0
        with self._unavailable():
            # Hashes expire by themselves (PEXPIREAT); drop their keys from the sorted sets,
            # and delete those expired by the caller's clock that Redis still holds.
            cursor = 0
            while True:
                cursor, members = self.client.zscan(self._lru, cursor, count=SWEEP_BATCH)
                keys = [m.decode() for m, _ in members]
                if keys:
                    pipe = self.client.pipeline(transaction=False)
                    for key in keys:
                        pipe.hmget(self._entry(key), ("seq", "expires_at"))
                    dead = [
                        k
                        for k, (seq, expires) in zip(keys, pipe.execute(), strict=True)
                        if seq is None or (expires and int(expires) <= now_ms)
                    ]
                    if dead:
                        gone += self.delete(dead)
                if cursor == 0:
                    break
            over = int(self.client.zcard(self._lru)) - max_entries
            while over > 0:
                popped = self.client.zpopmin(self._lru, min(over, SWEEP_BATCH))
                if not popped:
                    break
                keys = [m.decode() for m, _ in popped]
                self.client.delete(*(self._entry(k) for k in keys))
                self.client.zrem(self._log, *keys)
                gone += len(keys)
                over -= len(keys)
        return gone

    def clear(self, route: str | None = None) -> int:
        gone = 0
        with self._unavailable():
            if route is None:
                # Not the seq counter: other replicas' cursors must stay below new entries.
                keys = [
                    k
                    for k in self.client.scan_iter(match=f"{self.prefix}*", count=1000)
                    if k != self._seq.encode()
                ]
                for start in range(0, len(keys), SWEEP_BATCH):
                    self.client.delete(*keys[start : start + SWEEP_BATCH])
                return sum(1 for k in keys if k.startswith(f"{self.prefix}e:".encode()))
            members = [m.decode() for m in self.client.zrange(self._lru, 0, -1)]
            for start in range(0, len(members), SWEEP_BATCH):
                batch = members[start : start + SWEEP_BATCH]
                pipe = self.client.pipeline(transaction=False)
                for key in batch:
                    pipe.hget(self._entry(key), "route")
                mine = [
                    k for k, r in zip(batch, pipe.execute(), strict=True) if r == route.encode()
                ]
                gone += self.delete(mine)
        return gone

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._unavailable():
            members = [m.decode() for m in self.client.zrange(self._lru, 0, -1)]
            for start in range(0, len(members), SWEEP_BATCH):
                pipe = self.client.pipeline(transaction=False)
                for key in members[start : start + SWEEP_BATCH]:
                    pipe.hget(self._entry(key), "route")
                for route in pipe.execute():
                    if route is not None:
                        out[route.decode()] = out.get(route.decode(), 0) + 1
        return out

    def close(self) -> None:
        self.client.close()


__all__ = [
    "INLINE_MAX",
    "LOOKBACK_MS",
    "CacheStore",
    "CorruptEntry",
    "Entry",
    "IndexRow",
    "RedisStore",
    "SqlStore",
]
