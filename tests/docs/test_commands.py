"""Every ``loopml …`` line in a shell block of the documentation is a command that exists,
with options it takes: parsed by the CLI itself (nothing runs), so a renamed command or
option fails here even on the pages whose blocks can't run in a test (a server, a paid API).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from loopml.cli.main import cli

DOCS = Path(__file__).resolve().parents[2] / "docs"
#: Generated from the commands (tests/docs/test_cli_reference.py checks it).
GENERATED = {"cli.md"}
PAGES = sorted(p.name for p in DOCS.glob("*.md") if p.name not in GENERATED)

_BLOCK = re.compile(r"^[ \t]*```(bash|console|shell|sh)\b[^\n]*\n(.*?)^[ \t]*```", re.M | re.S)


def command_lines(text: str) -> list[str]:
    """The ``loopml …`` command lines of the shell blocks of a page (``\\`` continuations
    joined; ``[--option VALUE]``, usage notation for an optional part, taken as given; lines
    built with ``$(…)`` left out: their arguments are only known when run)."""
    found = []
    for lang, body in _BLOCK.findall(text):
        joined = re.sub(r"\s*\\\n\s*", " ", body)
        for line in joined.splitlines():
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            # One command a line: stop at a pipe or a list operator.
            code = re.split(r"\s(?:\||&&|\|\|)\s|;\s", line.strip(), maxsplit=1)[0]
            code = re.sub(r"\[(-[^\]]*)\]", r"\1", code)
            if code.startswith("loopml ") and "$(" not in code:
                found.append(code)
    return found


def parse(argv: list[str]) -> None:
    """Parse ``loopml ARGV`` down to its leaf command, as click would before running it."""
    command: click.Command = cli
    name, args = "loopml", argv
    parent: click.Context | None = None
    while True:
        try:
            ctx = command.make_context(name, list(args), parent=parent)
        except click.exceptions.Exit:
            return  # --help, --version: they exist
        except (click.BadParameter, click.MissingParameter):
            return  # a placeholder such as VERSION or RUN: the command and its options exist
        if not isinstance(command, click.Group):
            return
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            return
        sub_name, sub, sub_args = command.resolve_command(ctx, rest)
        assert sub is not None and sub_name is not None
        command, name, args, parent = sub, sub_name, sub_args, ctx


@pytest.mark.parametrize("page", PAGES)
def test_command_lines_parse(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    problems = []
    for line in command_lines(text):
        try:
            parse(shlex.split(line, comments=True)[1:])
        except click.UsageError as exc:
            problems.append(f"{line}\n    {exc.format_message()}")
    assert not problems, f"docs/{page}: commands the CLI does not take:\n" + "\n".join(problems)


def test_command_lines_are_found() -> None:
    text = (
        "```bash\nloopml runs list  # newest first\nMLFLOW_TRACKING_URI=x python t.py\n"
        "loopml models promote churn 2 \\\n  --to staging\n```\n\n"
        "```console\n$ loopml data status | head\nloopml output line\n"
        "$ loopml runs show $(loopml runs list --json)\n"
        "$ loopml evals calibrate j.yaml [--min-kappa 0.6]; echo $?\n```\n"
    )
    assert command_lines(text) == [
        "loopml runs list  # newest first",
        "loopml models promote churn 2 --to staging",
        "loopml data status",
        "loopml evals calibrate j.yaml --min-kappa 0.6",
    ]


def test_a_wrong_option_or_command_is_caught() -> None:
    with pytest.raises(click.NoSuchOption):
        parse(["runs", "list", "--no-such-option"])
    with pytest.raises(click.UsageError, match="No such command"):
        parse(["runs", "nosuch"])
    parse(["models", "promote", "churn", "VERSION", "--to", "staging"])
    parse(["-w", "/srv/ml", "server", "--port", "8080"])
