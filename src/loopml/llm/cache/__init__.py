"""The LLM gateway's response cache: exact and semantic, shared by every replica.

- :class:`Cache`: ``await cache.lookup(body, tenant=…, route=…, mode=…) -> CacheHit | None``,
  ``await cache.store(body, response, tenant=…, route=…, request_id=…, cost_usd=…)``,
  ``cache.close()``; ``cache.flights`` coalesces concurrent identical requests.
- :func:`parse_cache_config`: the ``[gateway.cache]`` table, checked.
- :func:`request_mode`: ``Cache-Control: no-cache`` / ``no-store`` and ``"cache": false``.
- :func:`replay` / :class:`Assembler`: a cached answer as a stream, a stream as an answer.
- :func:`evaluate`: hit and false-hit rates per threshold on labelled pairs.
- :func:`stats` / :func:`clear`: what the cache saved, and emptying it.

docs/cache.md has the whole story and the measured figures.
"""

from loopml.llm.cache.coalesce import SingleFlight
from loopml.llm.cache.config import (
    DEFAULT_IGNORE,
    DEFAULT_THRESHOLD,
    CacheConfig,
    RouteCache,
    parse_cache_config,
)
from loopml.llm.cache.embedders import (
    Embedder,
    GatewayEmbedder,
    HashedEmbedder,
    make_embedder,
)
from loopml.llm.cache.engine import Cache, CacheHit, cacheable
from loopml.llm.cache.entities import entities, same_entities
from loopml.llm.cache.request import (
    DEFAULT_MODE,
    NO_CACHE,
    NO_STORE,
    Mode,
    request_mode,
)
from loopml.llm.cache.stream import Assembler, replay

__all__ = [
    "DEFAULT_IGNORE",
    "DEFAULT_MODE",
    "DEFAULT_THRESHOLD",
    "NO_CACHE",
    "NO_STORE",
    "Assembler",
    "Cache",
    "CacheConfig",
    "CacheHit",
    "Embedder",
    "GatewayEmbedder",
    "HashedEmbedder",
    "Mode",
    "RouteCache",
    "SingleFlight",
    "cacheable",
    "entities",
    "make_embedder",
    "parse_cache_config",
    "replay",
    "request_mode",
    "same_entities",
]
