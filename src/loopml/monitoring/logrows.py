"""The logged rows of one window, in DuckDB: the log's Parquet files as a relation, each
request's JSON inputs unnested to one row per model input, fields extracted as numbers or
text, and the model signature's check as SQL (the same rules as the server's
:func:`loopml.serving.requests.check_rows`).

Names from signatures and profiles go into SQL as quoted literals (``'it''s'``), never as
identifiers; values never do.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from loopml.registry.signature import Signature
    from loopml.workspace import Workspace


def connect(workspace: Workspace) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that reads the workspace's blob store, times in UTC."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    blobs = workspace.blobs
    if not blobs.is_local and not con.filesystem_is_registered(blobs.protocol):
        con.register_filesystem(blobs.fs)
    return con


def literal(value: str) -> str:
    """``value`` as a SQL string literal.

    >>> literal("it's")
    "'it''s'"
    """
    return "'" + value.replace("'", "''") + "'"


def relation(files: list[str]) -> str:
    """The log files ``files`` as one DuckDB relation (columns added later read as NULL)."""
    listing = "[" + ", ".join(literal(f) for f in files) + "]"
    return f"read_parquet({listing}, union_by_name = true, hive_partitioning = false)"


_INDEX = re.compile(r"^\[(\d+)\]$")


def field(name: str, record: str = "rec") -> str:
    """The SQL of input field ``name`` of JSON ``record`` (JSON; SQL NULL when absent)."""
    index = _INDEX.match(name)
    if index:
        return f"json_extract({record}, '$[{int(index.group(1))}]')"
    return f"({record} -> {literal(name)})"


def as_text(json_sql: str) -> str:
    """JSON → text as Python would show it (``true`` → ``True``), NULL for JSON null."""
    return (
        f"CASE json_type({json_sql}) WHEN 'NULL' THEN NULL "
        f"WHEN 'BOOLEAN' THEN CASE WHEN {json_sql}::VARCHAR = 'true' THEN 'True' ELSE 'False' END "
        f"ELSE json_extract_string({json_sql}, '$') END"
    )


def as_number(json_sql: str) -> str:
    """JSON → DOUBLE for JSON numbers; NULL for anything else (text is not a number)."""
    return (
        f"CASE WHEN json_type({json_sql}) IN ('BIGINT', 'UBIGINT', 'DOUBLE') "
        f"THEN json_extract_string({json_sql}, '$')::DOUBLE END"
    )


def valid_sql(signature: Signature | None) -> str:
    """A SQL condition on ``rec``: the row matches the signature (the server's rules:
    :func:`loopml.serving.requests.check_rows`)."""
    if signature is None or not signature.inputs:
        return "true"
    expected = dict(signature.inputs)
    if all(name.startswith("[") for name in expected):
        return f"(json_type(rec) = 'ARRAY' AND json_array_length(rec) = {len(expected)})"
    names = "[" + ", ".join(literal(n) for n in expected) + "]"
    checks = [
        "json_type(rec) = 'OBJECT'",
        f"len(list_filter(json_keys(rec), lambda k: NOT list_contains({names}, k))) = 0",
    ]
    for name, dtype in expected.items():
        value = field(name)
        kind = f"json_type({value})"
        if dtype.startswith(("int", "uint")):
            ok = (
                f"({kind} IN ('BIGINT', 'UBIGINT') OR ({kind} = 'DOUBLE' AND "
                f"json_extract_string({value}, '$')::DOUBLE = "
                f"floor(json_extract_string({value}, '$')::DOUBLE)))"
            )
        elif dtype.startswith("float"):
            ok = f"{kind} IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'NULL')"
        elif dtype == "bool":
            ok = f"{kind} = 'BOOLEAN'"
        elif dtype.startswith("datetime"):
            ok = (
                f"({kind} = 'NULL' OR ({kind} = 'VARCHAR' AND "
                f"TRY_CAST(json_extract_string({value}, '$') AS TIMESTAMP) IS NOT NULL))"
            )
        elif dtype in ("object", "string", "str"):
            ok = f"{kind} IN ('VARCHAR', 'NULL')"
        else:
            ok = f"{value} IS NOT NULL"
        checks.append(f"coalesce({ok}, false)")
    return "(" + " AND ".join(checks) + ")"


def inputs_frame(con: duckdb.DuckDBPyConnection, signature: Signature) -> pd.DataFrame | None:
    """The valid monitored rows in the signature's columns and dtypes, indexed by ``row``
    (the frame the model took); None for a signature of no columns."""
    import pandas as pd
    from pandas.api.types import pandas_dtype

    if not signature.inputs:
        return None
    array = all(name.startswith("[") for name, _ in signature.inputs)
    selects = []
    for i, (name, dtype) in enumerate(signature.inputs):
        value = field(name)
        if dtype.startswith(("int", "uint", "float")):
            sql = as_number(value)
        elif dtype == "bool":
            sql = f"TRY_CAST({value}::VARCHAR AS BOOLEAN)"
        else:
            sql = as_text(value)
        selects.append(f"{sql} AS c{i}")
    frame = con.execute(
        f"SELECT row, {', '.join(selects)} FROM monitored WHERE valid ORDER BY row"
    ).df()
    frame = frame.set_index("row")
    frame.columns = (
        list(range(len(signature.inputs))) if array else [n for n, _ in signature.inputs]
    )
    for column, (_, dtype) in zip(frame.columns, signature.inputs, strict=True):
        if str(frame[column].dtype) == dtype:
            continue
        # A column that won't convert is left as read: the model judges, as in the server.
        with contextlib.suppress(TypeError, ValueError):
            frame[column] = (
                pd.to_datetime(frame[column], utc=False)
                if dtype.startswith("datetime")
                else frame[column].astype(pandas_dtype(dtype))
            )
    return frame


def output(json_sql: str = "out") -> str:
    """A row's logged output as one JSON value, as a reference profiles predictions
    (:func:`loopml.monitoring.profile.prediction_values`): a list or an object (class
    probabilities, several outputs) gives its last item."""
    return (
        f"CASE json_type({json_sql}) "
        f"WHEN 'ARRAY' THEN json_extract({json_sql}, '$[' || (json_array_length({json_sql}) - 1) || ']') "
        f"WHEN 'OBJECT' THEN ({json_sql} -> list_last(json_keys({json_sql}))) "
        f"ELSE {json_sql} END"
    )


def monitored_sql(signature: Signature | None) -> str:
    """The CREATE of temporary table ``monitored`` from view ``served`` (the window's
    answered rows): one row per model input of the requests of model ``$model`` — ``row``
    (its order in the window), ``request_id``, ``i`` (its index in the request), ``n``
    (the request's rows), ``rec`` and ``out`` (its input and output, JSON) and ``valid``
    (it matches ``signature``)."""
    return f"""
        CREATE TEMP TABLE monitored AS
        SELECT row_number() OVER (ORDER BY time, request_id, i) AS row, request_id, i, n,
               rec, out, {valid_sql(signature)} AS valid
        FROM (
            SELECT request_id, time, json_array_length(inputs::JSON)::BIGINT AS n,
                   unnest(range(json_array_length(inputs::JSON)::BIGINT)) AS i,
                   unnest(json_extract(inputs::JSON, '$[*]')) AS rec,
                   unnest(json_extract(outputs::JSON, '$[*]')) AS out
            FROM served WHERE error IS NULL AND model = $model
        ) WHERE rec IS NOT NULL
    """
