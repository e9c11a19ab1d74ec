"""The CLI reference: every ``loopml`` command's usage, help and options as Markdown.

``python -m loopml.cli.reference > docs/cli.md`` writes the page the documentation site
serves; ``tests/docs/test_cli_reference.py`` fails when the committed page differs from what
the commands say now. The commands are walked the way ``loopml --help`` finds them (the lazy
groups of :data:`loopml.cli.main.COMMANDS` included); hidden commands and options are left
out, as ``--help`` leaves them out.
"""

from __future__ import annotations

import inspect
import re
import sys

import click

#: The command that regenerates the page, quoted by the page and by its test.
REGENERATE = "python -m loopml.cli.reference > docs/cli.md"

_CODE_SPAN = re.compile(r"(`[^`\n]*`)")
# `_` inside a word (LOOPML_STORE_URL) is never emphasis in Python-Markdown: left alone.
_MARKDOWN_SPECIAL = re.compile(r"[\\*<>&\[\]]|(?<!\w)_|_(?!\w)")


def render(root: click.Command | None = None) -> str:
    """The whole reference page for ``root`` (default: the ``loopml`` command)."""
    if root is None:
        from loopml.cli.main import cli

        root = cli
    ctx = click.Context(root, info_name="loopml")
    lines = [
        "# CLI reference",
        "",
        "Every `loopml` command with its usage, help and options, as `--help` shows them.",
        f"This page is generated from the commands themselves: `{REGENERATE}`",
        "(a test fails when it is out of date), so edit the commands' help, not this page.",
        "",
    ]
    lines += _section(root, ctx, level=2)
    return "\n".join(lines).rstrip("\n") + "\n"


def _section(command: click.Command, ctx: click.Context, level: int) -> list[str]:
    path = ctx.command_path
    lines = [f"{'#' * level} {path}", ""]
    if command.deprecated:
        lines += ["*Deprecated.*", ""]
    lines += ["```text", f"Usage: {path} {' '.join(command.collect_usage_pieces(ctx))}", "```", ""]
    lines += _help(command.help or "")
    options = [
        record
        for param in command.get_params(ctx)
        if isinstance(param, click.Option)
        and "--help" not in param.opts
        and (record := param.get_help_record(ctx)) is not None
    ]
    if options:
        lines += ["**Options**", ""]
        for names, text in options:
            entry = f"- `{names}`" + (f": {_escape(text)}" if text else "")
            lines.append(entry)
        lines.append("")
    if isinstance(command, click.Group):
        children = []
        for name in command.list_commands(ctx):
            child = command.get_command(ctx, name)
            if child is None or child.hidden:
                continue
            children.append((name, child))
        if children:
            lines += ["**Commands**", ""]
            for name, child in children:
                anchor = _slug(f"{path} {name}")
                summary = _escape(child.get_short_help_str(limit=200))
                lines.append(f"- [`{name}`](#{anchor}): {summary}")
            lines.append("")
        # `loopml` and its commands are headings of one level (the page's table of
        # contents); each group's commands one level deeper, the fourth at most.
        child_level = level if ctx.parent is None else min(level + 1, 4)
        for name, child in children:
            child_ctx = click.Context(child, info_name=name, parent=ctx)
            lines += _section(child, child_ctx, level=child_level)
    return lines


def _help(text: str) -> list[str]:
    """The help text in Markdown: paragraphs as text, click's ``\\b`` blocks verbatim."""
    text = inspect.cleandoc(text).partition("\f")[0]
    lines: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        if not paragraph.strip():
            continue
        if paragraph.startswith("\b") and _indented(paragraph[1:]):
            # Kept as written: examples and config, indented in the docstring.
            lines += ["```text", inspect.cleandoc(paragraph[1:].lstrip("\n")), "```", ""]
        else:  # prose (a `\b` paragraph that isn't indented is only kept from rewrapping)
            paragraph = paragraph.removeprefix("\b")
            lines += [_escape(" ".join(paragraph.split())), ""]
    return lines


def _indented(block: str) -> bool:
    lines = [line for line in block.splitlines() if line.strip()]
    return bool(lines) and all(line[0].isspace() for line in lines)


def _escape(text: str) -> str:
    """Markdown-safe text: characters Markdown would read as markup are escaped, except in
    `code spans`, which stay as they are."""
    parts = _CODE_SPAN.split(text)
    return "".join(
        part if index % 2 else _MARKDOWN_SPECIAL.sub(_escaped, part)
        for index, part in enumerate(parts)
    )


def _escaped(match: re.Match[str]) -> str:
    # Python-Markdown has no backslash escape for `<` (nor `&`): entities.
    char = match.group(0)
    return {"<": "&lt;", ">": "&gt;", "&": "&amp;"}.get(char, "\\" + char)


def _slug(heading: str) -> str:
    """The anchor MkDocs' table of contents gives a heading (``toc``'s default slugify)."""
    slug = re.sub(r"[^\w\s-]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", slug)


def main() -> None:
    """Print the reference page on stdout."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
