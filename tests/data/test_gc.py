"""``loopml.data.gc``: unreferenced objects go, referenced data and tracked artifacts stay."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import loopml.data
from loopml.exceptions import BlobNotFound
from loopml.store.blobs import hash_file
from loopml.workspace import Workspace


def test_dry_run_then_force(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "data", {"a": 100, "b": 200})
    v1 = loopml.data.add("data")
    stale = hash_file(ws / "data/b")
    loopml.data.unprotect("data")
    (ws / "data/b").write_bytes(b"new")
    v2 = loopml.data.add("data")
    assert v1.hash != v2.hash
    dry = loopml.data.gc(grace_s=0)
    assert dry.dry_run and set(dry.removed) == {stale, v1.hash}
    assert dry.bytes == 200 + len((ws / ".loopml/blobs" / v1.hash[:2] / v1.hash[2:]).read_bytes())
    assert (ws / ".loopml/blobs" / stale[:2] / stale[2:]).exists(), "a dry run deletes nothing"
    done = loopml.data.gc(force=True, grace_s=0)
    assert set(done.removed) == {stale, v1.hash} and not done.dry_run
    assert not (ws / ".loopml/blobs" / stale[:2] / stale[2:]).exists()
    shutil.rmtree(ws / "data")
    loopml.data.checkout("data")
    assert (ws / "data/b").read_bytes() == b"new"
    assert loopml.data.gc(grace_s=0).removed == ()


def test_recent_objects_are_kept(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "data", {"a": 100})
    loopml.data.add("data")
    os.unlink(ws / "data.loopml")
    result = loopml.data.gc(force=True)  # default grace: 10 minutes
    assert result.removed == () and result.recent == 2


def test_tracked_artifacts_are_never_collected(ws: Path, make_tree: Callable[..., Path]) -> None:
    model = ws / "model.pkl"
    model.write_bytes(b"a tracked artifact, stored in the same blob folder")
    with Workspace.open(ws) as w, w.start_run(experiment="e") as run:
        run.log_artifact(model)
    digest = hash_file(model)
    assert (ws / ".loopml/blobs" / digest[:2] / digest[2:]).is_file()
    make_tree(ws / "data", {"a": 10})
    loopml.data.add("data")
    os.unlink(ws / "data.loopml")
    result = loopml.data.gc(force=True, grace_s=0)
    assert digest not in result.removed
    assert (ws / ".loopml/blobs" / digest[:2] / digest[2:]).is_file()
    assert len(result.removed) == 2  # the data's file and manifest


def test_gc_stops_when_a_manifest_is_missing(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "data", {"a": 10})
    version = loopml.data.add("data")
    os.unlink(ws / ".loopml/blobs" / version.hash[:2] / version.hash[2:])
    with pytest.raises(BlobNotFound, match="gc stopped"):
        loopml.data.gc(force=True, grace_s=0)
    assert (ws / ".loopml/blobs").exists()


def test_gc_keeps_the_files_of_registered_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LinearRegression

    ws = Workspace.init(tmp_path)
    monkeypatch.chdir(tmp_path)
    model = LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])
    ws.register_model("m", model)
    loopml.data.gc(force=True, grace_s=0)
    assert ws.load_model("models:/m/1").predict([[3.0]])[0] == pytest.approx(3.0)
    ws.close()
