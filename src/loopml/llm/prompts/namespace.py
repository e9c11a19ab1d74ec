"""``ws.llm.prompts``: the prompt registry of one workspace (:mod:`loopml.llm.prompts`).

v = ws.llm.prompts.register("support/answer", "Answer: {{ q }}", model="cheap")
ws.llm.prompts.set_label("support/answer", "staging", v.version, reason="first draft")
ws.llm.prompts.get("support/answer@staging").render(q="hi")
ws.llm.prompts.split_label("support/answer", "production", {3: 50, 4: 50}, force=True,
                           reason="try the shorter one")
ws.llm.prompts.ab("support/answer")
"""

from __future__ import annotations

from loopml.llm.prompts import ab as _ab
from loopml.llm.prompts import diffs as _diffs
from loopml.llm.prompts import labels as _labels
from loopml.llm.prompts import versions as _versions
from loopml.namespaces import Namespace, WithWorkspace


class Prompts(Namespace):
    """``ws.llm.prompts``: versions, labels (with their history and A/B splits), diffs and
    the A/B report of this workspace's prompts."""

    register = WithWorkspace(_versions.register_prompt)
    get = WithWorkspace(_versions.get_prompt)
    list = WithWorkspace(_versions.list_prompts)
    versions = WithWorkspace(_versions.list_versions)
    set_label = WithWorkspace(_labels.set_label)
    split_label = WithWorkspace(_labels.split_label)
    rollback = WithWorkspace(_labels.rollback)
    history = WithWorkspace(_labels.label_history)
    labels = WithWorkspace(_labels.label_state)
    splits = WithWorkspace(_labels.label_splits)
    diff = WithWorkspace(_diffs.diff)
    ab = WithWorkspace(_ab.prompt_ab)
