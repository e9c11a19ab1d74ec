"""What changed between two versions of a prompt: a unified diff of the templates, then of
the model, params and schema where they differ.

>>> print(diff_versions(a, b))  # doctest: +SKIP
--- support/answer/3
+++ support/answer/4
@@ -1 +1 @@
-Answer briefly: {{ question }}
+Answer briefly and politely: {{ question }}
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from loopml.llm.prompts.versions import PromptVersion, get_prompt
from loopml.workspace import WorkspaceLike, resolve_workspace


def _template_lines(version: PromptVersion) -> list[str]:
    if isinstance(version.template, str):
        return version.template.splitlines()
    lines: list[str] = []
    for number, message in enumerate(version.template, start=1):
        name = f" name={message['name']}" if message.get("name") else ""
        lines.append(f"[message {number}: {message['role']}{name}]")
        lines.extend(str(message["content"]).splitlines())
    return lines


def _json_lines(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def diff_versions(a: PromptVersion, b: PromptVersion) -> str:
    """A unified diff from ``a`` to ``b`` (empty when their content is the same)."""
    parts: list[str] = []
    sections = [
        ("", _template_lines(a), _template_lines(b)),
        (" model", [a.model or "(none)"], [b.model or "(none)"]),
        (" params", _json_lines(dict(a.params)), _json_lines(dict(b.params))),
        (" schema", _json_lines(a.schema), _json_lines(b.schema)),
    ]
    for what, before, after in sections:
        if before == after:
            continue
        parts.extend(
            difflib.unified_diff(before, after, f"{a.ref}{what}", f"{b.ref}{what}", lineterm="")
        )
    return "\n".join(parts)


def diff(name: str, a: int | str, b: int | str, *, workspace: WorkspaceLike = None) -> str:
    """The unified diff between two versions of ``name``, each a version number or a label
    (``diff("support/answer", 3, "production")``)."""
    ws = resolve_workspace(workspace)

    def ref(which: int | str) -> str:
        if isinstance(which, int) or str(which).isdigit():
            return f"{name}/{int(which)}"
        return f"{name}@{which}"

    return diff_versions(get_prompt(ref(a), workspace=ws), get_prompt(ref(b), workspace=ws))
