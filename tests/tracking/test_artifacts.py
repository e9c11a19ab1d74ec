"""Artifacts: files and folders into the blob store, listed and downloaded with verification."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopml.exceptions import ArtifactNotFound, CorruptBlob, InvalidInput, RunNotFound
from loopml.workspace import Workspace


def test_file_and_folder_artifacts(ws: Workspace, tmp_path: Path) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(b"\x00model")
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"png-a")
    (folder / "sub" / "b.png").write_bytes(b"png-b")
    with ws.start_run(log_environment=False) as run:
        assert run.log_artifact(model) == ["model.pkl"]
        assert run.log_artifact(model, artifact_path="models") == ["models/model.pkl"]
        assert run.log_artifact(folder) == ["plots/a.png", "plots/sub/b.png"]
        run.log_text("hello", "notes/readme.txt")
        run.log_dict({"a": 1}, "config.json")
        run.log_dict({"a": 1}, "config.yaml")
    listing = {a.path: a.size for a in ws.list_artifacts(run.id)}
    assert listing == {
        "config.json": len(b'{\n  "a": 1\n}'),
        "config.yaml": len(b"a: 1\n"),
        "model.pkl": 6,
        "models/model.pkl": 6,
        "notes/readme.txt": 5,
        "plots/a.png": 5,
        "plots/sub/b.png": 5,
    }
    assert [a.path for a in ws.list_artifacts(run.id, "plots")] == [
        "plots/a.png",
        "plots/sub/b.png",
    ]

    everything = ws.download_artifacts(run.id, dst=tmp_path / "all")
    assert (everything / "plots" / "sub" / "b.png").read_bytes() == b"png-b"
    one = ws.download_artifacts(run.id, "models/model.pkl", dst=tmp_path / "one")
    assert one == tmp_path / "one" / "models" / "model.pkl" and one.read_bytes() == b"\x00model"
    plots = ws.download_artifacts(run.id, "plots", dst=tmp_path / "p")
    assert sorted(p.name for p in plots.rglob("*.png")) == ["a.png", "b.png"]


def test_same_content_is_stored_once(sqlite_ws: Workspace, tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(os.urandom(1000))
    with sqlite_ws.start_run(log_environment=False) as r1:
        r1.log_artifact(f)
    with sqlite_ws.start_run(log_environment=False) as r2:
        r2.log_artifact(f, "copy")
    digests = {a.digest for a in sqlite_ws.list_artifacts(r1.id) + sqlite_ws.list_artifacts(r2.id)}
    assert len(digests) == 1
    blob_files = [p for p in Path(sqlite_ws.settings.artifacts_url).rglob("*") if p.is_file()]
    assert sum(1 for p in blob_files if p.stat().st_size == 1000) == 1


def test_errors(ws: Workspace, tmp_path: Path) -> None:
    with ws.start_run(log_environment=False) as run:
        with pytest.raises(InvalidInput, match="no such file"):
            run.log_artifact(tmp_path / "missing")
        with pytest.raises(InvalidInput, match="must be relative"):
            run.log_text("x", "../escape.txt")
    with pytest.raises(ArtifactNotFound):
        ws.download_artifacts(run.id, "nothing", dst=tmp_path / "d")
    with pytest.raises(RunNotFound):
        ws.list_artifacts("0" * 32)


def test_corrupted_artifact_is_not_served(sqlite_ws: Workspace, tmp_path: Path) -> None:
    with sqlite_ws.start_run(log_environment=False) as run:
        run.log_text("precious", "p.txt")
    (info,) = sqlite_ws.list_artifacts(run.id)
    path = Path(sqlite_ws.blobs.path_of(info.digest))
    os.chmod(path, 0o644)
    path.write_bytes(b"evil")
    with pytest.raises(CorruptBlob):
        sqlite_ws.download_artifacts(run.id, dst=tmp_path / "out")
    assert not (tmp_path / "out" / "p.txt").exists()
