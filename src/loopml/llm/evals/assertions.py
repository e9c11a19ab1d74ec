"""The checks of an answer, pure: each takes the assertion, the case and what the call
produced, and returns a :class:`Score`. The LLM judge is in :mod:`loopml.llm.evals.judge`.

    >>> from loopml.llm.evals.suites import Assertion, Case
    >>> check(Assertion("contains", "contains", {"value": "Paris"}), Case("c", {}),
    ...       Answer("It is Paris.", 120.0, 0.0001)).passed
    True
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from loopml.llm.evals.suites import Assertion, Case

#: A case's status: every assertion passed; one failed; the call failed; a judge's answer
#: could not be read (never counted as passed).
PASSED, FAILED, ERROR, JUDGE_ERROR = "passed", "failed", "error", "judge_error"


@dataclass(frozen=True)
class Answer:
    """What the model said to one case, how long it took and what it cost."""

    text: str
    latency_ms: float
    cost_usd: float


@dataclass(frozen=True)
class Score:
    """One assertion's result: ``passed`` (None: it could not be judged), an optional
    ``score`` in [0, 1] and a short ``detail``."""

    name: str
    type: str
    passed: bool | None
    score: float | None = None
    detail: str = ""
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "passed": self.passed,
            "score": self.score,
            "detail": self.detail,
            "cost_usd": self.cost_usd,
        }


def _value(assertion: Assertion, case: Case) -> Any:
    return assertion.options.get("value", case.expected)


def _short(text: Any, limit: int = 60) -> str:
    shown = text if isinstance(text, str) else json.dumps(text, default=str)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _exact(a: Assertion, case: Case, answer: Answer) -> tuple[bool, float | None, str]:
    want, got = str(_value(a, case)), answer.text
    if a.options.get("strip", True):
        want, got = want.strip(), got.strip()
    if a.options.get("ignore_case"):
        want, got = want.casefold(), got.casefold()
    return got == want, None, "" if got == want else f"expected {_short(want)!r}"


def _needles(a: Assertion, case: Case) -> list[str]:
    value = _value(a, case)
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _contains(a: Assertion, case: Case, answer: Answer) -> tuple[bool, float | None, str]:
    fold = a.options.get("ignore_case")
    text = answer.text.casefold() if fold else answer.text
    missing = [n for n in _needles(a, case) if (n.casefold() if fold else n) not in text]
    return not missing, None, f"missing {_short(missing)}" if missing else ""


def _not_contains(a: Assertion, case: Case, answer: Answer) -> tuple[bool, float | None, str]:
    fold = a.options.get("ignore_case")
    text = answer.text.casefold() if fold else answer.text
    found = [n for n in _needles(a, case) if (n.casefold() if fold else n) in text]
    return not found, None, f"contains {_short(found)}" if found else ""


_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


def _regex(a: Assertion, case: Case, answer: Answer) -> tuple[bool, float | None, str]:
    flags = 0
    for letter in str(a.options.get("flags", "")):
        flags |= _FLAGS.get(letter, 0)
    ok = re.search(str(_value(a, case)), answer.text, flags) is not None
    return ok, None, "" if ok else f"no match for /{_short(str(_value(a, case)))}/"


def parse_json(text: str) -> Any:
    """``text`` as JSON, also inside a fenced ```json block; raises ValueError."""
    stripped = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, re.DOTALL)
    if fenced:
        stripped = fenced.group(1)
    return json.loads(stripped)


def _is_json(a: Assertion, case: Case, answer: Answer) -> tuple[bool, float | None, str]:
    try:
        parse_json(answer.text)
    except ValueError as exc:
        return False, None, f"not JSON: {exc}"
    return True, None, ""


def validator(schema: Any) -> Any:
    """The (cached) jsonschema validator of ``schema``."""
    return _validator(json.dumps(schema, sort_keys=True))


@cache
def _validator(schema_json: str) -> Any:
    from jsonschema import validators

    schema = json.loads(schema_json)
    return validators.validator_for(schema)(schema)


def _json_schema(a: Assertion, case: Case, answer: Answer) -> tuple[bool, float | None, str]:
    try:
        data = parse_json(answer.text)
    except ValueError as exc:
        return False, None, f"not JSON: {exc}"
    errors = sorted(validator(a.options["schema"]).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        where = "/".join(map(str, errors[0].path)) or "(root)"
        return False, None, f"{where}: {_short(errors[0].message)}"
    return True, None, ""


_NUMBER = re.compile(r"[-+]?(?:\d+(?:[.,]\d+)*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def first_number(text: str) -> float | None:
    """The first number written in ``text`` (thousands commas allowed), else None.

    >>> first_number("about 1,234.5 km"), first_number("none")
    (1234.5, None)
    """
    match = _NUMBER.search(text)
    if match is None:
        return None
    try:
        return float(match.group(0).replace(",", ""))
    except ValueError:
        return None


def _numeric(a: Assertion, case: Case, answer: Answer) -> tuple[bool, float | None, str]:
    try:
        want = float(_value(a, case))
    except (TypeError, ValueError):
        return False, None, f"the expected value {_value(a, case)!r} is not a number"
    got = first_number(answer.text)
    if got is None:
        return False, None, "no number in the answer"
    ok = math.isclose(
        got,
        want,
        abs_tol=float(a.options.get("abs_tol", 0.0)),
        rel_tol=float(a.options.get("rel_tol", 1e-9)),
    )
    return ok, None, f"{got:g} vs {want:g}"


@cache
def _embedder() -> Any:
    from loopml.llm.cache.embedders import HashedEmbedder

    return HashedEmbedder()


def similarity(a: str, b: str) -> float:
    """Cosine similarity of two texts under the offline hashed embedder, in [0, 1]."""
    embedder = _embedder()
    u, v = embedder.vector(a), embedder.vector(b)
    return max(0.0, min(1.0, float((u * v).sum())))


def _similar(a: Assertion, case: Case, answer: Answer) -> tuple[bool, float | None, str]:
    score = similarity(answer.text, str(_value(a, case)))
    threshold = float(a.options.get("threshold", 0.8))
    return score >= threshold, score, f"similarity {score:.2f} (needs {threshold:.2f})"


def _latency(a: Assertion, case: Case, answer: Answer) -> tuple[bool, float | None, str]:
    limit = float(a.options["max_ms"])
    return answer.latency_ms <= limit, None, f"{answer.latency_ms:.0f} ms (max {limit:g})"


def _cost(a: Assertion, case: Case, answer: Answer) -> tuple[bool, float | None, str]:
    limit = float(a.options["max_usd"])
    return answer.cost_usd <= limit, None, f"${answer.cost_usd:.6f} (max ${limit:g})"


CHECKS: dict[str, Callable[[Assertion, Case, Answer], tuple[bool, float | None, str]]] = {
    "exact": _exact,
    "contains": _contains,
    "not_contains": _not_contains,
    "regex": _regex,
    "is_json": _is_json,
    "json_schema": _json_schema,
    "numeric": _numeric,
    "similar": _similar,
    "latency": _latency,
    "cost": _cost,
}


def check(assertion: Assertion, case: Case, answer: Answer) -> Score:
    """Run one (non-judge) assertion on ``answer``."""
    passed, score, detail = CHECKS[assertion.type](assertion, case, answer)
    return Score(assertion.name, assertion.type, passed, score, detail)


def case_status(scores: list[Score]) -> str:
    """``passed`` when every assertion passed; ``judge_error`` when a judge could not be
    read (and none failed outright); else ``failed``."""
    if any(s.passed is False for s in scores):
        return FAILED
    if any(s.passed is None for s in scores):
        return JUDGE_ERROR
    return PASSED
