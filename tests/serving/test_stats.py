"""The A/B and champion/challenger statistics: equal to SciPy's own tests where SciPy has
one, and right in simulation — the nominal false-positive rate with no true difference,
the planned power at the planned sample size, and an mSPRT that stays valid when read
after every batch (where a naive fixed test peeked at the same way does not).

The simulations are vectorised over thousands of experiments at once and seeded."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats

import loopml.serving.stats as lstats
from loopml.exceptions import InvalidInput
from loopml.serving.stats import (
    always_valid_p_values,
    check_alpha,
    check_mde,
    detectable_effect,
    mcnemar,
    mixture_likelihood_ratio,
    msprt_means,
    msprt_proportions,
    paired_ttest,
    sample_size_means,
    sample_size_paired,
    sample_size_proportions,
    sequential_paired,
    sequential_test,
    two_proportion_p_values,
    two_proportion_ztest,
    welch_p_values,
    welch_ttest,
)

EXPERIMENTS = 4000


def test_doctests() -> None:
    failed, attempted = doctest.testmod(lstats)
    assert attempted > 0 and failed == 0


# -- equal to SciPy ------------------------------------------------------------------------


def test_welch_equals_scipy_with_the_sign_of_b_minus_a() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(10, 1, 40)
    b = rng.normal(10.6, 3, 70)
    ours = welch_ttest(a, b, alpha=0.1)
    theirs = stats.ttest_ind(b, a, equal_var=False)
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-12)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-12)
    assert ours.df == pytest.approx(theirs.df, rel=1e-12)
    ci = theirs.confidence_interval(confidence_level=0.9)
    assert (ours.ci_low, ours.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert ours.difference == pytest.approx(b.mean() - a.mean())
    pooled = math.sqrt((39 * a.var(ddof=1) + 69 * b.var(ddof=1)) / 108)
    assert ours.effect_size == pytest.approx((b.mean() - a.mean()) / pooled)
    assert ours.effect_size_kind == "cohen_d"
    assert ours.relative_difference == pytest.approx((b.mean() - a.mean()) / a.mean())
    # The broadcasting helper gives the same p-value from the moments.
    p = welch_p_values(a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size)
    assert float(p) == pytest.approx(theirs.pvalue, rel=1e-12)


def test_the_two_proportion_z_test_equals_pearsons_chi_square() -> None:
    ours = two_proportion_ztest(120, 1000, 151, 1050)
    table = [[120, 880], [151, 899]]
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert ours.p_value == pytest.approx(p, rel=1e-10)
    assert ours.statistic**2 == pytest.approx(chi2, rel=1e-10)
    pa, pb = 0.12, 151 / 1050
    assert ours.difference == pytest.approx(pb - pa)
    se = math.sqrt(pa * (1 - pa) / 1000 + pb * (1 - pb) / 1050)
    assert ours.ci_high - ours.difference == pytest.approx(stats.norm.ppf(0.975) * se)
    assert ours.effect_size == pytest.approx(2 * math.asin(pb**0.5) - 2 * math.asin(pa**0.5))
    assert ours.relative_difference == pytest.approx((pb - pa) / pa)
    assert float(two_proportion_p_values(120, 1000, 151, 1050)) == pytest.approx(p, rel=1e-10)
    # No variance at all (nobody converted anywhere): no difference, p = 1, not NaN.
    none = two_proportion_ztest(0, 10, 0, 10)
    assert none.p_value == 1.0 and none.difference == 0.0 and not none.significant


def test_paired_t_equals_scipy() -> None:
    rng = np.random.default_rng(2)
    champion = rng.gamma(2.0, 1.0, 60)
    challenger = champion * 0.9 + rng.normal(0, 0.3, 60)
    ours = paired_ttest(champion, challenger)
    theirs = stats.ttest_rel(challenger, champion)
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-12)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-12)
    ci = theirs.confidence_interval(confidence_level=0.95)
    assert (ours.ci_low, ours.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    d = challenger - champion
    assert ours.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    with pytest.raises(InvalidInput, match="one pair per unit"):
        paired_ttest([1.0, 2.0, 3.0], [1.0, 2.0])


def test_mcnemar_exact_for_few_discordant_pairs_chi_square_for_many() -> None:
    # 3 requests only the champion got right, 9 only the challenger: 12 discordant.
    champion = [True] * 50 + [True] * 3 + [False] * 9 + [False] * 8
    challenger = [True] * 50 + [False] * 3 + [True] * 9 + [False] * 8
    exact = mcnemar(champion, challenger)
    assert exact.test == "McNemar's exact test"
    assert exact.p_value == pytest.approx(stats.binomtest(9, 12, 0.5).pvalue, rel=1e-12)
    assert exact.difference == pytest.approx(6 / 70)
    # Many discordant pairs: the continuity-corrected chi-square.
    champion = [True] * 30 + [False] * 50 + [True] * 20
    challenger = [False] * 30 + [True] * 50 + [True] * 20
    many = mcnemar(champion, challenger)
    assert many.test == "McNemar's test"
    assert many.statistic == pytest.approx((abs(30 - 50) - 1) ** 2 / 80)
    assert many.p_value == pytest.approx(stats.chi2.sf((20 - 1) ** 2 / 80, 1), rel=1e-12)
    assert many.difference == pytest.approx(0.2) and many.significant
    assert many.ci_low < 0.2 < many.ci_high
    same = mcnemar([True, False], [True, False])
    assert same.p_value == 1.0 and same.difference == 0.0
    with pytest.raises(InvalidInput, match="one pair per request"):
        mcnemar([True], [True, False])


def test_sequential_test_over_outcomes_equals_the_cumulative_counts_form() -> None:
    rng = np.random.default_rng(3)
    arms = rng.integers(0, 2, 3000)
    outcomes = rng.random(3000) < np.where(arms == 1, 0.16, 0.10)
    result = sequential_test(arms, outcomes, binary=True, tau=0.03)
    na, nb = np.cumsum(arms == 0), np.cumsum(arms == 1)
    xa, xb = np.cumsum((arms == 0) & outcomes), np.cumsum((arms == 1) & outcomes)
    p = msprt_proportions(xa, na, xb, nb, tau=0.03)
    assert result.p_value == pytest.approx(p[-1])
    assert result.crossed and result.p_value < 0.01  # a 6-point lift over 1500 per arm
    assert result.looks == int(np.sum((na >= 30) & (nb >= 30)))
    # Continuous: the running moments form.
    values = rng.normal(np.where(arms == 1, 0.0, 0.0), 1.0)
    flat = sequential_test(arms, values, binary=False, tau=0.1)
    assert 0 < flat.p_value <= 1 and flat.to_dict()["crossed"] is flat.crossed
    # Too few outcomes: no look yet, p = 1.
    early = sequential_test([0, 1, 0, 1], [1.0, 0.0, 1.0, 0.0], binary=True, tau=0.1)
    assert early.looks == 0 and early.p_value == 1.0 and early.to_dict()["likelihood_ratio"] is None


def test_mixture_likelihood_ratio_and_always_valid_p_values() -> None:
    # No evidence (difference 0): the ratio is below 1, the p-value stays 1.
    assert float(mixture_likelihood_ratio(0.0, 1.0, 1.0)) == pytest.approx(math.sqrt(0.5))
    assert list(always_valid_p_values([0.5, 4.0, 2.0, np.nan, 25.0])) == [
        1.0,
        0.25,
        0.25,
        0.25,
        0.04,
    ]
    # No variance (a 0/0 rate): no ratio.
    assert np.isnan(mixture_likelihood_ratio(0.1, 0.0, 1.0))


# -- simulation: false positives, power, peeking ------------------------------------------


def test_with_no_true_difference_the_z_test_rejects_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(10)
    n = 800
    xa = rng.binomial(n, 0.1, EXPERIMENTS)
    xb = rng.binomial(n, 0.1, EXPERIMENTS)
    rate = float(np.mean(two_proportion_p_values(xa, n, xb, n) < 0.05))
    assert 0.03 <= rate <= 0.07, rate


def test_with_no_true_difference_welch_rejects_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(11)
    # Unequal variances and sizes, the case Welch is for; a skewed outcome too.
    a = rng.normal(5.0, 1.0, (EXPERIMENTS, 150))
    b = rng.normal(5.0, 3.0, (EXPERIMENTS, 250))
    p = welch_p_values(a.mean(1), a.var(1, ddof=1), 150, b.mean(1), b.var(1, ddof=1), 250)
    rate = float(np.mean(p < 0.05))
    assert 0.03 <= rate <= 0.07, rate
    a = rng.exponential(2.0, (EXPERIMENTS, 300))
    b = rng.exponential(2.0, (EXPERIMENTS, 300))
    p = welch_p_values(a.mean(1), a.var(1, ddof=1), 300, b.mean(1), b.var(1, ddof=1), 300)
    rate = float(np.mean(p < 0.05))
    assert 0.03 <= rate <= 0.07, rate


def test_the_planned_sample_size_gives_the_planned_power_for_a_conversion() -> None:
    rng = np.random.default_rng(12)
    baseline, mde = 0.10, 0.03
    n = sample_size_proportions(baseline, mde, alpha=0.05, power=0.8)
    xa = rng.binomial(n, baseline, EXPERIMENTS)
    xb = rng.binomial(n, baseline + mde, EXPERIMENTS)
    power = float(np.mean(two_proportion_p_values(xa, n, xb, n) < 0.05))
    assert 0.76 <= power <= 0.84, (n, power)
    # Half the sample: clearly underpowered.
    half = n // 2
    xa, xb = (
        rng.binomial(half, baseline, EXPERIMENTS),
        rng.binomial(half, baseline + mde, EXPERIMENTS),
    )
    assert float(np.mean(two_proportion_p_values(xa, half, xb, half) < 0.05)) < 0.6


def test_the_planned_sample_size_gives_the_planned_power_for_a_value() -> None:
    rng = np.random.default_rng(13)
    sd, mde = 2.0, 0.5
    n = sample_size_means(sd, mde, alpha=0.05, power=0.8)
    a = rng.normal(10.0, sd, (EXPERIMENTS, n))
    b = rng.normal(10.0 + mde, sd, (EXPERIMENTS, n))
    p = welch_p_values(a.mean(1), a.var(1, ddof=1), n, b.mean(1), b.var(1, ddof=1), n)
    power = float(np.mean(p < 0.05))
    assert 0.76 <= power <= 0.84, (n, power)
    # And what a sample of n detects is about the mde it was planned for.
    assert detectable_effect(sd**2, n, sd**2, n) == pytest.approx(mde, rel=0.01)


def test_the_msprt_stays_valid_when_peeked_at_after_every_batch() -> None:
    """50 looks, one after every batch of 40 requests per arm, no true difference: the
    naive z test, stopped at the first look below 0.05, 'finds' a difference far more often
    than 5%; the mSPRT's always-valid p-value does not."""
    rng = np.random.default_rng(14)
    experiments, looks, batch = 2000, 50, 40
    xa = np.cumsum(rng.binomial(batch, 0.1, (experiments, looks)), axis=1)
    xb = np.cumsum(rng.binomial(batch, 0.1, (experiments, looks)), axis=1)
    n = batch * np.arange(1, looks + 1)
    naive = float(np.mean((two_proportion_p_values(xa, n, xb, n) < 0.05).any(axis=1)))
    always = msprt_proportions(xa, n, xb, n, tau=0.03)
    msprt = float(np.mean(always[:, -1] <= 0.05))
    assert naive > 0.15, naive
    assert msprt <= 0.06, msprt
    # The always-valid p-value never rises.
    assert (np.diff(always, axis=1) <= 0).all()
    # With a true lift it still finds it.
    xb = np.cumsum(rng.binomial(batch, 0.14, (experiments, looks)), axis=1)
    found = float(np.mean(msprt_proportions(xa, n, xb, n, tau=0.03)[:, -1] <= 0.05))
    assert found > 0.8, found


