"""The answer of one check on a model, shared by the promotion gate and the CI model checks.

``loopml.registry.CheckResult`` and ``loopml.validation.CheckResult`` are this one class, so
a gate verdict's checks and ``check_beats_baseline``'s result read, print and serialise alike::

    >>> result = CheckResult("latency", False, {"p95_ms": 61.0, "budget_ms": 50}, "too slow")
    >>> str(result)
    'latency: FAILED: too slow'
    >>> CheckResult.from_dict(result.to_dict()) == result
    True

It sits below both areas and imports nothing heavy: the registry loads it without pandas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``passed``, the figures behind it (plain JSON data), and
    optionally one line to read."""

    name: str
    passed: bool
    details: dict[str, Any] = field(default_factory=dict, hash=False)
    summary: str = ""

    def __str__(self) -> str:
        return f"{self.name}: {'passed' if self.passed else 'FAILED'}" + (
            f": {self.summary}" if self.summary else ""
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "passed", "details"}``, plus ``"summary"`` when there is one: the shape
        gate verdicts have always been stored in."""
        data = asdict(self)
        if not self.summary:
            del data["summary"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        """A result from :meth:`to_dict`'s shape (a stored verdict's checks)."""
        return cls(
            name=data["name"],
            passed=data["passed"],
            details=dict(data.get("details") or {}),
            summary=data.get("summary") or "",
        )
