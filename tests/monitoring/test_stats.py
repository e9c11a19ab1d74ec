"""The drift statistics, checked by hand on tiny inputs and against SciPy on the same samples."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats as sp
from scipy.spatial.distance import jensenshannon

from loopml.monitoring import stats


def test_doctests() -> None:
    result = doctest.testmod(stats)
    assert result.attempted > 10 and result.failed == 0


def test_psi_by_hand() -> None:
    # expected shares (0.5, 0.5), actual counts 80/20 → shares (0.8, 0.2); smoothing 1e-4
    p = np.array([0.5 + 1e-4, 0.5 + 1e-4]) / (1 + 2e-4)
    q = np.array([0.8 + 1e-4, 0.2 + 1e-4]) / (1 + 2e-4)
    by_hand = (q[0] - p[0]) * math.log(q[0] / p[0]) + (q[1] - p[1]) * math.log(q[1] / p[1])
    assert stats.psi([0.5, 0.5], [80, 20]) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(0.3 * math.log(1.6) - 0.3 * math.log(0.4), rel=1e-3)


def test_psi_identical_is_zero_and_empty_bins_stay_finite() -> None:
    assert stats.psi([0.2, 0.3, 0.5], [20, 30, 50]) == 0.0
    value = stats.psi([1.0, 0.0], [0, 10])  # every value moved to a bin the reference left empty
    assert math.isfinite(value) and value > 5
    assert math.isnan(stats.psi([0.5, 0.5], [0, 0]))
    with pytest.raises(ValueError, match="same bins"):
        stats.psi([0.5, 0.5], [1, 2, 3])


def test_bands() -> None:
    assert [stats.psi_band(v) for v in (0.0, 0.099, 0.1, 0.25, 0.2501)] == [
        "none",
        "none",
        "moderate",
        "moderate",
        "significant",
    ]
    assert stats.psi_band(0.15, (0.2, 0.3)) == "none"
    assert stats.psi_band(math.nan) is None and stats.psi_band(None) is None


def test_bins_are_right_closed_and_skip_nan() -> None:
    edges = [1.0, 2.0]
    values = np.array([-5, 1.0, 1.0000001, 2.0, 2.5, np.nan])
    assert stats.bin_counts(edges, values).tolist() == [2, 2, 1]
    ordered = np.sort(values)[:-1]
    assert stats.sorted_bin_counts(edges, ordered).tolist() == [2, 2, 1]
    assert stats.sorted_bin_counts([], ordered).tolist() == [5]


def test_quantile_edges_match_numpy_and_drop_ties() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 9, 1000, 12345):
        x = np.sort(rng.normal(size=n))
        for bins in (2, 5, 10, 13):
            levels = stats.quantile_levels(bins)
            assert np.array_equal(
                stats.sorted_quantiles(x, [n], levels)[:, 0], np.quantile(x, levels)
            )
    heavy = np.sort(np.r_[np.zeros(900), np.arange(100.0)])
    edges = stats.quantile_edges(heavy, 10)
    assert edges.tolist() == sorted(set(edges.tolist())) and edges[0] == 0.0
    assert stats.quantile_edges(np.full(50, 7.0), 10).tolist() == [7.0]
    assert stats.quantile_edges(np.empty(0), 10).size == 0


def test_sorted_quantiles_of_columns_with_nulls() -> None:
    matrix = np.array([[1.0, 5.0], [2.0, np.nan], [3.0, np.nan]])
    result = stats.sorted_quantiles(matrix, [3, 1], [0.5])
    assert result.tolist() == [[2.0, 5.0]]
    assert np.isnan(stats.sorted_quantiles(matrix, [3, 0], [0.5])[0, 1])


@pytest.mark.parametrize(
    ("n1", "n2"),
    [(5, 7), (300, 200), (5000, 200_000), (200_000, 5000), (20_000, 30_000), (12_000, 12_000)],
)
@pytest.mark.parametrize("ties", [False, True])
def test_ks_equals_scipy(n1: int, n2: int, ties: bool) -> None:
    rng = np.random.default_rng(n1 + n2)
    a, b = rng.normal(size=n1), rng.normal(0.03, 1.1, size=n2)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    expected = sp.ks_2samp(a, b)
    assert stats.ks(a, b) == (float(expected.statistic), float(expected.pvalue))


def test_ks_drops_nulls_and_handles_empty_and_constant() -> None:
    a = np.array([1.0, np.nan, 2.0, 3.0])
    b = np.array([2.0, 3.0, np.nan, 4.0])
    expected = sp.ks_2samp([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert stats.ks(a, b) == (float(expected.statistic), float(expected.pvalue))
    assert all(math.isnan(v) for v in stats.ks([np.nan], [1.0, 2.0]))
    assert stats.ks(np.full(20_000, 3.0), np.full(30_000, 3.0)) == (0.0, 1.0)


def test_chi_square_pools_unseen_categories() -> None:
    reference = {"a": 0.5, "b": 0.5}
    buckets, expected, observed, unseen = stats.category_counts(
        reference, {"a": 40, "b": 40, "c": 15, "d": 5}
    )
    assert buckets == ["a", "b", stats.OTHER]
    assert observed.tolist() == [40, 40, 20] and unseen == 20
    chi2, p = stats.chi_square(expected, observed)
    f_exp = stats.smooth(expected) * 100
    scipy_result = sp.chisquare(observed, f_exp)
    assert (chi2, p) == (float(scipy_result.statistic), float(scipy_result.pvalue))
    assert chi2 > 1000 and p < 1e-10  # categories never seen are strong drift


def test_chi_square_without_unseen_has_no_other_bucket() -> None:
    buckets, expected, observed, unseen = stats.category_counts({"a": 0.7, "b": 0.3}, {"a": 7})
    assert buckets == ["a", "b"] and unseen == 0
    chi2, p = stats.chi_square([0.5, 0.5], [50, 50])
    assert chi2 == pytest.approx(0.0, abs=1e-9) and p == pytest.approx(1.0)
    assert all(math.isnan(v) for v in stats.chi_square([1.0], [10]))


def test_js_and_kl() -> None:
    p, q = [0.5, 0.3, 0.2], [10, 30, 60]
    qn = np.array(q) / 100
    assert stats.js_distance(p, q) == pytest.approx(float(jensenshannon(p, qn, base=2)))
    ps, qs = stats.smooth(p), stats.smooth(q)
    assert stats.kl_divergence(q, p) == pytest.approx(float(np.sum(qs * np.log(qs / ps))))
    # PSI is the symmetrised KL over the same smoothed shares.
    assert stats.psi(p, q) == pytest.approx(stats.kl_divergence(q, p) + stats.kl_divergence(p, q))
    assert math.isnan(stats.js_distance([0.5, 0.5], [0, 0]))
    assert math.isnan(stats.kl_divergence([0, 0], [0.5, 0.5]))
