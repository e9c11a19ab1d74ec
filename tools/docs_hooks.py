"""MkDocs hooks of the documentation site (``hooks:`` in mkdocs.yml).

loopml's docstrings are written for Sphinx-style reading, and the API reference renders them
as Markdown, where two of their habits come out wrong. These hooks fix them in rendering
only; the docstrings stay as they are:

- a cross-reference role (``:class:`Workspace```) would show as ``:class:`` before the
  name: the role is dropped and the name kept as code (``~a.b.C`` shows ``C``, as in Sphinx);
- a doctest (``>>> ws = Workspace.open()``) would be a quotation (``>`` starts one in
  Markdown): its lines, with their output up to a blank line, become a ``pycon`` code block.
"""

from __future__ import annotations

import re
from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|const):<code>(~?)([^<]*)</code>")
_PROMPT = re.compile(r"^(?P<indent>\s*)>>>( |$)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _name(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


class _Doctests(Preprocessor):
    """Doctest lines outside code blocks become fenced ``pycon`` blocks."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        in_fence = False
        i = 0
        while i < len(lines):
            line = lines[i]
            if _FENCE.match(line):
                in_fence = not in_fence
            prompt = None if in_fence else _PROMPT.match(line)
            if prompt is None:
                out.append(line)
                i += 1
                continue
            indent = prompt.group("indent")
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += [f"{indent}```pycon", *(f"{indent}{b}" for b in block), f"{indent}```", ""]
        return out


class _DoctestExtension(Extension):
    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 (Markdown's API)
        # Before the fenced-code preprocessors (superfences: 32), which then render it.
        md.preprocessors.register(_Doctests(md), "loopml_doctests", 40)


def on_config(config: Any, **kwargs: Any) -> Any:
    """Every Markdown renderer of the site (pages, and mkdocstrings' docstrings, which share
    this list) gets the doctest preprocessor."""
    config.markdown_extensions.append(_DoctestExtension())
    return config


def on_page_content(html: str, **kwargs: Any) -> str:
    """Sphinx roles in the rendered page become plain code."""
    return _ROLE.sub(_name, html)
