"""The ``[prompts]`` section of ``loopml.toml``: which labels only move through a gate.

::

    [prompts]
    protected_labels = ["production"]     # LOOPML_PROMPTS_PROTECTED_LABELS=production,prod-eu

Loaded and checked by :func:`loopml.config.load_settings`; read as ``settings.prompts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loopml.exceptions import InvalidConfig, InvalidInput


def _labels(value: Any, where: str) -> tuple[str, ...]:
    """A list of label names, or one string of comma-separated names (a variable's value)."""
    from loopml.llm.prompts.refs import check_label

    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise InvalidConfig(f"{where} must be a list of label names, got {value!r}")
    try:
        return tuple(check_label(item.strip()) for item in items if item.strip())
    except InvalidInput as exc:
        raise InvalidConfig(f"{where}: {exc}") from None


@dataclass(frozen=True)
class PromptsSettings:
    """Labels of every prompt that move only when a promotion gate passes (or with
    ``force`` and a reason, recorded as an override)."""

    protected_labels: tuple[str, ...] = field(
        default=(),
        metadata={
            "parse": _labels,
            "help": "labels that move only through a promotion gate (or --force --reason)",
        },
    )
