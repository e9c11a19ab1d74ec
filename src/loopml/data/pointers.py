"""Pointer files: the small ``PATH.loopml`` YAML file that goes into git in place of the data.

::

    # loopml data pointer: commit this file to git; `loopml data checkout` restores `data`.
    kind: folder
    hash: 9f2c…            # BLAKE3 of the file, or of the folder's manifest (= data version)
    size: 1048576000       # bytes in total
    files: 500

Reading is strict: a pointer edited into something ``loopml data add`` could not have written
raises :class:`InvalidPointer` naming the file and the field, never a half-understood version.
This module is the one definition of the format: :func:`parse_pointer` reads it (from the
workspace, from git or for ``log_input``), :meth:`Pointer.render` writes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any, Literal, NamedTuple

from loopml.data.errors import DataNotFound, InvalidPointer
from loopml.wording import clause, shown

POINTER_SUFFIX = ".loopml"
KINDS = ("file", "folder")
Kind = Literal["file", "folder"]

_HEX = frozenset("0123456789abcdef")
_VALUE = frozenset("0123456789abcdefghijklmnopqrstuvwxyz")
# Folders never searched for pointer files (besides hidden ones: .git, .loopml, .venv, …):
# environments and caches that can hold many files and never hold versioned data.
_SKIP_DIRS = frozenset({"node_modules", "__pycache__", "venv", "site-packages"})


class Pointer(NamedTuple):
    """What a pointer file records: the data version of one file or folder."""

    kind: Kind
    hash: str
    size: int
    files: int

    def render(self, target_name: str) -> str:
        return (
            "# loopml data pointer: commit this file to git; "
            f"`loopml data checkout` restores `{target_name}`.\n"
            f"kind: {self.kind}\nhash: {self.hash}\nsize: {self.size}\nfiles: {self.files}\n"
        )


def pointer_path(target: Path) -> Path:
    """``data`` → ``data.loopml`` (next to it)."""
    return target.with_name(target.name + POINTER_SUFFIX)


def target_path(pointer: Path) -> Path:
    """``data.loopml`` → ``data``."""
    return pointer.with_name(pointer.name[: -len(POINTER_SUFFIX)])


def is_pointer(path: PurePath) -> bool:
    """Whether ``path`` names a pointer file (``data.loopml``; a bare ``.loopml`` is not one)."""
    return path.name.endswith(POINTER_SUFFIX) and len(path.name) > len(POINTER_SUFFIX)


def read_pointer(pointer: Path) -> Pointer:
    """Read and validate a pointer file; :class:`DataNotFound` when there is none."""
    try:
        data = pointer.read_bytes()
    except FileNotFoundError as exc:
        target = target_path(pointer)
        raise DataNotFound(
            f"{target} is not versioned: there is no pointer file {pointer}. "
            f"Version it with `loopml data add {target}`."
        ) from exc
    except IsADirectoryError as exc:
        raise InvalidPointer(_bad(str(pointer), "it is a folder, not a file")) from exc
    return parse_pointer(data, str(pointer))


def parse_pointer(text: str | bytes, source: str) -> Pointer:
    """Parse a pointer file's text (bytes are decoded as UTF-8); ``source`` names the file
    in error messages."""
    if isinstance(text, bytes):
        try:
            text = text.decode()  # UTF-8, strictly, whatever the locale
        except UnicodeDecodeError as exc:
            why = f"it is not a UTF-8 text file ({exc.reason} at byte {exc.start})"
            raise InvalidPointer(_bad(source, why)) from exc
    fields = _fast_fields(text)
    if fields is None:
        fields = _yaml_fields(text, source)
    return _validate(fields, source)


def _fast_fields(text: str) -> dict[str, Any] | None:
    # The exact shape we write, parsed without importing YAML (the status command's start-up
    # matters); anything else goes through the YAML parser.
    fields: dict[str, Any] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        # Not mutated: rpartition reads the same (an equivalent mutant), as a line with two
        # ": " fails either way, with a space in the value or in the key.
        key, sep, value = line.partition(": ")  # pragma: no mutate
        if not (sep and key.isidentifier() and value and _VALUE.issuperset(value)) or key in fields:
            return None
        fields[key] = int(value) if key in ("size", "files") and value.isdigit() else value
    return fields


def _yaml_fields(text: str, source: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidPointer(_bad(source, f"it is not valid YAML ({_yaml_problem(exc)})")) from exc
    if data is None:  # an empty document (`---`, `null`): reported as the fields it lacks
        return {}
    if not isinstance(data, dict):
        raise InvalidPointer(_bad(source, f"it holds a {type(data).__name__}, not a mapping"))
    return data


def _yaml_problem(exc: Exception) -> str:
    """YAML's multi-line error as one clause: ``expected the node content, but found '<stream
    end>' at line 2, column 1``."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def _validate(fields: dict[str, Any], source: str) -> Pointer:
    missing = [k for k in ("kind", "hash", "size", "files") if k not in fields]
    if missing:
        fields_word = "field" if len(missing) == 1 else "fields"
        raise InvalidPointer(_bad(source, f"it has no {', '.join(missing)} {fields_word}"))
    kind, digest, size, files = fields["kind"], fields["hash"], fields["size"], fields["files"]
    if kind not in KINDS:
        raise InvalidPointer(_bad(source, f"kind must be 'file' or 'folder', got {shown(kind)}"))
    if not isinstance(digest, str) or len(digest) != 64 or not _HEX.issuperset(digest):
        raise InvalidPointer(
            _bad(source, f"hash must be 64 lowercase hex characters (BLAKE3), got {shown(digest)}")
        )
    for name, value in (("size", size), ("files", files)):
        if type(value) is not int or value < 0:
            raise InvalidPointer(
                _bad(source, f"{name} must be a whole number >= 0, got {shown(value)}")
            )
    if kind == "file" and files != 1:
        raise InvalidPointer(_bad(source, f"a file pointer has files: 1, got {shown(files)}"))
    return Pointer(kind, digest, size, files)


