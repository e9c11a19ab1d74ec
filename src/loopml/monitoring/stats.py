"""Drift statistics: pure functions over NumPy arrays, no store, no pandas.

- :func:`psi`: population stability index over frozen bins, with a documented smoothing;
  :func:`psi_band` names its band.
- :func:`bin_counts` / :func:`sorted_bin_counts`: counts of values in the right-closed bins
  ``(-inf, e1], (e1, e2], …, (ek, inf)`` cut at a profile's frozen edges.
- :func:`quantile_edges`: the inner edges of ``bins`` quantile bins of a reference column,
  deduplicated for heavy ties.
- :func:`ks`: the two-sample Kolmogorov–Smirnov test, equal to :func:`scipy.stats.ks_2samp`
  (statistic and p-value) on the same non-null values, but fast when one sample is bounded.
- :func:`chi_square`, :func:`js_distance`, :func:`kl_divergence` over category (or bin)
  proportions; :func:`category_counts` pools categories a reference never saw.

NaN is a null: it is never counted in a bin or a test, only in the null rate.

>>> round(psi([0.5, 0.5], [50, 50]), 12)
0.0
>>> psi_band(0.3)
'significant'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

#: Added to every bin's proportion before PSI and KL (then renormalised), so that an empty
#: bin on either side gives a large but finite term instead of ``inf``.
EPS = 1e-4
#: PSI below the first bound is no drift, up to the second moderate, above it significant.
BANDS = (0.1, 0.25)
#: The category bucket that pools every value a reference profile does not list.
OTHER = "__other__"
#: ``ks_2samp``'s "auto" method is exact up to this many values in the larger sample.
_EXACT_KS = 10_000

FloatArray = npt.NDArray[np.float64]


def smooth(proportions: npt.ArrayLike, eps: float = EPS) -> FloatArray:
    """``proportions`` (or counts) as shares with ``eps`` added to each and renormalised:
    ``(p + eps) / sum(p + eps)`` where ``p`` are the shares. An all-zero input stays uniform.

    >>> smooth([1, 0]).round(6).tolist()
    [0.9999, 0.0001]
    """
    values = np.asarray(proportions, dtype=np.float64)
    total = values.sum()
    shares = values / total if total > 0 else np.zeros_like(values)
    shares = shares + eps
    return shares / shares.sum()


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, eps: float = EPS) -> float:
    """Population stability index of ``actual`` against ``expected``, over the same bins:
    ``Σ (q_i − p_i) ln(q_i / p_i)``, ``p`` the expected shares and ``q`` the actual ones.

    Both sides may be counts or proportions (each is normalised). Smoothing: ``eps`` (1e-4)
    is added to every share of both sides and each side renormalised, so an empty bin gives
    a finite term. Identical shares give exactly 0; NaN when a side holds no values
    (nothing to compare). Sides of different lengths are a ``ValueError``.

    >>> round(psi([0.25, 0.25, 0.25, 0.25], [10, 20, 30, 40]), 3)
    0.228
    >>> math.isnan(psi([0.5, 0.5], [0, 0]))
    True
    """
    p_raw = np.asarray(expected, dtype=np.float64)
    q_raw = np.asarray(actual, dtype=np.float64)
    if p_raw.shape != q_raw.shape or p_raw.ndim != 1:
        raise ValueError(
            f"psi needs two 1-D arrays over the same bins, got shapes {p_raw.shape} and "
            f"{q_raw.shape}"
        )
    if p_raw.size == 0 or q_raw.sum() <= 0 or p_raw.sum() <= 0:
        return math.nan
    p, q = smooth(p_raw, eps), smooth(q_raw, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_band(value: float | None, bands: Sequence[float] = BANDS) -> str | None:
    """``"none"`` below ``bands[0]``, ``"moderate"`` up to ``bands[1]``, ``"significant"``
    above it; None for a PSI that could not be computed (None or NaN).

    >>> [psi_band(x) for x in (0.05, 0.1, 0.25, 0.26)]
    ['none', 'moderate', 'moderate', 'significant']
    """
    if value is None or math.isnan(value):
        return None
    low, high = bands
    if value < low:
        return "none"
    return "moderate" if value <= high else "significant"


def bin_counts(edges: npt.ArrayLike, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """How many of ``values`` fall in each right-closed bin ``(-inf, e1], (e1, e2], …,
    (ek, inf)``; NaN is left out. ``len(edges) + 1`` counts.

    >>> bin_counts([1.0, 2.0], [0.5, 1.0, 1.5, 2.0, 3.0, float("nan")]).tolist()
    [2, 2, 1]
    """
    cut = np.asarray(edges, dtype=np.float64)
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    # side="left": the first edge >= v, so a value equal to an edge goes to the bin it closes.
    return np.bincount(np.searchsorted(cut, data, side="left"), minlength=cut.size + 1)


def sorted_bin_counts(edges: npt.ArrayLike, ordered: FloatArray) -> npt.NDArray[np.int64]:
    """:func:`bin_counts` of already sorted, NaN-free ``ordered`` values: ``len(edges)``
    binary searches instead of one per value."""
    cut = np.asarray(edges, dtype=np.float64)
    ends = np.searchsorted(ordered, cut, side="right")
    return np.diff(np.concatenate(([0], ends, [ordered.size]))).astype(np.int64)


def sorted_quantiles(
    ordered: FloatArray, valid: npt.ArrayLike, levels: npt.ArrayLike
) -> FloatArray:
    """Quantiles at ``levels`` of each column of ``ordered`` (sorted along axis 0, its
    first ``valid[j]`` values non-null), equal to ``np.quantile(column[:valid[j]], levels)``
    (NumPy's default linear method) but by indexing, with no partition: one gather for
    every column at once. Shape ``(len(levels), columns)``; NaN for a column with no values.
    """
    matrix = ordered if ordered.ndim == 2 else ordered[:, None]
    counts = np.asarray(valid, dtype=np.int64).reshape(-1)
    q = np.asarray(levels, dtype=np.float64)
    virtual = (counts[None, :] - 1) * q[:, None]
    below = np.floor(virtual)
    gamma = virtual - below
    last = np.maximum(counts - 1, 0)[None, :]
    low = np.clip(below.astype(np.int64), 0, last)
    high = np.clip(low + 1, 0, last)
    cols = np.broadcast_to(np.arange(matrix.shape[1]), low.shape)
    a, b = matrix[low, cols], matrix[high, cols]
    diff = b - a
    # NumPy's _lerp: from the nearer end, so that t = 1 gives b exactly.
    result = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    result[:, counts == 0] = np.nan
    return result


def quantile_edges(ordered: FloatArray, bins: int) -> FloatArray:
    """The inner edges of ``bins`` equal-frequency bins of sorted, NaN-free ``ordered``
    values (NumPy's default linear quantiles), with repeated edges dropped: a column with
    heavy ties gets fewer bins, a constant one a single edge, an empty one none.

    >>> quantile_edges(np.array([1.0, 1.0, 1.0, 1.0]), 4).tolist()
    [1.0]
    >>> quantile_edges(np.arange(11.0), 2).tolist()
    [5.0]
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}")
    levels = quantile_levels(bins)
    if ordered.size == 0 or levels.size == 0:
        return np.empty(0)
    return np.unique(sorted_quantiles(ordered, [ordered.size], levels)[:, 0])


def quantile_levels(bins: int) -> FloatArray:
    """The inner quantile levels of ``bins`` equal-frequency bins (0.1, 0.2, … for 10)."""
    return np.linspace(0.0, 1.0, bins + 1)[1:-1]


def drop_sorted_nans(ordered: FloatArray) -> FloatArray:
    """A sorted array without its trailing NaNs (sorting puts NaN last); a view, no copy."""
    if ordered.size and np.isnan(ordered[-1]):
        return ordered[: ordered.size - int(np.isnan(ordered).sum())]
    return ordered


def _tie_ranks(ordered: FloatArray) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """For each value of a sorted array, how many values are below it and how many are at
    or below it (``searchsorted(x, x, "left")`` and ``"right"``), in one pass over its runs
    of equal values."""
    n = ordered.size
    starts_of_runs = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    if starts_of_runs.size == n - 1:  # no ties
        return np.arange(n), np.arange(1, n + 1)
    starts = np.concatenate(([0], starts_of_runs))
    ends = np.concatenate((starts_of_runs, [n]))
    lengths = ends - starts
    return np.repeat(starts, lengths), np.repeat(ends, lengths)


def _ks_statistic(first: FloatArray, second: FloatArray) -> float:
    """The two-sided KS statistic of two sorted, NaN-free samples, as ``ks_2samp`` computes
    it (``count/n`` of the first minus ``count/n`` of the second, at sample points) but
    evaluated only at the points of the smaller sample and just below them: between two of
    its points its CDF is flat, so the difference is extreme at those ends. ``O(m log n)``
    for a bounded sample of ``m`` values against ``n`` instead of ``O((m + n) log n)``."""
    n1, n2 = first.size, second.size
    small, large = (first, second) if n1 <= n2 else (second, first)
    below_small, at_or_below_small = _tie_ranks(small)
    at_or_below_large = np.searchsorted(large, small, side="right")
    # Values of the small sample that the large one also holds need a second, left-side
    # search; for continuous data that is hardly any, so search only for them.
    last = large[np.maximum(at_or_below_large - 1, 0)]
    tied = (at_or_below_large > 0) & (last == small)
    below_large = at_or_below_large.copy()
    if tied.any():
        below_large[tied] = np.searchsorted(large, small[tied], side="left")
    if n1 <= n2:
        c1 = np.concatenate((at_or_below_small, below_small))
        c2 = np.concatenate((at_or_below_large, below_large))
    else:
        c1 = np.concatenate((at_or_below_large, below_large))
        c2 = np.concatenate((at_or_below_small, below_small))
    diffs = c1 / n1 - c2 / n2
    # At the largest value both CDFs are 1: the maximum is at least 0, the minimum at most 0.
    high = max(float(diffs.max()), 0.0)
    low = float(np.clip(-diffs.min(), 0, 1))
    return low if low > high else high


def ks(
    first: npt.ArrayLike, second: npt.ArrayLike, *, assume_sorted: bool = False
) -> tuple[float, float]:
    """``(statistic, p-value)`` of the two-sided two-sample KS test of the non-null values,
    equal to ``scipy.stats.ks_2samp(first, second)`` (method "auto": exact up to 10,000
    values in the larger sample, Smirnov's asymptotic distribution above). NaN values are
    dropped first; ``(nan, nan)`` when either side has none left.

    >>> ks([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    (0.0, 1.0)
    """
    from scipy import stats as sp

    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if not assume_sorted:
        a, b = np.sort(a), np.sort(b)
    a, b = drop_sorted_nans(a), drop_sorted_nans(b)
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan
    if max(a.size, b.size) <= _EXACT_KS:
        result = sp.ks_2samp(a, b)
        return float(result.statistic), float(result.pvalue)
    d = _ks_statistic(a, b)
    m, n = sorted([float(a.size), float(b.size)], reverse=True)
    en = m * n / (m + n)
    prob = float(np.clip(sp.kstwo.sf(d, np.round(en)), 0, 1))
    return d, prob


def category_counts(
    reference: Mapping[str, float], values: Mapping[str, int]
) -> tuple[list[str], FloatArray, npt.NDArray[np.int64], int]:
    """Align current category counts with a reference's categories: ``(buckets,
    expected proportions, observed counts, unseen count)``. Categories the reference does
    not list are pooled into one :data:`OTHER` bucket (kept only when either side has
    something there).

    >>> category_counts({"a": 0.5, "b": 0.5}, {"a": 3, "c": 1})
    (['a', 'b', '__other__'], array([0.5, 0.5, 0. ]), array([3, 0, 1]), 1)
    """
    buckets = [c for c in reference if c != OTHER]
    unseen = int(sum(count for name, count in values.items() if name not in reference))
    pooled = unseen + int(values.get(OTHER, 0)) if OTHER in reference else unseen
    expected = [float(reference[c]) for c in buckets]
    observed = [int(values.get(c, 0)) for c in buckets]
    other_share = float(reference.get(OTHER, 0.0))
    if pooled or other_share:
        buckets.append(OTHER)
        expected.append(other_share)
        observed.append(pooled)
    return buckets, np.asarray(expected, dtype=np.float64), np.asarray(observed), unseen


def chi_square(
    expected: npt.ArrayLike, observed: npt.ArrayLike, eps: float = EPS
) -> tuple[float, float]:
    """Pearson's chi-square goodness of fit of ``observed`` counts against ``expected``
    proportions (smoothed like :func:`psi`, so a bucket the reference never saw has a small
    but non-zero expectation): ``scipy.stats.chisquare(observed, n * smooth(expected))``.
    ``(nan, nan)`` with no observations or a single bucket.

    >>> chi, p = chi_square([0.5, 0.5], [50, 50]); (round(chi, 9), round(p, 6))
    (0.0, 1.0)
    """
    from scipy import stats as sp

    obs = np.asarray(observed, dtype=np.float64)
    total = obs.sum()
    if total <= 0 or obs.size < 2:
        return math.nan, math.nan
    f_exp = smooth(expected, eps) * total
    result = sp.chisquare(obs, f_exp)
    return float(result.statistic), float(result.pvalue)


def js_distance(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Jensen–Shannon distance (base 2, so 0 to 1) between two distributions over the same
    buckets, each normalised: ``scipy.spatial.distance.jensenshannon(p, q, base=2)``. No
    smoothing is needed (it stays finite). NaN when a side is empty.

    >>> js_distance([1, 0], [0, 1])
    1.0
    """
    from scipy.spatial.distance import jensenshannon

    p = np.asarray(expected, dtype=np.float64)
    q = np.asarray(actual, dtype=np.float64)
    if p.size == 0 or p.sum() <= 0 or q.sum() <= 0:
        return math.nan
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2))


def kl_divergence(actual: npt.ArrayLike, expected: npt.ArrayLike, eps: float = EPS) -> float:
    """Kullback–Leibler divergence ``KL(q ‖ p) = Σ q_i ln(q_i / p_i)`` in nats of the actual
    shares ``q`` from the expected ``p``, both smoothed as in :func:`psi` (PSI is
    ``KL(q ‖ p) + KL(p ‖ q)``). NaN when a side is empty.

    >>> round(kl_divergence([1, 1], [1, 1]), 12)
    0.0
    """
    q_raw = np.asarray(actual, dtype=np.float64)
    p_raw = np.asarray(expected, dtype=np.float64)
    if p_raw.size == 0 or p_raw.sum() <= 0 or q_raw.sum() <= 0:
        return math.nan
    p, q = smooth(p_raw, eps), smooth(q_raw, eps)
    return float(np.sum(q * np.log(q / p)))


def finite(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing or NaN (for JSON and tables)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number
