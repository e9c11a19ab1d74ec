"""The servers settle the garbage collector before answering (see loopml.heap): every
``serve`` path, one worker or many, freezes what exists and sets the servers' thresholds."""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from loopml.cli.main import cli
from loopml.heap import SERVER_THRESHOLDS, settle_for_serving
from loopml.workspace import Workspace
from serving.conftest import register_models


@pytest.fixture
def gc_state() -> Iterator[None]:
    """Undo what settle_for_serving does to this (test) process."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch, gc_state: None) -> Iterator[list[dict[str, Any]]]:
    """uvicorn.run replaced by a recorder of the collector's state when it was called."""
    import uvicorn

    calls: list[dict[str, Any]] = []

    def run(app: Any, **kwargs: Any) -> None:
        calls.append(
            {"app": app, "thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count()}
        )

    monkeypatch.setattr(uvicorn, "run", run)
    handler = signal.getsignal(signal.SIGTERM)  # the serve commands set their own
    yield calls
    signal.signal(signal.SIGTERM, handler)


def test_settle_for_serving_freezes_and_sets_thresholds(gc_state: None) -> None:
    assert gc.get_freeze_count() == 0
    settle_for_serving()
    assert gc.get_freeze_count() > 1000
    assert gc.get_threshold() == SERVER_THRESHOLDS
    # Cycles made afterwards are still collected.
    collected_before = gc.get_stats()[0]["collected"]
    for _ in range(100):
        a: list[Any] = []
        a.append(a)
    del a
    gc.collect(0)
    assert gc.get_stats()[0]["collected"] > collected_before


def _invoke(ws: Workspace, *args: str) -> None:
    done = CliRunner().invoke(cli, ["-w", str(ws.root), *args])
    assert done.exit_code == 0, done.output


def test_the_team_server_settles_before_serving(tmp_path: Path, seen: list[dict[str, Any]]) -> None:
    ws = Workspace.init(tmp_path / "ws")
    try:
        _invoke(ws, "server", "--port", "5999")
    finally:
        ws.close()
    assert [c["thresholds"] for c in seen] == [SERVER_THRESHOLDS]
    assert seen[0]["frozen"] > 0


def test_the_model_server_settles_before_serving(
    tmp_path: Path, seen: list[dict[str, Any]]
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    try:
        register_models(ws)
        ws.deployments.create("churn", "double/1")
        _invoke(ws, "serve", "churn", "--port", "5998")
    finally:
        ws.close()
    assert [c["thresholds"] for c in seen] == [SERVER_THRESHOLDS]
    assert seen[0]["frozen"] > 0


def test_the_gateway_settles_before_serving(tmp_path: Path, seen: list[dict[str, Any]]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        "[gateway.models.cheap]\n\n[[gateway.models.cheap.deployments]]\n"
        'name = "a"\nprovider = "openai"\nmodel = "gpt-4o-mini"\n'
        'base_url = "http://127.0.0.1:9/v1"\napi_key_env = "LOOPML_TEST_NO_KEY"\n'
    )
    ws = Workspace.init(tmp_path / "ws")
    try:
        _invoke(ws, "gateway", "serve", "--config", str(config), "--port", "5997")
    finally:
        ws.close()
    assert [c["thresholds"] for c in seen] == [SERVER_THRESHOLDS]
    assert seen[0]["frozen"] > 0


@pytest.mark.parametrize(
    "factory", ["loopml.server.app:app_from_env", "loopml.serving.app:app_from_env"]
)
def test_each_worker_settles_when_it_builds_its_app(
    factory: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gc_state: None
) -> None:
    import importlib

    ws = Workspace.init(tmp_path / "ws")
    register_models(ws)
    ws.deployments.create("churn", "double/1")
    ws.close()
    monkeypatch.setenv("LOOPML_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("LOOPML_SERVE_DEPLOYMENT", "churn")
    module, name = factory.split(":")
    app = getattr(importlib.import_module(module), name)()
    assert app is not None
    assert gc.get_threshold() == SERVER_THRESHOLDS
    assert gc.get_freeze_count() > 0
