"""Pipelines on a Ray cluster reached as ``ray://host:port``: a second real cluster, started
with ``ray start --head`` and its client server on a loopback port, driven from a separate
process (a process talks to one Ray cluster; this one may hold the session's local one)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import require_module

pytestmark = pytest.mark.slow

FLOW = textwrap.dedent(
    """
    import sys

    import loopml
    from loopml.pipelines import ClusterUnavailable, pipeline, run_pipeline, task
    from loopml.pipelines import records


    @task
    def source(n: int) -> list[int]:
        return list(range(n))


    @task
    def scale(xs: list[int], k: int) -> list[int]:
        loopml.log_metric("scaled", float(k))
        return [x * k for x in xs]


    @task
    def combine(*parts: list[int]) -> int:
        return sum(sum(p) for p in parts)


    @pipeline
    def spread(n: int = 10):
        xs = source(n)
        return combine(*[scale(xs, k) for k in (1, 2, 3)])


    ws = loopml.Workspace.init(sys.argv[1])
    loopml.set_default_workspace(ws)
    try:
        run = run_pipeline(spread, {"n": 10}, executor=sys.argv[2], cache=False)
    except ClusterUnavailable as exc:
        print("UNAVAILABLE", exc)
        raise SystemExit(3)
    stored = records.get_run(ws.db, run.id)
    history = ws.metric_history(stored.tracking_run_id, "scaled")
    print("RESULT", run.result, stored.executor, sorted(history["value"].tolist()))
    """
)


#: The head's temp folder, for its client servers' logs when a test fails.
HEAD_TEMP: list[Path] = []


def server_logs() -> str:
    """The tails of the head's ``ray_client_server*.err`` logs (why a client's server died)."""
    out = []
    for temp in HEAD_TEMP:
        for err in sorted(temp.glob("session_*/logs/ray_client_server*.err")):
            text = err.read_text(errors="replace")[-1500:]
            if text.strip():
                out.append(f"--- {err.name}\n{text}")
    return "\n".join(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_client_address() -> Iterator[tuple[str, dict[str, str]]]:
    """``("ray://127.0.0.1:PORT", env)``: a Ray head with token authentication and a client
    server, and the environment a client needs to reach it. Stopped (its whole process
    group) afterwards, without touching any other Ray cluster on the machine."""
    require_module("ray")
    require_module("grpc")  # ray[client]
    token = secrets.token_hex(32)
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    temp = tempfile.mkdtemp(prefix="lray", dir="/tmp")  # Ray's socket paths must stay short
    log = Path(temp) / "head.log"
    HEAD_TEMP[:] = [Path(temp)]
    ray_cli = Path(sys.executable).with_name("ray")
    with log.open("w") as out:
        head = subprocess.Popen(
            [
                str(ray_cli) if ray_cli.exists() else "ray",
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",
                f"--port={free_port()}",
                f"--ray-client-server-port={port}",
                "--num-cpus=2",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={temp}",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address = f"ray://127.0.0.1:{port}"
    try:
        # Up when a client can connect and run something, not merely when the port opens.
        probe = f"import ray; ray.init({address!r}); ray.get(ray.remote(lambda: 1).remote())"
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as s:
                listening = s.connect_ex(("127.0.0.1", port)) == 0
            if listening:
                ready = subprocess.run(
                    [sys.executable, "-c", probe],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                if ready.returncode == 0:
                    break
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield address, env
    finally:
        # A throwaway cluster: a short grace, then the whole process group goes.
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 20)):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            try:
                head.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # what the head left behind in its group
        shutil.rmtree(temp, ignore_errors=True)


def run_flow(tmp_path: Path, address: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "flow.py"
    script.write_text(FLOW)
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "ws"), address],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_pipeline_runs_on_a_cluster_reached_through_ray_client(
    ray_client_address: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    address, env = ray_client_address
    done = run_flow(tmp_path, address, env)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:] + server_logs()
    # Tasks ran on the cluster's workers and logged to the workspace's SQLite file.
    assert f"RESULT 270 {address} [1.0, 2.0, 3.0]" in done.stdout


def test_a_client_without_the_token_gets_a_clear_error(
    ray_client_address: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    address, env = ray_client_address
    bare = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    bare |= {
        "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1",
        "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "2",
    }
    done = run_flow(tmp_path, address, bare)
    assert done.returncode == 3, done.stdout + done.stderr[-3000:]
    assert f"Cannot reach the Ray cluster at {address}" in done.stdout
    assert "RAY_AUTH_MODE=token" in done.stdout
