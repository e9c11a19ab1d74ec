"""Fixtures for the command line: a workspace in the current directory, a runner, and a
factory of runs logged through the Python API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from loopml.cli.main import cli
from loopml.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A fresh workspace that is also the current directory."""
    ws = Workspace.init(tmp_path / "project")
    monkeypatch.chdir(ws.root)
    yield ws
    ws.close()


@pytest.fixture
def invoke() -> Callable[..., Result]:
    """``invoke("runs", "list")`` → click's Result (stdout and stderr kept apart)."""
    runner = CliRunner()

    def run(*args: str, **kwargs: Any) -> Result:
        return runner.invoke(cli, list(args), prog_name="loopml", catch_exceptions=False, **kwargs)

    return run


@pytest.fixture
def invoke_json(invoke: Callable[..., Result]) -> Callable[..., Any]:
    """``invoke_json("runs", "list")`` → the parsed stdout of ``loopml runs list --json``."""

    def run(*args: str) -> Any:
        result = invoke(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return run


@pytest.fixture
def make_run(workspace: Workspace) -> Callable[..., str]:
    """``make_run(experiment=..., params=..., metrics=..., tags=..., texts=..., fail=...)``
    logs a finished (or failed) run without its environment and returns its id."""

    def make(
        experiment: str = "churn",
        name: str | None = None,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
        texts: dict[str, str] | None = None,
        fail: bool = False,
    ) -> str:
        run = workspace.start_run(experiment, name=name, tags=tags, log_environment=False)
        try:
            with run:
                if params:
                    run.log_params(params)
                if metrics:
                    run.log_metrics(metrics)
                for artifact, content in (texts or {}).items():
                    run.log_text(content, artifact)
                if fail:
                    raise RuntimeError("the loss went to the moon")
        except RuntimeError:
            pass
        return run.id

    return make


@pytest.fixture
def error_lines() -> Callable[[Result], list[str]]:
    """``error_lines(result)`` → stderr lines of a failed command, checked to be an
    ``error:`` message (exit 1) without a traceback."""

    def check(result: Result) -> list[str]:
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert lines and lines[0].startswith("error: "), result.stderr
        return lines

    return check
