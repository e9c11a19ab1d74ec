"""examples/feature_repo: its README's commands, run as written in a copy of the folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "feature_repo"


def readme_commands() -> list[str]:
    text = (EXAMPLE / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shell(command: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def wait_for(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the feature server did not answer {url}")


@pytest.mark.slow
def test_readme_steps_build_a_training_set_and_serve_online_values(tmp_path: Path) -> None:
    repo = tmp_path / "feature_repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".loopml", "data"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    commands = readme_commands()
    assert [c.split()[:3] for c in commands] == [
        ["python", "make_data.py"],
        ["loopml", "features", "apply"],
        ["python", "training_set.py"],
        ["loopml", "features", "materialize"],
        ["python", "online.py"],
        ["loopml", "features", "serve"],
        ["curl", "-s", "-X"],
    ]
    outputs = [shell(command, repo, env) for command in commands[:5]]

    assert "feature service churn_v1: new, is version 1" in outputs[1]
    training = pd.read_parquet(repo / "data" / "training_set.parquet")
    assert len(training) == 5 and training["customer_id"].tolist() == [1, 2, 3, 1, 999]
    features = ["avg_purchase_30d", "n_orders_7d", "last_amount", "expected_spend"]
    assert training[features].iloc[:4].notna().all().all()
    assert training[features].iloc[4].isna().all()
    expected = training["avg_purchase_30d"] * (1 - training["discount"])
    assert (training["expected_spend"].iloc[:4] - expected.iloc[:4]).abs().max() < 1e-9
    # As of known time: row 1 (10 days ago) sees that day's stats only if they were created by
    # then, else the day before's; never a later day's.
    stats = pd.read_parquet(repo / "data" / "customer_stats.parquet")
    first = training.iloc[0]
    known = stats[
        (stats["customer_id"] == 1)
        & (stats["event_ts"] <= first["event_timestamp"])
        & (stats["created_ts"] <= first["event_timestamp"])
    ].sort_values("event_ts")
    assert first["avg_purchase_30d"] == known["avg_purchase_30d"].iloc[-1]

    latest = stats.sort_values("event_ts").groupby("customer_id").last()
    online = outputs[4]
    assert f"avg_purchase_30d: [{latest.loc[1, 'avg_purchase_30d']}, " in online
    assert "customer_id: [1, 2]" in online

    port = free_port()
    serve, curl = (c.replace("6566", str(port)) for c in commands[5:7])
    server = subprocess.Popen(
        ["bash", "-c", f"exec {serve.rstrip('& ')}"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", server)
        answer = json.loads(shell(curl, repo, env))
    finally:
        server.terminate()
        server.wait(timeout=30)
    names = answer["metadata"]["feature_names"]
    values = dict(zip(names, (r["values"] for r in answer["results"]), strict=True))
    assert values["customer_id"] == [1, 2]
    assert values["avg_purchase_30d"] == [
        latest.loc[1, "avg_purchase_30d"],
        latest.loc[2, "avg_purchase_30d"],
    ]
    assert values["expected_spend"][0] == pytest.approx(latest.loc[1, "avg_purchase_30d"] * 0.9)
