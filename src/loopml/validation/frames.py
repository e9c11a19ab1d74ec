"""A read-only, column-at-a-time view of the tables validation accepts: pandas and pyarrow.

A pyarrow Table's columns are turned into pandas Series one at a time, only when a check asks
for them, without copying where Arrow allows it; integer and bool columns with nulls become
pandas' nullable ``Int64``/``boolean`` dtypes, so that a null does not turn an int column into a
float one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from loopml.exceptions import InvalidInput


@dataclass(frozen=True)
class Frame:
    """Column names (as strings), a row count and a way to get one column as a Series."""

    columns: tuple[str, ...]
    n_rows: int
    _get: Callable[[str], pd.Series]

    def column(self, name: str) -> pd.Series:
        return self._get(name)


def as_frame(data: Any) -> Frame:
    """Wrap a pandas DataFrame, a pyarrow Table or a pyarrow RecordBatch."""
    if isinstance(data, pd.DataFrame):
        return _pandas_frame(data)
    module = type(data).__module__
    if module.startswith("pyarrow"):
        import pyarrow as pa

        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if isinstance(data, pa.Table):
            return _arrow_frame(data)
    raise InvalidInput(
        f"validation takes a pandas DataFrame or a pyarrow Table, not {type(data).__name__}"
    )


def _unique_names(labels: list[Hashable]) -> dict[str, Hashable]:
    by_name: dict[str, Hashable] = {}
    for label in labels:
        name = str(label)
        if name in by_name:
            raise InvalidInput(
                f"the table has more than one column named {name!r}; rename them to validate it"
            )
        by_name[name] = label
    return by_name


def _pandas_frame(df: pd.DataFrame) -> Frame:
    by_name = _unique_names(list(df.columns))

    def get(name: str) -> pd.Series:
        return df[by_name[name]]

    return Frame(tuple(by_name), len(df), get)


def _arrow_frame(table: Any) -> Frame:
    import pyarrow as pa

    by_name = _unique_names(list(table.column_names))
    index = pd.RangeIndex(table.num_rows)

    def mapper(arrow_type: Any) -> Any:
        if pa.types.is_integer(arrow_type):  # int32 → Int32, uint8 → UInt8
            name = str(arrow_type)
            nullable = f"UInt{name[4:]}" if name.startswith("uint") else f"Int{name[3:]}"
            return pd.api.types.pandas_dtype(nullable)
        if pa.types.is_boolean(arrow_type):
            return pd.BooleanDtype()
        return None

    def get(name: str) -> pd.Series:
        chunked = table.column(name)
        nullable = mapper(chunked.type) if chunked.null_count else None
        # A types_mapper that answers None sends strings down a slow path: pass one only when used.
        if nullable is None:
            series = chunked.to_pandas()
        else:
            series = chunked.to_pandas(types_mapper=lambda _: nullable)
        series.index = index
        series.name = name
        return series

    return Frame(tuple(by_name), table.num_rows, get)
