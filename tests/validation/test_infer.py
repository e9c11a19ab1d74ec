"""Schema.infer: the documented rules, and that a reference passes its own inferred schema."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loopml.exceptions import InvalidInput
from loopml.validation import Column, Schema


def test_inferred_schema_describes_the_reference(make_frame) -> None:
    df = make_frame(n=2_000, seed=1)
    schema = Schema.infer(df)
    assert list(schema.columns) == list(df.columns)
    assert schema.required_columns == tuple(df.columns) and schema.allow_extra_columns
    assert schema["user_id"] == Column(
        dtype="int",
        nullable=False,
        min=int(df["user_id"].min()),
        max=int(df["user_id"].max()),
        unique=True,
    )
    assert schema["age"].dtype == "int" and not schema["age"].unique  # repeats: not an id
    assert schema["age"].min == int(df["age"].min()) and type(schema["age"].min) is int
    income = schema["income"]
    assert income.dtype == "float" and income.nullable  # the reference has NaNs
    assert income.min == pytest.approx(np.nanmin(df["income"])) and not income.unique
    assert schema["country"] == Column(dtype="string", nullable=False, allowed=["DE", "FR", "US"])
    assert schema["email"] == Column(dtype="string", nullable=False, unique=True)  # free text
    assert schema["plan"] == Column(dtype="category", nullable=False, allowed=["free", "pro"])
    assert schema["active"] == Column(dtype="bool", nullable=False)
    assert schema["signup"] == Column(dtype="datetime", nullable=False)  # no bounds for dates


def test_reference_passes_and_new_data_is_checked(make_frame) -> None:
    schema = Schema.infer(make_frame(n=2_000, seed=1))
    assert schema.validate(make_frame(n=2_000, seed=1)).ok
    drifted = make_frame(n=2_000, seed=1)
    drifted.loc[0, "country"] = "BR"
    drifted.loc[1, "score"] = 1.5
    report = schema.validate(drifted)
    assert {(f.column, f.check) for f in report.failures} == {
        ("country", "allowed"),
        ("score", "max"),
    }


def test_round_trip_of_an_inferred_schema(make_frame, tmp_path) -> None:
    schema = Schema.infer(make_frame())
    assert Schema.load(schema.save(tmp_path / "s.yaml")) == schema
    assert Schema.load(schema.save(tmp_path / "s.json")) == schema


def test_options() -> None:
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {
            "x": rng.integers(0, 100, 1_000),
            "level": pd.Series(rng.choice([f"l{i}" for i in range(30)], 1_000), dtype="str"),
            "key": np.arange(1_000),
        }
    )
    default = Schema.infer(df)
    assert default["level"].allowed is None  # 30 distinct values > max_categories=20
    assert Schema.infer(df, max_categories=30)["level"].allowed == tuple(
        sorted(f"l{i}" for i in range(30))
    )
    assert Schema.infer(df, bounds=False)["x"].min is None
    widened = Schema.infer(df, margin=0.1)["x"]
    low, high = int(df["x"].min()), int(df["x"].max())
    pad = (high - low) * 0.1
    assert (widened.min, widened.max) == (math.floor(low - pad), math.ceil(high + pad))
    assert isinstance(widened.max, int)
    assert default["key"].unique and not Schema.infer(df, unique=False)["key"].unique
    assert not Schema.infer(df.head(5))["key"].unique  # too few rows to call it an id
    assert not Schema.infer(df, allow_extra_columns=False).allow_extra_columns
    with pytest.raises(InvalidInput, match="margin"):
        Schema.infer(df, margin=-1)


def test_few_rows_of_text_are_not_categories() -> None:
    df = pd.DataFrame({"note": pd.Series(["a", "b", "c", "d"], dtype="str")})
    assert Schema.infer(df)["note"].allowed is None


def test_edge_columns() -> None:
    df = pd.DataFrame(
        {
            "empty": pd.Series([None, None], dtype="float64"),
            "mixed": pd.Series([1, "a"], dtype=object),
            "inf": [1.0, np.inf],
            "obj_str": pd.Series(["a", "a"], dtype=object),
            "i32": np.array([1, 2], dtype="int32"),
        }
    )
    schema = Schema.infer(df)
    assert schema["empty"] == Column(dtype="float", nullable=True)
    assert schema["mixed"] == Column(dtype=None, nullable=False)
    assert schema["inf"].max is None and schema["inf"].min == 1.0
    assert schema["obj_str"].dtype == "string" and schema["obj_str"].allowed == ("a",)
    assert schema["i32"].dtype == "int"
    assert schema.validate(df).ok
    assert Schema.from_json(schema.to_json()) == schema


def test_infer_from_arrow_with_nullable_ints() -> None:
    table = pa.table({"n": pa.array([1, None, 3, 3]), "s": pa.array(["x", "y", "x", "y"])})
    schema = Schema.infer(table)
    assert schema["n"] == Column(dtype="int", nullable=True, min=1, max=3)
    assert schema["s"] == Column(dtype="string", nullable=False, allowed=["x", "y"])
    assert schema.validate(table).ok
