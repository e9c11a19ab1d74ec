"""Pointer files: the one format, what add writes, what a hand edit breaks, where they are
found, and the .gitignore entry."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from loopml.data.errors import DataNotFound, InvalidPointer
from loopml.data.git import ignore_in_git, pointer_at_rev, pointers_in_git
from loopml.data.pointers import (
    Pointer,
    find_pointers,
    is_pointer,
    parse_pointer,
    pointer_path,
    read_pointer,
    target_path,
    tracked_ancestor,
    write_pointer,
)
from loopml.exceptions import InvalidInput
from loopml.tracking.inputs import dataset_ref

DIGEST = "ab" * 32
DIGITS = ("0123456789" * 7)[:64]  # a valid hash that YAML would read as a number
HEX_64 = "hash must be 64 lowercase hex characters (BLAKE3)"
ADVICE = "Restore it from git (`git checkout -- data.loopml`) or version the data again"


def _text(kind: str = "folder", digest: str = DIGEST, size: str = "3", files: str = "1") -> str:
    return f"kind: {kind}\nhash: {digest}\nsize: {size}\nfiles: {files}\n"


# --- names -------------------------------------------------------------------------------


def test_pointer_and_target_paths_are_inverse() -> None:
    assert pointer_path(Path("a/data")) == Path("a/data.loopml")
    assert target_path(Path("a/data.loopml")) == Path("a/data")
    assert target_path(pointer_path(Path("x/raw.csv"))) == Path("x/raw.csv")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("data.loopml", True),
        ("a/b/raw.csv.loopml", True),
        (".loopml", False),  # the workspace's state folder, never a pointer
        ("data.loopml.bak", False),
        ("data", False),
        ("loopml", False),
    ],
)
def test_is_pointer(name: str, expected: bool) -> None:
    assert is_pointer(PurePosixPath(name)) is expected


# --- the format ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pointer",
    [
        Pointer("folder", DIGEST, 1234, 5),
        Pointer("file", DIGITS, 7, 1),
        Pointer("folder", DIGEST, 0, 0),  # an empty folder
    ],
)
def test_render_round_trips(pointer: Pointer) -> None:
    assert parse_pointer(pointer.render("data"), "data.loopml") == pointer
    assert parse_pointer(pointer.render("data").encode(), "data.loopml") == pointer


def test_render_is_the_documented_shape() -> None:
    assert Pointer("folder", DIGEST, 1048576000, 500).render("raw") == (
        "# loopml data pointer: commit this file to git; "
        "`loopml data checkout` restores `raw`.\n"
        f"kind: folder\nhash: {DIGEST}\nsize: 1048576000\nfiles: 500\n"
    )


def test_the_written_shape_is_read_without_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """What add writes (comments and blank lines included) is read without the YAML parser,
    which `loopml data status` would otherwise import at start-up."""

    def no_yaml(text: str) -> object:
        raise AssertionError(f"YAML parsed {text!r}")

    monkeypatch.setattr(yaml, "safe_load", no_yaml)
    pointer = Pointer("folder", DIGITS, 10, 2)
    text = "# a comment\n\n" + pointer.render("data") + "\n# another\n"
    assert parse_pointer(text, "data.loopml") == pointer


def test_yaml_spellings_are_accepted() -> None:
    text = f"# edited\nhash: '{DIGEST}'\nkind: \"file\"\nsize: 10   # bytes\nfiles: 1\nextra: [1]\n"
    assert parse_pointer(text, "x.loopml") == Pointer("file", DIGEST, 10, 1)


def test_windows_line_endings_are_accepted() -> None:
    text = Pointer("file", DIGEST, 3, 1).render("data").replace("\n", "\r\n")
    assert parse_pointer(text, "x.loopml") == Pointer("file", DIGEST, 3, 1)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            "kind: folder\nhash: [unclosed\n",
            "it is not valid YAML (expected ',' or ']', but got '<stream end>' at line 3, column 1)",
        ),
        (
            "kind: file\nhash: a\x00b\n",
            "it is not valid YAML (unacceptable character #x0000: special characters are not "
            "allowed)",
        ),
        ("- a\n- b\n", "it holds a list, not a mapping"),
        ("just words\n", "it holds a str, not a mapping"),
        ("", "it has no kind, hash, size, files fields"),
        ("# only a comment\n", "it has no kind, hash, size, files fields"),
        ("---\n", "it has no kind, hash, size, files fields"),
        (f"kind: folder\nhash: {DIGEST}\nsize: 3\n", "it has no files field"),
        (f"kind: folder\nhash: {DIGEST}\n", "it has no size, files fields"),
        (_text(digest="abc"), "hash must be 64 lowercase hex characters (BLAKE3), got 'abc'"),
        (_text(digest=DIGEST.upper()), f"{HEX_64}, got '{DIGEST.upper()}'"),
        (_text(digest=DIGEST + "a"), f"{HEX_64}, got '{DIGEST}a'"),
        (_text(digest="g" * 64), f"{HEX_64}, got '{'g' * 64}'"),
        (_text(digest="[1, 2]"), "hash must be 64 lowercase hex characters (BLAKE3), got [1, 2]"),
        (_text(kind="dir"), "kind must be 'file' or 'folder', got 'dir'"),
        (_text(kind="[file]"), "kind must be 'file' or 'folder', got ['file']"),
        (_text(size="-3"), "size must be a whole number >= 0, got -3"),
        (_text(size="3.5"), "size must be a whole number >= 0, got 3.5"),
        (_text(size="True"), "size must be a whole number >= 0, got True"),
        (_text(size="'3'"), "size must be a whole number >= 0, got '3'"),
        (_text(files="-1"), "files must be a whole number >= 0, got -1"),
        (_text(files="many"), "files must be a whole number >= 0, got 'many'"),
        (_text(kind="file", files="2"), "a file pointer has files: 1, got 2"),
        (_text(kind="file", files="0"), "a file pointer has files: 1, got 0"),
    ],
)
def test_bad_pointers_name_the_file_and_the_problem(text: str, why: str) -> None:
    with pytest.raises(InvalidPointer) as info:
        parse_pointer(text, "data.loopml")
    assert str(info.value) == (
        f"data.loopml is not a valid loopml pointer file: {why}. {ADVICE} with `loopml data add`."
    )
    assert isinstance(info.value, InvalidInput)


def test_a_huge_value_is_not_echoed_whole() -> None:
    with pytest.raises(InvalidPointer, match=r"\(100000 characters\)") as info:
        parse_pointer(_text(kind="x" * 100_000), "data.loopml")
    assert len(str(info.value)) < 500


# --- files on disk -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pointer", [Pointer("folder", DIGEST, 12, 3), Pointer("file", DIGITS, 4, 1)]
)
def test_write_then_read_round_trips(tmp_path: Path, pointer: Pointer) -> None:
    path = tmp_path / "données.csv.loopml"  # the comment names the data: UTF-8 in any locale
    write_pointer(path, pointer)
    assert path.read_bytes() == pointer.render("données.csv").encode("utf-8")
    assert read_pointer(path) == pointer
    assert os.listdir(tmp_path) == ["données.csv.loopml"]  # no temp file left behind


def test_write_replaces_another_version(tmp_path: Path) -> None:
    path = tmp_path / "data.loopml"
    write_pointer(path, Pointer("folder", DIGEST, 12, 3))
    write_pointer(path, Pointer("folder", "cd" * 32, 13, 4))
    assert read_pointer(path) == Pointer("folder", "cd" * 32, 13, 4)
    assert os.listdir(tmp_path) == ["data.loopml"]


def test_write_keeps_an_unchanged_file(tmp_path: Path) -> None:
    """Rewriting the same version leaves the file alone (its inode and mtime), so git and
    the stat index see no change."""
    path = tmp_path / "data.loopml"
    write_pointer(path, Pointer("folder", DIGEST, 12, 3))
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = path.stat()
    write_pointer(path, Pointer("folder", DIGEST, 12, 3))
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, 1_000_000_000)


def test_write_replaces_a_corrupted_file(tmp_path: Path) -> None:
    path = tmp_path / "data.loopml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    write_pointer(path, Pointer("file", DIGEST, 1, 1))
    assert read_pointer(path) == Pointer("file", DIGEST, 1, 1)
    assert os.listdir(tmp_path) == ["data.loopml"]


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "data.loopml").mkdir()  # os.replace cannot put a file over a folder
    with pytest.raises(OSError):
        write_pointer(tmp_path / "data.loopml", Pointer("file", DIGEST, 1, 1))
    assert os.listdir(tmp_path) == ["data.loopml"]


def test_missing_pointer_says_how_to_version_the_data(tmp_path: Path) -> None:
    target = tmp_path / "raw"
    with pytest.raises(DataNotFound) as info:
        read_pointer(pointer_path(target))
    assert str(info.value) == (
        f"{target} is not versioned: there is no pointer file {target}.loopml. "
        f"Version it with `loopml data add {target}`."
    )


def test_binary_pointer_file(tmp_path: Path) -> None:
    pointer = tmp_path / "data.loopml"
    pointer.write_bytes(b"kind: \xff\xfe\x00garbage")
    with pytest.raises(InvalidPointer) as info:
        read_pointer(pointer)
    assert str(info.value).startswith(
        f"{pointer} is not a valid loopml pointer file: it is not a UTF-8 text file "
        "(invalid start byte at byte 6). Restore it from git"
    )


def test_a_folder_is_not_a_pointer_file(tmp_path: Path) -> None:
    (tmp_path / "data.loopml").mkdir()
    with pytest.raises(InvalidPointer, match=r"data\.loopml is not a valid .*: it is a folder"):
        read_pointer(tmp_path / "data.loopml")


def test_log_input_reads_pointers_with_the_same_parser(tmp_path: Path) -> None:
    write_pointer(tmp_path / "raw.loopml", Pointer("folder", DIGEST, 12, 3))
    ref = dataset_ref(tmp_path / "raw")  # the data itself is not checked out
    assert (ref.name, ref.digest, ref.size, ref.file_count) == ("raw", DIGEST, 12, 3)
    assert ref.source == str(tmp_path / "raw")
    (tmp_path / "bad.loopml").write_text(f"hash: {DIGEST}\n")  # add never wrote this
    with pytest.raises(InvalidPointer, match=r"bad\.loopml is not a valid .*no kind, size, files"):
        dataset_ref(tmp_path / "bad.loopml")


# --- finding pointer files -----------------------------------------------------------------


def _touch(root: Path, *paths: str) -> None:
    for rel in paths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")


def test_find_pointers_walks_subfolders_in_name_order(tmp_path: Path) -> None:
    _touch(tmp_path, "z.loopml", "a.loopml", "b/c/d.loopml", "b/a.loopml", "k/x.loopml", "m.csv")
    assert [p.relative_to(tmp_path).as_posix() for p in find_pointers(tmp_path)] == [
        "a.loopml",
        "z.loopml",
        "b/a.loopml",
        "b/c/d.loopml",
        "k/x.loopml",
    ]


@pytest.mark.parametrize(
    "folder",
    [".git", ".loopml", ".venv", ".hidden", "node_modules", "__pycache__", "venv", "site-packages"],
)
def test_find_pointers_skips_state_and_environment_folders(tmp_path: Path, folder: str) -> None:
    _touch(tmp_path, f"{folder}/inner.loopml", f"{folder}/deep/inner.loopml", "kept.loopml")
    assert list(find_pointers(tmp_path)) == [tmp_path / "kept.loopml"]


def test_find_pointers_does_not_descend_into_versioned_folders(tmp_path: Path) -> None:
    _touch(tmp_path, "data/inner.loopml", "data.loopml", "other/inner.loopml")
    assert list(find_pointers(tmp_path)) == [
        tmp_path / "data.loopml",
        tmp_path / "other/inner.loopml",
    ]


def test_find_pointers_ignores_what_is_not_a_pointer_file(tmp_path: Path) -> None:
    _touch(tmp_path, ".loopml", "folder.loopml/inner.loopml", "data.loopml.bak")
    # a folder named like a pointer is searched, not returned
    assert list(find_pointers(tmp_path)) == [tmp_path / "folder.loopml/inner.loopml"]


def test_find_pointers_does_not_follow_linked_folders(tmp_path: Path) -> None:
    _touch(tmp_path, "real/a.loopml")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert list(find_pointers(tmp_path)) == [tmp_path / "real/a.loopml"]


def test_find_pointers_goes_on_past_a_folder_deleted_while_walking(tmp_path: Path) -> None:
    _touch(tmp_path, "a.loopml", "b/x.loopml", "c/y.loopml")
    found = find_pointers(tmp_path)
    assert next(found) == tmp_path / "a.loopml"  # b/ and c/ are listed, not yet searched
    (tmp_path / "b/x.loopml").unlink()
    (tmp_path / "b").rmdir()
    assert list(found) == [tmp_path / "c/y.loopml"]


def test_find_pointers_under_a_missing_root_or_a_file(tmp_path: Path) -> None:
    _touch(tmp_path, "file.txt")
    assert list(find_pointers(tmp_path / "missing")) == []
    assert list(find_pointers(tmp_path / "file.txt")) == []


def test_tracked_ancestor(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _touch(root, "data.loopml", "data/a/b.csv", "plain/c.csv")
    _touch(tmp_path, "ws.loopml")  # the workspace folder itself versioned from outside: ignored
    assert tracked_ancestor(root / "data/a/b.csv", root) == root / "data"
    assert tracked_ancestor(root / "data/new.csv", root) == root / "data"
    assert tracked_ancestor(root / "plain/c.csv", root) is None
    assert tracked_ancestor(root / "top.csv", root) is None
    _touch(tmp_path, "outside.loopml", "outside/x.csv")
    assert tracked_ancestor(tmp_path / "outside/x.csv", root) is None


# --- pointer files in git ------------------------------------------------------------------


def _git(root: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env=env)


def test_pointers_in_git_use_the_same_parser(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    write_pointer(tmp_path / "good.loopml", Pointer("folder", DIGEST, 12, 3))
    (tmp_path / "binary.loopml").write_bytes(b"\xff\xfe")
    (tmp_path / "edited.loopml").write_text("kind: folder\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "pointers")
    found = pointers_in_git(tmp_path)
    assert found.pointers == (("good.loopml", Pointer("folder", DIGEST, 12, 3)),)
    assert found.unreadable == ("binary.loopml", "edited.loopml")
    assert pointer_at_rev(tmp_path / "good.loopml", "HEAD") == Pointer("folder", DIGEST, 12, 3)
    with pytest.raises(InvalidPointer, match=r"HEAD:.*binary\.loopml .*not a UTF-8 text file"):
        pointer_at_rev(tmp_path / "binary.loopml", "HEAD")


# --- .gitignore ----------------------------------------------------------------------------


def test_gitignore_entry_is_added_once(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.pyc")  # no trailing newline
    for _ in range(2):
        ignore_in_git(tmp_path / "data")
    assert (tmp_path / ".gitignore").read_text() == "*.pyc\n/data\n"


def test_gitignore_escapes_glob_characters(tmp_path: Path) -> None:
    ignore_in_git(tmp_path / "weird[1]*.csv")
    assert (tmp_path / ".gitignore").read_text() == "/weird\\[1\\]\\*.csv\n"
