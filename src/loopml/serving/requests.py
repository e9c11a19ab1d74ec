"""The bodies ``/predict`` and ``/invocations`` accept, and the check of their rows against
a model version's signature (a 422 naming the fields)."""

from __future__ import annotations

import functools
import itertools
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


class SchemaMismatch(InvalidInput):
    """Inputs that don't match the model's signature (422)."""


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
        return _records(body["records"], '"records"')
    if "columns" in body or "data" in body:
        if set(body) - {"columns", "data"}:
            raise BadRequest(
                f"Unknown field(s) beside columns and data: {sorted(set(body) - {'columns', 'data'})}."
            )
        return _columns_data(body, "The body")
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
        return _columns_data(split, '"dataframe_split"')
    if kind == "dataframe_records":
        return _records(body[kind], '"dataframe_records"')
    return _tensor_like(body[kind], f'"{kind}"')


# -- signatures ----------------------------------------------------------------------------


def _value_problem(dtype: str, value: Any) -> str | None:
    """Why ``value`` (from JSON) can't be a ``dtype`` value (None: it can)."""
    if value is None:
        return None if dtype.startswith(("float", "object", "string", "datetime")) else "null"
    if dtype.startswith(("int", "uint")):
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok or (isinstance(value, float) and value.is_integer())
        return None if ok else type(value).__name__
    if dtype.startswith("float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else type(value).__name__
    if dtype == "bool":
        return None if isinstance(value, bool) else type(value).__name__
    if dtype.startswith("datetime"):
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return "str (not an ISO 8601 time)"
            return None
        return type(value).__name__
    if dtype in ("object", "string", "str"):
        return None if isinstance(value, str) else type(value).__name__
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
            return pd.DataFrame(np.array(data, dtype=np.float64), columns=list(plan.columns))
        values = list(zip(*data, strict=True))
        columns: dict[str, Any] = {}
        for name, dtype, allowed, column in zip(
            plan.columns, plan.dtypes, accepts, values, strict=True
        ):
            if not set(map(type, column)) <= allowed:
                return None
            # An object array of strings would become pandas' str dtype: say object.
            columns[name] = (
                pd.Series(column, dtype=object) if dtype == "object" else np.array(column, dtype)
            )
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
    for row in records:
        for column, value in row.items():
            dtype = expected.get(column)
            if dtype is None or column in wrong:
                continue
            got = _value_problem(dtype, value)
            if got is not None:
                wrong[column] = f"{column!r} must be {dtype}, got {got} ({value!r})"
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
