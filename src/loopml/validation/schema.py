"""Data contracts: a :class:`Schema` of :class:`Column` specs, saved as JSON or YAML.

    schema = Schema(
        {
            "user_id": Column(dtype="int", nullable=False, unique=True),
            "age": Column(dtype="int", min=0, max=130),
            "country": Column(dtype="string", allowed=["DE", "FR", "US"]),
            "email": Column(dtype="string", regex=r"[^@\\s]+@[^@\\s]+", severity="warning"),
            "score": Column(dtype="float", checks=[Check("myproject.checks:is_finite")]),
        },
        allow_extra_columns=False,
    )
    schema.save("contracts/churn.yaml")
    Schema.load("contracts/churn.yaml").validate(df).raise_for_errors()

Specs are immutable data; :mod:`loopml.validation.validator` executes them. Spec mistakes
(an unknown dtype, a regex on an int column, a malformed file) raise :class:`InvalidSchema`
when the spec is built or read, not when data is validated; only a custom check's
``"module:function"`` reference is imported late, when it first runs.

The file format (``to_dict``) is one mapping, with ``dtype`` and ``nullable`` always and the
other rules only where set, in a fixed order, so that diffs stay small and a person can edit
it. ``to_yaml`` of the schema above starts::

    loopml_schema: 1
    required: true              # every column must be present; or a list of names
    allow_extra_columns: false
    columns:
      user_id:
        dtype: int
        nullable: false
        unique: true
      age:
        dtype: int
        nullable: true
        min: 0
        max: 130
      country:
        dtype: string
        nullable: true
        allowed: [DE, FR, US]

A hand-written file may shorten a column to its dtype (``age: int``) and a check to its
reference (``checks: ["myproject.checks:is_finite"]``).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from loopml.exceptions import InvalidInput, NotFound
from loopml.validation.checks import Check, Severity, as_check, check_severity
from loopml.validation.dtypes import (
    ORDERED_KINDS,
    STRING_KINDS,
    check_dtype_name,
    declared_kind,
)
from loopml.validation.exceptions import InvalidSchema

if TYPE_CHECKING:
    from loopml.validation.report import ValidationReport

FORMAT_VERSION = 1
Bound = int | float | str
CheckSpec = Check | Callable[..., Any] | str

_COLUMN_KEYS = (
    "dtype",
    "nullable",
    "min",
    "max",
    "allowed",
    "unique",
    "regex",
    "checks",
    "severity",
    "description",
)
_SCHEMA_KEYS = ("loopml_schema", "required", "allow_extra_columns", "description", "columns")
_CHECK_KEYS = ("ref", "name", "severity", "kwargs")


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _did_you_mean(key: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}valid keys: {', '.join(options)}"


@dataclass(frozen=True)
class Column:
    """What one column must hold. Every rule is optional; a bare ``Column()`` checks nothing.

    - ``dtype``: a kind (``int``, ``float``, ``number``, ``bool``, ``string``, ``category``,
      ``datetime``, ``timedelta``, ``any``) or an exact pandas dtype (see
      :mod:`loopml.validation.dtypes`).
    - ``nullable``: whether nulls (None, NaN, NaT, NA) are allowed.
    - ``min`` / ``max``: inclusive bounds, for numeric, datetime (ISO string bound) and
      timedelta (string bound such as ``"2h"``) columns.
    - ``allowed``: the only values the column may hold (nulls aside).
    - ``unique``: no non-null value occurs twice.
    - ``regex``: every non-null string matches the pattern as a whole (RE2 syntax runs
      vectorized; other Python patterns work, row by row).
    - ``checks``: custom :class:`Check` s, or bare callables / ``"module:function"`` strings.
    - ``severity``: ``"error"`` or ``"warning"`` for this column's built-in rules; a custom
      check carries its own.
    """

    dtype: str | None = None
    nullable: bool = True
    min: Bound | None = None
    max: Bound | None = None
    allowed: Sequence[Any] | None = None
    unique: bool = False
    regex: str | None = None
    checks: Sequence[CheckSpec] = ()
    severity: Severity = "error"
    description: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.dtype is not None:
            if not isinstance(self.dtype, str):
                raise InvalidSchema(f"dtype must be a string such as 'int', not {self.dtype!r}")
            set_(self, "dtype", None if self.dtype == "any" else check_dtype_name(self.dtype))
        kind = declared_kind(self.dtype)
        for flag in ("nullable", "unique"):
            if not isinstance(getattr(self, flag), bool | np.bool_):
                raise InvalidSchema(f"{flag} must be true or false, not {getattr(self, flag)!r}")
            set_(self, flag, bool(getattr(self, flag)))
        for bound in ("min", "max"):
            set_(self, bound, self._check_bound(bound, getattr(self, bound), kind))
        low, high = self.min, self.max
        if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
            raise InvalidSchema(f"min {low!r} is greater than max {high!r}")
        if self.allowed is not None:
            if isinstance(self.allowed, str | bytes | Mapping) or not isinstance(
                self.allowed, Sequence | set | frozenset | np.ndarray | pd.Index
            ):
                raise InvalidSchema(f"allowed must be a list of values, not {self.allowed!r}")
            values = [_scalar(v) for v in self.allowed]
            if isinstance(self.allowed, set | frozenset):
                values = sorted(values, key=repr)  # a stable order for the file
            set_(self, "allowed", tuple(values))
        if self.regex is not None:
            self._check_regex(kind)
        checks = self.checks
        if isinstance(checks, Check | str) or callable(checks):
            checks = [checks]
        set_(self, "checks", tuple(as_check(c) for c in checks))
        check_severity(self.severity, "column")
        if not isinstance(self.description, str):
            raise InvalidSchema(f"description must be a string, not {self.description!r}")

    def _check_bound(self, which: str, value: Any, kind: str) -> Bound | None:
        if value is None:
            return None
        value = _scalar(value)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidSchema(f"{which} must be a number (or a date string), not {value!r}")
        if isinstance(value, float) and math.isnan(value):
            raise InvalidSchema(f"{which} must be a number, not NaN")
        if kind not in ORDERED_KINDS and kind != "any":
            raise InvalidSchema(
                f"{which} applies to numeric, datetime and timedelta columns; "
                f"this column's dtype is {self.dtype!r}"
            )
        if kind in ("datetime", "timedelta") and not isinstance(value, str):
            example = "'2024-01-01'" if kind == "datetime" else "'2h'"
            raise InvalidSchema(f"{which} of a {kind} column is a string such as {example}")
        if isinstance(value, str):
            parse = {"datetime": pd.Timestamp, "timedelta": pd.Timedelta}.get(kind)
            if parse is None and kind != "any":
                raise InvalidSchema(
                    f"{which} of a {self.dtype!r} column is a number, not {value!r}"
                )
            try:
                if parse is not None:
                    parse(value)
            except ValueError as exc:
                raise InvalidSchema(f"{which} {value!r} is not a valid {kind}: {exc}") from exc
        return value

    def _check_regex(self, kind: str) -> None:
        if not isinstance(self.regex, str):
            raise InvalidSchema(f"regex must be a string, not {self.regex!r}")
        if kind not in STRING_KINDS and kind != "any":
            raise InvalidSchema(
                f"regex applies to string columns, and this column's dtype is {self.dtype!r}; "
                f"use dtype='string' (or drop the regex)"
            )
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise InvalidSchema(f"regex {self.regex!r} does not compile: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The column as plain data: dtype and nullable always, other fields when set."""
        out: dict[str, Any] = {"dtype": self.dtype or "any", "nullable": self.nullable}
        for key in ("min", "max", "allowed", "unique", "regex"):
            value = getattr(self, key)
            if value is not None and value is not False:
                out[key] = list(value) if key == "allowed" else value
        if self.checks:
            out["checks"] = [_check_to_dict(c) for c in self.checks]  # type: ignore[arg-type]
        if self.severity != "error":
            out["severity"] = self.severity
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Column:
        """Build a column from ``to_dict`` output; a bare string is taken as its dtype."""
        if data is None:
            return cls()
        if isinstance(data, str):
            return cls(dtype=data)
        if not isinstance(data, Mapping):
            raise InvalidSchema(f"a column is a mapping of rules, not {data!r}")
        for key in data:
            if key not in _COLUMN_KEYS:
                raise InvalidSchema(f"unknown key {key!r}; {_did_you_mean(str(key), _COLUMN_KEYS)}")
        fields = dict(data)
        if "checks" in fields:
            raw = fields["checks"]
            if not isinstance(raw, list):
                raise InvalidSchema(f"checks must be a list, not {raw!r}")
            fields["checks"] = [_check_from_dict(c) for c in raw]
        try:
            return cls(**fields)
        except TypeError as exc:  # e.g. a value of a type the dataclass can't take
            raise InvalidSchema(str(exc)) from exc


