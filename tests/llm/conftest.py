"""Fixtures of the LLM gateway's tests: one fake provider (a real HTTP server speaking
OpenAI's and Anthropic's wire formats) for the whole session, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm.fake_provider import FakeProvider, start_fake_provider


@pytest.fixture(scope="session")
def fake_provider_session() -> Iterator[FakeProvider]:
    """The session's fake provider (prefer ``fake_provider``, which is reset per test)."""
    fake = start_fake_provider()
    yield fake
    fake.stop()


@pytest.fixture
def fake_provider(fake_provider_session: FakeProvider) -> Iterator[FakeProvider]:
    """The fake provider with no faults set and no calls recorded."""
    fake_provider_session.reset()
    yield fake_provider_session
    fake_provider_session.reset()
