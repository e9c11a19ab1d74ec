"""Reports over the request log and the spans: costs grouped every way, the request log
filtered, one request in full, traces and their trees — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from loopml.exceptions import InvalidInput, NotFound
from loopml.llm import reports
from loopml.llm.logs import RequestLog, RequestRecord
from loopml.llm.tables import llm_keys
from loopml.llm.tracing import SpanRecord
from loopml.llm.types import Attempt, Usage
from loopml.workspace import Workspace

DAY1 = datetime(2026, 11, 28, 10, tzinfo=UTC)
DAY2 = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
KEY_A = "a" * 32
KEY_B = "b" * 32
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def rec(ident: str, moment: datetime, **fields: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "id": ident,
        "created_at": ms(moment),
        "endpoint": "chat",
        "model_requested": "cheap",
        "model_used": "gpt-4o-mini",
        "provider": "openai",
        "deployment": "cheap-openai",
        "status": 200,
        "latency_ms": 10.0,
        "usage": Usage(100, 10),
        "cost_usd": 0.01,
    }
    values.update(fields)
    return RequestRecord(**values)


@pytest.fixture
def logged(ws: Workspace) -> Workspace:
    """Five requests over two days, two keys and teams, tags, an error, an estimate; one
    trace of a gateway request with an application span above it."""
    ws.db.transact(
        lambda conn: conn.execute(
            insert(llm_keys),
            [
                {"id": KEY_A, "key_hash": "1" * 64, "prefix": "lml_aaaa", "name": "web",
                 "team": "growth", "created_at": 0},
                {"id": KEY_B, "key_hash": "2" * 64, "prefix": "lml_bbbb", "name": "batch",
                 "team": "search", "created_at": 0},
            ],
        )
    )  # fmt: skip
    records = [
        rec("1" * 32, DAY1, key_id=KEY_A, team="growth", user="alice", tags=["faq"],
            usage=Usage(100, 10, cached_read_tokens=50), cost_usd=0.01),
        rec("2" * 32, DAY1 + timedelta(minutes=1), key_id=KEY_A, team="growth", user="bob",
            tags=["faq", "beta"], prompt="support/answer_v/12", usage=Usage(200, 20, reasoning_tokens=5, estimated=True),
            cost_usd=0.02, stream=True),
        rec("3" * 32, DAY2, key_id=KEY_B, team="search", user="alice", model_requested="frontier",
            model_used="claude-sonnet", provider="anthropic", deployment="frontier-anthropic",
            usage=Usage(1000, 100), cost_usd=0.5, trace_id=TRACE,
            attempts=[Attempt("cheap-openai", "openai", "gpt-4o-mini", "server", 3.0, 500),
                      Attempt("frontier-anthropic", "anthropic", "claude-sonnet", "ok", 90.0)],
            request={"model": "frontier", "messages": [{"role": "user", "content": "hi"}]},
            response={"choices": [{"message": {"role": "assistant", "content": "hello"}}]}),
        rec("4" * 32, DAY2 + timedelta(minutes=1), key_id=KEY_B, team="search", status=429,
            model_requested="frontier",
            error="budget of team search exhausted", usage=Usage(0, 0), cost_usd=0.0,
            model_used=None, provider=None, deployment=None),
        rec("3" * 31 + "9", DAY2 + timedelta(minutes=2), usage=Usage(10, 1), cost_usd=0.001),
    ]  # fmt: skip
    start = ms(DAY2) * 1000
    spans = [
        SpanRecord(TRACE, "0" * 15 + "1", None, "rag answer", "internal", start, start + 200_000,
                   "ok"),
        SpanRecord(TRACE, "0" * 15 + "2", "0" * 15 + "1", "gateway chat", "server",
                   start + 50_000, start + 150_000, "ok",
                   {"loopml.cost_usd": 0.5, "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 100}, request_id="3" * 32),
        SpanRecord(TRACE, "0" * 15 + "3", "0" * 15 + "2", "attempt", "client",
                   start + 60_000, start + 63_000, "error", {"loopml.attempt": 1}),
        SpanRecord(TRACE, "0" * 15 + "4", "0" * 15 + "2", "attempt 2", "client",
                   start + 64_000, start + 149_000, "ok",
                   {"loopml.cost_usd": 0.5, "gen_ai.usage.input_tokens": 1000}),
        SpanRecord("f" * 32, "0" * 15 + "5", "e" * 16, "orphan", "internal", start - 10, start, "ok"),
    ]  # fmt: skip
    with RequestLog(ws, flush_interval=3600) as log:
        for one in records:
            log.add(one)
        log.add_spans(spans)
    return ws


def test_costs_by_every_grouping(logged: Workspace) -> None:
    by_model = reports.costs(logged, by="model")
    assert [r["group"] for r in by_model] == ["claude-sonnet", "gpt-4o-mini", "frontier"]
    cheap = by_model[1]
    assert cheap == {
        "group": "gpt-4o-mini",
        "requests": 3,
        "errors": 0,
        "input_tokens": 310,
        "output_tokens": 31,
        "cached_read_tokens": 50,
        "reasoning_tokens": 5,
        "cost_usd": pytest.approx(0.031),
        "estimated": 1,
        "cache_hits": 0,
        "saved_usd": 0.0,
    }
    assert by_model[2]["errors"] == 1 and by_model[2]["cost_usd"] == 0.0  # asked, none answered

    by_team = {r["group"]: r for r in reports.costs(logged, by="team")}
    assert by_team["search"]["requests"] == 2 and by_team["search"]["errors"] == 1
    assert by_team["growth"]["cost_usd"] == pytest.approx(0.03)
    assert by_team[None]["requests"] == 1

    by_key = reports.costs(logged, by="key")
    assert [(r["group"], r["name"]) for r in by_key] == [
        (KEY_B, "batch"),
        (KEY_A, "web"),
        (None, None),
    ]

    by_user = {r["group"]: r["requests"] for r in reports.costs(logged, by="user")}
    assert by_user == {"alice": 2, "bob": 1, None: 2}

    by_tag = {r["group"]: r["requests"] for r in reports.costs(logged, by="tag")}
    assert by_tag == {"faq": 2, "beta": 1}

    by_day = reports.costs(logged, by="day")
    assert [(r["group"], r["requests"]) for r in by_day] == [("2026-11-28", 2), ("2026-11-29", 3)]

    by_provider = {r["group"]: r["requests"] for r in reports.costs(logged, by="provider")}
    assert by_provider == {"openai": 3, "anthropic": 1, None: 1}
    by_deployment = {r["group"] for r in reports.costs(logged, by="deployment")}
    assert by_deployment == {"cheap-openai", "frontier-anthropic", None}


def test_costs_in_a_time_range(logged: Workspace) -> None:
    assert sum(r["requests"] for r in reports.costs(logged, since=DAY2)) == 3
    assert sum(r["requests"] for r in reports.costs(logged, until=DAY2)) == 2
    local = DAY2.astimezone().replace(tzinfo=None).isoformat()  # no offset: local time
    assert sum(r["requests"] for r in reports.costs(logged, since=local)) == 3
    assert reports.costs(logged, since="1h") == []  # the rows are in the past
    assert sum(r["requests"] for r in reports.costs(logged, since="3650d")) == 5


def test_costs_refuse_bad_input(logged: Workspace) -> None:
    with pytest.raises(InvalidInput, match="group by one of key, team"):
        reports.costs(logged, by="colour")
    with pytest.raises(InvalidInput, match="since='yesterday'.*7d"):
        reports.costs(logged, since="yesterday")


def test_requests_filtered_newest_first(logged: Workspace) -> None:
    everything = reports.requests(logged)
    assert [r["id"][0] for r in everything] == ["3", "4", "3", "2", "1"]
    assert everything[0]["created_at"] == DAY2 + timedelta(minutes=2)
    assert "request" not in everything[0] and "response" not in everything[0]
    assert [r["id"] for r in reports.requests(logged, errors_only=True)] == ["4" * 32]
    assert [r["id"] for r in reports.requests(logged, status=429)] == ["4" * 32]
    assert {r["id"][0] for r in reports.requests(logged, model="frontier")} == {"3", "4"}
    assert {r["id"][0] for r in reports.requests(logged, model="claude-sonnet")} == {"3"}
    assert {r["id"][0] for r in reports.requests(logged, key=KEY_A)} == {"1", "2"}
    assert {r["id"][0] for r in reports.requests(logged, team="growth")} == {"1", "2"}
    assert {r["id"][0] for r in reports.requests(logged, user="alice")} == {"1", "3"}
    assert len(reports.requests(logged, since=DAY2, limit=2)) == 2
    assert [r["id"][0] for r in reports.requests(logged, tag="faq")] == ["2", "1"]
    assert [r["id"][0] for r in reports.requests(logged, tag="beta")] == ["2"]
    assert reports.requests(logged, tag="fa") == []  # a whole tag, not a part of one
    assert reports.requests(logged, tag='faq"') == []
    assert [r["id"][0] for r in reports.requests(logged, prompt="support/answer_v")] == ["2"]
    assert [r["id"][0] for r in reports.requests(logged, prompt="support/answer_v/12")] == ["2"]
    assert reports.requests(logged, prompt="support/answer_v/1") == []
    assert reports.requests(logged, prompt="support") == []
    assert reports.requests(logged, prompt="support/answer%v") == []  # % is a character
    two = reports.requests(logged, user="bob")
    assert two[0]["tags"] == ["faq", "beta"] and two[0]["stream"] is True
    assert two[0]["usage_estimated"] is True
    with pytest.raises(InvalidInput, match="limit"):
        reports.requests(logged, limit=0)


def test_one_request_in_full(logged: Workspace) -> None:
    found = reports.request(logged, "3" * 32)
    assert found["messages"] == [{"role": "user", "content": "hi"}]
    assert found["response"]["choices"][0]["message"]["content"] == "hello"
    assert [a["status"] for a in found["attempts"]] == ["server", "ok"]
    assert found["trace_id"] == TRACE and found["created_at"] == DAY2
    assert reports.request(logged, "4444444")["id"] == "4" * 32  # a unique prefix
    with RequestLog(logged, flush_interval=3600) as log:
        log.add(rec("req_0a1b2c3d4e5f60718293a4b5", DAY1))  # the gateway's ids
    assert reports.request(logged, "req_0a1b")["id"] == "req_0a1b2c3d4e5f60718293a4b5"
    assert logged.llm.request("4" * 32)["error"] == "budget of team search exhausted"
    no_content = reports.request(logged, "1" * 32)
    assert no_content["messages"] is None and no_content["request"] is None


def test_an_unknown_or_ambiguous_request_id(logged: Workspace) -> None:
    with pytest.raises(reports.RequestNotFound, match="No request 'deadbeef'.*llm requests"):
        reports.request(logged, "deadbeef")
    with pytest.raises(NotFound):
        logged.llm.request("nope")
    with pytest.raises(InvalidInput, match="ambiguous"):
        reports.request(logged, "333333")
    with pytest.raises(reports.RequestNotFound):
        reports.request(logged, "req%0a")  # LIKE's wildcards are literal here


def test_traces_and_the_tree(logged: Workspace) -> None:
    listed = logged.llm.traces()
    assert [t["trace_id"] for t in listed] == [TRACE, "f" * 32]
    top = listed[0]
    assert top["name"] == "rag answer" and top["spans"] == 4 and top["errors"] == 1
    assert top["duration_ms"] == 200.0 and top["start"] == DAY2
    # Cost and tokens: the logged request's figures.
    assert (top["requests"], top["cost_usd"], top["tokens"]) == (1, 0.5, 1100)
    orphan = listed[1]
    assert orphan["name"] == "orphan" and orphan["cost_usd"] == 0.0 and orphan["requests"] == 0
    assert reports.traces(logged, limit=1) == listed[:1]
    assert reports.traces(logged, since="1h") == []

    tree = reports.trace_tree(logged, TRACE[:8])
    (root,) = tree["roots"]
    assert root["name"] == "rag answer" and root["offset_ms"] == 0.0
    (gateway,) = root["children"]
    assert gateway["name"] == "gateway chat" and gateway["offset_ms"] == 50.0
    assert gateway["duration_ms"] == 100.0 and gateway["cost_usd"] == 0.5
    assert (gateway["input_tokens"], gateway["output_tokens"]) == (1000, 100)
    assert gateway["request_id"] == "3" * 32
    assert [c["name"] for c in gateway["children"]] == ["attempt", "attempt 2"]
    assert gateway["children"][0]["status"] == "error"
    assert gateway["children"][0]["cost_usd"] is None
    assert tree["cost_usd"] == 0.5
    json.dumps(logged.llm.trace_tree(TRACE), default=str)  # JSON-able for the CLI


def test_a_trace_without_logged_requests_sums_its_spans_once(ws: Workspace) -> None:
    spans = [
        SpanRecord("c" * 32, "0" * 15 + "1", None, "app", "internal", 1000, 9000, "ok",
                   {"loopml.cost_usd": 0.3, "gen_ai.usage.input_tokens": 30}),
        SpanRecord("c" * 32, "0" * 15 + "2", "0" * 15 + "1", "call", "client", 2000, 3000, "ok",
                   {"loopml.cost_usd": 0.3, "gen_ai.usage.input_tokens": 30}),
        SpanRecord("c" * 32, "0" * 15 + "3", None, "other root", "internal", 4000, 5000, "ok",
                   {"loopml.cost_usd": 0.2}),
    ]  # fmt: skip
    with RequestLog(ws, flush_interval=3600) as log:
        log.add_spans(spans)
    tree = reports.trace_tree(ws, "c" * 32)
    assert [r["name"] for r in tree["roots"]] == ["app", "other root"]
    assert tree["cost_usd"] == pytest.approx(0.5) and tree["input_tokens"] == 30


def test_an_unknown_trace(logged: Workspace) -> None:
    with pytest.raises(reports.TraceNotFound, match="No trace '0123456789'.*traces list"):
        reports.trace_tree(logged, "0123456789")
