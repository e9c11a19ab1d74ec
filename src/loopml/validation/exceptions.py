"""Errors of :mod:`loopml.validation`, placed in the :class:`~loopml.exceptions.LoopmlError` tree.

::

    LoopmlError
    ├── InvalidInput (ValueError)
    │   ├── InvalidSchema          a schema, or a schema file, that can't be used
    │   └── ValidationFailed       data broke the schema (``report.raise_for_errors()``)
    └── ModelChecksFailed (AssertionError)   ``assert_checks`` found failed model checks

A schema that can't be built or read is an input error, so is data that breaks its contract;
failed model checks are failed assertions, which is how test runners and CI scripts expect to
see them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.exceptions import InvalidInput, LoopmlError

if TYPE_CHECKING:
    from loopml.validation.model_checks import CheckResult
    from loopml.validation.report import ValidationReport


class InvalidSchema(InvalidInput):
    """A column spec, a check or a schema file is malformed; the message names the bad part."""


class ValidationFailed(InvalidInput):
    """Data failed error-severity checks; ``.report`` holds the whole :class:`ValidationReport`."""

    def __init__(self, message: str, report: ValidationReport) -> None:
        super().__init__(message)
        self.report = report


class ModelChecksFailed(AssertionError, LoopmlError):
    """One or more model checks failed; ``.results`` holds the failed :class:`CheckResult` s."""

    def __init__(self, message: str, results: list[CheckResult]) -> None:
        super().__init__(message)
        self.results = results
