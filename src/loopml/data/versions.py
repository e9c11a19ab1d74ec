"""Data versions: ``add`` hashes a file or folder into the cache and writes its pointer file."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loopml.data.cache import SMALL_FILE, Stored
from loopml.data.errors import DataNotFound, LinkNotFollowed
from loopml.data.git import ignore_in_git
from loopml.data.index import Stamp, digest_if_unchanged, is_racy, stamp
from loopml.data.manifest import (
    FILE,
    WalkedFile,
    check_name,
    skipped_links,
    walk_files,
)
from loopml.data.parallel import parallel_map
from loopml.data.pointers import (
    POINTER_SUFFIX,
    Kind,
    Pointer,
    is_pointer,
    pointer_path,
    target_path,
    tracked_ancestor,
    write_pointer,
)
from loopml.data.progress import Progress
from loopml.data.repo import DataRepo, WorkspaceLike
from loopml.data.tree import make_snapshot
from loopml.exceptions import InvalidInput
from loopml.store.manifest import Entry, manifest_bytes


@dataclass(frozen=True)
class DataVersion:
    """One version of a file or folder: its hash is the data version ``log_input`` records."""

    path: Path
    hash: str
    size: int
    files: int
    kind: Kind = "folder"

    @property
    def pointer(self) -> Path:
        return pointer_path(self.path)


def add(
    path: str | os.PathLike[str],
    *,
    link: str | list[str] | None = None,
    workspace: WorkspaceLike = None,
    jobs: int | None = None,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> DataVersion:
    """Version a file or folder: cache its files, write ``PATH.loopml``, git-ignore ``PATH``.

    >>> v = loopml.data.add("data/raw")      # DataVersion(path=…, hash='9f2c…', size=…, files=…)

    ``progress`` is called with ``files=``/``bytes=`` as files are stored (totals first).
    Symbolic links that lead to no file (dangling, a loop, or a folder: not followed, as
    ``log_input`` doesn't) are not versioned; ``warn`` is called with a line naming them
    (default: a :class:`UserWarning`).
    """
    if not os.fspath(path):
        raise InvalidInput("The path is empty: name a file or folder inside the workspace.")
    given = Path(path)
    if is_pointer(given):
        raise InvalidInput(
            f"{path} is a pointer file; add the data it points to: "
            f"`loopml data add {target_path(given)}`"
        )
    with DataRepo.open(workspace, near=given, jobs=jobs) as repo:
        return add_in(repo, repo.target(given), link, progress, warn)


def add_in(
    repo: DataRepo,
    target: Path,
    link: str | list[str] | None = None,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> DataVersion:
    if os.path.islink(target):
        _check_link(repo, target)
    if not os.path.exists(target):
        raise DataNotFound(f"Cannot add {target}: no such file or folder.")
    ancestor = tracked_ancestor(target, repo.root)
    if ancestor is not None:
        raise InvalidInput(
            f"{target} is inside the versioned folder {ancestor}; "
            f"version the whole folder again with `loopml data add {ancestor}`."
        )
    linker = repo.linker(link)
    seen_ns = time.time_ns()
    if target.is_dir():
        skipped: list[str] = []
        walked = walk_files(target, skipped)
        prefix = repo.key(target) + "/"
        _check_names(walked, target)
        if skipped:
            message = skipped_links(target, skipped)
            if warn is not None:
                warn(message)
            else:
                import warnings

                warnings.warn(message, UserWarning, stacklevel=3)
    else:
        walked = [(FILE, os.fspath(target), target.stat())]
        prefix = repo.key(target)
    known = repo.index.load(prefix)

    if progress is not None:
        progress(total_files=len(walked), total_bytes=sum(st.st_size for _, _, st in walked))

    def store(item: WalkedFile) -> Stored:
        rel, path, st = item
        digest = digest_if_unchanged(known.get(prefix + rel), st)
        if progress is None:
            return repo.cache.store(path, st, digest, linker)
        in_steps = digest is None and st.st_size >= SMALL_FILE  # reports its bytes as hashed
        stored = repo.cache.store(path, st, digest, linker, progress if in_steps else None)
        progress(files=1, bytes=0 if in_steps else st.st_size)
        return stored

    threads = repo.threads(sum(st.st_size for _, _, st in walked), len(walked))
    stored = parallel_map(store, walked, threads)

    rows: list[tuple[str, Stamp, str]] = []
    entries: list[Entry] = []
    for (rel, _, _), s in zip(walked, stored, strict=True):
        entries.append((rel, s.digest, s.size))
        stable = not is_racy(s.source_stat, seen_ns)
        if stable:
            rows.append((prefix + rel, stamp(s.source_stat), s.digest))
        if s.strategy == "hardlink" and stable:
            rows.append((repo.cache.key_of(s.digest), stamp(s.source_stat), s.digest))
        elif s.object_stat is not None and (s.strategy == "copy" or stable):
            rows.append((repo.cache.key_of(s.digest), stamp(s.object_stat), s.digest))

    if target.is_dir():
        digest = repo.cache.put_bytes(manifest_bytes(entries))  # stored under its own hash
        version = DataVersion(target, digest, sum(e[2] for e in entries), len(entries), "folder")
        gone = set(known) - {prefix + rel for rel, _, _ in walked}
        after = {rel: s.source_stat for (rel, _, _), s in zip(walked, stored, strict=True)}
        snapshot = make_snapshot(after, seen_ns, digest)  # the first status needs no lookups
    else:
        _, digest, size = entries[0]
        version = DataVersion(target, digest, size, 1, "file")
        gone = set()
        snapshot = None
    repo.index.record(rows)
    repo.index.forget(gone)
    if snapshot is not None:
        repo.index.record_snapshot(prefix, snapshot)
    write_pointer(
        pointer_path(target), Pointer(version.kind, version.hash, version.size, version.files)
    )
    ignore_in_git(target)
    return version


def _check_link(repo: DataRepo, target: Path) -> None:
    """A symbolic link is versioned only as a link to a file inside the workspace: one that
    leads outside would be versioned (and checked out) through the link, and a link to a
    folder is not versioned (as inside a folder being added)."""
    from shlex import quote

    dest = Path(os.path.realpath(target))
    shown = repo.display(target)
    if dest == repo.root:
        raise LinkNotFollowed(
            f"{shown} is a symbolic link to the workspace root ({repo.root}), which can't be "
            "versioned itself; version a folder or file inside it."
        )
    if repo.root not in dest.parents:
        raise LinkNotFollowed(
            f"{shown} is a symbolic link to {dest}, outside the workspace at {repo.root}; only "
            "data inside the workspace can be versioned. Copy the data into the workspace in "
            f"place of the link (`rm {quote(shown)} && cp -R {quote(str(dest))} {quote(shown)}`)."
        )
    if dest.is_dir():
        inside = repo.display(dest)
        raise LinkNotFollowed(
            f"{shown} is a symbolic link to the folder {inside}; links to folders are not "
            f"versioned (a checkout would write through them). Version the folder itself: "
            f"`loopml data add {inside}`."
        )


def _check_names(walked: list[WalkedFile], target: Path) -> None:
    rels = {rel for rel, _, _ in walked}
    dirs: set[str] | None = None
    for rel in rels:
        check_name(rel)
        if rel.endswith(POINTER_SUFFIX):
            inner = rel[: -len(POINTER_SUFFIX)]
            if dirs is None:
                dirs = {r[:i] for r in rels for i, c in enumerate(r) if c == "/"}
            if inner in rels or inner in dirs:
                raise InvalidInput(
                    f"{target} contains versioned data ({target / inner}); versions can't nest. "
                    f"Delete {target / rel} first, or add {target / inner} on its own."
                )
