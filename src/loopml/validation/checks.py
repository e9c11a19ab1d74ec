"""Custom checks (:class:`Check`) and the vectorized masks behind every column check.

Each ``*_mask`` function takes a column as a pandas Series and returns a numpy bool array that
is ``True`` on the failing rows; none of them loops over rows in Python. Nulls never fail a
value check (``min``, ``max``, ``allowed``, ``unique``, ``regex``, custom checks): whether a
column may hold nulls is the ``nullable`` rule's business alone.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopml.validation.exceptions import InvalidSchema

Severity = Literal["error", "warning"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning")

_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def check_severity(severity: str, what: str) -> Severity:
    """Return ``severity`` if it is ``"error"`` or ``"warning"``, else raise InvalidSchema."""
    if severity not in SEVERITIES:
        raise InvalidSchema(f"{what}: severity must be 'error' or 'warning', not {severity!r}")
    return severity


@dataclass(frozen=True, eq=False)
class Check:
    """A custom, vectorized column check: ``fn(series, **kwargs)`` → bool Series (True = ok).

    ``fn`` is a callable or a ``"module:function"`` reference, imported when the check first
    runs; a reference (or a module-level function, which is turned into one) lets the schema
    round-trip through JSON and YAML. ``fn`` may also return a single bool, for a check on the
    column as a whole (``lambda s: s.mean() < 10``).

        Check("myproject.checks:is_business_day", severity="warning")
        Check(lambda s: s.str.len() <= 64, name="short")
        Check("myproject.checks:between", kwargs={"low": 0, "high": 1})

    The check sees the whole column; its verdict on null rows is ignored. An exception raised
    by ``fn`` is reported as a failure of this check, not raised.
    """

    fn: Callable[..., Any] | str
    name: str = ""
    severity: Severity = "error"
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.fn, str):
            if not _REF.match(self.fn):
                raise InvalidSchema(
                    f"check reference {self.fn!r} is not of the form 'module:function' "
                    f"(e.g. 'myproject.checks:is_positive')"
                )
            default_name = self.fn.rsplit(":", 1)[1].rsplit(".", 1)[-1]
        elif callable(self.fn):
            default_name = getattr(self.fn, "__name__", "") or type(self.fn).__name__
            if default_name == "<lambda>":
                default_name = "lambda"
        else:
            raise InvalidSchema(
                f"a check is a callable or a 'module:function' string, not {type(self.fn).__name__}"
            )
        object.__setattr__(self, "name", self.name or default_name)
        check_severity(self.severity, f"check {self.name!r}")
        if not isinstance(self.kwargs, Mapping):
            raise InvalidSchema(f"check {self.name!r}: kwargs must be a mapping")
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    def _key(self) -> tuple[Any, ...]:
        # A function and its "module:function" reference are the same check.
        return (self.ref or self.fn, self.name, self.severity, tuple(sorted(self.kwargs.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Check) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key()[:3])

    @property
    def ref(self) -> str | None:
        """The ``"module:function"`` reference that re-imports ``fn``, or None if there is none."""
        if isinstance(self.fn, str):
            return self.fn
        module = getattr(self.fn, "__module__", None)
        qualname = getattr(self.fn, "__qualname__", "")
        if not module or module == "__main__" or not qualname or "<" in qualname:
            return None
        return f"{module}:{qualname}"

    def resolve(self) -> Callable[..., Any]:
        """The callable; a reference is imported (InvalidSchema when that fails)."""
        if not isinstance(self.fn, str):
            return self.fn
        module_name, _, attr_path = self.fn.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr_path.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise InvalidSchema(
                f"check {self.name!r}: cannot import {self.fn!r} ({type(exc).__name__}: {exc}); "
                f"make sure the module is importable where the schema is validated"
            ) from exc
        if not callable(target):
            raise InvalidSchema(f"check {self.name!r}: {self.fn!r} is not callable")
        return target


def as_check(spec: Check | Callable[..., Any] | str) -> Check:
    """Turn a bare callable or reference into a :class:`Check`."""
    return spec if isinstance(spec, Check) else Check(spec)


# ----------------------------------------------------------------------------------------------
# Masks: True on failing rows
# ----------------------------------------------------------------------------------------------


def as_mask(result: Any) -> np.ndarray:
    """A numpy bool array from a bool Series/array; missing values become False."""
    if isinstance(result, pd.Series | pd.Index):
        if result.dtype == bool:
            return result.to_numpy()
        return result.to_numpy(dtype=bool, na_value=False)
    return np.asarray(result, dtype=bool)


def null_mask(series: pd.Series) -> np.ndarray:
    return series.isna().to_numpy()


def below_mask(series: pd.Series, bound: Any) -> np.ndarray:
    return as_mask(series < bound)


def above_mask(series: pd.Series, bound: Any) -> np.ndarray:
    return as_mask(series > bound)


def not_allowed_mask(series: pd.Series, allowed: Sequence[Any], notnull: np.ndarray) -> np.ndarray:
    ok = as_mask(series.isin(list(allowed)))
    return ~ok & notnull


def duplicate_mask(series: pd.Series, notnull: np.ndarray) -> np.ndarray:
    """Rows whose (non-null) value occurs more than once; every copy is marked."""
    if series.dtype.kind in "iu" and len(series):  # numpy ints: no nulls, often a dense range
        values = series.to_numpy()
        low, high = int(values.min()), int(values.max())
        if high - low <= max(4 * len(values), 1 << 16):  # counting beats hashing here
            offsets = (values - low).astype(np.intp, copy=False)
            return np.bincount(offsets)[offsets] > 1
    codes, _ = pd.factorize(series, use_na_sentinel=True)
    shifted = codes + 1  # null → 0, so bincount needs no filtering
    counts = np.bincount(shifted)
    return (counts[shifted] > 1) & notnull


def regex_mismatch_mask(series: pd.Series, pattern: str, notnull: np.ndarray) -> np.ndarray:
    """Rows whose string value does not match ``pattern`` as a whole.

    Runs in pyarrow's RE2 engine; a pattern RE2 can't take (look-arounds, back-references)
    falls back to Python's ``re``, one value at a time. A categorical column is matched once
    per category. Raises TypeError when the column does not hold strings.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = pd.Series(series.cat.categories)
        bad_category = regex_mismatch_mask(categories, pattern, np.ones(len(categories), bool))
        codes = series.cat.codes.to_numpy()
        return np.where(codes >= 0, bad_category[np.maximum(codes, 0)], False) & notnull
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        values = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TypeError(f"regex needs string values, and this column holds others ({exc})") from exc
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if not (
        pa.types.is_string(values.type)
        or pa.types.is_large_string(values.type)
        or pa.types.is_null(values.type)
    ):
        raise TypeError(f"regex needs string values, and this column holds {values.type}")
    try:
        matched = pc.match_substring_regex(values, rf"\A(?:{pattern})\z")
    except pa.ArrowInvalid:  # not RE2 syntax: Python's re, row by row
        compiled = re.compile(pattern)
        failed = np.fromiter(
            (v is not None and compiled.fullmatch(v) is None for v in values.to_pylist()),
            dtype=bool,
            count=len(values),
        )
        return failed & notnull
    ok = pc.fill_null(matched, True).to_numpy(zero_copy_only=False)
    return ~ok & notnull


