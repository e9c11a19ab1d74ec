"""examples/canary/run.py end to end: a real ``loopml serve``, a bad candidate that the
controller rolls back on its own, a good one that completes through the registry gate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import loopml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_canary_example_aborts_the_bad_candidate_and_completes_the_good_one(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONWARNINGS": "ignore",
    }
    work = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "canary" / "run.py"), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "BAD candidate: churn: abort: error_rate = " in text, text
    assert "GOOD candidate: churn: complete: step 2 of 2 (100%) healthy" in text, text
    assert "Production is churn/3" in text and "the server now answers with churn/3" in text
    assert "stopped with status 0" in text
    ws = loopml.Workspace.open(work)
    try:
        kinds = [e.kind for e in ws.events.read(subject="churn") if "canary_" in e.kind]
        assert kinds == [
            "deployment.canary_aborted",
            "deployment.canary_advanced",
            "deployment.canary_completed",
        ]
        current = ws.deployments.get("churn")
        assert current.strategy == "single" and current.primary.model == "models:/churn@production"
        assert ws.models.get("churn@production").version == 3
    finally:
        ws.close()
