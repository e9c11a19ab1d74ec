"""Module-level checks that schemas reference as ``"validation.named_checks:NAME"``."""

from __future__ import annotations

import pandas as pd


def positive(series: pd.Series) -> pd.Series:
    return series > 0


def between(series: pd.Series, low: float, high: float) -> pd.Series:
    return (series >= low) & (series <= high)


def mean_below_ten(series: pd.Series) -> bool:
    return bool(series.mean() < 10)


def explodes(series: pd.Series) -> pd.Series:
    raise RuntimeError("the check itself is broken")


class Namespace:
    @staticmethod
    def even(series: pd.Series) -> pd.Series:
        return series % 2 == 0


NOT_CALLABLE = 42
