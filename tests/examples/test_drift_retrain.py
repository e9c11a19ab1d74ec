"""examples/drift_retrain end to end: a drifted stream fires the alert rule, whose event
starts the retraining pipeline through `loopml scheduler run --once`, which registers a new
version with its own reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "drift_retrain" / "run.py"


@pytest.mark.slow
def test_drift_raises_an_alert_that_retrains(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), str(workdir)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    try:
        check(out.stdout, workdir)
    except AssertionError as exc:  # show what the example printed, not just the failed line
        raise AssertionError(f"{exc}\n--- example output ---\n{out.stdout[-6000:]}") from exc


def cli_json(workdir: Path, *args: str) -> object:
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", *args, "--json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def check(text: str, workdir: Path) -> None:
    summary = json.loads(text.rsplit("summary: ", 1)[1].splitlines()[0])
    [alert] = cli_json(workdir, "alerts", "list")  # type: ignore[misc]
    assert alert["rule"] == "input drift" and alert["severity"] == "critical"
    assert alert["value"] > 0.25 and summary["alert_id"] == alert["id"]
    # the first drifted window (hours 3-5 of the six are drifted): fired once, not per window
    windows = cli_json(workdir, "monitor", "show", "churn", "--metric", "psi")
    assert isinstance(windows, list) and windows
    starts = sorted({w["start"] for w in windows})
    assert alert["window_start"] == starts[3]

    [run] = cli_json(workdir, "pipelines", "runs")  # type: ignore[misc]
    assert run["pipeline"] == "retrain_churn" and run["status"] == "FINISHED"
    assert run["trigger"] == "event:alert:churn"
    assert run["trigger_detail"]["payload"]["alert_id"] == alert["id"]
    assert summary["pipeline_run_id"] == run["id"]

    assert summary["versions"] == [1, 2] and summary["new_version_has_reference"] is True
    from loopml.workspace import Workspace

    ws = Workspace.open(workdir)
    try:
        new = ws.models.get("models:/churn/2")
        assert new.run_id == run["tracking_run_id"]  # registered by the triggered run
        reference = ws.monitors.reference("churn/2")
        assert reference is not None and reference.rows == 360  # the drifted, labelled rows
    finally:
        ws.close()
    page = (workdir / "report.html").read_text()
    assert "Alerts (1)" in page and "monthly_charges" in page
