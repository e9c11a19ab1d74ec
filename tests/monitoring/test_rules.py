"""The alert-rule language: parsing ``when``, evaluating it on one window's metrics (pure),
and the checks an :class:`AlertRule` makes of itself."""

from __future__ import annotations

import math
import re

import pytest

from loopml.exceptions import InvalidConfig
from loopml.monitoring.rules import (
    PREDICTION,
    AlertRule,
    Condition,
    InvalidAlertRule,
    Outcome,
    parse_condition,
    parse_rules,
)

WINDOW = {
    "": {"error_rate": 0.03, "p99_ms": 120.0, "accuracy_drop": None},
    "age": {"psi": 0.31, "ks_pvalue": 0.2},
    "fee": {"psi": 0.05, "ks_pvalue": 0.001},
    "plan": {"psi": float("nan")},
    PREDICTION: {"psi": 0.9},
}


@pytest.mark.parametrize(
    ("when", "parsed"),
    [
        ("max(psi) > 0.25", Condition("psi", ">", 0.25, "max")),
        ("  min( ks_pvalue )<0.01", Condition("ks_pvalue", "<", 0.01, "min")),
        ("mean(psi) >= 1e-1", Condition("psi", ">=", 0.1, "mean")),
        ("any(ks_pvalue < 0.01)", Condition("ks_pvalue", "<", 0.01, "any")),
        ("all(psi > 0.1)", Condition("psi", ">", 0.1, "all")),
        ("psi[age] > 0.2", Condition("psi", ">", 0.2, None, "age")),
        ('psi["monthly fee"] <= 0.2', Condition("psi", "<=", 0.2, None, "monthly fee")),
        ("prediction_psi > 0.2", Condition("psi", ">", 0.2, None, PREDICTION)),
        ("psi[__prediction__] > 0.2", Condition("psi", ">", 0.2, None, PREDICTION)),
        ("error_rate > 0.02", Condition("error_rate", ">", 0.02, None, "")),
        ("accuracy_drop > -0.5", Condition("accuracy_drop", ">", -0.5, None, "")),
    ],
)
def test_parse(when: str, parsed: Condition) -> None:
    assert parse_condition(when) == parsed
    assert parse_condition(str(parsed)) == parsed  # str() writes it back in the language


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("max(psi) >> 0.25", "expected a number, found '>' at position 11"),
        ("max(psi) == 0.25", "'==' is not supported: use >, >=, < or <="),
        ("top(psi) > 0.2", "unknown aggregate 'top'"),
        ("max(pis) > 0.2", "unknown metric 'pis' (did you mean 'psi'?)"),
        ("psi > 0.2", "psi is computed per feature: write max(psi)"),
        ("max(error_rate) > 0.2", "error_rate is a metric of the whole window"),
        ("error_rate[age] > 0.2", "error_rate is a metric of the whole window"),
        ("p99_ms > 250 ms", "unexpected 'ms' after the comparison"),
        ("max(psi > 0.2", "expected ')', found '>'"),
        ("error_rate >", "expected a number, found the end"),
        ("psi[] > 0.2", "an empty [feature]"),
        ("error_rate > 0.02 ;", "unexpected ';'"),
    ],
)
def test_bad_conditions_point_at_the_token(when: str, message: str) -> None:
    with pytest.raises(InvalidAlertRule) as caught:
        parse_condition(when)
    text = str(caught.value)
    assert message in text
    assert f"\n  {when}\n" in text and "^" in text  # the caret line under the condition
    assert isinstance(caught.value, InvalidConfig)


