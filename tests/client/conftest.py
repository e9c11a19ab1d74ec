"""Fixtures of the client tests: ``loopml server`` as a subprocess that can be SIGKILLed and
started again on the same port, over a workspace folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loopml.client import forget_sessions
from loopml.workspace import Workspace
from server.conftest import free_port, server, wait_healthy

__all__ = ["server"]  # the team server tests' fixture: a real app in a thread


class ServerProcess:
    """``loopml server`` over the workspace at ``root``, on one port across restarts."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("LOOPML_TRACKING_URI", None)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "loopml.cli", "server", "--port", str(self.port)],
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if wait:
            self.wait()

    def wait(self) -> None:
        """Until this process (not another one that took the port meanwhile: the machine
        is shared) listens on the port and answers /health."""
        import time

        import psutil

        assert self.proc is not None
        deadline = time.monotonic() + 60
        while not self._listening(psutil.Process(self.proc.pid)):
            assert self.proc.poll() is None, f"the server exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the server did not listen on its port"
            time.sleep(0.05)
        wait_healthy(self.url, timeout=60)

    def _listening(self, process: Any) -> bool:
        import psutil

        try:
            sockets = process.net_connections(kind="inet")
        except psutil.Error:
            return False
        return any(s.status == psutil.CONN_LISTEN and s.laddr.port == self.port for s in sockets)

    def kill(self) -> None:
        """SIGKILL: no cleanup, requests in flight are cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A spool folder of this test's own (``LOOPML_SPOOL_DIR``); sessions forgotten after."""
    folder = tmp_path / "spool"
    monkeypatch.setenv("LOOPML_SPOOL_DIR", str(folder))
    yield folder
    forget_sessions()


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[[], ServerProcess]]:
    """``make()`` → a :class:`ServerProcess` over a new workspace (not started yet)."""
    made: list[ServerProcess] = []

    def make() -> ServerProcess:
        root = tmp_path / f"server{len(made)}"
        Workspace.init(root).close()
        made.append(ServerProcess(root, tmp_path / f"server{len(made)}.log"))
        return made[-1]

    yield make
    for process in made:
        process.stop()
