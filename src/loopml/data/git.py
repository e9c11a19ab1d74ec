"""What data versioning asks of git: ignore the data, and read a pointer file from history."""

from __future__ import annotations

import os
import re
from pathlib import Path

from loopml.data.errors import DataNotFound
from loopml.data.pointers import Pointer, parse_pointer
from loopml.exceptions import InvalidInput

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\!#])")


def ignore_in_git(target: Path) -> Path:
    """Add ``/name`` to the ``.gitignore`` beside ``target`` (and its pointer); idempotent."""
    gitignore = target.parent / ".gitignore"
    name = target.name.rstrip(" ")
    entry = "/" + _GLOB_SPECIAL.sub(r"\\\1", name)
    try:
        text = gitignore.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    lines = text.splitlines()
    if entry in lines or f"{entry}/" in lines:
        return gitignore
    if text and not text.endswith("\n"):
        text += "\n"
    tmp = gitignore.with_name(f".gitignore.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{text}{entry}\n", encoding="utf-8")
        os.replace(tmp, gitignore)
    finally:
        tmp.unlink(missing_ok=True)
    return gitignore


def pointer_at_rev(pointer: Path, rev: str) -> Pointer:
    """The pointer file as it was in git revision ``rev`` (``git show REV:./path``)."""
    if not rev or rev.startswith("-"):
        raise InvalidInput(f"Not a git revision: {rev!r}")
    import subprocess

    spec = f"{rev}:./{pointer.name}"
    try:
        done = subprocess.run(
            ["git", "show", spec],
            cwd=pointer.parent,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise InvalidInput("--rev needs git, which is not installed or not on PATH.") from exc
    except NotADirectoryError as exc:
        raise DataNotFound(f"{pointer.parent} is not a folder.") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        why = message[-1].rstrip(".") if message else f"git exited with {done.returncode}"
        raise DataNotFound(
            f"Cannot read {pointer.name} at git revision {rev!r}: {why}. "
            f"List the revisions that have it with `git log --oneline -- {pointer}`."
        )
    return parse_pointer(done.stdout.decode("utf-8", errors="replace"), f"{rev}:{pointer}")
