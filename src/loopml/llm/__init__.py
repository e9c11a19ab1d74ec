"""LLMOps: one gateway in front of every LLM provider (routing, fallbacks, virtual keys,
budgets and rate limits, exact token and cost accounting, request logs and traces).

    from loopml.llm import Gateway, trace

    gw = Gateway.from_config()                 # [gateway] of loopml.toml
    reply = gw.chat({"model": "cheap", "messages": [{"role": "user", "content": "Hi"}]})
    print(reply.body["choices"][0]["message"]["content"], reply.cost_usd)

    @trace                                     # an application's own span, in the same traces
    def retrieve(query): ...

Over HTTP: ``loopml gateway serve`` (OpenAI- and Anthropic-compatible; see docs/gateway.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.llm.config import GatewayConfig, load_gateway_config
    from loopml.llm.gateway import Gateway, GatewayResponse, StreamInterrupted
    from loopml.llm.tracing import trace

__all__ = [
    "Gateway",
    "GatewayConfig",
    "GatewayResponse",
    "StreamInterrupted",
    "load_gateway_config",
    "trace",
]

_WHERE = {
    "Gateway": "loopml.llm.gateway",
    "GatewayResponse": "loopml.llm.gateway",
    "StreamInterrupted": "loopml.llm.gateway",
    "GatewayConfig": "loopml.llm.config",
    "load_gateway_config": "loopml.llm.config",
    "trace": "loopml.llm.tracing",
}


def __getattr__(name: str) -> Any:
    """Import on first use: ``import loopml.llm`` stays cheap."""
    import importlib

    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml.llm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
