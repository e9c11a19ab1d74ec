"""`loopml runs reproduce`, end to end in a real git checkout."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from loopml.tracking import environment
from loopml.workspace import Workspace

Invoke = Callable[..., Result]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def dirty_repo(tmp_path: Path) -> Path:
    """A git checkout with one commit and an uncommitted change to train.py."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("LR = 0.1\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "train.py").write_text("LR = 0.5  # trying something\n")
    return repo


def test_reproduce_writes_requirements_and_diff_and_prints_commands(
    invoke: Invoke,
    workspace: Workspace,
    dirty_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commit = git(dirty_repo, "rev-parse", "HEAD").strip()
    # Start the run the way `python train.py --lr '0.5 x'` in the checkout would.
    monkeypatch.chdir(dirty_repo)
    monkeypatch.setattr(sys, "argv", ["train.py", "--lr", "0.5 x"])
    # The run's code is train.py (not this test file): its checkout is the code version.
    with (
        environment.code_file(dirty_repo / "train.py"),
        workspace.start_run("churn", log_environment=True) as run,
    ):
        run.log_metric("acc", 0.9)
    monkeypatch.setattr(sys, "argv", ["pytest"])

    out_dir = tmp_path / "bundle"
    result = invoke(
        "--workspace", str(workspace.root), "runs", "reproduce", run.id[:8], "-o", str(out_dir)
    )
    assert result.exit_code == 0, result.output

    requirements = (out_dir / "requirements.txt").read_text().splitlines()
    assert requirements[0].startswith(f"# Packages of loopml run {run.id}")
    assert requirements[1:] == list(environment.installed_packages())
    assert any(line.startswith("click==") for line in requirements)
    diff = (out_dir / "git.diff").read_text()
    assert "+LR = 0.5  # trying something" in diff and "-LR = 0.1" in diff

    commands = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert commands == [
        f"cd {shlex.quote(str(dirty_repo))}",
        f"git checkout {commit}",
        f"git apply {shlex.quote(str(out_dir / 'git.diff'))}",
        f"pip install -r {shlex.quote(str(out_dir / 'requirements.txt'))}",
        f"cd {shlex.quote(str(dirty_repo))} && {shlex.join([sys.executable, 'train.py', '--lr', '0.5 x'])}",
    ]
    assert f"Wrote {out_dir / 'requirements.txt'}" in result.stdout

    # The printed git commands really bring the run's code back.
    git(dirty_repo, "checkout", "--", "train.py")
    git(dirty_repo, "commit", "-q", "--allow-empty", "-m", "later work")
    subprocess.run(["bash", "-ec", "\n".join(commands[:3])], check=True, capture_output=True)
    assert (dirty_repo / "train.py").read_text() == "LR = 0.5  # trying something\n"
    assert git(dirty_repo, "rev-parse", "HEAD").strip() == commit


def test_reproduce_clean_checkout_has_no_diff(
    invoke: Invoke,
    workspace: Workspace,
    dirty_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    git(dirty_repo, "commit", "-q", "-am", "clean")
    monkeypatch.chdir(dirty_repo)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with (
        environment.code_file(dirty_repo / "train.py"),
        workspace.start_run("churn", log_environment=True) as run,
    ):
        pass
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.chdir(tmp_path)
    result = invoke("-w", str(workspace.root), "runs", "reproduce", run.id)
    assert result.exit_code == 0, result.output
    bundle = tmp_path / f"reproduce-{run.id[:8]}"  # the default --output
    assert (bundle / "requirements.txt").is_file()
    assert not (bundle / "git.diff").exists()
    assert "git apply" not in result.stdout
    assert "git checkout" in result.stdout


def test_reproduce_outside_git_notes_it(
    invoke: Invoke, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text("")
    # Whatever encloses the temporary folder, git must not look above it.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert environment.git_state(str(plain)) is None
    monkeypatch.chdir(plain)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with (
        environment.code_file(plain / "train.py"),
        workspace.start_run("churn", log_environment=True) as run,
    ):
        pass
    monkeypatch.setattr(sys, "argv", ["pytest"])
    result = invoke("-w", str(workspace.root), "runs", "reproduce", run.id, "-o", "out")
    assert result.exit_code == 0, result.output
    assert "# Note: the run was not in a git checkout" in result.stdout
    commands = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert [c.split()[0] for c in commands] == ["pip", "cd"]
    assert (plain / "out" / "requirements.txt").is_file()


def test_reproduce_without_environment_is_an_error(
    invoke: Invoke, error_lines: Callable[[Result], list[str]], make_run: Callable[..., str]
) -> None:
    run_id = make_run()
    (line,) = error_lines(invoke("runs", "reproduce", run_id))
    assert "recorded without its environment" in line
    assert not Path(f"reproduce-{run_id[:8]}").exists()
