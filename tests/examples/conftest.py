"""Fixtures of the example tests: the fake LLM provider (a real HTTP server on 127.0.0.1)
that the LLM examples' provider URLs are pointed at."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm.fake_provider import FakeProvider, start_fake_provider


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    fake = start_fake_provider()
    yield fake
    fake.stop()
