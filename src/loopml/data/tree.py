"""The working tree of one versioned path as it is now: each file's digest, hashing only the
files whose stat changed since they were last hashed."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

from loopml.data.cache import hash_path
from loopml.data.index import Row, Stamp, digest_if_unchanged, is_racy, stamp
from loopml.data.manifest import FILE, WalkedFile, walk_folders
from loopml.data.parallel import parallel_map
from loopml.data.repo import DataRepo

__all__ = ["FILE", "Tree", "scan"]


class Tree:
    """``rel → (digest, size)`` for the files at a data path now (``{}`` when it is absent)."""

    def __init__(self, kind: Literal["file", "folder"] | None) -> None:
        self.kind = kind
        self.files: dict[str, tuple[str, int]] = {}
        self.stats: dict[str, os.stat_result] = {}
        self.hashed = 0


def scan(repo: DataRepo, target: Path) -> Tree:
    """Digest every file at ``target`` through the stat index (records what it hashes)."""
    seen_ns = time.time_ns()
    if target.is_dir():
        tree = Tree("folder")
        prefix = repo.key(target) + "/"
        to_hash = _walk_known(target, repo.index.load(prefix), prefix, tree)
    elif target.is_file():
        tree = Tree("file")
        prefix = repo.key(target)
        st = target.stat()
        tree.stats[FILE] = st
        digest = digest_if_unchanged(repo.index.load(prefix).get(prefix), st)
        if digest is not None:
            tree.files[FILE] = (digest, st.st_size)
        to_hash = [] if digest is not None else [(FILE, os.fspath(target), st)]
    else:
        return Tree(None)
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


def _walk_known(folder: Path, known: dict[str, Row], prefix: str, tree: Tree) -> list[WalkedFile]:
    """Fill ``tree`` with the files whose stat the index knows; return the others.

    One loop over the walk, as it runs once per file on every status, with the comparison of
    :func:`~loopml.data.index.digest_if_unchanged` inlined.
    """
    files, stats = tree.files, tree.stats
    get = known.get
    to_hash: list[WalkedFile] = []
    for path, rel_prefix, entries in walk_folders(folder):
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) or not entry.is_file():
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:  # deleted while we looked
                continue
            rel = rel_prefix + entry.name
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
                to_hash.append((rel, f"{path}/{entry.name}", st))
    return to_hash
