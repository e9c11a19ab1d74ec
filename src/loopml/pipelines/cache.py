"""Task outputs as bytes, and the cache key that decides when a task can be skipped.

A task's cache key is the BLAKE3 of its code fingerprint (its source, the module-level
values and project functions it uses, the versions of the packages it calls: see
:mod:`loopml.pipelines.fingerprint`) and the content hash of each argument (an upstream
output's hash, or a constant argument's — a ``Path`` by the content it points to). A constant
that can't be serialized (a lock, a connection) makes the call's key unique: never reused.
An output is reused from an earlier completed run of a task of the same name with the same
key (or from an identical call earlier in the same run). Outputs are
serialized once: pandas DataFrames and Arrow tables as Parquet, everything else with pickle
(cloudpickle for lambdas and local classes). The serialized bytes' BLAKE3 is the output
hash; small outputs are kept in the task-run row, larger ones in the blob store.
"""

from __future__ import annotations

import io
import pickle
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import blake3

from loopml.pipelines.exceptions import OutputNotStorable
from loopml.pipelines.tasks import Handle

if TYPE_CHECKING:
    from loopml.store.blobs import BlobStore

#: Serialized outputs up to this size are stored in the metadata row, not as a blob.
INLINE_LIMIT = 16 * 1024

PICKLE = "pickle"
CLOUDPICKLE = "cloudpickle"
PARQUET_PANDAS = "parquet/pandas"
PARQUET_ARROW = "parquet/arrow"
FORMATS = (PICKLE, CLOUDPICKLE, PARQUET_PANDAS, PARQUET_ARROW)

_MISSING: Any = object()


@dataclass
class Stored:
    """One serialized value: its hash, format and bytes (kept only until written)."""

    digest: str
    format: str
    size: int
    data: bytes | None = None
    value: Any = field(default=_MISSING, repr=False)

    @property
    def inline(self) -> bytes | None:
        return self.data if self.data is not None and self.size <= INLINE_LIMIT else None


def serialize(value: Any, task: str = "") -> Stored:
    """Serialize ``value``: Parquet for tables, pickle (then cloudpickle) for the rest."""
    module = type(value).__module__
    if module.startswith(("pandas", "pyarrow")):
        data = _parquet(value)
        if data is not None:
            fmt = PARQUET_PANDAS if module.startswith("pandas") else PARQUET_ARROW
            return Stored(blake3.blake3(data).hexdigest(), fmt, len(data), data, value)
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        fmt = PICKLE
    except Exception as first:
        try:
            import cloudpickle

            data = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            fmt = CLOUDPICKLE
        except Exception:
            raise not_storable(value, task, first) from first
    return Stored(blake3.blake3(data).hexdigest(), fmt, len(data), data, value)


def not_storable(value: Any, task: str, exc: BaseException) -> OutputNotStorable:
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    who = f"Task {task!r}" if task else "A task"
    return OutputNotStorable(
        f"{who} returned a {kind}, which loopml cannot store ({type(exc).__name__}: {exc}). "
        "Task outputs are saved so that later tasks, reruns and resumes can use them: return "
        "plain data, a pandas DataFrame or Arrow table, or a picklable object (a model), and "
        "keep connections, locks, files and generators inside the task."
    )


def _parquet(value: Any) -> bytes | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if type(value).__module__.startswith("pandas"):
            import pandas as pd

            if not isinstance(value, pd.DataFrame):
                return None  # a Series, an Index: pickled
            if not all(isinstance(c, str) for c in value.columns):
                return None
            table = pa.Table.from_pandas(value, preserve_index=True)
        elif isinstance(value, pa.Table):
            table = value
        else:
            return None
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()
    except (TypeError, ValueError, pa.ArrowException):  # mixed-type object columns, …
        return None


def deserialize(fmt: str, data: bytes) -> Any:
    if fmt in (PICKLE, CLOUDPICKLE):
        if fmt == CLOUDPICKLE:
            import cloudpickle  # noqa: F401  (its functions rebuild what it pickled)
        return pickle.loads(data)
    if fmt in (PARQUET_PANDAS, PARQUET_ARROW):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        return table.to_pandas() if fmt == PARQUET_PANDAS else table
    raise OutputNotStorable(f"Unknown output format {fmt!r}: written by a newer loopml?")


