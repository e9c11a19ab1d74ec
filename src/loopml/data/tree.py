"""The working tree of one versioned path as it is now: each file's digest, hashing only the
files whose stat changed since they were last hashed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from loopml.data.cache import hash_path
from loopml.data.index import Row, Stamp, TreeSnapshot, digest_if_unchanged, is_racy, stamp
from loopml.data.manifest import FILE, WalkedFile, walk_files
from loopml.data.parallel import parallel_map
from loopml.data.pointers import Pointer
from loopml.data.repo import DataRepo

__all__ = ["FILE", "Tree", "make_snapshot", "scan", "stats_digest", "unchanged_folder"]


class Tree:
    """``rel → (digest, size)`` for the files at a data path now (``{}`` when it is absent)."""

    def __init__(self, kind: Literal["file", "folder"] | None, seen_ns: int = 0) -> None:
        self.kind = kind
        self.files: dict[str, tuple[str, int]] = {}
        self.stats: dict[str, os.stat_result] = {}  # in walk order
        self.hashed = 0
        self.seen_ns = seen_ns  # when the stats were taken

    def snapshot(self, version: str) -> TreeSnapshot | None:
        """This folder's snapshot as a match of ``version`` (see :func:`make_snapshot`)."""
        return make_snapshot(self.stats, self.seen_ns, version) if self.kind == "folder" else None


def make_snapshot(
    stats: dict[str, os.stat_result], seen_ns: int, version: str
) -> TreeSnapshot | None:
    """The snapshot of a folder whose files (``rel → stat``, in walk order, taken at
    ``seen_ns``) hold ``version``; None when a file is too recent for its stat to vouch for
    its bytes (racily clean)."""
    if any(is_racy(st, seen_ns) for st in stats.values()):
        return None
    size = sum(st.st_size for st in stats.values())
    return TreeSnapshot(stats_digest(stats.items()), version, len(stats), size)


def stats_digest(stats: Iterable[tuple[str, os.stat_result]]) -> str:
    """One digest of the (path, inode, size, mtime_ns) of files, in walk order."""
    import blake3

    text = "".join([f"{rel}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\n" for rel, st in stats])
    return blake3.blake3(text.encode()).hexdigest()


def unchanged_folder(repo: DataRepo, target: Path, pointer: Pointer) -> bool | list[WalkedFile]:
    """True when the folder's snapshot says it still holds ``pointer``'s version: one walk
    and a stat per file, nothing read. Otherwise what the walk found (for :func:`scan`), or
    False when there was no snapshot to compare with (nothing walked)."""
    snap = repo.index.snapshot(repo.key(target) + "/")
    if snap is None or snap[1:] != (pointer.hash, pointer.files, pointer.size):
        return False
    walked = walk_files(target)
    if stats_digest((rel, st) for rel, _, st in walked) == snap.stats:
        return True
    return walked


def scan(
    repo: DataRepo, target: Path, walked: list[WalkedFile] | None = None, deep: bool = False
) -> Tree:
    """Digest every file at ``target`` through the stat index (records what it hashes).
    ``walked``: the folder's files, when the caller has just walked it; ``deep``: trust no
    recorded stat, hash every file."""
    seen_ns = time.time_ns()
    if target.is_dir():
        tree = Tree("folder", seen_ns)
        prefix = repo.key(target) + "/"
        if walked is None:
            walked = walk_files(target)
        known = {} if deep else repo.index.load(prefix)
        to_hash = _match_known(walked, known, prefix, tree)
    elif target.is_file():
        tree = Tree("file", seen_ns)
        prefix = repo.key(target)
        st = target.stat()
        tree.stats[FILE] = st
        row = None if deep else repo.index.load(prefix).get(prefix)
        digest = digest_if_unchanged(row, st)
        if digest is not None:
            tree.files[FILE] = (digest, st.st_size)
        to_hash = [] if digest is not None else [(FILE, os.fspath(target), st)]
    else:
        return Tree(None, seen_ns)
    files = tree.files
    threads = repo.threads(sum(st.st_size for _, _, st in to_hash), len(to_hash))
    digests = parallel_map(lambda item: hash_path(item[1], item[2].st_size), to_hash, threads)
    fresh: list[tuple[str, Stamp, str]] = []
    for (rel, _, st), digest in zip(to_hash, digests, strict=True):
        files[rel] = (digest, st.st_size)
        if not is_racy(st, seen_ns):
            fresh.append((prefix + rel, stamp(st), digest))
    repo.index.record(fresh)
    tree.hashed = len(to_hash)
    return tree


def _match_known(
    walked: list[WalkedFile], known: dict[str, Row], prefix: str, tree: Tree
) -> list[WalkedFile]:
    """Fill ``tree`` with the files whose stat the index knows; return the others.

    This runs once per file on every status, so the comparison of
    :func:`~loopml.data.index.digest_if_unchanged` is inlined.
    """
    files, stats = tree.files, tree.stats
    get = known.get
    to_hash: list[WalkedFile] = []
    for item in walked:
        rel, _, st = item
        stats[rel] = st
        row = get(prefix + rel)
        if (
            row is not None
            and row[1] == st.st_ino
            and row[2] == st.st_size
            and row[3] == st.st_mtime_ns
        ):
            files[rel] = (row[4], st.st_size)
        else:
            to_hash.append(item)
    return to_hash
