"""`loopml pipelines …` and `loopml scheduler run` through click's test runner."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from loopml.workspace import Workspace
from terminal import run_on_terminal

FLOW = """
from datetime import date
from pathlib import Path

from loopml.pipelines import on_event, on_new_data, pipeline, task

@task
def load(day: date, rows: int) -> list[int]:
    return list(range(rows))

@task(retries=1)
def check(values: list[int], marker: str) -> list[int]:
    if marker and not Path(marker).exists():
        raise ValueError("no marker yet")
    return values

@task
def fit(values: list[int]) -> float:
    return sum(values) / max(len(values), 1)

@pipeline(partition="day", triggers=[on_new_data("inbox"), on_event("alert", subject="flow")])
def flow(day: date = date(2026, 11, 1), rows: int = 5, marker: str = ""):
    return fit(check(load(day, rows), marker))
"""


@pytest.fixture
def flow_file(workspace: Workspace) -> Path:
    path = workspace.root / "flow.py"
    path.write_text(textwrap.dedent(FLOW))
    return path


@pytest.mark.slow
def test_show_prints_the_dag_as_text_and_mermaid(
    invoke: Callable[..., Result], flow_file: Path
) -> None:
    result = invoke("pipelines", "show", "flow.py:flow")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "pipeline flow (3 tasks)"
    assert "  check  ← load, param marker" in lines
    assert "  partition key: day" in lines
    assert "  trigger: data:inbox (no such path: nothing to watch)" in lines
    mermaid = invoke("pipelines", "show", "flow.py", "--mermaid")
    assert mermaid.stdout.startswith("flowchart TD\n")
    assert "t0 --> t1" in mermaid.stdout


@pytest.mark.slow
def test_run_runs_show_run_and_json(
    invoke: Callable[..., Result], invoke_json: Callable[..., object], flow_file: Path
) -> None:
    result = invoke("pipelines", "run", "flow.py", "--param", "rows=4", "-p", "day=2026-11-02")
    assert result.exit_code == 0, result.output
    assert "FINISHED" in result.stdout and "3 completed" in result.stdout
    listed = invoke_json("pipelines", "runs")
    assert isinstance(listed, list) and len(listed) == 1
    run = listed[0]
    assert run["partition"] == "2026-11-02" and run["params"]["rows"] == 4
    assert run["task_counts"] == {"COMPLETED": 3}
    shown = invoke("pipelines", "show-run", run["id"][:6])
    assert shown.exit_code == 0, shown.output
    assert "partition" in shown.stdout and "fit" in shown.stdout
    detail = invoke_json("pipelines", "show-run", run["id"])
    assert isinstance(detail, dict)
    assert [t["node"] for t in detail["tasks"]] == ["load", "check", "fit"]
    assert detail["tasks"][2]["output_format"] == "pickle"
    mermaid = invoke("pipelines", "show-run", run["id"], "--mermaid")
    assert "class t2 completed" in mermaid.stdout
    again = invoke("pipelines", "run", "flow.py", "-p", "rows=4", "-p", "day=2026-11-02")
    assert "3 cached" in again.stdout
    forced = invoke("pipelines", "run", "flow.py", "-p", "rows=4", "--no-cache", "-x", "inline")
    assert "3 completed" in forced.stdout


@pytest.mark.slow
def test_failed_run_exits_1_and_resume_finishes_it(
    invoke: Callable[..., Result],
    invoke_json: Callable[..., object],
    error_lines: Callable[[Result], list[str]],
    flow_file: Path,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker"
    result = invoke("pipelines", "run", "flow.py", "-p", f"marker={marker}")
    assert result.exit_code == 1
    assert "error: Pipeline run" in result.stderr
    assert "task 'check' failed: ValueError: no marker yet" in result.stderr
    assert "FAILED" in result.stdout and "SKIPPED" in result.stdout
    (run,) = invoke_json("pipelines", "runs", "--status", "failed")  # type: ignore[misc]
    shown = invoke("pipelines", "show-run", run["id"])
    assert "Task check failed" in shown.stdout and "ValueError: no marker yet" in shown.stdout
    marker.touch()
    resumed = invoke("pipelines", "resume", run["id"][:8])
    assert resumed.exit_code == 0, resumed.output
    assert "FINISHED" in resumed.stdout and "1 completed" not in resumed.stdout
    detail = invoke_json("pipelines", "show-run", run["id"])
    assert detail["attempt"] == 2  # type: ignore[index]
    assert [t["attempts"] for t in detail["tasks"]] == [1, 1, 1]  # type: ignore[index]
    again = invoke("pipelines", "resume", run["id"][:8])
    assert again.exit_code == 0 and "finished already: nothing to resume" in again.stderr


@pytest.mark.slow
def test_backfill_and_replacing_partitions(
    invoke: Callable[..., Result], invoke_json: Callable[..., object], flow_file: Path
) -> None:
    args = ("pipelines", "backfill", "flow.py", "--start", "2026-10-01", "--end", "2026-10-07")
    result = invoke(*args, "--parallel", "3", "-p", "rows=3")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("FINISHED") == 7
    again = invoke(*args, "-p", "rows=3")
    assert again.stdout.count("0 ran, 3 reused") == 7
    current = invoke_json("pipelines", "runs", "--current")
    assert isinstance(current, list) and len(current) == 7
    assert len(invoke_json("pipelines", "runs")) == 14  # type: ignore[arg-type]
    assert {r["trigger"] for r in current} == {"backfill"}


@pytest.mark.slow
def test_scheduler_run_once_starts_triggered_runs(
    invoke: Callable[..., Result],
    invoke_json: Callable[..., object],
    flow_file: Path,
    workspace: Workspace,
) -> None:
    (workspace.root / "inbox").mkdir()
    (workspace.root / "inbox" / "a.csv").write_text("1\n")
    first = invoke("scheduler", "run", "flow.py:flow", "--once")
    assert "0 runs triggered" in first.stdout  # first sight: the starting point
    (workspace.root / "inbox" / "b.csv").write_text("2\n")
    result = invoke("scheduler", "run", "flow.py:flow", "--once")
    assert result.exit_code == 0, result.output
    assert "claimed run" in result.stdout and "FINISHED" in result.stdout
    assert "1 run triggered" in result.stdout
    # The pipelines to watch can come from loopml.toml's [scheduler] table instead.
    with (workspace.root / "loopml.toml").open("a") as fh:
        fh.write('\n[scheduler]\npipelines = ["flow.py:flow"]\n')
    configured = invoke("scheduler", "run", "--once")
    assert configured.exit_code == 0, configured.output
    assert "watching 1 pipeline" in configured.stdout and "flow" in configured.stdout
    quiet = invoke("scheduler", "run", "flow.py:flow", "--for", "1.5s", "--interval", "1s")
    assert "0 runs triggered" in quiet.stdout
    (run,) = invoke_json("pipelines", "runs")  # type: ignore[misc]
    assert run["trigger"] == "data:inbox"


def test_scheduler_reads_pipelines_from_the_config(
    invoke: Callable[..., Result],
    error_lines: Callable[[Result], list[str]],
    flow_file: Path,
    workspace: Workspace,
) -> None:
    assert "No pipelines to watch" in error_lines(invoke("scheduler", "run", "--once"))[0]
    (workspace.root / "inbox").mkdir()
    config = workspace.root / "loopml.toml"
    config.write_text(config.read_text() + '\n[scheduler]\npipelines = ["flow.py:flow"]\n')
    result = invoke("scheduler", "run", "--once")
    assert result.exit_code == 0, result.output
    assert "watching 1 pipeline(s): flow" in result.stdout


@pytest.mark.slow
def test_bad_input_is_one_error_line(
    invoke: Callable[..., Result],
    error_lines: Callable[[Result], list[str]],
    flow_file: Path,
) -> None:
    assert "module 'no_such'" in error_lines(invoke("pipelines", "run", "no_such:flow"))[0]
    assert "'nope' in" in error_lines(invoke("pipelines", "show", "flow.py:nope"))[0]
    (wrong_type,) = error_lines(invoke("pipelines", "run", "flow.py", "-p", "rows=x"))
    assert "must be an int: 'x' is not (invalid literal" in wrong_type
    assert ".." not in wrong_type
    assert "No pipeline run" in error_lines(invoke("pipelines", "show-run", "abcdef12"))[0]
    assert "Unknown executor" in error_lines(invoke("pipelines", "run", "flow.py", "-x", "gpu"))[0]
    bad = invoke("pipelines", "run", "flow.py", "-p", "rows")
    assert bad.exit_code == 2 and "NAME=VALUE" in bad.stderr
    bad_for = invoke("scheduler", "run", "flow.py", "--for", "soon")
    assert bad_for.exit_code == 2 and "not a duration" in bad_for.stderr
    result = invoke("pipelines", "runs")
    assert "No pipeline runs yet." in result.stdout
    assert json.loads(invoke("pipelines", "runs", "--json").stdout) == []


BODIES = {
    "raises.py": """
