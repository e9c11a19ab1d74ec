"""Fixtures of the serving tests: a workspace with small registered models (with
signatures), and real uvicorn servers of a deployment on free 127.0.0.1 ports."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn

from loopml.registry import PythonModel
from loopml.workspace import Workspace

EXAMPLE = pd.DataFrame({"x": [1.0, 2.0], "n": [1, 2]})


def model_classes() -> dict[str, type[PythonModel]]:
    """Models defined in a function, so cloudpickle stores them by value and a
    ``loopml serve`` subprocess loads them without importing the tests."""

    class Linear(PythonModel):
        def __init__(self, a: float) -> None:
            self.a = a

        def predict(self, model_input: Any) -> Any:
            return (model_input["x"] * self.a + model_input["n"]).to_numpy()

    class Fragile(PythonModel):
        """Raises on a negative ``x``."""

        def predict(self, model_input: Any) -> Any:
            if (model_input["x"] < 0).any():
                raise ValueError("x must not be negative")
            return model_input["x"].to_numpy()

    class Slow(PythonModel):
        """Takes 0.2 s per request: requests are in flight when the server is stopped."""

        def predict(self, model_input: Any) -> Any:
            import time as clock

            clock.sleep(0.2)
            return model_input["x"].to_numpy()

    return {"Linear": Linear, "Fragile": Fragile, "Slow": Slow}


def register_models(ws: Workspace) -> None:
    """``double/1`` (2x + n), ``double/2`` (3x + n: a new version), ``fragile/1``, ``slow/1``."""
    classes = model_classes()
    ws.models.register("double", classes["Linear"](2.0), input_example=EXAMPLE)
    ws.models.register("double", classes["Linear"](3.0), input_example=EXAMPLE)
    ws.models.register("fragile", classes["Fragile"](), input_example=EXAMPLE)
    ws.models.register("slow", classes["Slow"](), input_example=EXAMPLE)


@pytest.fixture
def serving_ws(workspace_factory: Callable[..., Workspace]) -> Workspace:
    """A workspace (SQLite file, local blobs) with :func:`register_models` and a deployment
    ``churn`` serving ``double/1``."""
    ws = workspace_factory("sqlite-file")
    register_models(ws)
    ws.deployments.create("churn", "double/1")
    return ws


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not become ready"
        time.sleep(0.05)


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """``serve(ws, "churn", poll_interval=0.1)`` → the base URL of a real uvicorn server
    of that deployment in a thread, ready; stopped (gracefully: lifespan shutdown, log
    flushed) after the test, or earlier with ``serve.stop(url)``."""
    from loopml.serving.app import create_app

    servers: dict[str, tuple[uvicorn.Server, threading.Thread]] = {}

    def start(ws: Workspace, name: str, *, poll_interval: float = 0.1, ready: bool = True) -> str:
        port = free_port()
        app = create_app(ws, name, poll_interval=poll_interval)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        instance = uvicorn.Server(config)
        thread = threading.Thread(target=instance.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not instance.started:
            assert time.monotonic() < deadline, "the server did not start"
            assert thread.is_alive(), "the server thread died"
            time.sleep(0.01)
        url = f"http://127.0.0.1:{port}"
        servers[url] = (instance, thread)
        if ready:
            wait_ready(url)
        return url

    def stop(url: str) -> None:
        instance, thread = servers.pop(url)
        instance.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "the server did not stop"

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for url in list(servers):
        stop(url)
