"""Shared rate limits and budgets: one contract suite for every Counters implementation
(SQLite file, PostgreSQL, Redis), two processes that together admit exactly N requests a
minute, and the Limiter's budgets, tokens per minute and threshold crossings on an injected
clock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loopml.exceptions import InvalidConfig, StoreUnavailable
from loopml.llm.config import Budget, Limits
from loopml.llm.counters import Counters, RedisCounters, SqlCounters, open_counters
from loopml.llm.errors import BudgetExceeded, RateLimited
from loopml.llm.limits import MINUTE_TTL_MS, Limiter, period_start
from loopml.workspace import Workspace
from services import redis_url, require_module

BACKENDS = ["sqlite-file", "postgres", "redis"]


def _redis_url() -> str:
    require_module("redis")
    return f"{redis_url()}?prefix=loopml-test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture(params=BACKENDS)
def counters_url(
    request: pytest.FixtureRequest, workspace_factory: Callable[..., Workspace]
) -> tuple[str, str]:
    """(kind, URL): ``("sql", store URL)`` or ``("redis", redis URL with a fresh prefix)``."""
    if request.param == "redis":
        return "redis", _redis_url()
    ws = workspace_factory(request.param)
    ws.db.engine  # noqa: B018 (opens and migrates the store)
    return "sql", ws.db.url


def _open(kind: str, url: str) -> Counters:
    if kind == "redis":
        return RedisCounters(url)
    from loopml.store.db import Database

    return SqlCounters(Database(url))


@pytest.fixture
def counters(counters_url: tuple[str, str]) -> Iterator[Counters]:
    opened = _open(*counters_url)
    yield opened
    opened.close()


BUCKET = 1_800_000_000_000


# -- the contract every implementation keeps ---------------------------------------------------


def test_admit_counts_up_to_each_limit(counters: Counters) -> None:
    scopes = [("key:a:rpm", 3), ("team:t:rpm", 5)]
    assert [counters.admit(scopes, BUCKET, MINUTE_TTL_MS) for _ in range(4)] == [
        None,
        None,
        None,
        "key:a:rpm",
    ]
    assert counters.get(["key:a:rpm", "team:t:rpm"], BUCKET) == [3.0, 3.0]


def test_a_refused_admit_changes_nothing(counters: Counters) -> None:
    assert counters.admit([("team:t:rpm", 1)], BUCKET, MINUTE_TTL_MS) is None
    # key b has room, team t has none: neither is counted.
    assert counters.admit([("key:b:rpm", 10), ("team:t:rpm", 1)], BUCKET, MINUTE_TTL_MS) == (
        "team:t:rpm"
    )
    assert counters.get(["key:b:rpm", "team:t:rpm"], BUCKET) == [0.0, 1.0]
    # The first scope over its limit is named, in the order given.
    assert counters.admit([("team:t:rpm", 1), ("key:b:rpm", 0)], BUCKET, MINUTE_TTL_MS) == (
        "team:t:rpm"
    )
    assert counters.admit([("key:c:rpm", 0)], BUCKET, MINUTE_TTL_MS) == "key:c:rpm"
    assert counters.admit([], BUCKET, MINUTE_TTL_MS) is None


def test_buckets_are_separate(counters: Counters) -> None:
    assert counters.admit([("key:a:rpm", 1)], BUCKET, MINUTE_TTL_MS) is None
    assert counters.admit([("key:a:rpm", 1)], BUCKET, MINUTE_TTL_MS) == "key:a:rpm"
    assert counters.admit([("key:a:rpm", 1)], BUCKET + 60_000, MINUTE_TTL_MS) is None
    assert counters.get(["key:a:rpm"], BUCKET + 120_000) == [0.0]


def test_add_returns_the_totals_after(counters: Counters) -> None:
    assert counters.add([("key:a:usd:day", 0.25), ("team:t:usd:day", 1.5)], BUCKET, 60_000) == [
        0.25,
        1.5,
    ]
    after = counters.add([("key:a:usd:day", 0.125)], BUCKET, 60_000)
    assert after == [pytest.approx(0.375)]
    assert counters.get(["team:t:usd:day", "nobody", "key:a:usd:day"], BUCKET) == [
        1.5,
        0.0,
        pytest.approx(0.375),
    ]
    assert counters.add([], BUCKET, 60_000) == []
    assert counters.get([], BUCKET) == []


def test_read_takes_scopes_in_different_buckets(counters: Counters) -> None:
    counters.add([("key:a:usd:month", 2.5)], BUCKET, 60_000)
    counters.add([("key:a:tpm", 7)], BUCKET + 60_000, 60_000)
    assert counters.read(
        [("key:a:tpm", BUCKET + 60_000), ("key:a:usd:month", BUCKET), ("key:a:tpm", BUCKET)]
    ) == [7.0, 2.5, 0.0]
    assert counters.read([]) == []


# -- THE test: two processes share one limit -------------------------------------------------

HAMMER = textwrap.dedent(
    """
    import os, sys, time
    from loopml.llm.config import Limits
    from loopml.llm.errors import RateLimited
    from loopml.llm.counters import RedisCounters, SqlCounters
    from loopml.llm.limits import Limiter
    from loopml.store.db import Database

    kind, url, go, tries, limit = sys.argv[1:6]
    counters = RedisCounters(url) if kind == "redis" else SqlCounters(Database(url))
    # One fixed minute for both processes: the test is about sharing, not about the clock.
    limiter = Limiter(counters, clock=lambda: 1_800_000_015.0)
    subjects = [("key:k_shared", Limits(rpm=int(limit)))]
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)
    admitted = 0
    for _ in range(int(tries)):
        try:
            limiter.check_request(subjects, estimated_tokens=0, estimated_cost=0.0)
            admitted += 1
        except RateLimited:
            pass
    print(admitted, flush=True)
    """
)


def test_two_processes_admit_exactly_n_per_minute(
    counters_url: tuple[str, str], tmp_path: Path
) -> None:
    kind, url = counters_url
    limit, tries = 25, 40
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, kind, url, str(go), str(tries), str(limit)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()  # type: ignore[union-attr]
        go.touch()  # both start hammering at once
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    admitted = [int(out.strip()) for out, _ in outputs]
    assert sum(admitted) == limit, admitted  # N in total, not 2N
    counters = _open(kind, url)
    try:
        (count,) = counters.get(["key:k_shared:rpm"], 1_800_000_000_000 // 60_000 * 60_000)
    finally:
        counters.close()
    assert count == limit


# -- the limiter ------------------------------------------------------------------------------


MakeLimiter = Callable[..., Limiter]


@pytest.fixture
def make_limiter() -> Iterator[MakeLimiter]:
    """Limiters closed at the end of the test (their background writers stopped before the
    workspace goes)."""
    made: list[Limiter] = []

    def make(counters: Counters, **kwargs: Any) -> Limiter:
        made.append(Limiter(counters, **kwargs))
        return made[-1]

    yield make
    for limiter in made:
        limiter.close()


class Clock:
    def __init__(self, at: str) -> None:
        self.now = datetime.fromisoformat(at).timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, at: str) -> None:
        self.now = datetime.fromisoformat(at).timestamp()


@pytest.fixture
def sql_counters(sqlite_ws: Workspace) -> SqlCounters:
    return SqlCounters(sqlite_ws.db)


def test_rpm_names_the_limit_and_says_when_to_retry(
    sql_counters: SqlCounters, make_limiter: MakeLimiter
) -> None:
    clock = Clock("2026-03-01T10:00:15+00:00")
    limiter = make_limiter(sql_counters, clock=clock)
    key = ("key:k_1", Limits(rpm=2))
    team = ("team:growth", Limits(rpm=3))
    for _ in range(2):
        limiter.check_request([key, team], estimated_tokens=10, estimated_cost=0.0)
    with pytest.raises(RateLimited, match="key k_1 allows 2 requests per minute") as info:
        limiter.check_request([key, team], estimated_tokens=10, estimated_cost=0.0)
    assert info.value.retry_after == pytest.approx(45.0)
    assert info.value.status == 429
    # The team has one request left, which another key of it may use.
    other = ("key:k_2", Limits(rpm=5))
    limiter.check_request([other, team], estimated_tokens=10, estimated_cost=0.0)
    with pytest.raises(RateLimited, match="team growth allows 3 requests per minute"):
        limiter.check_request([other, team], estimated_tokens=10, estimated_cost=0.0)
    clock.set("2026-03-01T10:01:00+00:00")  # a new minute
    limiter.check_request([key, team], estimated_tokens=10, estimated_cost=0.0)


def test_tpm_counts_tokens_used_and_the_estimate(
    sql_counters: SqlCounters, make_limiter: MakeLimiter
) -> None:
    clock = Clock("2026-03-01T10:00:50+00:00")
    limiter = make_limiter(sql_counters, clock=clock)
    subjects = [("user:ana", Limits(tpm=1000))]
    limiter.check_request(subjects, estimated_tokens=900, estimated_cost=0.0)
    limiter.record(subjects, tokens=800, cost_usd=0.0)
    limiter.check_request(subjects, estimated_tokens=200, estimated_cost=0.0)  # 800 + 200
    with pytest.raises(RateLimited, match="user ana allows 1,000 tokens per minute") as info:
        limiter.check_request(subjects, estimated_tokens=201, estimated_cost=0.0)
    assert "200 are left this minute" in info.value.message
    assert info.value.retry_after == pytest.approx(10.0)
    with pytest.raises(RateLimited, match="this request alone is over it"):
        limiter.check_request(subjects, estimated_tokens=1001, estimated_cost=0.0)
    clock.set("2026-03-01T10:01:00+00:00")
    limiter.check_request(subjects, estimated_tokens=1000, estimated_cost=0.0)


def test_a_refused_request_uses_no_rpm(
    sql_counters: SqlCounters, make_limiter: MakeLimiter
) -> None:
    limiter = make_limiter(sql_counters, clock=Clock("2026-03-01T10:00:00+00:00"))
    subjects = [("key:k_1", Limits(rpm=1, budget=Budget(1.0, "day")))]
    with pytest.raises(BudgetExceeded):
        limiter.check_request(subjects, estimated_tokens=1, estimated_cost=2.0)
    limiter.check_request(subjects, estimated_tokens=1, estimated_cost=0.5)  # the one request


def test_budget_says_which_and_what_is_left(
    sql_counters: SqlCounters, make_limiter: MakeLimiter
) -> None:
    limiter = make_limiter(sql_counters, clock=Clock("2026-01-31T23:59:00+00:00"))
    team = ("team:growth", Limits(budget=Budget(50.0, "month")))
    limiter.record([team], tokens=100, cost_usd=49.88)
    with pytest.raises(BudgetExceeded) as info:
        limiter.check_request([team], estimated_tokens=100, estimated_cost=0.30)
    assert info.value.message == (
        "team growth's budget of $50.00/month has $0.12 left; this request may cost up to $0.30."
    )
    assert info.value.status == 402
    limiter.check_request([team], estimated_tokens=100, estimated_cost=0.12)


def test_budgets_start_again_each_period(
    sql_counters: SqlCounters, make_limiter: MakeLimiter
) -> None:
    clock = Clock("2026-01-31T23:59:59+00:00")
    limiter = make_limiter(sql_counters, clock=clock)
    month = ("team:growth", Limits(budget=Budget(10.0, "month")))
    day = ("key:k_1", Limits(budget=Budget(1.0, "day")))
    limiter.record([month, day], tokens=0, cost_usd=1.0)
    with pytest.raises(BudgetExceeded, match="key k_1's budget of \\$1.00/day has \\$0.00 left"):
        limiter.check_request([month, day], estimated_tokens=0, estimated_cost=0.01)
    clock.set("2026-02-01T00:00:00+00:00")  # a new day and a new month
    limiter.check_request([month, day], estimated_tokens=0, estimated_cost=1.0)
    limiter.record([month, day], tokens=0, cost_usd=1.0)
    clock.set("2026-02-02T12:00:00+00:00")  # a new day, the same month
    limiter.record([month, day], tokens=0, cost_usd=0.5)
    assert limiter.remaining("team:growth", month[1])["budget"]["spent_usd"] == pytest.approx(1.5)
    assert limiter.remaining("key:k_1", day[1])["budget"]["spent_usd"] == pytest.approx(0.5)


def test_max_request_cost(sql_counters: SqlCounters, make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(sql_counters)
    subjects = [("key:k_1", Limits(max_request_cost_usd=0.10))]
    limiter.check_request(subjects, estimated_tokens=10, estimated_cost=0.10)
    with pytest.raises(BudgetExceeded, match="more than key k_1's limit of \\$0.10 a request"):
        limiter.check_request(subjects, estimated_tokens=10, estimated_cost=0.25)


def test_record_reports_each_threshold_crossing_once(
    sql_counters: SqlCounters, make_limiter: MakeLimiter
) -> None:
    # flush_interval=0: every record is written at once and reports its own crossings.
    limiter = make_limiter(sql_counters, clock=Clock("2026-03-05T08:00:00+00:00"), flush_interval=0)
    budget = Budget(10.0, "day")
    key = ("key:k_1", Limits(budget=budget))
    free = ("user:ana", Limits(rpm=100))  # no budget: never reported
    steps = [(4.0, []), (2.0, [(4.0, 6.0)]), (3.0, [(6.0, 9.0)]), (1.0, [(9.0, 10.0)])]
    for cost, expected in steps:
        crossed = limiter.record([key, free], tokens=10, cost_usd=cost)
        assert [(s, b) for s, b, _, _ in crossed] == [("key:k_1", budget)] * len(expected)
        assert [(before, after) for _, _, before, after in crossed] == [
            (pytest.approx(b), pytest.approx(a)) for b, a in expected
        ]
    assert limiter.record([key], tokens=10, cost_usd=1.0) == []  # past 100%: nothing new
    custom = make_limiter(sql_counters, clock=limiter.clock, thresholds=[0.25], flush_interval=0)
    other = ("team:t", Limits(budget=Budget(4.0, "day")))
    assert [s for s, *_ in custom.record([other], tokens=0, cost_usd=1.0)] == ["team:t"]


def test_remaining(sql_counters: SqlCounters, make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(sql_counters, clock=Clock("2026-03-05T08:00:30+00:00"))
    limits = Limits(rpm=10, tpm=1000, budget=Budget(5.0, "month"), max_request_cost_usd=1.0)
    subjects = [("key:k_1", limits)]
    limiter.check_request(subjects, estimated_tokens=10, estimated_cost=0.1)
    limiter.record(subjects, tokens=120, cost_usd=0.75)
    assert limiter.remaining("key:k_1", limits) == {
        "rpm": {"limit": 10, "used": 1, "left": 9},
        "tpm": {"limit": 1000, "used": 120, "left": 880},
        "budget": {
            "amount_usd": 5.0,
            "period": "month",
            "period_start": "2026-03-01T00:00:00+00:00",
            "spent_usd": 0.75,
            "left_usd": 4.25,
        },
        "max_request_cost_usd": 1.0,
    }
    assert limiter.remaining("key:k_2", Limits()) == {}


def test_period_start() -> None:
    now = datetime(2026, 3, 5, 8, 30, tzinfo=UTC).timestamp()
    assert period_start("day", now) == datetime(2026, 3, 5, tzinfo=UTC).timestamp() * 1000
    assert period_start("month", now) == datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000


def test_open_counters(sqlite_ws: Workspace) -> None:
    assert isinstance(open_counters(sqlite_ws, ""), SqlCounters)
    with pytest.raises(InvalidConfig, match="limits_url"):
        open_counters(sqlite_ws, "memcached://x")


@pytest.mark.slow
def test_open_counters_redis_keeps_its_prefix(sqlite_ws: Workspace) -> None:
    url = _redis_url()
    counters = open_counters(sqlite_ws, url)
    assert isinstance(counters, RedisCounters)
    try:
        prefix = url.partition("prefix=")[2]
        assert counters.prefix == prefix
        counters.add([("key:a:tpm", 5)], BUCKET, 60_000)
        assert counters.client.get(f"{prefix}key:a:tpm:{BUCKET}") == b"5"
        assert 0 < counters.client.pttl(f"{prefix}key:a:tpm:{BUCKET}") <= 60_000
    finally:
        counters.client.delete(f"{prefix}key:a:tpm:{BUCKET}")
        counters.close()


def test_long_end_user_ids_get_their_own_counters(ws: Workspace, make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(SqlCounters(ws.db), clock=Clock("2026-03-05T08:00:00+00:00"))
    one, two = "user:" + "a" * 300 + "1", "user:" + "a" * 300 + "2"
    limits = Limits(rpm=1, tpm=100, budget=Budget(1.0, "day"))
    for subject in (one, two):
        limiter.check_request([(subject, limits)], estimated_tokens=10, estimated_cost=0.1)
        limiter.record([(subject, limits)], tokens=10, cost_usd=0.1)
    with pytest.raises(RateLimited, match="allows 1 request per minute"):
        limiter.check_request([(one, limits)], estimated_tokens=10, estimated_cost=0.1)
    assert limiter.remaining(two, limits)["tpm"]["used"] == 10


def test_a_redis_that_is_gone_is_one_clear_error() -> None:
    require_module("redis")
    counters = RedisCounters("redis://:secret@127.0.0.1:1/0?prefix=x:")
    try:
        with pytest.raises(StoreUnavailable, match="Redis at redis://127.0.0.1:1/0") as info:
            counters.admit([("key:a:rpm", 1)], BUCKET, MINUTE_TTL_MS)
        assert "secret" not in str(info.value)
        with pytest.raises(StoreUnavailable):
            counters.read([("key:a:tpm", BUCKET)])
    finally:
        counters.close()


def test_budget_left_names_the_tightest_budget(
    sql_counters: SqlCounters, make_limiter: MakeLimiter
) -> None:
    limiter = make_limiter(sql_counters, clock=Clock("2026-03-05T08:00:00+00:00"))
    key = ("key:k_1", Limits(budget=Budget(1.0, "day")))
    team = ("team:growth", Limits(budget=Budget(50.0, "month")))
    assert limiter.budget_left([("user:ana", Limits(rpm=5))]) is None
    assert limiter.budget_left([key, team]) == ("key:k_1", 1.0)
    limiter.record([key, team], tokens=0, cost_usd=0.75)
    subject, left = limiter.budget_left([key, team])  # type: ignore[misc]
    assert subject == "key:k_1" and left == pytest.approx(0.25)
    limiter.record([key], tokens=0, cost_usd=1.0)
    assert limiter.budget_left([key, team]) == ("key:k_1", 0.0)


def test_expired_counters_are_swept(sqlite_ws: Workspace) -> None:
    counters = SqlCounters(sqlite_ws.db)
    counters.add([("key:old:tpm", 5)], BUCKET, -1000)  # already past its ttl
    counters.add([("key:new:tpm", 5)], BUCKET, 60_000)
    counters._next_sweep = 0  # a sweep is due
    assert counters.admit([("key:a:rpm", 5)], BUCKET, MINUTE_TTL_MS) is None
    assert counters.get(["key:old:tpm", "key:new:tpm"], BUCKET) == [0.0, 5.0]


# -- leases, cached reads, batched bookings -----------------------------------------------------


class CountingCounters:
    """Counters that count the store writes (leases and adds) passed through."""

    def __init__(self, inner: Counters) -> None:
        self.inner = inner
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        if name in ("lease", "add_batch", "admit", "add"):
            self.writes += 1
        return getattr(self.inner, name)


def test_leases_make_far_fewer_writes_than_requests(
    sql_counters: SqlCounters, make_limiter: MakeLimiter
) -> None:
    counting = CountingCounters(sql_counters)
    limiter = make_limiter(counting, clock=Clock("2026-03-05T08:00:00+00:00"))  # type: ignore[arg-type]
    subjects = [("key:k_1", Limits(rpm=10_000))]
    for _ in range(1000):
        limiter.check_request(subjects, estimated_tokens=1, estimated_cost=0.0)
    assert counting.writes < 30, counting.writes  # blocks of 64, not 1000 writes
    # Near the limit the blocks shrink to 1: exactly the limit is admitted.
    small = [("key:k_2", Limits(rpm=40))]
    admitted = 0
    for _ in range(60):
        try:
            limiter.check_request(small, estimated_tokens=1, estimated_cost=0.0)
            admitted += 1
        except RateLimited:
            pass
    assert admitted == 40


def test_own_spend_at_once_and_another_replica_s_within_read_ttl(
    sql_counters: SqlCounters, make_limiter: MakeLimiter
) -> None:
    clock = Clock("2026-03-05T08:00:00+00:00")
    one = make_limiter(sql_counters, clock=clock, read_ttl=1.0, flush_interval=3600)
    two = make_limiter(sql_counters, clock=clock, read_ttl=1.0, flush_interval=3600)
    subjects = [("team:t", Limits(budget=Budget(1.0, "day")))]
    one.check_request(subjects, estimated_tokens=0, estimated_cost=0.5)  # reads: 0 spent
    two.check_request(subjects, estimated_tokens=0, estimated_cost=0.5)
    one.record(subjects, tokens=0, cost_usd=0.25)  # the first record is written at once
    one.record(subjects, tokens=0, cost_usd=0.5)  # pending: counted here at once
    with pytest.raises(BudgetExceeded):
        one.check_request(subjects, estimated_tokens=0, estimated_cost=0.5)
    assert one.flush() == [("team:t", Budget(1.0, "day"), pytest.approx(0.25), 0.75)]
    # Replica two still uses its read (0 spent) ...
    two.check_request(subjects, estimated_tokens=0, estimated_cost=0.5)
    clock.now += 1.0  # ... until read_ttl has passed
    with pytest.raises(BudgetExceeded, match="\\$0.25 left"):
        two.check_request(subjects, estimated_tokens=0, estimated_cost=0.5)


BOOKER = textwrap.dedent(
    """
    import os, sys, time
    from loopml.llm.config import Budget, Limits
    from loopml.llm.counters import SqlCounters
    from loopml.llm.limits import Limiter
    from loopml.store.db import Database

    url, go = sys.argv[1:3]
    limiter = Limiter(SqlCounters(Database(url)), clock=lambda: 1_800_000_015.0,
                      flush_interval=0.01)
    subjects = [("team:shared", Limits(budget=Budget(10.0, "day")))]
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)
    crossed = []
    for _ in range(50):
        crossed += limiter.record(subjects, tokens=0, cost_usd=0.1)
    crossed += limiter.close()
    print(";".join(f"{before!r}/{after!r}" for _, _, before, after in crossed), flush=True)
    """
)


def test_batched_crossings_are_reported_once_across_two_processes(
    sqlite_ws: Workspace, tmp_path: Path
) -> None:
    url = sqlite_ws.db.url
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BOOKER, url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()  # type: ignore[union-attr]
        go.touch()
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    spans = [span for out, _ in outputs for span in out.strip().split(";") if span]
    # $10 spent in all: the 50%, 80% and 100% lines each crossed by exactly one batch of one
    # process (a batch may cross several lines: one crossing, the gateway emits each line).
    pairs = [tuple(float(v) for v in span.split("/")) for span in spans]
    for line in (5.0, 8.0, 10.0):
        hits = [(b, a) for b, a in pairs if b < line <= a + 1e-9]
        assert len(hits) == 1, (line, pairs)


def test_a_deferred_record_is_written_by_the_writer_and_its_crossings_go_to_on_crossing(
    counters: Counters,
) -> None:
    import threading
    import time

    writers: list[str] = []
    add_batch = counters.add_batch

    def watched(items: Any) -> list[float]:
        writers.append(threading.current_thread().name)
        return add_batch(items)

    counters.add_batch = watched  # type: ignore[method-assign]
    crossed: list[Any] = []
    limiter = Limiter(counters, flush_interval=0.05, on_crossing=crossed.append)
    subjects = [("team:t", Limits(budget=Budget(amount_usd=1.0, period="day")))]
    for _ in range(3):  # 0.3, 0.6 (crosses 50%), 0.9 (crosses 80%)
        assert limiter.record(subjects, tokens=10, cost_usd=0.3, defer=True) == []
    deadline = time.monotonic() + 10
    while max((c[3] for c in crossed), default=0) < 0.9 - 1e-9 and time.monotonic() < deadline:
        time.sleep(0.01)
    limiter.close()
    assert writers and set(writers) == {"loopml-llm-limits"}  # never the caller's thread
    assert crossed and all(c[0] == "team:t" for c in crossed)
    assert max(c[3] for c in crossed) == pytest.approx(0.9)
