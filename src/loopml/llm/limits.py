"""Rate limits and budgets shared by every gateway replica.

Counts live where every replica sees them — the metadata store (:class:`SqlCounters`:
SQLite for one machine, PostgreSQL for several) or Redis (:class:`RedisCounters`, with
``[gateway] limits_url = "redis://…"``) — never in one process's memory, so a limit of N
requests per minute admits N in total however many replicas run.

Counters are fixed windows: a scope (``"key:k_1:rpm"``, ``"team:growth:usd:month"``) and a
bucket (the start of its minute, UTC day or UTC month, epoch ms). :class:`Limiter` is what
the gateway calls: :meth:`Limiter.check_request` before dispatch, :meth:`Limiter.record`
after the answer.

    limiter = Limiter(open_counters(ws, ""))
    limiter.check_request([("key:k_1", key.limits)], estimated_tokens=900, estimated_cost=0.01)
    crossed = limiter.record([("key:k_1", key.limits)], tokens=850, cost_usd=0.0093)
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import delete

from loopml.exceptions import InvalidConfig, StoreUnavailable, missing_dependency
from loopml.llm.config import Budget, Limits
from loopml.llm.errors import BudgetExceeded, RateLimited
from loopml.llm.tables import llm_counters
from loopml.store.clock import now_ms

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from loopml.store.db import Database
    from loopml.workspace import Workspace

TABLE = llm_counters.name
#: The longest subject kept whole in a scope (the column holds 290 characters).
MAX_SUBJECT = 240
MINUTE_MS = 60_000
DAY_MS = 86_400_000
#: How long counters are kept after their last change: a minute's for two minutes, a day's
#: for two days, a month's for two months (``keys show`` reads only the current ones).
MINUTE_TTL_MS = 2 * MINUTE_MS
PERIOD_TTL_MS = {"day": 2 * DAY_MS, "month": 62 * DAY_MS}
#: SqlCounters deletes expired rows at most this often (ms), per process.
SWEEP_EVERY_MS = 60_000
DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)


class Counters(Protocol):
    """Counters shared by every gateway replica. A scope's count in a bucket starts at 0 and
    is kept at least ``ttl_ms`` after its last change (then it may read 0 again)."""

    def admit(self, scopes: Sequence[tuple[str, int]], bucket_ms: int, ttl_ms: int) -> str | None:
        """Atomically: when every ``(scope, limit)`` has count + 1 <= limit in ``bucket_ms``,
        add 1 to each and return None; else change nothing and return the first scope (in
        the order given) that is at its limit."""
        ...

    def add(self, items: Sequence[tuple[str, float]], bucket_ms: int, ttl_ms: int) -> list[float]:
        """Add each amount to its scope's count in ``bucket_ms`` (atomically per scope);
        returns the counts after, in order (what a budget alert compares with its lines)."""
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

    def add(self, items: Sequence[tuple[str, float]], bucket_ms: int, ttl_ms: int) -> list[float]:
        if not items:
            return []
        expires = now_ms() + ttl_ms

        def tx(conn: Connection) -> dict[str, float]:
            return self._upsert(conn, items, bucket_ms, expires)

        counts = self.db.transact(tx)
        return [counts[scope] for scope, _ in items]

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
        # Merge repeats and take the rows in one order in every process (no deadlocks).
        amounts: dict[str, float] = {}
        for scope, amount in items:
            amounts[scope] = amounts.get(scope, 0.0) + float(amount)
        params: list[Any] = []
        for scope in sorted(amounts):
            params += (scope, bucket_ms, amounts[scope], expires)
        # Plain SQL, written once per row count: SQLAlchemy would compile a multi-row
        # upsert on every call (~1 ms), and this runs on every request.
        sql = self._upserts.get(len(amounts))
        if sql is None:
            row = "(" + ", ".join([self._mark] * 4) + ")"
            sql = self._upserts[len(amounts)] = (
                f"INSERT INTO {TABLE} (scope, bucket, value, expires_at) VALUES "
                + ", ".join([row] * len(amounts))
                + " ON CONFLICT (scope, bucket) DO UPDATE SET "
                f"value = {TABLE}.value + excluded.value, expires_at = excluded.expires_at "
                "RETURNING scope, value"
            )
        result = conn.exec_driver_sql(sql, tuple(params))
        return {scope: float(value) for scope, value in result}

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


class RedisCounters:
    """Counters in Redis: a Lua script checks and increments an admit's counters in one
    step; amounts are added with ``INCRBYFLOAT``; every counter expires ``ttl_ms`` after its
    last change. ``url``: ``redis://host:6379/0``, with ``?prefix=name:`` to keep several
    gateways' counters apart (default ``loopml:llm:``)."""

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError as exc:
            raise missing_dependency("redis", "redis", "Gateway limits in Redis") from exc
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        self.prefix = next((v for k, v in query if k == "prefix"), "loopml:llm:")
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        self.url = urlunsplit(parts._replace(query=rest))
        self._error = redis.RedisError
        # Seconds, unless the URL says otherwise: a Redis that is gone must fail a request
        # fast, not hang it.
        try:
            self.client = redis.Redis.from_url(
                self.url, socket_timeout=2.0, socket_connect_timeout=2.0
            )
        except ValueError as exc:
            raise InvalidConfig(f"[gateway] limits_url {url!r} is not a Redis URL: {exc}") from exc
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        self._safe_url = urlunsplit(parts._replace(netloc=netloc, query=""))  # no password
        self._admit = self.client.register_script(_ADMIT)

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

    def add(self, items: Sequence[tuple[str, float]], bucket_ms: int, ttl_ms: int) -> list[float]:
        if not items:
            return []
        pipe = self.client.pipeline(transaction=True)
        for scope, amount in items:
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


