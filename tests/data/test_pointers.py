"""Pointer files: what add writes, what a hand edit breaks, and the .gitignore entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.data.errors import InvalidPointer
from loopml.data.git import ignore_in_git
from loopml.data.pointers import POINTER_SUFFIX, Pointer, parse_pointer, read_pointer
from loopml.exceptions import InvalidInput
from loopml.tracking import inputs

DIGEST = "ab" * 32


def test_suffix_matches_log_input() -> None:
    assert POINTER_SUFFIX == inputs.POINTER_SUFFIX


def test_render_round_trips() -> None:
    pointer = Pointer("folder", DIGEST, 1234, 5)
    assert parse_pointer(pointer.render("data"), "data.loopml") == pointer


def test_yaml_spellings_are_accepted() -> None:
    text = f"# edited\nhash: '{DIGEST}'\nkind: \"file\"\nsize: 10   # bytes\nfiles: 1\nextra: [1]\n"
    assert parse_pointer(text, "x.loopml") == Pointer("file", DIGEST, 10, 1)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("kind: folder\nhash: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "not a mapping"),
        (f"kind: folder\nhash: {DIGEST}\nsize: 3\n", "no files field"),
        ("kind: folder\nhash: abc\nsize: 3\nfiles: 1\n", "64 lowercase hex"),
        (f"kind: folder\nhash: {DIGEST.upper()}\nsize: 3\nfiles: 1\n", "64 lowercase hex"),
        (f"kind: dir\nhash: {DIGEST}\nsize: 3\nfiles: 1\n", "kind must be"),
        (f"kind: folder\nhash: {DIGEST}\nsize: -3\nfiles: 1\n", "size must be"),
        (f"kind: folder\nhash: {DIGEST}\nsize: 3.5\nfiles: 1\n", "size must be"),
        (f"kind: file\nhash: {DIGEST}\nsize: 3\nfiles: 2\n", "files: 1"),
    ],
)
def test_bad_pointers_are_rejected(text: str, fragment: str) -> None:
    with pytest.raises(InvalidPointer, match=fragment) as info:
        parse_pointer(text, "data.loopml")
    assert "data.loopml" in str(info.value)
    assert isinstance(info.value, InvalidInput)


def test_binary_pointer_file(tmp_path: Path) -> None:
    pointer = tmp_path / "data.loopml"
    pointer.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidPointer, match="not a text file"):
        read_pointer(pointer)


def test_gitignore_entry_is_added_once(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.pyc")  # no trailing newline
    for _ in range(2):
        ignore_in_git(tmp_path / "data")
    assert (tmp_path / ".gitignore").read_text() == "*.pyc\n/data\n"


def test_gitignore_escapes_glob_characters(tmp_path: Path) -> None:
    ignore_in_git(tmp_path / "weird[1]*.csv")
    assert (tmp_path / ".gitignore").read_text() == "/weird\\[1\\]\\*.csv\n"
