"""The outcome of ``Schema.validate``: a :class:`ValidationReport` of :class:`Failure` s."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loopml.validation.checks import Severity
from loopml.validation.exceptions import ValidationFailed


def plain(value: Any) -> Any:
    """A JSON-friendly Python value for an example cell or index label (nulls become None)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.datetime64 | np.timedelta64):
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
        if value is pd.NaT:
            return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.date | dt.time):  # datetime and pandas Timestamp included
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, tuple | list):  # a MultiIndex label, a row of probabilities
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return repr(value)


@dataclass(frozen=True)
class Failure:
    """One failed check on one column.

    ``check`` is ``missing_column``, ``extra_column``, ``dtype``, ``nullable``, ``min``,
    ``max``, ``allowed``, ``unique``, ``regex`` or a custom check's name. ``failing_rows`` is
    None for a check on the column as a whole (a missing column, a dtype, a custom check that
    returned one bool or raised). ``examples`` holds up to a few ``(index label, value)`` pairs
    of failing rows, in row order, as plain Python values.
    """

    column: str
    check: str
    severity: Severity
    message: str
    failing_rows: int | None = None
    examples: tuple[tuple[Any, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "failing_rows": self.failing_rows,
            "examples": [{"index": index, "value": value} for index, value in self.examples],
        }

    def __str__(self) -> str:
        text = f"{self.column}: {self.check}: {self.message}"
        if self.examples:
            shown = ", ".join(f"row {index!r}: {value!r}" for index, value in self.examples)
            text += f" (e.g. {shown})"
        return text


@dataclass(frozen=True)
class ValidationReport:
    """Every failed check of one validation; ``ok`` when none of them is an error.

    report = schema.validate(df)
    if not report.ok:
        print(report)              # one line per failure, with example rows
    report.raise_for_errors()      # ValidationFailed listing the errors
    """

    failures: tuple[Failure, ...]
    n_rows: int
    n_columns: int
    seconds: float = 0.0

    @property
    def errors(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == "error"]

    @property
    def warnings(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when no error-severity check failed (warnings alone don't fail the data)."""
        return not self.errors

    def raise_for_errors(self) -> ValidationReport:
        """Raise :class:`ValidationFailed` listing every error; return the report when ok."""
        errors = self.errors
        if errors:
            lines = "\n".join(f"  - {failure}" for failure in errors)
            noun = "check" if len(errors) == 1 else "checks"
            raise ValidationFailed(
                f"data failed {len(errors)} {noun} ({self.n_rows:,} rows):\n{lines}", self
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable summary: counts and every failure."""
        return {
            "ok": self.ok,
            "n_rows": self.n_rows,
            "n_columns": self.n_columns,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "seconds": self.seconds,
            "failures": [f.to_dict() for f in self.failures],
        }

    def __str__(self) -> str:
        n_errors, n_warnings = len(self.errors), len(self.warnings)
        head = (
            f"validation {'passed' if self.ok else 'failed'}: "
            f"{n_errors} error{'s' * (n_errors != 1)}, "
            f"{n_warnings} warning{'s' * (n_warnings != 1)} "
            f"({self.n_rows:,} rows x {self.n_columns} columns, {self.seconds * 1000:.1f} ms)"
        )
        return "\n".join([head, *(f"  {f.severity:<7}  {f}" for f in self.failures)])
