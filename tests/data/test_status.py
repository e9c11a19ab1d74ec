"""``loopml.data.status``: what changed, hashing only files whose stat changed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import loopml.data
from loopml.data import DataNotFound, InvalidPointer
from loopml.data.repo import DataRepo


@pytest.fixture
def versioned(ws: Path, make_tree: Callable[..., Path]) -> Path:
    make_tree(ws / "data", {f"part-{i:02}.bin": 2000 for i in range(30)} | {"sub/x.txt": b"x"})
    loopml.data.add("data")
    return ws / "data"


def test_clean_tree_is_not_rehashed(versioned: Path) -> None:
    (s,) = loopml.data.status("data")
    assert s.clean and s.hashed == 0 and s.files == 31


def test_one_changed_file_hashes_one_file(versioned: Path, age: Callable[[Path], None]) -> None:
    target = versioned / "part-07.bin"
    target.unlink()  # a new file of the same size (writing in place would edit the cache)
    target.write_bytes(os.urandom(2000))
    age(target)
    (s,) = loopml.data.status("data")
    assert s.modified == ("part-07.bin",) and not s.added and not s.deleted
    assert s.hashed == 1
    (again,) = loopml.data.status("data")
    assert again.hashed == 0 and again.modified == ("part-07.bin",)


def test_added_modified_deleted(versioned: Path) -> None:
    (versioned / "sub/x.txt").unlink()
    (versioned / "sub/x.txt").write_text("changed")
    (versioned / "sub/new.txt").write_text("new")
    (versioned / "part-00.bin").unlink()
    (s,) = loopml.data.status(versioned)  # an absolute path works too
    assert s.modified == ("sub/x.txt",)
    assert s.added == ("sub/new.txt",)
    assert s.deleted == ("part-00.bin",)
    assert not s.clean


def test_touch_without_change_is_clean(versioned: Path) -> None:
    os.utime(versioned / "part-03.bin")
    (s,) = loopml.data.status("data")
    assert s.clean and s.hashed == 1


def test_status_of_everything_and_by_pointer(ws: Path, versioned: Path) -> None:
    (ws / "notes.txt").write_text("n")
    loopml.data.add("notes.txt")
    assert [s.path.name for s in loopml.data.status()] == ["data", "notes.txt"]
    assert [s.path.name for s in loopml.data.status("notes.txt.loopml")] == ["notes.txt"]
    (ws / "notes.txt").unlink()
    (s,) = loopml.data.status("notes.txt")
    assert s.deleted == ("",)


def test_deleted_folder(versioned: Path) -> None:
    import shutil

    shutil.rmtree(versioned)
    (s,) = loopml.data.status("data")
    assert len(s.deleted) == 31


def test_unversioned_path(ws: Path) -> None:
    (ws / "loose").mkdir()
    with pytest.raises(DataNotFound, match="loopml data add"):
        loopml.data.status("loose")


def test_hand_edited_size_is_caught(ws: Path, versioned: Path) -> None:
    pointer = ws / "data.loopml"
    pointer.write_text(pointer.read_text().replace("files: 31", "files: 30"))
    with pytest.raises(InvalidPointer, match="does not match the version it names"):
        loopml.data.status("data")


def test_corrupted_pointer(ws: Path, versioned: Path) -> None:
    (ws / "data.loopml").write_text("kind: folder\nhash: [oops\n")
    with pytest.raises(InvalidPointer, match="not valid YAML"):
        loopml.data.status("data")


def test_unknown_hash_without_manifest(ws: Path, versioned: Path) -> None:
    pointer = ws / "data.loopml"
    text = pointer.read_text()
    old = text.split("hash: ")[1][:64]
    pointer.write_text(text.replace(old, "0" * 63 + "1"))
    (s,) = loopml.data.status("data")
    assert not s.clean and s.note is not None and "manifest is not in the cache" in s.note


def test_a_clean_folder_is_confirmed_by_its_snapshot(
    ws: Path, versioned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `add` recorded the snapshot, and so does a status that finds the folder clean.
    from loopml.data.index import StatIndex

    loads: list[str] = []
    real = StatIndex.load
    monkeypatch.setattr(StatIndex, "load", lambda self, key: loads.append(key) or real(self, key))
    for _ in range(2):
        (s,) = loopml.data.status("data")
        assert s.clean and s.files == 31 and s.hashed == 0
    assert loads == [], "no per-file lookups: one walk, one digest"
    with DataRepo.open(None, near=ws) as repo:
        key = repo.key(versioned) + "/"
        snap = repo.index.snapshot(key)
        assert snap is not None
        repo.index.record_snapshot(key, snap._replace(stats="0" * 64))
    (s,) = loopml.data.status("data")  # a digest that doesn't match: the full comparison
    assert s.clean and loads == ["data/"]
    (s,) = loopml.data.status("data")  # ... which recorded the snapshot again
    assert s.clean and loads == ["data/"]


@pytest.mark.parametrize("change", ["modify", "add", "delete", "rename"])
def test_any_change_misses_the_snapshot(
    versioned: Path, age: Callable[[Path], None], change: str
) -> None:
    loopml.data.status("data")
    part = versioned / "part-01.bin"
    if change == "modify":
        part.unlink()
        part.write_bytes(os.urandom(2000))
        age(part)
    elif change == "add":
        (versioned / "sub/new.bin").write_bytes(b"new")
        age(versioned / "sub/new.bin")
    elif change == "delete":
        part.unlink()
    else:
        part.rename(versioned / "part-99.bin")  # same inode, size and mtime, another name
    (s,) = loopml.data.status("data")
    expected = {
        "modify": ((), ("part-01.bin",), ()),
        "add": (("sub/new.bin",), (), ()),
        "delete": ((), (), ("part-01.bin",)),
        "rename": (("part-99.bin",), (), ("part-01.bin",)),
    }[change]
    assert (s.added, s.modified, s.deleted) == expected


def test_recently_written_files_get_no_snapshot(ws: Path) -> None:
    (ws / "fresh").mkdir()
    (ws / "fresh/a.txt").write_text("just written")  # within the racy window
    loopml.data.add("fresh")
    assert loopml.data.status("fresh")[0].clean
    with DataRepo.open(None, near=ws) as repo:
        assert repo.index.snapshot(repo.key(ws / "fresh") + "/") is None


def test_hand_edited_size_is_caught_after_a_snapshot(ws: Path, versioned: Path) -> None:
    assert loopml.data.status("data")[0].clean
    pointer = ws / "data.loopml"
    pointer.write_text(pointer.read_text().replace("files: 31", "files: 30"))
    with pytest.raises(InvalidPointer, match="does not match the version it names"):
        loopml.data.status("data")
