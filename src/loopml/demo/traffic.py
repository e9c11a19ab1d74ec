"""The demo's model server and its traffic: ``loopml serve`` in a subprocess on 127.0.0.1,
requests over HTTP, labels fed back later, and the history of past traffic written to the
prediction log with its own (past) times.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.demo.data import FEATURES, LABEL
from loopml.exceptions import LoopmlError

if TYPE_CHECKING:
    import pandas as pd

    from loopml.workspace import Workspace


class ServerFailed(LoopmlError):
    """The demo's ``loopml serve`` did not start, or stopped."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_environment() -> dict[str, str]:
    """This process's environment without ``LOOPML_*``: the demo's workspace is embedded,
    whatever the shell says."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}


class Server:
    """``loopml serve DEPLOYMENT`` in a subprocess, in ``root``, on a free port."""

    def __init__(self, root: Path, deployment: str, *, poll_interval: float = 0.2) -> None:
        self.root = root
        self.deployment = deployment
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            "loopml",
            "serve",
            deployment,
            "--port",
            str(self.port),
            "--poll-interval",
            str(poll_interval),
        ]
        self._log = root / ".loopml" / "demo-serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loopml.cli", *self.command[1:]],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=clean_environment(),
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServerFailed(
                    f"`{' '.join(self.command)}` stopped with status {self.process.returncode}: "
                    f"{self.tail()}"
                )
            try:
                self.get("/ready")
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServerFailed(
                        f"`{' '.join(self.command)}` was not ready after {timeout:.0f}s: "
                        f"{self.tail()}"
                    ) from None
                time.sleep(0.1)

    def tail(self, lines: int = 5) -> str:
        try:
            text = self._log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no output)"
        return " | ".join(text[-lines:]) or "(no output)"

    def stop(self) -> int | None:
        """SIGTERM: the server drains, writes its log and exits. Its exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as reply:
            return json.load(reply)

    def post(self, path: str, body: Any, request_id: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers["X-Request-Id"] = request_id
        request = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(body).encode(), headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.load(exc)
            except ValueError:
                detail = None
            return exc.code, detail

    def wait_for_revision(self, revision: int, timeout: float = 20.0) -> None:
        """Until the server serves ``revision`` of the deployment (it polls for it)."""
        deadline = time.monotonic() + timeout
        while self.get("/deployment")["revision"] < revision:
            if time.monotonic() > deadline:
                raise ServerFailed(f"the server did not pick up revision {revision}")
            time.sleep(0.05)

    def wait_for_model(self, model: str, timeout: float = 20.0) -> None:
        """Until the primary variant resolves to ``model`` (``churn/2``)."""
        deadline = time.monotonic() + timeout
        while self.get("/deployment")["models"].get("primary") != model:
            if time.monotonic() > deadline:
                raise ServerFailed(f"the server does not serve {model} after {timeout:.0f}s")
            time.sleep(0.05)

    def send(self, frame: pd.DataFrame, prefix: str) -> tuple[Counter[str], list[str]]:
        """One request per row of ``frame`` (its :data:`FEATURES`), with request id
        ``PREFIX-CUSTOMER``; answers per model version (``error 500`` for failures) and the
        ids of the answered requests."""
        seen: Counter[str] = Counter()
        answered: list[str] = []
        records = frame[["customer_id", *FEATURES]].to_dict(orient="records")
        for row in records:
            request_id = f"{prefix}-{row.pop('customer_id')}"
            status, body = self.post("/predict", {"records": [row]}, request_id)
            if status == 200:
                seen[str(body.get("model"))] += 1
                answered.append(request_id)
            else:
                seen[f"error {status}"] += 1
        return seen, answered

    def feed_back(self, frame: pd.DataFrame, prefix: str, answered: list[str]) -> int:
        """``POST /feedback`` with the label of each answered request; how many were taken."""
        labels = {
            f"{prefix}-{cid}": int(y)
            for cid, y in zip(frame["customer_id"], frame[LABEL], strict=True)
        }
        taken = 0
        for request_id in answered:
            status, _ = self.post(
                "/feedback", {"request_id": request_id, "label": labels[request_id]}
            )
            taken += status == 202
        return taken


def log_history(
    ws: Workspace,
    frame: pd.DataFrame,
    *,
    model: str,
    revision: int,
    deployment: str = "churn",
    seed: int = 0,
) -> int:
    """Write the past traffic ``frame`` (one request per row, at its ``event_ts``) to
    ``deployment``'s prediction log as ``loopml serve`` writes it, answered by ``model``;
    the number of rows. Windows in the past need no waiting for them to close."""
    import numpy as np

    from loopml.serving.log import PredictionLogger, to_json

    loaded = ws.models.load(f"models:/{model}")
    predicted = loaded.predict(frame[FEATURES])
    rng = np.random.default_rng(seed)
    latencies = rng.gamma(2.0, 3.0, len(frame))
    with PredictionLogger(ws.blobs) as logger:
        for i, (row, when) in enumerate(
            zip(frame[FEATURES].to_dict(orient="records"), frame["event_ts"], strict=True)
        ):
            logger.log(
                {
                    "request_id": f"h-{frame['customer_id'].iat[i]}",
                    "time": when.to_pydatetime(),
                    "deployment": deployment,
                    "revision": revision,
                    "model": model,
                    "variant": "primary",
                    "shadow": False,
                    "inputs": to_json([row]),
                    "outputs": to_json([int(predicted[i])]),
                    "latency_ms": float(latencies[i]),
                    "error": None,
                }
            )
    return len(frame)


def history_labels(frame: pd.DataFrame, path: Path, delay: timedelta, *, now: datetime) -> Path:
    """The labels of the past traffic ``frame`` as a file for ``loopml labels ingest``: each
    known ``delay`` after its prediction (or ``now``, when that is sooner)."""
    import pandas as pd

    out = pd.DataFrame(
        {
            "request_id": [f"h-{c}" for c in frame["customer_id"]],
            "label": frame[LABEL].astype(int),
            "time": [min(t.to_pydatetime() + delay, now).isoformat() for t in frame["event_ts"]],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)
    return path


def utc_iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
