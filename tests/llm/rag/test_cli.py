"""``loopml rag``: register an index, list it, check it (exit 1 when stale), score
labelled queries against stored retrieval spans."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from loopml.cli.main import cli
from loopml.llm.rag import retrieval_span
from loopml.llm.tracing import close_traces
from loopml.workspace import Workspace

Invoke = Callable[..., Result]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    ws = Workspace.init(tmp_path / "project")
    ws.close()
    monkeypatch.chdir(ws.root)
    (ws.root / "kb").mkdir()
    (ws.root / "kb" / "refunds.md").write_text("Refunds within 30 days.\n")
    (ws.root / "kb" / "hours.md").write_text("Open 9 to 5.\n")
    yield ws.root
    close_traces()


@pytest.fixture
def invoke() -> Invoke:
    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), prog_name="loopml")

    return run


def _ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_register_list_and_check(project: Path, invoke: Invoke) -> None:
    out = _ok(invoke("rag", "register-index", "docs", "--source", "kb/*.md"))
    assert out.startswith("Registered index docs version 1: 2 files")
    listed = json.loads(_ok(invoke("rag", "indexes", "--json")))
    assert [(i["name"], i["version"], i["files"]) for i in listed] == [("docs", 1, 2)]
    assert listed[0]["source"] == str(project / "kb" / "*.md")
    assert "docs" in _ok(invoke("rag", "indexes"))
    assert "fresh" in _ok(invoke("rag", "check", "docs"))

    (project / "kb" / "refunds.md").write_text("Refunds within 14 days, receipts needed.\n")
    (project / "kb" / "shipping.md").write_text("Ships in 2 days.\n")
    stale = invoke("rag", "check", "docs", "--days", "3")
    assert stale.exit_code == 1, stale.output
    assert "STALE" in stale.stdout and "refunds.md" in stale.stdout
    report = json.loads(invoke("rag", "check", "docs", "--json").stdout)
    assert report["stale"] and report["added"] == ["shipping.md"]
    assert report["changed"] == ["refunds.md"] and report["deleted"] == []
    assert report["event_id"] is None  # emitted once, by the first stale check

    _ok(invoke("rag", "register-index", "docs", "--source", "kb/*.md"))
    assert json.loads(_ok(invoke("rag", "check", "docs", "--json")))["version"] == 2


def test_bad_input_is_one_line(project: Path, invoke: Invoke) -> None:
    missing = invoke("rag", "register-index", "docs", "--source", "nowhere/")
    assert missing.exit_code == 1 and "No file or folder 'nowhere/'" in missing.stderr
    unknown = invoke("rag", "check", "nosuch")
    assert unknown.exit_code == 1 and "No index 'nosuch'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_eval_scores_labelled_queries_on_stored_retrievals(project: Path, invoke: Invoke) -> None:
    ws = Workspace.open(project)
    try:
        with retrieval_span("refunds?", ["faq#1", "faq#2", "faq#3"], index="docs", workspace=ws):
            pass
        close_traces(ws)
    finally:
        ws.close()
    labels = project / "labels.jsonl"
    labels.write_text(
        '{"query": "refunds?", "relevant": ["faq#2"]}\n'
        '{"query": "hours?", "relevant": ["h#1"], "retrieved": ["h#1", "x"]}\n'
        '{"query": "never asked", "relevant": ["z"]}\n'
    )
    result = json.loads(
        _ok(invoke("rag", "eval", "--labels", "labels.jsonl", "--k", "2", "--json"))
    )
    assert result["queries"] == 2 and result["unmatched"] == ["never asked"]
    assert result["mrr"] == pytest.approx((0.5 + 1.0) / 2)
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(1.0)
    text = _ok(invoke("rag", "eval", "--labels", "labels.jsonl"))
    assert "MRR" in text and "never asked" in text
    bad = invoke("rag", "eval", "--labels", "nope.jsonl")
    assert bad.exit_code == 1 and "No labels file 'nope.jsonl'" in bad.stderr