def _check_to_dict(check: Check) -> dict[str, Any]:
    ref = check.ref
    if ref is None:
        raise InvalidSchema(
            f"check {check.name!r} is a lambda, a local function or defined in __main__, so it "
            f"can't be saved; define it at module level in an importable module, or pass "
            f"'module:function'"
        )
    out: dict[str, Any] = {"name": check.name, "ref": ref}
    if check.severity != "error":
        out["severity"] = check.severity
    if check.kwargs:
        out["kwargs"] = dict(check.kwargs)
    return out


def _check_from_dict(data: Any) -> Check:
    if isinstance(data, str):
        return Check(data)
    if not isinstance(data, Mapping) or "ref" not in data:
        raise InvalidSchema(
            f"a check is 'module:function' or a mapping with 'ref' (and optional name, "
            f"severity, kwargs), not {data!r}"
        )
    for key in data:
        if key not in _CHECK_KEYS:
            raise InvalidSchema(
                f"check: unknown key {key!r}; {_did_you_mean(str(key), _CHECK_KEYS)}"
            )
    return Check(
        data["ref"],
        name=data.get("name") or "",
        severity=data.get("severity", "error"),
        kwargs=data.get("kwargs") or {},
    )


@dataclass(frozen=True)
class Schema:
    """A table's contract: named :class:`Column` specs plus table-level rules.

    ``required``: ``True`` (every column must be present, the default), ``False`` (none), or
    the names that must be; a column that is absent and not required is simply not checked.
    ``allow_extra_columns``: whether columns the schema doesn't name are tolerated.
    """

    columns: Mapping[str, Column] = field(hash=False)
    required: bool | Sequence[str] = True
    allow_extra_columns: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.columns, Mapping):
            raise InvalidSchema("columns must be a mapping of column name to Column")
        columns: dict[str, Column] = {}
        for name, spec in self.columns.items():
            if not isinstance(name, str) or not name:
                raise InvalidSchema(f"column names are non-empty strings, not {name!r}")
            if isinstance(spec, str):
                spec = Column(dtype=spec)
            if not isinstance(spec, Column):
                raise InvalidSchema(f"column {name!r}: expected a Column, not {spec!r}")
            columns[name] = spec
        object.__setattr__(self, "columns", columns)
        if isinstance(self.required, str) or not isinstance(self.required, bool | Sequence):
            raise InvalidSchema(
                f"required is true, false or a list of column names, not {self.required!r}"
            )
        if not isinstance(self.required, bool):
            unknown = [n for n in self.required if n not in columns]
            if unknown:
                raise InvalidSchema(
                    f"required names columns the schema doesn't have: {unknown}; "
                    f"the schema's columns are {list(columns)}"
                )
            object.__setattr__(self, "required", tuple(self.required))
        if not isinstance(self.allow_extra_columns, bool):
            raise InvalidSchema(
                f"allow_extra_columns must be true or false, not {self.allow_extra_columns!r}"
            )

    @property
    def required_columns(self) -> tuple[str, ...]:
        if self.required is True:
            return tuple(self.columns)
        if self.required is False:
            return ()
        return tuple(self.required)

    def __getitem__(self, name: str) -> Column:
        return self.columns[name]

    # -- engines ---------------------------------------------------------------------------

    @classmethod
    def infer(cls, data: Any, **options: Any) -> Schema:
        """A schema that ``data`` (a reference DataFrame or pyarrow Table) passes.

        See :func:`loopml.validation.inference.infer_schema` for the rules and ``options``.
        """
        from loopml.validation.inference import infer_schema

        return infer_schema(data, **options)

    def validate(self, data: Any, *, max_examples: int = 5) -> ValidationReport:
        """Check a DataFrame or pyarrow Table; every failed check is in the report."""
        from loopml.validation.validator import validate

        return validate(self, data, max_examples=max_examples)

    # -- plain data, JSON, YAML, files -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loopml_schema": FORMAT_VERSION}
        if self.description:
            out["description"] = self.description
        out["required"] = list(self.required) if isinstance(self.required, tuple) else self.required
        out["allow_extra_columns"] = self.allow_extra_columns
        columns = {}
        for name, column in self.columns.items():
            try:
                columns[name] = column.to_dict()
            except InvalidSchema as exc:
                raise InvalidSchema(f"column {name!r}: {exc}") from None
        out["columns"] = columns
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Schema:
        if not isinstance(data, Mapping):
            raise InvalidSchema(
                f"a schema is a mapping with a 'columns' key, not {type(data).__name__}"
            )
        for key in data:
            if key not in _SCHEMA_KEYS:
                raise InvalidSchema(f"unknown key {key!r}; {_did_you_mean(str(key), _SCHEMA_KEYS)}")
        version = data.get("loopml_schema", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise InvalidSchema(
                f"schema format version {version!r} is not one this loopml reads "
                f"({FORMAT_VERSION}); upgrade loopml or save the schema again"
            )
        raw_columns = data.get("columns")
        if not isinstance(raw_columns, Mapping):
            raise InvalidSchema(
                f"'columns' must be a mapping of name to rules, not {raw_columns!r}"
            )
        columns = {}
        for name, raw in raw_columns.items():
            try:
                columns[str(name)] = Column.from_dict(raw)
            except InvalidSchema as exc:
                raise InvalidSchema(f"column {name!r}: {exc}") from None
        return cls(
            columns,
            required=data.get("required", True),
            allow_extra_columns=data.get("allow_extra_columns", True),
            description=data.get("description") or "",
        )

    def to_json(self, *, indent: int = 2) -> str:
        try:
            text = json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidSchema(f"the schema holds a value JSON can't store: {exc}") from exc
        return text + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Schema:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidSchema(f"not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        try:
            text: str = yaml.dump(
                self.to_dict(),
                Dumper=_YamlDumper,
                sort_keys=False,
                allow_unicode=True,
                width=100,
            )
        except yaml.YAMLError as exc:
            raise InvalidSchema(f"the schema holds a value YAML can't store: {exc}") from exc
        return text

    @classmethod
    def from_yaml(cls, text: str | bytes) -> Schema:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidSchema(f"not valid YAML: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the schema to ``path`` (``.json``, ``.yaml`` or ``.yml``), atomically."""
        target = Path(path)
        text = self.to_json() if _file_format(target) == "json" else self.to_yaml()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Schema:
        """Read a schema file written by :meth:`save` (or by hand); the extension picks the format."""
        source = Path(path)
        fmt = _file_format(source)
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(f"no schema file at {str(source)!r}") from None
        except UnicodeDecodeError as exc:
            raise InvalidSchema(f"{source}: not a text file ({exc}); is it corrupted?") from exc
        try:
            return cls.from_json(text) if fmt == "json" else cls.from_yaml(text)
        except InvalidSchema as exc:
            raise InvalidSchema(f"{source}: {exc}") from exc.__cause__


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise InvalidInput(f"schema files end in .json, .yaml or .yml, not {path.name!r}")


class _YamlDumper(yaml.SafeDumper):
    """Short lists of scalars (allowed values) in flow style: ``[DE, FR, US]``."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> Any:
    flow = all(isinstance(v, str | int | float | bool) or v is None for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_YamlDumper.add_representer(list, _represent_list)
