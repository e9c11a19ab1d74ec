"""``loopml gateway serve`` over HTTP, driven by the official ``openai`` and ``anthropic``
SDKs, against the fake provider; two gateway processes sharing one limit; config reload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from llm.fake_provider import FakeProvider
from llm.test_gateway import table
from loopml.llm.gateway import Gateway
from loopml.llm.keys import create_key
from loopml.llm.server import create_gateway_app
from loopml.llm.tables import llm_requests
from loopml.workspace import Workspace
from server.conftest import free_port, start_server, wait_healthy
from services import require_module


@pytest.fixture
def served(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str, Gateway]]:
    """(base URL, a virtual key, the gateway) of a gateway app in a uvicorn thread."""
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    config = table(fake_provider, require_key=True)
    gateway = Gateway.from_config(config, workspace=sqlite_ws, require_key=True)
    _, secret = create_key(sqlite_ws, name="tests")
    url, stop = start_server(create_gateway_app(gateway, watch_config=False))
    yield url, secret, gateway
    stop()


def rows(ws: Workspace) -> list[dict[str, Any]]:
    with ws.db.engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                select(llm_requests).order_by(llm_requests.c.created_at)
            ).mappings()
        ]


def test_openai_sdk_chat_stream_embeddings_models(served: tuple[str, str, Gateway]) -> None:
    openai = require_module("openai")
    url, secret, gateway = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
    reply = client.chat.completions.create(
        model="cheap", messages=[{"role": "user", "content": "hello gateway"}]
    )
    assert reply.choices[0].message.content == "echo: hello gateway"
    assert reply.usage.prompt_tokens == 2
    stream = client.chat.completions.create(
        model="frontier",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    embedded = client.embeddings.create(model="cheap", input=["x y"])
    assert len(embedded.data[0].embedding) == 8
    names = [m.id for m in client.models.list()]
    assert "cheap" in names and "frontier" in names
    json_mode = client.chat.completions.create(
        model="cheap",
        messages=[{"role": "user", "content": "as json"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(json_mode.choices[0].message.content) == {"echo": "as json"}
    gateway.log.flush()
    assert len(rows(gateway.workspace)) == 4


def test_anthropic_sdk_messages_and_stream(served: tuple[str, str, Gateway]) -> None:
    anthropic = require_module("anthropic")
    url, secret, _ = served
    client = anthropic.Anthropic(base_url=url, api_key=secret, max_retries=0)
    for model in ("frontier", "cheap"):  # an Anthropic provider, then an OpenAI one
        message = client.messages.create(
            model=model,
            max_tokens=100,
            system="be brief",
            messages=[{"role": "user", "content": "hi claude"}],
        )
        assert message.content[0].text == "echo: hi claude"
        assert message.stop_reason == "end_turn"
        assert message.usage.output_tokens == 3
        with client.messages.stream(
            model=model, max_tokens=100, messages=[{"role": "user", "content": "stream it"}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == "echo: stream it"
        assert final.usage.output_tokens == 3


def test_errors_reach_the_sdks_in_their_shape(
    served: tuple[str, str, Gateway], fake_provider: FakeProvider
) -> None:
    openai = require_module("openai")
    anthropic = require_module("anthropic")
    url, secret, _ = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.NotFoundError, match="cheap"):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    bad = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-lml-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "x"}])
    fake_provider.fail("front", "500", times=10)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="frontier", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 502
    claude = anthropic.Anthropic(base_url=url, api_key=secret, max_retries=0)
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(
            model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    response = httpx.post(
        f"{url}/v1/chat/completions",
        content=b"{not json",
        headers={"authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_stream_broken_after_tokens_ends_with_an_error_event(
    served: tuple[str, str, Gateway], fake_provider: FakeProvider
) -> None:
    url, secret, _ = served
    fake_provider.fail("front", "cut", after=2)
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={
            "model": "frontier",
            "stream": True,
            "messages": [{"role": "user", "content": "a b c d e f"}],
        },
        headers={"authorization": f"Bearer {secret}"},
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in lines[-1]
    assert json.loads(lines[-1][6:])["error"]["code"] == "stream_interrupted"


def test_client_disconnect_mid_stream_is_billed_and_logged(
    served: tuple[str, str, Gateway], fake_provider: FakeProvider
) -> None:
    url, secret, gateway = served
    for name in ("cheap-a", "cheap-b"):
        fake_provider.fail(name, "drip", seconds=0.05)
    words = " ".join(f"w{i}" for i in range(400))
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"model": "cheap", "stream": True, "messages": [{"role": "user", "content": words}]},
        headers={"authorization": f"Bearer {secret}"},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and "w3" in line:
                break  # leave mid-stream
    deadline = time.monotonic() + 10
    while True:
        gateway.log.flush()
        logged = rows(gateway.workspace)
        if logged:
            break
        assert time.monotonic() < deadline, "the broken-off stream was never logged"
        time.sleep(0.05)
    (row,) = logged
    assert row["status"] == 499 and row["truncated"] is True
    assert row["output_tokens"] > 0 and row["cost_usd"] > 0
    # the upstream request was cancelled, not read to its end
    deadline = time.monotonic() + 10
    while fake_provider.calls(row["deployment"])[0].get("_stream_end") != "disconnected":
        assert time.monotonic() < deadline, fake_provider.calls(row["deployment"])[0]
        time.sleep(0.05)


def test_metrics_count_requests_tokens_and_cost(served: tuple[str, str, Gateway]) -> None:
    url, secret, _ = served
    httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "cheap", "messages": [{"role": "user", "content": "m"}]},
        headers={"authorization": f"Bearer {secret}"},
    ).raise_for_status()
    text = httpx.get(f"{url}/metrics").text
    assert "loopml_gateway_requests_total{key=" in text
    assert "loopml_gateway_cost_usd_total" in text
    assert "loopml_gateway_tokens_total" in text


# -- real `loopml gateway serve` processes -------------------------------------------------


def _config_file(path: Path, fake: FakeProvider, **extra: Any) -> Path:
    import tomlkit

    data = table(fake, **extra)
    data.pop("log_flush_interval")
    data["log_flush_interval"] = 0.1
    path.write_text(tomlkit.dumps({"gateway": data}))
    return path


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., tuple[str, subprocess.Popen[bytes]]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(root: Path, config: Path) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        env = {**os.environ, "FAKE_PROVIDER_KEY": "sk-fake"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loopml.cli",
                "gateway",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            cwd=root,
            env=env,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        return url, proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_two_gateway_processes_share_one_rate_limit(
    tmp_path: Path, fake_provider: FakeProvider, spawn: Callable[..., Any]
) -> None:
    ws = Workspace.init(tmp_path / "project")
    config = _config_file(tmp_path / "gateway.toml", fake_provider, require_key=True)
    _, secret = create_key(ws, rpm=6)
    ws.close()
    first, _ = spawn(tmp_path / "project", config)
    second, _ = spawn(tmp_path / "project", config)
    statuses = []
    for i in range(12):
        response = httpx.post(
            f"{(first, second)[i % 2]}/v1/chat/completions",
            json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {secret}"},
            timeout=30,
        )
        statuses.append(response.status_code)
    assert statuses.count(200) == 6, statuses  # N, not 2N
    assert statuses.count(429) == 6


@pytest.mark.parametrize("backend", ["workspace", "redis"])
def test_two_gateway_replicas_share_one_cache(
    tmp_path: Path, fake_provider: FakeProvider, spawn: Callable[..., Any], backend: str
) -> None:
    import uuid

    from services import redis_url

    ws = Workspace.init(tmp_path / "project")
    _, secret = create_key(ws, name="app")
    ws.close()
    cache: dict[str, Any] = {"semantic": True, "sync_interval": 0.1}
    if backend == "redis":
        cache["backend"] = f"{redis_url()}?prefix=loopml-test-{uuid.uuid4().hex[:12]}:"
    config = _config_file(tmp_path / "gateway.toml", fake_provider, cache=cache)
    first, _ = spawn(tmp_path / "project", config)
    second, _ = spawn(tmp_path / "project", config)

    def ask(url: str, text: str) -> httpx.Response:
        response = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "cheap", "messages": [{"role": "user", "content": text}]},
            headers={"authorization": f"Bearer {secret}"},
            timeout=30,
        )
        response.raise_for_status()
        return response

    original = ask(first, "How do I reset my password?")
    assert "x-loopml-cache" not in original.headers
    # Kept off the response path, then seen by the other replica within a second (its sync
    # polls every 0.1 s here); one question only, so the hit can't be of its own making.
    time.sleep(3)
    near = ask(second, "how do i reset my password")
    assert near.headers.get("x-loopml-cache") == "semantic"
    with Workspace.open(tmp_path / "project") as reader, reader.db.engine.connect() as conn:
        entry = conn.execute(
            select(llm_requests.c.cache).where(llm_requests.c.id == near.headers["x-request-id"])
        ).scalar_one_or_none()
    deadline = time.monotonic() + 10
    while entry is None and time.monotonic() < deadline:  # the log is written in batches
        time.sleep(0.2)
        with Workspace.open(tmp_path / "project") as reader, reader.db.engine.connect() as conn:
            entry = conn.execute(
                select(llm_requests.c.cache).where(
                    llm_requests.c.id == near.headers["x-request-id"]
                )
            ).scalar_one_or_none()
    assert entry is not None
    assert json.loads(entry)["matched_request_id"] == original.headers["x-request-id"]


def test_config_is_reloaded_and_a_bad_one_is_refused(
    tmp_path: Path, fake_provider: FakeProvider, spawn: Callable[..., Any]
) -> None:
    Workspace.init(tmp_path / "project").close()
    config = _config_file(tmp_path / "gateway.toml", fake_provider)
    url, _ = spawn(tmp_path / "project", config)
    original = config.read_text()

    def names() -> list[str]:
        return [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]

    assert "extra" not in names()
    data = table(fake_provider)
    data["models"]["extra"] = {
        "deployments": [
            {
                "name": "extra-d",
                "provider": "openai",
                "model": "fake-small",
                "base_url": fake_provider.base_url("extra-d"),
            }
        ]
    }
    import tomlkit

    time.sleep(1.1)  # a new mtime
    config.write_text(tomlkit.dumps({"gateway": data}))
    deadline = time.monotonic() + 15
    while "extra" not in names():
        assert time.monotonic() < deadline, "the new config was not loaded"
        time.sleep(0.2)
    time.sleep(1.1)
    config.write_text(original.replace('provider = "openai"', 'provider = "opneai"', 1))
    time.sleep(5)  # two reload checks
    assert "extra" in names()  # the running config stayed


def test_sigterm_drains_a_stream_in_flight_and_writes_the_log(
    tmp_path: Path, fake_provider: FakeProvider, spawn: Callable[..., Any]
) -> None:
    root = tmp_path / "project"
    Workspace.init(root).close()
    config = _config_file(tmp_path / "gateway.toml", fake_provider)
    url, proc = spawn(root, config)
    fake_provider.fail("cheap-a", "slow_first", seconds=1.5)
    fake_provider.fail("cheap-b", "slow_first", seconds=1.5)
    got: list[str] = []
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"model": "cheap", "stream": True, "messages": [{"role": "user", "content": "x y"}]},
        timeout=30,
    ) as response:
        proc.send_signal(signal.SIGTERM)
        got = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert got[-1] == "data: [DONE]"
    # uvicorn re-raises the signal once it has shut down cleanly: the exit status says SIGTERM
    assert proc.wait(30) in (0, -signal.SIGTERM)
    ws = Workspace.open(root)
    try:
        (row,) = rows(ws)
        assert row["status"] == 200 and row["stream"] is True
    finally:
        ws.close()
