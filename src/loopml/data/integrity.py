"""Deep verification: hash every cache object a version needs again, trusting no recorded stat.

``status`` and ``checkout`` trust an object whose stat is unchanged since it was hashed (see
:mod:`loopml.data.index`); bytes that rot on disk without touching the stat get past them.
``loopml data verify`` reads everything, reports what is missing or corrupt, and forgets the
recorded stats of corrupt objects, so the next ``pull`` replaces them from a remote.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from loopml.data.manifest import version_files
from loopml.data.pointers import Pointer, pointer_path
from loopml.data.repo import DataRepo, WorkspaceLike
from loopml.data.restore import load_pointers


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found for the version of ``path``: ``objects`` cache objects of
    ``size`` bytes hashed, and the digests that were ``missing`` or ``corrupt``; ``files``
    maps each of those digests to the paths (relative to ``path``; ``""`` for a versioned
    file itself) of the files that hold it, and is empty for the folder's manifest."""

    path: Path
    hash: str
    objects: int = 0
    size: int = 0
    missing: tuple[str, ...] = ()
    corrupt: tuple[str, ...] = ()
    files: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt)


def verify(
    path: str | os.PathLike[str] | None = None,
    *,
    rev: str | None = None,
    workspace: WorkspaceLike = None,
    jobs: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[VerifyResult]:
    """Hash every cache object of the version at ``path`` (or of every pointer file), at git
    revision ``rev`` or as the pointer files are now. With ``rev``, a versioned path that
    revision has no pointer file for is skipped and named to ``warn``, as by ``checkout``.

    >>> [r.ok for r in loopml.data.verify()]     # [True, …]; see .missing and .corrupt
    """
    near = Path(path) if path is not None else None
    with DataRepo.open(workspace, near=near, jobs=jobs) as repo:
        targets = repo.targets([os.fspath(path)] if path is not None else None)
        pointers = load_pointers(repo, targets, rev, path, warn)
        return [verify_in(repo, target, pointer) for target, pointer in pointers.items()]


def verify_in(repo: DataRepo, target: Path, pointer: Pointer) -> VerifyResult:
    base = VerifyResult(target, pointer.hash)
    manifests = [pointer.hash] if pointer.kind == "folder" else []
    if manifests:  # the manifest first: without it the version's files are unknown
        missing, corrupt = repo.cache.verify(manifests, 1, deep=True)
        if missing or corrupt:
            return replace(base, objects=1, missing=tuple(missing), corrupt=tuple(corrupt))
    files = version_files(repo, pointer, str(pointer_path(target)))
    sizes = dict(files.values()) if files is not None else {}
    missing, corrupt = repo.cache.verify(sizes, repo.jobs, deep=True)
    bad = set(missing) | set(corrupt)
    held: dict[str, list[str]] = {}
    for rel, (digest, _) in sorted((files or {}).items()):
        if digest in bad:
            held.setdefault(digest, []).append(rel)
    return replace(
        base,
        objects=len(sizes) + len(manifests),
        size=sum(sizes.values()),
        missing=tuple(missing),
        corrupt=tuple(corrupt),
        files={d: tuple(rels) for d, rels in held.items()},
    )
