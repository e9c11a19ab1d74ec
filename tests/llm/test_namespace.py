"""``ws.llm.prompts`` and ``ws.llm.rag``: the module functions with the workspace filled in."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.exceptions import InvalidInput
from loopml.llm.prompts import PromptNotFound
from loopml.workspace import Workspace


def test_prompts_through_the_workspace(sqlite_ws: Workspace) -> None:
    prompts = sqlite_ws.llm.prompts
    first = prompts.register("support/answer", "Answer: {{ q }}", model="cheap")
    second = prompts.register("support/answer", "Answer briefly: {{ q }}", model="cheap")
    prompts.set_label("support/answer", "production", first.version, reason="first")
    assert prompts.get("support/answer@production").render(q="hi") == "Answer: hi"
    prompts.split_label("support/answer", "production", {1: 50, 2: 50}, reason="try brief")
    assert prompts.labels("support/answer") == {"production": 1}
    assert prompts.splits("support/answer")["production"].split is not None
    assert [m.version for m in prompts.history("support/answer", "production")] == [1, 1]
    assert [v.version for v in prompts.versions("support/answer")] == [1, 2]
    assert "briefly" in prompts.diff("support/answer", 1, 2)
    assert prompts.ab("support/answer").label == "production"
    assert second.version == 2 and prompts.list()[0]["name"] == "support/answer"
    with pytest.raises(PromptNotFound):
        prompts.get("nothing@production")
    with pytest.raises(InvalidInput, match="already acts on"):
        prompts.get("support/answer", workspace=Workspace.init(sqlite_ws.root / "other"))


def test_rag_through_the_workspace(sqlite_ws: Workspace, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("alpha")
    rag = sqlite_ws.llm.rag
    built = rag.register_index("docs", corpus)
    assert (built.name, built.version, built.files) == ("docs", 1, 1)
    assert not rag.check_index("docs").stale
    (corpus / "b.md").write_text("beta")
    assert rag.check_index("docs").changes.added == ("b.md",)
    assert [i.name for i in rag.indexes()] == ["docs"]
    assert set(rag.manifest("docs", 1)) == {"a.md"}
    assert rag.retrievals() == [] and rag.online() == []
    assert rag.metrics(index="docs").retrievals == 0
