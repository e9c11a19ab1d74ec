"""What the gateway does around a provider call when the config asks for it: guardrails on
the way in and on the way out (whole answers and streams), and the cache in between.

The order for one chat request::

    key checked ─► input guardrails ─► cache lookup ──hit──► answer (cost 0, saved counted)
                        │ block: 400                 └─miss─► limits ─► providers
                        ▼ redact: the request goes on redacted         │
                                                                       ▼
                    cache store ◄── output guardrails (block: 400, billed; redact) ◄── answer

A cached answer is one the output guardrails already passed (or redacted), and the cache
partitions by the policy version that judged it, so a changed policy never serves an answer
the old one let through. The cache's own failures never fail a request (it logs them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.llm.guardrails import Policy, StreamGuard, Verdict
    from loopml.llm.types import Body


@dataclass
class Judged:
    """The guardrails of one request: the policy that judges it and its verdicts so far."""

    policy: Policy
    input: Verdict | None = None
    output: Verdict | None = None
    stream: StreamGuard | None = None

    @property
    def label(self) -> str:
        """``name@version`` (what the cache partitions on)."""
        return f"{self.policy.name}@{self.policy.version}"

    def log_entry(self) -> dict[str, Any]:
        """The request log's ``guardrails`` column: the policy, its version, each verdict."""
        entry: dict[str, Any] = {"policy": self.policy.name, "version": self.policy.version}
        if self.stream is not None and self.output is None:
            self.output = self.stream.verdict()
        for stage, verdict in (("input", self.input), ("output", self.output)):
            if verdict is not None:
                entry[stage] = verdict.to_dict()
        return entry


def answer_text(body: Mapping[str, Any]) -> str | None:
    """The text of a ``chat.completion``'s first choice (None when it has none: a tool call,
    an empty answer)."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return None
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    return content if isinstance(content, str) else None


def with_answer_text(body: Body, text: str) -> Body:
    """``body`` with its first choice's text replaced (a copy; ``body`` is left alone)."""
    choices = list(body["choices"])
    first = dict(choices[0])
    first["message"] = {**first["message"], "content": text}
    choices[0] = first
    return {**body, "choices": choices}


def guard_chunk(chunk: Body, guard: StreamGuard) -> Body:
    """A ``chat.completion.chunk`` whose text deltas went through ``guard``: what it holds
    back is released by later chunks, the rest when the choice finishes. Raises
    :class:`~loopml.llm.guardrails.GuardrailBlocked` when a block rule fires."""
    choices = chunk.get("choices")
    if not choices:
        return chunk
    out = []
    for choice in choices:
        delta = choice.get("delta") or {}
        content = delta.get("content")
        finish = choice.get("finish_reason")
        if isinstance(content, str) or finish:
            text = guard.feed(content) if isinstance(content, str) else ""
            if finish:
                text += guard.finish()
            choice = {**choice, "delta": {**delta, "content": text}}
        out.append(choice)
    return {**chunk, "choices": out}
