"""The ``[tracking]`` section of ``loopml.toml``: how runs buffer and record.

::

    [tracking]
    flush_interval = 1.0          # LOOPML_TRACKING_FLUSH_INTERVAL
    flush_max_points = 50_000     # LOOPML_TRACKING_FLUSH_MAX_POINTS
    capture_environment = true    # LOOPML_TRACKING_CAPTURE_ENVIRONMENT

Loaded and checked by :func:`loopml.config.load_settings`; read as ``settings.tracking``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrackingSettings:
    """How runs buffer metrics and what they record about their environment."""

    flush_interval: float = field(
        default=1.0,
        metadata={
            "above": 0,
            "unit": "seconds",
            "help": "seconds between background flushes of buffered metrics "
            "(at most this much is lost on SIGKILL)",
        },
    )
    flush_max_points: int = field(
        default=50_000,
        metadata={"min": 1, "help": "buffered metric points that trigger a flush"},
    )
    capture_environment: bool = field(
        default=True,
        metadata={"help": "record packages, git commit and host with each run"},
    )
