"""``loopml config``: the effective settings of a workspace and where each came from."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import WorkspaceState
from loopml.cli.render import console, emit_json, json_option, table, text

if TYPE_CHECKING:
    from loopml.config import Settings


@click.group()
def config() -> None:
    """Show the settings of the workspace (loopml.toml and LOOPML_* variables)."""


@config.command("show")
@click.argument("name", required=False, metavar="[SECTION | SECTION.KEY]")
@json_option
@click.pass_context
def show(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Print every setting (or one section, or one key) with its value and where it came
    from: default, loopml.toml, a LOOPML_<SECTION>_<KEY> variable, or an argument
    (--workspace URL).

    Every value is checked, [gates.NAME] policies included; the metadata store is not
    opened, so this works before `loopml init` has created it.
    """
    state = ctx.find_object(WorkspaceState)
    settings = _settings(state.location if state is not None else None)
    _check_gates(settings)
    rows = list(settings.effective())
    if name is not None:
        rows = _select(rows, name)
    if as_json:
        emit_json(
            {
                "root": str(settings.root),
                "config_file": str(settings.config_path) if settings.config_path else None,
                "settings": {key: {"value": value, "source": src} for key, value, src in rows},
            }
        )
        return
    where = settings.config_path or "no loopml.toml: URLs and variables only"
    click.echo(f"Workspace {settings.root} ({where})")  # not wrapped: a path to copy
    out = console()
    grid = table("Setting", "Value", "Source", no_wrap=("Setting", "Source"))
    for key, value, src in rows:
        grid.add_row(text(key), text(_show(value)), text(src))
    out.print(grid)


def _select(rows: list[tuple[str, Any, str]], name: str) -> list[tuple[str, Any, str]]:
    chosen = [row for row in rows if row[0] == name or row[0].startswith(name + ".")]
    if not chosen:
        import difflib

        from loopml.exceptions import InvalidInput

        keys = [key for key, _, _ in rows]
        close = difflib.get_close_matches(name, keys + sorted({k.split(".")[0] for k in keys}))
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise InvalidInput(
            f"No setting {name!r}{hint} `loopml config show` lists them all "
            "(section.key, e.g. tracking.flush_interval)."
        )
    return chosen


def _settings(location: str | None) -> Settings:
    """The settings ``loopml --workspace LOCATION`` would open, without opening any store."""
    from loopml.config import load_settings, url_settings

    if location and "://" in location:
        return url_settings(location)
    return load_settings(location or None)


def _check_gates(settings: Settings) -> None:
    if not settings.gates:
        return
    from loopml.config import CONFIG_FILE
    from loopml.registry.gates import GatePolicy

    path = settings.config_path or settings.root / CONFIG_FILE
    for name, table_ in settings.gates.items():
        if name == "prompts":  # [gates.prompts.NAME]: the eval gates of prompt labels
            from loopml.llm.evals.gate import EvalGatePolicy

            for prompt, policy in table_.items():
                EvalGatePolicy.from_dict(policy, f"{path} [gates.prompts.{prompt!r}]")
            continue
        GatePolicy.from_dict(dict(table_), f"{path} [gates.{name}]")


def _show(value: Any) -> str:
    """A value as one would write it in loopml.toml (strings bare)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "(none)"
    return json.dumps(value)
