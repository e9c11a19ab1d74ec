"""``loopml.data.checkout`` and ``open``: restoring versions, verified, from the cache."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

import loopml.data
from loopml.data import DataNotFound, UncommittedChanges
from loopml.exceptions import BlobNotFound, CorruptBlob, InvalidConfig
from loopml.store.blobs import hash_file

WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture
def versioned(ws: Path, make_tree: Callable[..., Path]) -> dict[str, bytes]:
    make_tree(ws / "data", {"a.bin": 5000, "sub/b.bin": 7000, "sub/deep/c": b"c"})
    loopml.data.add("data")
    return snapshot(ws / "data")


HARDLINKS = '[data]\nlink = ["reflink", "hardlink", "copy"]'


def test_checkout_after_delete_links_read_only(
    ws: Path, versioned: dict[str, bytes], set_config: Callable[[str], None]
) -> None:
    set_config(HARDLINKS)
    shutil.rmtree(ws / "data")
    (result,) = loopml.data.checkout("data")
    assert snapshot(ws / "data") == versioned
    assert result.written == 3 and result.strategies == {"hardlink": 3}
    for p in (ws / "data").rglob("*"):
        if p.is_file():
            assert p.stat().st_nlink == 2 and not p.stat().st_mode & WRITE_BITS
    (s,) = loopml.data.status("data")
    assert s.clean and s.hashed == 0, "checkout records what it wrote in the stat index"


def test_copy_strategy_from_config(
    ws: Path, versioned: dict[str, bytes], set_config: Callable[[str], None]
) -> None:
    set_config('[data]\nlink = ["copy"]')
    shutil.rmtree(ws / "data")
    (result,) = loopml.data.checkout("data")
    assert result.strategies == {"copy": 3}
    assert snapshot(ws / "data") == versioned
    assert (ws / "data/a.bin").stat().st_nlink == 1


def test_bad_link_config(
    ws: Path, versioned: dict[str, bytes], set_config: Callable[[str], None]
) -> None:
    set_config('[data]\nlink = ["symlink"]')
    with pytest.raises(InvalidConfig, match="unknown link strategy 'symlink'; choose from"):
        loopml.data.checkout("data")


def test_checkout_restores_changes_and_removes_extras(
    ws: Path, versioned: dict[str, bytes]
) -> None:
    (ws / "data/a.bin").unlink()
    (ws / "data/extra").mkdir()
    (ws / "data/extra/new.txt").write_text("x")
    loopml.data.add("data")  # the edited tree is a version of its own now...
    loopml.data.checkout("data", rev=None)  # ...so checkout keeps it
    assert (ws / "data/extra/new.txt").exists()


def test_refuses_to_discard_unversioned_changes(ws: Path, versioned: dict[str, bytes]) -> None:
    shutil.rmtree(ws / "data")
    loopml.data.checkout("data")
    os.chmod(ws / "data/sub", 0o755)
    (ws / "data/new.txt").write_text("precious")
    (ws / "data/a.bin").unlink()
    (ws / "data/a.bin").write_bytes(b"edited")
    with pytest.raises(UncommittedChanges, match="2 file"):
        loopml.data.checkout("data")
    assert (ws / "data/new.txt").read_text() == "precious"
    loopml.data.checkout("data", force=True)
    assert snapshot(ws / "data") == versioned
    assert not (ws / "data/new.txt").exists()


def test_rev_reads_the_pointer_from_git(
    ws: Path, versioned: dict[str, bytes], git: Callable[..., str]
) -> None:
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "v1")
    loopml.data.unprotect("data")
    (ws / "data/a.bin").write_bytes(b"version two")
    (ws / "data/sub/deep/c").unlink()
    v2 = loopml.data.add("data")
    git(ws, "commit", "-qam", "v2")
    (result,) = loopml.data.checkout("data", rev="HEAD~1")
    assert snapshot(ws / "data") == versioned
    assert result.written == 2
    (s,) = loopml.data.status("data")
    assert s.modified == ("a.bin",) and s.added == ("sub/deep/c",)
    loopml.data.checkout("data")
    assert loopml.data.status("data")[0].clean
    assert v2.hash in (ws / "data.loopml").read_text()


def test_rev_errors(ws: Path, versioned: dict[str, bytes], git: Callable[..., str]) -> None:
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "v1")
    with pytest.raises(DataNotFound, match="at git revision 'nope'") as info:
        loopml.data.checkout("data", rev="nope")
    assert ".." not in str(info.value), "one full stop after git's message"
    (ws / "later.txt").write_text("x")
    loopml.data.add("later.txt")
    with pytest.raises(DataNotFound, match="later.txt.loopml at git revision 'HEAD'"):
        loopml.data.checkout("later.txt", rev="HEAD")


def test_corrupted_cache_object_is_never_served(ws: Path, versioned: dict[str, bytes]) -> None:
    digest = hash_file(ws / "data/a.bin")
    obj = ws / ".loopml/blobs" / digest[:2] / digest[2:]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"\0" * obj.stat().st_size)  # same size, wrong bytes
    shutil.rmtree(ws / "data")
    with pytest.raises(CorruptBlob, match="no longer matches its BLAKE3 hash") as info:
        loopml.data.checkout("data")
    assert str(obj) in str(info.value)
    assert not (ws / "data").exists(), "nothing was written"
    with pytest.raises(CorruptBlob):
        loopml.data.open("data")


def test_copy_checkout_rehashes_an_object_whose_stat_changed(
    ws: Path, versioned: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy is not hashed as it is written: the object was verified first, by its recorded
    # stat or by hashing it. Here the bytes changed, and so did the stat: hashed, refused.
    import loopml.data.cache as cache

    digest = hash_file(ws / "data/a.bin")
    obj = ws / ".loopml/blobs" / digest[:2] / digest[2:]
    data = bytearray(obj.read_bytes())
    data[0] ^= 0xFF
    os.chmod(obj, 0o644)
    obj.write_bytes(bytes(data))
    hashed: list[str] = []
    real = cache.hash_path
    monkeypatch.setattr(cache, "hash_path", lambda p, *a: hashed.append(p) or real(p, *a))
    shutil.rmtree(ws / "data")
    with pytest.raises(CorruptBlob):
        loopml.data.checkout("data", link="copy")
    assert hashed == [str(obj)], "only the changed object is hashed"
    assert not (ws / "data/a.bin").exists()


def test_missing_objects_point_to_pull(ws: Path, versioned: dict[str, bytes]) -> None:
    digest = hash_file(ws / "data/a.bin")
    (ws / ".loopml/blobs" / digest[:2] / digest[2:]).unlink()
    shutil.rmtree(ws / "data")
    with pytest.raises(BlobNotFound, match="loopml data pull data"):
        loopml.data.checkout("data")


def test_hand_edited_hash_points_to_pull(ws: Path, versioned: dict[str, bytes]) -> None:
    pointer = ws / "data.loopml"
    text = pointer.read_text()
    pointer.write_text(text.replace(text.split("hash: ")[1][:64], "f" * 64))
    with pytest.raises(BlobNotFound, match="is not in the cache"):
        loopml.data.checkout("data")


def test_file_version(ws: Path) -> None:
    (ws / "model.bin").write_bytes(b"v1")
    loopml.data.add("model.bin")
    (ws / "model.bin").unlink()
    loopml.data.checkout("model.bin")
    assert (ws / "model.bin").read_bytes() == b"v1"


def test_open_file_and_folder_versions(
    ws: Path, versioned: dict[str, bytes], git: Callable[..., str]
) -> None:
    (ws / "labels.csv").write_bytes(b"id,label\n1,0\n")
    loopml.data.add("labels.csv")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "v1")
    (ws / "labels.csv").unlink()  # saved anew, as editors do; the old bytes stay cached
    (ws / "labels.csv").write_bytes(b"id,label\n1,1\n")
    loopml.data.add("labels.csv")
    with loopml.data.open("labels.csv", rev="HEAD") as fh:
        assert fh.read() == b"id,label\n1,0\n"
    with loopml.data.open("labels.csv") as fh:
        assert fh.read() == b"id,label\n1,1\n"
    assert loopml.data.open("data") == ws / "data"  # the working copy matches
    shutil.rmtree(ws / "data")
    folder = loopml.data.open("data", rev="HEAD")
    assert isinstance(folder, Path) and folder.parent == ws / ".loopml/checkouts"
    assert snapshot(folder) == versioned
    assert loopml.data.open("data") == folder


def test_in_place_write_through_a_link_is_caught(
    ws: Path, versioned: dict[str, bytes], set_config: Callable[[str], None]
) -> None:
    # Read-only stops users but not root: rewriting a linked file in place edits the cached
    # object too. Status sees the change; the damaged version is refused, never served.
    set_config(HARDLINKS)
    shutil.rmtree(ws / "data")
    loopml.data.checkout("data")  # hardlinks into the cache
    target = ws / "data/a.bin"
    os.chmod(target, 0o644)
    target.write_bytes(b"edited in place")
    (s,) = loopml.data.status("data")
    assert s.modified == ("a.bin",)
    with pytest.raises(CorruptBlob):
        loopml.data.checkout("data", force=True)
