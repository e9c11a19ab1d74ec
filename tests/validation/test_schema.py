"""Schema specs: construction rules, and round-trips through dicts, JSON, YAML and files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from loopml.exceptions import InvalidInput, LoopmlError, NotFound
from loopml.validation import Check, Column, InvalidSchema, Schema

REF = "validation.named_checks"


# -- construction -------------------------------------------------------------------------------


def test_column_is_immutable_data() -> None:
    column = Column(dtype="string", allowed=["a", "b"], checks=[f"{REF}:positive"])
    assert column.allowed == ("a", "b")
    assert column.checks == (Check(f"{REF}:positive"),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        column.nullable = False  # type: ignore[misc]
    assert Column(dtype="int", min=0) == Column(dtype="int", min=0)


def test_numpy_scalars_become_plain_values() -> None:
    column = Column(dtype="int", min=np.int64(0), max=np.int64(5), allowed=np.array([1, 2]))
    assert type(column.min) is int and column.allowed == (1, 2)
    assert type(column.allowed[0]) is int


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "integer-ish"}, "unknown dtype 'integer-ish'"),
        ({"dtype": "int", "regex": "[a-z]+"}, "regex applies to string columns"),
        ({"dtype": "float", "regex": "x"}, "use dtype='string'"),
        ({"dtype": "string", "regex": "([a-z"}, "does not compile"),
        ({"dtype": "string", "min": 0}, "min applies to numeric"),
        ({"dtype": "bool", "max": 1}, "max applies to numeric"),
        ({"dtype": "int", "min": 5, "max": 1}, "min 5 is greater than max 1"),
        ({"dtype": "int", "min": "zero"}, "is a number"),
        ({"dtype": "datetime", "min": "not a date"}, "not a valid datetime"),
        ({"dtype": "datetime", "min": 0}, "a string such as '2024-01-01'"),
        ({"dtype": "timedelta", "max": 5}, "a string such as '2h'"),
        ({"min": float("nan")}, "not NaN"),
        ({"min": True}, "must be a number"),
        ({"allowed": "abc"}, "allowed must be a list"),
        ({"nullable": "no"}, "nullable must be true or false"),
        ({"unique": 1}, "unique must be true or false"),
        ({"severity": "fatal"}, "severity must be 'error' or 'warning'"),
        ({"checks": [42]}, "a check is a callable"),
        ({"checks": ["not a ref"]}, "not of the form 'module:function'"),
    ],
)
def test_bad_column_specs_fail_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidSchema, match=message) as info:
        Column(**kwargs)
    assert isinstance(info.value, InvalidInput | ValueError | LoopmlError)


def test_exact_dtypes_and_kinds_are_both_accepted() -> None:
    assert Column(dtype="int32").dtype == "int32"
    assert Column(dtype="datetime64[ns, UTC]").dtype == "datetime64[ns, UTC]"
    assert Column(dtype="any").dtype is None
    Column(dtype="float32", min=0.0)  # an exact numeric dtype takes bounds
    Column(dtype="str", regex="x")  # and pandas' string dtype a regex
    Column(regex="x")  # no dtype: the regex is checked against the data later
    Column(dtype="timedelta", max="2h")


def test_schema_checks_its_table_level_options() -> None:
    columns = {"a": Column(dtype="int"), "b": "float"}
    schema = Schema(columns, required=["a"])
    assert schema["b"] == Column(dtype="float")  # a bare dtype string is a Column
    assert schema.required_columns == ("a",)
    assert Schema(columns).required_columns == ("a", "b")
    assert Schema(columns, required=False).required_columns == ()
    with pytest.raises(InvalidSchema, match=r"doesn't have: \['c'\]"):
        Schema(columns, required=["a", "c"])
    with pytest.raises(InvalidSchema, match="required is true, false or a list"):
        Schema(columns, required="a")
    with pytest.raises(InvalidSchema, match="allow_extra_columns must be true or false"):
        Schema(columns, allow_extra_columns="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidSchema, match="expected a Column"):
        Schema({"a": 3})  # type: ignore[dict-item]
    with pytest.raises(InvalidSchema, match="non-empty strings"):
        Schema({1: Column()})  # type: ignore[dict-item]


# -- checks -----------------------------------------------------------------------------------


def test_check_names_and_refs() -> None:
    from validation import named_checks

    by_ref = Check(f"{REF}:between", kwargs={"low": 0, "high": 1}, severity="warning")
    assert by_ref.name == "between" and by_ref.ref == f"{REF}:between"
    assert by_ref.resolve() is named_checks.between
    by_function = Check(named_checks.positive)
    assert by_function.name == "positive" and by_function.ref == f"{REF}:positive"
    assert Check(f"{REF}:Namespace.even").resolve() is named_checks.Namespace.even
    anonymous = Check(lambda s: s > 0)
    assert anonymous.name == "lambda" and anonymous.ref is None
    assert Check(lambda s: s > 0, name="gt0").name == "gt0"


def test_unimportable_check_reference_is_a_clear_schema_error() -> None:
    with pytest.raises(InvalidSchema, match="cannot import 'nope_module:fn'"):
        Check("nope_module:fn").resolve()
    with pytest.raises(InvalidSchema, match="cannot import"):
        Check(f"{REF}:missing").resolve()
    with pytest.raises(InvalidSchema, match="is not callable"):
        Check(f"{REF}:NOT_CALLABLE").resolve()


def test_lambda_checks_cannot_be_saved() -> None:
    schema = Schema({"a": Column(checks=[lambda s: s > 0])})
    with pytest.raises(InvalidSchema, match="column 'a'.*lambda.*module level"):
        schema.to_json()


# -- serialization ----------------------------------------------------------------------------


def _full_schema() -> Schema:
    from validation import named_checks

    return Schema(
        {
            "id": Column(dtype="int", nullable=False, unique=True, min=0, description="the key"),
            "score": Column(
                dtype="float",
                min=0.0,
                max=1.0,
                checks=[
                    named_checks.positive,
                    Check(f"{REF}:between", kwargs={"low": 0, "high": 1}, severity="warning"),
                ],
            ),
            "country": Column(dtype="string", allowed=["DE", "FR", "ünï"], severity="warning"),
            "email": Column(dtype="string", regex=r"[^@\s]+@[^@\s]+\.\w+"),
            "when": Column(dtype="datetime", min="2020-01-01"),
            "anything": Column(),
        },
        required=["id", "score"],
        allow_extra_columns=False,
        description="contract for tests",
    )


def test_dict_round_trip_is_exact_and_minimal() -> None:
    schema = _full_schema()
    data = schema.to_dict()
    assert data["loopml_schema"] == 1
    assert data["columns"]["anything"] == {"dtype": "any", "nullable": True}
    assert data["columns"]["score"]["checks"][1] == {
        "name": "between",
        "ref": f"{REF}:between",
        "severity": "warning",
        "kwargs": {"low": 0, "high": 1},
    }
    assert Schema.from_dict(data) == schema


def test_json_round_trip(tmp_path: Path) -> None:
    schema = _full_schema()
    text = schema.to_json()
    assert json.loads(text)["required"] == ["id", "score"]
    assert "ünï" in text  # human-readable, not \u-escaped
    assert Schema.from_json(text) == schema
    assert schema.to_json() == Schema.from_json(text).to_json()  # stable output


def test_yaml_round_trip_is_human_editable() -> None:
    schema = _full_schema()
    text = schema.to_yaml()
    assert "allowed: [DE, FR, ünï]" in text  # short lists in flow style
    assert text.index("id:") < text.index("score:") < text.index("country:")  # column order kept
    assert Schema.from_yaml(text) == schema
    edited = text.replace("min: 0\n", "min: 10\n", 1)
    assert Schema.from_yaml(edited)["id"].min == 10


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml", ".YAML"])
def test_save_and_load_by_extension(tmp_path: Path, suffix: str) -> None:
    schema = _full_schema()
    path = schema.save(tmp_path / "contracts" / f"churn{suffix}")
    assert path.exists() and not list(path.parent.glob(".*tmp"))
    assert Schema.load(path) == schema
    assert Schema.load(str(path)) == schema
    if suffix == ".json":
        json.loads(path.read_text())
    else:
        yaml.safe_load(path.read_text())


def test_hand_written_yaml_with_shorthands() -> None:
    schema = Schema.from_yaml(
        """
        columns:
          id: int
          name:
          score: {dtype: float, min: 0, checks: ["validation.named_checks:positive"]}
        """
    )
    assert schema["id"] == Column(dtype="int")
    assert schema["name"] == Column()
    assert schema["score"].checks[0].name == "positive"
    assert schema.required_columns == ("id", "name", "score")


def test_unknown_extension_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"\.json, \.yaml or \.yml"):
        _full_schema().save(tmp_path / "schema.toml")
    with pytest.raises(InvalidInput, match=r"\.json, \.yaml or \.yml"):
        Schema.load(tmp_path / "schema.txt")


def test_missing_schema_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no schema file at"):
        Schema.load(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("truncated.json", '{"columns": {"a": {"dtype": "int"', "not valid JSON"),
        ("garbage.yaml", "columns: [unclosed\n  - : :", "not valid YAML"),
        ("binary.json", b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not a text file"),
        ("list.json", "[1, 2, 3]", "a schema is a mapping"),
        ("empty.yaml", "", "a schema is a mapping"),
        ("nocolumns.yaml", "required: true\n", "'columns' must be a mapping"),
        ("typo.yaml", "colums: {}\n", "unknown key 'colums'; did you mean 'columns'"),
        (
            "coltypo.yaml",
            "columns:\n  age: {dtype: int, nulable: false}\n",
            "column 'age': unknown key 'nulable'; did you mean 'nullable'",
        ),
        ("baddtype.yaml", "columns:\n  age: {dtype: integr}\n", "column 'age': unknown dtype"),
        ("badvalue.yaml", "columns:\n  age: {nullable: maybe}\n", "nullable must be true or false"),
        ("badcheck.yaml", "columns:\n  a: {checks: [{name: x}]}\n", "a mapping with 'ref'"),
        ("checks.yaml", "columns:\n  a: {checks: nope}\n", "checks must be a list"),
        ("version.json", '{"loopml_schema": 99, "columns": {}}', "format version 99"),
        ("column.yaml", "columns:\n  a: [1, 2]\n", "a column is a mapping"),
    ],
)
def test_corrupted_schema_files_raise_invalid_schema(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(InvalidSchema, match=message) as info:
        Schema.load(path)
    assert str(path) in str(info.value)  # the message names the file
    assert isinstance(info.value, LoopmlError)
