"""What changed in versioned data since its pointer file: added, modified, deleted files."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from loopml.data.errors import InvalidPointer
from loopml.data.manifest import version_files
from loopml.data.pointers import Pointer, pointer_path, read_pointer
from loopml.data.repo import DataRepo, WorkspaceLike
from loopml.data.tree import FILE, Tree, scan, unchanged_folder
from loopml.store.manifest import manifest_digest


@dataclass(frozen=True)
class DataStatus:
    """How the data at ``path`` differs from the version its pointer file names.

    ``added``/``modified``/``deleted`` hold paths relative to ``path`` (``""`` for a versioned
    file itself); ``hashed`` counts the files whose bytes had to be read.
    """

    path: Path
    hash: str
    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    hashed: int = 0
    files: int = 0
    note: str | None = None

    @property
    def clean(self) -> bool:
        return not (self.added or self.modified or self.deleted or self.note)


def status(
    path: str | os.PathLike[str] | None = None,
    *,
    workspace: WorkspaceLike = None,
    jobs: int | None = None,
) -> list[DataStatus]:
    """Status of the versioned data at ``path`` (or of every pointer file in the workspace)."""
    near = Path(path) if path is not None else None
    with DataRepo.open(workspace, near=near, jobs=jobs) as repo:
        targets = repo.targets([os.fspath(path)] if path is not None else None)
        return [status_in(repo, target) for target in targets]


def status_in(repo: DataRepo, target: Path) -> DataStatus:
    pointer_file = pointer_path(target)
    source = str(pointer_file)
    pointer = read_pointer(pointer_file)
    walked = None
    if pointer.kind == "folder" and target.is_dir():
        found = unchanged_folder(repo, target, pointer)
        if found is True:
            return DataStatus(target, pointer.hash, files=pointer.files)
        walked = found or None
    tree = scan(repo, target, walked)
    base = DataStatus(target, pointer.hash, hashed=tree.hashed, files=len(tree.files))
    if pointer.kind == "file":
        if tree.kind is None:
            return replace(base, deleted=(FILE,))
        if tree.kind != "file":
            return replace(base, note="is a folder now, but its pointer names a file")
        return base if tree.files[FILE][0] == pointer.hash else replace(base, modified=(FILE,))
    data = repo.cache.read_verified(pointer.hash)
    if data is None:
        return _without_manifest(base, tree)
    # Compare manifest lines as sets: no sorting, no parsing of the lines that are equal.
    then = set(data.decode().split("\n"))
    then.discard("")
    if tree.kind is None:
        return replace(base, deleted=tuple(sorted(line.split("\t", 1)[0] for line in then)))
    if tree.kind != "folder":
        return replace(base, note="is a file now, but its pointer names a folder")
    now = {f"{rel}\t{d}\t{s}" for rel, (d, s) in tree.files.items()}
    if now == then:
        _check_totals(pointer, len(now), sum(s for _, s in tree.files.values()), source)
        snapshot = tree.snapshot(pointer.hash)
        if snapshot is not None:
            repo.index.record_snapshot(repo.key(target) + "/", snapshot)
        return base
    version_files(repo, pointer, source)  # a pointer edited by hand raises InvalidPointer
    old = {line.split("\t", 1)[0] for line in then - now}
    new = {line.split("\t", 1)[0] for line in now - then}
    return replace(
        base,
        added=tuple(sorted(new - old)),
        modified=tuple(sorted(old & new)),
        deleted=tuple(sorted(old - new)),
    )


def _check_totals(pointer: Pointer, files: int, size: int, source: str) -> None:
    if (files, size) != (pointer.files, pointer.size):
        raise InvalidPointer(
            f"{source} does not match the version it names: it says {pointer.files} files and "
            f"{pointer.size} bytes, the manifest of {pointer.hash[:12]}… holds {files} files "
            f"and {size} bytes. Restore the pointer from git (`git checkout -- {source}`)."
        )


def _without_manifest(base: DataStatus, tree: Tree) -> DataStatus:
    if tree.kind == "folder":
        current = manifest_digest([(rel, d, s) for rel, (d, s) in tree.files.items()])
        if current == base.hash:
            return base
    gone = (FILE,) if tree.kind is None else ()
    return replace(
        base,
        deleted=gone,
        note=(
            "differs from its pointer; the version's manifest is not in the cache, so the "
            "changed files can't be listed (`loopml data pull` fetches it)"
        ),
    )
