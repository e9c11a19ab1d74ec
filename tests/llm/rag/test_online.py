"""Online evaluation of sampled gateway traffic: the fake provider answers as the judge (it
echoes the last user message, so a registered judge prompt that starts with a verdict makes
it answer that verdict); rows per request and evaluator, the trace's retrieval span as the
context, failures as statuses, time series, monitoring windows and alerts, the CLI."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from llm.fake_provider import FakeProvider
from llm.test_gateway import deployment, table
from loopml import events
from loopml.cli.main import cli
from loopml.exceptions import InvalidConfig
from loopml.llm.config import GatewayConfig
from loopml.llm.gateway import Gateway
from loopml.llm.prompts import register_prompt
from loopml.llm.rag import online_series, retrieval_span, roll_windows, sampled
from loopml.llm.tables import llm_online_evals, llm_requests
from loopml.llm.tracing import close_traces, flush_traces, inject_headers
from loopml.monitoring.rules import AlertRule
from loopml.monitoring.settings import MonitorSettings
from loopml.monitoring.tables import monitor_metrics, monitor_windows
from loopml.workspace import Workspace

MakeGateway = Callable[..., Gateway]

VERDICTS = {
    "context_relevance": '{"score": 0.9, "reason": "on topic"} {{ context }}',
    "groundedness": (
        '{"claims": [{"claim": "30 days", "supported": true}, {"claim": "free", '
        '"supported": false}], "reason": "one claim unsupported"} {{ answer }}'
    ),
    "answer_relevance": '{"score": 0.8, "reason": "answers it"} {{ question }}',
}


def online_table(fake: FakeProvider, **online: Any) -> dict[str, Any]:
    config = table(fake, num_retries=0)
    config["models"]["judge"] = {"deployments": [deployment(fake, "judge-d", "fake-small")]}
    config["online_eval"] = {"sample": 1.0, "judge_model": "judge", **online}
    return config


def judges(ws: Workspace, **templates: str) -> dict[str, str]:
    """Register judge prompts that echo a verdict; the ``prompts`` table naming them."""
    prompts = {}
    for kind, template in {**VERDICTS, **templates}.items():
        register_prompt(f"test/{kind}", template, workspace=ws)
        prompts[kind] = f"test/{kind}"
    return prompts


@pytest.fixture
def make_gw(
    workspace_factory: Callable[..., Workspace],
    fake_provider: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[MakeGateway]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    opened: list[Gateway] = []

    def make(store: str = "sqlite-file", *, prompts: bool = True, **online: Any) -> Gateway:
        ws = workspace_factory(store)
        if prompts:
            online.setdefault("prompts", judges(ws))
        gateway = Gateway.from_config(online_table(fake_provider, **online), workspace=ws)
        opened.append(gateway)
        return gateway

    yield make
    for gateway in opened:
        gateway.close()
    close_traces()


def ask(gw: Gateway, text: str = "How long do refunds take?", **kwargs: Any) -> Any:
    return gw.chat({"model": "cheap", "messages": [{"role": "user", "content": text}]}, **kwargs)


def rows(ws: Workspace) -> list[Any]:
    with ws.db.read() as conn:
        return list(
            conn.execute(
                select(llm_online_evals).order_by(
                    llm_online_evals.c.request_id, llm_online_evals.c.evaluator
                )
            )
        )


def by_evaluator(ws: Workspace) -> dict[str, Any]:
    return {row.evaluator: row for row in rows(ws)}


def test_a_request_is_judged_by_each_evaluator_against_its_retrieval(
    make_gw: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gw()
    ws = gw.workspace
    documents = [{"id": "faq#2", "score": 0.8, "text": "Refunds are paid within 30 days."}]
    with retrieval_span("refund time?", documents, index="docs", index_version=3, workspace=ws):
        reply = ask(gw, "Context: faq#2\nHow long do refunds take?", headers=inject_headers())
    flush_traces(ws)
    assert gw.flush_online_evals()
    found = by_evaluator(ws)
    assert set(found) == {"context_relevance", "groundedness", "answer_relevance"}
    for row in found.values():
        assert (row.request_id, row.route, row.status) == (reply.request_id, "cheap", "ok")
        assert (row.rag_index, row.index_version) == ("docs", 3)
        assert row.judge_request_id and row.judge_cost_usd > 0
    assert found["context_relevance"].score == 0.9 and found["context_relevance"].passed
    grounded = found["groundedness"]  # one of two claims supported
    assert (grounded.score, grounded.passed, grounded.reason) == (
        0.5,
        True,
        "one claim unsupported",
    )
    assert found["answer_relevance"].score == 0.8
    sent = [call["messages"][-1]["content"] for call in fake_provider.calls("judge-d")]
    assert any("Refunds are paid within 30 days." in text for text in sent)  # the span's text
    assert any(text.endswith("refund time?") for text in sent)  # the span's query
    with ws.db.read() as conn:
        judged = conn.execute(
            select(llm_requests.c.id, llm_requests.c.tags, llm_requests.c.trace_id).where(
                llm_requests.c.id == found["groundedness"].judge_request_id
            )
        ).one()
    assert "loopml:online-eval" in judged.tags
    # The judges' calls are traces of their own: the judged request's trace (and its cost)
    # holds only the application's retrieval and the generation.
    assert judged.trace_id and judged.trace_id != found["groundedness"].trace_id


def test_without_a_retrieval_span_the_messages_are_the_context(make_gw: MakeGateway) -> None:
    gw = make_gw(delay_s=0)
    ask(gw, "Refunds take 30 days. How long do refunds take?")
    assert gw.flush_online_evals()
    found = by_evaluator(gw.workspace)
    assert found["context_relevance"].status == "skipped"
    assert found["context_relevance"].score is None and found["context_relevance"].passed is None
    assert found["groundedness"].status == "ok" and found["groundedness"].rag_index is None


def test_the_sampled_share_is_chosen_by_request_id(make_gw: MakeGateway) -> None:
    gw = make_gw(sample=0.3, evaluators=["answer_relevance"], delay_s=0)
    ids = [ask(gw, f"question {i}").request_id for i in range(200)]
    assert gw.flush_online_evals()
    judged = {row.request_id for row in rows(gw.workspace)}
    expected = {i for i in ids if sampled(i, 0.3)}
    assert judged == expected
    assert 30 <= len(judged) <= 90
    with gw.workspace.db.read() as conn:
        logged = conn.execute(select(llm_requests.c.id, llm_requests.c.tags)).all()
    judges_ = {row.id for row in logged if "loopml:online-eval" in (row.tags or "")}
    assert len(judges_) == len(expected) and not judges_ & judged  # judges are never judged


def test_a_stream_is_judged_on_its_assembled_answer(
    make_gw: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gw(evaluators=["groundedness"], delay_s=0)
    chunks = list(
        gw.stream({"model": "cheap", "messages": [{"role": "user", "content": "stream me"}]})
    )
    assert chunks
    assert gw.flush_online_evals()
    (row,) = rows(gw.workspace)
    assert row.status == "ok"
    (sent,) = fake_provider.calls("judge-d")
    assert "echo: stream me" in sent["messages"][-1]["content"]  # the answer was judged


def test_a_judge_answering_garbage_is_a_judge_error(make_gw: MakeGateway) -> None:
    gw = make_gw(prompts=False, evaluators=["answer_relevance"], delay_s=0)
    ask(gw)  # the built-in judge prompt, echoed: no verdict in it
    assert gw.flush_online_evals()
    (row,) = rows(gw.workspace)
    assert row.status == "judge_error" and row.passed is None and row.score is None
    assert "no verdict in the judge's answer" in row.reason


def test_a_judge_that_is_down_is_an_error_and_the_request_is_unaffected(
    make_gw: MakeGateway, fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    gw = make_gw(evaluators=["groundedness", "answer_relevance"], delay_s=0)
    fake_provider.fail("judge-d", "500", times=2)
    with caplog.at_level(logging.WARNING, logger="loopml.llm"):
        reply = ask(gw)
        assert reply.body["choices"][0]["message"]["content"].startswith("echo:")
        assert gw.flush_online_evals()
    found = rows(gw.workspace)
    assert [row.status for row in found] == ["error", "error"]
    assert all(row.passed is None and row.judge_cost_usd == 0 for row in found)
    assert "could not be called" in caplog.text


def test_judging_is_off_the_response_path(
    make_gw: MakeGateway, fake_provider: FakeProvider
) -> None:
    gw = make_gw(evaluators=["answer_relevance"])  # delay_s 2, then a judge slow to answer
    fake_provider.fail("judge-d", "slow_first", seconds=3)
    reply = ask(gw)
    assert reply.body["choices"][0]["message"]["content"]
    assert rows(gw.workspace) == []  # answered before any judging
    assert gw.flush_online_evals()
    (row,) = rows(gw.workspace)
    assert row.request_id == reply.request_id and row.status == "ok"


def test_a_full_queue_drops_and_counts(make_gw: MakeGateway, fake_provider: FakeProvider) -> None:
    gw = make_gw(evaluators=["answer_relevance"], max_queue=1, delay_s=60)
    ask(gw)
    ask(gw)
    assert gw.online is not None and gw.online.dropped == 1
    assert gw.flush_online_evals()
    assert len(rows(gw.workspace)) == 1
    metrics = gw.metrics.registry.get_sample_value
    assert metrics("loopml_gateway_online_evals_dropped_total") == 1
    labels = {"evaluator": "answer_relevance", "status": "ok"}
    assert metrics("loopml_gateway_online_evals_total", labels) == 1


def test_routes_limit_the_sampling_and_a_reload_applies(make_gw: MakeGateway) -> None:
    gw = make_gw(routes=["frontier"], evaluators=["answer_relevance"], delay_s=0)
    ask(gw)
    assert gw.flush_online_evals() and rows(gw.workspace) == []
    raw = dict(gw.config.raw)
    raw["online_eval"] = {**raw["online_eval"], "routes": ["cheap"]}
    gw.reload(GatewayConfig.from_dict(raw))
    reply = ask(gw)
    assert gw.flush_online_evals()
    assert [row.request_id for row in rows(gw.workspace)] == [reply.request_id]
    raw["online_eval"] = {**raw["online_eval"], "sample": 0}
    gw.reload(GatewayConfig.from_dict(raw))
    ask(gw)
    assert gw.flush_online_evals() and len(rows(gw.workspace)) == 1


@pytest.mark.parametrize("store", ["sqlite-file", "postgres"])
def test_windows_and_alerts(make_gw: MakeGateway, store: str) -> None:
    gw = make_gw(store)  # the delay lets the retrieval span be stored first
    ws = gw.workspace
    rule = AlertRule("ungrounded", "groundedness < 0.7", deployment="rag:*")
    ws.settings = ws.settings.with_overrides(monitor=MonitorSettings(alerts=(rule,)))
    with retrieval_span("refund time?", ["faq#2"], index="docs", workspace=ws):
        ask(gw, headers=inject_headers())
    flush_traces(ws)
    ask(gw)  # no retrieval: counted for llm:cheap only
    assert gw.flush_online_evals()
    assert len(rows(ws)) == 6

    points = online_series(index="docs", days=1, workspace=ws)
    assert [(p.evaluator, p.count, p.mean_score, p.pass_rate) for p in points] == [
        ("context_relevance", 1, 0.9, 1.0),
        ("groundedness", 1, 0.5, 1.0),
        ("answer_relevance", 1, 0.8, 1.0),
    ]
    everything = online_series(route="cheap", days=1, workspace=ws)
    assert {p.evaluator: p.count for p in everything}["groundedness"] == 2

    later = datetime.now(UTC) + timedelta(hours=2)
    rolled = roll_windows(ws, now=later)
    assert {w.deployment for w in rolled.windows} == {"llm:cheap", "rag:docs"}
    docs = next(w for w in rolled.windows if w.deployment == "rag:docs")
    assert docs.value("groundedness") == 0.5 and docs.value("evaluated") == 1
    cheap = next(w for w in rolled.windows if w.deployment == "llm:cheap")
    assert cheap.value("evaluated") == 2 and cheap.value("context_relevance") == 0.9
    assert [(c.kind, c.alert.deployment) for c in rolled.alerts] == [("fired", "rag:docs")]
    (event,) = events.read(ws.db, kinds="alert")
    assert event.subject == "rag:docs" and event.payload["rule"] == "ungrounded"

    with ws.db.read() as conn:
        before = conn.execute(select(monitor_windows.c.id, monitor_windows.c.computed_at)).all()
        metrics_before = conn.execute(select(monitor_metrics)).all()
    again = roll_windows(ws, now=later)
    assert again.windows == [] and again.alerts == []
    with ws.db.read() as conn:
        assert conn.execute(select(monitor_windows.c.id, monitor_windows.c.computed_at)).all() == (
            before
        )
        assert conn.execute(select(monitor_metrics)).all() == metrics_before
    assert len(events.read(ws.db, kinds="alert")) == 1


def test_the_cli_rolls_and_prints_the_series(
    make_gw: MakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = make_gw(delay_s=0, evaluators=["answer_relevance"])
    ask(gw)
    assert gw.flush_online_evals()
    monkeypatch.chdir(Path(gw.workspace.root))
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["rag", "online", "--route", "cheap", "--json"],
        prog_name="loopml",
    )
    assert result.exit_code == 0, (result.output, result.exception)
    (point,) = json.loads(result.stdout)
    assert (point["evaluator"], point["count"], point["mean_score"]) == ("answer_relevance", 1, 0.8)
    assert point["start"].endswith("+00:00")
    shown = runner.invoke(
        cli,
        ["rag", "online", "--window", "1d"],
        prog_name="loopml",
    )
    assert shown.exit_code == 0, shown.output
    assert "answer_relevance" in shown.stdout and "0.800" in shown.stdout
    bad = runner.invoke(
        cli,
        ["rag", "online", "--window", "7s"],
        prog_name="loopml",
    )
    assert bad.exit_code != 0 and "error:" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize(
    ("online", "message"),
    [
        ({"sample": 1.5}, "[gateway.online_eval]: sample must be a share from 0 to 1, got 1.5"),
        ({"evaluators": ["groundness"]}, "unknown evaluator 'groundness' (did you mean"),
        ({"delay_s": -1}, "delay_s must be a number >= 0, got -1"),
        ({"judge_model": "juge"}, "judge_model 'juge' is not a model alias of this gateway"),
        ({"judge_model": None}, "sample = 1 needs judge_model"),
        ({"routes": ["nope"]}, "routes 'nope' is not a model alias"),
        ({"prompts": {"grounded": "x"}}, "[gateway.online_eval.prompts]: unknown evaluator"),
        ({"window": "5s"}, "window must be whole minutes"),
        ({"max_queue": 0}, "max_queue must be a positive integer"),
        ({"samples": 0.1}, "unknown key 'samples'"),
    ],
)
def test_bad_config_entries_are_named(
    fake_provider: FakeProvider, online: dict[str, Any], message: str
) -> None:
    config = online_table(fake_provider, **online)
    if online.get("judge_model", "") is None:
        del config["online_eval"]["judge_model"]
    with pytest.raises(InvalidConfig) as caught:
        GatewayConfig.from_dict(config)
    assert message in str(caught.value)


def test_off_by_default(fake_provider: FakeProvider, sqlite_ws: Workspace) -> None:
    config = table(fake_provider)
    parsed = GatewayConfig.from_dict(config)
    assert not parsed.online_eval.active
    gateway = Gateway(parsed, sqlite_ws, require_key=False)
    assert gateway.online is None
    gateway.close()


def test_the_judges_need_no_key_where_clients_do(
    workspace_factory: Callable[..., Workspace],
    fake_provider: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loopml.llm.keys import create_key

    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    ws = workspace_factory()
    config = online_table(fake_provider, prompts=judges(ws), evaluators=["answer_relevance"])
    config["require_key"] = True
    _, secret = create_key(ws, name="app", models=["cheap"])  # the key may not use "judge"
    with Gateway.from_config(config, workspace=ws, require_key=True) as gw:
        ask(gw, api_key=secret)
        assert gw.flush_online_evals()
        (row,) = rows(ws)
        assert row.status == "ok" and row.score == 0.8


def _otlp_json(trace_id: str, span_id: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """One span as an OTLP/JSON export request."""

    def value(item: Any) -> dict[str, Any]:
        if isinstance(item, list):
            return {"arrayValue": {"values": [value(v) for v in item]}}
        if isinstance(item, bool):
            return {"boolValue": item}
        if isinstance(item, int):
            return {"intValue": str(item)}
        if isinstance(item, float):
            return {"doubleValue": item}
        return {"stringValue": str(item)}

    now = time.time_ns()
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "retrieval",
        "kind": 3,
        "startTimeUnixNano": str(now - 5_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [{"key": k, "value": value(v)} for k, v in attributes.items()],
    }
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


def test_a_retrieval_span_another_key_sends_into_the_trace_is_not_the_context(
    workspace_factory: Callable[..., Workspace],
    fake_provider: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Trace ids travel in headers: a key holder who learns one may send spans into that
    trace, even claiming another key sent them. The judges read only what the request's own
    key (or its team) sent."""
    from loopml.llm.keys import create_key
    from loopml.llm.rag import retrieval_attributes, stored_retrievals
    from loopml.llm.rag.spans import SENT_BY_KEY
    from loopml.llm.server import create_gateway_app
    from server.conftest import start_server

    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    ws = workspace_factory()
    config = online_table(fake_provider, prompts=judges(ws), evaluators=["context_relevance"])
    config["require_key"] = True
    app_key, app_secret = create_key(ws, name="app", team="support")
    _, teammate = create_key(ws, name="app-indexer", team="support")
    _, other = create_key(ws, name="elsewhere", team="sales")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"

    def retrieval(text: str, **extra: Any) -> dict[str, Any]:
        documents = [{"id": "doc", "text": text}]
        return {**retrieval_attributes("refunds?", documents, index="docs"), **extra}

    with Gateway.from_config(config, workspace=ws, require_key=True) as gw:
        url, stop = start_server(create_gateway_app(gw, watch_config=False))
        try:
            sent = [
                (app_secret, "a1" * 8, retrieval("Refunds take 30 days.")),
                (teammate, "a2" * 8, retrieval("Refunds need a receipt.")),
                (other, "b1" * 8, retrieval("Refunds are instant.")),
                (other, "b2" * 8, retrieval("Refunds are doubled.", **{SENT_BY_KEY: app_key.id})),
            ]
            for secret, span_id, attributes in sent:
                answer = httpx.post(
                    f"{url}/v1/traces",
                    json=_otlp_json(trace_id, span_id, attributes),
                    headers={"authorization": f"Bearer {secret}"},
                    timeout=10,
                )
                assert answer.status_code == 200 and answer.json() == {}, answer.text
            gw.log.flush()
            assert len(stored_retrievals(ws, trace_id=trace_id)) == 4  # all kept, marked
            reply = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "cheap", "messages": [{"role": "user", "content": "Refunds?"}]},
                headers={
                    "authorization": f"Bearer {app_secret}",
                    "traceparent": f"00-{trace_id}-{'c1' * 8}-01",
                },
                timeout=10,
            )
            assert reply.status_code == 200, reply.text
            gw.log.flush()
            assert gw.flush_online_evals()
        finally:
            stop()
    (row,) = rows(ws)
    assert row.status == "ok" and row.trace_id == trace_id
    (judged,) = [c["messages"][-1]["content"] for c in fake_provider.calls("judge-d")]
    assert "Refunds take 30 days." in judged and "Refunds need a receipt." in judged
    assert "instant" not in judged and "doubled" not in judged
    senders = sorted(r.sent_by for r in stored_retrievals(ws, trace_id=trace_id))
    assert [team for _, team in senders].count("sales") == 2  # the claim was overwritten


def test_docstring_examples() -> None:
    import doctest

    from loopml.llm.rag import online

    result = doctest.testmod(online, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_a_request_made_from_a_registered_prompt_names_it(make_gw: MakeGateway) -> None:
    gw = make_gw(evaluators=["answer_relevance"], delay_s=0)
    register_prompt("app/answer", "Answer briefly: {{ q }}", model="cheap", workspace=gw.workspace)
    gw.chat({"prompt": "app/answer", "variables": {"q": "refunds?"}})
    assert gw.flush_online_evals()
    (row,) = rows(gw.workspace)
    assert (row.prompt, row.route, row.status) == ("app/answer/1", "cheap", "ok")