def save(stored: Stored, blobs: BlobStore) -> None:
    """Put an output too large for the metadata row into the blob store."""
    if stored.data is not None and stored.size > INLINE_LIMIT:
        blobs.put_bytes(stored.data)


def load(blobs: BlobStore, fmt: str, digest: str, inline: bytes | None) -> Any:
    data = inline if inline is not None else blobs.get_bytes(digest)
    return deserialize(fmt, data)


# -- cache keys ------------------------------------------------------------------------------


def content_digest(value: Any) -> str:
    """The content hash of a constant argument (as its output would be hashed). A
    ``pathlib.Path`` is hashed by what is at that path (file or folder content), so a task
    reading ``Path("data/raw")`` reruns when the data changes."""
    if isinstance(value, PurePath):
        from loopml.tracking.inputs import dataset_ref

        path = Path(value)
        state = dataset_ref(path).digest if path.exists() else "missing"
        return blake3.blake3(f"p\0{value}\0{state}".encode()).hexdigest()
    if value is None or isinstance(value, bool | int | float | str | bytes):
        data = repr(value).encode() if not isinstance(value, bytes) else value
        return blake3.blake3(b"c\0" + data).hexdigest()
    return serialize(value).digest


def argument_digests(
    labels: list[str], values: list[Any], inputs: dict[str, str]
) -> dict[str, str]:
    """The content hash of each argument of a call, by its label (the parameter name), with
    each handle replaced by the hash of the output it stands for (``inputs``: node →
    digest)."""
    return {label: _item_digest(value, inputs) for label, value in zip(labels, values, strict=True)}


def cache_key(code_digest: str, arguments: dict[str, str]) -> str:
    """The key under which a task's output is reused: its code fingerprint and the digest of
    each argument (see :func:`argument_digests`)."""
    text = code_digest + "".join(f"\0a{label}\0{digest}" for label, digest in arguments.items())
    return str(blake3.blake3(text.encode()).hexdigest())


def _feed(hasher: Any, value: Any, inputs: dict[str, str]) -> None:
    if isinstance(value, Handle):
        hasher.update(b"\0h" + inputs[value.node].encode())
    elif isinstance(value, tuple | list):
        hasher.update(b"\0[" + type(value).__name__.encode())
        for item in value:
            _feed(hasher, item, inputs)
        hasher.update(b"\0]")
    elif isinstance(value, set | frozenset):  # pickled set order varies between processes
        hasher.update(b"\0s")
        for digest in sorted(_item_digest(item, inputs) for item in value):
            hasher.update(digest.encode())
        hasher.update(b"\0S")
    elif isinstance(value, dict):
        hasher.update(b"\0{")
        for key, item in value.items():
            hasher.update(b"\0k" + str(key).encode())
            _feed(hasher, item, inputs)
        hasher.update(b"\0}")
    else:
        try:
            digest = content_digest(value)
        except OutputNotStorable:  # a lock, a connection: such a call is never reused
            digest = uuid.uuid4().hex
        hasher.update(b"\0v" + digest.encode())


def _item_digest(value: Any, inputs: dict[str, str]) -> str:
    if isinstance(value, Handle):  # an upstream output: its hash already names it
        return "h" + inputs[value.node]
    hasher = blake3.blake3()
    _feed(hasher, value, inputs)
    return str(hasher.hexdigest())


def resolve(value: Any, outputs: dict[str, Any]) -> Any:
    """``value`` with every handle replaced by the output value it stands for."""
    if isinstance(value, Handle):
        return outputs[value.node]
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(resolve(item, outputs) for item in value))
    if isinstance(value, tuple | list):
        return type(value)(resolve(item, outputs) for item in value)
    if isinstance(value, dict):
        return {key: resolve(item, outputs) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return type(value)(resolve(item, outputs) for item in value)
    return value
