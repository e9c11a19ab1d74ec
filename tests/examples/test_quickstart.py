"""The README's quickstart, run as a user would: a script, then the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_then_cli(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "best run:" in out.stdout
    # The suggested next commands run as printed, one per line (they are pasted into a shell).
    suggested = [line.strip() for line in out.stdout.splitlines() if line.startswith("  loopml ")]
    assert len(suggested) == 3 and not any("|" in line for line in suggested)
    for command in suggested:
        done = subprocess.run(command.split(), cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
    listed = subprocess.run(
        ["loopml", "runs", "list", "--json"], cwd=tmp_path, capture_output=True, text=True
    )
    runs = json.loads(listed.stdout)
    assert len(runs) == 2 and {r["status"] for r in runs} == {"FINISHED"}
    assert all(r["metrics"]["accuracy"] > 0.9 for r in runs)
    ids = [r["run_id"][:8] for r in runs]
    compare = subprocess.run(
        ["loopml", "runs", "compare", *ids], cwd=tmp_path, capture_output=True, text=True
    )
    assert compare.returncode == 0 and "params.alpha" in compare.stdout
    show = subprocess.run(
        ["loopml", "runs", "show", ids[0]], cwd=tmp_path, capture_output=True, text=True
    )
    assert show.returncode == 0 and "breast_cancer" in show.stdout and "seed" in show.stdout
