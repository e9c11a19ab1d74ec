"""``loopml.data.checkout`` and ``open``: restoring versions, verified, from the cache."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import loopml.data
from loopml.cli.data import data
from loopml.data import UncommittedChanges
from loopml.data.errors import LinkNotFollowed, NotInRevision, RevisionNotFound
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
    with pytest.raises(RevisionNotFound) as info:
        loopml.data.checkout("data", rev="nope")
    assert str(info.value) == (
        "No git revision 'nope' in this repository. List the commits with `git log --oneline` "
        "and the tags with `git tag`."
    )
    with pytest.raises(RevisionNotFound, match="No git revision 'nope'"):
        loopml.data.checkout(rev="nope")  # every path: checked once, before any
    with pytest.raises(RevisionNotFound, match="No git revision 'nope'"):
        loopml.data.verify(rev="nope")
    (ws / "later.txt").write_text("x")
    loopml.data.add("later.txt")
    with pytest.raises(NotInRevision) as missing:
        loopml.data.checkout("later.txt", rev="HEAD")
    assert str(missing.value) == (
        "later.txt has no version at git revision 'HEAD': later.txt.loopml is not in that "
        "revision. List the revisions that have it with `git log --oneline -- later.txt.loopml`."
    )


def test_rev_without_paths_leaves_what_the_revision_lacks(
    ws: Path, make_tree: Callable[..., Path], git: Callable[..., str]
) -> None:
    """The trial's repro: a pointer file added after the tag stopped `checkout --rev v1.0`
    (git: "exists on disk, but not in 'v1.0'"). The paths the tag has are restored; the
    others are left as they are, and named."""
    make_tree(ws / "data", {"a.csv": b"1\n"})
    loopml.data.add("data/a.csv")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "v1")
    git(ws, "tag", "v1.0")
    (ws / "data/a.csv").unlink()
    (ws / "data/a.csv").write_bytes(b"one\n")
    loopml.data.add("data/a.csv")
    (ws / "b.csv").write_bytes(b"2\n")
    loopml.data.add("b.csv")
    notes: list[str] = []
    (result,) = loopml.data.checkout(rev="v1.0", warn=notes.append)
    assert result.path == ws / "data/a.csv" and result.written == 1
    assert (ws / "data/a.csv").read_bytes() == b"1\n"
    assert (ws / "b.csv").read_bytes() == b"2\n"
    assert notes == [
        "git revision 'v1.0' has no pointer file for 1 versioned path, left as it is: b.csv"
    ]
    with pytest.warns(UserWarning, match="left as it is: b.csv"):
        loopml.data.checkout(rev="v1.0")
    (checked,) = loopml.data.verify(rev="v1.0", warn=notes.append)
    assert checked.ok and checked.path == ws / "data/a.csv"
    result_cli = CliRunner().invoke(data, ["checkout", "--rev", "v1.0"])
    assert result_cli.exit_code == 0, result_cli.output
    assert result_cli.stderr == (
        "note: git revision 'v1.0' has no pointer file for 1 versioned path, left as it is: b.csv\n"
    )
    named = CliRunner().invoke(data, ["checkout", "--rev", "v1.0", "b.csv"])
    assert named.exit_code == 1
    assert named.output == (
        "error: b.csv has no version at git revision 'v1.0': b.csv.loopml is not in that "
        "revision. List the revisions that have it with `git log --oneline -- b.csv.loopml`.\n"
    )
    bad = CliRunner().invoke(data, ["checkout", "--rev", "nosuchrev", "data/a.csv"])
    assert bad.exit_code == 1
    assert bad.output == (
        "error: No git revision 'nosuchrev' in this repository. List the commits with "
        "`git log --oneline` and the tags with `git tag`.\n"
    )


def test_checkout_never_writes_through_a_link(
    ws: Path, versioned: dict[str, bytes], tmp_path: Path
) -> None:
    """A versioned folder replaced by a link to a folder outside: checkout (even --force)
    refuses instead of writing into that folder."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.bin").write_bytes(b"someone else's")
    shutil.rmtree(ws / "data")
    (ws / "data").symlink_to(outside)
    with pytest.raises(LinkNotFollowed) as info:
        loopml.data.checkout("data", force=True)
    assert str(info.value) == (
        f"data is a symbolic link to {outside}; checkout never writes through a link. Remove "
        "the link (`rm data`) and check out again to restore the data in its place."
    )
    assert sorted(p.name for p in outside.iterdir()) == ["a.bin"]
    assert (outside / "a.bin").read_bytes() == b"someone else's"
    result = CliRunner().invoke(data, ["checkout", "-f"])
    assert result.exit_code == 1 and result.output.startswith("error: data is a symbolic link")
    (ws / "data").unlink()
    loopml.data.checkout("data")
    assert snapshot(ws / "data") == versioned and not (ws / "data").is_symlink()


def test_checkout_replaces_a_linked_folder_inside_the_version(
    ws: Path, make_tree: Callable[..., Path], tmp_path: Path
) -> None:
    """data/x replaced by a link to an outside folder that has y/: the restored x/y/z goes
    into a real data/x, not through the link into the outside folder."""
    make_tree(ws / "data", {"x/y/z": b"ours", "top": b"t"})
    loopml.data.add("data")
    outside = make_tree(tmp_path / "outside", {"y/z": b"theirs"})
    shutil.rmtree(ws / "data/x")
    (ws / "data/x").symlink_to(outside)
    loopml.data.checkout("data", force=True)
    assert (outside / "y/z").read_bytes() == b"theirs"
    assert not (ws / "data/x").is_symlink()
    assert snapshot(ws / "data") == {"x/y/z": b"ours", "top": b"t"}


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
