"""What data versioning asks of git: ignore the data, read a pointer file from history, and
list the pointer files of many revisions at once (for ``gc``)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from loopml.data.errors import DataNotFound, InvalidPointer, NotInRevision, RevisionNotFound
from loopml.data.pointers import (
    POINTER_SUFFIX,
    Pointer,
    is_pointer,
    parse_pointer,
    target_path,
)
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
    """The pointer file as it was in git revision ``rev`` (``git show REV:./path``).

    :class:`RevisionNotFound` when ``rev`` names no commit, :class:`NotInRevision` when the
    revision has no such pointer file."""
    if not rev or rev.startswith("-"):
        raise InvalidInput(f"Not a git revision: {rev!r}")
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
        check_rev(pointer.parent, rev)
        shown = _shown(pointer)
        if _git_run(pointer.parent, "cat-file", "-e", spec).returncode != 0:
            raise NotInRevision(
                f"{_shown(target_path(pointer))} has no version at git revision {rev!r}: "
                f"{shown} is not in that revision. List the revisions that have it with "
                f"`git log --oneline -- {shown}`."
            )
        message = done.stderr.decode(errors="replace").strip().splitlines()
        why = message[-1].rstrip(".") if message else f"git exited with {done.returncode}"
        raise DataNotFound(
            f"Cannot read {pointer.name} at git revision {rev!r}: {why}. "
            f"List the revisions that have it with `git log --oneline -- {shown}`."
        )
    return parse_pointer(done.stdout, f"{rev}:{pointer}")


def check_rev(folder: Path, rev: str) -> None:
    """Raise :class:`RevisionNotFound` unless ``rev`` names a commit (or tree) of the git
    repository that holds ``folder``."""
    if not rev or rev.startswith("-"):
        raise InvalidInput(f"Not a git revision: {rev!r}")
    try:
        found = _git_run(folder, "rev-parse", "--verify", "--quiet", f"{rev}^{{tree}}")
    except FileNotFoundError as exc:
        raise InvalidInput("--rev needs git, which is not installed or not on PATH.") from exc
    except NotADirectoryError as exc:
        raise DataNotFound(f"{folder} is not a folder.") from exc
    if found.returncode == 0:
        return
    if _git_run(folder, "rev-parse", "--git-dir").returncode != 0:
        raise RevisionNotFound(
            f"No git revision {rev!r}: {folder} is not in a git repository (--rev reads the "
            "pointer files from git history)."
        )
    raise RevisionNotFound(
        f"No git revision {rev!r} in this repository. List the commits with "
        "`git log --oneline` and the tags with `git tag`."
    )


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return os.fspath(path)


@dataclass(frozen=True)
class GitPointers:
    """The pointer files in git revisions: each distinct blob once, parsed.

    ``refs`` counts the refs read by kind (``{"HEAD": 1, "branch": 3, "tag": 2}``),
    ``commits`` the distinct commits whose trees were listed (or walked, for every commit);
    ``unreadable`` names pointer files git holds that are not valid pointers; ``note`` says
    why no revision was read (not a git repository, no git).
    """

    pointers: tuple[tuple[str, Pointer], ...] = ()
    refs: dict[str, int] = field(default_factory=dict)
    commits: int = 0
    unreadable: tuple[str, ...] = ()
    note: str | None = None
    all_commits: bool = False


_KINDS = (("refs/heads/", "branch"), ("refs/tags/", "tag"), ("refs/remotes/", "remote branch"))
_NO_BLOB = "0" * 40


def _git_run(
    root: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True, check=False)


def pointers_in_git(root: Path, *, all_commits: bool = False) -> GitPointers:
    """Every pointer file in the git revisions that can see ``root``'s data: HEAD and every
    ref's commit (branches, tags, remote branches, the stash), or with ``all_commits``
    every commit reachable from a ref or a reflog.

    A few processes whatever the number of files: one ``git ls-tree -r`` per distinct commit
    (one ``git log --raw`` for every commit), then one ``git cat-file --batch`` for all the
    pointer blobs.
    """
    try:
        refs = _git_run(
            root, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)"
        )
    except FileNotFoundError:
        return GitPointers(note="git is not installed, so no git revision was read")
    except NotADirectoryError:
        return GitPointers(note=f"{root} is not a folder")
    if refs.returncode != 0:
        return GitPointers(note="not a git repository, so no git revision was read")
    counts: dict[str, int] = {}
    tips: dict[str, None] = {}
    head = _git_run(root, "rev-parse", "-q", "--verify", "HEAD^{commit}")
    if head.returncode == 0:
        counts["HEAD"] = 1
        tips[head.stdout.decode().strip()] = None
    for line in refs.stdout.decode(errors="replace").splitlines():
        name, direct, peeled = (line.split("\0") + ["", ""])[:3]
        if name.startswith("refs/remotes/") and name.endswith("/HEAD"):
            continue  # another name of a remote branch
        kind = next((k for prefix, k in _KINDS if name.startswith(prefix)), "other ref")
        counts[kind] = counts.get(kind, 0) + 1
        tips[peeled or direct] = None
    blobs: dict[str, str] = {}  # blob id → a path it had
    if all_commits:
        commits = _git_run(root, "rev-list", "--count", "--all", "--reflog")
        walked = int(commits.stdout or 0) if commits.returncode == 0 else 0
        log = _git_run(
            root,
            "log",
            "--all",
            "--reflog",
            "--root",
            "--raw",
            "-z",
            "--no-abbrev",
            "--no-renames",
            "--diff-merges=first-parent",
            "--format=",
            "--",
            f"*{POINTER_SUFFIX}",
        )
        if log.returncode == 0:
            _blobs_from_raw(log.stdout, blobs)
        return _read_blobs(root, blobs, counts, walked, all_commits=True)
    for tip in tips:
        # Without --full-tree: only the files below `root` (another workspace's pointers in
        # the same repository name objects of another cache).
        listing = _git_run(root, "ls-tree", "-r", "-z", tip)
        if listing.returncode != 0:  # a tag of a blob, say: no tree to list
            continue
        for entry in listing.stdout.split(b"\0"):
            meta, _, path = entry.partition(b"\t")
            parts = meta.split()
            if len(parts) == 3 and parts[1] == b"blob" and parts[0] in (b"100644", b"100755"):
                name = path.decode(errors="surrogateescape")
                if _is_pointer_name(name):
                    blobs.setdefault(parts[2].decode(), name)
    return _read_blobs(root, blobs, counts, len(tips))


def _is_pointer_name(path: str) -> bool:
    return is_pointer(PurePosixPath(path))


def _blobs_from_raw(raw: bytes, blobs: dict[str, str]) -> None:
    """Blob ids of pointer files from ``git log --raw -z``: ``:old new oldid newid S\\0path\\0``."""
    tokens = raw.split(b"\0")
    i = 0
    while i < len(tokens):
        meta = tokens[i].lstrip(b"\n")
        if meta.startswith(b":") and i + 1 < len(tokens):
            parts = meta[1:].split()
            path = tokens[i + 1].decode(errors="surrogateescape")
            if (
                len(parts) >= 5
                and parts[1] in (b"100644", b"100755")
                and parts[3].decode() != _NO_BLOB
                and _is_pointer_name(path)
            ):
                blobs.setdefault(parts[3].decode(), path)
            i += 2
        else:
            i += 1


def _read_blobs(
    root: Path,
    blobs: dict[str, str],
    counts: dict[str, int],
    commits: int,
    all_commits: bool = False,
) -> GitPointers:
    if not blobs:
        return GitPointers(refs=counts, commits=commits, all_commits=all_commits)
    done = _git_run(root, "cat-file", "--batch", stdin="".join(f"{b}\n" for b in blobs).encode())
    found: list[tuple[str, Pointer]] = []
    unreadable: list[str] = []
    out, pos = done.stdout, 0
    for blob, path in blobs.items():
        end = out.find(b"\n", pos)
        if end < 0:
            break
        header = out[pos:end].split()
        pos = end + 1
        if len(header) != 3 or header[1] != b"blob":  # "<id> missing": a shallow clone
            continue
        size = int(header[2])
        text = out[pos : pos + size]
        pos += size + 1
        try:
            found.append((path, parse_pointer(text, f"{path} ({blob[:12]} in git)")))
        except InvalidPointer:
            unreadable.append(path)
    return GitPointers(
        tuple(found), counts, commits, tuple(sorted(set(unreadable))), all_commits=all_commits
    )
