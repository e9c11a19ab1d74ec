"""The prompt registry: immutable, content-addressed prompt versions; labels (production,
staging, any name) with an append-only history, time travel and rollback; protected labels
that move only through a promotion gate; diffs; rendering.

    from loopml.llm.prompts import register_prompt, get_prompt, set_label

    v = register_prompt("support/answer", "Answer {{ question }} from: {{ context }}",
                        model="gpt-4o-mini", params={"temperature": 0})
    set_label("support/answer", "staging", v.version, reason="first draft")
    get_prompt("support/answer@staging").render(question="…", context="…")

    split_label("support/answer", "production", {4: 50, 5: 50})   # an A/B test, sticky per user
    prompt_ab("support/answer", "production").summary              # compared on feedback

On the command line: ``loopml prompts …`` (see docs/prompts.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.exports import lazy_exports

if TYPE_CHECKING:
    from loopml.llm.prompts.ab import PromptABReport, VersionOutcome, prompt_ab
    from loopml.llm.prompts.diffs import diff, diff_versions
    from loopml.llm.prompts.gate import GateVerdict, LabelBlocked, PromotionGate
    from loopml.llm.prompts.labels import (
        LabelMove,
        label_history,
        label_splits,
        label_state,
        rollback,
        set_label,
        split_label,
    )
    from loopml.llm.prompts.refs import PromptRef
    from loopml.llm.prompts.versions import (
        LabelState,
        PromptNotFound,
        PromptVersion,
        get_prompt,
        list_prompts,
        list_versions,
        register_prompt,
    )

_LAZY = {
    "GateVerdict": "loopml.llm.prompts.gate",
    "LabelBlocked": "loopml.llm.prompts.gate",
    "LabelMove": "loopml.llm.prompts.labels",
    "LabelState": "loopml.llm.prompts.versions",
    "PromptABReport": "loopml.llm.prompts.ab",
    "PromotionGate": "loopml.llm.prompts.gate",
    "PromptNotFound": "loopml.llm.prompts.versions",
    "PromptRef": "loopml.llm.prompts.refs",
    "PromptVersion": "loopml.llm.prompts.versions",
    "diff": "loopml.llm.prompts.diffs",
    "diff_versions": "loopml.llm.prompts.diffs",
    "get_prompt": "loopml.llm.prompts.versions",
    "label_history": "loopml.llm.prompts.labels",
    "label_splits": "loopml.llm.prompts.labels",
    "label_state": "loopml.llm.prompts.labels",
    "list_prompts": "loopml.llm.prompts.versions",
    "list_versions": "loopml.llm.prompts.versions",
    "prompt_ab": "loopml.llm.prompts.ab",
    "register_prompt": "loopml.llm.prompts.versions",
    "rollback": "loopml.llm.prompts.labels",
    "set_label": "loopml.llm.prompts.labels",
    "split_label": "loopml.llm.prompts.labels",
    "VersionOutcome": "loopml.llm.prompts.ab",
}

__all__ = [
    "GateVerdict",
    "LabelBlocked",
    "LabelMove",
    "LabelState",
    "PromotionGate",
    "PromptABReport",
    "PromptNotFound",
    "PromptRef",
    "PromptVersion",
    "VersionOutcome",
    "diff",
    "diff_versions",
    "get_prompt",
    "label_history",
    "label_splits",
    "label_state",
    "list_prompts",
    "list_versions",
    "prompt_ab",
    "register_prompt",
    "rollback",
    "set_label",
    "split_label",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
