"""A metric's history as a chart draws it: at most about ``points`` points, read fast.

A short history (up to four times ``points``) is read whole and thinned by LTTB
(:func:`loopml.server.ui.downsample.lttb`). A long one (a run that logged 1,000,000 points)
is reduced in the database: its steps are cut into ``points / 2`` equal buckets and each
bucket gives its lowest and its highest value (min/max per pixel column, as plotting tools
draw dense lines), so peaks and dips survive and only about ``points`` rows ever leave the
database. This reads tracking's ``metrics`` table directly: ``ws.runs.metric_history``
returns every point as a DataFrame, seconds for a million points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from loopml.server.ui.downsample import DEFAULT_POINTS, lttb
from loopml.tracking.tables import metrics

if TYPE_CHECKING:
    from loopml.store.db import Database


@dataclass(frozen=True)
class Series:
    """The points to draw, in step order, and how many the history holds."""

    steps: list[int]
    values: list[float]
    total: int


#: The most points of a short history (few steps, many points each) read for LTTB.
MAX_READ = 200_000


def metric_series(db: Database, run_id: str, key: str, points: int = DEFAULT_POINTS) -> Series:
    """The history of metric ``key`` of run ``run_id``, downsampled to about ``points``."""
    where = (metrics.c.run_id == run_id, metrics.c.key == key)
    with db.read() as conn:
        # Two index seeks (SQLite answers a lone min() or max() from the index's ends).
        low = conn.execute(select(func.min(metrics.c.step)).where(*where)).scalar()
        if low is None:
            return Series([], [], 0)
        high = conn.execute(select(func.max(metrics.c.step)).where(*where)).scalar()
        if high - low + 1 <= 4 * points:
            total = conn.execute(select(func.count()).where(*where)).scalar() or 0
            rows = conn.execute(
                select(metrics.c.step, metrics.c.value)
                .where(*where)
                .order_by(metrics.c.step, metrics.c.timestamp, metrics.c.id)
                .limit(MAX_READ)
            ).all()
            steps, values = lttb(
                [r[0] for r in rows],
                [math.nan if r[1] is None else r[1] for r in rows],
                points,
            )
            return Series([int(s) for s in steps], values, int(total))
        buckets = max(points // 2, 1)
        bucket = ((metrics.c.step - low) * buckets // (high - low + 1)).label("bucket")
        reduced = conn.execute(
            select(
                bucket,
                func.min(metrics.c.step),
                func.max(metrics.c.step),
                func.min(metrics.c.value),
                func.max(metrics.c.value),
                func.count(),
            )
            .where(*where)
            .group_by(bucket)
            .order_by(bucket)
        ).all()
    steps_out: list[int] = []
    values_out: list[float] = []
    total = 0
    for _, first, last, lowest, highest, count in reduced:
        total += count
        pairs = [(int(first), lowest), (int(last), highest)]
        if first == last:
            pairs = [(int(first), lowest)]
        for step, value in pairs:
            if value is not None and math.isfinite(value):
                steps_out.append(step)
                values_out.append(float(value))
    return Series(steps_out, values_out, total)
