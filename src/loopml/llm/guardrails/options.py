"""Reading one rule's ``options`` table: every problem is an
:class:`~loopml.exceptions.InvalidConfig` that names the entry, the bad value and the fix."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from loopml.exceptions import InvalidConfig

_FUNCTION = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def not_one_of(value: Any, valid: Sequence[str]) -> str:
    """``'blok' is not one of block, redact, flag (did you mean 'block'?)``."""
    close = difflib.get_close_matches(str(value), list(valid), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{value!r} is not one of {', '.join(valid)}{hint}"


class Options:
    """The ``options`` of the rule at ``where`` (e.g.
    ``gateway.guardrails.policies.strict.rules[2].options``)."""

    def __init__(self, table: Any, where: str, valid: Sequence[str]) -> None:
        if table is None:
            table = {}
        if not isinstance(table, Mapping):
            raise InvalidConfig(f"{where}: must be a table of options, got {table!r}")
        for key in table:
            if key not in valid:
                if not valid:
                    raise InvalidConfig(f"{where}: this detector takes no options, got {key!r}")
                raise InvalidConfig(f"{where}: unknown option {not_one_of(key, valid)}")
        self.table: Mapping[str, Any] = table
        self.where = where

    def __contains__(self, key: str) -> bool:
        return key in self.table

    def fail(self, key: str, message: str) -> InvalidConfig:
        return InvalidConfig(f"{self.where}.{key}: {message}")

    def number(
        self, key: str, default: float, *, low: float = 0.0, high: float = math.inf
    ) -> float:
        if key not in self.table:
            return default
        value = self.table[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or not low <= value <= high:
            bounds = f"between {low:g} and {high:g}" if math.isfinite(high) else f">= {low:g}"
            raise self.fail(key, f"must be a number {bounds}, got {value!r}")
        return float(value)

    def integer(self, key: str, default: int | None, *, low: int = 1) -> int | None:
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(key, f"must be a whole number >= {low}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.table:
            return default
        value = self.table[key]
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def string(self, key: str, default: str | None = None) -> str | None:
        if key not in self.table:
            return default
        value = self.table[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def strings(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        if key not in self.table:
            return tuple(default)
        value = self.table[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, f"must be a list of non-empty strings, got {value!r}")
        return tuple(value)

    def choices(self, key: str, valid: Sequence[str], default: Sequence[str]) -> tuple[str, ...]:
        chosen = self.strings(key, default)
        for value in chosen:
            if value not in valid:
                raise self.fail(key, not_one_of(value, valid))
        return chosen

    def function(self, key: str, *, required: bool = False) -> str | None:
        value = self.string(key)
        if value is None:
            if required:
                raise self.fail(
                    key,
                    'is required: name a function as "module:function" (e.g. "myapp.checks:score")',
                )
            return None
        if not _FUNCTION.fullmatch(value):
            raise self.fail(key, f'{value!r} must be "module:function" (e.g. "myapp.checks:score")')
        return value


def load_function(spec: str) -> Any:
    """The callable ``"module:function"`` names (imported now; errors say which part failed)."""
    import importlib

    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidConfig(f"{spec!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise InvalidConfig(
                f"{spec!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(target):
        raise InvalidConfig(f"{spec!r} is not callable")
    return target