@pytest.mark.parametrize(
    ("when", "outcome"),
    [
        ("max(psi) > 0.25", Outcome(True, 0.31, "age")),  # NaN and the predictions are left out
        ("min(psi) > 0.25", Outcome(False, 0.05, "fee")),
        ("mean(psi) > 0.25", Outcome(False, 0.18, None)),
        ("any(ks_pvalue < 0.01)", Outcome(True, 0.001, "fee")),
        ("all(ks_pvalue < 0.01)", Outcome(False, 0.2, "age")),
        ("any(psi > 0.5)", Outcome(False, 0.31, "age")),
        ("psi[fee] > 0.01", Outcome(True, 0.05, "fee")),
        ("prediction_psi > 0.5", Outcome(True, 0.9, PREDICTION)),
        ("error_rate > 0.02", Outcome(True, 0.03, None)),
        ("p99_ms >= 120", Outcome(True, 120.0, None)),
        ("p99_ms > 120", Outcome(False, 120.0, None)),
    ],
)
def test_evaluate(when: str, outcome: Outcome) -> None:
    got = parse_condition(when).evaluate(WINDOW)
    assert got is not None
    assert (got.holds, got.feature) == (outcome.holds, outcome.feature)
    assert math.isclose(got.value, outcome.value)


@pytest.mark.parametrize(
    "when",
    [
        "accuracy_drop > 0.05",  # stored as NULL (NaN)
        "accuracy > 0.9",  # absent: no labels yet
        "psi[plan] > 0.1",  # NaN
        "psi[income] > 0.1",  # a feature the window doesn't have
        "max(chi2_pvalue) < 0.01",  # no feature has it
    ],
)
def test_a_missing_metric_is_not_evaluable(when: str) -> None:
    assert parse_condition(when).evaluate(WINDOW) is None


def test_rule_checks_itself() -> None:
    rule = AlertRule("drift", "max(psi) > 0.25", channels=["log", "stdout"])  # type: ignore[arg-type]
    assert rule.channels == ("log", "stdout") and rule.condition.aggregate == "max"
    assert rule.matches("churn") and AlertRule("d", "p99_ms > 1", deployment="churn-*").matches(
        "churn-eu"
    )
    assert not AlertRule("d", "p99_ms > 1", deployment="churn").matches("fraud")
    for kwargs, message in [
        ({"for_windows": 0}, "for = 0: the number of consecutive windows"),
        ({"severity": "urgent"}, 'severity = "urgent": use one of info, warning, critical'),
        ({"channels": ["pager:ops"]}, "unknown channel 'pager:ops'"),
        ({"channels": ["webhook:hooks.example"]}, "a webhook needs an http(s) URL"),
        ({"channels": ["email:ops"]}, "e-mail needs one address"),
        ({"channels": "log"}, "channels must be a list of strings"),
        ({"name": " "}, "name must be a non-empty string"),
    ]:
        with pytest.raises(InvalidAlertRule, match=re.escape(message)):
            AlertRule(**{"name": "d", "when": "p99_ms > 1", **kwargs})


def test_parse_rules_names_the_rule() -> None:
    good = {"name": "latency", "when": "p99_ms > 250"}
    rules = parse_rules(
        [good, {"name": "drift", "when": "max(psi) > 0.2", "for": 2}], "f [monitor] alerts"
    )
    assert [(r.name, r.for_windows) for r in rules] == [("latency", 1), ("drift", 2)]
    cases = [
        (
            {"name": "input drift", "when": "max(psi) >> 0.25"},
            'f [[monitor.alerts]] #2 "input drift": when = "max(psi) >> 0.25": expected a number',
        ),
        ({"name": "x", "when": "p99_ms > 1", "windows": 2}, "unknown key 'windows'"),
        ({"name": "x", "when": "p99_ms > 1", "fro": 2}, "did you mean 'for'?"),
        ({"when": "p99_ms > 1"}, "f [[monitor.alerts]] #2: name is missing"),
        ({"name": "latency", "when": "p99_ms > 1"}, "the name is already used by rule #1"),
        ("p99_ms > 1", "f [[monitor.alerts]] #2: must be a table"),
    ]
    for table, message in cases:
        with pytest.raises(InvalidAlertRule) as caught:
            parse_rules([good, table], "f [monitor] alerts")
        assert message in str(caught.value), str(caught.value)
