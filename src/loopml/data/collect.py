"""``gc``: remove cache objects that no pointer file in the workspace needs (dry run first).

The cache may be the workspace's blob folder, which tracking artifacts share: so blobs that
the metadata database names (the ``artifacts`` table, and any digest in any text column) are
kept too, and objects changed within the grace period are kept in case a writer has put a
blob but not yet recorded it. Versions named only by pointer files in git history are not
kept: push them to a remote before collecting.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from loopml.data.errors import InvalidPointer
from loopml.data.manifest import version_files
from loopml.data.pointers import find_pointers, read_pointer, target_path
from loopml.data.repo import DataRepo, WorkspaceLike
from loopml.exceptions import BlobNotFound, LoopmlError, StoreUnavailable

DEFAULT_GRACE_S = 600.0
_DIGEST = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


@dataclass(frozen=True)
class GcResult:
    """The unreferenced objects found (removed unless ``dry_run``) and their total size."""

    removed: tuple[str, ...]
    bytes: int
    kept: int
    recent: int
    dry_run: bool
    cache: Path


def gc(
    *,
    force: bool = False,
    grace_s: float = DEFAULT_GRACE_S,
    workspace: WorkspaceLike = None,
) -> GcResult:
    """Find (and with ``force``, delete) cache objects no pointer file references."""
    with DataRepo.open(workspace) as repo:
        keep = referenced(repo)
        if repo.cache_dir() == Path(repo.settings.artifacts_url):
            keep |= manifest_members(repo, metadata_digests(repo))
        cutoff = time.time() - grace_s
        unused: list[tuple[str, int]] = []
        kept = recent = 0
        for digest in repo.cache.digests():
            if digest in keep:
                kept += 1
                continue
            try:
                st = os.lstat(repo.cache.path_of(digest))
            except FileNotFoundError:
                continue
            if max(st.st_ctime, st.st_mtime) > cutoff:
                recent += 1
                continue
            unused.append((digest, st.st_size))
        if force:
            for digest, _ in unused:
                repo.cache.remove(digest)
            repo.index.forget(repo.cache.key_of(d) for d, _ in unused)
            for tmp in repo.cache.stale_temp_files(max(grace_s, 3600.0)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            _remove_old_checkouts(repo, cutoff)
        return GcResult(
            tuple(d for d, _ in unused),
            sum(s for _, s in unused),
            kept,
            recent,
            not force,
            repo.cache.root,
        )


def referenced(repo: DataRepo) -> set[str]:
    """Every object a pointer file in the workspace needs (manifests and their files)."""
    keep: set[str] = set()
    for pointer_file in find_pointers(repo.root):
        try:
            pointer = read_pointer(pointer_file)
        except InvalidPointer as exc:
            raise InvalidPointer(
                f"{exc} (gc stopped: it can't tell what that version needs)"
            ) from exc
        keep.add(pointer.hash)
        files = version_files(repo, pointer, str(pointer_file))
        if files is None:
            shown = repo.display(target_path(pointer_file))
            raise BlobNotFound(
                f"gc stopped: the manifest of {shown} ({pointer.hash[:12]}…) is not in the "
                "cache, so the objects it needs are unknown. Fetch it with "
                f"`loopml data pull {shown}` or delete {repo.display(pointer_file)}."
            )
        keep.update(d for d, _ in files.values())
    return keep


def manifest_members(repo: DataRepo, digests: set[str]) -> set[str]:
    """``digests`` plus the files that any of them lists as a package manifest (a registered
    model's version digest names a JSON ``{"files": [[path, digest, size], ...]}`` blob)."""
    keep = set(digests)
    for digest in digests:
        path = repo.cache.path_of(digest)
        try:
            if os.path.getsize(path) > 4 << 20:
                continue
            with open(path, "rb") as fh:
                head = fh.read()
        except OSError:
            continue
        if head.startswith(b'{"files"'):
            keep.update(_DIGEST.findall(head.decode("utf-8", "replace")))
    return keep


def metadata_digests(repo: DataRepo) -> set[str]:
    """Every BLAKE3 digest the metadata database mentions in any text column.

    Artifacts have a ``digest`` column, but other blobs are named inside JSON (a run's
    environment names its package list by ``packages_digest``), and other areas add tables of
    their own: so every 64-hex-character string in every text column counts. Keeping a blob
    too many is harmless; deleting one a run or model needs is not.
    """
    url = repo.settings.store_url
    if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///") :]):
        return set()  # no database yet, so nothing recorded in it
    from sqlalchemy import MetaData, String, select

    from loopml.workspace import Workspace

    ws = Workspace(repo.settings)
    try:
        engine = ws.db.engine
        meta = MetaData()
        found: set[str] = set()
        with engine.connect() as conn:
            meta.reflect(conn)
            for table in meta.sorted_tables:
                for column in table.columns:
                    if not isinstance(column.type, String):
                        continue
                    for value in conn.execute(select(column).distinct()).scalars():
                        if isinstance(value, str) and len(value) >= 64:
                            found.update(_DIGEST.findall(value))
        return found
    except LoopmlError:
        raise
    except Exception as exc:
        raise StoreUnavailable(
            f"gc stopped: could not read the blob digests the metadata database records "
            f"({type(exc).__name__}: {exc}); without them it could delete tracked artifacts."
        ) from exc
    finally:
        ws.close()


def _remove_old_checkouts(repo: DataRepo, cutoff: float) -> None:
    folder = repo.state_dir / "checkouts"
    if not folder.is_dir():
        return
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry.path, ignore_errors=True)
