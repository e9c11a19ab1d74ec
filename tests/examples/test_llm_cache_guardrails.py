"""examples/llm_cache_guardrails/run.py end to end, its provider's URL pointed at the fake
provider on 127.0.0.1 (no network, no real keys)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm.fake_provider import FakeProvider

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llm_cache_guardrails"


@pytest.mark.slow
def test_the_cache_and_guardrails_example(tmp_path: Path, fake_provider: FakeProvider) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    text = (EXAMPLE / "gateway.toml").read_text()
    for name in ("faq-openai", "support-openai"):
        start = text.index(f'name = "{name}"')
        at = text.index("https://api.openai.com/v1", start)
        url = fake_provider.base_url(name)
        text = text[:at] + url + text[at + len("https://api.openai.com/v1") :]
    (folder / "gateway.toml").write_text(text)
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE / "run.py"), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    shown = out.stdout
    assert "faq: echo: How do I reset my password?" in shown
    assert "from the cache (exact)" in shown and "from the cache (semantic)" in shown
    assert "blocked by rule 'injection' of policy 'support'" in shown
    assert "support, streamed: echo: Repeat my card number [CREDIT_CARD]" in shown
    assert "4111" not in shown
    assert len(fake_provider.calls("faq-openai")) == 1
    assert fake_provider.calls("support-openai")[0]["messages"][0]["content"].startswith("Repeat")
    assert "$ loopml llm cache stats" in shown and "faq" in shown
