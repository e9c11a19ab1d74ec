"""Fixtures for pipeline tests: a default workspace, and a marker-file helper for tasks that
behave differently on a rerun (the Ray cluster fixture is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import loopml
from loopml.workspace import Workspace


@pytest.fixture
def pws(workspace_factory: Callable[..., Workspace]) -> Workspace:
    """A SQLite-file workspace that is also the default one (tasks log to it)."""
    ws = workspace_factory("sqlite-file")
    loopml.set_default_workspace(ws)
    return ws


@pytest.fixture
def any_ws(ws: Workspace) -> Workspace:
    """``ws`` (every metadata backend) made the default workspace."""
    loopml.set_default_workspace(ws)
    return ws


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    """A folder where tasks leave files, to count their calls across processes."""
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder
