"""docs/cli.md is what `python -m loopml.cli.reference` prints now: a command, option or help
text changed without regenerating the page fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from loopml.cli.main import cli
from loopml.cli.reference import REGENERATE, render

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_page_is_up_to_date() -> None:
    committed = (DOCS / "cli.md").read_text(encoding="utf-8")
    if committed != render():
        raise AssertionError(f"docs/cli.md is out of date: run `{REGENERATE}` and commit it")


def test_every_visible_command_has_a_section() -> None:
    page = render()
    ctx = click.Context(cli, info_name="loopml")

    def walk(command: click.Command, path: str) -> list[str]:
        paths = [path]
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                child = command.get_command(ctx, name)
                if child is not None and not child.hidden:
                    paths += walk(child, f"{path} {name}")
        return paths

    paths = walk(cli, "loopml")
    assert len(paths) > 100
    for path in paths:
        assert f"# {path}\n" in page, path


def test_options_and_help_come_from_the_commands() -> None:
    page = render()
    section = page.split("\n## loopml runs\n", 1)[1].split("\n## loopml scheduler\n", 1)[0]
    assert "### loopml runs list" in section
    assert "Usage: loopml runs list [OPTIONS]" in section
    assert "`--json`" in section  # every listing takes --json
    assert "- `--help`" not in page  # click's own option is left out


def test_module_prints_the_page() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli.reference"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout == render()
    assert done.stderr == ""


def test_help_text_is_markdown_safe() -> None:
    from loopml.cli.reference import _escape, _help

    # Python-Markdown would read these as a link, a tag and emphasis; code spans stay as written.
    assert _escape("[1<=x<=256] a *b* `x <y> *z*` LOOPML_STORE_URL _x_") == (
        "\\[1&lt;=x&lt;=256\\] a \\*b\\* `x <y> *z*` LOOPML_STORE_URL \\_x\\_"
    )
    indented = "Intro.\n\n\b\n  loopml data add data/raw\n  loopml data status\n"
    assert _help(indented) == [
        "Intro.",
        "",
        "```text",
        "loopml data add data/raw\nloopml data status",
        "```",
        "",
    ]
    prose = "Intro.\n\n\bA paragraph kept\nfrom rewrapping.\n"
    assert _help(prose) == ["Intro.", "", "A paragraph kept from rewrapping.", ""]
