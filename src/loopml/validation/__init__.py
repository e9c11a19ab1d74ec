"""Data validation (CI for data) and model checks (CI for models).

Data: a :class:`Schema` of :class:`Column` specs is the contract a table must meet. Infer one
from a reference table, review it, save it next to the code, and validate every new batch::

    from loopml.validation import Column, Schema

    schema = Schema.infer(reference_df)          # dtypes, nullability, ranges, categories, ids
    schema.save("contracts/churn.yaml")          # human-editable; Schema.load reads it back
    report = Schema.load("contracts/churn.yaml").validate(new_df)   # DataFrame or Arrow Table
    print(report)                                # every failed check, counts, example rows
    report.raise_for_errors()                    # ValidationFailed if any error-severity check failed

Models: :func:`check_trains_on_sample`, :func:`check_beats_baseline`, :func:`check_invariance`
and :func:`check_directional` each return a :class:`CheckResult`; :func:`assert_checks`
raises once with every failure.

Errors (all :class:`~loopml.exceptions.LoopmlError`)::

    InvalidInput (ValueError)
    ├── InvalidSchema        a spec or schema file that can't be used
    └── ValidationFailed     data broke the contract; .report has the details
    ModelChecksFailed (AssertionError)
"""

from typing import TYPE_CHECKING

from loopml.exports import lazy_exports

if TYPE_CHECKING:
    from loopml.checks import CheckResult
    from loopml.validation.checks import Check
    from loopml.validation.exceptions import InvalidSchema, ModelChecksFailed, ValidationFailed
    from loopml.validation.model_checks import (
        assert_checks,
        check_beats_baseline,
        check_directional,
        check_invariance,
        check_trains_on_sample,
    )
    from loopml.validation.report import Failure, ValidationReport
    from loopml.validation.schema import Column, Schema

# Imported on first use: opening a workspace must not load pandas and NumPy.
_LAZY = {
    "Check": "loopml.validation.checks",
    "CheckResult": "loopml.checks",  # the one class; loopml.registry exports it too
    "Column": "loopml.validation.schema",
    "Failure": "loopml.validation.report",
    "InvalidSchema": "loopml.validation.exceptions",
    "ModelChecksFailed": "loopml.validation.exceptions",
    "Schema": "loopml.validation.schema",
    "ValidationFailed": "loopml.validation.exceptions",
    "ValidationReport": "loopml.validation.report",
    "assert_checks": "loopml.validation.model_checks",
    "check_beats_baseline": "loopml.validation.model_checks",
    "check_directional": "loopml.validation.model_checks",
    "check_invariance": "loopml.validation.model_checks",
    "check_trains_on_sample": "loopml.validation.model_checks",
}

__all__ = [
    "Check",
    "CheckResult",
    "Column",
    "Failure",
    "InvalidSchema",
    "ModelChecksFailed",
    "Schema",
    "ValidationFailed",
    "ValidationReport",
    "assert_checks",
    "check_beats_baseline",
    "check_directional",
    "check_invariance",
    "check_trains_on_sample",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
