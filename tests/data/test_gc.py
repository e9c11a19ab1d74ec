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


@pytest.mark.slow
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


def _replace(path: Path, content: bytes) -> None:
    """Rewrite a versioned file as an editor would (it may be a read-only link)."""
    path.unlink()
    path.write_bytes(content)


def _blob(ws: Path, digest: str) -> Path:
    return ws / ".loopml/blobs" / digest[:2] / digest[2:]


def test_gc_keeps_the_version_committed_at_head(
    ws: Path, make_tree: Callable[..., Path], git: Callable[..., str]
) -> None:
    """The issue's repro: add, commit the pointer, change and re-add without committing,
    `gc --grace 0 --force`, then `checkout --rev HEAD` must still work."""
    from click.testing import CliRunner

    from loopml.cli.data import data

    make_tree(ws / "data", {"a.csv": b"committed", "b.csv": b"same"})
    committed = loopml.data.add("data")
    git(ws, "add", "data.loopml", ".gitignore", "loopml.toml")
    git(ws, "commit", "-qm", "v1")
    old_file = hash_file(ws / "data/a.csv")
    _replace(ws / "data/a.csv", b"uncommitted")
    loopml.data.add("data")
    result = CliRunner().invoke(data, ["gc", "--grace", "0", "--force"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Nothing to remove" in result.output
    assert _blob(ws, old_file).is_file() and _blob(ws, committed.hash).is_file()
    result = CliRunner().invoke(data, ["checkout", "--rev", "HEAD", "--force", "data"])
    assert result.exit_code == 0, result.output
    assert (ws / "data/a.csv").read_bytes() == b"committed"


def test_branches_and_tags_are_kept_workspace_only_opts_out(
    ws: Path, make_tree: Callable[..., Path], git: Callable[..., str]
) -> None:
    make_tree(ws / "data", {"a": b"on a branch"})
    on_branch = loopml.data.add("data")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "branch version")
    git(ws, "branch", "experiment")
    _replace(ws / "data/a", b"tagged")
    tagged = loopml.data.add("data")
    git(ws, "commit", "-qam", "tagged version")
    git(ws, "tag", "-a", "v1", "-m", "release")  # annotated: peeled to its commit
    _replace(ws / "data/a", b"at head")
    loopml.data.add("data")
    git(ws, "commit", "-qam", "head version")

    result = loopml.data.gc(grace_s=0)
    assert result.removed == ()
    assert result.git is not None and result.git.refs == {"HEAD": 1, "branch": 2, "tag": 1}
    # Two old versions, each a manifest and one file, kept for git only.
    assert result.kept_git == 4 and result.kept_workspace == 2
    assert {on_branch.hash, tagged.hash} <= {p.hash for _, p in result.git.pointers}

    only = loopml.data.gc(grace_s=0, workspace_only=True)
    assert set(only.removed) >= {on_branch.hash, tagged.hash} and len(only.removed) == 4
    git(ws, "branch", "-D", "experiment")
    git(ws, "tag", "-d", "v1")
    assert set(loopml.data.gc(grace_s=0).removed) >= {on_branch.hash, tagged.hash}


def test_all_commits_keeps_versions_no_ref_points_at(
    ws: Path, make_tree: Callable[..., Path], git: Callable[..., str]
) -> None:
    make_tree(ws / "data", {"a": 100, "sub/b": 100})
    first = loopml.data.add("data")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "first")
    _replace(ws / "data/a", b"second")
    loopml.data.add("data")
    git(ws, "commit", "-qam", "second")

    tips = loopml.data.gc(grace_s=0)  # HEAD and main only: the first commit's version goes
    assert first.hash in tips.removed and len(tips.removed) == 2
    every = loopml.data.gc(grace_s=0, all_commits=True)
    assert every.removed == () and every.git is not None and every.git.commits == 2
    assert loopml.data.gc(force=True, grace_s=0, all_commits=True).removed == ()
    loopml.data.checkout("data", rev="HEAD~1", force=True)
    assert (ws / "data/sub/b").stat().st_size == 100


def test_gc_without_git_reads_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_tree: Callable[..., Path]
) -> None:
    from loopml.config import write_default_config

    root = tmp_path / "plain"
    write_default_config(root)
    monkeypatch.chdir(root)
    make_tree(root / "data", {"a": 10})
    loopml.data.add("data")
    result = loopml.data.gc(grace_s=0)
    assert result.removed == () and result.kept_workspace == 2
    assert result.notes == ("not a git repository, so no git revision was read",)


def test_dry_run_says_what_it_would_delete_and_why(
    ws: Path, make_tree: Callable[..., Path], git: Callable[..., str]
) -> None:
    from click.testing import CliRunner

    from loopml.cli.data import data

    make_tree(ws / "data", {"a": 1000})
    loopml.data.add("data")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "one")
    stale = hash_file(ws / "data/a")
    _replace(ws / "data/a", b"x")
    loopml.data.add("data")
    git(ws, "commit", "-qam", "two")
    result = CliRunner().invoke(data, ["gc", "--grace", "0"], catch_exceptions=False)
    lines = result.output.splitlines()
    assert f"would remove {stale} (1.0 kB)" in lines
    assert any(
        line.startswith("Would remove 2 objects (")
        and "referenced by no pointer file in the workspace, in git at HEAD and 1 branch "
        "(1 commit), or the metadata database."
        in line
        for line in lines
    ), result.output
    assert "Kept 2 objects: 2 for the workspace's pointer files, 0 only for git's" in result.output
    both = CliRunner().invoke(data, ["gc", "--workspace-only", "--all-commits"])
    assert both.exit_code == 1 and both.output.startswith("error: --workspace-only and")


@pytest.mark.slow
def test_git_pointers_are_read_in_one_batch(
    ws: Path, make_tree: Callable[..., Path], git: Callable[..., str]
) -> None:
    """300 pointer files in a commit: every one is read (through one cat-file batch)."""
    from loopml.data.git import pointers_in_git

    for i in range(300):
        (ws / f"f{i:03d}").write_bytes(f"file {i}".encode())
    for i in range(300):
        loopml.data.add(f"f{i:03d}")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "many")
    found = pointers_in_git(ws)
    assert len(found.pointers) == 300 and found.commits == 1 and not found.unreadable
    assert len(pointers_in_git(ws, all_commits=True).pointers) == 300


def test_a_workspace_in_a_subfolder_reads_only_its_own_pointers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_tree: Callable[..., Path],
    git: Callable[..., str],
) -> None:
    from loopml.config import write_default_config

    repo = tmp_path / "mono"
    git(tmp_path, "init", "-q", str(repo))
    for name in ("one", "two"):
        write_default_config(repo / name)
        make_tree(repo / name / "data", {"a": name.encode()})
        loopml.data.add(repo / name / "data", workspace=repo / name)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "two workspaces")
    monkeypatch.chdir(repo / "one")
    result = loopml.data.gc(grace_s=0, workspace=repo / "one")
    assert result.git is not None and [p for p, _ in result.git.pointers] == ["data.loopml"]
    assert result.notes == () and result.removed == ()
    every = loopml.data.gc(grace_s=0, all_commits=True, workspace=repo / "one")
    assert every.git is not None and len(every.git.pointers) == 1 and every.notes == ()
