"""Fixtures for data versioning: real workspaces in tmp_path, real git, real files."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loopml.config import write_default_config

AGED_NS = 3600 * 1_000_000_000


def _age(path: Path) -> None:
    """Set mtimes an hour back, so the stat index trusts the files (they are not "racy")."""
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    when = time.time_ns() - AGED_NS
    for p in paths:
        if p.is_file() or p.is_dir():
            os.utime(p, ns=(when, when))


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        },
    )
    return done.stdout


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty workspace folder (loopml.toml + .loopml/, a git repo), the current directory."""
    root = tmp_path / "project"
    write_default_config(root)
    _git(root, "init", "-q")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def make_tree() -> Callable[..., Path]:
    """``make_tree(folder, {"a.txt": b"..", "sub/b.bin": 1000})`` → the folder (aged)."""

    def make(folder: Path, files: dict[str, bytes | int]) -> Path:
        for rel, content in files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(content) if isinstance(content, int) else content)
        _age(folder)
        return folder

    return make


@pytest.fixture
def age() -> Callable[[Path], None]:
    """``age(path)``: move a file's or folder's mtimes an hour back."""
    return _age


@pytest.fixture
def git() -> Callable[..., str]:
    """``git(root, *args)``: run git there (with an identity) and return its stdout."""
    return _git


@pytest.fixture
def set_config(ws: Path) -> Callable[[str], None]:
    """``set_config('[data]\\nlink = ["copy"]')``: append TOML to the workspace's loopml.toml."""

    def append(extra: str) -> None:
        path = ws / "loopml.toml"
        path.write_text(path.read_text() + "\n" + extra + "\n")

    return append
