"""A RAG corpus on disk: the files a source (a file, a folder or a glob) names, their
manifest (path → BLAKE3, size, mtime), and what changed between two manifests.

The manifest's content address is :func:`loopml.store.manifest.manifest_digest` — for a
folder, the same hash ``loopml data add`` gives that folder.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from loopml.data.manifest import walk_files
from loopml.exceptions import NotFound
from loopml.store.blobs import hash_file
from loopml.store.manifest import manifest_bytes, manifest_digest

#: A file whose mtime is this close to when it was hashed may change again within the
#: filesystem's timestamp granularity without its mtime moving: it is always re-hashed.
RACY_NS = 2_000_000_000
_GLOB = frozenset("*?[")


class SourceNotFound(NotFound):
    """The file, folder or glob an index is built from names no file."""


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus manifest."""

    digest: str
    size: int
    mtime_ns: int


Manifest = dict[str, CorpusFile]  # relative posix path → file


@dataclass(frozen=True)
class Changes:
    """What differs between an index's manifest and the corpus now (sorted paths)."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    deleted: tuple[str, ...]

    @property
    def stale(self) -> bool:
        return bool(self.added or self.changed or self.deleted)


def compare(built: Mapping[str, CorpusFile], now: Mapping[str, CorpusFile]) -> Changes:
    """Documents added, changed (other content) and deleted in ``now`` against ``built``.

    >>> f = lambda d: CorpusFile(d, 1, 0)
    >>> compare({"a": f("1"), "b": f("2"), "c": f("3")}, {"a": f("1"), "b": f("9"), "d": f("4")})
    Changes(added=('d',), changed=('b',), deleted=('c',))
    """
    return Changes(
        added=tuple(sorted(set(now) - set(built))),
        changed=tuple(
            sorted(p for p in built.keys() & now.keys() if built[p].digest != now[p].digest)
        ),
        deleted=tuple(sorted(set(built) - set(now))),
    )


def resolve_source(source: str | os.PathLike[str]) -> tuple[str, Path]:
    """``(absolute source, root)``: the source made absolute, and the folder its files'
    paths are relative to (a folder itself; a file's folder; a glob's folder before its
    first wildcard).

    >>> resolve_source("/srv/docs/**/*.md")
    ('/srv/docs/**/*.md', PosixPath('/srv/docs'))
    """
    text = os.fspath(source)
    absolute = os.path.abspath(os.path.expanduser(text))
    if _is_glob(absolute):
        parts = Path(absolute).parts
        fixed = next(i for i, part in enumerate(parts) if _is_glob(part))
        return absolute, Path(*parts[:fixed])
    path = Path(absolute)
    return absolute, path if not path.is_file() else path.parent


def _is_glob(text: str) -> bool:
    return any(c in _GLOB for c in text)


def list_files(source: str, root: Path) -> dict[str, tuple[str, os.stat_result]]:
    """``relative path → (path, stat)`` of every regular file ``source`` names now (none
    when it names nothing any more)."""
    found: dict[str, tuple[str, os.stat_result]] = {}
    if _is_glob(source):
        for path in glob.glob(source, recursive=True):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if os.path.isfile(path):
                found[Path(path).relative_to(root).as_posix()] = (path, st)
        return found
    folder = Path(source)
    if folder.is_file():
        return {folder.name: (str(folder), folder.stat())}
    if folder.is_dir():
        for rel, full, st in walk_files(folder):
            found[rel] = (full, st)
    return found


def scan(
    source: str,
    root: Path,
    known: Mapping[str, CorpusFile] | None = None,
    known_at_ns: int = 0,
) -> Manifest:
    """The manifest of the corpus ``source`` names now. A file whose size and mtime equal
    those in ``known`` (hashed at ``known_at_ns``) keeps its known digest, unless its
    mtime is within :data:`RACY_NS` of that moment."""
    manifest: Manifest = {}
    for rel, (path, st) in sorted(list_files(source, root).items()):
        old = (known or {}).get(rel)
        if (
            old is not None
            and old.size == st.st_size
            and old.mtime_ns == st.st_mtime_ns
            and st.st_mtime_ns < known_at_ns - RACY_NS
        ):
            manifest[rel] = old
            continue
        try:
            digest = hash_file(path)
        except FileNotFoundError:  # deleted while we looked
            continue
        manifest[rel] = CorpusFile(digest, st.st_size, st.st_mtime_ns)
    return manifest


def scan_new(source: str | os.PathLike[str], what: str) -> tuple[str, Path, Manifest]:
    """``(absolute source, root, manifest)`` of a source that must name at least one file;
    raises :class:`SourceNotFound` naming it (``what`` says whose source it is)."""
    absolute, root = resolve_source(source)
    if not _is_glob(absolute) and not os.path.exists(absolute):
        raise SourceNotFound(
            f"No file or folder {os.fspath(source)!r} ({what}): give an existing file, "
            "folder or glob (quote a glob so the shell leaves it to loopml)."
        )
    manifest = scan(absolute, root)
    if not manifest:
        kind = "glob" if _is_glob(absolute) else "folder"
        raise SourceNotFound(
            f"The {kind} {os.fspath(source)!r} ({what}) holds no file: check the path"
            + (", and that '**' is there to match in subfolders." if kind == "glob" else ".")
        )
    return absolute, root, manifest


def corpus_digest(manifest: Mapping[str, CorpusFile]) -> str:
    """The manifest's content address (BLAKE3 of ``relpath\\tdigest\\tsize`` lines)."""
    return manifest_digest([(p, f.digest, f.size) for p, f in manifest.items()])


def corpus_bytes(manifest: Mapping[str, CorpusFile]) -> bytes:
    """The bytes :func:`corpus_digest` hashes (stored as a blob under that digest)."""
    return manifest_bytes([(p, f.digest, f.size) for p, f in manifest.items()])
