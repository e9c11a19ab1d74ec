"""The bodies ``/predict`` and ``/invocations`` accept, and the check of their rows against
a model version's signature (a 422 naming the fields)."""

from __future__ import annotations

import csv
import functools
import io
import itertools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

    from loopml.registry.signature import Signature


class BadRequest(InvalidInput):
    """A request body the model server can't read (400)."""


class BodyTooLarge(BadRequest):
    """A request body over ``[serving] max_body_bytes`` (413)."""


class SchemaMismatch(InvalidInput):
    """Inputs that don't match the model's signature (422)."""


class MissingValues(SchemaMismatch):
    """The model failed on inputs with missing values (null) it can't take (422)."""


def one_line(text: str) -> str:
    """``text`` (a model's error, often several lines) as one line."""
    return " ".join(text.split())


def missing_values(frame: pd.DataFrame) -> str | None:
    """Which columns of ``frame`` hold missing values, and in which rows (from 0); None
    when none does."""
    named = []
    for name in frame.columns:
        empty = frame[name].isna().to_numpy().nonzero()[0]
        if len(empty):
            rows = ", ".join(str(i) for i in empty[:5]) + (", ..." if len(empty) > 5 else "")
            named.append(f"{name!r} in row {rows}")
    return "; ".join(named) or None


def _some_rows(rows: list[Any]) -> list[Any]:
    if not rows:
        raise BadRequest("The request has no rows: send at least one row to score.")
    return rows


# -- request bodies ------------------------------------------------------------------------