from loopml.pipelines import pipeline, task

@task
def a(n: int) -> int:
    return n + 1

@pipeline
def raises(n: int = 1):
    a(n)
    raise KeyError("in body")
""",
    "loop.py": """
from loopml.pipelines import pipeline, task

@task
def a(n: int) -> int:
    return n + 1

@pipeline
def itself(n: int = 1):
    a(n)
    return outer(n=n)

@pipeline
def outer(n: int = 1):
    return itself(n=n)
""",
    # found while the module loads (the DAG is drawn then): the whole file is refused
    "positional.py": """
from loopml.pipelines import pipeline, task

@task
def a(n: int) -> int:
    return n + 1

@pipeline
def inner(n: int = 1):
    return a(n)

@pipeline
def positional(n: int = 1):
    return inner(n)
""",
    "computes.py": """
from loopml.pipelines import pipeline, task

@task
def a() -> int:
    return 1

@pipeline
def f():
    return a() + 1
""",
}


@pytest.mark.slow
def test_a_pipeline_body_that_fails_is_one_error_line(
    invoke: Callable[..., Result],
    error_lines: Callable[[Result], list[str]],
    workspace: Workspace,
) -> None:
    for name, source in BODIES.items():
        (workspace.root / name).write_text(source)
    for command in ("run", "show"):
        (raised,) = error_lines(invoke("pipelines", command, "raises.py:raises", "-p", "n=2"))
        assert raised.startswith("error: Building pipeline 'raises' failed: KeyError: 'in body'")
        assert "(raises.py, line 11)" in raised and "inside a @task" in raised
    (loop,) = error_lines(invoke("pipelines", "run", "loop.py:outer"))
    assert "Pipeline 'outer' calls itself (outer -> itself -> outer)" in loop
    (positional,) = error_lines(invoke("pipelines", "run", "positional.py:positional"))
    assert "Pipeline 'inner' takes its params by name: call inner(n=...) (line 14)" in positional
    (math,) = error_lines(invoke("pipelines", "show", "computes.py:f"))
    assert "Cannot compute with the output of task 'a'" in math and "(line 10)" in math
    bogus = invoke("pipelines", "runs", "--status", "bogus")
    assert bogus.exit_code == 2 and "'bogus' is not one of" in bogus.stderr


CONSTANT_FLOW = """
from loopml.pipelines import pipeline, task

