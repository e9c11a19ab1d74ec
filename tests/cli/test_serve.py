"""``loopml serve``: a real server process on 127.0.0.1, stopped with SIGTERM under load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import Result

from loopml.serving import read_predictions
from loopml.workspace import Workspace
from serving.conftest import free_port, register_models, wait_ready


@pytest.fixture
def served_ws(workspace: Workspace) -> Workspace:
    """The CLI's workspace (the current directory) with the serving test models and two
    deployments: ``churn`` (``double/1``) and ``sluggish`` (``slow/1``, 0.2 s a request)."""
    register_models(workspace)
    workspace.deployments.create("churn", "double/1")
    workspace.deployments.create("sluggish", "slow/1")
    return workspace


@pytest.fixture
def start_server(
    served_ws: Workspace,
) -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    """``start(deployment, *options)`` → the ``loopml serve`` process and its base URL (ready);
    killed after the test if still running."""
    processes: list[subprocess.Popen[str]] = []
    loopml = Path(sys.executable).with_name("loopml")
    command = [str(loopml)] if loopml.exists() else [sys.executable, "-m", "loopml.cli"]

    def start(deployment: str, *options: str) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        process = subprocess.Popen(
            [*command, "serve", deployment, "--port", str(port), *options],
            cwd=served_ws.root,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, timeout=60)
        except AssertionError:
            process.kill()
            raise AssertionError(process.communicate()[0]) from None
        return process, url

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_has_help(invoke: Callable[..., Result]) -> None:
    result = invoke("serve", "--help")
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "127.0.0.1", "/predict"):
        assert option in result.stdout


@pytest.mark.slow
def test_an_unknown_deployment_is_an_error_with_a_hint(
    served_ws: Workspace, invoke: Callable[..., Result]
) -> None:
    result = invoke("serve", "chrun")
    assert result.exit_code == 1
    assert "No deployment 'chrun'" in result.stderr and "'churn'" in result.stderr


@pytest.mark.slow
def test_sigterm_under_load_answers_in_flight_requests_and_logs_them(
    served_ws: Workspace, start_server: Callable[..., tuple[subprocess.Popen[str], str]]
) -> None:
    process, url = start_server("sluggish")
    answered: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for i in range(50):
                rid = f"w{worker}-{i}"
                try:
                    reply = http.post(
                        "/predict",
                        json={"records": [{"x": 1.0, "n": i}]},
                        headers={"X-Request-Id": rid},
                    )
                except httpx.HTTPError:
                    with lock:
                        refused.append(rid)
                    return  # the server is gone: stop sending
                with lock:
                    (answered if reply.status_code == 200 else refused).append(rid)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(answered) < 10:  # some answered, several in flight
        assert time.monotonic() < deadline, "no request was answered"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]
    for thread in threads:
        thread.join(30)
    assert process.returncode == 0, output  # drained and stopped as asked: not -15
    assert answered and len(answered) < 300, (len(answered), len(refused))
    logged = set(read_predictions(served_ws, "sluggish")["request_id"])
    assert set(answered) <= logged, sorted(set(answered) - logged)[:10]


@pytest.mark.slow
def test_workers_each_build_their_app(
    served_ws: Workspace, start_server: Callable[..., tuple[subprocess.Popen[str], str]]
) -> None:
    process, url = start_server("churn", "--workers", "2")
    with httpx.Client(base_url=url) as http:
        for _ in range(6):
            reply = http.post("/predict", json={"records": [{"x": 1.0, "n": 1}]})
            assert reply.status_code == 200 and reply.json()["model"] == "double/1"
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    assert len(read_predictions(served_ws, "churn")) == 6


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_error_line(
    served_ws: Workspace,
    invoke: Callable[..., Result],
    error_lines: Callable[[Result], list[str]],
    workers: str,
) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("serve", "churn", "--port", str(port), "--workers", workers)
    assert error_lines(result) == [
        f"error: Port {port} on 127.0.0.1 is in use (another server?): stop it or pass --port N."
    ]
