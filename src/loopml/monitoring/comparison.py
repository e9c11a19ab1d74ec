"""Drift of a current batch against a reference: one :class:`FeatureDrift` per feature.

The bins are always the reference's frozen ones (:mod:`loopml.monitoring.profile`); the
current batch is only counted into them. Per feature:

- numeric: PSI over the bins and its band, KS statistic and p-value against the reference
  values given (the stored sample of a :class:`~loopml.monitoring.profile.Reference`, the
  whole reference frame in :func:`drift`), JS distance and KL divergence over the bins, the
  share of values outside the reference's [min, max];
- categorical: PSI, chi-square and its p-value, JS distance and KL over the categories
  (values the reference never saw pooled into one ``__other__`` bucket), the share of unseen
  values;
- both: the null rate beside the reference's, the rows counted, and ``missing`` when the
  current batch lacks the column altogether.

In a notebook::

    >>> loopml.monitoring.drift(train_df, last_week_df)          # doctest: +SKIP
       feature     kind    psi         band  ks_stat  ks_pvalue ...
    0      age  numeric  0.412  significant    0.183   1.2e-41 ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidInput
from loopml.monitoring import stats
from loopml.monitoring.profile import (
    CATEGORICAL,
    PREDICTION,
    FeatureProfile,
    Profile,
    Reference,
    _build,
    as_frame,
    category_values,
    numeric_values,
    prediction_values,
    sorted_numeric,
)
from loopml.monitoring.rules import FEATURE_METRICS

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

#: The names :meth:`FeatureDrift.metrics` gives, as monitoring stores them per window (one
#: list, which the alert rules check metric names against).
METRICS = FEATURE_METRICS


@dataclass(frozen=True)
class FeatureDrift:
    """How one feature (or the predictions, ``__prediction__``) moved from its reference.
    A statistic that does not apply or could not be computed (KS of a categorical feature,
    anything of a missing or all-null one) is None."""

    feature: str
    kind: str
    rows: int
    missing: bool = False
    psi: float | None = None
    band: str | None = None  # "none" | "moderate" | "significant"; None without a PSI
    ks_stat: float | None = None
    ks_pvalue: float | None = None
    chi2: float | None = None
    chi2_pvalue: float | None = None
    js: float | None = None
    kl: float | None = None
    null_rate: float | None = None
    reference_null_rate: float | None = None
    out_of_range: float | None = None
    unseen: float | None = None
    #: The current shares per reference bin (numeric) or per bucket in ``buckets``.
    current_proportions: tuple[float, ...] = ()
    #: The reference shares over the same bins or buckets, for histograms side by side.
    reference_proportions: tuple[float, ...] = ()
    #: Category names of the buckets (categorical; ``__other__`` pools unseen values).
    buckets: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("current_proportions", "reference_proportions", "buckets"):
            data[key] = list(data[key])
        return data

    def metrics(self) -> dict[str, float | None]:
        """The numbers monitoring stores per window and alert rules read (:data:`METRICS`);
        ``null_rate_change`` is the current null rate minus the reference's."""
        change = (
            self.null_rate - self.reference_null_rate
            if self.null_rate is not None and self.reference_null_rate is not None
            else None
        )
        values = {name: getattr(self, name, None) for name in METRICS}
        values["null_rate_change"] = change
        return values


def _shares(counts: npt.ArrayLike) -> tuple[float, ...]:
    import numpy as np

    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    return tuple(float(v) for v in (values / total if total > 0 else values))


