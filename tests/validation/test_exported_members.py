"""The public surface of loopml.validation is exactly its __all__, and its errors are LoopmlErrors."""

from __future__ import annotations

import loopml.validation as validation
from loopml.exceptions import InvalidInput, LoopmlError


def test_all_lists_the_public_names() -> None:
    assert validation.__all__ == [
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
    for name in validation.__all__:
        assert getattr(validation, name).__doc__, f"{name} has no docstring"


def test_errors_sit_in_the_loopml_tree() -> None:
    assert issubclass(validation.InvalidSchema, InvalidInput)
    assert issubclass(validation.ValidationFailed, InvalidInput)
    assert issubclass(validation.ValidationFailed, ValueError)
    assert issubclass(validation.ModelChecksFailed, AssertionError)
    assert issubclass(validation.ModelChecksFailed, LoopmlError)