def test_the_msprt_on_means_stays_valid_when_peeked_at() -> None:
    rng = np.random.default_rng(15)
    experiments, looks, batch = 2000, 40, 25
    a = rng.normal(0.0, 1.0, (experiments, looks, batch))
    b = rng.normal(0.0, 2.0, (experiments, looks, batch))
    n = batch * np.arange(1, looks + 1)

    def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.cumsum(x.sum(2), axis=1)
        q = np.cumsum((x * x).sum(2), axis=1)
        mean = s / n
        return mean, (q - n * mean**2) / (n - 1)

    (ma, va), (mb, vb) = moments(a), moments(b)
    naive = float(np.mean((welch_p_values(ma, va, n, mb, vb, n) < 0.05).any(axis=1)))
    msprt = float(np.mean(msprt_means(ma, va, n, mb, vb, n, tau=0.15)[:, -1] <= 0.05))
    assert naive > 0.15, naive
    assert msprt <= 0.06, msprt


def test_paired_planning_and_the_paired_msprt() -> None:
    """The planned number of pairs gives the planned power to a paired t test; the paired
    mSPRT read after every pair keeps its false positives under alpha and finds a real
    difference."""
    rng = np.random.default_rng(16)
    sd, mde = 1.5, 0.3
    n = sample_size_paired(sd, mde)
    d = rng.normal(mde, sd, (EXPERIMENTS, n))
    power = float(np.mean(stats.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05))
    assert 0.76 <= power <= 0.84, (n, power)
    false = [sequential_paired(rng.normal(0.0, sd, 1000), tau=0.3).crossed for _ in range(1000)]
    assert float(np.mean(false)) <= 0.06
    found = [sequential_paired(rng.normal(0.3, sd, 1000), tau=0.3).crossed for _ in range(200)]
    assert float(np.mean(found)) > 0.8
    few = sequential_paired([1.0, -1.0, 0.5], tau=0.3)
    assert few.looks == 0 and few.p_value == 1.0


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, "x", float("nan")])
def test_alpha_and_power_must_be_probabilities(alpha: object) -> None:
    with pytest.raises(InvalidInput, match="strictly between 0 and 1"):
        check_alpha(alpha)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="power"):
        sample_size_means(1.0, 0.1, power=alpha)  # type: ignore[arg-type]


@pytest.mark.parametrize("mde", [0, -0.1, float("inf"), float("nan"), "big"])
def test_the_mde_must_be_a_positive_number(mde: object) -> None:
    with pytest.raises(InvalidInput, match="Minimum detectable effect"):
        check_mde(mde)  # type: ignore[arg-type]


def test_bad_samples_and_rates_are_refused() -> None:
    with pytest.raises(InvalidInput, match="at least 2"):
        welch_ttest([1.0], [1.0, 2.0])
    with pytest.raises(InvalidInput, match="NaN"):
        welch_ttest([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(InvalidInput, match="successes"):
        two_proportion_ztest(5, 3, 1, 10)
    with pytest.raises(InvalidInput, match="Baseline rate"):
        sample_size_proportions(0.0, 0.02)
    with pytest.raises(InvalidInput, match="leaves 0–1"):
        sample_size_proportions(0.5, 0.6)
    # Near 1 the change is planned downwards.
    assert sample_size_proportions(0.99, 0.02) > 0
