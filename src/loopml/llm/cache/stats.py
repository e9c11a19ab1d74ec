"""What the cache saved, read back from the request log, and emptying it.

    stats(ws, since="7d")     # {"requests": …, "hits": …, "hit_rate": …, "saved_usd": …,
                              #  "routes": [{"route": "cheap", …}], "entries": {"cheap": 812}}
    clear(ws, route="cheap")  # how many entries went

Hits come from the gateway's request log (``llm_requests.cache_hit``, the ``cache`` JSON's
kind and ``saved_usd``), grouped by the model alias asked for, in one SQL query; entry
counts come from the cache's store (the workspace's tables, or Redis when
``[gateway.cache] backend`` names one).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, case, cast, func, select

from loopml.llm.cache.config import CacheConfig, parse_cache_config
from loopml.llm.cache.store import CacheStore, RedisStore, SqlStore
from loopml.llm.reports import _ms
from loopml.llm.tables import llm_requests

if TYPE_CHECKING:
    from loopml.workspace import Workspace

_R = llm_requests.c


def workspace_cache_config(ws: Workspace) -> CacheConfig:
    """``[gateway.cache]`` of the workspace's ``loopml.toml``, checked."""
    gateway = ws.settings.gateway if isinstance(ws.settings.gateway, dict) else {}
    source = str(ws.settings.config_path) if ws.settings.config_path else "loopml.toml"
    return parse_cache_config(gateway.get("cache"), source)


def open_store(ws: Workspace, config: CacheConfig | None = None) -> CacheStore:
    """The store ``config`` (default: the workspace's) names."""
    config = config or workspace_cache_config(ws)
    if config.backend:
        return RedisStore(config.backend, timeout=5.0)
    return SqlStore(ws.db, ws.blobs)


def stats(
    ws: Workspace,
    *,
    since: datetime | str | None = None,
    config: CacheConfig | None = None,
) -> dict[str, Any]:
    """Requests, hits (exact and semantic), hit rate and saved USD since ``since`` (a time
    or a duration back from now such as ``"7d"``; None: ever), overall and by route, plus
    the live entries in the store by route."""
    start = _ms(since, "since")
    hit = cast(_R.cache_hit, Integer)
    semantic = case((_R.cache.like('%"semantic"%'), 1), else_=0) * hit
    query = (
        select(
            _R.model_requested.label("route"),
            func.count().label("requests"),
            func.coalesce(func.sum(hit), 0).label("hits"),
            func.coalesce(func.sum(semantic), 0).label("semantic_hits"),
            func.coalesce(func.sum(_R.saved_usd), 0.0).label("saved_usd"),
        )
        .where(_R.endpoint == "chat")
        .group_by(_R.model_requested)
        .order_by(_R.model_requested)
    )
    if start is not None:
        query = query.where(_R.created_at >= start)
    with ws.db.read() as conn:
        rows = conn.execute(query).mappings().all()
    store = open_store(ws, config)
    try:
        entries = store.counts()
    finally:
        store.close()
    routes = []
    for row in rows:
        requests, hits = int(row["requests"]), int(row["hits"])
        routes.append(
            {
                "route": row["route"],
                "requests": requests,
                "hits": hits,
                "exact_hits": hits - int(row["semantic_hits"]),
                "semantic_hits": int(row["semantic_hits"]),
                "hit_rate": hits / requests if requests else 0.0,
                "saved_usd": float(row["saved_usd"] or 0.0),
                "entries": entries.get(row["route"], 0),
            }
        )
    known = {r["route"] for r in routes}
    for route, count in sorted(entries.items()):
        if route not in known:
            routes.append(
                {
                    "route": route,
                    "requests": 0,
                    "hits": 0,
                    "exact_hits": 0,
                    "semantic_hits": 0,
                    "hit_rate": 0.0,
                    "saved_usd": 0.0,
                    "entries": count,
                }
            )
    requests = sum(r["requests"] for r in routes)
    hits = sum(r["hits"] for r in routes)
    return {
        "requests": requests,
        "hits": hits,
        "exact_hits": sum(r["exact_hits"] for r in routes),
        "semantic_hits": sum(r["semantic_hits"] for r in routes),
        "hit_rate": hits / requests if requests else 0.0,
        "saved_usd": sum(r["saved_usd"] for r in routes),
        "entries": sum(entries.values()),
        "routes": routes,
    }


def clear(ws: Workspace, *, route: str | None = None, config: CacheConfig | None = None) -> int:
    """Delete every cached answer (of model alias ``route``); returns how many went. Running
    gateways stop serving them at once (a lookup reads the store); their in-memory index
    drops the keys as they come up."""
    store = open_store(ws, config)
    try:
        return store.clear(route)
    finally:
        store.close()


__all__ = ["clear", "open_store", "stats", "workspace_cache_config"]
