"""A canary that rolls back on its own when the candidate is bad, and completes through the
registry gate when it is good.

    python examples/canary/run.py [WORKDIR]     # default: a fresh temporary folder

Steps (the README beside this file says what each shows):

1. train a champion (logistic regression), register it as ``churn/1`` and promote it through
   the gate of ``loopml.toml`` to Production;
2. ``loopml deploy create churn --model churn@production`` and ``loopml serve churn`` (a
   real server process on 127.0.0.1, a free port);
3. a BAD candidate, ``churn/2`` (it raises on some inputs): ``loopml deploy canary``, traffic,
   ``loopml deploy watch churn --once`` until the controller aborts it (error_rate);
4. a GOOD candidate, ``churn/3``: the same, until the controller completes it — the
   candidate passes the gate and Production (and so the deployment) moves to it;
5. the deployment's events and history, then SIGTERM to the server.

Everything runs on the embedded default workspace (SQLite and a local blob folder) in
WORKDIR: ``LOOPML_*`` variables of your shell are ignored.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.registry import PythonModel

COLUMNS = [f"f{i}" for i in range(8)]
SETTINGS = """
[serving]
log_flush_interval = 0.2   # the controller reads what the server has written

[gates.churn]
metric = "accuracy"
holdout = "data/holdout.csv"
label = "churned"
min_score = 0.75
beat_champion = false      # the canary compared it with the champion on live traffic
"""
CANARY = [
    "--steps",
    "50,100",
    "--step-duration",
    "1s",
    "--min-requests",
    "100",
    "--abort",
    "error_rate > 0.05",
    "--abort",
    "prediction_psi > 0.25",
]
ROWS_PER_REQUEST = 4
REQUESTS_PER_ROUND = 250


class RaisesOnOutliers(PythonModel):
    """The bad candidate: a fine model, except that it raises on a row with f0 > 2."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, model_input: Any) -> Any:
        if (model_input["f0"] > 2).any():
            raise ValueError("f0 above 2: this version was never tested on such rows")
        return self.model.predict(model_input)


def loopml_command() -> list[str]:
    script = Path(sys.executable).with_name("loopml")
    return [str(script)] if script.exists() else [sys.executable, "-m", "loopml.cli"]


