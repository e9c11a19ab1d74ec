"""The gateway's request log: rows written in batches by a thread, flushed on close, kept and
retried while the store is away (bounded), a bad row refused or stripped alone, content
redacted or left out as the key says."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, text

from loopml.exceptions import InvalidConfig
from loopml.llm.logs import RequestLog, RequestRecord, redact
from loopml.llm.tables import llm_requests, llm_spans
from loopml.llm.tracing import SpanRecord
from loopml.llm.types import Attempt, Usage
from loopml.workspace import Workspace

T0 = 1_764_000_000_000


def record(number: int = 0, **fields: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "created_at": T0 + number,
        "endpoint": "chat",
        "model_requested": "cheap",
        "status": 200,
        "latency_ms": 12.5,
        "usage": Usage(input_tokens=100, output_tokens=20, cached_read_tokens=40),
        "cost_usd": 0.001,
        "request": {"model": "cheap", "messages": [{"role": "user", "content": "Hello there"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "Hi!"}}]},
    }
    values.update(fields)
    return RequestRecord(**values)


def rows(ws: Workspace) -> list[dict[str, Any]]:
    with ws.db.engine.connect() as conn:
        found = conn.execute(select(llm_requests).order_by(llm_requests.c.created_at))
        return [dict(row) for row in found.mappings()]


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait for the writer thread (generously; the test's point is *that* it happens)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_every_column_round_trips(ws: Workspace) -> None:
    attempts = [
        Attempt("cheap-a", "openai", "gpt-4o-mini", "rate_limit", 3.0, http_status=429),
        Attempt("cheap-b", "anthropic", "claude-haiku", "ok", 40.0, http_status=200),
    ]
    one = record(
        key_id="k" * 32,
        team="growth",
        user="alice",
        tags=["faq", "beta"],
        model_used="claude-haiku",
        deployment="cheap-b",
        provider="anthropic",
        route_reason="prompt under 2000 tokens",
        attempts=attempts,
        stream=True,
        truncated=True,
        ttft_ms=8.25,
        usage=Usage(100, 20, 40, 5, 7, estimated=True),
        cache_hit=True,
        trace_id="ab" * 16,
    )
    with RequestLog(ws, flush_interval=3600) as log:
        log.add(one)
    (row,) = rows(ws)
    assert row["id"] == one.id and row["created_at"] == T0
    assert (row["key_id"], row["team"], row["user"]) == ("k" * 32, "growth", "alice")
    assert json.loads(row["tags"]) == ["faq", "beta"]
    assert (row["model_used"], row["deployment"], row["provider"]) == (
        "claude-haiku",
        "cheap-b",
        "anthropic",
    )
    assert [a["status"] for a in json.loads(row["attempts"])] == ["rate_limit", "ok"]
    assert json.loads(row["attempts"])[0]["http_status"] == 429
    assert row["stream"] and row["truncated"] and row["cache_hit"] and row["usage_estimated"]
    assert (row["input_tokens"], row["output_tokens"], row["cached_read_tokens"]) == (100, 20, 40)
    assert (row["cached_write_tokens"], row["reasoning_tokens"]) == (5, 7)
    assert row["ttft_ms"] == 8.25 and row["cost_usd"] == pytest.approx(0.001)
    assert json.loads(row["request"])["messages"][0]["content"] == "Hello there"
    assert json.loads(row["response"])["choices"][0]["message"]["content"] == "Hi!"
    assert row["trace_id"] == "ab" * 16


def test_batches_of_batch_rows_in_one_transaction_each(
    sqlite_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    transactions: list[int] = []
    real = sqlite_ws.db.transact

    def counting(fn: Any) -> Any:
        transactions.append(len(fn.keywords["requests"]))
        return real(fn)

    monkeypatch.setattr(sqlite_ws.db, "transact", counting)
    log = RequestLog(sqlite_ws, flush_interval=3600, batch_rows=10, max_queue=100)
    for i in range(10):  # a full batch wakes the thread long before the interval
        log.add(record(i))
    wait_for(lambda: log.written == 10, "the writer thread to write a full batch")
    for i in range(10, 25):
        log.add(record(i))
    assert log.flush() + log.written >= 25
    log.close()
    assert len(rows(sqlite_ws)) == 25
    assert transactions[0] == 10 and sum(transactions) == 25 and max(transactions) <= 10


def test_the_thread_writes_every_interval_and_close_writes_the_rest(sqlite_ws: Workspace) -> None:
    log = RequestLog(sqlite_ws, flush_interval=0.05)
    log.add(record(1))
    wait_for(lambda: log.written == 1, "an interval's write")
    log.add(record(2))
    log.close()
    log.close()  # idempotent
    assert [r["created_at"] for r in rows(sqlite_ws)] == [T0 + 1, T0 + 2]
    assert log.pending() == 0


def test_a_record_added_after_close_is_written_at_once(sqlite_ws: Workspace) -> None:
    log = RequestLog(sqlite_ws, flush_interval=3600)
    log.add(record(1))
    log.close()
    log.add(record(2))  # a stream that ended while the gateway shut down
    assert [r["created_at"] for r in rows(sqlite_ws)] == [T0 + 1, T0 + 2]


def test_a_store_that_is_away_keeps_the_batch_and_the_next_flush_writes_it(
    sqlite_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Flushed here only, so what is queued can be counted (the thread has its own test).
    monkeypatch.setattr(RequestLog, "_start", lambda self: None)
    sqlite_ws.db.transact(lambda c: c.execute(text("ALTER TABLE llm_requests RENAME TO away")))
    log = RequestLog(sqlite_ws, flush_interval=3600, batch_rows=2, max_queue=4)
    records = [record(i) for i in range(6)]
    for one in records:
        log.add(one)
    with pytest.raises(Exception, match="away|llm_requests"):
        log.flush()
    # Bounded: beyond max_queue the oldest are dropped and counted, the newest kept.
    assert log.pending() == 4 and log.dropped == 2 and log.written == 0
    sqlite_ws.db.transact(lambda c: c.execute(text("ALTER TABLE away RENAME TO llm_requests")))
    assert log.flush() == 4
    log.close()
    assert [r["id"] for r in rows(sqlite_ws)] == [r.id for r in records[2:]]


def test_the_thread_survives_a_store_that_is_away(sqlite_ws: Workspace) -> None:
    sqlite_ws.db.transact(lambda c: c.execute(text("ALTER TABLE llm_requests RENAME TO away")))
    log = RequestLog(sqlite_ws, flush_interval=0.02)
    log.add(record(1))
    wait_for(lambda: log.last_error is not None, "a failed write")
    sqlite_ws.db.transact(lambda c: c.execute(text("ALTER TABLE away RENAME TO llm_requests")))
    wait_for(lambda: log.written == 1, "the retried write")
    assert log._thread is not None and log._thread.is_alive()
    log.close()
    assert len(rows(sqlite_ws)) == 1


def test_a_bad_row_is_refused_alone_and_unencodable_content_is_dropped_not_the_row(
    ws: Workspace,
) -> None:
    first = record(1)
    with RequestLog(ws, flush_interval=3600) as log:
        log.add(first)
        log.flush()
        log.add(record(2, request={"messages": [{"role": "user", "content": object()}]}))
        log.add(record(3, id=first.id))  # the database refuses a duplicate id
        log.add(record(4))
        log.add_spans([SpanRecord("a" * 32, "b" * 16, None, "x", "internal", 1, 2, "ok")])
        log.flush()
        assert log.rejected == 1
    found = {r["created_at"]: r for r in rows(ws)}
    assert sorted(found) == [T0 + 1, T0 + 2, T0 + 4]
    assert "could not be encoded" in json.loads(found[T0 + 2]["request"])["loopml_error"]
    assert found[T0 + 2]["input_tokens"] == 100  # the accounting is kept
    with ws.db.engine.connect() as conn:
        assert conn.execute(select(llm_spans.c.name)).scalars().all() == ["x"]


def test_a_record_that_is_no_row_at_all_does_not_block_the_queue(sqlite_ws: Workspace) -> None:
    with RequestLog(sqlite_ws, flush_interval=3600) as log:
        log.add(record(1, usage=None))  # a caller's bug: no token figures at all
        log.add(record(2))
        assert log.flush() == 1
        assert log.rejected == 1 and log.pending() == 0
    assert [r["created_at"] for r in rows(sqlite_ws)] == [T0 + 2]


def test_log_content_redact_and_none(sqlite_ws: Workspace) -> None:
    tools = {
        "model": "cheap",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "function": {"name": "add", "arguments": "[2,2]"}}],
            },
        ],
        "max_tokens": 50,
    }
    with RequestLog(sqlite_ws, flush_interval=3600) as log:
        log.add(record(1, request=tools, log_content="redact"))
        log.add(record(2, log_content="none"))
    redacted, nothing = rows(sqlite_ws)
    body = json.loads(redacted["request"])
    assert body["model"] == "cheap" and body["max_tokens"] == 50
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant"]
    assert body["messages"][0]["content"] == "[redacted 9 chars]"
    assert body["messages"][1]["content"] == [{"type": "text", "text": "[redacted 12 chars]"}]
    call = body["messages"][2]["tool_calls"][0]
    assert call["function"] == {"name": "add", "arguments": "[redacted 5 chars]"}
    response = json.loads(redacted["response"])
    assert response["choices"][0]["message"] == {
        "role": "assistant",
        "content": "[redacted 3 chars]",
    }
    assert redacted["input_tokens"] == 100
    assert nothing["request"] is None and nothing["response"] is None
    assert "What is" not in json.dumps(body)


def test_redact_leaves_its_argument_alone() -> None:
    messages = [{"role": "user", "content": "secret"}]
    assert redact(messages) == [{"role": "user", "content": "[redacted 6 chars]"}]
    assert messages == [{"role": "user", "content": "secret"}]


def test_bad_settings_are_refused(sqlite_ws: Workspace) -> None:
    with pytest.raises(InvalidConfig, match="batch_rows"):
        RequestLog(sqlite_ws, batch_rows=0)
    with pytest.raises(InvalidConfig, match="flush_interval"):
        RequestLog(sqlite_ws, flush_interval=0)
