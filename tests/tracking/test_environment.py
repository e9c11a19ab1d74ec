"""Environment capture: interpreter, packages, git state (with the diff as an artifact)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loopml.pipelines import emit_event
from loopml.pipelines.records import list_runs
from loopml.tracking import environment
from loopml.workspace import Workspace


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.slow
def test_environment_is_recorded(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "T")
    script = repo / "train.py"
    script.write_text(
        "import sys, loopml\n"
        "ws = loopml.Workspace.open(sys.argv[1])\n"
        "with ws.start_run(experiment='env') as run:\n"
        "    print(run.id)\n"
    )
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "init")
    commit = _git(repo, "rev-parse", "HEAD")
    script.write_text(script.read_text() + "# local change\n")  # dirty
    Workspace.init(tmp_path / "ws").close()
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    ws = Workspace.open(tmp_path / "ws")
    record = ws.get_run(out)
    env = record.environment
    assert env is not None
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["git"]["commit"] == commit and env["git"]["branch"] == "main"
    assert env["git"]["dirty"] is True and "diff" not in env["git"]
    assert record.tags["loopml.git.commit"] == commit
    assert record.tags["loopml.git.dirty"] == "true"
    assert record.tags["loopml.source"] == "train.py"
    assert env["cpu_count"] >= 1 and env["memory_bytes"] > 0
    diff = ws.download_artifacts(record.id, "loopml/git.diff", dst=tmp_path / "d").read_text()
    assert "+# local change" in diff
    packages = ws.blobs.get_bytes(env["packages_digest"]).decode()
    assert any(line.lower().startswith("sqlalchemy==") for line in packages.splitlines())
    ws.close()


def test_a_repository_without_commits_sets_no_empty_tags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "argv", [str(repo / "train.py")])
    state = environment.git_state(str(repo))
    assert state is not None and state["commit"] is None
    ws = Workspace.init(tmp_path / "ws")
    with environment.code_file(repo / "train.py"), ws.start_run(experiment="env") as run:
        pass
    tags = ws.get_run(run.id).tags
    assert "loopml.git.commit" not in tags and "loopml.git.branch" not in tags
    assert tags["loopml.git.dirty"] == "false" and tags["loopml.source"] == "train.py"
    assert all(tags.values()), tags
    ws.close()


def test_capture_outside_git(tmp_path: Path) -> None:
    assert environment.git_state(str(tmp_path)) is None
    env = environment.capture(str(tmp_path))
    assert env["git"] is None and env["package_count"] > 10


@pytest.mark.slow
def test_system_metrics_are_sampled(sqlite_ws: Workspace) -> None:
    import time

    with sqlite_ws.start_run(
        log_environment=False, log_system_metrics=True, system_metrics_interval=0.1
    ) as run:
        time.sleep(0.5)
    metrics = sqlite_ws.get_run(run.id).metrics
    assert {"system/cpu_percent", "system/memory_percent", "system/process_rss_mb"} <= set(metrics)
    assert metrics["system/process_rss_mb"] > 1


def test_package_list_reinstalls_editable_installs() -> None:
    lines = environment.installed_packages()
    loopml_line = next(line for line in lines if line.lower().startswith("loopml"))
    # this checkout is installed editable (pip install -e .): the line points at it
    assert loopml_line.startswith(("loopml @ file://", "loopml=="))
    assert any(line.lower().startswith("sqlalchemy==") for line in lines)


FLOW = """
from loopml.pipelines import on_event, pipeline, task

@task
def one() -> int:
    return 1

@pipeline(triggers=[on_event("retrain")])
def flow():
    return one()
"""


@pytest.fixture
def committed_repo(tmp_path: Path) -> tuple[Path, str]:
    """A git repository in tmp with a pipeline file and a training script, committed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "T")
    (repo / "flow.py").write_text(FLOW)
    (repo / "train.py").write_text(
        "import loopml\n"
        "def train(ws):\n"
        "    with ws.start_run(experiment='env') as run:\n"
        "        return run.id\n"
    )
    _git(repo, "add", "flow.py", "train.py")
    _git(repo, "commit", "-q", "-m", "init")
    return repo, _git(repo, "rev-parse", "HEAD")


def _elsewhere(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working directory outside any git checkout, and a workspace there."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    Workspace.init(other / "ws").close()
    return other, {**os.environ, "LOOPML_WORKSPACE": str(other / "ws")}


@pytest.mark.slow
def test_a_run_started_by_code_in_a_repo_records_its_commit(
    committed_repo: tuple[Path, str], tmp_path: Path
) -> None:
    """The script that starts the run is imported by a launcher outside the repository
    (as pytest or a job runner would): the repository is the code's, not argv[0]'s."""
    repo, commit = committed_repo
    other, env = _elsewhere(tmp_path)
    launcher = other / "launch.py"
    launcher.write_text(
        "import sys, loopml\n"
        f"sys.path.insert(0, {str(repo)!r})\n"
        "import train\n"
        "print(train.train(loopml.Workspace.open(sys.argv[1])))\n"
    )
    out = subprocess.run(
        [sys.executable, str(launcher), str(other / "ws")],
        capture_output=True,
        text=True,
        check=True,
        cwd=other,
        env=env,
    ).stdout.strip()
    with Workspace.open(other / "ws") as ws:
        assert ws.get_run(out).tags["loopml.git.commit"] == commit


def _pipeline_commit(ws_path: Path) -> str | None:
    with Workspace.open(ws_path) as ws:
        (record,) = list_runs(ws.db, pipeline="flow")
        tags = ws.get_run(record.tracking_run_id or "").tags
        return tags.get("loopml.git.commit")


@pytest.mark.slow
def test_loopml_pipelines_run_records_the_pipeline_repository_commit(
    committed_repo: tuple[Path, str], tmp_path: Path
) -> None:
    repo, commit = committed_repo
    other, env = _elsewhere(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "loopml.cli", "pipelines", "run", f"{repo / 'flow.py'}:flow"],
        capture_output=True,
        text=True,
        check=True,
        cwd=other,
        env=env,
    )
    assert _pipeline_commit(other / "ws") == commit


@pytest.mark.slow
def test_loopml_scheduler_run_records_the_pipeline_repository_commit(
    committed_repo: tuple[Path, str], tmp_path: Path
) -> None:
    repo, commit = committed_repo
    other, env = _elsewhere(tmp_path)
    with Workspace.open(other / "ws") as ws:
        emit_event("retrain", workspace=ws)
    result = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "scheduler", "run", f"{repo / 'flow.py'}:flow"]
        + ["--once"],
        capture_output=True,
        text=True,
        check=True,
        cwd=other,
        env=env,
    )
    assert "1 run triggered" in result.stdout, result.stdout
    assert _pipeline_commit(other / "ws") == commit
