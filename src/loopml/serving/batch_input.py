"""The input side of batch scoring: which files an input names, the model signature as
Arrow types, and the stream of signature-conformed chunks (see :mod:`loopml.serving.batch`).

Parquet is read row group by row group and CSV block by block, so memory holds a row group
or a block plus the chunks in flight, whatever the input's size.
"""

from __future__ import annotations

import glob as globbing
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidInput, NotFound, missing_dependency
from loopml.serving.requests import SchemaMismatch

if TYPE_CHECKING:
    import pyarrow as pa

    from loopml.registry.signature import Signature

#: Columns batch scoring adds to the input's (an input that has one is refused).
ADDED = ("prediction", "model_version", "request_id")
_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv"}
_PROTOCOL_EXTRAS = {"s3": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs")}


class InputNotFound(NotFound):
    """The input path or glob names no Parquet or CSV file."""


# -- files -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The files an input names, in the order they are read, and their format."""

    fs: Any
    paths: list[str]
    format: str  # parquet | csv
    display: str

    def name(self, path: str) -> str:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return path if protocol in ("file", "local") else f"{protocol}://{path}"


def format_of(path: str) -> str | None:
    lower = path.lower()
    for suffix, kind in _FORMATS.items():
        if lower.endswith(suffix):
            return kind
    return None


def _hidden(path: str) -> bool:
    return path.rstrip("/").rsplit("/", 1)[-1].startswith((".", "_"))


def open_fs(url: str, storage_options: dict[str, Any] | None, doing: str) -> tuple[Any, str]:
    """The fsspec filesystem and path of ``url``; a missing package names its install."""
    from fsspec.core import url_to_fs

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    try:
        fs, path = url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:
        package, extra = _PROTOCOL_EXTRAS.get(protocol, (protocol, "all"))
        raise missing_dependency(package, extra, f"{doing} {protocol}:// paths") from exc
    except ValueError as exc:
        raise InvalidInput(f"Not a usable path {url!r}: {exc}") from exc
    return fs, str(path)


def open_input(input: str | os.PathLike[str], storage_options: dict[str, Any] | None) -> Source:
    """The files of ``input`` (a file, a folder or a glob; local or an fsspec URL), sorted."""
    text = os.fspath(input)
    fs, path = open_fs(text, storage_options, "Reading")
    if globbing.has_magic(path):
        paths = [p for p in sorted(fs.glob(path)) if not _hidden(p) and fs.isfile(p)]
    elif fs.isdir(path):
        paths = [p for p in sorted(fs.find(path)) if format_of(p) and not _hidden(p)]
    elif fs.exists(path):
        paths = [path]
    else:
        raise InputNotFound(f"No input at {text}: give a Parquet or CSV file, a folder or a glob.")
    if not paths:
        raise InputNotFound(f"{text} names no Parquet or CSV file (*.parquet, *.csv, *.csv.gz).")
    formats = {p: format_of(p) for p in paths}
    unknown = [p for p, kind in formats.items() if kind is None]
    if unknown:
        raise InvalidInput(
            f"Not Parquet or CSV (by its name): {unknown[:3]}. Batch scoring reads *.parquet, "
            "*.csv and *.csv.gz."
        )
    kinds = set(formats.values())
    if len(kinds) > 1:
        raise InvalidInput(f"{text} mixes Parquet and CSV files: score each kind on its own.")
    return Source(fs, paths, str(kinds.pop()), text)


# -- the signature as Arrow types ------------------------------------------------------------


def _arrow_type(dtype: str) -> pa.DataType | None:
    """The Arrow type of a signature dtype (None: one Arrow can't check, pandas will judge)."""
    import re

    import numpy as np
    import pyarrow as pa

    if dtype in ("object", "str", "string") or dtype.startswith("string["):
        return pa.string()
    if dtype in ("bool", "boolean"):
        return pa.bool_()
    found = re.fullmatch(r"datetime64\[(\w+)(?:, (.+))?\]", dtype)
    if found:
        return pa.timestamp(found.group(1), tz=found.group(2))
    try:
        from pandas.api.types import pandas_dtype

        numpy = getattr(pandas_dtype(dtype), "numpy_dtype", pandas_dtype(dtype))
        if isinstance(numpy, np.dtype) and numpy.kind in "iuf":
            return pa.from_numpy_dtype(numpy)
    except TypeError:
        pass
    return None


def _family(kind: pa.DataType) -> str:
    import pyarrow.types as t

    if t.is_dictionary(kind):
        return _family(kind.value_type)
    for name, test in (
        ("null", t.is_null),
        ("bool", t.is_boolean),
        ("int", t.is_integer),
        ("float", t.is_floating),
        ("string", lambda k: t.is_string(k) or t.is_large_string(k)),
        ("timestamp", t.is_timestamp),
        ("date", t.is_date),
    ):
        if test(kind):
            return name
    return str(kind)


# What a column may hold for each target family: a value outside these is a type error before
# anything is read; inside them, the cast of each chunk judges the values (1.5 for an int).
_ACCEPTS = {
    "int": {"int", "float", "null"},
    "float": {"int", "float", "null"},
    "bool": {"bool", "null"},
    "string": {"string", "null"},
    "timestamp": {"timestamp", "date", "string", "null"},
}


@dataclass(frozen=True)
class Plan:
    """The model's inputs: columns in order with their signature dtype and Arrow type."""

    columns: tuple[str, ...]  # empty: no signature, take the columns as they come
    dtypes: tuple[str, ...]
    types: tuple[Any, ...]  # pa.DataType or None
    array: bool  # a model of arrays: columns taken by position

    @classmethod
    def of(cls, signature: Signature | None) -> Plan:
        inputs = tuple(signature.inputs) if signature is not None else ()
        array = bool(inputs) and all(name.startswith("[") for name, _ in inputs)
        return cls(
            tuple(n for n, _ in inputs),
            tuple(d for _, d in inputs),
            tuple(_arrow_type(d) for _, d in inputs),
            array,
        )

    def csv_types(self) -> dict[str, Any]:
        """Column types the CSV reader converts to directly (times are cast afterwards)."""
        import pyarrow.types as t

        if self.array:
            return {}
        return {
            c: k
            for c, k in zip(self.columns, self.types, strict=True)
            if k is not None and not t.is_timestamp(k)
        }

    def check(self, schema: pa.Schema, where: str) -> None:
        """A :class:`SchemaMismatch` naming the missing, unexpected and mistyped columns."""
        if not self.columns:
            return
        if self.array:
            if len(schema.names) != len(self.columns):
                raise SchemaMismatch(
                    f"{where} has {len(schema.names)} column(s); the model takes arrays of "
                    f"{len(self.columns)} value(s)."
                )
            pairs = list(zip(schema.names, self.dtypes, self.types, strict=True))
            problems: list[str] = []
        else:
            present = set(schema.names)
            missing = [c for c in self.columns if c not in present]
            extra = [c for c in schema.names if c not in self.columns]
            problems = []
            if missing:
                problems.append(f"missing column(s) {missing}")
            if extra:
                problems.append(f"unexpected column(s) {extra}")
            pairs = [
                (c, d, k)
                for c, d, k in zip(self.columns, self.dtypes, self.types, strict=True)
                if c in present
            ]
        wrong = []
        for column, dtype, kind in pairs:
            if kind is None:
                continue
            has = schema.field(column).type
            if _family(has) not in _ACCEPTS.get(_family(kind), {_family(kind)}):
                wrong.append(f"{column!r} must be {dtype}, got {has}")
        if wrong:
            problems.append("wrong type(s): " + "; ".join(wrong))
        if problems:
            raise SchemaMismatch(
                f"{where} doesn't match the model's signature: " + ", ".join(problems) + "."
            )

    def conform(self, table: pa.Table, where: str, first_row: int) -> pa.Table:
        """``table`` with the signature's columns, in its order, cast to its types (safely:
        a value that would change is an error naming the column)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.types as t

        if not self.columns:
            return table
        names = table.column_names if self.array else list(self.columns)
        arrays = []
        for column, dtype, kind in zip(names, self.dtypes, self.types, strict=True):
            values = table.column(column)
            if kind is not None and values.type != kind:
                try:
                    values = pc.cast(values, kind, safe=True)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaMismatch(
                        f"Column {column!r} of {where} can't be {dtype}: {exc}"
                    ) from exc
            if (
                kind is not None
                and (t.is_integer(kind) or t.is_boolean(kind))
                and values.null_count
            ):
                rows = pc.indices_nonzero(pc.is_null(values)).to_pylist()[:5]
                raise SchemaMismatch(
                    f"Column {column!r} of {where} has {values.null_count} empty value(s) "
                    f"(row {', '.join(str(first_row + r + 1) for r in rows)}; 1 is the file's "
                    "first row), but the model "
                    f"takes {dtype}, which has no empty value: fill or drop them first."
                )
            arrays.append(values)
        return pa.table(arrays, names=names)


def _batches(source: Source, path: str, plan: Plan, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    try:
        with source.fs.open(path, "rb", compression="infer") as fh:
            if source.format == "parquet":
                import pyarrow.parquet as pq

                parquet = pq.ParquetFile(fh)
                # Row group by row group: iter_batches over the whole file pre-buffers every
                # row group's columns, holding the file in memory (measured: 8M rows).
                for group in range(parquet.metadata.num_row_groups):
                    yield from parquet.iter_batches(batch_size=chunk_rows, row_groups=[group])
            else:
                reader = _csv_reader(fh, plan)
                while True:
                    try:
                        yield reader.read_next_batch()
                    except StopIteration:
                        return
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _unreadable(source, path, plan, exc) from exc


def _unreadable(source: Source, path: str, plan: Plan, exc: BaseException) -> SchemaMismatch:
    bad = _csv_bad_value(source, path, plan) if source.format == "csv" else None
    if bad:
        return SchemaMismatch(
            f"Cannot read {source.name(path)} as the model's inputs: {bad}. Fix or drop that "
            "row first."
        )
    return SchemaMismatch(f"Cannot read {source.name(path)} as the model's inputs: {exc}")


def _csv_reader(fh: Any, plan: Plan, types: dict[str, Any] | None = None) -> Any:
    import pyarrow.csv as pacsv

    column_types = plan.csv_types() if types is None else types
    return pacsv.open_csv(fh, convert_options=pacsv.ConvertOptions(column_types=column_types))


def _csv_bad_value(source: Source, path: str, plan: Plan) -> str | None:
    """Where the first value of a CSV file that its column's type can't hold is (Arrow's CSV
    reader names the column's position and the value, not the row): the file read again as
    text, each typed column cast batch by batch. None if it can't be found so."""
    import pyarrow as pa

    wanted = plan.csv_types()
    rows = 0
    try:
        with source.fs.open(path, "rb", compression="infer") as fh:
            reader = _csv_reader(fh, plan, {c: pa.string() for c in wanted})
            for batch in reader:
                for column, kind in wanted.items():
                    if column not in batch.schema.names:
                        continue
                    values = batch.column(column)
                    if _fits(values, kind):
                        continue
                    for i, value in enumerate(values.to_pylist()):
                        if value not in (None, "") and not _fits(pa.array([value]), kind):
                            dtype = plan.dtypes[plan.columns.index(column)]
                            return (
                                f"column {column!r}, row {rows + i + 1} (1 is the file's "
                                f"first row): {value[:60]!r} can't be {dtype}"
                            )
                rows += batch.num_rows
    except (OSError, pa.ArrowException):
        return None
    return None


def _fits(values: Any, kind: Any) -> bool:
    """Whether every value of ``values`` (text) casts to ``kind`` without change."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.cast(values, kind, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def inspect_input(source: Source, plan: Plan) -> tuple[int | None, pa.Schema]:
    """Check every file's columns before anything is scored: the input's row count when the
    files say it (Parquet; else None), and the first file's columns."""
    import pyarrow as pa

    total: int | None = 0
    first: pa.Schema | None = None
    for path in source.paths:
        where = source.name(path)
        try:
            with source.fs.open(path, "rb", compression="infer") as fh:
                if source.format == "parquet":
                    import pyarrow.parquet as pq

                    parquet = pq.ParquetFile(fh)
                    schema = parquet.schema_arrow
                    total = None if total is None else total + parquet.metadata.num_rows
                else:
                    schema = _csv_reader(fh, plan).schema
                    total = None
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise _unreadable(source, path, plan, exc) from exc
        plan.check(schema, where)
        taken = [c for c in ADDED if c in schema.names]
        if taken:
            raise InvalidInput(
                f"{where} has column(s) {taken}, which batch scoring adds: rename them first."
            )
        first = first or schema
    assert first is not None  # open_input found at least one file
    return total, first


def chunks(source: Source, plan: Plan, chunk_rows: int) -> Iterator[tuple[pa.Table, int]]:
    """``(chunk, first row)`` in input order, each ``chunk_rows`` rows (the last fewer)."""
    import pyarrow as pa

    buffer: list[pa.Table] = []
    buffered = 0
    emitted = 0
    for path in source.paths:
        where = source.name(path)
        offset = 0
        for batch in _batches(source, path, plan, chunk_rows):
            table = plan.conform(pa.Table.from_batches([batch]), where, offset)
            offset += batch.num_rows
            buffer.append(table)
            buffered += table.num_rows
            while buffered >= chunk_rows:
                whole = pa.concat_tables(buffer)
                yield whole.slice(0, chunk_rows), emitted
                emitted += chunk_rows
                rest = whole.slice(chunk_rows)
                buffer, buffered = [rest], rest.num_rows
    if buffered:
        yield pa.concat_tables(buffer), emitted
