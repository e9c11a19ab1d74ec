"""Run a :class:`Schema` against a table and collect every failure in a :class:`ValidationReport`.

The work per column is a handful of vectorized passes (:mod:`loopml.validation.checks`), one
column after the other. (A thread per column measured no faster on two cores, and it would
make users' custom checks run concurrently.)
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.exceptions import InvalidInput
from loopml.validation import checks as masks
from loopml.validation.checks import Severity
from loopml.validation.dtypes import ORDERED_KINDS, describe, kind_of, matches
from loopml.validation.exceptions import InvalidSchema
from loopml.validation.frames import as_frame
from loopml.validation.report import Failure, ValidationReport, plain

if TYPE_CHECKING:
    from loopml.validation.schema import Column, Schema


def validate(schema: Schema, data: Any, *, max_examples: int = 5) -> ValidationReport:
    """Check ``data`` (a pandas DataFrame or pyarrow Table) against ``schema``."""
    if max_examples < 0:
        raise InvalidInput(f"max_examples must be >= 0, not {max_examples}")
    start = time.perf_counter()
    frame = as_frame(data)
    present = set(frame.columns)
    unknown = [name for name in frame.columns if name not in schema.columns]
    failures: list[Failure] = [
        Failure(name, "missing_column", "error", _missing(name, unknown))
        for name in schema.required_columns
        if name not in present
    ]
    if not schema.allow_extra_columns:
        failures.extend(
            Failure(
                name,
                "extra_column",
                "error",
                "column is not in the schema, and the schema does not allow extra columns",
            )
            for name in unknown
        )
    for name, column in schema.columns.items():
        if name in present:
            failures.extend(_ColumnRun(name, column, frame.column(name), max_examples).run())
    return ValidationReport(
        tuple(failures), frame.n_rows, len(frame.columns), time.perf_counter() - start
    )


def _missing(name: str, unknown: list[str]) -> str:
    close = difflib.get_close_matches(name, unknown, n=1, cutoff=0.7)
    if not close:  # a change of case is the usual culprit, and difflib scores it low
        close = [u for u in unknown if u.lower() == name.lower()][:1]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"required column is missing{hint}"


def _share(count: int, total: int) -> str:
    share = count / total if total else 0.0
    percent = "<0.01%" if 0 < share < 0.0001 else f"{share:.2%}"
    return f"{count:,} of {total:,} rows ({percent})"


def _preview(values: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    more = f", … ({len(values)} in all)" if len(values) > limit else ""
    return f"[{shown}{more}]"


class _ColumnRun:
    """The checks of one column spec on one Series; each check's crash becomes a Failure."""

    def __init__(self, name: str, column: Column, series: pd.Series, max_examples: int) -> None:
        self.name = name
        self.column = column
        self.series = series
        self.max_examples = max_examples
        self.failures: list[Failure] = []
        self.nulls = masks.null_mask(series)
        self.notnull = ~self.nulls

    def run(self) -> list[Failure]:
        col = self.column
        dtype_ok = matches(col.dtype, self.series)
        if not dtype_ok:
            skipped = [r for r in ("min", "max", "regex") if getattr(col, r) is not None]
            note = f"; {'/'.join(skipped)} not checked" if skipped else ""
            self.fail(
                "dtype", col.severity, f"expected {col.dtype}, got {describe(self.series)}{note}"
            )
        if not col.nullable:
            self.rows(
                "nullable",
                col.severity,
                "are null, and the column is not nullable",
                lambda: self.nulls,
            )
        if dtype_ok and (col.min is not None or col.max is not None):
            self.bounds()
        if col.allowed is not None:
            allowed = col.allowed
            self.rows(
                "allowed",
                col.severity,
                f"are not among the allowed values {_preview(allowed)}",
                lambda: masks.not_allowed_mask(self.series, allowed, self.notnull),
            )
        if col.unique:
            self.rows(
                "unique",
                col.severity,
                "hold a value that occurs more than once",
                lambda: masks.duplicate_mask(self.series, self.notnull),
            )
        if dtype_ok and col.regex is not None:
            self.regex(col.regex)
        for check in col.checks:
            self.custom(check)  # type: ignore[arg-type]
        return self.failures

    def fail(self, check: str, severity: Severity, message: str) -> None:
        self.failures.append(Failure(self.name, check, severity, message))

    def rows(
        self,
        check: str,
        severity: Severity,
        what: str,
        compute: Callable[[], Any],
        crashed: str = "could not run:",
    ) -> None:
        """Run a row-wise check; a mask with failing rows (or a crash) becomes a Failure."""
        try:
            mask = compute()
        except InvalidSchema:  # the spec is unusable (an unimportable check): not a data fault
            raise
        except masks.BadCheckResult as exc:
            self.fail(check, severity, f"check {exc}")
            return
        except Exception as exc:  # a check must never take the whole validation down
            self.fail(check, severity, f"{crashed} {type(exc).__name__}: {exc}")
            return
        if isinstance(mask, bool):  # a column-level custom check
            if mask:
                self.fail(check, severity, "failed: the check returned False for the column")
            return
        count = int(np.count_nonzero(mask))
        if not count:
            return
        positions = np.flatnonzero(mask)[: self.max_examples]
        labels = self.series.index[positions]
        values = self.series.iloc[positions]
        examples = tuple(
            (plain(label), plain(value)) for label, value in zip(labels, values, strict=True)
        )
        message = f"{_share(count, len(self.series))} {what}"
        self.failures.append(Failure(self.name, check, severity, message, count, examples))

    def bounds(self) -> None:
        col = self.column
        kind = kind_of(self.series.dtype)
        if kind not in ORDERED_KINDS:
            self.fail(
                "min" if col.min is not None else "max",
                col.severity,
                f"min/max apply to numeric, datetime and timedelta columns, "
                f"not {describe(self.series)}",
            )
            return
        convert = {"datetime": pd.Timestamp, "timedelta": pd.Timedelta}.get(kind)
        for check, bound, mask_of, word in (
            ("min", col.min, masks.below_mask, "below"),
            ("max", col.max, masks.above_mask, "above"),
        ):
            if bound is None:
                continue
            value = convert(bound) if convert is not None and isinstance(bound, str) else bound
            self.rows(
                check,
                col.severity,
                f"are {word} {check} {bound!r}",
                partial(mask_of, self.series, value),
            )

    def regex(self, pattern: str) -> None:
        kind = kind_of(self.series.dtype, self.series)
        if kind not in ("string", "category"):
            self.fail(
                "regex",
                self.column.severity,
                f"regex applies to string columns, not {describe(self.series)}",
            )
            return
        self.rows(
            "regex",
            self.column.severity,
            f"do not match regex {pattern!r}",
            lambda: masks.regex_mismatch_mask(self.series, pattern, self.notnull),
        )

    def custom(self, check: masks.Check) -> None:
        self.rows(
            check.name,
            check.severity,
            f"fail check {check.name!r}",
            lambda: masks.custom_mask(check, self.series, self.notnull),
            crashed="raised",
        )
