"""Schema.validate on pandas DataFrames and pyarrow Tables: every rule, the report, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loopml.exceptions import InvalidInput, LoopmlError
from loopml.validation import (
    Check,
    Column,
    Failure,
    InvalidSchema,
    Schema,
    ValidationFailed,
    ValidationReport,
)

REF = "validation.named_checks"


@pytest.fixture(params=["pandas", "arrow"])
def as_input(request: pytest.FixtureRequest) -> Callable[[pd.DataFrame], Any]:
    """Hand the frame to validate as itself, or as a pyarrow Table: both must report alike."""
    if request.param == "pandas":
        return lambda df: df
    return lambda df: pa.Table.from_pandas(df, preserve_index=False)


def only(report: ValidationReport, check: str) -> Failure:
    matching = [f for f in report.failures if f.check == check]
    assert len(matching) == 1, report
    return matching[0]


def test_clean_data_passes(make_frame, make_schema, as_input) -> None:
    report = make_schema(allow_extra_columns=False).validate(as_input(make_frame()))
    assert report.ok, report
    assert report.failures == () and report.errors == [] and report.warnings == []
    assert report.n_rows == 1_000 and report.n_columns == 9
    assert report.raise_for_errors() is report
    assert str(report).startswith("validation passed: 0 errors, 0 warnings (1,000 rows x 9")


def test_missing_and_extra_columns(make_frame, make_schema, as_input) -> None:
    df = make_frame().drop(columns=["email", "plan"]).rename(columns={"age": "Age"})
    df["extra"] = 1
    strict = make_schema(allow_extra_columns=False, required=["user_id", "age", "email"])
    report = strict.validate(as_input(df))
    missing = [f for f in report.failures if f.check == "missing_column"]
    assert [f.column for f in missing] == ["age", "email"]  # "plan" is absent but not required
    assert "did you mean 'Age'?" in missing[0].message
    extra = [f.column for f in report.failures if f.check == "extra_column"]
    assert extra == ["Age", "extra"]
    assert all(f.severity == "error" and f.failing_rows is None for f in report.failures)
    assert make_schema().validate(as_input(df)).errors[-1].column == "plan"  # required by default
    loose = make_schema(required=False)
    assert loose.validate(as_input(df)).ok  # absent columns aren't checked, extras tolerated


def test_wrong_dtypes(make_frame, make_schema, as_input) -> None:
    df = make_frame()
    df["age"] = df["age"].astype("float64")
    df["score"] = df["score"].astype("str")
    df["active"] = df["active"].astype("int8")
    report = make_schema().validate(as_input(df))
    dtype_failures = {f.column: f for f in report.failures if f.check == "dtype"}
    assert set(dtype_failures) == {"age", "score", "active"}
    assert dtype_failures["age"].message.startswith("expected int, got float64")
    assert "min/max not checked" in dtype_failures["score"].message
    assert "expected bool, got int8" in dtype_failures["active"].message
    assert not [f for f in report.failures if f.check in ("min", "max")]  # skipped, not crashed


def test_int_column_with_nulls_stays_int(as_input) -> None:
    df = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")})
    report = Schema({"n": Column(dtype="int", nullable=False, min=2)}).validate(as_input(df))
    assert {f.check: f.failing_rows for f in report.failures} == {"nullable": 1, "min": 1}


def test_nan_where_not_nullable(make_frame, make_schema, as_input) -> None:
    df = make_frame()
    df.loc[[5, 17, 900], "score"] = np.nan
    df.loc[3, "country"] = None
    df.loc[4, "signup"] = pd.NaT
    report = make_schema(columns={"signup": Column(dtype="datetime", nullable=False)}).validate(
        as_input(df)
    )
    nulls = {f.column: f for f in report.failures if f.check == "nullable"}
    assert set(nulls) == {"score", "country", "signup"}
    assert nulls["score"].failing_rows == 3
    assert nulls["score"].examples == ((5, None), (17, None), (900, None))
    assert "3 of 1,000 rows (0.30%) are null" in nulls["score"].message
    # the NaN in the nullable income column and the null country are not value failures
    assert not [f for f in report.failures if f.check in ("min", "allowed")]


def test_bounds_allowed_unique_and_examples(make_frame, make_schema, as_input) -> None:
    df = make_frame()
    df.loc[[10, 20], "age"] = [5, 150]
    df.loc[[7, 8, 9, 11, 12, 13, 14], "country"] = "XX"
    df.loc[1, "user_id"] = df.loc[0, "user_id"]
    df.loc[2, "income"] = -1.0
    df.loc[3, "signup"] = pd.Timestamp("2030-01-01")
    report = make_schema().validate(as_input(df), max_examples=3)
    by = {(f.column, f.check): f for f in report.failures}
    assert by["age", "min"].failing_rows == 1 and by["age", "min"].examples == ((10, 5),)
    assert by["age", "max"].examples == ((20, 150),)
    allowed = by["country", "allowed"]
    assert allowed.failing_rows == 7 and allowed.examples == ((7, "XX"), (8, "XX"), (9, "XX"))
    assert "not among the allowed values ['DE', 'FR', 'US']" in allowed.message
    duplicate = int(df.loc[0, "user_id"])
    assert by["user_id", "unique"].failing_rows == 2
    assert by["user_id", "unique"].examples == ((0, duplicate), (1, duplicate))
    assert by["income", "min"].examples == ((2, -1.0),)
    assert by["signup", "max"].examples == ((3, "2030-01-01T00:00:00"),)
    assert len(report.failures) == 6


def test_examples_use_the_frame_index() -> None:
    df = pd.DataFrame({"x": [1, -1, -2]}, index=pd.Index(["a", "b", "c"], name="key"))
    failure = Schema({"x": Column(min=0)}).validate(df).failures[0]
    assert failure.examples == (("b", -1), ("c", -2))
    assert (
        str(failure)
        == "x: min: 2 of 3 rows (66.67%) are below min 0 (e.g. row 'b': -1, row 'c': -2)"
    )


def test_unique_ignores_nulls_and_handles_sparse_ints(as_input) -> None:
    df = pd.DataFrame(
        {
            "s": pd.Series(["a", None, None, "b", "a"], dtype="str"),
            "big": np.array([1, 10**15, 5, 10**15, -(10**12)], dtype="int64"),
            "f": [0.5, np.nan, np.nan, 1.5, 2.5],
        }
    )
    schema = Schema({name: Column(unique=True) for name in df.columns})
    report = schema.validate(as_input(df))
    assert {f.column: f.failing_rows for f in report.failures} == {"s": 2, "big": 2}


def test_regex(make_frame, make_schema, as_input) -> None:
    df = make_frame()
    df.loc[[4, 6], "email"] = ["not-an-email", "user@example.com trailing"]  # fullmatch
    df.loc[8, "email"] = None
    report = make_schema(
        columns={"email": Column(dtype="string", regex=r"[a-z0-9]+@[a-z]+\.com")}
    ).validate(as_input(df))
    failure = only(report, "regex")
    assert failure.failing_rows == 2  # the null is not a regex failure
    assert failure.examples == ((4, "not-an-email"), (6, "user@example.com trailing"))


def test_regex_on_object_and_categorical_columns() -> None:
    df = pd.DataFrame(
        {
            "obj": pd.Series(["ab", "cd", None, "a1"], dtype=object),
            "cat": pd.Categorical(["ab", "a1", None, "ab"]),
        }
    )
    schema = Schema({"obj": Column(regex="[a-z]+"), "cat": Column(regex="[a-z]+")})
    report = schema.validate(df)
    assert {f.column: f.examples for f in report.failures} == {
        "obj": ((3, "a1"),),
        "cat": ((1, "a1"),),
    }


def test_regex_outside_re2_falls_back_to_python() -> None:
    df = pd.DataFrame({"word": pd.Series(["abab", "abcd", None, "xyxy"], dtype="str")})
    report = Schema({"word": Column(dtype="string", regex=r"(\w\w)\1")}).validate(df)
    assert only(report, "regex").examples == ((1, "abcd"),)


def test_regex_on_a_non_string_column_is_a_clear_failure() -> None:
    df = pd.DataFrame({"code": [1, 2, 3], "mixed": pd.Series(["a", 1, "b"], dtype=object)})
    schema = Schema({"code": Column(regex=r"\d+"), "mixed": Column(regex="[a-z]")})
    report = schema.validate(df)
    messages = {f.column: f.message for f in report.failures}
    assert messages["code"] == "regex applies to string columns, not int64 (int)"
    assert messages["mixed"] == "regex applies to string columns, not object"
    with pytest.raises(InvalidSchema, match="regex applies to string columns"):
        Column(dtype="int", regex=r"\d+")


def test_bounds_on_a_non_numeric_column_without_dtype() -> None:
    df = pd.DataFrame({"x": ["a", "b"]})
    failure = Schema({"x": Column(min=0)}).validate(df).failures[0]
    assert failure.check == "min" and "min/max apply to numeric" in failure.message


def test_datetime_and_timedelta_bounds() -> None:
    df = pd.DataFrame(
        {
            "at": pd.to_datetime(["2024-01-01", "2023-06-01", "2024-05-01"]).tz_localize("UTC"),
            "took": pd.to_timedelta(["1h", "3h", "30min"]),
        }
    )
    schema = Schema(
        {
            "at": Column(dtype="datetime", min="2024-01-01T00:00:00+00:00"),
            "took": Column(dtype="timedelta", max="2h"),
        }
    )
    report = schema.validate(df)
    assert {(f.column, f.check): f.examples for f in report.failures} == {
        ("at", "min"): ((1, "2023-06-01T00:00:00+00:00"),),
        ("took", "max"): ((1, "0 days 03:00:00"),),
    }


def test_exact_dtype_and_number_kind() -> None:
    df = pd.DataFrame({"a": np.array([1, 2], dtype="int32"), "b": [1.0, 2.0]})
    assert Schema({"a": Column(dtype="int32"), "b": Column(dtype="number")}).validate(df).ok
    report = Schema({"a": Column(dtype="int64"), "b": Column(dtype="float32")}).validate(df)
    assert [f.message for f in report.failures] == [
        "expected int64, got int32 (int)",
        "expected float32, got float64 (float)",
    ]


# -- custom checks ----------------------------------------------------------------------------


def test_custom_checks_by_callable_and_by_reference(as_input) -> None:
    df = pd.DataFrame({"x": [1.0, -2.0, np.nan, 30.0, 40.0]})
    schema = Schema(
        {
            "x": Column(
                checks=[
                    f"{REF}:positive",
                    Check(f"{REF}:between", kwargs={"low": 0, "high": 10}, severity="warning"),
                    Check(lambda s: s.round() == s, name="whole"),
                    f"{REF}:mean_below_ten",
                ]
            )
        }
    )
    report = schema.validate(as_input(df))
    by = {f.check: f for f in report.failures}
    assert by["positive"].examples == ((1, -2.0),)  # the NaN row is not judged
    assert by["between"].severity == "warning" and by["between"].failing_rows == 3
    assert "whole" not in by
    assert by["mean_below_ten"].failing_rows is None
    assert by["mean_below_ten"].message == "failed: the check returned False for the column"
    assert [f.check for f in report.errors] == ["positive", "mean_below_ten"]


def test_a_check_that_raises_is_a_failure_not_a_crash(as_input) -> None:
    df = pd.DataFrame({"x": [1, 2, 3]})
    schema = Schema(
        {"x": Column(min=0, checks=[f"{REF}:explodes", Check(lambda s: s.nope(), name="typo")])}
    )
    report = schema.validate(as_input(df))
    assert [(f.check, f.message) for f in report.failures] == [
        ("explodes", "raised RuntimeError: the check itself is broken"),
        ("typo", "raised AttributeError: 'Series' object has no attribute 'nope'"),
    ]
    assert all(f.failing_rows is None for f in report.failures)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda s: "yes", "check returned str; a check returns a bool Series"),
        (lambda s: s.head(2) > 0, "check returned 2 values for 3 rows"),
        (lambda s: s * 2, "check returned values of dtype int64; a check returns bools"),
    ],
)
def test_a_check_returning_the_wrong_thing_is_a_failure(fn, message: str) -> None:
    report = Schema({"x": Column(checks=[Check(fn, name="bad")])}).validate(
        pd.DataFrame({"x": [1, 2, 3]})
    )
    assert only(report, "bad").message.startswith(message)


def test_checks_may_return_numpy_arrow_or_object_bools() -> None:
    df = pd.DataFrame({"x": [1, -1, 2]})
    checks = [
        Check(lambda s: s.to_numpy() > 0, name="numpy"),
        Check(lambda s: pa.array(s.to_numpy() > 0), name="arrow"),
        Check(lambda s: s.map(lambda v: v > 0).astype(object), name="objects"),
        Check(lambda s: pd.array([True, None, True], dtype="boolean"), name="nullable"),
    ]
    report = Schema({"x": Column(checks=checks)}).validate(df)
    assert {f.check: f.examples for f in report.failures} == {
        "numpy": ((1, -1),),
        "arrow": ((1, -1),),
        "objects": ((1, -1),),
        "nullable": ((1, -1),),  # a missing verdict on a non-null row is a failure
    }


def test_an_unimportable_check_raises_invalid_schema() -> None:
    schema = Schema({"x": Column(checks=["not_a_module_anywhere:check"])})
    with pytest.raises(InvalidSchema, match="cannot import 'not_a_module_anywhere:check'"):
        schema.validate(pd.DataFrame({"x": [1]}))


# -- severity and the report ------------------------------------------------------------------


def test_warnings_do_not_fail_the_data(make_frame, make_schema) -> None:
    df = make_frame()
    df.loc[0, "country"] = "XX"
    schema = make_schema(
        columns={"country": Column(dtype="string", allowed=["DE", "FR", "US"], severity="warning")}
    )
    report = schema.validate(df)
    assert report.ok and len(report.warnings) == 1 and report.errors == []
    assert report.raise_for_errors() is report
    assert "validation passed: 0 errors, 1 warning" in str(report)


def test_raise_for_errors_lists_every_error(make_frame, make_schema) -> None:
    df = make_frame().drop(columns=["plan"])
    df.loc[0, "age"] = 3
    df.loc[1, "score"] = np.nan
    report = make_schema().validate(df)
    with pytest.raises(ValidationFailed) as info:
        report.raise_for_errors()
    error = info.value
    assert isinstance(error, LoopmlError) and isinstance(error, ValueError)
    assert error.report is report
    message = str(error)
    assert message.startswith("data failed 3 checks (1,000 rows):")
    assert "  - plan: missing_column: required column is missing" in message
    assert "  - age: min: 1 of 1,000 rows (0.10%) are below min 18 (e.g. row 0: 3)" in message
    assert "  - score: nullable:" in message


def test_report_to_dict_is_json(make_frame, make_schema) -> None:
    df = make_frame()
    df.loc[5, "signup"] = pd.Timestamp("2031-02-03")
    df.loc[6, "country"] = "ZZ"
    data = make_schema().validate(df).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["ok"] is False and data["n_errors"] == 2 and data["n_warnings"] == 0
    assert data["failures"][0] == {
        "column": "country",
        "check": "allowed",
        "severity": "error",
        "message": "1 of 1,000 rows (0.10%) are not among the allowed values ['DE', 'FR', 'US']",
        "failing_rows": 1,
        "examples": [{"index": 6, "value": "ZZ"}],
    }
    assert data["failures"][1]["examples"] == [{"index": 5, "value": "2031-02-03T00:00:00"}]


def test_str_report_has_one_line_per_failure(make_frame, make_schema) -> None:
    df = make_frame()
    df.loc[0, "age"] = 1
    df.loc[1, "country"] = "XX"
    lines = str(make_schema().validate(df)).splitlines()
    assert lines[0].startswith("validation failed: 2 errors, 0 warnings (1,000 rows x 9 columns")
    assert (
        lines[1] == "  error    age: min: 1 of 1,000 rows (0.10%) are below min 18 (e.g. row 0: 1)"
    )
    assert lines[2].startswith("  error    country: allowed:")


def test_max_examples_and_tiny_shares() -> None:
    df = pd.DataFrame({"x": np.arange(200_000)})
    report = Schema({"x": Column(max=199_998)}).validate(df, max_examples=0)
    assert report.failures[0].examples == ()
    assert "1 of 200,000 rows (<0.01%)" in report.failures[0].message
    with pytest.raises(InvalidInput, match="max_examples"):
        Schema({}).validate(df, max_examples=-1)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [{"x": [1]}, [[1, 2]], np.zeros((2, 2)), None])
def test_only_tables_are_accepted(data: Any) -> None:
    with pytest.raises(InvalidInput, match="takes a pandas DataFrame or a pyarrow Table"):
        Schema({"x": Column()}).validate(data)


def test_duplicate_column_names_are_rejected() -> None:
    df = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(InvalidInput, match="more than one column named 'a'"):
        Schema({"a": Column()}).validate(df)


def test_record_batches_and_empty_frames() -> None:
    batch = pa.RecordBatch.from_pydict({"x": [1, -1]})
    assert Schema({"x": Column(min=0)}).validate(batch).failures[0].examples == ((1, -1),)
    empty = pd.DataFrame({"x": pd.Series([], dtype="int64")})
    assert Schema({"x": Column(dtype="int", nullable=False, min=0, unique=True)}).validate(empty).ok


@pytest.mark.slow
def test_non_string_column_labels_are_matched_by_their_string() -> None:
    df = pd.DataFrame({0: [1, 2], 1: ["a", "b"]})
    assert Schema({"0": Column(dtype="int"), "1": Column(dtype="string")}).validate(df).ok
