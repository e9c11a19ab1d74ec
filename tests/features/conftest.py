"""Shared fixtures of the feature store tests: online stores on every backend, and a
workspace with a small customer feature view (on Parquet) whose online store is SQLite or
Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loopml.features import Entity, FeatureView, Field, FileSource
from loopml.features.online import OnlineStore, RedisOnlineStore, SqliteOnlineStore
from loopml.workspace import Workspace
from services import redis_url, require_module

ONLINE_BACKENDS = ["sqlite", "redis"]
NOW = datetime.now(UTC).replace(microsecond=0)

customer = Entity("customer", join_keys=["customer_id"])


def redis_prefixed_url() -> str:
    """The test Redis URL with a prefix of its own (so tests never see each other's keys)."""
    require_module("redis")
    url = redis_url()
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}prefix=loopml-test-{uuid.uuid4().hex[:12]}"


def drop_redis_prefix(url: str) -> None:
    store = RedisOnlineStore(url)
    client = store._redis()
    names = list(client.scan_iter(match=f"{store.prefix}:*", count=1000))
    if names:
        client.unlink(*names)
    store.close()


@pytest.fixture
def online_url_factory(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``make(backend)`` → the URL of an empty online store on that backend."""
    made: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / f'online-{len(made)}.sqlite'}"
        elif backend == "redis":
            url = redis_prefixed_url()
        else:
            raise ValueError(backend)
        made.append(url)
        return url

    yield make
    for url in made:
        if url.startswith("redis"):
            drop_redis_prefix(url)


@pytest.fixture(params=ONLINE_BACKENDS)
def online_store(
    request: pytest.FixtureRequest, online_url_factory: Callable[[str], str], tmp_path: Path
) -> Iterator[OnlineStore]:
    """An empty online store on each backend: the contract suite runs on all."""
    from loopml.features.online import open_online_store

    store = open_online_store(online_url_factory(request.param), tmp_path)
    assert isinstance(store, (SqliteOnlineStore, RedisOnlineStore))
    yield store
    store.close()


def customer_stats(n_customers: int = 20, n_times: int = 5) -> pd.DataFrame:
    """Rows every 6 hours up to 1 hour ago: value = customer * 100 + time index."""
    rows = []
    for c in range(n_customers):
        for t in range(n_times):
            event = NOW - timedelta(hours=1 + 6 * (n_times - 1 - t))
            rows.append(
                {
                    "customer_id": c,
                    "event_ts": event,
                    "created_ts": event + timedelta(minutes=5),
                    "avg_purchase": float(c * 100 + t),
                    "n_orders": c + t,
                }
            )
    return pd.DataFrame(rows)


def stats_view(ttl: timedelta | None = timedelta(days=2), **changes: Any) -> FeatureView:
    view = FeatureView(
        "customer_stats",
        entities=[customer],
        source=FileSource(
            "data/customer_stats.parquet",
            timestamp_field="event_ts",
            created_timestamp_field="created_ts",
        ),
        ttl=ttl,
        schema=[Field("avg_purchase", "float64"), Field("n_orders", "int64")],
    )
    return replace(view, **changes) if changes else view


@pytest.fixture
def feature_ws_factory(
    workspace_factory: Callable[..., Workspace], online_url_factory: Callable[[str], str]
) -> Iterator[Callable[..., Workspace]]:
    """``make(backend="sqlite", frame=None)`` → a workspace whose ``data/customer_stats.parquet``
    holds ``frame`` (default :func:`customer_stats`), using :func:`stats_view`, its online
    store on ``backend`` ("sqlite": the default file in ``.loopml``)."""
    opened: list[Workspace] = []

    def make(backend: str = "sqlite", frame: pd.DataFrame | None = None, *views: Any) -> Workspace:
        from loopml.features.settings import FeaturesSettings

        ws = workspace_factory("sqlite-file")
        if backend == "redis":
            ws.settings = ws.settings.with_overrides(
                features=FeaturesSettings(online_store=online_url_factory("redis"))
            )
        (ws.root / "data").mkdir(exist_ok=True)
        (customer_stats() if frame is None else frame).to_parquet(
            ws.root / "data" / "customer_stats.parquet"
        )
        ws.features.use(*(views or [stats_view()]))
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.features.close()


@pytest.fixture(params=ONLINE_BACKENDS)
def feature_ws(
    request: pytest.FixtureRequest, feature_ws_factory: Callable[..., Workspace]
) -> Workspace:
    """A workspace with :func:`stats_view` and an online store on each backend."""
    return feature_ws_factory(request.param)
