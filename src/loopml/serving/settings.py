"""The ``[serving]`` section of ``loopml.toml``: the model server's limits, keys and log.

::

    [serving]
    api_keys = []                 # LOOPML_SERVING_API_KEYS=key1,key2: empty = no key needed
    max_body_bytes = 10485760     # LOOPML_SERVING_MAX_BODY_BYTES: larger requests get a 413
    log_flush_interval = 1.0      # LOOPML_SERVING_LOG_FLUSH_INTERVAL: seconds between writes
    log_batch_rows = 5000         # LOOPML_SERVING_LOG_BATCH_ROWS: rows that force a write
    load_wait = 30.0              # LOOPML_SERVING_LOAD_WAIT: seconds a request waits for loading

Loaded and checked by :func:`loopml.config.load_settings`; read as ``settings.serving``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServingSettings:
    """What ``loopml serve`` accepts, who may call it, and how often its log is written."""

    api_keys: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "keys accepted on /predict, /invocations and /feedback (Authorization: "
            "Bearer KEY or X-API-Key: KEY); empty: no key needed",
            "secret": True,
        },
    )
    max_body_bytes: int = field(
        default=10 * 1024 * 1024,
        metadata={"min": 1, "unit": "bytes", "help": "a larger request body is refused (413)"},
    )
    log_flush_interval: float = field(
        default=1.0,
        metadata={
            "above": 0,
            "unit": "s",
            "help": "seconds between writes of the prediction log (the loss bound on SIGKILL)",
        },
    )
    log_batch_rows: int = field(
        default=5000,
        metadata={"min": 1, "help": "logged rows that trigger a write before the interval"},
    )
    load_wait: float = field(
        default=30.0,
        metadata={
            "min": 0,
            "unit": "s",
            "help": "seconds a request that arrives while the models are still loading waits "
            "for them before it gets a 503 (each worker of --workers N loads its own)",
        },
    )