class BadCheckResult(TypeError):
    """A custom check returned something other than one bool per row or a single bool."""


def custom_mask(check: Check, series: pd.Series, notnull: np.ndarray) -> np.ndarray | bool:
    """Failing rows of a custom check, or a single bool (True = failed) for a column-level one.

    Exceptions from the check propagate (the caller reports them); a result of the wrong
    type or length raises :class:`BadCheckResult` saying what was expected.
    """
    fn = check.resolve()
    result = fn(series, **check.kwargs)
    if isinstance(result, bool | np.bool_):
        return not bool(result)
    if isinstance(result, pd.api.extensions.ExtensionArray):
        result = pd.Series(result, copy=False)
    elif type(result).__module__.startswith("pyarrow"):
        import pyarrow.compute as pc

        result = pd.Series(pc.fill_null(result, False).to_numpy(zero_copy_only=False))
    if not isinstance(result, pd.Series | pd.Index | np.ndarray):
        raise BadCheckResult(
            f"returned {type(result).__name__}; a check returns a bool Series "
            f"(one value per row) or a single bool"
        )
    if len(result) != len(series):
        raise BadCheckResult(f"returned {len(result)} values for {len(series)} rows")
    dtype = result.dtype
    if (
        pd.api.types.is_object_dtype(dtype)
        and pd.api.types.infer_dtype(result, skipna=False) == "boolean"
    ):
        result, dtype = np.asarray(result, dtype=bool), np.dtype(bool)  # e.g. from Series.map
    if not pd.api.types.is_bool_dtype(dtype):
        raise BadCheckResult(f"returned values of dtype {dtype}; a check returns bools")
    if isinstance(result, np.ndarray):
        ok = result.astype(bool, copy=False)
    else:  # pandas boolean with NA: a missing verdict on a non-null row counts as failed
        ok = result.to_numpy(dtype=bool, na_value=False)
    return ~ok & notnull
