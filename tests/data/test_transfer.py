"""push / pull against every kind of remote: a folder, memory://, and S3 (the moto server)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import loopml.data
from loopml.config import write_default_config
from loopml.exceptions import BlobNotFound, CorruptBlob, StoreUnavailable
from loopml.store.blobs import hash_file
from services import fresh_s3_bucket, s3_endpoint


@dataclass
class RemoteSpec:
    url: str
    options: dict[str, Any]

    def fs(self) -> tuple[Any, str]:
        from fsspec.core import url_to_fs

        if "://" not in self.url:
            return url_to_fs(self.url)
        return url_to_fs(self.url, **self.options)

    def object_path(self, digest: str) -> str:
        fs, root = self.fs()
        return f"{root.rstrip('/')}/{digest[:2]}/{digest[2:]}"


@pytest.fixture
def s3_remote() -> RemoteSpec:
    endpoint = s3_endpoint()
    return RemoteSpec(f"s3://{fresh_s3_bucket()}/datasets", {"endpoint_url": endpoint})


@pytest.fixture(params=["folder", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> RemoteSpec:
    if request.param == "folder":
        return RemoteSpec(str(tmp_path / "remote"), {})
    if request.param == "memory":
        return RemoteSpec(f"memory://loopml-remote-{uuid.uuid4().hex}", {})
    spec: RemoteSpec = request.getfixturevalue("s3_remote")
    return spec


def version_some_data(ws: Path, make_tree: Callable[..., Path], remote: RemoteSpec) -> Path:
    make_tree(ws / "data", {f"f{i}.bin": 3000 + i for i in range(12)} | {"big.bin": 9 << 20})
    (ws / "labels.csv").write_bytes(b"id,label\n")
    loopml.data.add("data")
    loopml.data.add("labels.csv")
    loopml.data.add_remote("origin", remote.url, options=remote.options)
    return ws


@pytest.fixture
def versioned(ws: Path, make_tree: Callable[..., Path], remote: RemoteSpec) -> Path:
    return version_some_data(ws, make_tree, remote)


def clone(ws: Path, tmp_path: Path) -> Path:
    """What `git clone` gives: loopml.toml and the pointer files, no cache, no data."""
    other = tmp_path / f"clone-{uuid.uuid4().hex[:6]}"
    write_default_config(other)
    for name in ("loopml.toml", "data.loopml", "labels.csv.loopml"):
        shutil.copy(ws / name, other / name)
    return other


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_push_then_pull_into_a_clone(versioned: Path, tmp_path: Path) -> None:
    pushed = loopml.data.push()
    assert pushed.transferred == 13 + 1 + 1  # files, the manifest, labels.csv
    assert pushed.bytes > 9 << 20 and not pushed.missing
    other = clone(versioned, tmp_path)
    pulled = loopml.data.pull(workspace=other)
    assert pulled.transferred == 15
    assert snapshot(other / "data") == snapshot(versioned / "data")
    assert (other / "labels.csv").read_bytes() == b"id,label\n"
    (s1, s2) = loopml.data.status(workspace=other)
    assert s1.clean and s2.clean
    again = loopml.data.pull(workspace=other)
    assert again.transferred == 0 and again.present == 15


def test_a_relative_remote_folder_is_relative_to_the_workspace(
    ws: Path, make_tree: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As written in loopml.toml (and committed for a team), wherever the command runs."""
    make_tree(ws / "data", {"a.bin": 100})
    loopml.data.add("data")
    loopml.data.add_remote("team", "../team-remote", default=True)
    assert 'team = "../team-remote"' in (ws / "loopml.toml").read_text()  # kept as written
    (remote,) = loopml.data.list_remotes()
    assert remote.url == str(ws.parent / "team-remote")
    monkeypatch.chdir(ws / "data")  # from a subfolder: the same place
    assert loopml.data.push().transferred == 2  # the file and the manifest
    assert len([p for p in (ws.parent / "team-remote").rglob("*") if p.is_file()]) == 2
    assert not (ws / "team-remote").exists()


def test_push_sends_only_missing_objects(versioned: Path, remote: RemoteSpec) -> None:
    loopml.data.push("data")
    again = loopml.data.push("data")
    assert (again.transferred, again.present) == (0, 14)
    digest = hash_file(versioned / "data/f3.bin")
    fs, _ = remote.fs()
    fs.rm(remote.object_path(digest))
    third = loopml.data.push("data")
    assert (third.transferred, third.present) == (1, 13)
    assert fs.exists(remote.object_path(digest))