def _numeric_drift(
    profile: FeatureProfile,
    ordered: npt.NDArray[np.float64],
    rows: int,
    sample: npt.NDArray[np.float64] | None,
    bands: Sequence[float],
) -> FeatureDrift:
    """Drift of one numeric feature from its current values, sorted and NaN-free."""
    count = ordered.size
    null_rate = 1.0 - count / rows if rows else None
    base = FeatureDrift(
        profile.name,
        profile.kind,
        rows,
        null_rate=null_rate,
        reference_null_rate=profile.null_rate,
        reference_proportions=profile.proportions,
    )
    if count == 0 or not profile.proportions:
        return base
    counts = stats.sorted_bin_counts(profile.edges, ordered)
    value = stats.psi(profile.proportions, counts)
    outside = None
    if profile.min is not None and profile.max is not None:
        import numpy as np

        below = int(np.searchsorted(ordered, profile.min, side="left"))
        above = count - int(np.searchsorted(ordered, profile.max, side="right"))
        outside = (below + above) / count
    ks_stat = ks_pvalue = None
    if sample is not None and sample.size:
        d, p = stats.ks(sample, ordered, assume_sorted=True)
        ks_stat, ks_pvalue = stats.finite(d), stats.finite(p)
    return FeatureDrift(
        **{
            **asdict(base),
            "psi": stats.finite(value),
            "band": stats.psi_band(value, bands),
            "ks_stat": ks_stat,
            "ks_pvalue": ks_pvalue,
            "js": stats.finite(stats.js_distance(profile.proportions, counts)),
            "kl": stats.finite(stats.kl_divergence(counts, profile.proportions)),
            "out_of_range": outside,
            "current_proportions": _shares(counts),
        }
    )


def _categorical_drift(
    profile: FeatureProfile, column: Any, bands: Sequence[float]
) -> FeatureDrift:
    values = category_values(column)
    rows = len(column)
    count = len(values)
    base = FeatureDrift(
        profile.name,
        profile.kind,
        rows,
        null_rate=1.0 - count / rows if rows else None,
        reference_null_rate=profile.null_rate,
    )
    if count == 0 or not profile.categories:
        return base
    observed_counts = {str(k): int(v) for k, v in values.value_counts(sort=False).items()}
    buckets, expected, observed, unseen = stats.category_counts(profile.categories, observed_counts)
    value = stats.psi(expected, observed)
    chi2, chi2_p = stats.chi_square(expected, observed)
    return FeatureDrift(
        **{
            **asdict(base),
            "psi": stats.finite(value),
            "band": stats.psi_band(value, bands),
            "chi2": stats.finite(chi2),
            "chi2_pvalue": stats.finite(chi2_p),
            "js": stats.finite(stats.js_distance(expected, observed)),
            "kl": stats.finite(stats.kl_divergence(observed, expected)),
            "unseen": unseen / count,
            "current_proportions": _shares(observed),
            "reference_proportions": _shares(expected),
            "buckets": tuple(buckets),
        }
    )


def compare_feature(
    profile: FeatureProfile,
    values: Any,
    *,
    sample: Any = None,
    bands: Sequence[float] = stats.BANDS,
) -> FeatureDrift:
    """Drift of one column's current ``values`` (any 1-D array or Series; NaN/None are
    nulls) from its reference ``profile``; ``sample`` holds reference values for KS
    (numeric features only). What monitoring calls on the columns it reads from the logs.
    """
    import numpy as np

    if profile.kind == CATEGORICAL:
        return _categorical_drift(profile, values, bands)
    current = stats.drop_sorted_nans(np.sort(numeric_values(values)))
    reference = None
    if sample is not None:
        reference = stats.drop_sorted_nans(np.sort(numeric_values(sample)))
    return _numeric_drift(profile, current, len(values), reference, bands)


def _missing(profile: FeatureProfile, rows: int) -> FeatureDrift:
    return FeatureDrift(
        profile.name,
        profile.kind,
        rows,
        missing=True,
        reference_null_rate=profile.null_rate,
        reference_proportions=profile.proportions,
    )


def _check_bands(bands: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in bands)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"bands must be two numbers (e.g. (0.1, 0.25)), not {bands!r}."
        ) from None
    if not 0 <= low <= high:
        raise InvalidInput(f"bands must be two increasing non-negative numbers, not {bands!r}.")
    return low, high


def _compare(
    profile: Profile,
    current: pd.DataFrame,
    columns: Sequence[str] | None,
    sample_columns: Mapping[str, npt.NDArray[np.float64]],
    bands: Sequence[float],
) -> list[FeatureDrift]:
    chosen = list(profile.features) if columns is None else list(columns)
    unknown = [c for c in chosen if c not in profile.features]
    if unknown:
        raise InvalidInput(
            f"The reference profile has no feature {unknown}; its features: "
            f"{', '.join(profile.features)}."
        )
    rows = len(current)
    present = [c for c in chosen if c in current.columns]
    numeric = [c for c in present if profile.features[c].kind != CATEGORICAL]
    matrix, valid = sorted_numeric(current, numeric)
    at = {name: j for j, name in enumerate(numeric)}
    results: list[FeatureDrift] = []
    for name in chosen:
        feature = profile.features[name]
        if name not in current.columns:
            results.append(_missing(feature, rows))
        elif name in at:
            j = at[name]
            ordered = matrix[: int(valid[j]), j]
            results.append(_numeric_drift(feature, ordered, rows, sample_columns.get(name), bands))
        else:
            results.append(_categorical_drift(feature, current[name], bands))
    return results


