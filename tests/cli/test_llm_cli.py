"""``loopml llm costs/requests/show`` and ``loopml traces list/show``: tables with a total
row, --json, the tree of spans, and unknown ids as one ``error:`` line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import Result

from loopml.llm.logs import RequestLog, RequestRecord
from loopml.llm.tracing import SpanRecord
from loopml.llm.types import Attempt, Usage
from loopml.workspace import Workspace

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT, GATEWAY, ATTEMPT = "0" * 15 + "1", "0" * 15 + "2", "0" * 15 + "3"


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture
def logged(workspace: Workspace) -> Workspace:
    start_us = int(NOW.timestamp() * 1_000_000)
    with RequestLog(workspace, flush_interval=3600) as log:
        log.add(
            RequestRecord(
                id="1" * 32,
                created_at=int(NOW.timestamp() * 1000),
                endpoint="chat",
                model_requested="cheap",
                model_used="gpt-4o-mini",
                provider="openai",
                deployment="cheap-openai",
                team="growth",
                user="alice",
                tags=["faq"],
                status=200,
                latency_ms=420.0,
                ttft_ms=80.0,
                usage=Usage(1200, 300, cached_read_tokens=1000),
                cost_usd=0.00042,
                trace_id=TRACE,
                attempts=[
                    Attempt("cheap-azure", "openai", "gpt-4o-mini", "rate_limit", 5.0, 429),
                    Attempt("cheap-openai", "openai", "gpt-4o-mini", "ok", 400.0, 200),
                ],
                request={"messages": [{"role": "user", "content": "What is loopml?"}]},
                response={"choices": [{"message": {"role": "assistant", "content": "A loop."}}]},
            )
        )
        log.add(
            RequestRecord(
                id="2" * 32,
                created_at=int(NOW.timestamp() * 1000) + 1000,
                endpoint="messages",
                model_requested="frontier",
                team="search",
                status=402,
                error="team search's monthly budget is spent",
                latency_ms=2.0,
                log_content="none",
            )
        )
        log.add_spans(
            [
                SpanRecord(TRACE, ROOT, None, "rag answer", "internal", start_us,
                           start_us + 500_000, "ok"),
                SpanRecord(TRACE, GATEWAY, ROOT, "gateway chat", "server", start_us + 50_000,
                           start_us + 470_000, "ok",
                           {"loopml.cost_usd": 0.00042, "gen_ai.usage.input_tokens": 1200,
                            "gen_ai.usage.output_tokens": 300,
                            "gen_ai.request.model": "cheap"}, request_id="1" * 32),
                SpanRecord(TRACE, ATTEMPT, GATEWAY, "attempt", "client", start_us + 60_000,
                           start_us + 65_000, "error", {"error": "429 rate limited"}),
            ]
        )  # fmt: skip
    return workspace


def test_costs_table_with_a_total_and_json(
    logged: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    out = ok(invoke("llm", "costs", "--by", "team", "--since", "1d")).stdout
    lines = out.splitlines()
    assert any(line.split()[:2] == ["growth", "1"] for line in lines), out
    assert "$0.00042" in out and "1,200" in out
    assert lines[-1].split()[:2] == ["total", "2"], out
    rows = invoke_json("llm", "costs", "--by", "model")
    assert {r["group"]: r["requests"] for r in rows} == {"gpt-4o-mini": 1, "frontier": 1}
    assert rows[0]["cost_usd"] == pytest.approx(0.00042)
    assert ok(invoke("llm", "costs", "--since", "2000-01-01", "--until", "2000-01-02")).stdout == (
        "No gateway requests logged in that time.\n"
    )


def test_requests_listing_filters_and_json(
    logged: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    out = ok(invoke("llm", "requests")).stdout
    assert "1" * 32 in out and "2" * 32 in out and "cheap → gpt-4o-mini" in out
    errors = invoke_json("llm", "requests", "--errors")
    assert [r["id"] for r in errors] == ["2" * 32]
    assert errors[0]["status"] == 402
    # Times in JSON are ISO 8601 with an offset.
    assert datetime.fromisoformat(errors[0]["created_at"]).utcoffset() is not None
    assert [r["id"] for r in invoke_json("llm", "requests", "--team", "growth")] == ["1" * 32]
    assert invoke_json("llm", "requests", "--model", "nothing") == []
    assert [r["id"] for r in invoke_json("llm", "requests", "--tag", "faq")] == ["1" * 32]
    assert invoke_json("llm", "requests", "--tag", "nothing") == []
    assert len(invoke_json("llm", "requests", "--limit", "1")) == 1


def test_show_one_request(
    logged: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    out = ok(invoke("llm", "show", "1" * 8)).stdout
    assert "cheap-azure" in out and "rate_limit" in out and "429" in out
    assert "user: What is loopml?" in out and "A loop." in out
    assert "1,000 cached read" in out and TRACE in out
    found = invoke_json("llm", "show", "1" * 32)
    assert found["messages"][0]["content"] == "What is loopml?"
    assert len(found["attempts"]) == 2
    refused = ok(invoke("llm", "show", "2" * 32)).stdout
    assert "content not logged" in refused and "monthly budget" in refused


def test_traces_list_and_show_the_tree(
    logged: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    out = ok(invoke("traces", "list")).stdout
    assert TRACE in out and "rag answer" in out and "1 failed" in out
    (listed,) = invoke_json("traces", "list", "--since", "1d")
    assert listed["spans"] == 3 and listed["tokens"] == 1500
    shown = ok(invoke("traces", "show", TRACE[:10])).stdout
    lines = shown.splitlines()
    root = next(line for line in lines if "rag answer" in line)
    gateway = next(line for line in lines if "gateway chat" in line)
    attempt = next(
        line for line in lines if " attempt " in line or line.strip().startswith("attempt")
    )
    indent = [len(line) - len(line.lstrip()) for line in (root, gateway, attempt)]
    assert indent[0] < indent[1] < indent[2], shown
    assert "+50.0ms" in gateway and "420.0ms" in gateway and "1,200/300" in gateway
    assert "$0.00042" in gateway and "request=" + "1" * 32 in gateway
    assert "429 rate limited" in attempt
    tree = invoke_json("traces", "show", TRACE)
    assert tree["roots"][0]["children"][0]["children"][0]["status"] == "error"


@pytest.mark.parametrize(
    "args",
    [
        ("llm", "show", "deadbeefdeadbeef"),
        ("traces", "show", "0123456789abcdef"),
        ("llm", "costs", "--since", "last tuesday"),
        ("llm", "requests", "--since", "soon"),
    ],
)
def test_bad_input_is_one_error_line(
    logged: Workspace,
    invoke: Callable[..., Result],
    error_lines: Callable[[Result], list[str]],
    args: tuple[str, ...],
) -> None:
    lines = error_lines(invoke(*args))
    assert len(lines) == 1, lines


def test_an_empty_log(
    workspace: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    assert "No gateway requests" in ok(invoke("llm", "requests")).stdout
    assert "No traces" in ok(invoke("traces", "list")).stdout
    assert invoke_json("llm", "costs") == []


def test_every_command_has_help(invoke: Callable[..., Result]) -> None:
    for group, commands in (("llm", ("costs", "requests", "show")), ("traces", ("list", "show"))):
        assert all(c in ok(invoke(group, "--help")).stdout for c in commands)
        for command in commands:
            text = ok(invoke(group, command, "--help")).stdout
            assert len(text.split("\n\n")[1].strip()) > 20, (group, command)
