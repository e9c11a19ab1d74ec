"""Fixtures of the eval tests: a workspace with a gateway over the fake provider (a real HTTP
server on 127.0.0.1), a candidate model group, a judge group, and a prompt to evaluate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llm.fake_provider import FakeProvider
from llm.test_gateway import deployment, table
from loopml.llm.gateway import Gateway
from loopml.workspace import Workspace


def eval_table(fake: FakeProvider) -> dict[str, Any]:
    """The gateway tests' table plus ``evalm`` (one deployment, ``eval-d``) and ``judge``
    (``judge-d``), with no retries so a down provider shows at once."""
    config = table(fake, num_retries=0)
    config["models"]["evalm"] = {"deployments": [deployment(fake, "eval-d", "fake-small")]}
    config["models"]["judge"] = {"deployments": [deployment(fake, "judge-d", "fake-small")]}
    return config


@pytest.fixture
def gw(
    sqlite_ws: Workspace, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    gateway = Gateway.from_config(eval_table(fake_provider), workspace=sqlite_ws)
    yield gateway
    gateway.close()
