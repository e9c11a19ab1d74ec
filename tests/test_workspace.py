"""The workspace facade: one namespace per area, one meaning of ``workspace=``, and the
module-level functions' types as mypy sees them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import loopml
import loopml.data
from loopml.data.namespace import Data
from loopml.events import Events
from loopml.exceptions import InvalidInput
from loopml.pipelines import emit_event, list_events, pipeline, run_pipeline, task
from loopml.pipelines.namespace import Pipelines
from loopml.registry import Models
from loopml.tracking import Experiments, Runs
from loopml.validation.contracts import Schemas
from loopml.workspace import Workspace, resolve_workspace


@task
def double(x: int) -> int:
    return 2 * x


@pipeline
def doubling(x: int) -> int:
    return double(x)


def test_each_area_has_one_namespace_made_once(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path)
    kinds = {
        "runs": Runs,
        "experiments": Experiments,
        "models": Models,
        "schemas": Schemas,
        "data": Data,
        "pipelines": Pipelines,
        "events": Events,
    }
    for name, kind in kinds.items():
        namespace = getattr(ws, name)
        assert isinstance(namespace, kind), name
        assert getattr(ws, name) is namespace, f"ws.{name} is made once"
    ws.close()


def test_namespaces_cover_the_loop(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path)
    with ws.runs.start(experiment="facade", log_environment=False) as run:
        ws.runs.log_metric("acc", 0.5)
        ws.runs.log_params({"lr": 0.1})
    assert "facade" in [e.name for e in ws.experiments.list()]
    assert ws.experiments.get("facade").name == "facade"
    record = ws.runs.get(run.id)
    assert record.metrics == {"acc": 0.5} and record.params == {"lr": "0.1"}
    assert [r["run_id"] for r in ws.runs.records(filter="metrics.acc > 0.4")] == [run.id]
    assert list(ws.runs.search()["run_id"]) == [run.id]

    version = ws.models.register("m", _Identity(), run_id=run.id)
    assert ws.models.get("models:/m/1").version == version.version == 1
    ws.models.set_alias("m", "champion", 1)
    assert ws.models.load("models:/m@champion").predict([3]) == [3]

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x\n1\n")
    added = ws.data.add(tmp_path / "data")
    assert added.hash == loopml.data.add(tmp_path / "data", workspace=ws).hash
    assert [s.path for s in ws.data.status()] == [s.path for s in loopml.data.status(workspace=ws)]

    result = ws.pipelines.run(doubling, params={"x": 4}, executor="inline")
    assert result.result == 8
    assert [r.id for r in ws.pipelines.runs(pipeline="doubling")] == [result.id]

    first = ws.events.emit("alert", subject="churn", payload={"psi": 0.3})
    kinds = [e.kind for e in ws.events.read()]
    assert "run.finished" in kinds and "model.registered" in kinds and kinds[-1] == "alert"
    assert ws.events.last_id() == first
    assert [e.id for e in ws.events.read(after_id=first - 1, kinds="alert")] == [first]
    ws.close()


class _Identity:
    def predict(self, rows: list[int]) -> list[int]:
        return rows


def test_workspace_argument_means_the_same_everywhere(tmp_path: Path) -> None:
    """A Workspace or a path, accepted alike by tracking-free functions of every area."""
    ws = Workspace.init(tmp_path)
    (tmp_path / "f.txt").write_text("hello")
    by_path = loopml.data.add(tmp_path / "f.txt", workspace=str(tmp_path))
    by_ws = loopml.data.add(tmp_path / "f.txt", workspace=ws)
    assert by_path.hash == by_ws.hash

    run = run_pipeline(doubling, params={"x": 1}, executor="inline", workspace=str(tmp_path))
    assert run.result == 2
    event = emit_event("alert", workspace=tmp_path)
    assert [e.id for e in list_events("alert", workspace=ws)] == [event]
    assert [r.id for r in ws.pipelines.runs()] == [run.id]

    assert resolve_workspace(ws) is ws
    opened = resolve_workspace(tmp_path)
    assert resolve_workspace(str(tmp_path)) is opened, "a path is opened once per process"
    ws.close()


def test_a_wrong_workspace_argument_is_a_clear_error(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path)
    with pytest.raises(InvalidInput, match="workspace= takes a Workspace or the path"):
        resolve_workspace(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="workspace= takes a Workspace or the path"):
        loopml.data.status(workspace=3.5)  # type: ignore[arg-type]
    other = Workspace.open(tmp_path)
    with pytest.raises(InvalidInput, match=r"Data\.status already acts on"):
        ws.data.status(workspace=other)
    ws.close()


def test_workspace_shortcuts_are_the_namespace_methods(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path)
    assert ws.start_run.__func__ is Runs.start  # type: ignore[attr-defined]
    assert ws.get_model_version.__func__ is Models.get  # type: ignore[attr-defined]
    assert Workspace.start_run.__doc__ == Runs.start.__doc__
    assert loopml.start_run.__name__ == "start_run"
    assert "ws.runs.start" in (loopml.start_run.__doc__ or "") or "runs.start" in (
        loopml.start_run.__doc__ or ""
    )
    ws.close()


@pytest.mark.slow
def test_mypy_checks_the_module_level_functions_and_namespaces(tmp_path: Path) -> None:
    """The forwarding keeps each signature: a wrong argument type is a mypy error."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        textwrap.dedent(
            """
            import loopml
            from loopml import Workspace

            loopml.log_metric("loss", "high")
            loopml.start_run(nested="yes")
            ws = Workspace.open()
            ws.runs.start(experiment=3)
            ws.models.promote("m", version="2")
            ws.data.add(path=3)
            ws.pipelines.run("p", params=[1])
            ws.log_param()
            reveal_type(loopml.search_runs)
            """
        )
    )
    good = tmp_path / "good.py"
    good.write_text(
        textwrap.dedent(
            """
            import loopml
            from loopml import Workspace

            loopml.log_metric("loss", 0.5, step=3)
            with loopml.start_run(experiment="e", nested=True) as run:
                run.log_param("a", 1)
            ws = Workspace.open()
            ws.runs.start(experiment="e").end()
            ws.data.add("data/raw", link="copy")
            ws.pipelines.run("p.py:train", params={"day": "2026-11-01"}, executor="threads")
            """
        )
    )
    # One run over both files (mypy reads loopml's sources once: ~25 s a run on a slow VM).
    command = [sys.executable, "-m", "mypy", "--cache-dir", os.devnull, "--strict"]
    found = subprocess.run(
        [*command, str(good), str(bad)], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert not [line for line in found.stdout.splitlines() if "good.py" in line], found.stdout
    lines = found.stdout.splitlines()
    errors = {
        int(line.split(":")[1])
        for line in lines
        if line.startswith("bad.py:") and ": error:" in line
    }
    assert errors >= {5, 6, 8, 9, 10, 11, 12}, found.stdout
    assert (
        'bad.py:5: error: Argument 2 has incompatible type "str"; expected "float"' in found.stdout
    )
    reveal = next(line for line in lines if "Revealed type" in line)
    assert "filter: str | None =" in reveal and "DataFrame" in reveal
