"""The gate policy is validated when it is made; a behavioural check must answer with a bool."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.exceptions import InvalidConfig, InvalidInput, PromotionBlocked
from loopml.registry import GatePolicy
from loopml.registry.gates import check_outcome, load_check, read_holdout
from loopml.workspace import Workspace

WHERE = "loopml.toml [gates.churn]"


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"min_score": "high"}, "min_score"),
        ({"min_score": float("nan")}, "min_score"),
        ({"min_score": True}, "min_score"),
        ({"margin": -0.01}, "margin"),
        ({"margin": None}, "margin"),
        ({"margin": "1%"}, "margin"),
        ({"latency_p95_ms": -1}, "latency_p95_ms"),
        ({"latency_p95_ms": 0}, "latency_p95_ms"),
        ({"latency_sample": 0}, "latency_sample"),
        ({"latency_sample": 2.5}, "latency_sample"),
        ({"fairness_column": "region", "fairness_max_gap": -0.1}, "fairness_max_gap"),
        ({"fairness_column": "region"}, "fairness_max_gap"),
        ({"fairness_max_gap": 0.1}, "fairness_column"),
        ({"beat_champion": "yes"}, "beat_champion"),
        ({"require_approval": 1}, "require_approval"),
        ({"require_signature_match": "false"}, "require_signature_match"),
        ({"holdout": 42, "label": "y"}, "holdout"),
        ({"holdout": "", "label": "y"}, "holdout"),
        ({"holdout": "data/holdout.json", "label": "y"}, "holdout"),
        ({"holdout": "data/holdout.csv"}, "label"),
        ({"label": 3}, "label"),
        ({"metric": "acuracy"}, "accuracy"),  # did you mean
        ({"metric": 1}, "metric"),
        ({"checks": "my_checks:fn"}, "checks"),
        ({"checks": ["my_checks"]}, "my_checks"),
        ({"checks": [42]}, "42"),
        ({"margn": 0.1}, "margin"),  # unknown key: did you mean
    ],
)
def test_bad_policy_values_are_config_errors_naming_the_key(
    settings: dict[str, Any], key: str
) -> None:
    with pytest.raises(InvalidConfig) as info:
        GatePolicy.from_dict(settings, WHERE)
    message = str(info.value)
    assert message.startswith(WHERE + ":") and key in message, message


def test_the_python_constructor_validates_too() -> None:
    with pytest.raises(InvalidConfig, match="GatePolicy: margin must be at least 0"):
        GatePolicy(margin=-1.0)
    with pytest.raises(InvalidConfig, match="min_score must be a number"):
        GatePolicy(min_score="high")  # type: ignore[arg-type]


def test_good_policy_values_load() -> None:
    policy = GatePolicy.from_dict(
        {
            "metric": "f1",
            "holdout": "data/holdout.parquet",
            "label": "churned",
            "min_score": 0,
            "margin": np.float64(0.01),
            "latency_p95_ms": 50,
            "latency_sample": np.int64(10),
            "fairness_column": "region",
            "fairness_max_gap": 0.1,
            "checks": ["my_checks:no_negative_prices", "pkg.sub:check_2"],
            "require_approval": True,
        },
        WHERE,
    )
    assert policy.checks == ("my_checks:no_negative_prices", "pkg.sub:check_2")
    assert GatePolicy(checks=["a:b"]).checks == ("a:b",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "passed"),
    [
        (True, True),
        (False, False),
        (np.bool_(True), True),
        (np.bool_(False), False),
        ((True, {"n": 3}), True),
        ((np.True_, {}), True),
        ((False, {"why": "negative"}), False),
    ],
)
def test_a_check_answering_a_bool_counts(result: Any, passed: bool) -> None:
    outcome = check_outcome("m:f", result)
    assert outcome.passed is passed and "error" not in outcome.details


@pytest.mark.parametrize(
    ("result", "shown"),
    [
        ("yes", "'yes' (str)"),
        ("no", "'no' (str)"),
        (1, "1 (int)"),
        (None, "None (NoneType)"),
        (np.array([True]), "(ndarray)"),
        (("yes", {}), "'yes' (str)"),
        ((True, "fine"), "details 'fine' (str)"),
        ((True, {}, 3), "tuple of 3 items"),
        ({"passed": True}, "(dict)"),
    ],
)
def test_a_check_answering_anything_else_fails_saying_what_it_returned(
    result: Any, shown: str
) -> None:
    outcome = check_outcome("m:f", result)
    assert not outcome.passed
    assert shown in outcome.details["error"] and "must return" in outcome.details["error"]


def test_a_check_returning_yes_blocks_the_promotion(
    sqlite_ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "yes_checks.py").write_text(
        textwrap.dedent(
            """
            def answers_yes(model, holdout):
                return "yes"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    sqlite_ws.register_model("m", LogisticRegression().fit(frame, [0, 0, 1, 1]))
    gate = GatePolicy(beat_champion=False, checks=("yes_checks:answers_yes",))
    with pytest.raises(PromotionBlocked) as info:
        sqlite_ws.promote("m", 1, policy=gate)
    (check,) = info.value.verdict.checks
    assert check.name == "check:yes_checks:answers_yes" and not check.passed
    assert "'yes' (str)" in check.details["error"]
    assert sqlite_ws.get_model_version("models:/m/1").stage == "None"


def test_a_bad_gate_in_loopml_toml_names_the_file_and_the_gate(sqlite_ws: Workspace) -> None:
    toml = sqlite_ws.root / "loopml.toml"
    toml.write_text(toml.read_text() + '\n[gates.churn]\nmin_score = "high"\n')
    ws = Workspace.open(sqlite_ws.root)
    try:
        with pytest.raises(InvalidConfig) as info:
            ws.gate_policy("churn")
    finally:
        ws.close()
    assert str(info.value) == (f"{toml} [gates.churn]: min_score must be a number, got 'high'")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty"),
        ("a,b\n", "has no rows"),
        ("a,b\n1,2\n", "has no label column 'churned'"),
        ('a,"b\n1,2\n', "Cannot read holdout"),
    ],
)
def test_an_unusable_holdout_is_an_error_naming_the_file(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "holdout.csv"
    path.write_text(content)
    with pytest.raises(InvalidInput) as info:
        read_holdout(path, "churned")
    assert expected in str(info.value) and str(path) in str(info.value)


def test_a_check_module_is_imported_with_the_workspace_root_on_sys_path(tmp_path: Path) -> None:
    (tmp_path / "root_checks_unit.py").write_text("def fine(model, holdout):\n    return True\n")
    before = list(sys.path)
    with pytest.raises(InvalidConfig, match="Cannot load behavioural check"):
        load_check("root_checks_unit:fine")
    assert load_check("root_checks_unit:fine", tmp_path)(None, None) is True
    assert sys.path == before
    with pytest.raises(InvalidConfig, match="searched the workspace root"):
        load_check("root_checks_unit:missing", tmp_path)
