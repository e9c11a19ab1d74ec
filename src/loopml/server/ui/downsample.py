"""Downsampling a metric's history for a chart: LTTB (largest triangle three buckets).

A chart is a few hundred pixels wide, so a run that logged 1,000,000 points of a metric is
drawn from about 1,000 of them, chosen to keep its shape (peaks, dips, the first and last
point) rather than every n-th one::

    >>> xs = list(range(10))
    >>> ys = [0, 1, 0, 1, 9, 1, 0, 1, 0, 1]
    >>> lttb(xs, ys, 4)
    ([0, 4, 5, 9], [0.0, 9.0, 1.0, 1.0])

Points whose value is not finite (NaN, ±inf) are left out: a chart can't place them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Points a chart is drawn from when the history is longer.
DEFAULT_POINTS = 1000


def lttb(
    xs: Sequence[float] | np.ndarray[Any, Any],
    ys: Sequence[float] | np.ndarray[Any, Any],
    threshold: int = DEFAULT_POINTS,
) -> tuple[list[Any], list[float]]:
    """At most ``threshold`` of the points ``(xs[i], ys[i])``, in order, by LTTB.

    ``xs`` must be sorted (steps). With ``threshold`` of 3 or more the first and the last
    finite point are always kept; a series no longer than ``threshold`` is returned whole.
    """
    if threshold < 3:
        raise ValueError(f"threshold must be at least 3, got {threshold}")
    x = np.asarray(xs, dtype="float64")
    y = np.asarray(ys, dtype="float64")
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"xs and ys must be 1-D and of one length, got {x.shape} and {y.shape}")
    keep = np.isfinite(y) & np.isfinite(x)
    raw_x = np.asarray(xs)[keep]
    x, y = x[keep], y[keep]
    n = len(x)
    if n <= threshold:
        return _plain(raw_x), y.tolist()
    chosen = np.empty(threshold, dtype="int64")
    chosen[0] = 0
    chosen[-1] = n - 1
    # n - 2 middle points split into threshold - 2 buckets.
    edges = np.linspace(1, n - 1, threshold - 1).astype("int64")
    previous = 0
    for i in range(threshold - 2):
        start, end = edges[i], max(edges[i + 1], edges[i] + 1)
        # The next bucket's average point (the last point for the last bucket).
        if i + 2 < len(edges):
            nxt_start, nxt_end = edges[i + 1], max(edges[i + 2], edges[i + 1] + 1)
            avg_x = x[nxt_start:nxt_end].mean()
            avg_y = y[nxt_start:nxt_end].mean()
        else:
            avg_x, avg_y = x[n - 1], y[n - 1]
        px, py = x[previous], y[previous]
        bx, by = x[start:end], y[start:end]
        # Twice the area of the triangle (previous, candidate, next average), per candidate.
        area = np.abs((px - avg_x) * (by - py) - (px - bx) * (avg_y - py))
        previous = int(start + int(np.argmax(area)))
        chosen[i + 1] = previous
    return _plain(raw_x[chosen]), y[chosen].tolist()


def _plain(values: Any) -> list[Any]:
    """Steps as Python ints where they are whole numbers (JSON-friendly)."""
    out = np.asarray(values).tolist()
    return [int(v) if isinstance(v, float) and v.is_integer() else v for v in out]
