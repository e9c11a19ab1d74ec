"""The gateway benchmark's own parts: the fake provider (benchmarks/fake_llm.py) speaks
OpenAI's wire format to the official SDK, and the benchmark's load generator reads its plain
and chunked (SSE) answers and checks them."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _module("gateway")


@pytest.fixture(scope="module")
def fake_port() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "fake_llm.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield int(line.split()[-1])
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_fake_provider_answers_the_openai_sdk(fake_port: int) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{fake_port}/v1", api_key="x")
    messages = [{"role": "user", "content": "sixteen chars!!!"}]
    answer = client.chat.completions.create(model="m", messages=messages)
    assert answer.choices[0].message.content == "Hello from the fake provider."
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (4, 5)
    chunks = list(
        client.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake provider."
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 9
    assert client.embeddings.create(model="e", input=["a", "b"]).data[1].index == 1
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="m", prompt="legacy endpoint")


@pytest.mark.parametrize("stream", [False, True])
def test_the_load_generator_reads_and_checks_every_answer(
    bench: ModuleType, fake_port: int, stream: bool
) -> None:
    request = bench.http_request("/v1/chat/completions", bench.bodies("direct", stream), "k")
    out = asyncio.run(bench.load_async(fake_port, request, stream, 57, 4))
    assert out["statuses"] == {"200": 57} and not out["bad"] and not out["failures"]
    assert len(out["samples"]) == 57
    assert len(out["firsts"]) == (57 if stream else 0)
    summary = bench.summary([out])
    assert summary["requests"] == 57 and summary["p50_ms"] <= summary["p99_ms"]


def test_a_wrong_answer_is_reported_not_counted_as_good(bench: ModuleType, fake_port: int) -> None:
    body = b"not json"
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )
    out = asyncio.run(bench.load_async(fake_port, request, False, 3, 1))
    assert out["statuses"] == {"400": 3}
    assert out["bad"] and out["bad"][0].startswith("400")


def test_the_key_secret_is_found_in_json_or_text(bench: ModuleType) -> None:
    assert bench.find_secret('{"id": "k_1", "secret": "sk-lml-abc_D-9"}') == "sk-lml-abc_D-9"
    assert bench.find_secret("Created key k_1: sk-lml-xyz\nsave it") == "sk-lml-xyz"
    assert bench.find_secret("no key here") is None


def test_added_latency_is_paired_by_percentile(bench: ModuleType) -> None:
    results = {
        "direct": {"c": {"p50_ms": 1.0, "p99_ms": 3.0}},
        "loopml": {"c": {"p50_ms": 2.5, "p99_ms": 4.0}},
        "litellm": {"c": {"p50_ms": 16.0, "p99_ms": 20.0}},
    }
    _, targets = bench.report(results, ["c"], {}, {})
    rows = {t[1]: (t[2], t[4]) for t in targets}
    assert rows["loopml added p50"] == ("+1.50 ms", "PASS")
    assert rows["loopml added p99"] == ("+1.00 ms", "PASS")
    assert rows["LiteLLM added p50 / loopml's"] == ("10.0x", "PASS")
