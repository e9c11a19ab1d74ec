"""Fixtures for pipeline tests: a default workspace, a marker-file helper for tasks that
behave differently on a rerun, and one real local Ray cluster per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

import loopml
from loopml.workspace import Workspace
from services import require_module


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


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[ModuleType]:
    """A real local Ray cluster (2 CPUs), started once for the session."""
    ray = require_module("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    """A folder where tasks leave files, to count their calls across processes."""
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder
