"""What a policy decides: a :class:`Verdict` (allowed or blocked, the text to send on, the
findings without their values, each rule's latency and error) and the error a block becomes,
:class:`GuardrailBlocked`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loopml.llm.errors import GatewayError
from loopml.llm.guardrails.findings import Finding


class GuardrailBlocked(GatewayError):
    """A guardrail rule blocked a request or an answer: ``rule`` names it (and ``policy``,
    ``version``, ``stage``, ``kinds`` say more). Answered as HTTP 400 with code
    ``guardrail_blocked``; in a stream, the gateway ends it with an error event."""

    status, type, code = 400, "invalid_request_error", "guardrail_blocked"

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        policy: str,
        version: int | None = None,
        stage: str = "input",
        kinds: Sequence[str] = (),
    ) -> None:
        super().__init__(message, rule=rule, policy=policy, stage=stage)
        self.rule = rule
        self.policy = policy
        self.version = version
        self.stage = stage
        self.kinds = tuple(kinds)


@dataclass(frozen=True)
class RuleResult:
    """How one rule went: its findings' count, its latency (µs), the error it raised
    (its ``on_error`` decided what followed), whether it did not apply (``skipped``)."""

    rule: str
    detector: str
    action: str
    latency_us: float
    findings: int = 0
    error: str | None = None
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rule": self.rule,
            "detector": self.detector,
            "action": self.action,
            "latency_us": round(self.latency_us, 1),
            "findings": self.findings,
        }
        if self.error is not None:
            data["error"] = self.error
        if self.skipped:
            data["skipped"] = True
        return data


@dataclass(frozen=True)
class Verdict:
    """A policy's judgement of a request (``stage="input"``) or an answer (``"output"``).

    ``messages`` (input) and ``text`` (output) are what may be sent on: redacted where a
    redact rule found something, the same object otherwise. ``findings`` say what was found
    where (never the values). ``rules`` holds each rule's latency and error.
    """

    policy: str
    version: int | None
    stage: str
    allowed: bool
    blocked_by: str | None = None
    reason: str | None = None
    findings: tuple[Finding, ...] = ()
    rules: tuple[RuleResult, ...] = ()
    messages: Sequence[Mapping[str, Any]] | None = None
    text: str | None = None
    redacted: bool = False
    reasked: bool = False

    @property
    def blocked(self) -> bool:
        return not self.allowed

    @property
    def errors(self) -> dict[str, str]:
        """Rule name → the error it raised."""
        return {r.rule: r.error for r in self.rules if r.error is not None}

    @property
    def latency_us(self) -> float:
        return sum(r.latency_us for r in self.rules)

    def fired(self, rule: str) -> bool:
        """True when ``rule`` found something (or failed closed)."""
        return any(f.rule == rule for f in self.findings) or (
            self.blocked_by == rule and rule in self.errors
        )

    def error(self) -> GuardrailBlocked:
        """The error that tells a client the request or answer was blocked."""
        kinds = sorted({f.kind for f in self.findings if f.rule == self.blocked_by})
        return GuardrailBlocked(
            self.reason or f"blocked by guardrail rule {self.blocked_by!r}",
            rule=self.blocked_by or "",
            policy=self.policy,
            version=self.version,
            stage=self.stage,
            kinds=kinds,
        )

    def raise_if_blocked(self) -> None:
        if not self.allowed:
            raise self.error()

    def span_attributes(self) -> dict[str, str | int | float | bool]:
        """Flat attributes for a trace span (OpenTelemetry types only): the policy and its
        version, the outcome, the kinds found, and each rule's latency in µs and error.

        >>> from loopml.llm.guardrails import default_policy
        >>> default_policy().check_output("hi").span_attributes()["loopml.guardrails.allowed"]
        True
        """
        prefix = "loopml.guardrails"
        attributes: dict[str, str | int | float | bool] = {
            f"{prefix}.policy": self.policy,
            f"{prefix}.stage": self.stage,
            f"{prefix}.allowed": self.allowed,
            f"{prefix}.redacted": self.redacted,
            f"{prefix}.findings": len(self.findings),
        }
        if self.version is not None:
            attributes[f"{prefix}.policy_version"] = self.version
        if self.findings:
            attributes[f"{prefix}.kinds"] = ",".join(sorted({f.kind for f in self.findings}))
        if self.blocked_by is not None:
            attributes[f"{prefix}.blocked_by"] = self.blocked_by
        for r in self.rules:
            attributes[f"{prefix}.rule.{r.rule}.latency_us"] = round(r.latency_us, 1)
            if r.error is not None:
                attributes[f"{prefix}.rule.{r.rule}.error"] = r.error
        return attributes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the request log and the trace (no matched values, no text)."""
        data: dict[str, Any] = {
            "policy": self.policy,
            "version": self.version,
            "stage": self.stage,
            "allowed": self.allowed,
            "redacted": self.redacted,
            "findings": [f.to_dict() for f in self.findings],
            "rules": [r.to_dict() for r in self.rules],
        }
        if self.blocked_by is not None:
            data["blocked_by"] = self.blocked_by
            data["reason"] = self.reason
        if self.reasked:
            data["reasked"] = True
        return data


def error_text(exc: BaseException) -> str:
    """A rule's error as logged and traced: its type and the start of its message (a
    classifier's error may quote the text it was given)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message[:200]}{'…' if len(message) > 200 else ''}"


def redact(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with each span replaced; overlapping spans merge (the first's label wins)."""
    merged: list[list[Any]] = []
    for start, end, label in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, label])
    out, at = [], 0
    for start, end, label in merged:
        out.append(text[at:start])
        out.append(label)
        at = end
    out.append(text[at:])
    return "".join(out)