@pytest.mark.s3
@pytest.mark.slow
def test_s3_checks_each_object_without_listing(
    ws: Path,
    make_tree: Callable[..., Path],
    s3_remote: RemoteSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    version_some_data(ws, make_tree, s3_remote)
    import s3fs
    from fsspec.asyn import sync_wrapper

    calls: list[str] = []
    real = s3fs.S3FileSystem._call_s3

    async def spy(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        return await real(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", spy)
    monkeypatch.setattr(s3fs.S3FileSystem, "call_s3", sync_wrapper(spy))
    loopml.data.push("data")
    loopml.data.push("data")
    assert not [c for c in calls if c.startswith("list")], calls
    assert calls.count("head_object") == 28


def test_pull_verifies_and_writes_nothing_corrupt(
    versioned: Path, remote: RemoteSpec, tmp_path: Path
) -> None:
    loopml.data.push()
    digest = hash_file(versioned / "data/f5.bin")
    fs, _ = remote.fs()
    path = remote.object_path(digest)
    if "://" not in remote.url:
        os.chmod(path, 0o644)
    fs.pipe_file(path, b"x" * (3000 + 5))
    other = clone(versioned, tmp_path)
    with pytest.raises(CorruptBlob, match=f"Object {digest} arrived corrupted"):
        loopml.data.pull("data", workspace=other)
    cache = other / ".loopml/blobs"
    assert not (cache / digest[:2] / digest[2:]).exists()
    assert not [p for p in cache.rglob(".tmp-*")], "no temp files left"
    assert not (other / "data").exists(), "nothing checked out"


def test_pull_replaces_a_corrupted_local_object(versioned: Path) -> None:
    loopml.data.push()
    digest = hash_file(versioned / "data/f1.bin")
    obj = versioned / ".loopml/blobs" / digest[:2] / digest[2:]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"\0" * obj.stat().st_size)
    shutil.rmtree(versioned / "data")
    with pytest.raises(CorruptBlob):
        loopml.data.checkout("data")
    pulled = loopml.data.pull("data")
    assert pulled.transferred == 1
    assert hash_file(versioned / "data/f1.bin") == digest


def test_pull_of_objects_never_pushed(versioned: Path, tmp_path: Path) -> None:
    loopml.data.push("labels.csv")
    other = clone(versioned, tmp_path)
    with pytest.raises(BlobNotFound, match="never pushed"):
        loopml.data.pull(workspace=other)
    assert not (other / "data").exists()


def test_pull_names_the_files_never_pushed(versioned: Path, tmp_path: Path) -> None:
    loopml.data.push("data")
    other = clone(versioned, tmp_path)
    digest = hash_file(versioned / "labels.csv")
    with pytest.raises(BlobNotFound) as info:
        loopml.data.pull("labels.csv", workspace=other)
    assert f": {os.path.relpath(other / 'labels.csv')} ({digest[:12]}…); never pushed" in str(
        info.value
    )


def test_push_of_objects_missing_from_the_cache_fails(
    ws: Path, make_tree: Callable[..., Path], tmp_path: Path
) -> None:
    """The trial's repro: an object deleted from the cache was "not pushed" with a warning,
    and push exited 0. It is counted apart, named by its file, and the command exits 1."""
    from click.testing import CliRunner

    from loopml.cli.data import data

    make_tree(ws / "data/raw", {"1.csv": b"1\n", "2.csv": b"2\n", "3.csv": b"3\n"})
    loopml.data.add("data/raw")
    digest = hash_file(ws / "data/raw/2.csv")
    (ws / ".loopml/blobs" / digest[:2] / digest[2:]).unlink()
    loopml.data.add_remote("team", str(tmp_path / "team-remote"), default=True)
    pushed = loopml.data.push()
    assert (pushed.transferred, pushed.present) == (3, 0), "2 files and the manifest"
    assert pushed.missing == (digest,) and pushed.missing_files == ("data/raw/2.csv",)
    assert pushed.missing_versions == (ws / "data/raw",)
    shutil.rmtree(tmp_path / "team-remote")
    result = CliRunner().invoke(data, ["push"])
    assert result.exit_code == 1
    assert result.stdout == (
        "Pushed 3 objects (223 bytes) to team; 0 already there; 1 not in the local cache.\n"
    )
    assert result.stderr == (
        f"error: 1 object could not be pushed: it is not in the local cache: data/raw/2.csv "
        f"({digest[:12]}…). Add the files again if you still have them (`loopml data add "
        "data/raw`), or pull them from a remote that has them (`loopml data pull -r NAME "
        "data/raw`), then push again; the other objects were pushed.\n"
    )
    as_json = CliRunner().invoke(data, ["push", "--json"])
    assert as_json.exit_code == 1 and as_json.stderr.startswith("error: 1 object could not")
    assert json.loads(as_json.stdout) == [
        {
            "remote": "team",
            "url": str(tmp_path / "team-remote"),
            "pushed": 0,
            "already_there": 3,
            "bytes": 0,
            "replaced": [],
            "missing": [{"object": digest, "files": "data/raw/2.csv"}],
        }
    ]
    loopml.data.add("data/raw")  # the file is still there: its object is cached again
    again = CliRunner().invoke(data, ["push"])
    assert again.exit_code == 0 and again.stderr == ""
    assert again.stdout == "Pushed 1 object (2 bytes) to team; 3 already there.\n"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.s3
@pytest.mark.slow
def test_unreachable_remote(ws: Path, make_tree: Callable[..., Path], tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    make_tree(ws / "data", {"a": 100, "b": 200})
    loopml.data.add("data")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    loopml.data.add_remote("down", "s3://bucket/x", options={"endpoint_url": endpoint})
    with pytest.raises(
        StoreUnavailable, match=r"The data remote down \(s3://bucket/x\) is unavailable"
    ):
        loopml.data.push()
    other = clone_simple(ws, tmp_path)
    with pytest.raises(StoreUnavailable, match="nothing was half-written"):
        loopml.data.pull(workspace=other)
    cache = other / ".loopml/blobs"
    assert not [p for p in cache.rglob("*") if p.is_file()], "nothing written to the cache"
    assert not (other / "data").exists()


def clone_simple(ws: Path, tmp_path: Path) -> Path:
    other = tmp_path / "clone"
    write_default_config(other)
    shutil.copy(ws / "loopml.toml", other / "loopml.toml")
    shutil.copy(ws / "data.loopml", other / "data.loopml")
    return other


def _corrupt_remote_copy(remote: RemoteSpec, digest: str) -> None:
    """Flip the first byte of the remote's copy (same size): what "already there" missed."""
    fs, _ = remote.fs()
    path = remote.object_path(digest)
    data = fs.cat_file(path)
    if not remote.url.startswith(("s3://", "memory://")):
        os.chmod(path, 0o644)
    fs.pipe_file(path, bytes([data[0] ^ 0xFF]) + data[1:])


def test_push_verify_replaces_a_corrupt_remote_copy(
    versioned: Path, remote: RemoteSpec, tmp_path: Path
) -> None:
    loopml.data.push()
    digest = hash_file(versioned / "data/f3.bin")
    _corrupt_remote_copy(remote, digest)
    plain = loopml.data.push()
    assert (plain.transferred, plain.replaced) == (0, ()), "by name only: it looks present"
    checked = loopml.data.push(verify=True)
    assert checked.replaced == (digest,)
    assert (checked.transferred, checked.present) == (1, 14)
    fs, _ = remote.fs()
    assert fs.cat_file(remote.object_path(digest)) == (versioned / "data/f3.bin").read_bytes()
    assert loopml.data.push(verify=True).replaced == ()
    other = clone(versioned, tmp_path)
    loopml.data.pull(workspace=other)
    assert snapshot(other / "data") == snapshot(versioned / "data")


def test_push_verify_on_the_command_line(versioned: Path, remote: RemoteSpec) -> None:
    from click.testing import CliRunner

    from loopml.cli.data import data

    loopml.data.push()
    digest = hash_file(versioned / "labels.csv")
    _corrupt_remote_copy(remote, digest)
    result = CliRunner().invoke(data, ["push", "--verify"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Pushed 1 object (" in result.output and "14 already there (verified)" in result.output
    assert f"Replaced 1 object whose copy on origin was corrupt: {digest}" in result.output


def test_progress_reports_every_object(versioned: Path, tmp_path: Path) -> None:
    seen: dict[str, list[dict[str, int]]] = {"push": [], "pull": []}

    def recorder(name: str) -> Callable[..., None]:
        return lambda **kw: seen[name].append(kw)

    loopml.data.push(progress=recorder("push"))
    other = clone(versioned, tmp_path)
    loopml.data.pull(workspace=other, progress=recorder("pull"))
    for name, calls in seen.items():
        totals = [c for c in calls if "total_files" in c]
        done = [c for c in calls if "files" in c]
        assert sum(c["files"] for c in done) == 15, name
        assert sum(c["total_files"] for c in totals[-1:]) == 15, name
        big = (versioned / "data/big.bin").stat().st_size
        assert sum(c["bytes"] for c in done) >= big, name
