"""The ``[registry]`` section of ``loopml.toml``: the local cache of unpacked model packages.

::

    [registry]
    model_cache_max_models = 16               # LOOPML_REGISTRY_MODEL_CACHE_MAX_MODELS
    model_cache_max_bytes = 4_000_000_000     # LOOPML_REGISTRY_MODEL_CACHE_MAX_BYTES

Gate policies are their own tables, ``[gates.NAME]`` (see :mod:`loopml.registry.gates`).
Loaded and checked by :func:`loopml.config.load_settings`; read as ``settings.registry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAX_MODELS = 16
DEFAULT_MAX_BYTES = 4_000_000_000


@dataclass(frozen=True)
class RegistrySettings:
    """Limits of the model cache (least recently used packages are evicted past them)."""

    model_cache_max_models: int = field(
        default=DEFAULT_MAX_MODELS,
        metadata={"min": 1, "help": "unpacked model packages kept in .loopml/model-cache"},
    )
    model_cache_max_bytes: int = field(
        default=DEFAULT_MAX_BYTES,
        metadata={"min": 1, "help": "bytes of unpacked model packages kept"},
    )
