"""Shared fixtures: factories for workspaces on every metadata and blob backend."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import loopml
from demo_runs import DemoRun, run_demo
from loopml.workspace import Workspace, set_default_workspace
from services import (
    drop_postgres_database,
    fresh_postgres_url,
    fresh_s3_bucket,
    require_module,
    s3_endpoint,
)

DB_BACKENDS = ["sqlite-file", "sqlite-memory", "postgres"]
BLOB_BACKENDS = ["file", "memory", "s3"]
#: Backend variants beyond the embedded defaults (SQLite file, local folder). The whole suite
#: runs every contract test on them; the fast lane (`pytest -m "not slow"`) runs each test
#: once, on the defaults.
OTHER_BACKENDS = frozenset({"sqlite-memory", "postgres", "memory", "s3", "redis", "ray"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = pytest.mark.slow
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        values = callspec.params.values()
        if any(isinstance(v, str) and v in OTHER_BACKENDS for v in values):
            item.add_marker(slow)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in (
        "LOOPML_STORE_URL",
        "LOOPML_TRACKING_URI",
        "LOOPML_TOKEN",
        "LOOPML_ARTIFACTS_URL",
        "LOOPML_EXPERIMENT",
        "LOOPML_WORKSPACE",
        # pytest-xdist's workers inherit COLUMNS=80 from execnet: tables would wrap there
        # and not in a serial run. Listings are tested at their piped width.
        "COLUMNS",
        "LINES",
    ):
        monkeypatch.delenv(var, raising=False)
    yield
    set_default_workspace(None)


def s3_storage_options() -> dict[str, Any]:
    return {"client_kwargs": {"endpoint_url": s3_endpoint()}}


@pytest.fixture
def db_url_factory(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``make(backend)`` → a URL of an empty metadata store on that backend."""
    created: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite-file":
            return f"sqlite:///{tmp_path / f'meta-{len(created)}.db'}"
        if backend == "sqlite-memory":
            return "sqlite://"
        if backend == "postgres":
            url = fresh_postgres_url()
            created.append(url)
            return url
        raise ValueError(backend)

    yield make
    for url in created:
        drop_postgres_database(url)


@pytest.fixture
def blob_url_factory(tmp_path: Path) -> Callable[[str], tuple[str, dict[str, Any]]]:
    """``make(backend)`` → (URL, storage options) of an empty blob store on that backend."""

    def make(backend: str) -> tuple[str, dict[str, Any]]:
        if backend == "file":
            return str(tmp_path / "blobs"), {}
        if backend == "memory":
            return f"memory://loopml-{os.urandom(6).hex()}", {}
        if backend == "s3":
            return f"s3://{fresh_s3_bucket()}/blobs", s3_storage_options()
        raise ValueError(backend)

    return make


@pytest.fixture
def workspace_factory(
    tmp_path: Path, db_url_factory: Callable[[str], str]
) -> Iterator[Callable[..., Workspace]]:
    """``make(store="sqlite-file")`` → an open workspace (closed after the test)."""
    opened: list[Workspace] = []

    def make(store: str = "sqlite-file", **settings: Any) -> Workspace:
        if store == "sqlite-file" and not settings:
            ws = Workspace.init(tmp_path / f"ws{len(opened)}")
        else:
            ws = Workspace.open(
                store_url=db_url_factory(store),
                artifacts_url=str(tmp_path / f"blobs{len(opened)}"),
            )
        if settings:
            ws.settings = ws.settings.with_overrides(**settings)
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()


@pytest.fixture(params=DB_BACKENDS)
def ws(request: pytest.FixtureRequest, workspace_factory: Callable[..., Workspace]) -> Workspace:
    """A fresh workspace on each metadata backend (the tracking contract runs on all)."""
    return workspace_factory(request.param)


@pytest.fixture
def sqlite_ws(workspace_factory: Callable[..., Workspace]) -> Workspace:
    return workspace_factory("sqlite-file")


@pytest.fixture
def default_ws(sqlite_ws: Workspace) -> Workspace:
    """``sqlite_ws`` made the default workspace of the module-level API."""
    loopml.set_default_workspace(sqlite_ws)
    return sqlite_ws


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[ModuleType]:
    """A real local Ray cluster (2 CPUs), started once for the session."""
    ray = require_module("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> DemoRun:
    """``loopml demo --fast --dir ROOT --json`` run once for the whole test session (~30 s on
    a slow machine): the xdist workers share one run through a file lock, or the run of
    .ci/run's demo step (``LOOPML_TEST_DEMO_RUN``). Tests only read its workspace."""
    ready = os.environ.get("LOOPML_TEST_DEMO_RUN")
    if ready:  # .ci/run's own step ran it (a folder: ws/, stdout, stderr, returncode)
        folder = Path(ready)
        return DemoRun(
            folder / "ws",
            int((folder / "returncode").read_text()),
            (folder / "stdout").read_text(encoding="utf-8"),
            (folder / "stderr").read_text(encoding="utf-8"),
        )
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    root, record = shared / "shared-demo" / "ws", shared / "shared-demo.json"
    with FileLock(str(shared / "shared-demo.lock")):
        if not record.exists():
            root.parent.mkdir(exist_ok=True)
            done = run_demo("--fast", "--dir", str(root), "--json")
            record.write_text(
                json.dumps([done.returncode, done.stdout, done.stderr]), encoding="utf-8"
            )
    returncode, stdout, stderr = json.loads(record.read_text(encoding="utf-8"))
    return DemoRun(root, returncode, stdout, stderr)
