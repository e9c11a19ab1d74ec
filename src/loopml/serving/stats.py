"""The statistics of A/B and champion/challenger reports: pure functions over numbers, no
I/O (:mod:`loopml.serving.report` reads the logs and calls them).

Independent samples (an A/B test: each request went to one variant)

- :func:`two_proportion_ztest` for a binary outcome (conversion): pooled-variance z test,
  Wald interval of the difference, Cohen's h;
- :func:`welch_ttest` for a continuous one (value): Welch's t test (unequal variances,
  Welch–Satterthwaite degrees of freedom), its interval, Cohen's d;
- :func:`sample_size_proportions` / :func:`sample_size_means`: the per-variant sample a
  fixed-horizon test needs to detect a minimum effect at ``alpha`` with ``power``;
- :func:`msprt_proportions` / :func:`msprt_means`: the mixture sequential probability ratio
  test (Johari, Koomen, Pekelis, Walsh 2017, "Peeking at A/B tests: why it matters, and what
  to do about it" / "Always valid inference"), normal mixture over the difference: its
  always-valid p-value may be read after every request without inflating false positives.

Paired samples (champion/challenger: both models scored the same requests)

- :func:`mcnemar` on per-request correctness of two classifiers (exact binomial test when
  the discordant pairs are few, continuity-corrected chi-square else);
- :func:`paired_ttest` on per-request losses of two regressors.

Every difference is ``b - a`` (treatment minus control, challenger minus champion), and a
:class:`TestResult` carries the statistic, p-value, effect size and confidence interval::

    >>> r = two_proportion_ztest(100, 1000, 130, 1000)
    >>> round(r.difference, 3), round(r.p_value, 4), r.significant
    (0.03, 0.0355, True)

The p-value helpers (:func:`two_proportion_p_values`, :func:`welch_p_values`) broadcast over
NumPy arrays, so thousands of simulated experiments are one call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loopml.exceptions import InvalidInput

#: Discordant pairs below this take McNemar's exact binomial test; from here the
#: chi-square approximation is good.
MCNEMAR_EXACT_BELOW = 25
#: The mSPRT starts once each arm has this many outcomes: a plug-in variance from a handful
#: of values is too noisy to trust (a 0/0 conversion rate has none at all).
MSPRT_MIN_N = 30
#: Without a minimum detectable effect, the mSPRT's mixture is centred on standardized
#: effects of about this size (a tenth of a standard deviation).
MSPRT_DEFAULT_EFFECT = 0.1

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TestResult:
    """One fixed-horizon test of ``b`` against ``a``.

    ``difference`` is ``b - a`` (rates, means, or per-request losses), ``ci_low``/``ci_high``
    its ``1 - alpha`` confidence interval, ``effect_size`` standardized (``effect_size_kind``
    ``cohen_h``, ``cohen_d`` or ``cohen_dz``; None when undefined), ``relative_difference``
    the difference over ``a``'s value (None when that is 0).
    """

    __test__ = False  # not a pytest class

    test: str
    statistic: float
    p_value: float
    difference: float
    ci_low: float
    ci_high: float
    alpha: float
    effect_size: float | None = None
    effect_size_kind: str | None = None
    relative_difference: float | None = None
    df: float | None = None

    @property
    def significant(self) -> bool:
        return bool(self.p_value < self.alpha)

    def to_dict(self) -> dict[str, Any]:
        return {**_finite(asdict(self)), "significant": self.significant}


@dataclass(frozen=True)
class SequentialResult:
    """The mSPRT over every look so far: the always-valid p-value (the smallest ``1 /
    likelihood ratio`` seen, capped at 1), the last likelihood ratio, the mixture's scale
    ``tau`` (in the outcome's units) and whether the p-value crossed ``alpha``."""

    test: str
    p_value: float
    likelihood_ratio: float
    tau: float
    looks: int
    alpha: float

    @property
    def crossed(self) -> bool:
        return bool(self.p_value <= self.alpha)

    def to_dict(self) -> dict[str, Any]:
        return {**_finite(asdict(self)), "crossed": self.crossed}


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinities become None (JSON has neither)."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()
    }


