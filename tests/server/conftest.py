"""Fixtures of the team server's tests: real uvicorn servers on free 127.0.0.1 ports, and
the real MLflow client pointed at one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from loopml.workspace import Workspace
from serving.conftest import free_port

__all__ = ["free_port", "start_server", "wait_healthy"]


def wait_healthy(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer /health"
        time.sleep(0.05)


def start_server(app: Any) -> tuple[str, Callable[[], None]]:
    """Run ``app`` in a uvicorn server in a thread; → (base URL, stop)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started:
        assert time.monotonic() < deadline, "the server did not start"
        assert thread.is_alive(), "the server thread died"
        time.sleep(0.01)

    def stop() -> None:
        instance.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "the server did not stop"

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture
def server() -> Iterator[Callable[..., str]]:
    """``server(ws, auth=False)`` → the base URL of a real ``loopml server`` app over ``ws``
    in a thread, answering /health; stopped after the test."""
    from loopml.server.app import create_app

    stops: list[Callable[[], None]] = []

    def start(ws: Workspace, **kwargs: Any) -> str:
        url, stop = start_server(create_app(ws, **kwargs))
        stops.append(stop)
        wait_healthy(url)
        return url

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def mlflow_client(
    server: Callable[..., str], sqlite_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, Workspace, str]]:
    """The real ``mlflow`` module pointed at a loopml server over ``sqlite_ws``:
    → (mlflow, ws, url). Runs left active are ended after the test."""
    mlflow = pytest.importorskip("mlflow")
    url = server(sqlite_ws)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    yield mlflow, sqlite_ws, url
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
