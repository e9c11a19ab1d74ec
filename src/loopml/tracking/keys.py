"""Validation of param, metric and tag keys and values (pure)."""

from __future__ import annotations

import math
import numbers
import re
from datetime import datetime
from typing import Any

from loopml.exceptions import InvalidKey, InvalidValue

MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
_KEY = re.compile(r"^[A-Za-z0-9_\-. /:]+$")
_seen_keys: set[str] = set()


def check_key(key: Any, what: str = "key") -> str:
    """Return ``key`` if it is a legal key, else raise :class:`InvalidKey` saying why."""
    if key in _seen_keys:
        return key
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"A {what} must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY:
        raise InvalidKey(
            f"The {what} {key[:40]!r}… is {len(key)} characters; the limit is {MAX_KEY}"
        )
    if not _KEY.match(key):
        bad = sorted({c for c in key if not _KEY.match(c)})
        raise InvalidKey(
            f"The {what} {key!r} contains {''.join(bad)!r}; use letters, digits, "
            "'_', '-', '.', ' ', '/' and ':' only"
        )
    if key.startswith("/") or ".." in key.split("/") or key != key.strip():
        raise InvalidKey(f"The {what} {key!r} must not start with '/', contain '..' or be padded")
    if len(_seen_keys) < 100_000:
        _seen_keys.add(key)
    return key


def metric_value(key: str, value: Any) -> float | None:
    """A metric value as a float; NaN becomes None (stored as NULL, read back as NaN)."""
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        result = float(value)
        return None if math.isnan(result) else result
    if isinstance(value, bool):
        return float(value)
    raise InvalidValue(
        f"Metric {key!r} must be a number (int, float or NumPy scalar), got "
        f"{type(value).__name__} {value!r}"
    )


def param_value(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_PARAM_VALUE:
        raise InvalidValue(
            f"Param {key!r} is {len(text)} characters long; the limit is {MAX_PARAM_VALUE}. "
            "Log long values as an artifact (log_text/log_dict)."
        )
    return text


def tag_value(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TAG_VALUE:
        raise InvalidValue(
            f"Tag {key!r} is {len(text)} characters long; the limit is {MAX_TAG_VALUE}."
        )
    return text


def timestamp_ms(value: Any) -> int:
    """Seconds since the epoch (int/float) or a datetime → integer milliseconds."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return int(float(value) * 1000)
    raise InvalidValue(f"A timestamp must be seconds since the epoch or a datetime, got {value!r}")


def step_value(key: str, step: Any) -> int:
    if isinstance(step, numbers.Integral) and not isinstance(step, bool):
        return int(step)
    raise InvalidValue(f"The step of metric {key!r} must be an integer, got {step!r}")