def _sorted_sample(
    sample: pd.DataFrame | None, profile: Profile, names: Sequence[str]
) -> dict[str, npt.NDArray[np.float64]]:
    if sample is None or sample.empty:
        return {}
    numeric = [n for n in names if n in sample.columns and profile.features[n].kind != CATEGORICAL]
    matrix, valid = sorted_numeric(sample, numeric)
    return {n: matrix[: int(valid[j]), j] for j, n in enumerate(numeric)}


def compare(
    reference: Reference | Profile,
    current: Any,
    *,
    sample: pd.DataFrame | None = None,
    predictions: Any = None,
    bands: Sequence[float] = stats.BANDS,
    columns: Sequence[str] | None = None,
) -> list[FeatureDrift]:
    """Drift of the ``current`` batch (a DataFrame or pyarrow Table) from ``reference``: one
    :class:`FeatureDrift` per reference feature (or per name in ``columns``), in the
    profile's order; a feature the batch lacks comes back with ``missing=True``.

    KS compares the current values with ``sample`` (reference rows), by default a
    :class:`Reference`'s stored sample; a bare :class:`Profile` without ``sample`` has no
    KS. With ``predictions`` (the model's outputs on the batch) and a profile that has
    predictions, a last entry ``__prediction__`` gives prediction drift.
    """
    profile = reference.profile if isinstance(reference, Reference) else reference
    if not isinstance(profile, Profile):
        raise InvalidInput(
            "compare needs a Reference or a Profile to compare with, not "
            f"{type(reference).__name__}."
        )
    bands = _check_bands(bands)
    frame = as_frame(current, "current data", allow_empty=True)
    if sample is None and isinstance(reference, Reference):
        sample = reference.sample()
    names = list(profile.features) if columns is None else list(columns)
    results = _compare(profile, frame, columns, _sorted_sample(sample, profile, names), bands)
    if predictions is not None and profile.predictions is not None:
        reference_output = (
            sample[PREDICTION] if sample is not None and PREDICTION in sample.columns else None
        )
        results.append(
            compare_feature(
                profile.predictions,
                prediction_values(predictions),
                sample=reference_output,
                bands=bands,
            )
        )
    return results


def _order_key(row: FeatureDrift) -> tuple[int, float, str]:
    value = row.psi
    return (0 if row.missing else 1, -(value if value is not None else -math.inf), row.feature)


def drift(
    reference_df: Any,
    current_df: Any,
    *,
    bins: int = 10,
    bands: Sequence[float] = stats.BANDS,
) -> pd.DataFrame:
    """Drift of ``current_df`` from ``reference_df`` (DataFrames or pyarrow Tables), one
    row per reference column, missing columns first, then the worst PSI first. The bins
    are ``bins`` quantiles of the reference; KS uses every non-null reference value.

    >>> import pandas as pd
    >>> ref = pd.DataFrame({"x": range(1000)})
    >>> table = drift(ref, pd.DataFrame({"x": range(500, 1500)}))
    >>> table.loc[0, ["feature", "band"]].tolist(), round(float(table.loc[0, "ks_stat"]), 3)
    (['x', 'significant'], 0.5)
    """
    import pandas as pd

    bands = _check_bands(bands)
    reference = as_frame(reference_df, "reference data")
    current = as_frame(current_df, "current data", allow_empty=True)
    profile, matrix, valid = _build(reference, None, bins)
    numeric = [n for n, f in profile.features.items() if f.kind != CATEGORICAL]
    sample_columns = {n: matrix[: int(valid[j]), j] for j, n in enumerate(numeric)}
    rows = sorted(_compare(profile, current, None, sample_columns, bands), key=_order_key)
    table = pd.DataFrame([r.to_dict() for r in rows])
    return table.drop(columns=["current_proportions", "reference_proportions", "buckets"])
