"""Run artifacts: files and folders stored in the blob store, indexed per run by path."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import Connection, select

from loopml.exceptions import ArtifactNotFound, InvalidInput
from loopml.store.blobs import BlobStore
from loopml.store.clock import now_ms
from loopml.store.db import Database, upsert
from loopml.tracking.tables import artifacts


@dataclass(frozen=True)
class ArtifactInfo:
    path: str
    size: int
    digest: str


def _clean_artifact_path(path: str) -> str:
    pure = PurePosixPath(path.replace(os.sep, "/"))
    if pure.is_absolute() or ".." in pure.parts:
        raise InvalidInput(f"Artifact path {path!r} must be relative and must not contain '..'")
    cleaned = "/".join(p for p in pure.parts if p not in {"", "."})
    if not cleaned:
        raise InvalidInput("An artifact path must not be empty")
    return cleaned


def upsert_artifacts(conn: Connection, run_id: str, rows: list[tuple[str, str, int]]) -> None:
    if not rows:
        return
    stmt = upsert(conn.dialect.name, artifacts)
    stmt = stmt.on_conflict_do_update(
        index_elements=[artifacts.c.run_id, artifacts.c.path],
        set_={"digest": stmt.excluded.digest, "size": stmt.excluded.size},
    )
    now = now_ms()
    conn.execute(
        stmt,
        [
            {"run_id": run_id, "path": p, "digest": d, "size": s, "created_at": now}
            for p, d, s in rows
        ],
    )


def store_artifacts(
    blobs: BlobStore, path: str | os.PathLike[str], artifact_path: str | None
) -> list[tuple[str, str, int]]:
    """Put a file or a folder's files into the blob store; return (path, digest, size) rows."""
    source = Path(path)
    if not source.exists():
        raise InvalidInput(f"Cannot log artifact {source}: no such file or folder")
    if source.is_file():
        dest = f"{artifact_path}/{source.name}" if artifact_path else source.name
        return [(_clean_artifact_path(dest), blobs.put_file(source), source.stat().st_size)]
    base = artifact_path if artifact_path is not None else source.name
    rows = []
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = file.relative_to(source).as_posix()
        dest = f"{base}/{rel}" if base else rel
        rows.append((_clean_artifact_path(dest), blobs.put_file(file), file.stat().st_size))
    return rows


def list_artifacts(db: Database, run_id: str, path: str | None = None) -> list[ArtifactInfo]:
    stmt = select(artifacts.c.path, artifacts.c.size, artifacts.c.digest).where(
        artifacts.c.run_id == run_id
    )
    if path:
        prefix = _clean_artifact_path(path)
        stmt = stmt.where((artifacts.c.path == prefix) | artifacts.c.path.startswith(prefix + "/"))
    with db.read() as conn:
        rows = conn.execute(stmt.order_by(artifacts.c.path)).all()
    return [ArtifactInfo(r.path, r.size, r.digest) for r in rows]


def download_artifacts(
    db: Database,
    blobs: BlobStore,
    run_id: str,
    path: str | None = None,
    dst: str | os.PathLike[str] | None = None,
) -> Path:
    """Copy a run's artifact (a file, or every file under a folder path) to ``dst``.

    Returns the local path of the file or folder. Every byte is verified against its digest.
    """
    items = list_artifacts(db, run_id, path)
    if not items:
        where = f" under {path!r}" if path else ""
        raise ArtifactNotFound(f"Run {run_id} has no artifact{where}.")
    root = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="loopml-artifacts-"))
    for item in items:
        blobs.get_file(item.digest, root / item.path)
    if path:
        return root / _clean_artifact_path(path)
    return root
