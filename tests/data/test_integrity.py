"""``loopml data verify`` (:mod:`loopml.data.integrity`): every object hashed again, bit rot
found, and pull repairs it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import loopml.data
from loopml.cli.data import data
from loopml.exceptions import CorruptBlob
from loopml.store.blobs import hash_file

FILES: dict[str, bytes | int] = {"a.bin": 5000, "sub/b.bin": 7000, "sub/c": b"c"}


@pytest.fixture
def versioned(ws: Path, make_tree: Callable[..., Path]) -> Path:
    make_tree(ws / "data", FILES)
    loopml.data.add("data")
    return ws / "data"


def object_of(ws: Path, file: Path) -> Path:
    digest = hash_file(file)
    return ws / ".loopml/blobs" / digest[:2] / digest[2:]


def rot(obj: Path) -> None:
    """Flip a byte in place and put the stat back as it was: what bit rot looks like to
    anything that trusts the stat (same inode, size and mtime)."""
    st = obj.stat()
    os.chmod(obj, 0o644)
    with obj.open("r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))
    os.utime(obj, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(obj, 0o444)


def test_an_intact_version(ws: Path, versioned: Path) -> None:
    (r,) = loopml.data.verify("data")
    assert r.ok and r.objects == 4 and r.size == 12001  # 3 files + the manifest
    assert r.hash == loopml.data.status("data")[0].hash


def test_bit_rot_behind_the_stat_is_found_and_pulled_back(
    ws: Path, versioned: Path, tmp_path: Path
) -> None:
    loopml.data.add_remote("backup", str(tmp_path / "remote"), default=True)
    loopml.data.push()
    obj = object_of(ws, versioned / "a.bin")
    rot(obj)
    assert loopml.data.status("data")[0].clean, "status trusts the unchanged stat"
    (r,) = loopml.data.verify("data")
    assert not r.ok and r.corrupt == (obj.parent.name + obj.name,) and r.missing == ()
    # The corrupt object's stat is forgotten: a checkout now hashes it and refuses it ...
    shutil.rmtree(versioned)
    with pytest.raises(CorruptBlob):
        loopml.data.checkout("data", link="copy")
    # ... and a pull replaces it with the remote's verified copy.
    loopml.data.pull("data")
    assert loopml.data.verify("data")[0].ok
    assert (versioned / "a.bin").read_bytes()[:1] != b""
    assert hash_file(versioned / "a.bin") == obj.parent.name + obj.name


def test_missing_objects_and_a_missing_manifest(ws: Path, versioned: Path) -> None:
    obj = object_of(ws, versioned / "sub/b.bin")
    obj.unlink()
    (r,) = loopml.data.verify("data")
    assert r.missing == (obj.parent.name + obj.name,) and r.corrupt == ()
    manifest = loopml.data.status("data")[0].hash
    (ws / ".loopml/blobs" / manifest[:2] / manifest[2:]).unlink()
    (r,) = loopml.data.verify("data")
    assert r.missing == (manifest,) and r.objects == 1


def test_cli_reports_and_exits_1(ws: Path, versioned: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(data, ["verify"], catch_exceptions=False)
    assert ok.exit_code == 0 and "data: 4 objects, 12.0 kB: all intact" in ok.output
    obj = object_of(ws, versioned / "a.bin")
    rot(obj)
    bad = runner.invoke(data, ["verify", "data"], catch_exceptions=False)
    assert bad.exit_code == 1
    assert "1 corrupt, 0 missing of 4 objects" in bad.output
    assert f"  corrupt: data/a.bin ({obj.parent.name + obj.name[:10]}…)\n" in bad.output
    assert "loopml data pull data" in bad.output
    as_json = runner.invoke(data, ["verify", "--json"], catch_exceptions=False)
    assert as_json.exit_code == 1
    (row,) = json.loads(as_json.stdout)
    assert row["ok"] is False and row["corrupt"] == [obj.parent.name + obj.name]
    assert row["path"] == "data" and row["files"] == {obj.parent.name + obj.name: ["a.bin"]}


def test_missing_objects_are_named_by_their_files(ws: Path, versioned: Path) -> None:
    """`verify` printed `missing: cdc7eae6…` (a hash), `checkout` "(e.g. cdc7eae6…)": both
    name the file now, the short hash after it."""
    obj = object_of(ws, versioned / "sub/b.bin")
    digest = obj.parent.name + obj.name
    obj.unlink()
    (r,) = loopml.data.verify("data")
    assert r.missing == (digest,) and r.files == {digest: ("sub/b.bin",)}
    result = CliRunner().invoke(data, ["verify"])
    assert result.exit_code == 1
    assert result.output.splitlines()[1] == f"  missing: data/sub/b.bin ({digest[:12]}…)"
    (versioned / "sub/b.bin").unlink()
    checkout = CliRunner().invoke(data, ["checkout", "data"])
    assert checkout.exit_code == 1
    assert checkout.output == (
        f"error: 1 file of data is not in the cache: data/sub/b.bin ({digest[:12]}…). Fetch it "
        "with `loopml data pull data`.\n"
    )
    manifest = loopml.data.status("data")[0].hash
    (ws / ".loopml/blobs" / manifest[:2] / manifest[2:]).unlink()
    result = CliRunner().invoke(data, ["verify"])
    assert result.output.splitlines()[1] == f"  missing: the manifest of data ({manifest[:12]}…)"


def test_a_file_version(ws: Path) -> None:
    (ws / "model.bin").write_bytes(os.urandom(100))
    loopml.data.add("model.bin")
    (r,) = loopml.data.verify("model.bin")
    assert r.ok and r.objects == 1 and r.size == 100


def test_checkout_verify_refuses_bit_rot_behind_the_stat(
    ws: Path, versioned: Path, tmp_path: Path
) -> None:
    """The issue's repro: a flipped byte with the object's stat restored. A plain checkout
    trusts the recorded stat (the README says so); `checkout --verify` hashes and refuses."""
    loopml.data.add_remote("backup", str(tmp_path / "remote"), default=True)
    loopml.data.push()
    original = (versioned / "a.bin").read_bytes()
    obj = object_of(ws, versioned / "a.bin")
    rot(obj)
    shutil.rmtree(versioned)
    runner = CliRunner()
    plain = runner.invoke(data, ["checkout", "--link", "copy", "data"], catch_exceptions=False)
    assert plain.exit_code == 0, "by design: an unchanged stat is trusted"
    checked = runner.invoke(data, ["checkout", "--verify", "data"])
    assert checked.exit_code == 1
    assert checked.output.startswith("error: 1 cache object no longer matches its BLAKE3 hash")
    assert str(obj) in checked.output and checked.output.count("\n") == 1
    # The corrupt copy in the workspace is in no version: replacing it takes --force.
    loopml.data.pull("data", force=True)
    (r,) = loopml.data.checkout("data", verify=True)
    assert r.written == 0 and r.unchanged == 3
    assert (versioned / "a.bin").read_bytes() == original


def test_checkout_verify_hashes_files_left_in_place(ws: Path, versioned: Path) -> None:
    """A workspace file whose bytes changed behind an unchanged stat is found and rewritten."""
    target = versioned / "sub/b.bin"
    original = target.read_bytes()
    # A copy of its own (a hardlink, a normal user's default, would rot the cached object
    # too: that case is the test above), with its stat recorded so checkout trusts it.
    loopml.data.unprotect(target)
    assert loopml.data.checkout("data")[0].written == 0
    rot(target)
    assert loopml.data.checkout("data")[0].written == 0, "the stat is trusted"
    obj = object_of(ws, target)
    assert not (obj.exists() and obj.stat().st_ino == target.stat().st_ino), "not a link"
    (r,) = loopml.data.checkout("data", verify=True, force=True)
    assert r.written == 1 and target.read_bytes() == original


def test_checkout_verify_of_a_file_version(ws: Path) -> None:
    (ws / "model.bin").write_bytes(os.urandom(5000))
    loopml.data.add("model.bin")
    obj = object_of(ws, ws / "model.bin")
    rot(obj)
    (ws / "model.bin").unlink()
    with pytest.raises(CorruptBlob, match="no longer matches its BLAKE3 hash"):
        loopml.data.checkout("model.bin", verify=True)
    assert not (ws / "model.bin").exists(), "nothing was written"