def _bad(source: str, why: str) -> str:
    return (
        f"{source} is not a valid loopml pointer file: {clause(why)}. Restore it from git "
        f"(`git checkout -- {source}`) or version the data again with `loopml data add`."
    )


def write_pointer(pointer: Path, value: Pointer) -> None:
    """Write the pointer file atomically (temp file + rename); unchanged content is kept."""
    data = value.render(target_path(pointer).name).encode()  # UTF-8, whatever the locale
    try:
        if pointer.read_bytes() == data:
            return
    except OSError:
        pass
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, pointer)
    finally:
        tmp.unlink(missing_ok=True)


def find_pointers(root: Path) -> Iterator[Path]:
    """Every pointer file under ``root``, not descending into versioned folders, hidden
    folders (``.git``, ``.loopml``, ``.venv``, …), environments or linked folders.

    In name order, a folder's own pointer files before its subfolders': ``a.loopml``,
    ``z.loopml``, ``sub/b.loopml``. A missing or unreadable ``root`` has none."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        names = {e.name for e in entries}
        subfolders = []
        for entry in entries:
            # Not mutated: follow_symlinks=None (falsy) reads the same as False.
            if entry.is_dir(follow_symlinks=False):  # pragma: no mutate
                if (
                    entry.name not in _SKIP_DIRS
                    and not entry.name.startswith(".")
                    and entry.name + POINTER_SUFFIX not in names
                ):
                    subfolders.append(Path(entry.path))
            elif is_pointer(PurePath(entry.name)) and entry.is_file():
                yield Path(entry.path)
        stack.extend(reversed(subfolders))  # popped in name order


def tracked_ancestor(path: Path, root: Path) -> Path | None:
    """The versioned folder that contains ``path`` (below ``root``), if any."""
    for parent in path.parents:
        if parent == root or root not in parent.parents:
            return None
        if pointer_path(parent).is_file():
            return parent
    return None
