"""Dataset inputs of a run, recorded by content hash so lineage joins on exact data."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from loopml.data.pointers import is_pointer, pointer_path, read_pointer, target_path
from loopml.exceptions import InvalidInput
from loopml.store.blobs import hash_file
from loopml.store.manifest import manifest_digest


@dataclass(frozen=True)
class DatasetRef:
    """A dataset identified by the BLAKE3 of its content (a folder: of its sorted manifest)."""

    name: str
    digest: str
    source: str | None
    size: int | None
    file_count: int | None


def hash_folder(folder: Path) -> tuple[str, int, int]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        digests = list(pool.map(hash_file, files))
    entries = [
        (f.relative_to(folder).as_posix(), d, f.stat().st_size)
        for f, d in zip(files, digests, strict=True)
    ]
    return manifest_digest(entries), sum(e[2] for e in entries), len(entries)


def _from_pointer(path: Path, name: str | None) -> DatasetRef:
    pointer = read_pointer(path)  # InvalidPointer (an InvalidInput) names what is wrong
    target = target_path(path)
    return DatasetRef(name or target.name, pointer.hash, str(target), pointer.size, pointer.files)


def dataset_ref(source: Any, name: str | None = None) -> DatasetRef:
    """Identify a file, folder, pointer file (``*.loopml``), pandas DataFrame or Arrow table."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        pointer = path if is_pointer(path) else pointer_path(path)
        if pointer.is_file() and (path == pointer or not path.exists()):
            return _from_pointer(pointer, name)
        if path.is_file():
            return DatasetRef(name or path.name, hash_file(path), str(path), path.stat().st_size, 1)
        if path.is_dir():
            digest, size, count = hash_folder(path)
            return DatasetRef(name or path.name, digest, str(path), size, count)
        raise InvalidInput(f"Cannot log input {path}: no such file or folder")
    table = _as_arrow(source)
    if table is None:
        raise InvalidInput(
            f"log_input takes a path, a pandas DataFrame or a pyarrow Table, "
            f"not {type(source).__name__}"
        )
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue()
    return DatasetRef(name or "dataframe", blake3.blake3(data).hexdigest(), None, len(data), None)


def _as_arrow(source: Any) -> Any:
    module = type(source).__module__
    if module.startswith("pyarrow"):
        return source
    if module.startswith("pandas"):
        import pyarrow as pa

        return pa.Table.from_pandas(source, preserve_index=True)
    return None
