"""Validation of param, metric and tag keys and values (pure)."""

from __future__ import annotations

import math
import numbers
import re
from datetime import UTC, datetime
from typing import Any

from loopml.exceptions import InvalidKey, InvalidValue

MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
# Letters and digits of any script (as MLflow takes them), '_', '-', '.', ' ', '/' and ':'.
_KEY = re.compile(r"^[\w\-. /:]+$")
_seen_keys: set[str] = set()

#: A step is stored as a 64-bit integer (BigInteger).
STEP_MIN, STEP_MAX = -(2**63), 2**63 - 1
#: Timestamps are seconds since the epoch, from 1970-01-01 up to 2262-04-11 (the last moment a
#: nanosecond ``datetime64`` holds, so a metric's history loads in any pandas or NumPy).
TIMESTAMP_MIN_S, TIMESTAMP_MAX_S = 0, 9_223_372_036
TIMESTAMP_MIN_MS, TIMESTAMP_MAX_MS = TIMESTAMP_MIN_S * 1000, TIMESTAMP_MAX_S * 1000


def _article(noun: str) -> str:
    """``"a metric key"``, ``"an experiment name"``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def check_key(key: Any, what: str = "key") -> str:
    """Return ``key`` if it is a legal key, else raise :class:`InvalidKey` saying why."""
    if key in _seen_keys:
        return key
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"{_article(what).capitalize()} must be a non-empty string, got {key!r}.")
    if len(key) > MAX_KEY:
        raise InvalidKey(
            f"The {what} {key[:40]!r}… is {len(key)} characters; the limit is {MAX_KEY}."
        )
    if not _KEY.match(key):
        # In order of appearance, each once: sorting would scramble a word's letters.
        bad = " ".join(repr(c) for c in dict.fromkeys(c for c in key if not _KEY.match(c)))
        raise InvalidKey(
            f"The {what} {key!r} contains {bad}: use letters, digits, "
            "'_', '-', '.', ' ', '/' and ':' only."
        )
    if key.startswith("/") or ".." in key.split("/") or key != key.strip():
        raise InvalidKey(
            f"The {what} {key!r} must not start with '/', contain '..' or be padded with spaces."
        )
    if len(_seen_keys) < 100_000:
        _seen_keys.add(key)
    return key


def metric_value(key: str, value: Any) -> float | None:
    """A metric value as a float; NaN becomes None (stored as NULL, read back as NaN)."""
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            result = float(value)
        except OverflowError:
            raise InvalidValue(
                f"Metric {key!r} is {value!r}, too large for a 64-bit float; log a smaller "
                "number (its logarithm, say)."
            ) from None
        return None if math.isnan(result) else result
    if isinstance(value, bool):
        return float(value)
    raise InvalidValue(
        f"Metric {key!r} must be a number (int, float or NumPy scalar), got "
        f"{type(value).__name__} {value!r}."
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


def timestamp_ms(value: Any, key: str | None = None) -> int:
    """Seconds since the epoch (int/float, as ``time.time()`` gives) or a datetime → integer
    milliseconds.

    A number that only makes sense as milliseconds (MLflow's unit) is refused, not guessed at:
    the message says to divide it by 1000.
    """
    of = f" of metric {key!r}" if key else ""
    if isinstance(value, datetime):
        seconds = value.timestamp()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    else:
        raise InvalidValue(
            f"The timestamp{of} must be seconds since the epoch (a number, as time.time() "
            f"gives) or a datetime, got {type(value).__name__} {value!r}."
        )
    if TIMESTAMP_MIN_S <= seconds < TIMESTAMP_MAX_S:
        return int(seconds * 1000)
    if math.isfinite(seconds) and TIMESTAMP_MIN_S <= seconds / 1000 < TIMESTAMP_MAX_S:
        moment = datetime.fromtimestamp(seconds / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise InvalidValue(
            f"The timestamp {value!r}{of} looks like milliseconds since the epoch ({moment}); "
            "loopml takes seconds, as time.time() gives: pass timestamp=ms / 1000, or a "
            "datetime."
        )
    raise InvalidValue(
        f"The timestamp {value!r}{of} is out of range: give seconds since the epoch between "
        "1970-01-01 and 2262-04-11 (as time.time() gives), or a datetime."
    )


def step_value(key: str, step: Any) -> int:
    """A step as an int that fits the 64-bit column."""
    if isinstance(step, numbers.Integral) and not isinstance(step, bool):
        number = int(step)
        if STEP_MIN <= number <= STEP_MAX:
            return number
        raise InvalidValue(
            f"The step of metric {key!r} is {number}, outside the 64-bit range a step is "
            "stored in (-2**63 to 2**63 - 1): log a smaller step, such as the batch or epoch "
            "number."
        )
    raise InvalidValue(
        f"The step of metric {key!r} must be an integer, got {type(step).__name__} {step!r}."
    )