K = {k}

@task
def base() -> int:
    return 1

@task
def scaled(x: int) -> int:
    return x * K

@pipeline
def consts():
    return scaled(base())
"""


@pytest.mark.slow
def test_run_explain_cache_names_the_changed_constant(workspace: Workspace) -> None:
    """A changed module-level constant reruns the task that uses it, and --explain-cache
    says so (each run in its own process, as a user runs it)."""
    flow = workspace.root / "consts.py"

    def run(k: int, *extra: str) -> subprocess.CompletedProcess[str]:
        flow.write_text(CONSTANT_FLOW.format(k=k))
        return subprocess.run(
            [sys.executable, "-m", "loopml.cli", "pipelines", "run", "consts.py", *extra],
            cwd=workspace.root,
            capture_output=True,
            text=True,
            check=True,
        )

    run(2)
    again = run(2, "--explain-cache")
    assert "2 cached" in again.stdout
    assert "  scaled: reused: its code and inputs are unchanged" in again.stdout
    changed = run(5, "--explain-cache", "--json")
    detail = json.loads(changed.stdout)
    assert [t["status"] for t in detail["tasks"]] == ["CACHED", "COMPLETED"]
    (base, scaled) = detail["cache"]
    assert base["reason"].startswith("reused")
    assert scaled["changes"] == ["global consts.K changed"]


@pytest.mark.slow
def test_scheduler_refuses_a_busy_loop_and_a_missing_data_path(
    invoke: Callable[..., Result],
    invoke_json: Callable[..., object],
    error_lines: Callable[[Result], list[str]],
    flow_file: Path,
    workspace: Workspace,
) -> None:
    (spin,) = error_lines(invoke("scheduler", "run", "flow.py", "--interval", "0s"))
    assert spin.startswith("error: --interval 0s is too short: use at least 1s")
    # flow.py watches on_new_data("inbox"), which is not there:
    (missing,) = error_lines(invoke("scheduler", "run", "flow.py", "--once"))
    assert "on_new_data watches a path that is not there: inbox (pipeline flow" in missing
    shown = invoke("pipelines", "show", "flow.py")
    assert "  trigger: data:inbox (no such path: nothing to watch)" in shown.stdout
    as_json = invoke_json("pipelines", "show", "flow.py")
    assert as_json["name"] == "flow" and as_json["partition"] == "day"
    assert {"id": "data:inbox", "kind": "data", "missing": True} in as_json["triggers"]
    assert [t["node"] for t in as_json["tasks"]] == ["load", "check", "fit"]
    assert as_json["tasks"][1]["depends_on"] == ["load"]
    assert {"name": "rows", "default": 5} in as_json["params"]
    (workspace.root / "inbox").mkdir()
    assert invoke("scheduler", "run", "flow.py", "--once").exit_code == 0


def test_a_backfill_of_more_than_1000_runs_needs_yes(
    invoke: Callable[..., Result],
    invoke_json: Callable[..., object],
    error_lines: Callable[[Result], list[str]],
    flow_file: Path,
) -> None:
    args = ("pipelines", "backfill", "flow.py", "--start", "2020-01-01", "--end", "2026-12-31")
    (refused,) = error_lines(invoke(*args))
    assert refused == (
        "error: This backfill would start 2,557 runs of flow (one per day from 2020-01-01 to "
        "2026-12-31). Pass --yes to start them, or narrow --start/--end."
    )
    assert invoke_json("pipelines", "runs") == []


BROKEN = {
    "syntax.py": ("from loopml.pipelines import pipeline\n\ndef flow(:\n    pass\n", 3),
    "imports.py": ("from loopml.pipelines import pipeline\nimport no_such_module_here\n", 2),
    # loopml's own check fails: the line is the user's decorator, not loopml's raise
    "cron.py": (
        "from loopml.pipelines import pipeline, task\n\n@task\ndef a() -> int:\n"
        "    return 1\n\n@pipeline(schedule='not a cron')\ndef flow():\n    a()\n",
        7,
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize(
    "command",
    [
        ("pipelines", "run"),
        ("pipelines", "show"),
        ("pipelines", "backfill", "--start", "2026-01-01", "--end", "2026-01-02"),
        ("scheduler", "run", "--once"),
    ],
    ids=["run", "show", "backfill", "scheduler"],
)
@pytest.mark.slow
def test_a_broken_pipeline_module_is_one_error_line(
    invoke: Callable[..., Result],
    error_lines: Callable[[Result], list[str]],
    workspace: Workspace,
    name: str,
    command: tuple[str, ...],
) -> None:
    source, line = BROKEN[name]
    (workspace.root / name).write_text(source)
    group, sub, *options = command
    (message,) = error_lines(invoke(group, sub, name, *options))
    assert message.startswith(f"error: Cannot load pipeline module {workspace.root / name}: ")
    assert f"(line {line})" in message
    if name == "syntax.py":
        assert "SyntaxError: invalid syntax: 'def flow(:'" in message
    elif name == "cron.py":
        assert "InvalidSchedule: Not a cron expression: 'not a cron'" in message
    else:
        assert "ModuleNotFoundError: No module named 'no_such_module_here'" in message
        assert "Install 'no_such_module_here' or fix the import." in message


@pytest.mark.slow
def test_backfill_shows_progress_on_a_terminal_and_none_when_piped(
    workspace: Workspace, flow_file: Path
) -> None:
    import os

    args = [sys.executable, "-m", "loopml.cli", "pipelines", "backfill", "flow.py"]
    args += ["--start", "2026-10-01", "--end", "2026-10-06"]
    env = {**os.environ, "COLUMNS": "150", "TERM": "xterm-256color"}
    seen = run_on_terminal(args, cwd=workspace.root, columns=150)
    assert "Backfilling flow" in seen and "/6 runs" in seen
    piped = subprocess.run(args, cwd=workspace.root, capture_output=True, text=True, env=env)
    assert piped.returncode == 0, piped.stderr
    assert "Backfilling" not in piped.stdout + piped.stderr
    assert piped.stdout.count("FINISHED") == 6
