"""Infer a :class:`Schema` from a reference table, by rules meant to be read and edited.

For each column of the reference (a pandas DataFrame or a pyarrow Table):

- ``dtype``: its kind (``int``, ``float``, ``bool``, ``string``, ``category``, ``datetime``,
  ``timedelta``); an object column of mixed values gets no dtype; anything else its exact
  pandas dtype name.
- ``nullable``: True only if the reference holds a null in that column. Data that is complete
  today is expected to stay complete; loosen it in the file where that is too strict.
- ``min`` / ``max``: the observed range of ``int`` and ``float`` columns (``bounds=False``
  leaves them out). A reference sample rarely holds the true extremes: widen them by hand, or
  pass ``margin=0.1`` to widen each side by 10 % of the observed range.
- ``allowed``: the sorted distinct values of a ``string`` or ``category`` column when there are
  at most ``max_categories`` (20) of them and each appears at least twice on average (so that a
  handful of free-text rows is not mistaken for a category); for a ``category`` column, its
  declared categories.
- ``unique``: True for ``int`` and ``string`` columns whose non-null values are all distinct
  (ID-like), with at least ``min_rows_for_unique`` (10) of them; floats, which are distinct by
  accident, never. ``unique=False`` turns this off.

Every column is required and extra columns are allowed. A reference with no rows gives
dtypes only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from loopml.exceptions import InvalidInput
from loopml.validation.dtypes import KINDS, kind_of
from loopml.validation.frames import as_frame
from loopml.validation.report import plain
from loopml.validation.schema import Column, Schema


def infer_schema(
    data: Any,
    *,
    max_categories: int = 20,
    bounds: bool = True,
    margin: float = 0.0,
    unique: bool = True,
    min_rows_for_unique: int = 10,
    allow_extra_columns: bool = True,
) -> Schema:
    """A schema that ``data`` passes, by the rules in this module's docstring.

    schema = Schema.infer(reference_df, max_categories=50, margin=0.1)
    schema.save("contracts/churn.yaml")   # then review and edit it
    """
    if max_categories < 0:
        raise InvalidInput(f"max_categories must be >= 0, not {max_categories}")
    if margin < 0:
        raise InvalidInput(f"margin must be >= 0, not {margin}")
    frame = as_frame(data)
    columns = {
        name: _infer_column(
            frame.column(name),
            max_categories=max_categories,
            bounds=bounds,
            margin=margin,
            unique=unique,
            min_rows_for_unique=min_rows_for_unique,
        )
        for name in frame.columns
    }
    return Schema(columns, allow_extra_columns=allow_extra_columns)


def _infer_column(
    series: pd.Series,
    *,
    max_categories: int,
    bounds: bool,
    margin: float,
    unique: bool,
    min_rows_for_unique: int,
) -> Column:
    kind = kind_of(series.dtype, series)
    dtype = kind if kind in KINDS else (None if kind == "object" else str(series.dtype))
    values = series.dropna()
    if values.empty:
        return Column(dtype=dtype, nullable=True)
    fields: dict[str, Any] = {"dtype": dtype, "nullable": bool(len(values) < len(series))}
    if bounds and kind in ("int", "float"):
        low, high = plain(values.min()), plain(values.max())
        if margin:
            pad = (high - low) * margin
            low, high = low - pad, high + pad
            if kind == "int":
                low, high = math.floor(low), math.ceil(high)
        fields["min"] = low if low is not None and math.isfinite(low) else None
        fields["max"] = high if high is not None and math.isfinite(high) else None
    categorical = False
    if kind == "category":
        categories = series.cat.categories
        if len(categories) <= max_categories:
            fields["allowed"] = [plain(c) for c in categories]
            categorical = True
    elif kind == "string":
        distinct = pd.unique(values)
        if len(distinct) <= max_categories and 2 * len(distinct) <= len(values):
            fields["allowed"] = sorted(plain(v) for v in distinct)
            categorical = True
    if (
        unique
        and not categorical
        and kind in ("int", "string")
        and len(values) >= min_rows_for_unique
        and _all_distinct(values)
    ):
        fields["unique"] = True
    return Column(**fields)


def _all_distinct(values: pd.Series) -> bool:
    codes, uniques = pd.factorize(values)
    return len(uniques) == len(codes) and bool(np.all(codes >= 0))