def check_alpha(alpha: float, what: str = "alpha") -> float:
    """``alpha`` as a float if it is strictly between 0 and 1; :class:`InvalidInput` else.

    >>> check_alpha(0.05)
    0.05
    """
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 < value < 1:
        raise InvalidInput(f"{what} {alpha!r}: a probability strictly between 0 and 1, e.g. 0.05.")
    return value


def check_mde(mde: float) -> float:
    """``mde`` (a minimum detectable effect, absolute) if positive and finite."""
    try:
        value = float(mde)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidInput(
            f"Minimum detectable effect {mde!r}: a positive number in the outcome's units "
            "(e.g. 0.02 for two percentage points of conversion)."
        )
    return value


def _norm() -> Any:
    from scipy import stats

    return stats.norm


# -- independent samples -----------------------------------------------------------------


def two_proportion_p_values(
    successes_a: npt.ArrayLike,
    n_a: npt.ArrayLike,
    successes_b: npt.ArrayLike,
    n_b: npt.ArrayLike,
) -> Array:
    """Two-sided p-values of the pooled two-proportion z test, element-wise (NaN where
    the pooled rate is 0 or 1: no variance, no test)."""
    xa, na, xb, nb = (np.asarray(v, dtype=float) for v in (successes_a, n_a, successes_b, n_b))
    pooled = (xa + xb) / (na + nb)
    se = np.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (xb / nb - xa / na) / se
    p: Array = 2 * _norm().sf(np.abs(z))
    return np.where(se > 0, p, np.nan)


def two_proportion_ztest(
    successes_a: int, n_a: int, successes_b: int, n_b: int, *, alpha: float = 0.05
) -> TestResult:
    """Whether ``b``'s rate differs from ``a``'s: the pooled z test, the Wald interval of
    ``rate_b - rate_a`` and Cohen's h.

    >>> r = two_proportion_ztest(50, 500, 50, 500)
    >>> r.difference, r.p_value
    (0.0, 1.0)
    """
    alpha = check_alpha(alpha)
    for label, x, n in (("a", successes_a, n_a), ("b", successes_b, n_b)):
        if not (0 <= x <= n and n > 0):
            raise InvalidInput(
                f"Variant {label}: {x} successes out of {n} trials; need 0 <= successes <= "
                "trials and trials > 0."
            )
    pa, pb = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    diff = pb - pa
    if se0 > 0:
        z = diff / se0
        p = float(2 * _norm().sf(abs(z)))
    else:  # both rates 0 (or both 1): identical, nothing to test
        z, p = 0.0, 1.0
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    half = float(_norm().ppf(1 - alpha / 2)) * se
    return TestResult(
        test="two-proportion z-test",
        statistic=float(z),
        p_value=min(p, 1.0),
        difference=diff,
        ci_low=diff - half,
        ci_high=diff + half,
        alpha=alpha,
        effect_size=2 * math.asin(math.sqrt(pb)) - 2 * math.asin(math.sqrt(pa)),
        effect_size_kind="cohen_h",
        relative_difference=diff / pa if pa > 0 else None,
    )


def welch_p_values(
    mean_a: npt.ArrayLike,
    var_a: npt.ArrayLike,
    n_a: npt.ArrayLike,
    mean_b: npt.ArrayLike,
    var_b: npt.ArrayLike,
    n_b: npt.ArrayLike,
) -> Array:
    """Two-sided p-values of Welch's t test from each sample's mean, variance (``ddof=1``)
    and size, element-wise."""
    from scipy import stats

    ma, va, na, mb, vb, nb = (
        np.asarray(v, dtype=float) for v in (mean_a, var_a, n_a, mean_b, var_b, n_b)
    )
    t, df = _welch(ma, va, na, mb, vb, nb)
    p: Array = 2 * stats.t.sf(np.abs(t), df)
    return p


