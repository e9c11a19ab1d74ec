"""The promotion gate of protected labels: a seam the eval suites implement.

A gate is any callable taking keyword arguments (and tolerating new ones) that returns a
:class:`GateVerdict`::

    def gate(*, candidate: PromptVersion, label: str, current: PromptVersion | None,
             **future_kwargs) -> GateVerdict:
        score = run_suite(candidate)
        return GateVerdict(passed=score >= 0.9, summary=f"pass rate {score:.0%}",
                           details={"pass_rate": score})

    set_label("support/answer", "production", 4, gate=gate)

The label moves only when the verdict passes; either way the verdict is stored in the
label's history. A gate that raises moves nothing and records nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from loopml.exceptions import InvalidInput, PromotionBlocked

if TYPE_CHECKING:
    from loopml.llm.prompts.versions import PromptVersion


@dataclass(frozen=True)
class GateVerdict:
    """What a gate decided: ``passed``, a one-line ``summary`` and JSON-able ``details``
    (scores, thresholds, the suite and its run) kept in the label's history."""

    passed: bool
    summary: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    #: Set when the move was forced past a failing (or absent) gate.
    forced: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "summary": self.summary,
            "details": dict(self.details),
            "forced": self.forced,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateVerdict:
        return cls(
            passed=bool(data.get("passed")),
            summary=str(data.get("summary") or ""),
            details=dict(data.get("details") or {}),
            forced=bool(data.get("forced")),
            reason=data.get("reason"),
        )

    def to_json(self) -> str:
        """Strict JSON (a non-finite number becomes null; anything else not JSON, text)."""
        return json.dumps(_finite(self.to_dict()), default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class PromotionGate(Protocol):
    """Decides whether ``candidate`` may take ``label`` from ``current`` (None: the label
    points nowhere yet). Keyword-only; must accept and ignore arguments it does not know."""

    def __call__(
        self,
        *,
        candidate: PromptVersion,
        label: str,
        current: PromptVersion | None,
        **future_kwargs: Any,
    ) -> GateVerdict: ...


def judge(
    gate: PromotionGate,
    *,
    candidate: PromptVersion,
    label: str,
    current: PromptVersion | None,
) -> GateVerdict:
    """Run ``gate``; anything but a :class:`GateVerdict` back is an error naming the gate."""
    verdict = gate(candidate=candidate, label=label, current=current)
    if not isinstance(verdict, GateVerdict):
        raise InvalidInput(
            f"The promotion gate {getattr(gate, '__name__', gate)!r} returned "
            f"{type(verdict).__name__}, not a GateVerdict"
        )
    return verdict


class LabelBlocked(PromotionBlocked):
    """A protected label did not move: no gate was given, or the gate's verdict failed
    (``verdict``, recorded in the label's history)."""
