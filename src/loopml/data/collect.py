"""``gc``: remove cache objects that nothing references (dry run first).

An object is kept when a pointer file needs it (the version's manifest and its files):

* a pointer file in the workspace;
* a pointer file in git: at HEAD and at the commit of every branch, tag, remote branch and
  the stash (default), or in every commit reachable from a ref or a reflog
  (``all_commits``); ``workspace_only`` reads no git revision;
* a blob the metadata database names, when the cache is the workspace's blob folder, which
  tracking artifacts share (the ``artifacts`` table, and any digest in any text column);
* an object changed within the grace period, in case a writer has put a blob but not yet
  recorded it.

A folder version in git whose manifest is no longer cached can't say which files it needs;
gc reports such versions (``GcResult.notes``) and keeps nothing for them.
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
from loopml.data.git import GitPointers, pointers_in_git
from loopml.data.manifest import version_files
from loopml.data.pointers import find_pointers, read_pointer, target_path
from loopml.data.repo import DataRepo, WorkspaceLike
from loopml.exceptions import BlobNotFound, CorruptBlob, InvalidInput, LoopmlError, StoreUnavailable
from loopml.wording import counted

DEFAULT_GRACE_S = 600.0
_DIGEST = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


@dataclass(frozen=True)
class GcResult:
    """The unreferenced objects found (removed unless ``dry_run``) and their total size.

    ``kept`` objects are referenced: ``kept_workspace`` by pointer files in the workspace,
    ``kept_git`` by pointer files in git only, ``kept_metadata`` by the metadata database
    only; ``recent`` ones are too new to judge. ``git`` says which revisions were read
    (None with ``workspace_only``); ``notes`` what gc could not judge.
    """

    removed: tuple[str, ...]
    bytes: int
    kept: int
    recent: int
    dry_run: bool
    cache: Path
    kept_workspace: int = 0
    kept_git: int = 0
    kept_metadata: int = 0
    git: GitPointers | None = None
    notes: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()  # of the removed objects, in the same order


def gc(
    *,
    force: bool = False,
    grace_s: float = DEFAULT_GRACE_S,
    workspace_only: bool = False,
    all_commits: bool = False,
    workspace: WorkspaceLike = None,
) -> GcResult:
    """Find (and with ``force``, delete) cache objects no pointer file references: none in
    the workspace, none in git at HEAD or any ref's commit (every commit with
    ``all_commits``; no git revision with ``workspace_only``), nor the metadata database."""
    if workspace_only and all_commits:
        raise InvalidInput(
            "workspace_only and all_commits contradict each other; choose one "
            "(--workspace-only reads no git revision, --all-commits reads every commit)."
        )
    with DataRepo.open(workspace) as repo:
        in_workspace = referenced(repo)
        notes: list[str] = []
        history: GitPointers | None = None
        in_git: set[str] = set()
        if not workspace_only:
            history = pointers_in_git(repo.root, all_commits=all_commits)
            in_git = referenced_in_git(repo, history, notes)
            if history.note:
                notes.append(history.note)
        in_metadata: set[str] = set()
        if repo.cache_dir() == Path(repo.settings.artifacts_url):
            in_metadata = manifest_members(repo, metadata_digests(repo))
        cutoff = time.time() - grace_s
        unused: list[tuple[str, int]] = []
        kept = recent = by_workspace = by_git = 0
        for digest in repo.cache.digests():
            if digest in in_workspace or digest in in_git or digest in in_metadata:
                kept += 1
                by_workspace += digest in in_workspace
                by_git += digest not in in_workspace and digest in in_git
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
            kept_workspace=by_workspace,
            kept_git=by_git,
            kept_metadata=kept - by_workspace - by_git,
            git=history,
            notes=tuple(notes),
            sizes=tuple(s for _, s in unused),
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


def referenced_in_git(repo: DataRepo, history: GitPointers, notes: list[str]) -> set[str]:
    """Every object the pointer files in git need; a folder version whose manifest is not
    cached (or is corrupt) can't name its files, and is described in ``notes`` instead."""
    keep: set[str] = set()
    unknown: list[str] = []
    for path, pointer in history.pointers:
        keep.add(pointer.hash)
        try:
            files = version_files(repo, pointer, path)
        except (InvalidPointer, CorruptBlob):
            files = None
        if files is None:
            unknown.append(f"{path} ({pointer.hash[:12]})")
            continue
        keep.update(d for d, _ in files.values())
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        notes.append(
            f"{counted(len(unknown), 'folder version')} in git "
            f"{'has' if len(unknown) == 1 else 'have'} no intact manifest in the cache, so "
            f"their files can't be told apart and only the manifest is kept: "
            f"{', '.join(unknown[:3])}{more}"
        )
    if history.unreadable:
        notes.append(
            f"{counted(len(history.unreadable), 'pointer file')} in git "
            f"{'is not a valid pointer' if len(history.unreadable) == 1 else 'are not valid pointers'}"
            f" and name no object: {', '.join(history.unreadable[:3])}"
        )
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
