"""``loopml llm cache``: stats from the request log and the store, clear, evaluate."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import insert

from llm.cache.exchanges import answer, ask
from loopml.cli.main import cli
from loopml.llm.cache import Cache, parse_cache_config
from loopml.llm.logs import RequestRecord
from loopml.llm.tables import llm_requests
from loopml.store.clock import now_ms
from loopml.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    ws = Workspace.init(tmp_path / "project")
    monkeypatch.chdir(ws.root)
    yield ws
    ws.close()


@pytest.fixture
def invoke() -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: str, **kwargs: Any) -> Result:
        return runner.invoke(cli, ["llm", "cache", *args], prog_name="loopml", **kwargs)

    return run


def log_request(
    ws: Workspace,
    route: str,
    *,
    hit: str | None = None,
    saved: float | None = None,
    age_ms: int = 0,
) -> None:
    record = RequestRecord(
        id=uuid.uuid4().hex,
        created_at=now_ms() - age_ms,
        endpoint="chat",
        model_requested=route,
        status=200,
        latency_ms=3.0,
        cache_hit=hit is not None,
        cost_usd=0.0 if hit else 0.01,
    )
    row = record.to_row()
    row["cache"] = (
        json.dumps({"kind": hit, "similarity": 0.9, "matched_request_id": "r0", "partition": "p"})
        if hit
        else None
    )
    row["saved_usd"] = saved
    ws.db.transact(lambda conn: conn.execute(insert(llm_requests).values(**row)))


def fill(ws: Workspace) -> None:
    cache = Cache(ws, parse_cache_config({}))
    for text in ("a", "b", "c"):
        asyncio.run(cache.store(ask(text), answer(text), tenant="", route="cheap"))
    asyncio.run(cache.store(ask("d"), answer("d"), tenant="", route="frontier"))
    cache.close()
    log_request(ws, "cheap")
    log_request(ws, "cheap", hit="exact", saved=0.02)
    log_request(ws, "cheap", hit="semantic", saved=0.03)
    log_request(ws, "cheap", hit="exact", saved=0.5, age_ms=10 * 86_400_000)  # long ago
    log_request(ws, "frontier")


def test_stats_by_route(workspace: Workspace, invoke: Callable[..., Result]) -> None:
    fill(workspace)
    result = invoke("stats", "--since", "7d", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["requests"] == 4 and found["hits"] == 2
    assert found["exact_hits"] == 1 and found["semantic_hits"] == 1
    assert found["hit_rate"] == 0.5 and found["saved_usd"] == pytest.approx(0.05)
    assert found["entries"] == 4
    cheap = next(r for r in found["routes"] if r["route"] == "cheap")
    assert cheap["requests"] == 3 and cheap["entries"] == 3
    assert json.loads(invoke("stats", "--json").stdout)["saved_usd"] == pytest.approx(0.55)
    table = invoke("stats", "--since", "7d")
    assert table.exit_code == 0
    assert "cheap" in table.stdout and "66.7%" in table.stdout and "total" in table.stdout


def test_stats_of_an_empty_workspace(workspace: Workspace, invoke: Callable[..., Result]) -> None:
    result = invoke("stats")
    assert result.exit_code == 0 and "No chat requests logged" in result.stdout


def test_clear_a_route_then_everything(workspace: Workspace, invoke: Callable[..., Result]) -> None:
    fill(workspace)
    refused = invoke("clear")
    assert refused.exit_code != 0 and "pass --yes" in refused.output
    result = invoke("clear", "--route", "cheap", "--yes", "--json")
    assert json.loads(result.stdout) == {"deleted": 3, "route": "cheap"}
    assert "Deleted 1 cached answer." in invoke("clear", "--yes").stdout
    assert json.loads(invoke("stats", "--json").stdout)["entries"] == 0


def test_evaluate_the_shipped_pairs(
    invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no workspace needed
    result = invoke("evaluate")
    assert result.exit_code == 0, result.output
    assert "Recommended threshold: 0.74" in result.stdout
    assert "0.80" in result.stdout and "False-hit rate" in result.stdout
    found = json.loads(
        invoke("evaluate", "--threshold", "0.8", "--threshold", "0.9", "--json").stdout
    )
    assert [r["threshold"] for r in found["results"]] == [0.8, 0.9]
    assert found["recommended"] == 0.8 and found["should_match"] == 1320
    strict = invoke(
        "evaluate", "--threshold", "0.5", "--target-false-hit", "0", "--second-stage", "none"
    )
    assert "No threshold tried keeps false hits at or under 0%" in strict.stdout


def test_evaluate_bad_input_is_one_error_line(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"a": "x"}\n')
    result = invoke("evaluate", "--pairs", str(bad))
    assert result.exit_code != 0
    assert result.stderr.startswith("error:") and 'needs "a" and "b"' in result.stderr
    missing = invoke("evaluate", "--embedder", "model2vec:/nowhere")
    assert missing.exit_code != 0 and "pip install model2vec" in missing.stderr
    wrong = invoke("evaluate", "--embedder", "word2vec")
    assert wrong.exit_code != 0 and "unknown embedder 'word2vec'" in wrong.stderr