def _columns_data(body: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(body, Mapping):
        raise BadRequest(f'{where} must be an object: {{"columns": [...], "data": [[...]]}}.')
    columns, data = body.get("columns"), body.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise BadRequest(f'{where}: "columns" must be a list of column names.')
    if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
        raise BadRequest(f'{where}: "data" must be a list of rows (lists of values).')
    for i, row in enumerate(data):
        if len(row) != len(columns):
            raise BadRequest(
                f"{where}: row {i} has {len(row)} value(s) for {len(columns)} column(s)."
            )
    return [dict(zip(columns, row, strict=True)) for row in data]


def _records(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(r, Mapping) for r in value):
        raise BadRequest(f"{where} must be a list of objects (one per row).")
    return [dict(r) for r in value]


def _tensor_like(value: Any, where: str) -> list[dict[str, Any]] | list[list[Any]]:
    """MLflow's ``inputs``/``instances``: rows as objects, columns as an object of lists,
    or rows as lists (for models whose signature is an array)."""
    if isinstance(value, Mapping):
        columns = {str(k): v if isinstance(v, list) else [v] for k, v in value.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise BadRequest(f"{where}: the columns differ in length.")
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    if isinstance(value, list) and all(isinstance(r, Mapping) for r in value):
        return [dict(r) for r in value]
    if isinstance(value, list) and all(isinstance(r, list) for r in value):
        return [list(r) for r in value]
    raise BadRequest(f"{where} must be a list of rows or an object of columns.")


def parse_predict(body: Any) -> list[dict[str, Any]]:
    """The rows of a ``/predict`` body; :class:`BadRequest` naming what is wrong."""
    if not isinstance(body, Mapping):
        raise BadRequest('The body must be a JSON object: {"records": [{...}]}.')
    if "records" in body:
        if set(body) != {"records"}:
            raise BadRequest(f"Unknown field(s) beside records: {sorted(set(body) - {'records'})}.")
        return _some_rows(_records(body["records"], '"records"'))
    if "columns" in body or "data" in body:
        if set(body) - {"columns", "data"}:
            raise BadRequest(
                f"Unknown field(s) beside columns and data: {sorted(set(body) - {'columns', 'data'})}."
            )
        return _some_rows(_columns_data(body, "The body"))
    raise BadRequest(
        'Give "records": [{"col": value, ...}] or "columns": [...] with "data": [[...]].'
    )


_MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")


def parse_invocations(body: Any) -> list[dict[str, Any]] | list[list[Any]]:
    """The rows of an MLflow ``/invocations`` body (one of ``dataframe_split``,
    ``dataframe_records``, ``inputs``, ``instances``; ``params`` is ignored)."""
    if not isinstance(body, Mapping):
        raise BadRequest(
            f"The body must be a JSON object with one of {', '.join(_MLFLOW_FORMATS)}."
        )
    given = [k for k in _MLFLOW_FORMATS if k in body]
    unknown = sorted(set(body) - {*_MLFLOW_FORMATS, "params"})
    if len(given) != 1 or unknown:
        raise BadRequest(
            f"The body must hold exactly one of {', '.join(_MLFLOW_FORMATS)}"
            + (f"; unknown field(s) {unknown}" if unknown else f"; got {given or 'none'}")
            + "."
        )
    kind = given[0]
    if kind == "dataframe_split":
        split = body[kind]
        if isinstance(split, Mapping):
            split = {k: v for k, v in split.items() if k != "index"}
        return _some_rows(_columns_data(split, '"dataframe_split"'))
    if kind == "dataframe_records":
        return _some_rows(_records(body[kind], '"dataframe_records"'))
    return _some_rows(_tensor_like(body[kind], f'"{kind}"'))


class CsvRows(list[dict[str, str | None]]):
    """The rows of a ``text/csv`` body: every value the text of its cell (None when empty),
    until :func:`typed_csv_rows` types them by the answering model's signature."""


def parse_csv(raw: bytes) -> CsvRows:
    """The rows of a ``text/csv`` ``/invocations`` body, as MLflow's scoring server takes
    it: a header row naming the columns, then one line per row."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"The CSV body is not UTF-8 text: {exc}") from exc
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise BadRequest(f"The body is not CSV: {exc}") from exc
    lines = [line for line in lines if line]  # blank lines (a trailing newline) hold no row
    if not lines:
        raise BadRequest("The CSV body is empty: send a header row naming the columns, then rows.")
    header = [name.strip() for name in lines[0]]
    if not all(header) or len(set(header)) != len(header):
        raise BadRequest(
            f"The CSV header {lines[0]} must name each column once (the first line is the "
            "header row)."
        )
    rows = CsvRows()
    for i, line in enumerate(lines[1:]):
        if len(line) != len(header):
            raise BadRequest(
                f"CSV row {i} (line {i + 2}) has {len(line)} value(s) for {len(header)} column(s)."
            )
        rows.append(
            {
                name: (value if value != "" else None)
                for name, value in zip(header, line, strict=True)
            }
        )
    return CsvRows(_some_rows(rows))


_TRUE = {"true": True, "1": True, "false": False, "0": False}


def _csv_value(dtype: str | None, text: str | None) -> Any:
    """The value of a CSV cell for a column of ``dtype`` (None: a column the signature does
    not name: a number when it reads as one). Text that isn't of the dtype stays text, so
    the signature check names it."""
    if text is None:
        return None
    if dtype is None or dtype.startswith(("int", "uint", "float")):
        for kind in (int, float) if dtype is None or not dtype.startswith("float") else (float,):
            try:
                return kind(text)
            except ValueError:
                continue
        return text
    if dtype == "bool":
        return _TRUE.get(text.strip().lower(), text)
    return text  # object, string, datetime (ISO text): as it is


def typed_csv_rows(rows: CsvRows, signature: Signature | None) -> list[dict[str, Any]]:
    """``rows`` of a CSV body with their values typed by ``signature``'s columns."""
    dtypes = dict(signature.inputs) if signature is not None else {}
    return [{k: _csv_value(dtypes.get(k), v) for k, v in row.items()} for row in rows]


# -- signatures ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _number_range(dtype: str) -> tuple[int | float, int | float] | None:
    """The smallest and largest value of a NumPy number dtype (None: not one)."""
    import numpy as np

    try:
        kind = np.dtype(dtype)
    except TypeError:
        return None
    if kind.kind in "iu":
        info = np.iinfo(kind)
        return int(info.min), int(info.max)
    if kind.kind == "f":
        finfo = np.finfo(kind)
        return float(finfo.min), float(finfo.max)
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def _value_problem(dtype: str, value: Any) -> str | None:
    """What ``value`` (from JSON) is when it can't be a ``dtype`` value (None: it can)."""
    if value is None:
        if dtype.startswith(("float", "object", "string", "datetime")):
            return None
        return "null (None)"
    kind = f"{type(value).__name__} ({_shown(value)})"
    if dtype.startswith(("int", "uint", "float")):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return kind
        if isinstance(value, float) and not math.isfinite(value):
            name = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            return f"{name} (not a finite number)"
        if (
            dtype.startswith(("int", "uint"))
            and isinstance(value, float)
            and not value.is_integer()
        ):
            return kind
        limits = _number_range(dtype)
        if limits is not None and not limits[0] <= value <= limits[1]:
            low, high = (f"{x:.6g}" if isinstance(x, float) else str(x) for x in limits)
            return f"{_shown(value)}, beyond its range [{low}, {high}]"
        return None
    if dtype == "bool":
        return None if isinstance(value, bool) else kind
    if dtype.startswith("datetime"):
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return f"str (not an ISO 8601 time) ({_shown(value)})"
            return None
        return kind
    if dtype in ("object", "string", "str"):
        return None if isinstance(value, str) else kind
    return None  # a dtype the signature names but JSON can't express: pandas will judge


#: The Python types (from JSON) a column of each dtype takes as they are, on the fast path
#: of :func:`check_rows`; any other value (or dtype) goes the slow way, which converts what
#: it can and names what it can't.
_NONE = type(None)
_FAST_TYPES: dict[str, frozenset[type]] = {
    **{f"float{b}": frozenset({float, int, _NONE}) for b in (16, 32, 64)},
    **{f"int{b}": frozenset({int}) for b in (8, 16, 32, 64)},
    **{f"uint{b}": frozenset({int}) for b in (8, 16, 32, 64)},
    "bool": frozenset({bool}),
    "object": frozenset({str}),
}


@dataclass(frozen=True)
class _Plan:
    """How the rows of one signature become the model's DataFrame on the fast path: made
    once per signature (:func:`_plan`), used by every request."""

    columns: tuple[str, ...]
    dtypes: tuple[str, ...]
    keys: frozenset[str]
    pick: Callable[[Mapping[str, Any]], Any]  # a row -> its values in signature order
    accepts: tuple[frozenset[type], ...] | None  # per column; None: no fast path
    floats: bool  # every column float64: one 2-D array


@functools.lru_cache(maxsize=256)
def _plan(inputs: tuple[tuple[str, str], ...]) -> _Plan:
    columns = tuple(name for name, _ in inputs)
    dtypes = tuple(dtype for _, dtype in inputs)
    accepts = tuple(_FAST_TYPES.get(dtype, frozenset()) for dtype in dtypes)
    pick: Callable[[Mapping[str, Any]], Any] = operator.itemgetter(*columns)
    if len(columns) == 1:  # itemgetter of one key returns the value, not a tuple
        single = pick
        pick = lambda row: (single(row),)  # noqa: E731
    return _Plan(
        columns=columns,
        dtypes=dtypes,
        keys=frozenset(columns),
        pick=pick,
        accepts=None if not all(accepts) else accepts,
        floats=all(dtype == "float64" for dtype in dtypes),
    )


def _fast_frame(rows: Sequence[Any], plan: _Plan) -> pd.DataFrame | None:
    """The DataFrame of ``rows`` when every row has exactly the signature's columns and
    every value is of a type its column takes as is; None otherwise (the slow path then
    checks, converts and names the problems). What it builds equals the slow path's."""
    import numpy as np
    import pandas as pd

    accepts = plan.accepts
    if accepts is None or not rows:
        return None
    keys = plan.keys
    for row in rows:
        if not isinstance(row, dict) or row.keys() != keys:
            return None
    data = list(map(plan.pick, rows))
    try:
        if plan.floats:
            if not set(map(type, itertools.chain.from_iterable(data))) <= accepts[0]:
                return None
            array = np.array(data, dtype=np.float64)
            # None (missing) is NaN here too; NaN or an infinity sent goes the slow way.
            if not np.isfinite(array).all() and any(
                isinstance(v, float) and not math.isfinite(v)
                for v in itertools.chain.from_iterable(data)
            ):
                return None
            return pd.DataFrame(array, columns=list(plan.columns))
        values = list(zip(*data, strict=True))
        columns: dict[str, Any] = {}
        for name, dtype, allowed, column in zip(
            plan.columns, plan.dtypes, accepts, values, strict=True
        ):
            if not set(map(type, column)) <= allowed:
                return None
            # An object array of strings would become pandas' str dtype: say object.
            if dtype == "object":
                columns[name] = pd.Series(column, dtype=object)
                continue
            with np.errstate(over="ignore"):  # beyond float32's range: inf, named below
                array = np.array(column, dtype)
            if (
                array.dtype.kind == "f"
                and not np.isfinite(array).all()  # None (missing) is NaN here too
                and (
                    np.isinf(array).any()  # sent, or beyond float32's range
                    or any(isinstance(v, float) and math.isnan(v) for v in column)
                )
            ):
                return None  # the slow way names it
            columns[name] = array
        return pd.DataFrame(columns, columns=list(plan.columns))
    except (OverflowError, ValueError, TypeError):  # e.g. an int out of its dtype's range
        return None


def check_rows(
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]], signature: Signature | None
) -> pd.DataFrame:
    """``rows`` as the DataFrame the model takes, checked against ``signature``: a
    :class:`SchemaMismatch` names the missing and extra columns and the wrong types."""
    import pandas as pd
    from pandas.api.types import pandas_dtype

    if signature is None or not signature.inputs:
        return pd.DataFrame(list(rows))
    fast = _fast_frame(rows, _plan(signature.inputs))
    if fast is not None:
        return fast
    expected = dict(signature.inputs)
    array = all(name.startswith("[") for name in expected)
    if array:  # a model of arrays: rows are lists of len(expected) values
        width = len(expected)
        bad = [i for i, r in enumerate(rows) if isinstance(r, Mapping) or len(r) != width]
        if bad:
            raise SchemaMismatch(f"Rows {bad[:5]} are not lists of {width} value(s).")
        return pd.DataFrame([list(r) for r in rows])
    if any(not isinstance(r, Mapping) for r in rows):
        raise SchemaMismatch(f"Rows must be objects with the columns {list(expected)}.")
    present: dict[str, None] = {}
    for row in rows:
        present.update(dict.fromkeys(row))
    missing = [c for c in expected if c not in present]
    extra = [c for c in present if c not in expected]
    problems = []
    if missing:
        problems.append(f"missing column(s) {missing}")
    if extra:
        problems.append(f"unexpected column(s) {extra}")
    wrong: dict[str, str] = {}
    records = [r for r in rows if isinstance(r, Mapping)]
    for i, row in enumerate(records):
        for column, value in row.items():
            dtype = expected.get(column)
            if dtype is None or column in wrong:
                continue
            got = _value_problem(dtype, value)
            if got is not None:
                wrong[column] = f"{column!r} must be {dtype}, got {got} in row {i}"
    if wrong:
        problems.append("wrong type(s): " + "; ".join(wrong.values()))
    if problems:
        raise SchemaMismatch(
            "The inputs don't match the model's signature: " + ", ".join(problems) + "."
        )
    frame = pd.DataFrame(records, columns=list(expected))
    actual = [str(t) for t in frame.dtypes]  # one pass: the hot path of every request
    for (column, dtype), has in zip(expected.items(), actual, strict=True):
        if has != dtype:
            try:
                frame[column] = (
                    pd.to_datetime(frame[column], utc=False)
                    if dtype.startswith("datetime")
                    else frame[column].astype(pandas_dtype(dtype))
                )
            except (TypeError, ValueError) as exc:
                raise SchemaMismatch(f"Column {column!r} can't be {dtype}: {exc}") from exc
    return frame


def _outputs(predictions: Any) -> list[Any]:
    """A model's output as a JSON-ready list (one item per row)."""
    if hasattr(predictions, "to_dict") and hasattr(predictions, "columns"):
        return list(predictions.to_dict(orient="records"))
    if hasattr(predictions, "tolist"):
        out = predictions.tolist()
        return out if isinstance(out, list) else [out]
    if isinstance(predictions, (list, tuple)):
        return list(predictions)
    return [predictions]


# -- what is being served -----------------------------------------------------------------
