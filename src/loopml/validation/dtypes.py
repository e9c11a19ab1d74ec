"""Column dtypes as a schema names them: a portable *kind*, or an exact pandas dtype.

A kind matches every physical dtype of that family, whichever library produced the column::

    int        int8 … uint64, pandas Int64 …, Arrow integers
    float      float16 … float64, pandas Float64, Arrow floats
    number     int or float (not bool)
    bool       bool, pandas boolean, Arrow bool
    string     pandas str / string, Arrow strings, object columns that hold only strings
    category   pandas category, Arrow dictionary
    datetime   datetime64 of any unit, with or without a time zone
    timedelta  timedelta64 of any unit
    any        no dtype check (the same as leaving ``dtype`` out)

Any other name is an exact dtype as pandas spells it (``"int32"``, ``"float64"``,
``"datetime64[ns, UTC]"``) and must equal the column's dtype. Kinds are what
:meth:`Schema.infer` writes, because they survive a trip through Parquet, Arrow and CSV.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pandas.api import types as ptypes

from loopml.validation.exceptions import InvalidSchema

KINDS = ("int", "float", "number", "bool", "string", "category", "datetime", "timedelta", "any")

# Kinds whose values order, so that min/max apply.
ORDERED_KINDS = frozenset({"int", "float", "number", "datetime", "timedelta"})
# Kinds that a regex may apply to (a category's categories are matched as strings).
STRING_KINDS = frozenset({"string", "category"})


def check_dtype_name(dtype: str) -> str:
    """Return ``dtype`` if it is a kind or a dtype pandas knows, else raise :class:`InvalidSchema`."""
    if dtype in KINDS:
        return dtype
    try:
        pd.api.types.pandas_dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidSchema(
            f"unknown dtype {dtype!r}: use one of {', '.join(KINDS)}, "
            f"or an exact pandas dtype such as 'int32' or 'datetime64[ns, UTC]'"
        ) from exc
    return dtype


def declared_kind(dtype: str | None) -> str:
    """The kind a declared dtype belongs to (``"any"`` when none is declared)."""
    if dtype is None:
        return "any"
    if dtype in KINDS:
        return dtype
    return kind_of(pd.api.types.pandas_dtype(dtype))


def kind_of(dtype: Any, values: pd.Series | None = None) -> str:
    """The kind of a physical dtype; ``values`` settles what an object column holds.

    Returns ``"object"`` for an object column of mixed (or non-string) values and the dtype's
    own name for anything else no kind covers.
    """
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        if pa.types.is_dictionary(dtype.pyarrow_dtype):
            return "category"
    if ptypes.is_bool_dtype(dtype):
        return "bool"
    if ptypes.is_integer_dtype(dtype):
        return "int"
    if ptypes.is_float_dtype(dtype):
        return "float"
    if ptypes.is_datetime64_any_dtype(dtype):
        return "datetime"
    if ptypes.is_timedelta64_dtype(dtype):
        return "timedelta"
    if ptypes.is_object_dtype(dtype):
        if values is not None and ptypes.infer_dtype(values, skipna=True) in ("string", "empty"):
            return "string"
        return "object"
    if ptypes.is_string_dtype(dtype):
        return "string"
    return str(dtype)


def matches(expected: str | None, series: pd.Series) -> bool:
    """Whether ``series`` has the declared dtype (a kind or an exact dtype)."""
    if expected is None or expected == "any":
        return True
    if expected in KINDS:
        actual = kind_of(series.dtype, series if expected == "string" else None)
        if expected == "number":
            return actual in ("int", "float")
        return actual == expected
    return bool(series.dtype == pd.api.types.pandas_dtype(expected))


def describe(series: pd.Series) -> str:
    """The column's dtype for a message, with its kind when that says more."""
    name = str(series.dtype)
    kind = kind_of(series.dtype)
    return name if kind in (name, "object") else f"{name} ({kind})"
