"""Guardrails for the LLM gateway: policies of rules that block, redact or flag what a
request or an answer holds (personal data, secrets, prompt injections, banned terms, too many
tokens, JSON that breaks a schema, ungrounded answers), on whole texts and on streams.

    from loopml.llm.guardrails import default_policy, StreamGuard

    policy = default_policy()
    verdict = policy.check_input([{"role": "user", "content": "My card is 4111 1111 1111 1111"}])
    verdict.messages[0]["content"]       # 'My card is [CREDIT_CARD]'

    guard = StreamGuard(policy)
    sent = "".join(guard.feed(delta) for delta in deltas) + guard.finish()

Policies come from ``[gateway.guardrails.policies.NAME]`` (:func:`policies_from_config`) and
are versioned in the metadata store (:func:`save_policy`). See docs/guardrails.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.llm.guardrails.evaluate import evaluate, read_cases
    from loopml.llm.guardrails.findings import Finding
    from loopml.llm.guardrails.policy import (
        Policy,
        Rule,
        default_policy,
        policies_from_config,
    )
    from loopml.llm.guardrails.stream import StreamGuard
    from loopml.llm.guardrails.verdict import GuardrailBlocked, RuleResult, Verdict
    from loopml.llm.guardrails.versions import (
        PolicyNotFound,
        get_policy,
        policy_versions,
        register_policies,
        save_policy,
    )

__all__ = [
    "Finding",
    "GuardrailBlocked",
    "Policy",
    "PolicyNotFound",
    "Rule",
    "RuleResult",
    "StreamGuard",
    "Verdict",
    "default_policy",
    "evaluate",
    "get_policy",
    "policies_from_config",
    "policy_versions",
    "read_cases",
    "register_policies",
    "save_policy",
]

_WHERE = {
    "Finding": "loopml.llm.guardrails.findings",
    "GuardrailBlocked": "loopml.llm.guardrails.verdict",
    "Policy": "loopml.llm.guardrails.policy",
    "Rule": "loopml.llm.guardrails.policy",
    "RuleResult": "loopml.llm.guardrails.verdict",
    "Verdict": "loopml.llm.guardrails.verdict",
    "default_policy": "loopml.llm.guardrails.policy",
    "policies_from_config": "loopml.llm.guardrails.policy",
    "StreamGuard": "loopml.llm.guardrails.stream",
    "evaluate": "loopml.llm.guardrails.evaluate",
    "read_cases": "loopml.llm.guardrails.evaluate",
    "PolicyNotFound": "loopml.llm.guardrails.versions",
    "get_policy": "loopml.llm.guardrails.versions",
    "policy_versions": "loopml.llm.guardrails.versions",
    "register_policies": "loopml.llm.guardrails.versions",
    "save_policy": "loopml.llm.guardrails.versions",
}


def __getattr__(name: str) -> Any:
    """Import on first use: ``import loopml.llm.guardrails`` stays cheap."""
    import importlib

    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml.llm.guardrails' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