def _welch(ma: Any, va: Any, na: Any, mb: Any, vb: Any, nb: Any) -> tuple[Any, Any]:
    sa, sb = va / na, vb / nb
    se = np.sqrt(sa + sb)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mb - ma) / se
        df = (sa + sb) ** 2 / (sa**2 / (na - 1) + sb**2 / (nb - 1))
    return t, df


def welch_ttest(a: npt.ArrayLike, b: npt.ArrayLike, *, alpha: float = 0.05) -> TestResult:
    """Whether ``b``'s mean differs from ``a``'s: Welch's t test (what
    ``scipy.stats.ttest_ind(a, b, equal_var=False)`` computes, with the sign of ``b - a``),
    the Welch interval of ``mean_b - mean_a`` and Cohen's d (pooled standard deviation)."""
    from scipy import stats

    alpha = check_alpha(alpha)
    xa, xb = _sample(a, "a"), _sample(b, "b")
    na, nb = xa.size, xb.size
    ma, mb = float(xa.mean()), float(xb.mean())
    va, vb = float(xa.var(ddof=1)), float(xb.var(ddof=1))
    diff = mb - ma
    se = math.sqrt(va / na + vb / nb)
    if se == 0:  # two constant samples
        t, df, p = 0.0 if diff == 0 else math.copysign(math.inf, diff), math.nan, float(diff == 0)
        half = 0.0
    else:
        t_arr, df_arr = _welch(ma, va, na, mb, vb, nb)
        t, df = float(t_arr), float(df_arr)
        p = float(2 * stats.t.sf(abs(t), df))
        half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    pooled = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    return TestResult(
        test="Welch's t-test",
        statistic=t,
        p_value=p,
        difference=diff,
        ci_low=diff - half,
        ci_high=diff + half,
        alpha=alpha,
        effect_size=diff / pooled if pooled > 0 else None,
        effect_size_kind="cohen_d",
        relative_difference=diff / ma if ma != 0 else None,
        df=df,
    )


def _sample(values: npt.ArrayLike, label: str, minimum: int = 2) -> Array:
    array = np.asarray(values, dtype=float).ravel()
    if array.size < minimum:
        raise InvalidInput(
            f"Sample {label} has {array.size} value(s); the test needs at least {minimum}."
        )
    if not np.isfinite(array).all():
        raise InvalidInput(f"Sample {label} holds NaN or infinite values; drop them first.")
    return array


def _z(alpha: float, power: float) -> tuple[float, float]:
    norm = _norm()
    alpha = check_alpha(alpha)
    power = check_alpha(power, "power")
    return float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))


