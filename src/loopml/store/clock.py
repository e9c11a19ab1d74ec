"""The one clock of the metadata store: every timestamp column holds epoch milliseconds.

>>> to_datetime(1_700_000_000_000).isoformat()
'2023-11-14T22:13:20+00:00'
>>> to_datetime(None) is None
True
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    """Now, in whole milliseconds since the epoch (the unit of every ``*_at``/``*_time``
    column)."""
    return int(time.time() * 1000)


def to_datetime(ms: int | None) -> datetime | None:
    """A stored epoch-milliseconds value as an aware UTC datetime (None stays None)."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)
