"""MkDocs hooks of the documentation site (``hooks:`` in mkdocs.yml).

loopml's docstrings cross-reference in Sphinx's roles (``:class:`Workspace```); the API
reference renders them as Markdown, where a role would show as ``:class:`` before the name.
This hook drops the role and keeps the name as code (``~a.b.C`` shows ``C``, as in Sphinx).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|const):<code>(~?)([^<]*)</code>")


def _name(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Sphinx roles in the rendered page become plain code."""
    return _ROLE.sub(_name, html)