def sample_size_proportions(
    baseline: float, mde: float, *, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Requests per variant a two-sided two-proportion z test needs to detect a change of
    ``mde`` (absolute: 0.02 is two percentage points) from the ``baseline`` rate at level
    ``alpha`` with probability ``power`` (pooled variance under the null, unpooled under
    the alternative).

    >>> sample_size_proportions(0.10, 0.02)
    3841
    """
    mde = check_mde(mde)
    if not 0 < baseline < 1:
        raise InvalidInput(
            f"Baseline rate {baseline!r}: strictly between 0 and 1 (the control's conversion)."
        )
    target = baseline + mde if baseline + mde < 1 else baseline - mde
    if not 0 < target < 1:
        raise InvalidInput(
            f"A change of {mde:g} from a rate of {baseline:g} leaves 0–1; choose a smaller "
            "minimum detectable effect."
        )
    za, zb = _z(alpha, power)
    mean = (baseline + target) / 2
    root = za * math.sqrt(2 * mean * (1 - mean)) + zb * math.sqrt(
        baseline * (1 - baseline) + target * (1 - target)
    )
    return math.ceil(root**2 / mde**2)


def sample_size_means(sd: float, mde: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Requests per variant a two-sided test of two means needs to detect a difference of
    ``mde`` (in the outcome's units) when each outcome has standard deviation ``sd``, at
    level ``alpha`` with probability ``power`` (normal approximation, plus the usual
    ``z_(1-alpha/2)^2 / 4`` for estimating the variance).

    >>> sample_size_means(1.0, 0.2)
    394
    """
    mde = check_mde(mde)
    if not (math.isfinite(sd) and sd > 0):
        raise InvalidInput(f"Standard deviation {sd!r}: a positive number.")
    za, zb = _z(alpha, power)
    return math.ceil(2 * ((za + zb) * sd / mde) ** 2 + za**2 / 4)


def detectable_effect(
    variance_a: float,
    n_a: int,
    variance_b: float,
    n_b: int,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float | None:
    """The smallest absolute difference a fixed-horizon test on samples of these sizes
    and per-outcome variances detects with ``power`` (None without data)."""
    if n_a < 1 or n_b < 1:
        return None
    za, zb = _z(alpha, power)
    return (za + zb) * math.sqrt(variance_a / n_a + variance_b / n_b)


# -- sequential: the mixture SPRT --------------------------------------------------------


def mixture_likelihood_ratio(difference: Any, variance: Any, tau: float) -> Array:
    """The normal-mixture likelihood ratio of ``H1: difference ~ N(0, tau^2)`` against
    ``H0: difference = 0`` for an estimated ``difference`` with ``variance``, element-wise:
    ``sqrt(V / (V + tau^2)) * exp(tau^2 * d^2 / (2 V (V + tau^2)))``."""
    d = np.asarray(difference, dtype=float)
    v = np.asarray(variance, dtype=float)
    t2 = float(tau) ** 2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = 0.5 * np.log(v / (v + t2)) + t2 * d**2 / (2 * v * (v + t2))
    ratio: Array = np.exp(np.minimum(log_ratio, 700.0))
    return np.where(v > 0, ratio, np.nan)


def always_valid_p_values(ratios: npt.ArrayLike) -> Array:
    """The always-valid p-value after each look (along the last axis): ``min(1, 1 /
    max(ratio so far))``; a look without a ratio (NaN) changes nothing."""
    r = np.nan_to_num(np.asarray(ratios, dtype=float), nan=0.0)
    best = np.maximum.accumulate(r, axis=-1)
    with np.errstate(divide="ignore"):
        p: Array = np.minimum(1.0, 1.0 / best)
    return p


def msprt_proportions(
    successes_a: npt.ArrayLike,
    n_a: npt.ArrayLike,
    successes_b: npt.ArrayLike,
    n_b: npt.ArrayLike,
    *,
    tau: float,
    min_n: int = MSPRT_MIN_N,
) -> Array:
    """Always-valid p-values after each look of cumulative counts (last axis = looks) for a
    difference of two rates; the variance of the difference is the pooled one (the null's),
    and looks before each arm has ``min_n`` outcomes are skipped."""
    xa, na, xb, nb = (np.asarray(v, dtype=float) for v in (successes_a, n_a, successes_b, n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (xa + xb) / (na + nb)
        variance = pooled * (1 - pooled) * (1 / na + 1 / nb)
        ratio = mixture_likelihood_ratio(xb / nb - xa / na, variance, tau)
    return always_valid_p_values(np.where((na >= min_n) & (nb >= min_n), ratio, np.nan))


def msprt_means(
    mean_a: npt.ArrayLike,
    var_a: npt.ArrayLike,
    n_a: npt.ArrayLike,
    mean_b: npt.ArrayLike,
    var_b: npt.ArrayLike,
    n_b: npt.ArrayLike,
    *,
    tau: float,
    min_n: int = MSPRT_MIN_N,
) -> Array:
    """Always-valid p-values after each look (last axis) for a difference of two means,
    from each arm's running mean, variance and size (plug-in variance of the difference)."""
    ma, va, na, mb, vb, nb = (
        np.asarray(v, dtype=float) for v in (mean_a, var_a, n_a, mean_b, var_b, n_b)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mixture_likelihood_ratio(mb - ma, va / na + vb / nb, tau)
    return always_valid_p_values(np.where((na >= min_n) & (nb >= min_n), ratio, np.nan))


def sequential_test(
    arms: Sequence[int],
    outcomes: npt.ArrayLike,
    *,
    binary: bool,
    tau: float,
    alpha: float = 0.05,
    min_n: int = MSPRT_MIN_N,
) -> SequentialResult:
    """The mSPRT of arm 1 against arm 0 read after every outcome, in the order given
    (oldest first): ``arms[i]`` (0 or 1) is the arm of ``outcomes[i]``."""
    alpha = check_alpha(alpha)
    if not (math.isfinite(tau) and tau > 0):
        raise InvalidInput(f"mSPRT scale tau {tau!r}: a positive number.")
    arm = np.asarray(arms, dtype=int)
    y = np.asarray(outcomes, dtype=float)
    if arm.shape != y.shape:
        raise InvalidInput("sequential_test: one arm per outcome.")
    on_a, on_b = (arm == 0).astype(float), (arm == 1).astype(float)
    na, nb = np.cumsum(on_a), np.cumsum(on_b)
    sa, sb = np.cumsum(on_a * y), np.cumsum(on_b * y)
    with np.errstate(divide="ignore", invalid="ignore"):
        if binary:
            p = msprt_proportions(sa, na, sb, nb, tau=tau, min_n=min_n)
            pooled = (sa + sb) / (na + nb)
            ratio = mixture_likelihood_ratio(
                sb / nb - sa / na, pooled * (1 - pooled) * (1 / na + 1 / nb), tau
            )
        else:
            qa, qb = np.cumsum(on_a * y * y), np.cumsum(on_b * y * y)
            ma, mb = sa / na, sb / nb
            va = (qa - na * ma**2) / (na - 1)
            vb = (qb - nb * mb**2) / (nb - 1)
            p = msprt_means(ma, va, na, mb, vb, nb, tau=tau, min_n=min_n)
            ratio = mixture_likelihood_ratio(mb - ma, va / na + vb / nb, tau)
    looks = int(np.sum((na >= min_n) & (nb >= min_n)))
    last = float(ratio[-1]) if looks and np.isfinite(ratio[-1]) else math.nan
    return SequentialResult(
        test="mSPRT (normal mixture)",
        p_value=float(p[-1]) if p.size else 1.0,
        likelihood_ratio=last,
        tau=float(tau),
        looks=looks,
        alpha=alpha,
    )


# -- paired samples ----------------------------------------------------------------------


def mcnemar(right_a: npt.ArrayLike, right_b: npt.ArrayLike, *, alpha: float = 0.05) -> TestResult:
    """Whether classifier ``b`` is right more (or less) often than ``a`` on the same
    requests: McNemar's test on the discordant pairs (exact binomial below
    :data:`MCNEMAR_EXACT_BELOW` of them, continuity-corrected chi-square from there). The
    difference is ``accuracy_b - accuracy_a`` with its Wald interval for paired proportions;
    the statistic is the number of pairs only ``b`` got right (exact) or the chi-square."""
    from scipy import stats

    alpha = check_alpha(alpha)
    a = np.asarray(right_a, dtype=bool).ravel()
    b = np.asarray(right_b, dtype=bool).ravel()
    if a.shape != b.shape or a.size == 0:
        raise InvalidInput(
            f"McNemar's test needs one pair per request: got {a.size} and {b.size} results."
        )
    n = a.size
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    discordant = only_a + only_b
    if discordant == 0:
        statistic, p, name = 0.0, 1.0, "McNemar's test"
    elif discordant < MCNEMAR_EXACT_BELOW:
        statistic = float(only_b)
        p = float(stats.binomtest(only_b, discordant, 0.5).pvalue)
        name = "McNemar's exact test"
    else:
        statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
        p = float(stats.chi2.sf(statistic, 1))
        name = "McNemar's test"
    diff = (only_b - only_a) / n
    se = math.sqrt(max(discordant - (only_b - only_a) ** 2 / n, 0.0)) / n
    half = float(_norm().ppf(1 - alpha / 2)) * se
    accuracy_a = float(a.mean())
    return TestResult(
        test=name,
        statistic=statistic,
        p_value=min(p, 1.0),
        difference=diff,
        ci_low=diff - half,
        ci_high=diff + half,
        alpha=alpha,
        relative_difference=diff / accuracy_a if accuracy_a > 0 else None,
    )


def paired_ttest(a: npt.ArrayLike, b: npt.ArrayLike, *, alpha: float = 0.05) -> TestResult:
    """Whether ``b``'s values differ from ``a``'s on the same units (per-request losses of
    two regressors): the paired t test (``scipy.stats.ttest_rel(b, a)``), the interval of
    the mean difference ``b - a`` and Cohen's d_z."""
    from scipy import stats

    alpha = check_alpha(alpha)
    xa, xb = _sample(a, "a"), _sample(b, "b")
    if xa.shape != xb.shape:
        raise InvalidInput(
            f"A paired test needs one pair per unit: got {xa.size} and {xb.size} values."
        )
    d = xb - xa
    n = d.size
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    df = float(n - 1)
    if sd == 0:
        t = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p, half = float(mean == 0), 0.0
    else:
        se = sd / math.sqrt(n)
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), df))
        half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    base = float(xa.mean())
    return TestResult(
        test="paired t-test",
        statistic=t,
        p_value=p,
        difference=mean,
        ci_low=mean - half,
        ci_high=mean + half,
        alpha=alpha,
        effect_size=mean / sd if sd > 0 else None,
        effect_size_kind="cohen_dz",
        relative_difference=mean / base if base != 0 else None,
        df=df,
    )


def sample_size_paired(sd: float, mde: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Pairs a two-sided paired test needs to detect a mean difference of ``mde`` when the
    per-pair differences have standard deviation ``sd`` (normal approximation, plus
    ``z_(1-alpha/2)^2 / 2`` for estimating the variance).

    >>> sample_size_paired(1.0, 0.2)
    199
    """
    mde = check_mde(mde)
    if not (math.isfinite(sd) and sd > 0):
        raise InvalidInput(f"Standard deviation {sd!r}: a positive number.")
    za, zb = _z(alpha, power)
    return math.ceil(((za + zb) * sd / mde) ** 2 + za**2 / 2)


def sequential_paired(
    differences: npt.ArrayLike,
    *,
    tau: float,
    alpha: float = 0.05,
    min_n: int = MSPRT_MIN_N,
) -> SequentialResult:
    """The mSPRT of a mean per-pair difference against 0, read after every pair in the
    order given (oldest first): the one-sample form, with the plug-in variance of the
    running mean."""
    alpha = check_alpha(alpha)
    if not (math.isfinite(tau) and tau > 0):
        raise InvalidInput(f"mSPRT scale tau {tau!r}: a positive number.")
    d = np.asarray(differences, dtype=float).ravel()
    n = np.arange(1, d.size + 1, dtype=float)
    s, q = np.cumsum(d), np.cumsum(d * d)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s / n
        variance = (q - n * mean**2) / (n - 1)
        ratio = mixture_likelihood_ratio(mean, variance / n, tau)
    ratio = np.where(n >= min_n, ratio, np.nan)
    p = always_valid_p_values(ratio)
    looks = int(np.sum(n >= min_n))
    last = float(ratio[-1]) if looks and np.isfinite(ratio[-1]) else math.nan
    return SequentialResult(
        test="mSPRT (normal mixture, paired)",
        p_value=float(p[-1]) if p.size else 1.0,
        likelihood_ratio=last,
        tau=float(tau),
        looks=looks,
        alpha=alpha,
    )