# -- the limiter ----------------------------------------------------------------------------


def minute_start(now: float) -> int:
    """The start (epoch ms) of the minute holding ``now`` (epoch seconds)."""
    return int(now // 60) * MINUTE_MS


def period_start(period: str, now: float) -> int:
    """The start (epoch ms) of the UTC day or month holding ``now`` (epoch seconds).

    >>> period_start("month", 1_700_000_000.0)  # 2023-11-14T22:13:20Z
    1698796800000
    """
    moment = datetime.fromtimestamp(now, tz=UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return int(start.timestamp()) * 1000


def describe(subject: str) -> str:
    """``"team:growth"`` → ``"team growth"`` (how messages name a subject)."""
    kind, _, name = subject.partition(":")
    return f"{kind} {name}" if name else subject


def usd(amount: float) -> str:
    """Dollars for messages: cents, or 3 significant digits below a cent.

    >>> usd(50), usd(0.1234), usd(0.000315)
    ('$50.00', '$0.12', '$0.000315')
    """
    if amount != 0 and abs(amount) < 0.01:
        return f"${amount:.3g}"
    return f"${amount:,.2f}"


class Limiter:
    """Checks a request against the rate limits and budgets of its key, team and end user,
    and books what it used. ``clock`` (epoch seconds) is injectable for tests."""

    def __init__(
        self,
        counters: Counters,
        *,
        clock: Callable[[], float] = time.time,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    ) -> None:
        self.counters = counters
        self.clock = clock
        #: Fractions of a budget whose crossing :meth:`record` reports.
        self.thresholds = tuple(sorted(thresholds))

    def check_request(
        self,
        subjects: Sequence[tuple[str, Limits]],
        *,
        estimated_tokens: int,
        estimated_cost: float,
    ) -> None:
        """Refuse a request before dispatch, or count it (1 request per minute for each
        subject with an ``rpm``). Checked in order: ``max_request_cost_usd`` and budgets
        (:class:`BudgetExceeded`, 402: this period's spend + ``estimated_cost`` over the
        budget), then tokens per minute (tokens used this minute + ``estimated_tokens``) and
        requests per minute (:class:`RateLimited`, 429, with ``retry_after``: the seconds to
        the next minute). A refused request is counted nowhere."""
        if not subjects:
            return
        now = self.clock()
        for subject, limits in subjects:
            cap = limits.max_request_cost_usd
            if cap is not None and estimated_cost > cap:
                raise BudgetExceeded(
                    f"This request may cost up to {usd(estimated_cost)}, more than "
                    f"{describe(subject)}'s limit of {usd(cap)} a request; lower max_tokens "
                    "or shorten the prompt.",
                    subject=subject,
                )
        minute = minute_start(now)
        retry_after = max(0.001, (minute + MINUTE_MS) / 1000 - now)
        budgeted = [(s, lim.budget) for s, lim in subjects if lim.budget is not None]
        tpm = [(s, lim.tpm) for s, lim in subjects if lim.tpm is not None]
        if budgeted or tpm:
            counts = self.counters.read(
                [(_spend_scope(s, b.period), period_start(b.period, now)) for s, b in budgeted]
                + [(scope_name(s, "tpm"), minute) for s, _ in tpm]
            )
            spent_by, used = counts[: len(budgeted)], counts[len(budgeted) :]
            for (subject, budget), spent in zip(budgeted, spent_by, strict=True):
                if spent + estimated_cost > budget.amount_usd:
                    left = max(0.0, budget.amount_usd - spent)
                    raise BudgetExceeded(
                        f"{describe(subject)}'s budget of {usd(budget.amount_usd)}/"
                        f"{budget.period} has {usd(left)} left; this request may cost up to "
                        f"{usd(estimated_cost)}.",
                        subject=subject,
                        budget_usd=budget.amount_usd,
                        spent_usd=spent,
                    )
            for (subject, limit), tokens in zip(tpm, used, strict=True):
                if tokens + estimated_tokens > limit:
                    hint = (
                        "this request alone is over it; lower max_tokens or shorten the prompt"
                        if estimated_tokens > limit
                        else f"{max(0, limit - int(tokens)):,} are left this minute"
                    )
                    raise RateLimited(
                        f"{describe(subject)} allows {limit:,} tokens per minute and this "
                        f"request may use up to {estimated_tokens:,}: {hint}.",
                        retry_after=retry_after,
                        subject=subject,
                    )
        rpm = [(s, lim.rpm) for s, lim in subjects if lim.rpm is not None]
        if rpm:
            scopes = {scope_name(s, "rpm"): (s, limit) for s, limit in rpm}
            over = self.counters.admit(
                [(scope, limit) for scope, (_, limit) in scopes.items()], minute, MINUTE_TTL_MS
            )
            if over is not None:
                subject, limit = scopes[over]
                raise RateLimited(
                    f"{describe(subject)} allows {limit:,} request{'' if limit == 1 else 's'} per minute; retry in "
                    f"{math.ceil(retry_after)} s.",
                    retry_after=retry_after,
                    subject=subject,
                )

    def record(
        self, subjects: Sequence[tuple[str, Limits]], *, tokens: int, cost_usd: float
    ) -> list[tuple[str, Budget, float, float]]:
        """Book a finished request: its tokens in this minute (subjects with a ``tpm``) and
        its cost in this budget period (subjects with a budget). Returns the budgets whose
        threshold lines (:attr:`thresholds`, fractions of the budget) this request crossed, as
        ``(subject, budget, spent_before, spent_after)``; the counts come from the shared
        store, so each crossing is reported by exactly one replica."""
        now = self.clock()
        tpm = [(scope_name(s, "tpm"), float(tokens)) for s, lim in subjects if lim.tpm is not None]
        if tpm and tokens > 0:
            self.counters.add(tpm, minute_start(now), MINUTE_TTL_MS)
        crossed: list[tuple[str, Budget, float, float]] = []
        if cost_usd <= 0:
            return crossed
        by_period: dict[str, list[tuple[str, Budget]]] = {}
        for subject, limits in subjects:
            if limits.budget is not None:
                by_period.setdefault(limits.budget.period, []).append((subject, limits.budget))
        for period, items in by_period.items():
            after = self.counters.add(
                [(_spend_scope(s, period), cost_usd) for s, _ in items],
                period_start(period, now),
                PERIOD_TTL_MS[period],
            )
            for (subject, budget), spent in zip(items, after, strict=True):
                before = spent - cost_usd
                lines = (budget.amount_usd * t for t in self.thresholds)
                if any(before < line <= spent for line in lines):
                    crossed.append((subject, budget, before, spent))
        return crossed

    def budget_left(self, subjects: Sequence[tuple[str, Limits]]) -> tuple[str, float] | None:
        """The budgeted subject with the least left this period and how much (USD, at least
        0), or None when none has a budget: what a stream may still spend before the gateway
        cuts it (one read)."""
        budgeted = [(s, lim.budget) for s, lim in subjects if lim.budget is not None]
        if not budgeted:
            return None
        now = self.clock()
        spent = self.counters.read(
            [(_spend_scope(s, b.period), period_start(b.period, now)) for s, b in budgeted]
        )
        left = [
            (subject, max(0.0, budget.amount_usd - used))
            for (subject, budget), used in zip(budgeted, spent, strict=True)
        ]
        return min(left, key=lambda item: item[1])

    def remaining(self, subject: str, limits: Limits) -> dict[str, Any]:
        """What ``subject`` has used and has left now: ``rpm`` and ``tpm`` this minute, and
        ``budget`` this period (with the period's start, ISO 8601); a limit not set is
        left out."""
        now = self.clock()
        minute = minute_start(now)
        out: dict[str, Any] = {}
        per_minute = [(name, getattr(limits, name)) for name in ("rpm", "tpm")]
        per_minute = [(name, limit) for name, limit in per_minute if limit is not None]
        if per_minute:
            used = self.counters.get([scope_name(subject, name) for name, _ in per_minute], minute)
            for (name, limit), count in zip(per_minute, used, strict=True):
                out[name] = {"limit": limit, "used": int(count), "left": max(0, limit - int(count))}
        if limits.budget is not None:
            budget = limits.budget
            start = period_start(budget.period, now)
            (spent,) = self.counters.get([_spend_scope(subject, budget.period)], start)
            out["budget"] = {
                "amount_usd": budget.amount_usd,
                "period": budget.period,
                "period_start": datetime.fromtimestamp(start / 1000, tz=UTC).isoformat(),
                "spent_usd": spent,
                "left_usd": max(0.0, budget.amount_usd - spent),
            }
        if limits.max_request_cost_usd is not None:
            out["max_request_cost_usd"] = limits.max_request_cost_usd
        return out

    def close(self) -> None:
        self.counters.close()


def scope_name(subject: str, counter: str) -> str:
    """The counter's scope: ``"key:k_1"``, ``"rpm"`` → ``"key:k_1:rpm"``. A subject too long
    for the store's column (an end user's id is the client's to choose) is cut and given a
    hash of the whole, so two long ids never share a counter.

    >>> scope_name("user:ana", "rpm")
    'user:ana:rpm'
    >>> len(scope_name("user:" + "u" * 300, "usd:month"))
    250
    """
    if len(subject) > MAX_SUBJECT:
        digest = hashlib.sha256(subject.encode("utf-8")).hexdigest()[:16]
        subject = f"{subject[: MAX_SUBJECT - 17]}~{digest}"
    return f"{subject}:{counter}"


def _spend_scope(subject: str, period: str) -> str:
    return scope_name(subject, f"usd:{period}")


__all__ = [
    "Counters",
    "Limiter",
    "RedisCounters",
    "SqlCounters",
    "open_counters",
    "period_start",
]
