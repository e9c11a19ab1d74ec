"""examples/training_pipeline.py end to end: run once, failed and resumed, backfilled over a
week, triggered by new data through `loopml scheduler run --once`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_training_pipeline_example(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "training_pipeline.py"), str(workdir)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    try:
        # Tables wrap at the terminal width: compare with white space folded.
        check_output(" ".join(out.stdout.split()), workdir)
    except AssertionError as exc:  # show what the example printed, not just the failed line
        raise AssertionError(f"{exc}\n--- example output ---\n{out.stdout[-6000:]}") from exc


def check_output(text: str, workdir: Path) -> None:
    assert "pipeline train_churn (7 tasks)" in text
    assert "flowchart TD" in text
    assert "FAILED" in text and "No such file or directory: 'data/holdout-v2.csv'" in text
    resumed = text.split("$ loopml pipelines resume", 1)[1].split("== 3.", 1)[0]
    assert "FINISHED" in resumed and "7 completed" in resumed  # reused + rerun tasks
    assert text.count("2026-11-0") >= 7 and "0 ran, 7 reused" in text
    scheduler = text.split("== 4.", 1)[1].split("== all runs", 1)[0]
    assert scheduler.count("1 run triggered") == 1
    assert scheduler.count("0 runs triggered") == 2
    assert "summary: 8 current runs, 1 started by new data, statuses ['FINISHED']" in text

    listed = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "pipelines", "runs", "--json", "--current"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    runs = json.loads(listed.stdout)
    assert sorted(r["partition"] for r in runs) == [
        *(f"2026-11-0{i}" for i in range(1, 8)),
        "latest",
    ]
    history = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "models", "history", "churn"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "registered" in history.stdout and "Production" in history.stdout


def test_the_example_tasks_cache_keys_follow_its_feature_list() -> None:
    """The tasks read the module-level FEATURES list: changing it must rerun them."""
    import warnings

    from loopml.pipelines.refs import load_pipeline

    with warnings.catch_warnings():  # its on_new_data path only exists in a demo folder
        warnings.simplefilter("ignore")
        pipe = load_pipeline(f"{ROOT / 'examples' / 'training_pipeline.py'}:train_churn")
    build = pipe.shape()
    module = sys.modules[pipe.fn.__module__]
    tasks = {node: call.task for node, call in build.calls.items()}
    before = {node: task.fingerprint() for node, task in tasks.items()}
    assert "global training_pipeline.FEATURES" in before["build_features"].components
    assert "package pandas" in before["load"].components
    original = module.FEATURES
    module.FEATURES = [*original, "region"]
    try:
        after = {node: task.fingerprint() for node, task in tasks.items()}
    finally:
        module.FEATURES = original
    changed = sorted(node for node in tasks if before[node].digest != after[node].digest)
    assert changed == ["build_features", "evaluate", "register", "train"]
