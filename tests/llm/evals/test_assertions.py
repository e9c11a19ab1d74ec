"""Every assertion type passing and failing, on plain answers (pure: no gateway)."""

from __future__ import annotations

from typing import Any

import pytest

from loopml.llm.evals.assertions import Answer, case_status, check, first_number, similarity
from loopml.llm.evals.judge import parse_verdict
from loopml.llm.evals.suites import Case, parse_assertion

CASES: list[tuple[dict[str, Any], Any, str, bool]] = [
    ({"type": "exact"}, "echo: hi", " echo: hi\n", True),
    ({"type": "exact"}, "echo: hi", "echo: ho", False),
    ({"type": "exact", "ignore_case": True}, "Echo: HI", "echo: hi", True),
    ({"type": "contains", "value": ["a", "b"]}, None, "a and b", True),
    ({"type": "contains", "value": ["a", "z"]}, None, "a and b", False),
    ({"type": "contains", "value": "PARIS", "ignore_case": True}, None, "in paris", True),
    ({"type": "not_contains", "value": "sorry"}, None, "Sure!", True),
    ({"type": "not_contains", "value": "sorry"}, None, "I am sorry", False),
    ({"type": "regex", "value": r"^\d{3}$"}, None, "123", True),
    ({"type": "regex", "value": r"^\d{3}$"}, None, "12a", False),
    ({"type": "regex", "value": "^hello", "flags": "i"}, None, "HELLO", True),
    ({"type": "is_json"}, None, '{"a": 1}', True),
    ({"type": "is_json"}, None, '```json\n{"a": 1}\n```', True),
    ({"type": "is_json"}, None, "{a: 1}", False),
    (
        {"type": "json_schema", "schema": {"type": "object", "required": ["echo"]}},
        None,
        '{"echo": "x"}',
        True,
    ),
    (
        {"type": "json_schema", "schema": {"type": "object", "required": ["answer"]}},
        None,
        '{"echo": "x"}',
        False,
    ),
    ({"type": "json_schema", "schema": {"type": "object"}}, None, "nope", False),
    ({"type": "numeric", "abs_tol": 0.1}, 3.14, "pi is about 3.1", True),
    ({"type": "numeric", "rel_tol": 0.01}, 1000, "roughly 1,200 units", False),
    ({"type": "numeric"}, 5, "no number here", False),
    ({"type": "similar", "threshold": 0.6}, "the cat sat on the mat", "the cat sat on a mat", True),
    ({"type": "similar", "threshold": 0.6}, "the cat sat on the mat", "quarterly revenue", False),
    ({"type": "latency", "max_ms": 100}, None, "x", True),
    ({"type": "latency", "max_ms": 10}, None, "x", False),
    ({"type": "cost", "max_usd": 0.01}, None, "x", True),
    ({"type": "cost", "max_usd": 0.0001}, None, "x", False),
]


@pytest.mark.parametrize(("raw", "expected", "text", "ok"), CASES)
def test_assertion(raw: dict[str, Any], expected: Any, text: str, ok: bool) -> None:
    assertion = parse_assertion(raw, "suite", 0, expected is not None)
    case = Case("c", {}, expected=expected)
    score = check(assertion, case, Answer(text, latency_ms=50.0, cost_usd=0.001))
    assert score.passed is ok, score.detail
    if not ok and raw["type"] not in ("is_json",):
        assert score.detail  # a failure says why


def test_status_and_helpers() -> None:
    from loopml.llm.evals.assertions import Score

    assert case_status([Score("a", "exact", True)]) == "passed"
    assert case_status([Score("a", "exact", True), Score("j", "judge", None)]) == "judge_error"
    assert case_status([Score("a", "exact", False), Score("j", "judge", None)]) == "failed"
    assert first_number("-2.5e3 apples") == -2500.0
    assert similarity("same text", "same text") == pytest.approx(1.0, abs=1e-5)


def test_judge_verdicts() -> None:
    assert parse_verdict('{"pass": false, "reason": "rude"}').passed is False  # type: ignore[union-attr]
    assert parse_verdict('ok {"score": 0.8}').passed is True  # type: ignore[union-attr]
    assert parse_verdict('{"score": 0.2}', threshold=0.5).passed is False  # type: ignore[union-attr]
    assert parse_verdict('{"pass": "PASS"}').passed is True  # type: ignore[union-attr]
    assert parse_verdict('{"score": 7}') is None  # out of range, no pass
    assert parse_verdict("[1, 2]") is None
    assert parse_verdict("echo: looks good") is None


def test_agreement_edge_cases() -> None:
    from loopml.llm.evals import agreement

    perfect = agreement([(True, True), (False, False)])
    assert perfect.accuracy == 1.0 and perfect.kappa == 1.0
    same = agreement([(True, True), (True, True)])  # no variation: kappa is undefined
    assert same.accuracy == 1.0 and same.kappa is None
    opposite = agreement([(True, False), (False, True)])
    assert opposite.kappa == -1.0 and opposite.low
    empty = agreement([], judge_errors=2)
    assert empty.n == 0 and empty.accuracy is None and empty.judge_errors == 2
