"""Feedback on gateway requests: the API (values checked, unknown requests named), the
gateway's ``POST /v1/feedback`` (authenticated, a key only on its own team's requests, errors
in OpenAI's shape, the request id from the answer's header) and ``loopml llm feedback``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from llm.fake_provider import FakeProvider
from llm.test_gateway import table
from loopml.cli.main import cli
from loopml.exceptions import InvalidInput, NotFound
from loopml.llm.feedback import (
    FeedbackNotAllowed,
    RequestNotFound,
    feedback_for,
    list_feedback,
    record_feedback,
)
from loopml.llm.gateway import Gateway
from loopml.llm.keys import create_key
from loopml.llm.server import create_gateway_app
from loopml.workspace import Workspace
from server.conftest import start_server
from services import require_module


@pytest.fixture
def gw(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    gateway = Gateway.from_config(table(fake_provider), workspace=sqlite_ws)
    yield gateway
    gateway.close()


def _ask(text: str = "hi") -> dict[str, object]:
    return {"model": "cheap", "messages": [{"role": "user", "content": text}]}


def test_values_are_checked_and_unknown_requests_named(gw: Gateway) -> None:
    ws = gw.workspace
    reply = gw.chat(_ask())
    gw.log.flush()
    up = record_feedback(reply.request_id, True, workspace=ws)
    assert (up.value, up.name, up.request_id) == (1.0, "user", reply.request_id)
    assert up.actor  # who ran it
    rating = record_feedback(
        reply.request_id, 4, name="rating", comment="long", actor="alice", workspace=ws
    )
    assert (rating.value, rating.comment, rating.actor) == (4.0, "long", "alice")
    assert record_feedback(reply.request_id, False, workspace=ws).value == 0.0
    assert [f.value for f in feedback_for(reply.request_id, workspace=ws)] == [1.0, 4.0, 0.0]
    assert [f.id for f in feedback_for(reply.request_id, name="rating", workspace=ws)] == [
        rating.id
    ]
    assert feedback_for("req_other", workspace=ws) == []
    assert list_feedback(name="user", workspace=ws)[0].value == 0.0
    assert json.loads(json.dumps(up.to_dict()))["created_at"].endswith("+00:00")
    for bad in (math.nan, math.inf, "1", None, [1]):
        with pytest.raises(InvalidInput, match="finite number or true/false"):
            record_feedback(reply.request_id, bad, workspace=ws)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="feedback name"):
        record_feedback(reply.request_id, 1, name="", workspace=ws)
    with pytest.raises(RequestNotFound, match="No gateway request 'req_nosuch'") as caught:
        record_feedback("req_nosuch", 1, workspace=ws)
    assert isinstance(caught.value, NotFound)
    assert len(feedback_for(reply.request_id, workspace=ws)) == 3  # nothing else stored


def test_in_process_feedback_right_after_the_answer(gw: Gateway) -> None:
    # The request log is written in batches: the gateway's own feedback writes it first.
    reply = gw.chat(_ask())
    stored = gw.feedback(reply.request_id, True, comment="spot on")
    assert (stored.request_id, stored.value, stored.comment) == (reply.request_id, 1.0, "spot on")
    with pytest.raises(RequestNotFound, match=r"Gateway.feedback"):
        gw.feedback("req_nosuch", 1)


@pytest.fixture
def served(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Gateway]]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    config = table(fake_provider, require_key=True)
    # a long flush interval: the endpoint must flush the log itself to find a fresh request
    config["log_flush_interval"] = 60.0
    gateway = Gateway.from_config(config, workspace=sqlite_ws, require_key=True)
    url, stop = start_server(create_gateway_app(gateway, watch_config=False))
    yield url, gateway
    stop()


def test_the_feedback_endpoint(served: tuple[str, Gateway]) -> None:
    openai = require_module("openai")
    url, gateway = served
    ws = gateway.workspace
    _, mine = create_key(ws, name="app", team="support")
    _, colleague = create_key(ws, name="app2", team="support")
    _, stranger = create_key(ws, name="other", team="sales")
    _, loner = create_key(ws, name="loner")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=mine, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="cheap", messages=[{"role": "user", "content": "hello"}], user="user-7"
    )
    request_id = raw.headers["x-request-id"]

    def send(body: object, key: str | None) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.post(f"{url}/v1/feedback", json=body, headers=headers, timeout=10)

    stored = send({"request_id": request_id, "value": True, "comment": "right"}, mine)
    assert stored.status_code == 201, stored.text
    body = stored.json()
    assert (body["request_id"], body["value"], body["name"], body["comment"]) == (
        request_id, 1.0, "user", "right",
    )  # fmt: skip
    assert body["actor"].startswith("key:")
    rated = send({"request_id": request_id, "value": 3.5, "name": "rating"}, colleague)
    assert rated.status_code == 201 and rated.json()["name"] == "rating"

    def refused(response: httpx.Response, status: int, fragment: str) -> None:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "code", "param"}
        assert fragment in error["message"], error

    refused(send({"request_id": request_id, "value": 1}, stranger), 403, "not made by team 'sales'")
    refused(send({"request_id": request_id, "value": 1}, loner), 403, "not made by key")
    refused(send({"request_id": request_id, "value": 1}, None), 401, "Missing API key")
    refused(send({"request_id": request_id, "value": 1}, "sk-lml-nosuch"), 401, "no such")
    refused(send({"request_id": "req_nosuch", "value": 1}, mine), 404, "'req_nosuch'")
    assert send({"request_id": "req_nosuch", "value": 1}, mine).json()["error"]["code"] == (
        "request_not_found"
    )
    refused(send({"request_id": request_id, "value": "great"}, mine), 400, "finite number")
    refused(send({"request_id": request_id}, mine), 400, "needs 'request_id' and 'value'")
    refused(send({"request_id": request_id, "value": 1, "stars": 5}, mine), 400, "stars")
    refused(send([1], mine), 400, "JSON object")
    assert [f.value for f in feedback_for(request_id, workspace=ws)] == [1.0, 3.5]


def test_cli_feedback(gw: Gateway, tmp_path: Path) -> None:
    ws = gw.workspace
    reply = gw.chat(_ask())
    gw.log.flush()

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["-w", str(ws.root), "llm", "feedback", *args])

    done = run(reply.request_id[:12], "up", "--comment", "ok")  # a unique prefix
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"Feedback user=1 on {reply.request_id}")
    as_json = run(reply.request_id, "0.25", "--name", "score", "--json")
    assert json.loads(as_json.stdout)["value"] == 0.25
    for args, fragment in (
        (("req_nosuch", "1"), "No request 'req_nosuch'"),
        ((reply.request_id, "great"), "VALUE is a number"),
        ((reply.request_id, "nan"), "finite number"),
    ):
        failed = run(*args)
        assert failed.exit_code == 1, failed.output
        assert failed.stderr.startswith("error: ") and fragment in failed.stderr
        assert "Traceback" not in failed.output
    assert len(feedback_for(reply.request_id, workspace=ws)) == 2
    with pytest.raises(FeedbackNotAllowed):
        key, _ = create_key(ws, name="k", team="t")
        record_feedback(reply.request_id, 1, key=key, workspace=ws)


def test_streams_carry_their_request_id(served: tuple[str, Gateway]) -> None:
    url, gateway = served
    _, secret = create_key(gateway.workspace, name="app")
    headers = {"authorization": f"Bearer {secret}"}
    ids = []
    for path, body in (
        ("/v1/chat/completions", {**_ask("stream me"), "stream": True}),
        ("/v1/messages", {**_ask("stream me"), "stream": True, "max_tokens": 20}),
    ):
        with httpx.stream("POST", f"{url}{path}", json=body, headers=headers, timeout=10) as r:
            assert r.status_code == 200
            ids.append(r.headers["x-request-id"])
            assert "echo" in r.read().decode()
    for request_id in ids:
        given = httpx.post(
            f"{url}/v1/feedback",
            json={"request_id": request_id, "value": 1},
            headers=headers,
            timeout=10,
        )
        assert given.status_code == 201, given.text
