"""``loopml.data.add``: hashing into the cache, the pointer file, and bad input."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest
from click.testing import CliRunner

import loopml.data
from loopml.cli.data import data
from loopml.data import DataNotFound, DataVersion
from loopml.data.errors import LinkNotFollowed
from loopml.exceptions import InvalidInput
from loopml.store.blobs import hash_file
from loopml.store.manifest import manifest_bytes
from loopml.tracking.inputs import dataset_ref, hash_folder

TREE: dict[str, bytes | int] = {
    "a.csv": b"x,y\n1,2\n",
    "sub/b.bin": 300_000,
    "sub/deeper/c.txt": b"c",
    "empty": b"",
    "naïve name.txt": b"unicode",
}


def objects(root: Path) -> set[str]:
    blobs = root / ".loopml" / "blobs"
    return {p.parent.name + p.name for p in blobs.glob("*/*") if not p.name.startswith(".")}


def test_add_folder_writes_pointer_and_caches_every_file(
    ws: Path, make_tree: Callable[..., Path]
) -> None:
    data = make_tree(ws / "data", TREE)
    version = loopml.data.add("data")
    digest, size, count = hash_folder(data)
    assert version == DataVersion(data, digest, size, count, "folder")
    assert (ws / "data.loopml").read_text().splitlines()[1:] == [
        "kind: folder",
        f"hash: {digest}",
        f"size: {size}",
        f"files: {count}",
    ]
    file_digests = {hash_file(p) for p in data.rglob("*") if p.is_file()}
    assert objects(ws) == file_digests | {digest}
    for d in file_digests | {digest}:
        mode = (ws / ".loopml/blobs" / d[:2] / d[2:]).stat().st_mode
        assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), "objects are read-only"
    # The folder's hash is the object holding its manifest.
    entries = [
        (p.relative_to(data).as_posix(), hash_file(p), p.stat().st_size)
        for p in data.rglob("*")
        if p.is_file()
    ]
    assert (ws / ".loopml/blobs" / digest[:2] / digest[2:]).read_bytes() == manifest_bytes(entries)
    assert (ws / ".gitignore").read_text() == "/data\n"


def test_log_input_records_the_same_version(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "data", TREE)
    version = loopml.data.add("data")
    assert dataset_ref(ws / "data").digest == version.hash  # hashing the folder
    assert dataset_ref(ws / "data.loopml").digest == version.hash  # reading the pointer
    assert dataset_ref(ws / "data.loopml").file_count == version.files


def test_add_file(ws: Path) -> None:
    (ws / "model.bin").write_bytes(b"weights" * 1000)
    version = loopml.data.add(ws / "model.bin")
    assert version.kind == "file"
    assert version.hash == hash_file(ws / "model.bin") == dataset_ref(ws / "model.bin").digest
    assert version.pointer == ws / "model.bin.loopml"
    assert objects(ws) == {version.hash}


HARDLINKS = '[data]\nlink = ["reflink", "hardlink", "copy"]'


def test_add_links_read_only_when_hardlinks_are_on(
    ws: Path, make_tree: Callable[..., Path], set_config: Callable[[str], None]
) -> None:
    set_config(HARDLINKS)
    make_tree(ws / "data", {"a": 10, "b": 20})
    loopml.data.add("data")
    for name in ("a", "b"):
        st = (ws / "data" / name).stat()
        assert st.st_nlink == 2, "the file is the cache object"
        assert not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    before = (ws / "data/a").stat()
    assert loopml.data.unprotect("data") == 2
    st = (ws / "data/a").stat()
    assert st.st_nlink == 1 and st.st_mode & stat.S_IWUSR
    assert st.st_mtime_ns == before.st_mtime_ns, "the copies keep their mtime"
    (after,) = loopml.data.status("data")
    assert after.clean and after.hashed == 0, "unprotect recorded the copies' stats"


def test_add_can_keep_files_independent(
    ws: Path, make_tree: Callable[..., Path], set_config: Callable[[str], None]
) -> None:
    set_config('[data]\nlink = ["reflink", "copy"]')
    make_tree(ws / "data", {"a": 10})
    loopml.data.add("data")
    st = (ws / "data/a").stat()
    assert st.st_nlink == 1 and st.st_mode & stat.S_IWUSR


def test_readd_unchanged_hashes_nothing(
    ws: Path, make_tree: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(ws / "data", {f"f{i}": 100 for i in range(20)})
    first = loopml.data.add("data")
    calls: list[str] = []
    import loopml.data.cache as cache

    real = cache.hash_path
    monkeypatch.setattr(cache, "hash_path", lambda p, *a: calls.append(p) or real(p, *a))
    assert loopml.data.add("data") == first
    assert calls == []


@pytest.mark.parametrize("size", [0, 1, 4096, (1 << 20) + 1, (4 << 20) + 3])
def test_small_file_hashing_agrees_with_the_blob_store(tmp_path: Path, size: int) -> None:
    from loopml.data.cache import hash_path

    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    assert hash_path(str(path), size) == hash_path(str(path)) == hash_file(path)


@pytest.mark.parametrize("stated", [0, 100, 4095, 4097, 3 << 20])
def test_small_file_hashing_reads_the_whole_file_whatever_its_stated_size(
    tmp_path: Path, stated: int
) -> None:
    # The size comes from an earlier stat: the file may have grown or shrunk since.
    from loopml.data.cache import hash_path

    path = tmp_path / "f"
    path.write_bytes(os.urandom(4096))
    assert hash_path(str(path), stated) == hash_file(path)


def test_add_empty_folder(ws: Path) -> None:
    (ws / "empty").mkdir()
    version = loopml.data.add("empty")
    assert (version.files, version.size) == (0, 0)
    assert version.hash == hash_folder(ws / "empty")[0]


def test_cache_is_private_when_artifacts_are_remote(
    ws: Path, make_tree: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_ARTIFACTS_URL", "memory://loopml-elsewhere")
    make_tree(ws / "data", {"a": 10})
    version = loopml.data.add("data")
    assert (ws / ".loopml/cache" / version.hash[:2] / version.hash[2:]).is_file()


def test_missing_path(ws: Path) -> None:
    with pytest.raises(DataNotFound, match="no such file or folder"):
        loopml.data.add("nope")


def test_pointer_file_is_not_data(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "data", {"a": 1})
    loopml.data.add("data")
    with pytest.raises(InvalidInput, match="is a pointer file; add the data it points to"):
        loopml.data.add("data.loopml")


def test_outside_the_workspace(ws: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("x")
    with pytest.raises(InvalidInput, match="not inside the workspace"):
        loopml.data.add(tmp_path / "outside.txt", workspace=ws)


def test_a_link_that_leads_outside_is_refused(
    ws: Path, make_tree: Callable[..., Path], tmp_path: Path
) -> None:
    """The trial's repro: `ln -s /tmp/outside d && loopml data add d` versioned the outside
    folder (and checkout then wrote into it); `ln -s /etc e` versioned 1,068 files of /etc."""
    outside = make_tree(tmp_path / "outside", {"a.txt": b"hello"})
    (ws / "d").symlink_to(outside)
    with pytest.raises(LinkNotFollowed) as info:
        loopml.data.add("d")
    assert str(info.value) == (
        f"d is a symbolic link to {outside}, outside the workspace at {ws}; only data inside "
        f"the workspace can be versioned. Copy the data into the workspace in place of the "
        f"link (`rm d && cp -R {outside} d`)."
    )
    (ws / "f").symlink_to(outside / "a.txt")
    with pytest.raises(LinkNotFollowed, match="f is a symbolic link to .*outside the workspace"):
        loopml.data.add("f")
    with pytest.raises(LinkNotFollowed) as through:
        loopml.data.add("d/a.txt")
    assert str(through.value).startswith(
        f"d/a.txt is reached through the symbolic link {ws / 'd'} → {outside}, which leads "
        f"outside the workspace at {ws}"
    )
    assert not list(ws.glob("?*.loopml")) and objects(ws) == set()
    result = CliRunner().invoke(data, ["add", "d"])
    assert result.exit_code == 1 and result.output.startswith("error: d is a symbolic link to ")
    assert result.output.count("\n") == 1


def test_a_link_to_a_folder_inside_is_refused_a_link_to_a_file_versioned(
    ws: Path, make_tree: Callable[..., Path]
) -> None:
    # As inside a folder being added (the README): links to folders are not versioned,
    # links to files are, as files.
    make_tree(ws / "data/real", {"a": b"a"})
    (ws / "alias").symlink_to(ws / "data/real")
    with pytest.raises(LinkNotFollowed) as info:
        loopml.data.add("alias")
    assert str(info.value) == (
        "alias is a symbolic link to the folder data/real; links to folders are not versioned "
        "(a checkout would write through them). Version the folder itself: "
        "`loopml data add data/real`."
    )
    (ws / "a-link").symlink_to(ws / "data/real/a")
    version = loopml.data.add("a-link")
    assert version.kind == "file" and version.hash == hash_file(ws / "data/real/a")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            ".",
            "error: . is the workspace root ({ws}), which can't be versioned itself; version a "
            "folder or file inside it, e.g. `loopml data add data/raw`.",
        ),
        ("", "error: The path is empty: name a file or folder inside the workspace."),
        ("../", "error: {up} is not inside the workspace at {ws}; version data inside it."),
        ("data/../..", "error: {up} is not inside the workspace at {ws}; version data inside it."),
    ],
)
def test_add_names_what_is_wrong_with_the_path(
    ws: Path, make_tree: Callable[..., Path], path: str, message: str
) -> None:
    """`add .` said ". is not inside the workspace", `add ''` the same, and `add ../`
    walked the parent folder ("/tmp/d/.. contains versioned data (/tmp/d/../d/data/raw)")."""
    make_tree(ws / "data/raw", {"a": b"a"})
    loopml.data.add("data/raw")
    result = CliRunner().invoke(data, ["add", path])
    assert result.exit_code == 1
    assert result.output == message.format(ws=ws, up=ws.parent) + "\n"


def test_paths_relative_to_a_named_workspace_are_normalized(
    ws: Path, make_tree: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path / "sibling", {"x": b"x"})
    monkeypatch.chdir(tmp_path / "sibling")
    with pytest.raises(InvalidInput, match=f"^{tmp_path} is not inside the workspace at {ws};"):
        loopml.data.add("..", workspace=ws)
    with pytest.raises(InvalidInput, match="is the workspace root"):
        loopml.data.add("../project", workspace=ws)


def test_loopml_state_is_not_data(ws: Path) -> None:
    with pytest.raises(InvalidInput, match="loopml's own state"):
        loopml.data.add(".loopml")


def test_versions_do_not_nest(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "data", {"inner/a": 1, "b": 2})
    loopml.data.add("data/inner")
    with pytest.raises(InvalidInput, match="versions can't nest"):
        loopml.data.add("data")
    loopml.data.add("data/b")
    os.unlink(ws / "data/inner.loopml")
    os.unlink(ws / "data/b.loopml")
    loopml.data.add("data")
    with pytest.raises(InvalidInput, match="inside the versioned folder"):
        loopml.data.add("data/inner")


def test_unrepresentable_names(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "data", {"tab\there": 1})
    with pytest.raises(InvalidInput, match="tabs or line breaks"):
        loopml.data.add("data")
    assert not (ws / "data.loopml").exists()


def test_symlinks_follow_log_inputs_rules(ws: Path, make_tree: Callable[..., Path]) -> None:
    data = make_tree(ws / "data", {"real/a": 5})
    (data / "link-to-file").symlink_to(data / "real" / "a")
    (data / "link-to-folder").symlink_to(data / "real")
    with pytest.warns(UserWarning, match=r"skipped 1 symbolic link .*link-to-folder \(a link to"):
        version = loopml.data.add("data")
    assert version.hash == hash_folder(data)[0]
    assert version.files == 2


@pytest.mark.parametrize(("euid", "linked"), [(0, False), (1000, True)])
def test_default_links_depend_on_root(
    ws: Path,
    make_tree: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    euid: int,
    linked: bool,
) -> None:
    # Read-only files stop a user from writing through a hardlink into the cache, not root: so
    # by default root gets independent copies and everyone else read-only hardlinks.
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    make_tree(ws / "data", {"a": 10})
    loopml.data.add("data")
    assert ((ws / "data/a").stat().st_nlink == 2) is linked


def test_rewriting_an_added_file_as_root_keeps_the_version(
    ws: Path, make_tree: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    make_tree(ws / "data", {"a": 10})
    original = (ws / "data/a").read_bytes()
    loopml.data.add("data")
    (ws / "data/a").write_bytes(b"df.to_csv() over the same path")
    (result,) = loopml.data.checkout("data", force=True)
    assert (ws / "data/a").read_bytes() == original


LARGE = (4 << 20) + 5  # over SMALL_FILE: hashed, then copied by the kernel


@pytest.mark.parametrize("size", [10, 300_000, LARGE])
def test_copies_hold_the_bytes_their_names_say(
    ws: Path, make_tree: Callable[..., Path], set_config: Callable[[str], None], size: int
) -> None:
    set_config('[data]\nlink = ["copy"]')
    data = make_tree(ws / "data", {"a": size, "b": size})
    loopml.data.add("data")
    for name in ("a", "b"):
        digest = hash_file(data / name)
        obj = ws / ".loopml/blobs" / digest[:2] / digest[2:]
        assert obj.read_bytes() == (data / name).read_bytes()
        assert obj.stat().st_ino != (data / name).stat().st_ino
        assert obj.stat().st_mtime_ns == (data / name).stat().st_mtime_ns
    assert loopml.data.status("data")[0].clean


def test_a_large_file_changed_while_being_copied_is_stored_as_copied(
    ws: Path,
    make_tree: Callable[..., Path],
    set_config: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The file is rewritten between its hash and its copy: the object must be named by the
    # bytes it holds, not by the hash taken before.
    import loopml.data.cache as cache

    set_config('[data]\nlink = ["copy"]')
    data = make_tree(ws / "data", {"big": LARGE})
    real = cache.hash_path
    rewritten = os.urandom(LARGE)

    def hash_then_rewrite(path: str, size: int | None = None, progress: Any = None) -> str:
        digest = real(path, size, progress)
        if path == str(data / "big"):
            (data / "big").write_bytes(rewritten)
        return digest

    monkeypatch.setattr(cache, "hash_path", hash_then_rewrite)
    loopml.data.add("data")
    monkeypatch.setattr(cache, "hash_path", real)
    for obj in (ws / ".loopml/blobs").glob("*/*"):
        if not obj.name.startswith("."):
            assert hash_file(obj) == obj.parent.name + obj.name
    digest = hash_file(data / "big")
    assert (ws / ".loopml/blobs" / digest[:2] / digest[2:]).read_bytes() == rewritten
    assert loopml.data.status("data")[0].clean


def test_add_records_the_digest_log_input_records(ws: Path, make_tree: Callable[..., Path]) -> None:
    """One definition of a folder's digest (``loopml.store.manifest``): ``data add`` and
    ``run.log_input`` name the same folder with the same data version."""
    from loopml.store.manifest import manifest_digest
    from loopml.tracking.inputs import hash_folder

    make_tree(ws / "dätä", {"b.csv": 10, "a b/c.csv": 20, "a/b.csv": 30, "a.b": 0})
    version = loopml.data.add("dätä")
    assert version.hash == hash_folder(ws / "dätä")[0]
    d = "ab" * 32
    assert manifest_bytes([("b", d, 1), ("a", d, 0)]) == f"a\t{d}\t0\nb\t{d}\t1\n".encode()
    assert manifest_digest([]) == blake3.blake3(b"").hexdigest()


def test_add_and_checkout_report_progress(ws: Path, make_tree: Callable[..., Path]) -> None:
    """Totals first, then every file and byte: a large file's bytes as it is hashed."""
    make_tree(ws / "data", {"big": LARGE, "a": 10, "sub/b": 20})
    calls: list[dict[str, int]] = []
    loopml.data.add("data", progress=lambda **kw: calls.append(kw))
    total = LARGE + 30
    assert calls[0] == {"total_files": 3, "total_bytes": total}
    assert sum(c.get("files", 0) for c in calls) == 3
    assert sum(c.get("bytes", 0) for c in calls) == total
    shutil.rmtree(ws / "data")
    calls.clear()
    loopml.data.checkout("data", progress=lambda **kw: calls.append(kw))
    assert calls[0] == {"total_files": 3, "total_bytes": total}
    assert sum(c.get("files", 0) for c in calls) == 3
    assert sum(c.get("bytes", 0) for c in calls) == total
