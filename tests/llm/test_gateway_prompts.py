"""Registered prompts through the gateway: a request names a prompt version (or a label) and
its variables instead of messages; the version is stamped on the log and the trace, and
`loopml llm requests --prompt` finds it. Against the fake provider on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from llm.fake_provider import FakeProvider
from llm.test_gateway import logged, table
from loopml.cli.main import cli
from loopml.llm.errors import BadRequest
from loopml.llm.gateway import Gateway
from loopml.llm.prompts import register_prompt, set_label
from loopml.llm.reports import requests
from loopml.workspace import Workspace


@pytest.fixture
def gw(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    gateway = Gateway.from_config(table(fake_provider), workspace=sqlite_ws)
    yield gateway
    gateway.close()


def test_a_request_made_from_a_labelled_prompt(gw: Gateway, fake_provider: FakeProvider) -> None:
    ws = gw.workspace
    chat = [
        {"role": "system", "content": "You answer for {{ shop }}."},
        {"role": "user", "content": "{{ question }}"},
    ]
    v1 = register_prompt(
        "support/answer", chat, model="cheap", params={"temperature": 0.2}, workspace=ws
    )
    set_label("support/answer", "production", v1.version, workspace=ws)
    reply = gw.chat(
        {"prompt": "support/answer@production", "variables": {"shop": "Acme", "question": "hi?"}}
    )
    assert reply.body["choices"][0]["message"]["content"] == "echo: hi?"
    sent = fake_provider.calls(reply.deployment)[0]
    assert sent["messages"] == [
        {"role": "system", "content": "You answer for Acme."},
        {"role": "user", "content": "hi?"},
    ]
    assert sent["temperature"] == 0.2 and "prompt" not in sent and "variables" not in sent
    # the request's own settings win over the prompt's; a text prompt is one user message
    v2 = register_prompt("support/short", "Say {{ what }}", model="frontier", workspace=ws)
    gw.chat({"prompt": "support/short", "variables": {"what": "yes"}, "model": "cheap"})
    row = logged(gw)[-1]
    assert row["prompt"] == v2.ref and row["model_requested"] == "cheap"
    assert json.loads(row["request"])["messages"] == [{"role": "user", "content": "Say yes"}]
    assert logged(gw)[0]["prompt"] == "support/answer/1"
    assert [r["id"] for r in requests(ws, prompt="support/answer")] == [reply.request_id]
    assert [r["prompt"] for r in requests(ws, prompt="support/short/1")] == ["support/short/1"]
    assert requests(ws, prompt="support") == []  # a whole name, not a part of one
    shown = CliRunner().invoke(
        cli, ["-w", str(ws.root), "llm", "requests", "--prompt", "support/answer", "--json"]
    )
    assert [r["prompt"] for r in json.loads(shown.stdout)] == ["support/answer/1"]
    gw.tracing.force_flush()
    from sqlalchemy import select

    from loopml.llm.tables import llm_spans

    with ws.db.engine.connect() as conn:
        attributes = conn.execute(
            select(llm_spans.c.attributes).where(llm_spans.c.request_id == reply.request_id)
        ).scalar_one()
    assert json.loads(attributes)["loopml.prompt.name"] == "support/answer"


def test_bad_prompt_references_are_clear(gw: Gateway) -> None:
    register_prompt("faq", "Answer {{ q }}", workspace=gw.workspace)
    cases = [
        ({"prompt": "nosuch", "variables": {}}, "nosuch"),
        ({"prompt": "faq", "variables": {"q": "x"}}, "names no model"),
        ({"prompt": "faq", "variables": {}, "model": "cheap"}, "q"),
        ({"prompt": "faq", "variables": {"q": "x", "z": 1}, "model": "cheap"}, "z"),
        ({"prompt": 3}, "'prompt' must name a registered prompt"),
        ({"prompt": "faq", "variables": [1], "model": "cheap"}, "'variables' must be an object"),
    ]
    for body, fragment in cases:
        with pytest.raises(BadRequest, match=fragment):
            gw.chat(body)
    statuses = {r["status"] for r in logged(gw)}
    assert statuses == {400}


def test_a_prompt_reference_over_http_with_the_openai_sdk(gw: Gateway) -> None:
    import openai
    from starlette.testclient import TestClient

    from loopml.llm.keys import create_key
    from loopml.llm.server import create_gateway_app

    register_prompt("greet", "Greet {{ who }}", model="cheap", workspace=gw.workspace)
    _, secret = create_key(gw.workspace, name="sdk")
    with TestClient(create_gateway_app(gw, watch_config=False), base_url="http://t") as http:
        client = openai.OpenAI(api_key=secret, base_url="http://t/v1", http_client=http)
        reply = client.chat.completions.create(
            model="", messages=[], extra_body={"prompt": "greet", "variables": {"who": "Ana"}}
        )
        assert reply.choices[0].message.content == "echo: Greet Ana"
        with pytest.raises(openai.BadRequestError, match="who"):
            client.chat.completions.create(
                model="", messages=[], extra_body={"prompt": "greet", "variables": {}}
            )
