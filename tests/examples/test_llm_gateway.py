"""examples/llm_gateway/run.py end to end, its providers' URLs pointed at the fake provider
on 127.0.0.1 (no network, no real keys)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm.fake_provider import FakeProvider

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gateway_example_prints_costs_and_a_trace(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    text = (ROOT / "examples" / "llm_gateway" / "gateway.toml").read_text()
    text = text.replace("https://api.openai.com/v1", fake_provider.base_url("cheap-openai"))
    text = text.replace(
        "https://api.anthropic.com", fake_provider.base_url("frontier-anthropic", "anthropic")
    )
    (folder / "gateway.toml").write_text(text)
    fake_provider.fail("cheap-openai", "500", times=1)  # the first attempt fails over
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "llm_gateway" / "run.py"), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    shown = out.stdout
    assert "answer: echo: How long do refunds take?" in shown, shown
    assert shown.count("streamed: echo:") == 3
    assert "$ loopml llm costs --by model" in shown and "gpt-4o-mini" in shown
    assert "growth" in shown
    assert "answer a support question" in shown and "retrieve documents" in shown
    assert "attempt cheap-openai" in shown
