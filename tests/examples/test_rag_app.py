"""examples/rag_app/run.py end to end, its provider's URL pointed at the fake provider on
127.0.0.1 (no network, no real keys): the fake echoes the prompt, so the first cut (which
leaves the context out) fails the suite and the grounded version passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from llm.fake_provider import FakeProvider
from loopml.llm.prompts import label_history
from loopml.llm.rag import check_index, stored_retrievals
from loopml.llm.tables import llm_online_evals, llm_requests, llm_spans
from loopml.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "rag_app"


@pytest.mark.slow
def test_the_rag_app_example(tmp_path: Path, fake_provider: FakeProvider) -> None:
    folder = tmp_path / "desk"
    folder.mkdir()
    config = (EXAMPLE / "loopml.toml").read_text()
    url = fake_provider.base_url("helpdesk-openai")
    (folder / "loopml.toml").write_text(config.replace("https://api.openai.com/v1", url))
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE / "run.py"), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    shown = out.stdout
    assert "index helpdesk version 1: 13 chunks from 5 files" in shown
    assert "gate: helpdesk/answer/1 refused" in shown and "4 of 4 cases could not run" in shown
    assert "gate: helpdesk/answer/2 promoted to production" in shown
    assert "cited ['refunds.md#1'" in shown
    assert "STALE" in shown and "(exit status 1" in shown

    ws = Workspace.open(folder)
    moves = label_history("helpdesk/answer", "production", workspace=ws)
    assert [(m.kind, m.version) for m in moves] == [("blocked", 1), ("set", 2)]
    assert moves[1].verdict is not None and moves[1].verdict.passed
    with ws.db.read() as conn:
        prompts = [r.prompt for r in conn.execute(select(llm_requests.c.prompt))]
        spans = conn.execute(select(llm_spans.c.trace_id, llm_spans.c.name)).all()
        judged = conn.execute(
            select(llm_online_evals.c.evaluator, llm_online_evals.c.status).where(
                llm_online_evals.c.rag_index == "helpdesk"
            )
        ).all()
    assert prompts.count("helpdesk/answer/2") == 4 + 4  # the answers, and the gate's suite run
    # Every answer judged off the response path; the fake's echo is no verdict: judge_error.
    assert sorted(judged) == sorted(
        (kind, "judge_error")
        for kind in ("context_relevance", "groundedness", "answer_relevance")
        for _ in range(4)
    )
    assert "$ loopml rag online --index helpdesk" in shown
    retrievals = stored_retrievals(ws, index="helpdesk")
    assert len(retrievals) == 4
    names = {name for trace, name in spans if trace == retrievals[0].trace_id}
    assert {"helpdesk answer", "gateway chat"} <= names
    check = check_index("helpdesk", workspace=ws)
    assert check.stale
    assert check.changes.added == ("rentals.md",) and check.changes.deleted == ("servicing.md",)
    assert check.changes.changed == ("refunds.md",)
    assert check.served_stale is not None and check.served_stale > 0
    assert json.loads(json.dumps(check.to_dict()))["stale"] is True
