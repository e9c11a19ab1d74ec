"""Counters shared by every gateway replica: the store behind the rate limits and budgets.

Counts live where every replica sees them — the metadata store (:class:`SqlCounters`:
SQLite for one machine, PostgreSQL for several) or Redis (:class:`RedisCounters`, with
``[gateway] limits_url = "redis://…"``) — never in one process's memory, so a limit of N
requests per minute admits N in total however many replicas run. :func:`open_counters`
opens the ones ``limits_url`` names; :class:`~loopml.llm.limits.Limiter` is what the
gateway calls on top of them.

Counters are fixed windows: a scope (``"key:k_1:rpm"``, ``"team:growth:usd:month"``) and a
bucket (the start of its minute, UTC day or UTC month, epoch ms). Requests per minute are
taken in leases — blocks of :func:`lease_size` slots, sized inside the atomic step from the
count found — so near the limit a lease is 1 slot and another replica still gets the last
ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete

from loopml.exceptions import InvalidConfig, StoreUnavailable
from loopml.llm.tables import llm_counters
from loopml.store.clock import now_ms

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from loopml.store.db import Database
    from loopml.workspace import Workspace

TABLE = llm_counters.name
#: SqlCounters deletes expired rows at most this often (ms), per process.
SWEEP_EVERY_MS = 60_000
#: A lease takes at most this many request slots at once, and at most 1/LEASE_SHARE of what
#: is left of the limit (see :func:`lease_size`).
LEASE_MOST = 64
LEASE_SHARE = 16


def lease_size(limit: int, used: int) -> int:
    """How many request slots a replica takes from a counter at ``used`` of ``limit``:
    ``max(1, min(64, (limit - used) // 16))`` — blocks of up to 64 far from the limit, 1
    slot each once fewer than 32 are left, so the last slots go to whichever replica asks.

    >>> lease_size(10_000, 0), lease_size(600, 0), lease_size(600, 590)
    (64, 37, 1)
    """
    return max(1, min(LEASE_MOST, (limit - used) // LEASE_SHARE))


class Counters(Protocol):
    """Counters shared by every gateway replica. A scope's count in a bucket starts at 0 and
    is kept at least ``ttl_ms`` after its last change (then it may read 0 again)."""

    def admit(self, scopes: Sequence[tuple[str, int]], bucket_ms: int, ttl_ms: int) -> str | None:
        """Atomically: when every ``(scope, limit)`` has count + 1 <= limit in ``bucket_ms``,
        add 1 to each and return None; else change nothing and return the first scope (in
        the order given) that is at its limit."""
        ...

    def lease(
        self, scopes: Sequence[tuple[str, int]], bucket_ms: int, ttl_ms: int
    ) -> tuple[str | None, list[int]]:
        """Atomically: when every ``(scope, limit)`` has count + 1 <= limit in ``bucket_ms``,
        take a block of slots from each — :func:`lease_size` of the count found, at most
        what is left — and return ``(None, [slots taken, in order])``; else change nothing
        and return ``(first scope at its limit, [])``."""
        ...

    def add(self, items: Sequence[tuple[str, float]], bucket_ms: int, ttl_ms: int) -> list[float]:
        """Add each amount to its scope's count in ``bucket_ms`` (atomically per scope);
        returns the counts after, in order (what a budget alert compares with its lines)."""
        ...

    def add_batch(self, items: Sequence[tuple[str, int, float, int]]) -> list[float]:
        """Add ``(scope, bucket_ms, amount, ttl_ms)`` items in one transaction (one round
        trip); returns the counts after, in order."""
        ...

    def get(self, scopes: Sequence[str], bucket_ms: int) -> list[float]:
        """The counts of ``scopes`` in ``bucket_ms``, in order (0 for none)."""
        ...

    def read(self, items: Sequence[tuple[str, int]]) -> list[float]:
        """The counts of ``(scope, bucket_ms)`` pairs, in order (0 for none), in one round
        trip: a request's budgets (period buckets) and tokens (minute bucket) together."""
        ...

    def close(self) -> None:
        """Release connections (the metadata store's engine stays the workspace's)."""
        ...


# -- the metadata store ---------------------------------------------------------------------


class _Over(Exception):
    """Rolls an admit back: ``scope`` would go over its limit."""

    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


class SqlCounters:
    """Counters in the metadata store's ``llm_counters`` table, one transaction per call.

    An admit is one ``INSERT … ON CONFLICT DO UPDATE SET value = value + 1 RETURNING value``
    for all its scopes: on PostgreSQL the upsert locks each row until the transaction ends, so
    a second replica's admit waits for the first and then sees its count; on SQLite the
    transaction is ``BEGIN IMMEDIATE`` (one writer at a time). A count over its limit rolls
    the whole transaction back, so a refused request counts nowhere.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._next_sweep = 0
        self._mark = "?" if db.dialect == "sqlite" else "%s"  # the driver's placeholder
        self._upserts: dict[int, str] = {}
        self._bump = (
            f"UPDATE {TABLE} SET value = value + {self._mark} "
            f"WHERE scope = {self._mark} AND bucket = {self._mark}"
        )

    def admit(self, scopes: Sequence[tuple[str, int]], bucket_ms: int, ttl_ms: int) -> str | None:
        if not scopes:
            return None
        limits = dict(scopes)
        expires = now_ms() + ttl_ms

        def tx(conn: Connection) -> None:
            counts = self._upsert(conn, [(s, 1.0) for s, _ in scopes], bucket_ms, expires)
            for scope, _ in scopes:
                if counts[scope] > limits[scope]:
                    raise _Over(scope)
            self._maybe_sweep(conn)

        try:
            self.db.transact(tx)
        except _Over as over:
            return over.scope
        return None

    def lease(
        self, scopes: Sequence[tuple[str, int]], bucket_ms: int, ttl_ms: int
    ) -> tuple[str | None, list[int]]:
        if not scopes:
            return None, []
        limits = dict(scopes)
        expires = now_ms() + ttl_ms

        def tx(conn: Connection) -> dict[str, int]:
            # One slot each first: the upsert locks the rows (PostgreSQL) and returns the
            # counts, from which the rest of each block is sized inside the same transaction.
            counts = self._upsert(conn, [(s, 1.0) for s, _ in scopes], bucket_ms, expires)
            for scope, _ in scopes:
                if counts[scope] > limits[scope]:
                    raise _Over(scope)
            taken: dict[str, int] = {}
            for scope, limit in limits.items():
                used = int(counts[scope]) - 1
                size = min(lease_size(limit, used), limit - used)
                taken[scope] = size
                if size > 1:
                    conn.exec_driver_sql(self._bump, (float(size - 1), scope, bucket_ms))
            self._maybe_sweep(conn)
            return taken

        try:
            taken = self.db.transact(tx)
        except _Over as over:
            return over.scope, []
        return None, [taken[scope] for scope, _ in scopes]

    def add(self, items: Sequence[tuple[str, float]], bucket_ms: int, ttl_ms: int) -> list[float]:
        if not items:
            return []
        expires = now_ms() + ttl_ms

        def tx(conn: Connection) -> dict[str, float]:
            return self._upsert(conn, items, bucket_ms, expires)

        counts = self.db.transact(tx)
        return [counts[scope] for scope, _ in items]

    def add_batch(self, items: Sequence[tuple[str, int, float, int]]) -> list[float]:
        if not items:
            return []
        now = now_ms()

        def tx(conn: Connection) -> dict[tuple[str, int], float]:
            return self._upsert_rows(
                conn, [(scope, bucket, amount, now + ttl) for scope, bucket, amount, ttl in items]
            )

        counts = self.db.transact(tx)
        return [counts[(scope, bucket)] for scope, bucket, _, _ in items]

    def get(self, scopes: Sequence[str], bucket_ms: int) -> list[float]:
        if not scopes:
            return []
        wanted = sorted(set(scopes))
        marks = ", ".join([self._mark] * len(wanted))
        sql = f"SELECT scope, value FROM {TABLE} WHERE bucket = {self._mark} AND scope IN ({marks})"
        with self.db.read() as conn:
            found = {
                scope: float(value)
                for scope, value in conn.exec_driver_sql(sql, (bucket_ms, *wanted))
            }
        return [found.get(scope, 0.0) for scope in scopes]

    def read(self, items: Sequence[tuple[str, int]]) -> list[float]:
        if not items:
            return []
        wanted = sorted(set(items))
        pairs = ", ".join([f"({self._mark}, {self._mark})"] * len(wanted))
        sql = f"SELECT scope, bucket, value FROM {TABLE} WHERE (scope, bucket) IN ({pairs})"
        params = tuple(v for pair in wanted for v in pair)
        with self.db.read() as conn:
            found = {
                (scope, int(bucket)): float(value)
                for scope, bucket, value in conn.exec_driver_sql(sql, params)
            }
        return [found.get((scope, bucket), 0.0) for scope, bucket in items]

    def close(self) -> None:
        """Nothing to release: the workspace owns the engine."""

    def _upsert(
        self,
        conn: Connection,
        items: Sequence[tuple[str, float]],
        bucket_ms: int,
        expires: int,
    ) -> dict[str, float]:
        counts = self._upsert_rows(
            conn, [(scope, bucket_ms, amount, expires) for scope, amount in items]
        )
        return {scope: value for (scope, _), value in counts.items()}

    def _upsert_rows(
        self, conn: Connection, rows: Sequence[tuple[str, int, float, int]]
    ) -> dict[tuple[str, int], float]:
        """Add ``(scope, bucket, amount, expires_at)`` rows; the counts after by (scope,
        bucket)."""
        # Merge repeats and take the rows in one order in every process (no deadlocks).
        amounts: dict[tuple[str, int], list[float]] = {}
        for scope, bucket, amount, expires in rows:
            merged = amounts.setdefault((scope, int(bucket)), [0.0, float(expires)])
            merged[0] += float(amount)
            merged[1] = max(merged[1], float(expires))
        params: list[Any] = []
        for (scope, bucket), (total, latest) in sorted(amounts.items()):
            params += (scope, bucket, total, int(latest))
        # Plain SQL, written once per row count: SQLAlchemy would compile a multi-row
        # upsert on every call (~1 ms).
        sql = self._upserts.get(len(amounts))
        if sql is None:
            row = "(" + ", ".join([self._mark] * 4) + ")"
            sql = self._upserts[len(amounts)] = (
                f"INSERT INTO {TABLE} (scope, bucket, value, expires_at) VALUES "
                + ", ".join([row] * len(amounts))
                + " ON CONFLICT (scope, bucket) DO UPDATE SET "
                f"value = {TABLE}.value + excluded.value, expires_at = excluded.expires_at "
                "RETURNING scope, bucket, value"
            )
        result = conn.exec_driver_sql(sql, tuple(params))
        return {(scope, int(bucket)): float(value) for scope, bucket, value in result}

    def _maybe_sweep(self, conn: Connection) -> None:
        now = now_ms()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_MS
        conn.execute(delete(llm_counters).where(llm_counters.c.expires_at < now))


# -- Redis ----------------------------------------------------------------------------------

# KEYS: the counters; ARGV[1]: ttl (ms), ARGV[2..]: their limits. Returns 0, or the 1-based
# index of the first counter at its limit (nothing changed then).
_ADMIT = """
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count + 1 > tonumber(ARGV[i + 1]) then
    return i
  end
end
for i, key in ipairs(KEYS) do
  redis.call('INCRBYFLOAT', key, 1)
  redis.call('PEXPIRE', key, ARGV[1])
end
return 0
"""


# KEYS: the counters; ARGV[1]: ttl (ms), ARGV[2..]: their limits. Returns {i} (the 1-based
# index of the first counter at its limit; nothing changed), or {0, slots taken per counter}.
_LEASE = """
local counts = {}
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count + 1 > tonumber(ARGV[i + 1]) then
    return {i}
  end
  counts[i] = count
end
local out = {0}
for i, key in ipairs(KEYS) do
  local left = tonumber(ARGV[i + 1]) - counts[i]
  local size = math.min(math.max(1, math.min(%(most)d, math.floor(left / %(share)d))), left)
  redis.call('INCRBYFLOAT', key, size)
  redis.call('PEXPIRE', key, ARGV[1])
  out[i + 1] = size
end
return out
"""


class RedisCounters:
    """Counters in Redis: a Lua script checks and increments an admit's counters in one
    step; amounts are added with ``INCRBYFLOAT``; every counter expires ``ttl_ms`` after its
    last change. ``url``: ``redis://host:6379/0``, with ``?prefix=name:`` to keep several
    gateways' counters apart (default ``loopml:llm:``)."""

    def __init__(self, url: str) -> None:
        from loopml.llm.redis_url import connect

        # 2 s timeouts, unless the URL says otherwise
        redis = connect(url, default_prefix="loopml:llm:", timeout=2.0, what="[gateway] limits_url")
        self.client = redis.client
        self.prefix, self.url, self._safe_url = redis.prefix, redis.url, redis.safe_url
        self._error = redis.error
        self._admit = self.client.register_script(_ADMIT)
        self._lease = self.client.register_script(
            _LEASE % {"most": LEASE_MOST, "share": LEASE_SHARE}
        )

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        """Redis's errors, once, as :class:`StoreUnavailable` (the URL without password)."""
        try:
            yield
        except self._error as exc:
            raise StoreUnavailable(
                f"The gateway's Redis at {self._safe_url} is unavailable: {exc}. Check "
                "[gateway] limits_url and that Redis is running."
            ) from exc

    def _key(self, scope: str, bucket_ms: int) -> str:
        return f"{self.prefix}{scope}:{bucket_ms}"

    def admit(self, scopes: Sequence[tuple[str, int]], bucket_ms: int, ttl_ms: int) -> str | None:
        if not scopes:
            return None
        keys = [self._key(scope, bucket_ms) for scope, _ in scopes]
        with self._unavailable():
            at = int(self._admit(keys=keys, args=[ttl_ms, *(limit for _, limit in scopes)]))
        return None if at == 0 else scopes[at - 1][0]

    def lease(
        self, scopes: Sequence[tuple[str, int]], bucket_ms: int, ttl_ms: int
    ) -> tuple[str | None, list[int]]:
        if not scopes:
            return None, []
        keys = [self._key(scope, bucket_ms) for scope, _ in scopes]
        with self._unavailable():
            out = self._lease(keys=keys, args=[ttl_ms, *(limit for _, limit in scopes)])
        if int(out[0]) != 0:
            return scopes[int(out[0]) - 1][0], []
        return None, [int(size) for size in out[1:]]

    def add(self, items: Sequence[tuple[str, float]], bucket_ms: int, ttl_ms: int) -> list[float]:
        return self.add_batch([(scope, bucket_ms, amount, ttl_ms) for scope, amount in items])

    def add_batch(self, items: Sequence[tuple[str, int, float, int]]) -> list[float]:
        if not items:
            return []
        pipe = self.client.pipeline(transaction=True)
        for scope, bucket_ms, amount, ttl_ms in items:
            key = self._key(scope, bucket_ms)
            pipe.incrbyfloat(key, float(amount))
            pipe.pexpire(key, ttl_ms)
        with self._unavailable():
            results = pipe.execute()
        return [float(value) for value in results[::2]]

    def get(self, scopes: Sequence[str], bucket_ms: int) -> list[float]:
        if not scopes:
            return []
        with self._unavailable():
            values = self.client.mget([self._key(scope, bucket_ms) for scope in scopes])
        return [float(v) if v is not None else 0.0 for v in values]

    def read(self, items: Sequence[tuple[str, int]]) -> list[float]:
        if not items:
            return []
        with self._unavailable():
            values = self.client.mget([self._key(scope, bucket) for scope, bucket in items])
        return [float(v) if v is not None else 0.0 for v in values]

    def close(self) -> None:
        self.client.close()


def open_counters(ws: Workspace, limits_url: str) -> Counters:
    """The counters ``[gateway] limits_url`` names: ``""`` the workspace's metadata store,
    ``redis://…`` (or ``rediss://``, ``unix://``) a Redis server."""
    if not limits_url:
        return SqlCounters(ws.db)
    if limits_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisCounters(limits_url)
    raise InvalidConfig(
        f'[gateway] limits_url must be "" (count in the metadata store) or a redis:// URL, '
        f"got {limits_url!r}"
    )


__all__ = [
    "Counters",
    "RedisCounters",
    "SqlCounters",
    "lease_size",
    "open_counters",
]
