"""Rate limits and budgets shared by every gateway replica.

Counts live where every replica sees them — the metadata store
(:class:`~loopml.llm.counters.SqlCounters`: SQLite for one machine, PostgreSQL for several)
or Redis (:class:`~loopml.llm.counters.RedisCounters`, with ``[gateway] limits_url =
"redis://…"``), both in :mod:`loopml.llm.counters` — never in one process's memory, so a
limit of N requests per minute admits N in total however many replicas run.

Counters are fixed windows: a scope (``"key:k_1:rpm"``, ``"team:growth:usd:month"``) and a
bucket (the start of its minute, UTC day or UTC month, epoch ms). :class:`Limiter` is what
the gateway calls: :meth:`Limiter.check_request` before dispatch, :meth:`Limiter.record`
after the answer, :meth:`Limiter.close` on shutdown.

    from loopml.llm.counters import open_counters

    limiter = Limiter(open_counters(ws, ""), on_crossing=emit_event)
    limiter.check_request([("key:k_1", key.limits)], estimated_tokens=900, estimated_cost=0.01)
    crossed = limiter.record([("key:k_1", key.limits)], tokens=850, cost_usd=0.0093)
    limiter.close()  # writes what is still booked

The store is not touched on every request, and the limits stay exact across replicas:

- **Requests per minute** are taken from the shared counter in leases — blocks of
  ``max(1, min(64, (limit - used) // 16))`` slots, sized inside the atomic step from the
  count found — and admitted locally from the block: one store write per lease. Every
  admission uses a slot taken atomically from the shared counter, so N per minute admits at
  most N across all replicas; near the limit leases are 1 slot, so another replica still
  gets the last ones. The cost: slots leased by a replica that then gets no more traffic
  that minute are lost — at most ~1/16 of what was left at the lease, none once fewer than
  32 are left. Leases belong to one minute and die with it.
- **Budgets and tokens per minute** are read from the store at most every ``read_ttl``
  seconds (default 1.0) per counter and process; between reads a process adds what it
  booked itself, so it sees its own spend at once and other replicas' within ``read_ttl``
  (a burst of replicas may together overshoot a budget by what they admit in that time).
- **Bookings** (:meth:`Limiter.record`) are written in batches, one transaction every
  ``flush_interval`` seconds (default 0.25) and on :meth:`Limiter.flush`/``close``; a
  process killed outright loses at most that interval's bookings. Budget alerts are
  computed from the totals the store returns for each batch, so each threshold crossing is
  still reported by exactly one replica.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidInput
from loopml.llm.config import Budget, Limits
from loopml.llm.errors import BudgetExceeded, RateLimited

if TYPE_CHECKING:
    from loopml.llm.counters import Counters

log = logging.getLogger(__name__)

#: The longest subject kept whole in a scope (the column holds 290 characters).
MAX_SUBJECT = 240
MINUTE_MS = 60_000
DAY_MS = 86_400_000
#: How long counters are kept after their last change: a minute's for two minutes, a day's
#: for two days, a month's for two months (``keys show`` reads only the current ones).
MINUTE_TTL_MS = 2 * MINUTE_MS
PERIOD_TTL_MS = {"day": 2 * DAY_MS, "month": 62 * DAY_MS}
DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)


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


#: One reported budget threshold crossing: ``(subject, budget, spent_before, spent_after)``.
Crossing = tuple[str, Budget, float, float]


class _Tally:
    """What this process knows of one counter (a scope in a bucket): the store's value as
    last read (``value``, at ``read_at`` on the limiter's clock, when this process had
    ``base`` committed), and what this process has added (``added``) and committed."""

    __slots__ = ("added", "base", "committed", "read_at", "reading", "value")

    def __init__(self) -> None:
        self.added = 0.0
        self.committed = 0.0
        self.value = 0.0
        self.base = 0.0
        self.read_at: float | None = None
        self.reading = 0

    def view(self) -> float:
        # The store's count as read, plus everything booked here that the read may not
        # have seen (pending, being written, or committed after the read began).
        return self.value + self.added - self.base


class Limiter:
    """Checks a request against the rate limits and budgets of its key, team and end user,
    and books what it used, doing as little store I/O per request as stays exact.

    **Requests per minute: leases.** A replica takes request slots from the shared counter
    in blocks (:func:`~loopml.llm.counters.lease_size`: up to 64, at most 1/16 of what is
    left, 1 once fewer than 32 remain) and admits locally from its block: one store write
    per block, not per request. Every admission uses a slot taken atomically from the shared counter, so all
    replicas together never admit more than the limit. Slots a replica leased and then had
    no traffic for are lost to the minute — at most ~1/16 of what was left when it leased,
    and none once fewer than 32 are left; leases belong to one minute and die with it.

    **Budgets and tokens per minute: cached reads.** The spend and token counts read from
    the store are reused for up to ``read_ttl`` seconds (on ``clock``), plus whatever this
    process booked since (kept locally, written or not): a replica sees its own spend at
    once and other replicas' within ``read_ttl``. A batch being written while the read ran
    may be counted twice until the next read — the safe direction.

    **Bookings: batched.** :meth:`record` adds to an in-memory batch; the batch is written
    in one transaction at most every ``flush_interval`` seconds (``0``: at every record) —
    by the :meth:`record` that finds it due, by a background thread when no record comes,
    and by :meth:`flush`/:meth:`close` (and at interpreter exit, as a last resort). Budget
    threshold crossings are computed from the totals the store returns for each batch
    (before = after - the batch's amount), so each is reported once across replicas: by
    the call that flushed it (:meth:`record`, :meth:`flush`, :meth:`close` return them), or,
    for a batch the background thread wrote, to ``on_crossing(crossing)`` — without one,
    the next :meth:`record`/:meth:`flush`/:meth:`close` returns them.
    """

    def __init__(
        self,
        counters: Counters,
        *,
        clock: Callable[[], float] = time.time,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        read_ttl: float = 1.0,
        flush_interval: float = 0.25,
        on_crossing: Callable[[Crossing], None] | None = None,
    ) -> None:
        if not read_ttl >= 0:
            raise InvalidInput(f"Limiter read_ttl must be 0 or more seconds, got {read_ttl!r}.")
        if not flush_interval >= 0:
            raise InvalidInput(
                f"Limiter flush_interval must be 0 or more seconds, got {flush_interval!r}."
            )
        self.counters = counters
        self.clock = clock
        #: Fractions of a budget whose crossing :meth:`record` reports.
        self.thresholds = tuple(sorted(thresholds))
        self.read_ttl = read_ttl
        self.flush_interval = flush_interval
        self.on_crossing = on_crossing
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._leases: dict[tuple[str, int], int] = {}  # (rpm scope, minute) -> slots left
        self._lease_minute = 0
        self._tallies: dict[tuple[str, int], _Tally] = {}
        self._pending: dict[tuple[str, int], list[float]] = {}  # key -> [amount, ttl_ms]
        self._writing: dict[tuple[str, int], float] = {}  # the batch being written
        self._budgets: dict[tuple[str, int], tuple[str, Budget]] = {}  # spend key -> budget
        self._unclaimed: list[Crossing] = []
        self._last_flush = -math.inf
        self._next_prune = 0.0
        self._periods: dict[tuple[str, int], int] = {}  # (period, UTC day) -> its start
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._at_exit: Callable[[], None] | None = None
        self._closed = False

    # -- before dispatch ------------------------------------------------------------------

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
        the next minute). A refused request is counted nowhere. Usually answered from this
        process's leases and cached reads; goes to the store when a lease is used up or a
        read is older than ``read_ttl``."""
        self._check(subjects, estimated_tokens, estimated_cost, wait=True)

    def try_check_request(
        self,
        subjects: Sequence[tuple[str, Limits]],
        *,
        estimated_tokens: int,
        estimated_cost: float,
    ) -> bool:
        """:meth:`check_request` without ever waiting on the store (safe on an event loop):
        True when admitted, a refusal raised as there, and False — nothing counted — when
        the answer needs the store; then call :meth:`check_request` (in a thread)."""
        return self._check(subjects, estimated_tokens, estimated_cost, wait=False)

    def _check(
        self,
        subjects: Sequence[tuple[str, Limits]],
        estimated_tokens: int,
        estimated_cost: float,
        *,
        wait: bool,
    ) -> bool:
        if not subjects:
            return True
        now = self.clock()
        budgeted: list[tuple[str, Budget]] = []
        tpm: list[tuple[str, int]] = []
        rpm: list[tuple[str, int]] = []
        for subject, limits in subjects:
            cap = limits.max_request_cost_usd
            if cap is not None and estimated_cost > cap:
                raise BudgetExceeded(
                    f"This request may cost up to {usd(estimated_cost)}, more than "
                    f"{describe(subject)}'s limit of {usd(cap)} a request; lower max_tokens "
                    "or shorten the prompt.",
                    subject=subject,
                )
            if limits.budget is not None:
                budgeted.append((subject, limits.budget))
            if limits.tpm is not None:
                tpm.append((subject, limits.tpm))
            if limits.rpm is not None:
                rpm.append((subject, limits.rpm))
        minute = int(now // 60) * MINUTE_MS
        if budgeted or tpm:
            counts = self._view(
                [
                    (_spend_scope(s, b.period), self._period_start(b.period, now))
                    for s, b in budgeted
                ]
                + [(scope_name(s, "tpm"), minute) for s, _ in tpm],
                now,
                wait=wait,
            )
            if counts is None:
                return False
            for (subject, budget), spent in zip(budgeted, counts, strict=False):
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
            for (subject, limit), tokens in zip(tpm, counts[len(budgeted) :], strict=True):
                if tokens + estimated_tokens > limit:
                    hint = (
                        "this request alone is over it; lower max_tokens or shorten the prompt"
                        if estimated_tokens > limit
                        else f"{max(0, limit - int(tokens)):,} are left this minute"
                    )
                    raise RateLimited(
                        f"{describe(subject)} allows {limit:,} tokens per minute and this "
                        f"request may use up to {estimated_tokens:,}: {hint}.",
                        retry_after=max(0.001, (minute + MINUTE_MS) / 1000 - now),
                        subject=subject,
                    )
        if rpm:
            return self._take_slot(rpm, minute, now, wait=wait)
        return True

    def _take_slot(
        self, rpm: list[tuple[str, int]], minute: int, now: float, *, wait: bool
    ) -> bool:
        """Use one leased slot of every rpm scope, leasing more from the store as needed."""
        scopes = {scope_name(s, "rpm"): (s, limit) for s, limit in rpm}
        leases = self._leases
        while True:
            with self._lock:
                if minute != self._lease_minute:  # leases die with their minute
                    self._leases = leases = {k: n for k, n in leases.items() if k[1] >= minute}
                    self._lease_minute = max(minute, self._lease_minute)
                needed = [
                    (scope, limit)
                    for scope, (_, limit) in scopes.items()
                    if leases.get((scope, minute), 0) <= 0
                ]
                if not needed:
                    for scope in scopes:
                        leases[(scope, minute)] -= 1
                    return True
            if not wait:
                return False
            over, taken = self.counters.lease(needed, minute, MINUTE_TTL_MS)
            if over is not None:
                subject, limit = scopes[over]
                retry_after = max(0.001, (minute + MINUTE_MS) / 1000 - now)
                raise RateLimited(
                    f"{describe(subject)} allows {limit:,} request{'' if limit == 1 else 's'} "
                    f"per minute; retry in {math.ceil(retry_after)} s.",
                    retry_after=retry_after,
                    subject=subject,
                )
            with self._lock:
                leases = self._leases
                for (scope, _), size in zip(needed, taken, strict=True):
                    leases[(scope, minute)] = leases.get((scope, minute), 0) + size
            # Loop: another thread may have used the new slots meanwhile; then lease again.

    def _view(self, keys: list[tuple[str, int]], now: float, *, wait: bool) -> list[float] | None:
        """The counts of ``(scope, bucket)`` keys as this process sees them (see the class);
        reads the stale ones from the store in one round trip, or None (``wait=False``)."""
        with self._lock:
            tallies = self._tallies
            stale: list[tuple[tuple[str, int], _Tally, float]] = []
            for key in keys:
                tally = tallies.get(key)
                if tally is None:
                    tally = tallies[key] = _Tally()
                if tally.read_at is None or not 0 <= now - tally.read_at < self.read_ttl:
                    stale.append((key, tally, tally.committed))
            if not stale:
                return [tallies[key].view() for key in keys]
            if not wait:
                return None
            for _, tally, _ in stale:
                tally.reading += 1
        try:
            values = self.counters.read([key for key, _, _ in stale])
        finally:
            with self._lock:
                for _, tally, _ in stale:
                    tally.reading -= 1
        with self._lock:
            for (key, tally, base), value in zip(stale, values, strict=True):
                if tally.read_at is None or tally.read_at <= now:
                    tally.value, tally.base, tally.read_at = value, base, now
                self._tallies.setdefault(key, tally)
            out = [self._tallies[key].view() for key in keys]
            self._maybe_prune()
        return out

    def _period_start(self, period: str, now: float) -> int:
        day = int(now // 86_400)
        start = self._periods.get((period, day))
        if start is None:
            if len(self._periods) > 16:
                self._periods.clear()
            start = self._periods[(period, day)] = period_start(period, now)
        return start

    # -- after the answer -----------------------------------------------------------------

    def record(
        self,
        subjects: Sequence[tuple[str, Limits]],
        *,
        tokens: int,
        cost_usd: float,
        defer: bool = False,
    ) -> list[Crossing]:
        """Book a finished request: its tokens in this minute (subjects with a ``tpm``) and
        its cost in this budget period (subjects with a budget). They count in this
        process's checks at once and are written to the shared store in a batch (see the
        class). Returns the budget threshold crossings (lines at :attr:`thresholds`,
        fractions of the budget) of the batch this call wrote, if it wrote one, and any the
        background writer found with no ``on_crossing`` to take them; else []. Each is
        ``(subject, budget, spent_before, spent_after)`` and is reported by exactly one
        replica. A store that fails keeps the batch for the next write (logged).

        ``defer=True`` never writes on the caller's thread (safe on an event loop): the
        background writer writes the batch, and its crossings go to ``on_crossing``."""
        now = self.clock()
        items: list[tuple[tuple[str, int], float, int]] = []
        if tokens > 0:
            minute = int(now // 60) * MINUTE_MS
            for subject, limits in subjects:
                if limits.tpm is not None:
                    items.append(
                        ((scope_name(subject, "tpm"), minute), float(tokens), MINUTE_TTL_MS)
                    )
        budgets: list[tuple[tuple[str, int], str, Budget]] = []
        if cost_usd > 0:
            for subject, limits in subjects:
                budget = limits.budget
                if budget is not None:
                    key = (
                        _spend_scope(subject, budget.period),
                        self._period_start(budget.period, now),
                    )
                    items.append((key, float(cost_usd), PERIOD_TTL_MS[budget.period]))
                    budgets.append((key, subject, budget))
        with self._lock:
            for key, amount, ttl in items:
                pending = self._pending.get(key)
                if pending is None:
                    self._pending[key] = [amount, ttl]
                else:
                    pending[0] += amount
                tally = self._tallies.get(key)
                if tally is None:
                    tally = self._tallies[key] = _Tally()
                tally.added += amount
            for key, subject, budget in budgets:
                self._budgets[key] = (subject, budget)
            due = time.monotonic() - self._last_flush >= self.flush_interval
            unclaimed, self._unclaimed = self._unclaimed, []
        if not items:
            return unclaimed
        if due and not defer:
            try:
                return unclaimed + self._flush()
            except Exception:
                log.warning(
                    "Could not write the gateway's limit counters; will retry", exc_info=True
                )
                self._start_writer()
                return unclaimed
        self._start_writer()
        return unclaimed

    def flush(self) -> list[Crossing]:
        """Write what is booked and not yet written now, in one transaction; returns its
        threshold crossings (and any the background writer kept for a caller). On a store
        error the batch is kept for the next write and the error raised."""
        with self._lock:
            unclaimed, self._unclaimed = self._unclaimed, []
        try:
            return unclaimed + self._flush()
        except Exception:
            with self._lock:
                self._unclaimed[:0] = unclaimed
            raise

    def _flush(self) -> list[Crossing]:
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
                self._last_flush = time.monotonic()
                if not batch:
                    return []
                self._writing = {key: amount for key, (amount, _) in batch.items()}
            rows = [
                (scope, bucket, amount, int(ttl))
                for (scope, bucket), (amount, ttl) in batch.items()
            ]
            try:
                totals = self.counters.add_batch(rows)
            except BaseException:
                with self._lock:
                    self._writing = {}
                    for key, (amount, ttl) in batch.items():  # back in line for the next write
                        pending = self._pending.get(key)
                        if pending is None:
                            self._pending[key] = [amount, ttl]
                        else:
                            pending[0] += amount
                raise
            crossings: list[Crossing] = []
            with self._lock:
                self._writing = {}
                for (scope, bucket, amount, _), total in zip(rows, totals, strict=True):
                    key = (scope, bucket)
                    tally = self._tallies.get(key)
                    if tally is not None:
                        tally.committed += amount
                    known = self._budgets.get(key)
                    if known is None:
                        continue
                    subject, budget = known
                    before = total - amount
                    if any(before < budget.amount_usd * t <= total for t in self.thresholds):
                        crossings.append((subject, budget, before, total))
                self._maybe_prune()
            return crossings

    def _maybe_prune(self) -> None:
        """Forget counters this process no longer needs (called with the lock held)."""
        moment = time.monotonic()
        if moment < self._next_prune:
            return
        self._next_prune = moment + max(10.0, 2 * self.read_ttl)
        now = self.clock()
        for key in [
            key
            for key, tally in self._tallies.items()
            if not tally.reading
            and key not in self._pending
            and key not in self._writing
            and (tally.read_at is None or not 0 <= now - tally.read_at < self.read_ttl)
        ]:
            del self._tallies[key]
            self._budgets.pop(key, None)

    def _start_writer(self) -> None:
        if self._thread is None and self.flush_interval > 0 and not self._closed:
            with self._lock:
                if self._thread is not None or self._closed:
                    return
                self._thread = threading.Thread(
                    target=self._write_loop, name="loopml-llm-limits", daemon=True
                )
                self._thread.start()
                self._at_exit = functools.partial(_close_at_exit, weakref.ref(self))
                atexit.register(self._at_exit)
        self._wake.set()

    def _write_loop(self) -> None:
        while True:
            self._wake.wait()
            if self._stop.is_set():
                return
            delay = self._last_flush + self.flush_interval - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            self._wake.clear()
            try:
                crossings = self._flush()
            except Exception:
                # Kept for the next record's write, flush() or close(): a store that is
                # gone (a closed workspace) is not retried in a loop.
                log.warning(
                    "Could not write the gateway's limit counters; they are kept for the next "
                    "write",
                    exc_info=True,
                )
                continue
            self._deliver(crossings)

    def _deliver(self, crossings: list[Crossing]) -> None:
        if not crossings:
            return
        if self.on_crossing is None:
            with self._lock:
                self._unclaimed.extend(crossings)
            return
        for crossing in crossings:
            try:
                self.on_crossing(crossing)
            except Exception:
                log.exception("on_crossing failed for %s", crossing[0])

    # -- reading --------------------------------------------------------------------------

    def budget_left(self, subjects: Sequence[tuple[str, Limits]]) -> tuple[str, float] | None:
        """The budgeted subject with the least left this period and how much (USD, at least
        0), or None when none has a budget: what a stream may still spend before the gateway
        cuts it (this process's view: see the class)."""
        budgeted = [(s, lim.budget) for s, lim in subjects if lim.budget is not None]
        if not budgeted:
            return None
        now = self.clock()
        spent = self._view(
            [(_spend_scope(s, b.period), self._period_start(b.period, now)) for s, b in budgeted],
            now,
            wait=True,
        )
        assert spent is not None
        left = [
            (subject, max(0.0, budget.amount_usd - used))
            for (subject, budget), used in zip(budgeted, spent, strict=True)
        ]
        return min(left, key=lambda item: item[1])

    def remaining(self, subject: str, limits: Limits) -> dict[str, Any]:
        """What ``subject`` has used and has left now: ``rpm`` and ``tpm`` this minute, and
        ``budget`` this period (with the period's start, ISO 8601); a limit not set is
        left out. Read from the store now, plus what this process booked and has not
        written yet; ``rpm`` counts slots other replicas leased and have not used yet."""
        now = self.clock()
        minute = minute_start(now)
        out: dict[str, Any] = {}
        per_minute = [(name, getattr(limits, name)) for name in ("rpm", "tpm")]
        per_minute = [(name, limit) for name, limit in per_minute if limit is not None]
        if per_minute:
            scopes = [scope_name(subject, name) for name, _ in per_minute]
            used = self.counters.get(scopes, minute)
            for (name, limit), scope, count in zip(per_minute, scopes, used, strict=True):
                with self._lock:
                    if name == "rpm":
                        count -= self._leases.get((scope, minute), 0)
                    else:
                        count += self._unwritten((scope, minute))
                out[name] = {"limit": limit, "used": int(count), "left": max(0, limit - int(count))}
        if limits.budget is not None:
            budget = limits.budget
            start = period_start(budget.period, now)
            scope = _spend_scope(subject, budget.period)
            (spent,) = self.counters.get([scope], start)
            with self._lock:
                spent += self._unwritten((scope, start))
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

    def _unwritten(self, key: tuple[str, int]) -> float:
        pending = self._pending.get(key)
        return (pending[0] if pending else 0.0) + self._writing.get(key, 0.0)

    def close(self) -> list[Crossing]:
        """Stop the background writer, write what is booked, and release the counters.
        Returns the last crossings when there is no ``on_crossing`` (which gets them
        otherwise). Idempotent."""
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            thread = self._thread
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(5)
        if self._at_exit is not None:
            atexit.unregister(self._at_exit)
        crossings: list[Crossing] = []
        try:
            crossings = self.flush()
        except Exception:
            log.exception("Could not write the gateway's last limit counters")
        finally:
            self.counters.close()
        if self.on_crossing is not None:
            self._deliver(crossings)
            return []
        return crossings


def _close_at_exit(ref: weakref.ReferenceType[Limiter]) -> None:
    limiter = ref()
    if limiter is not None:
        with contextlib.suppress(Exception):
            limiter.close()


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
    "Crossing",
    "Limiter",
    "period_start",
]