def cli(*args: str) -> str:
    """Run ``loopml ARGS`` here and echo it, as a user would type it."""
    print(f"$ loopml {shlex.join(args)}", flush=True)
    done = subprocess.run([*loopml_command(), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"loopml {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    out = done.stdout.strip()
    if out:
        print("  " + out.replace("\n", "\n  "), flush=True)
    return out


def make_data() -> None:
    x, y = make_classification(
        n_samples=4000, n_features=len(COLUMNS), n_informative=5, flip_y=0.02, random_state=3
    )
    frame = pd.DataFrame(x, columns=COLUMNS).assign(churned=y)
    Path("data").mkdir(exist_ok=True)
    frame.iloc[:3000].to_csv("data/train.csv", index=False)
    frame.iloc[3000:].to_csv("data/holdout.csv", index=False)


def trained(model: Any) -> Any:
    train = pd.read_csv("data/train.csv")
    return model.fit(train[COLUMNS], train["churned"])


def register(ws: loopml.Workspace, model: Any, what: str) -> int:
    train = pd.read_csv("data/train.csv")
    example = train.loc[train["f0"] <= 2, COLUMNS].head()  # rows every version answers
    version = ws.models.register("churn", model, input_example=example)
    print(f"registered churn/{version.version}: {what}", flush=True)
    return int(version.version)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


def start_server(port: int) -> subprocess.Popen[str]:
    print(f"$ loopml serve churn --port {port} --poll-interval 0.2 &", flush=True)
    server = subprocess.Popen(
        [*loopml_command(), "serve", "churn", "--port", str(port), "--poll-interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            raise SystemExit(f"loopml serve stopped:\n{server.communicate()[0]}")
        try:
            get(f"http://127.0.0.1:{port}/ready")
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise SystemExit("loopml serve did not become ready in 60 s") from None
            time.sleep(0.1)


def wait_for_revision(url: str, revision: int) -> None:
    """Until the server serves ``revision`` (it checks every 0.2 s)."""
    deadline = time.monotonic() + 10
    while get(f"{url}/deployment")["revision"] != revision:
        if time.monotonic() > deadline:
            raise SystemExit(f"the server did not pick up revision {revision}")
        time.sleep(0.05)


def send_traffic(url: str, rows: pd.DataFrame, offset: int) -> dict[str, int]:
    """``REQUESTS_PER_ROUND`` requests of ``ROWS_PER_REQUEST`` rows; answers per variant
    (and errors)."""
    seen: dict[str, int] = {}
    for i in range(REQUESTS_PER_ROUND):
        start = (offset + i * ROWS_PER_REQUEST) % (len(rows) - ROWS_PER_REQUEST)
        records = rows.iloc[start : start + ROWS_PER_REQUEST].to_dict(orient="records")
        request = urllib.request.Request(
            f"{url}/predict",
            data=json.dumps({"records": records}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                variant = json.load(reply)["variant"]
        except urllib.error.HTTPError as exc:  # the bad candidate's 500s
            variant = f"error {exc.code}"
        seen[variant] = seen.get(variant, 0) + 1
    return seen


def run_canary(ws: loopml.Workspace, url: str, candidate: int, rows: pd.DataFrame) -> str:
    """Start a canary of ``churn/CANDIDATE``; send traffic and watch until the controller
    aborts or completes it. The last decision line."""
    cli("deploy", "canary", "churn", "--candidate", f"churn/{candidate}", *CANARY)
    revision = ws.deployments.get("churn").revision
    for round_ in range(8):
        wait_for_revision(url, revision)
        seen = send_traffic(url, rows, offset=round_ * 997)
        print(f"  sent {REQUESTS_PER_ROUND} requests: {dict(sorted(seen.items()))}", flush=True)
        time.sleep(1.0)  # the step's duration (1 s) and the log's flush (0.2 s)
        line = cli("deploy", "watch", "churn", "--once")
        action = line.split(": ", 2)[1] if ": " in line else ""
        if action in ("abort", "complete"):
            return line
        if action == "advance":
            revision += 1
    raise SystemExit("the canary neither completed nor aborted in 8 rounds")


def main(workdir: Path) -> None:
    for var in [v for v in os.environ if v.startswith("LOOPML_")]:
        del os.environ[var]  # the embedded workspace of WORKDIR, whatever the shell says
    os.chdir(workdir)
    loopml.init(".")
    with open("loopml.toml", "a") as fh:
        fh.write(SETTINGS)
    make_data()
    ws = loopml.Workspace.open(".")

    champion = register(ws, trained(LogisticRegression(max_iter=1000)), "the champion")
    ws.models.promote("churn", champion, reason="the first model")
    print(f"churn/{champion} is in Production", flush=True)
    cli("deploy", "create", "churn", "--model", "churn@production")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port)
    try:
        holdout = pd.read_csv("data/holdout.csv")[COLUMNS]
        flawed = RaisesOnOutliers(trained(LogisticRegression(max_iter=1000)))
        bad = register(ws, flawed, "BAD: raises on rows with f0 > 2")
        aborted = run_canary(ws, url, bad, holdout)
        print(f"BAD candidate: {aborted}", flush=True)

        retrained = trained(LogisticRegression(C=0.3, max_iter=1000))
        good = register(ws, retrained, "GOOD: retrained with more regularisation")
        completed = run_canary(ws, url, good, holdout)
        print(f"GOOD candidate: {completed}", flush=True)
        production = ws.models.get("churn@production").version
        print(f"Production is churn/{production}; the deployment follows churn@production")
        deadline = time.monotonic() + 10  # the server follows the alias within 0.2 s
        while (served := get(f"{url}/deployment")["models"])["primary"] != f"churn/{production}":
            if time.monotonic() > deadline:
                raise SystemExit(f"the server still serves {served}")
            time.sleep(0.05)
        print(f"the server now answers with {served['primary']}", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)  # its log: a traceback per request churn/2 failed
    print(f"loopml serve drained, wrote its log and stopped with status {server.returncode}")
    kinds = [
        "deployment.canary_advanced",
        "deployment.canary_aborted",
        "deployment.canary_completed",
    ]
    for event in ws.events.read(kinds=kinds, subject="churn"):
        print(f"event {event.kind}: {(event.payload or {}).get('reason', '')}")
    ws.close()
    cli("deploy", "history", "churn")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="loopml-"))
    target.mkdir(parents=True, exist_ok=True)
    print(f"working in {target}")
    main(target.resolve())
