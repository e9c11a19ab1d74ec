"""``loopml demo``: run the whole loop on generated data in a fresh workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from loopml.cli.context import CliError
from loopml.cli.render import emit_json, json_option


def _workspace_folder(given: Path | None) -> Path:
    """The folder to work in: ``--dir`` (new or empty) or a new temporary folder."""
    import tempfile

    if given is None:
        return Path(tempfile.mkdtemp(prefix="loopml-demo-")).resolve()
    if given.exists() and not given.is_dir():
        raise CliError(f"--dir {given}: not a folder. Give a new or empty folder for the demo.")
    if given.is_dir() and any(given.iterdir()):
        raise CliError(
            f"--dir {given} is not empty: give a new or empty folder, so the demo's workspace "
            "mixes with nothing else."
        )
    given.mkdir(parents=True, exist_ok=True)
    return given.resolve()


@click.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="A new or empty folder for the demo's workspace (default: a new temporary folder).",
)
@click.option(
    "--fast",
    is_flag=True,
    help="Less data, fewer windows and a shorter canary: under a minute, for CI.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the generated data.")
@json_option
def demo(folder: Path | None, fast: bool, seed: int, as_json: bool) -> None:
    """Run the whole loop on generated churn data in a fresh workspace: version data, build
    features, train through a gated pipeline, serve over HTTP, monitor a known drift, let
    the alert retrain the model, roll it out by canary, and roll a bad candidate back.

    The workspace is kept (a git repository with loopml.toml): explore it afterwards with
    `loopml runs list`, `loopml models history churn`, `loopml alerts list`, … Exits
    non-zero naming the stage that did not close.
    """
    from loopml.demo.loop import Demo
    from loopml.demo.narration import Narrator

    root = _workspace_folder(folder)
    narrator = Narrator.for_output(8, as_json=as_json)
    summary = Demo(root, narrator, fast=fast, seed=seed).run()
    if as_json:
        emit_json(summary)
        return
    narrator.say("")
    narrator.say(f"Done in {summary['seconds']:.0f}s. What happened:", style="bold")
    for line in story(summary):
        narrator.say(f"  {line}")
    narrator.say("Explore the workspace:", style="bold")
    narrator.say(f"  cd {root}")
    for command in summary["explore"]:
        narrator.say(f"  {command}")


def story(summary: dict[str, Any]) -> list[str]:
    """The loop in three lines, from the demo's summary."""
    alert, retrain, production = summary["alert"], summary["retrain"], summary["production"]
    commit = production.get("code_commit")
    return [
        f"drift at {summary['drift_time']} → alert #{alert['id']} (event "
        f"#{alert['event_id']}) → pipeline run {retrain['pipeline_run_id'][:8]} → "
        f"churn/{retrain['version']} → gate (dry run) → canary → gate → Production",
        f"Production churn/{production['version']} ← run {str(production['run_id'])[:8]} ← "
        f"data {production['data_version'][:12]}" + (f" + code {commit[:8]}" if commit else ""),
        f"monitoring report: {summary['report']}",
    ]
