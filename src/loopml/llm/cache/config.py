"""``[gateway.cache]``: what the cache keeps, for how long, and when a near question may be
answered with an earlier answer.

::

    [gateway.cache]
    backend = ""                 # "": the workspace (metadata store + blob store); redis://…
    ttl = 86400                  # seconds an entry is served (0: until evicted)
    max_entries = 100000         # beyond this, the least recently hit entries go
    ignore = ["user", "metadata", "stream", "stream_options"]   # added to the defaults
    semantic = false             # also answer near-identical questions
    threshold = 0.92             # cosine similarity a semantic hit needs
    embedder = "hashed"          # hashed | gateway:<alias> | model2vec:/path | sentence-transformers:/path
    embed = "last"               # last (the last user message) | user (every user message)
    second_stage = "entities"    # entities (numbers, dates, names must match) | none
    partition = "key"            # key | team | none: whose answers a tenant may be served
    coalesce = true              # concurrent identical requests make one upstream call

    [gateway.cache.routes.cheap] # per model alias: threshold, semantic, ttl, second_stage,
    threshold = 0.95             # embed, enabled
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from loopml.llm.config import _Checker

Partition = Literal["key", "team", "none"]
EmbedPart = Literal["last", "user"]
SecondStage = Literal["entities", "none"]

#: Request fields that never change the answer, left out of every key: who asked
#: (``user``, ``safety_identifier``), bookkeeping (``metadata``, ``store``, ``cache``,
#: ``prompt_cache_key``, ``service_tier``) and how it is delivered (``stream``,
#: ``stream_options``).
DEFAULT_IGNORE: tuple[str, ...] = (
    "user",
    "metadata",
    "stream",
    "stream_options",
    "store",
    "cache",
    "prompt_cache_key",
    "safety_identifier",
    "service_tier",
)
#: The hashed embedder's default threshold. On the shipped pairs with the entity check on it
#: serves 42% of paraphrases with 0.08% false hits; `loopml llm cache evaluate` recommends
#: 0.74 for a 1% target (58% served, 0.6% false). docs/cache.md has the figures.
DEFAULT_THRESHOLD = 0.80
PARTITIONS = ("key", "team", "none")
EMBED_PARTS = ("last", "user")
SECOND_STAGES = ("entities", "none")
EMBEDDER_KINDS = ("hashed", "gateway", "model2vec", "sentence-transformers")

_TOP_KEYS = (
    "backend",
    "ttl",
    "max_entries",
    "ignore",
    "semantic",
    "threshold",
    "embedder",
    "embed",
    "second_stage",
    "partition",
    "coalesce",
    "sync_interval",
    "routes",
    "enabled",  # every route's default (a route's own table may say otherwise)
)
_ROUTE_KEYS = ("enabled", "semantic", "threshold", "ttl", "embed", "second_stage")


@dataclass(frozen=True)
class RouteCache:
    """How one model alias is cached (every field defaults to the table's)."""

    enabled: bool = True
    semantic: bool = False
    threshold: float = DEFAULT_THRESHOLD
    ttl: float | None = 86_400.0  # seconds; None: until evicted
    embed: EmbedPart = "last"
    second_stage: SecondStage = "entities"


@dataclass(frozen=True)
class CacheConfig:
    """The checked ``[gateway.cache]`` table. :meth:`route` gives one alias's settings."""

    backend: str = ""
    max_entries: int = 100_000
    ignore: frozenset[str] = frozenset(DEFAULT_IGNORE)
    embedder: str = "hashed"
    partition: Partition = "key"
    coalesce: bool = True
    #: Seconds between polls of the shared store for other replicas' new entries.
    sync_interval: float = 0.25
    defaults: RouteCache = field(default_factory=RouteCache)
    routes: Mapping[str, RouteCache] = field(default_factory=dict)

    def route(self, alias: str) -> RouteCache:
        """The settings of model alias ``alias``: its own table's, else the defaults."""
        return self.routes.get(alias, self.defaults)

    @property
    def semantic_anywhere(self) -> bool:
        """True when some route answers near questions (the cache then needs an embedder)."""
        return self.defaults.semantic or any(r.semantic for r in self.routes.values())


def _threshold(check: _Checker, table: Mapping[str, Any], path: str) -> float:
    value = table["threshold"]
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 < value <= 1:
        raise check.fail(
            path,
            f"threshold {value!r} is not between 0 and 1 (the cosine similarity a semantic hit "
            f"needs; {DEFAULT_THRESHOLD} is the hashed embedder's tested default, and "
            "`loopml llm cache evaluate` recommends one for your embedder)",
        )
    return float(value)


def _ttl(check: _Checker, table: Mapping[str, Any], path: str) -> float | None:
    ttl = check.number(table, "ttl", path, zero=True)
    return None if ttl == 0 else ttl


def _embedder(check: _Checker, table: Mapping[str, Any]) -> str:
    spec = check.string(table, "embedder", "cache")
    kind, _, rest = spec.partition(":")
    usage = (
        'use "hashed" (built in, no download), "gateway:<model alias>" (the gateway\'s own '
        '/v1/embeddings), "model2vec:/local/path" or "sentence-transformers:/local/path"'
    )
    if kind not in EMBEDDER_KINDS:
        raise check.fail("cache", f"unknown embedder {spec!r}; {usage}")
    if kind == "hashed" and rest:
        raise check.fail("cache", f'embedder "hashed" takes no argument, got {spec!r}')
    if kind != "hashed" and not rest.strip():
        raise check.fail("cache", f"embedder {spec!r} needs what follows the colon; {usage}")
    return spec


def _route(check: _Checker, table: Any, path: str, base: RouteCache) -> RouteCache:
    table = check.table(table, path, " (threshold = 0.95, semantic = true, ttl = 3600, …)")
    check.keys(table, _ROUTE_KEYS, path)
    values: dict[str, Any] = {}
    for key in ("enabled", "semantic"):
        if key in table:
            values[key] = check.boolean(table, key, path)
    if "threshold" in table:
        values["threshold"] = _threshold(check, table, path)
    if "ttl" in table:
        values["ttl"] = _ttl(check, table, path)
    if "embed" in table:
        values["embed"] = check.choice(table, "embed", path, EMBED_PARTS)
    if "second_stage" in table:
        values["second_stage"] = check.choice(table, "second_stage", path, SECOND_STAGES)
    return replace(base, **values)


def parse_cache_config(table: Any, source: str = "loopml.toml") -> CacheConfig:
    """A checked :class:`CacheConfig` from the raw ``[gateway.cache]`` table (``None`` or
    ``{}``: the defaults). ``source`` (the file) is named in errors.

    >>> parse_cache_config({"semantic": True, "routes": {"cheap": {"threshold": 0.97}}}).route(
    ...     "cheap").threshold
    0.97
    >>> parse_cache_config({"routes": {"cheap": {"threshold": 1.7}}})
    Traceback (most recent call last):
    ...
    loopml.exceptions.InvalidConfig: loopml.toml [gateway.cache.routes.cheap]: threshold 1.7 is not between 0 and 1 (the cosine similarity a semantic hit needs; 0.8 is the hashed embedder's tested default, and `loopml llm cache evaluate` recommends one for your embedder)
    """
    check = _Checker(source, "gateway")
    if table is None:
        table = {}
    table = check.table(table, "cache", " (backend, ttl, max_entries, semantic, threshold, …)")
    check.keys(table, _TOP_KEYS, "cache")
    values: dict[str, Any] = {}
    if "backend" in table:
        backend = check.string(table, "backend", "cache", empty=True)
        if backend and not backend.startswith(("redis://", "rediss://", "unix://")):
            raise check.fail(
                "cache",
                'backend must be "" (the workspace: metadata store + blob store) or a '
                f"redis:// URL, got {backend!r}",
            )
        values["backend"] = backend
    if "max_entries" in table:
        values["max_entries"] = check.integer(table, "max_entries", "cache")
    if "ignore" in table:
        extra = check.strings(table, "ignore", "cache")
        protected = {"model", "messages"} & set(extra)
        if protected:
            raise check.fail(
                "cache",
                f"ignore can't name {sorted(protected)}: they are the question itself",
            )
        values["ignore"] = frozenset(DEFAULT_IGNORE) | frozenset(extra)
    if "embedder" in table:
        values["embedder"] = _embedder(check, table)
    if "partition" in table:
        values["partition"] = check.choice(table, "partition", "cache", PARTITIONS)
    if "coalesce" in table:
        values["coalesce"] = check.boolean(table, "coalesce", "cache")
    if "sync_interval" in table:
        values["sync_interval"] = check.number(table, "sync_interval", "cache")
    # The route keys at the top level are every route's defaults.
    defaults = _route(
        check, {k: v for k, v in table.items() if k in _ROUTE_KEYS}, "cache", RouteCache()
    )
    routes = {
        str(alias): _route(check, route, f"cache.routes.{alias}", defaults)
        for alias, route in check.table(table.get("routes", {}), "cache.routes").items()
    }
    return CacheConfig(defaults=defaults, routes=routes, **values)


__all__ = [
    "DEFAULT_IGNORE",
    "DEFAULT_THRESHOLD",
    "CacheConfig",
    "RouteCache",
    "parse_cache_config",
]
