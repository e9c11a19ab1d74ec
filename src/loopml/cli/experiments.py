"""``loopml experiments``: list and rename the named groups runs belong to."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from loopml.cli.context import pass_workspace
from loopml.cli.render import console, emit_json, format_time, json_option, table, text

if TYPE_CHECKING:
    from loopml.workspace import Workspace


@click.group()
def experiments() -> None:
    """List and rename experiments (named groups of runs)."""


@experiments.command("list")
@json_option
@pass_workspace
def list_experiments(ws: Workspace, as_json: bool) -> None:
    """List experiments with their number of (not deleted) runs."""
    found = ws.experiments.list()
    if as_json:
        emit_json(
            [
                {
                    "id": e.id,
                    "name": e.name,
                    "run_count": e.run_count,
                    "created_at": e.created_at,
                    "description": e.description,
                }
                for e in found
            ]
        )
        return
    out = console()
    if not found:
        out.print("No experiments yet. A run creates its experiment when it starts.")
        return
    grid = table("ID", "Name", "Runs", "Created", "Description")
    for e in found:
        grid.add_row(
            str(e.id),
            text(e.name),
            str(e.run_count),
            format_time(e.created_at),
            text(e.description or ""),
        )
    out.print(grid)


@experiments.command("rename")
@click.argument("old")
@click.argument("new")
@pass_workspace
def rename(ws: Workspace, old: str, new: str) -> None:
    """Rename experiment OLD (a name, or an id) to NEW; its runs follow."""
    from loopml.exceptions import ExperimentNotFound

    try:
        renamed = ws.experiments.rename(old, new)
    except ExperimentNotFound:
        if not old.isdigit():
            raise
        renamed = ws.experiments.rename(int(old), new)
    click.echo(f"Renamed experiment {old!r} to {renamed.name!r} (id {renamed.id}).")
