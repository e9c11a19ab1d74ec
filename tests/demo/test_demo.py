"""``loopml demo``: the loop closes, as the workspace's own records show.

The slow test runs ``loopml demo --fast --dir TMP --json`` as a user would, then opens the
workspace with loopml's API and checks, from its stored facts (not from what the demo
printed): the alert fired after the drift and not before; a pipeline run was started by
that alert's event; a new version passed the gate and was promoted; and the Production
version's lineage leads to the new data version (the one committed in the workspace's git)
and a code commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from demo_runs import DemoRun, run_demo
from loopml.demo import data as synth
from loopml.demo.loop import Demo, StageFailed
from loopml.demo.narration import Narrator


@pytest.mark.slow
def test_the_loop_closes_in_the_workspace_records(demo_run: DemoRun) -> None:
    from loopml.workspace import Workspace

    root, summary = demo_run.root, demo_run.check()
    drift = datetime.fromisoformat(summary["drift_time"])
    ws = Workspace.open(root)
    try:
        # the alert fired for a window after the drift, and for none before it
        [alert] = ws.monitors.alerts("churn")
        assert alert.rule == "input drift" and alert.value is not None and alert.value > 0.25
        assert alert.window_start >= drift
        windows = ws.monitors.windows("churn")
        before = [w for w in windows if w.end <= drift]
        assert before and all(
            v <= 0.25 for w in before for (_, m), v in w.metrics.items() if m == "psi"
        )

        # its event started the retraining pipeline run
        [event] = ws.events.read(kinds=["alert"], subject="churn")
        assert event.payload is not None and event.payload["alert_id"] == alert.id
        triggered = [r for r in ws.pipelines.runs() if r.trigger.startswith("event:alert")]
        [run] = triggered
        assert run.status == "FINISHED" and run.trigger == "event:alert:churn"
        assert run.trigger_detail is not None
        assert run.trigger_detail["payload"]["alert_id"] == alert.id
        assert run.created_at >= event.created_at

        # it registered a new version, which passed the gate and went to Production
        production = ws.models.get("models:/churn@production")
        assert production.run_id == run.tracking_run_id
        history = ws.models.history("churn")
        gates = [e for e in history if e.kind == "gate" and e.version == production.version]
        assert gates and all(g.verdict and g.verdict["passed"] for g in gates)
        promoted = [
            e
            for e in history
            if e.kind == "stage" and e.target == "Production" and e.version == production.version
        ]
        assert promoted and production.version > 1

        # its lineage: the new data version (as committed in git) and a code commit
        chain = ws.models.lineage("models:/churn@production")
        digests = {i["digest"] for i in chain["run"]["inputs"]}
        first, newest = summary["data_versions"]
        assert newest["hash"] in digests and first["hash"] not in digests
        pointer = git(root, "show", "HEAD:data/churn.loopml")
        assert newest["hash"] in pointer
        commit = chain["run"]["code"]["commit"]
        assert commit and git(root, "cat-file", "-t", commit).strip() == "commit"
        assert chain["gate"]["passed"] is True
    finally:
        ws.close()


@pytest.mark.slow
def test_the_json_summary_and_the_quiet_output(demo_run: DemoRun) -> None:
    root, summary, stderr = demo_run.root, demo_run.check(), demo_run.stderr
    assert stderr == ""  # --json: no narration, no progress, no alert log line
    assert set(summary["stages"]) == {
        "data",
        "features",
        "train",
        "serve",
        "monitor",
        "retrain",
        "rollback",
        "summary",
    }
    assert all(stage["ok"] for stage in summary["stages"].values())
    assert summary["alert"]["id"] and summary["retrain"]["pipeline_run_id"]
    assert summary["rollback"]["bad_version"] > summary["retrain"]["version"]
    actions = [s["action"] for s in summary["deployment_steps"]]
    assert "complete" in actions and actions[-1] == "abort"
    assert Path(summary["report"]).is_file()
    assert "<html" in Path(summary["report"]).read_text()[:500].lower()
    # the user can keep exploring: the ordinary commands read the workspace
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "models", "history", "churn", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")},
    )
    assert done.returncode == 0 and json.loads(done.stdout)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.slow
def test_piped_without_git_it_narrates_plainly_and_carries_on(tmp_path: Path) -> None:
    empty = tmp_path / "bin"  # a PATH with no git on it
    empty.mkdir()
    root = tmp_path / "ws"
    done = run_demo("--fast", "--dir", str(root), path=str(empty))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "\x1b[" not in out and "\r" not in out  # no colours, no spinner
    assert "git is not installed" in out
    lines = [line for line in out.splitlines() if line[:1] in ("✔", "✘")]
    assert [line.split()[1] for line in lines] == [f"{n}/8" for n in range(1, 9)]
    assert "Production churn/2" in out and "+ code" not in out
    assert not (root / ".git").exists()


@pytest.mark.parametrize("kind", ["file", "non-empty"])
def test_a_bad_dir_is_refused(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("not a folder\n")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("mine\n")
    done = run_demo("--fast", "--dir", str(target))
    assert done.returncode != 0
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert ("not a folder" if kind == "file" else "new or empty folder") in done.stderr
    assert (target.read_text() if kind == "file" else sorted(os.listdir(target))) in (
        "not a folder\n",
        ["notes.txt"],
    )


def test_the_narration_is_plain_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    narrator = Narrator.for_output(2, as_json=False)  # pytest's stdout is not a terminal
    assert narrator.mode == "plain"
    with narrator.stage(1, "data", "Generating") as stage:
        stage.doing("a spinner would say this")
        stage.result("3 files")
        stage.note("$ loopml data add data/churn")
    out = capsys.readouterr()
    assert "\x1b[" not in out.out + out.err and out.err == ""
    assert "1/2 data" in out.out and "3 files" in out.out and "spinner" not in out.out
    assert Narrator.for_output(2, as_json=True).mode == "quiet"


def test_a_stage_that_does_not_close_names_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_STORE_URL", "sqlite:///elsewhere.db")
    here = Path.cwd()
    demo = Demo(tmp_path, Narrator(1, "quiet"), fast=True)

    def broken(stage: Any) -> None:
        raise ValueError("no alert fired")

    demo.stages = [("monitor", "Monitoring", broken)]
    with pytest.raises(StageFailed, match="demo stage 'monitor' did not close: ValueError") as e:
        demo.run()
    assert str(e.value).endswith(f"no alert fired. The workspace is kept in {tmp_path}.")
    assert Path.cwd() == here  # back where it started, with the environment it had
    assert os.environ["LOOPML_STORE_URL"] == "sqlite:///elsewhere.db"


def test_the_data_is_deterministic_and_drifts_where_told() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    a = synth.customers(3, start, hours=4, per_hour=200)
    b = synth.customers(3, start, hours=4, per_hour=200)
    assert a.equals(b)
    assert a["event_ts"].min() >= start and a["event_ts"].max() < start + timedelta(hours=4)
    drifted = synth.customers(3, start, hours=4, per_hour=200, drifted=True)
    rise = drifted["monthly_charges"].mean() - a["monthly_charges"].mean()
    assert 25 < rise < 45
    assert (drifted["plan"] == "basic").mean() > (a["plan"] == "basic").mean() + 0.2


def test_plain_narration_survives_an_ascii_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stream)
    with Narrator(1, "plain").stage(1, "retrain", "Retraining") as stage:
        stage.result("alert → pipeline run → churn/2")
    stream.flush()
    assert stream.buffer.getvalue().startswith(b"? 1/1 retrain  alert ? pipeline run ? churn/2")  # type: ignore[attr-defined]


def test_the_data_module_examples() -> None:
    import doctest

    assert doctest.testmod(synth).failed == 0
