"""The gate policy is validated when it is made; a behavioural check must answer with a bool."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.checks import CheckResult
from loopml.exceptions import InvalidConfig, InvalidInput, PromotionBlocked
from loopml.registry import GatePolicy, Signature, Verdict
from loopml.registry.gates import (
    _first_line,
    _guard,
    awaiting_approval,
    check_beats_champion,
    check_contract,
    check_fairness,
    check_latency,
    check_outcome,
    check_signature,
    check_threshold,
    evaluate,
    features,
    load_check,
    logged_score,
    model_score,
    read_holdout,
    slice_scores,
    time_predictions,
)
from loopml.validation import Column, Schema
from loopml.workspace import Workspace

WHERE = "loopml.toml [gates.churn]"


METRIC_NAMES = (
    "accuracy, balanced_accuracy, f1, log_loss, mae, mse, precision, r2, recall, rmse, roc_auc"
)
SETTINGS = (
    "metric, holdout, label, min_score, beat_champion, margin, latency_p95_ms, latency_sample, "
    "fairness_column, fairness_max_gap, require_signature_match, checks, require_approval"
)
CHECK_SPEC = "must look like 'module:function' (e.g. 'my_checks:no_negative_prices')"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_score": "high"}, "min_score must be a number, got 'high'"),
        ({"min_score": float("nan")}, "min_score must be a number, got nan"),
        ({"min_score": True}, "min_score must be a number, got True"),
        ({"margin": -0.01}, "margin must be at least 0, got -0.01"),
        ({"margin": None}, "margin must be a number, got None"),
        ({"margin": "1%"}, "margin must be a number, got '1%'"),
        ({"latency_p95_ms": -1}, "latency_p95_ms must be more than 0, got -1"),
        ({"latency_p95_ms": 0}, "latency_p95_ms must be more than 0, got 0"),
        ({"latency_sample": 0}, "latency_sample must be a whole number of rows, at least 1, got 0"),
        (
            {"latency_sample": 2.5},
            "latency_sample must be a whole number of rows, at least 1, got 2.5",
        ),
        (
            {"latency_sample": True},
            "latency_sample must be a whole number of rows, at least 1, got True",
        ),
        (
            {"fairness_column": "region", "fairness_max_gap": -0.1},
            "fairness_max_gap must be at least 0, got -0.1",
        ),
        (
            {"fairness_column": "region"},
            "fairness needs both fairness_column and fairness_max_gap; only fairness_column is set",
        ),
        (
            {"fairness_max_gap": 0.1},
            "fairness needs both fairness_column and fairness_max_gap; only fairness_max_gap is set",
        ),
        (
            {"fairness_column": "", "fairness_max_gap": 0.1},
            "fairness_column must be a non-empty string, got ''",
        ),
        ({"beat_champion": "yes"}, "beat_champion must be true or false, got 'yes'"),
        ({"require_approval": 1}, "require_approval must be true or false, got 1"),
        (
            {"require_signature_match": "false"},
            "require_signature_match must be true or false, got 'false'",
        ),
        ({"holdout": 42, "label": "y"}, "holdout must be a non-empty string, got 42"),
        ({"holdout": "", "label": "y"}, "holdout must be a non-empty string, got ''"),
        (
            {"holdout": "data/holdout.json", "label": "y"},
            "holdout must be the path of a .csv or .parquet file, got 'data/holdout.json'",
        ),
        ({"holdout": "data/holdout.csv"}, "a holdout needs label = '<label column>'"),
        ({"label": 3}, "label must be a non-empty string, got 3"),
        ({"label": "  "}, "label must be a non-empty string, got '  '"),
        (
            {"metric": "acuracy"},
            f"unknown metric 'acuracy'; did you mean 'accuracy'? use one of {METRIC_NAMES}",
        ),
        ({"metric": "zzz"}, f"unknown metric 'zzz'; use one of {METRIC_NAMES}"),
        ({"metric": 1}, f"unknown metric 1; did you mean 'f1'? use one of {METRIC_NAMES}"),
        (
            {"checks": "my_checks:fn"},
            "checks must be a list of 'module:function' strings, got 'my_checks:fn'",
        ),
        ({"checks": 42}, "checks must be a list of 'module:function' strings, got 42"),
        ({"checks": ["my_checks"]}, f"checks entry 'my_checks' {CHECK_SPEC}"),
        ({"checks": [42]}, f"checks entry 42 {CHECK_SPEC}"),
        ({"margn": 0.1}, f"unknown setting 'margn'; did you mean 'margin'? valid: {SETTINGS}"),
        ({"qqq": 1}, f"unknown setting 'qqq'; valid: {SETTINGS}"),
    ],
)
def test_bad_policy_values_are_config_errors_naming_the_key(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidConfig) as info:
        GatePolicy.from_dict(settings, WHERE)
    assert str(info.value) == f"{WHERE}: {message}"


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
            ws.models.policy("churn")
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


def test_a_check_module_is_imported_with_the_workspace_root_on_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "root_checks_unit.py").write_text("def fine(model, holdout):\n    return True\n")
    monkeypatch.delitem(sys.modules, "root_checks_unit", raising=False)  # a rerun in one process
    before = list(sys.path)
    with pytest.raises(InvalidConfig, match="Cannot load behavioural check"):
        load_check("root_checks_unit:fine")
    assert load_check("root_checks_unit:fine", tmp_path)(None, None) is True
    assert sys.path == before
    with pytest.raises(InvalidConfig, match="searched the workspace root"):
        load_check("root_checks_unit:missing", tmp_path)


# -- the checks, one by one: plain numbers in, one CheckResult out ------------------------------


def test_one_check_result_class_for_the_whole_package() -> None:
    import loopml.registry
    import loopml.validation
    from loopml.registry import gates
    from loopml.validation import model_checks

    assert loopml.registry.CheckResult is loopml.validation.CheckResult is CheckResult
    assert gates.CheckResult is model_checks.CheckResult is CheckResult


def test_a_check_result_keeps_the_stored_shape() -> None:
    plain = CheckResult("threshold", True, {"score": 0.9})
    assert plain.to_dict() == {"name": "threshold", "passed": True, "details": {"score": 0.9}}
    read = CheckResult("x", False, {"n": [1]}, "too slow")
    assert read.to_dict() == {
        "name": "x",
        "passed": False,
        "details": {"n": [1]},
        "summary": "too slow",
    }
    assert CheckResult.from_dict(read.to_dict()) == read
    assert CheckResult.from_dict({"name": "y", "passed": True}) == CheckResult("y", True, {})
    assert str(read) == "x: FAILED: too slow" and str(plain) == "threshold: passed"


@pytest.mark.parametrize(
    ("metric", "value", "minimum", "passed"),
    [
        ("accuracy", 0.8, 0.8, True),  # reaching the threshold is enough
        ("accuracy", 0.79, 0.8, False),
        ("accuracy", 0.95, 0.8, True),
        ("rmse", 0.5, 0.8, True),  # a loss passes below its threshold
        ("rmse", 0.8, 0.8, True),
        ("rmse", 0.81, 0.8, False),
    ],
)
def test_threshold(metric: str, value: float, minimum: float, passed: bool) -> None:
    result = check_threshold(metric, value, minimum)
    assert result == CheckResult(
        "threshold", passed, {"metric": metric, "score": value, "min": minimum}
    )


NAN = float("nan")  # one object: a dict holding it equals itself


def test_a_nan_score_fails_the_threshold_saying_so() -> None:
    assert check_threshold("rmse", NAN, 0.8) == CheckResult(
        "threshold",
        False,
        {"metric": "rmse", "score": NAN, "min": 0.8, "error": "the candidate's rmse is NaN"},
    )


def test_an_unknown_metric_is_an_error_naming_the_valid_ones() -> None:
    with pytest.raises(InvalidInput, match="Unknown metric 'acc'; use one of accuracy, "):
        check_threshold("acc", 0.9, 0.8)
    with pytest.raises(InvalidInput, match="Unknown metric 'acc'"):
        check_beats_champion("acc", 0.9, None)
    with pytest.raises(InvalidInput, match="Unknown metric 'acc'"):
        check_beats_champion("acc", 0.9, 0.8)


def test_without_a_champion_there_is_nothing_to_beat() -> None:
    assert check_beats_champion("accuracy", 0.1, None) == CheckResult(
        "beats_champion", True, {"score": 0.1, "champion": None}
    )
    assert check_beats_champion("accuracy", NAN, None) == CheckResult(
        "beats_champion",
        False,
        {"score": NAN, "champion": None, "error": "the candidate's accuracy is NaN"},
    )


@pytest.mark.parametrize(
    ("metric", "value", "champion", "margin", "passed"),
    [
        ("accuracy", 0.9, 0.8, 0.0, True),
        ("accuracy", 0.8, 0.8, 0.0, True),  # a tie passes without a margin
        ("accuracy", 0.8, 0.8, 0.01, False),
        ("accuracy", 0.85, 0.8, 0.05, True),  # by exactly the margin
        ("accuracy", 0.84, 0.8, 0.05, False),
        ("accuracy", 0.7, 0.8, 0.0, False),
        ("mae", 0.7, 0.8, 0.05, True),  # a loss must go down
        ("mae", 0.76, 0.8, 0.05, False),
        ("mae", 0.9, 0.8, 0.0, False),
    ],
)
def test_beats_champion_by_the_margin(
    metric: str, value: float, champion: float, margin: float, passed: bool
) -> None:
    result = check_beats_champion(metric, value, champion, margin=margin, champion_version=3)
    assert result == CheckResult(
        "beats_champion",
        passed,
        {
            "metric": metric,
            "score": value,
            "champion_version": 3,
            "champion_score": champion,
            "margin": margin,
            "delta": value - champion,
        },
    )


@pytest.mark.parametrize(
    ("value", "champion", "who"),
    [
        (NAN, 0.8, "for the candidate:"),
        (0.9, NAN, "for the champion:"),
        (NAN, NAN, "for the candidate and the champion:"),
    ],
)
def test_a_nan_score_never_beats_nor_is_beaten(value: float, champion: float, who: str) -> None:
    result = check_beats_champion("rmse", value, champion, champion_version=4)
    assert result.name == "beats_champion" and result.passed is False
    assert result.details == {
        "metric": "rmse",
        "score": value,
        "champion_version": 4,
        "champion_score": champion,
        "margin": 0.0,
        "delta": result.details["delta"],  # NaN
        "error": f"rmse is NaN {who} the scores can't be compared",
    }


@pytest.mark.parametrize(
    ("timings", "budget", "passed", "p95"),
    [
        ([1.0] * 19 + [80.0], 50.0, True, 4.95),  # one slow row in twenty
        ([1.0] * 18 + [80.0] * 2, 50.0, False, 80.0),
        ([5.0], 5.0, True, 5.0),  # exactly the budget
        ([5.0], 4.99, False, 5.0),
    ],
)
def test_latency_p95(timings: list[float], budget: float, passed: bool, p95: float) -> None:
    result = check_latency(timings, budget)
    assert result.name == "latency" and result.passed is passed
    assert result.details == {
        "p95_ms": pytest.approx(p95),
        "budget_ms": budget,
        "sample": len(timings),
    }


def test_latency_with_nothing_timed_fails() -> None:
    assert check_latency([], 50.0) == CheckResult(
        "latency", False, {"budget_ms": 50.0, "sample": 0, "error": "no prediction was timed"}
    )


def test_slice_scores_by_position_skipping_rows_without_a_slice() -> None:
    labels = pd.Series([1, 1, 0, 0, 1], index=[10, 10, 11, 12, 13])  # positions count, not labels
    scores = slice_scores("accuracy", labels, [1, 0, 0, 0, 0], ["us", "us", "eu", None, "eu"])
    assert scores == {"eu": 0.5, "us": 0.5}
    assert list(slice_scores("accuracy", [1, 0], [1, 1], [2, 1])) == ["1", "2"]
    with pytest.raises(InvalidInput, match="one value per row; got 2, 2 and 3"):
        slice_scores("accuracy", [1, 0], [1, 1], ["a", "b", "c"])


@pytest.mark.parametrize(
    ("per_slice", "max_gap", "passed", "gap"),
    [
        ({"eu": 0.5, "us": 1.0}, 0.1, False, 0.5),
        ({"eu": 0.9, "us": 0.8, "apac": 0.85}, 0.1, True, pytest.approx(0.1)),
        ({"eu": 0.9, "us": 0.7}, 0.2, True, pytest.approx(0.2)),
        ({"eu": 0.9}, 0.0, True, 0.0),
    ],
)
def test_fairness_gap(per_slice: dict[str, float], max_gap: float, passed: bool, gap: Any) -> None:
    result = check_fairness("region", per_slice, max_gap)
    assert result.name == "fairness" and result.passed is passed
    assert result.details == {
        "column": "region",
        "gap": gap,
        "max_gap": max_gap,
        "slices": per_slice,
    }
    assert list(result.details) == ["column", "gap", "max_gap", "slices"]  # the stored order


def test_fairness_fails_without_slices_or_with_a_nan_slice() -> None:
    assert check_fairness("region", {}, 0.1) == CheckResult(
        "fairness",
        False,
        {
            "column": "region",
            "max_gap": 0.1,
            "slices": {},
            "error": "the holdout's column 'region' has no values to slice by",
        },
    )
    assert check_fairness("region", {"eu": 0.9, "us": NAN}, 0.1) == CheckResult(
        "fairness",
        False,
        {
            "column": "region",
            "max_gap": 0.1,
            "slices": {"eu": 0.9, "us": NAN},
            "error": "the score is NaN for the slices ['us']",
        },
    )


def test_signature_compatibility() -> None:
    a = Signature(inputs=(("x", "float64"), ("y", "int64")), outputs=())
    b = Signature(inputs=(("x", "float64"),), outputs=())
    assert check_signature(a, a) == CheckResult("signature", True, {"problems": []})
    assert check_signature(a, b) == CheckResult(
        "signature", False, {"problems": ["needs new input columns ['y']"]}
    )
    for pair in ((None, a), (a, None), (None, None)):
        assert check_signature(*pair) == CheckResult(
            "signature", True, {"note": "no signature recorded"}
        )


def test_contract() -> None:
    frame = pd.DataFrame({"a": [0, 1, 2, 3], "label": [0, 0, 1, 1]})
    assert check_contract(Schema({"a": Column("int64")}).validate(frame)) == CheckResult(
        "contract", True, {"errors": []}
    )
    broken = check_contract(Schema({"a": Column("int64", max=2)}).validate(frame))
    assert broken == CheckResult(
        "contract", False, {"errors": ["a: 1 of 4 rows (25.00%) are above max 2"]}
    )
    many = Schema({f"c{i}": Column() for i in range(12)}).validate(frame)
    assert len(check_contract(many).details["errors"]) == 10  # the first ten


@pytest.mark.parametrize(
    ("required", "outcomes", "waits"),
    [
        (True, [True, True], True),
        (True, [True, False], False),  # a failed candidate has nothing to approve
        (True, [], True),
        (False, [True], False),
    ],
)
def test_approval(required: bool, outcomes: list[bool], waits: bool) -> None:
    checks = [CheckResult(f"c{i}", ok) for i, ok in enumerate(outcomes)]
    assert awaiting_approval(GatePolicy(require_approval=required), checks) is waits


def test_logged_score_names_the_missing_metric() -> None:
    assert logged_score("f1", {"f1": 1}) == 1.0 and isinstance(logged_score("f1", {"f1": 1}), float)
    with pytest.raises(InvalidInput, match="the run logged no 'f1' metric: log it"):
        logged_score("f1", {"accuracy": 0.9})


def test_time_predictions_times_one_row_at_a_time() -> None:
    seen: list[int] = []

    class Counting:
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            seen.append(len(x))
            return np.zeros(len(x))

    timings = time_predictions(Counting(), pd.DataFrame({"a": [1, 2, 3]}))
    assert len(timings) == 3 and all(t >= 0 for t in timings) and seen == [1, 1, 1]


# -- the gate: evaluate runs the policy's checks in order and builds the verdict ------------------


class AtLeast:
    """Predicts 1 when column ``a`` reaches ``cut``: a real model, small enough to reason about."""

    def __init__(self, cut: float, delay_s: float = 0.0) -> None:
        self.cut, self.delay_s = cut, delay_s

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        return (np.asarray(x["a"]) >= self.cut).astype(int)


HOLDOUT = pd.DataFrame(
    {
        "a": [0, 1, 2, 3, 4, 5, 6, 7],
        "region": ["eu", "eu", "eu", "eu", "us", "us", "us", "us"],
        "label": [0, 0, 0, 0, 1, 1, 1, 1],
    }
)
SIGNATURE = Signature(inputs=(("a", "int64"), ("region", "object")), outputs=())


def run_gate(policy: GatePolicy, **given: Any) -> Verdict:
    arguments: dict[str, Any] = {
        "name": "churn",
        "version": 2,
        "candidate": AtLeast(4),
        "candidate_signature": None,
        "candidate_metrics": {},
        "champion": None,
        "champion_version": None,
        "champion_signature": None,
        "holdout": HOLDOUT,
        "holdout_digest": "blake3:abc",
    }
    return evaluate(policy, **{**arguments, **given})


def gate(**settings: Any) -> GatePolicy:
    return GatePolicy(**{"holdout": "h.csv", "label": "label", **settings})


def test_a_full_policy_runs_every_check_in_order(checks_root: Path) -> None:
    verdict = run_gate(
        gate(
            min_score=0.9,
            margin=0.1,
            latency_p95_ms=1000,
            latency_sample=3,
            fairness_column="region",
            fairness_max_gap=0.0,
            checks=("gate_unit_checks:fine",),
            require_approval=True,
        ),
        champion=AtLeast(2),
        champion_version=1,
        candidate_signature=SIGNATURE,
        champion_signature=SIGNATURE,
        contract=Schema({"a": Column("int64")}),
        root=checks_root,
    )
    assert [c.name for c in verdict.checks] == [
        "threshold",
        "beats_champion",
        "latency",
        "fairness",
        "signature",
        "check:gate_unit_checks:fine",
        "contract",
    ]
    assert all(c.passed for c in verdict.checks), verdict.summary()
    assert verdict.passed and verdict.awaiting_approval
    assert (verdict.model, verdict.version, verdict.champion) == ("churn", 2, 1)
    assert verdict.holdout_digest == "blake3:abc" and verdict.policy["min_score"] == 0.9
    threshold, beat, latency, fairness = verdict.checks[:4]
    assert threshold.details == {"metric": "accuracy", "score": 1.0, "min": 0.9}
    assert beat.details["champion_score"] == 0.75 and beat.details["delta"] == 0.25
    assert latency.details["sample"] == 3
    assert fairness.details["slices"] == {"eu": 1.0, "us": 1.0}
    assert not verdict.forced and verdict.reason is None


def test_each_failing_check_fails_the_verdict_alone() -> None:
    policy = gate(
        min_score=0.9,
        latency_p95_ms=1000,
        fairness_column="region",
        fairness_max_gap=0.1,
        require_approval=True,
    )
    # AtLeast(2) scores 0.75: under the threshold, worse than the champion, unfair to eu
    verdict = run_gate(policy, candidate=AtLeast(2), champion=AtLeast(4), champion_version=1)
    assert {c.name: c.passed for c in verdict.checks} == {
        "threshold": False,
        "beats_champion": False,
        "latency": True,
        "fairness": False,
        "signature": True,  # no signatures recorded
    }
    assert not verdict.passed and not verdict.awaiting_approval
    assert verdict.checks[3].details["slices"] == {"eu": 0.5, "us": 1.0}


def test_a_slow_model_fails_the_latency_budget() -> None:
    verdict = run_gate(
        gate(beat_champion=False, latency_p95_ms=1, latency_sample=2),
        candidate=AtLeast(4, delay_s=0.01),
    )
    (latency,) = verdict.checks
    assert not latency.passed and latency.details["p95_ms"] > 1 and latency.details["sample"] == 2
    assert not verdict.passed


def test_without_a_champion_the_gate_compares_nothing() -> None:
    verdict = run_gate(gate(), candidate=AtLeast(2), candidate_signature=SIGNATURE)
    (beat,) = verdict.checks  # no signature check without a champion
    assert beat == CheckResult("beats_champion", True, {"score": 0.75, "champion": None})
    assert verdict.passed and verdict.champion is None and not verdict.awaiting_approval


def test_an_incompatible_signature_fails_the_gate() -> None:
    narrower = Signature(inputs=(("a", "int64"),), outputs=())
    verdict = run_gate(
        gate(beat_champion=False),
        champion=AtLeast(4),
        champion_version=1,
        candidate_signature=SIGNATURE,
        champion_signature=narrower,
    )
    (signature,) = verdict.checks
    assert signature.details == {"problems": ["needs new input columns ['region']"]}
    assert not verdict.passed
    relaxed = run_gate(
        gate(beat_champion=False, require_signature_match=False),
        champion=AtLeast(4),
        candidate_signature=SIGNATURE,
        champion_signature=narrower,
    )
    assert relaxed.checks == () and relaxed.passed


def test_without_a_holdout_the_score_is_the_runs_logged_metric() -> None:
    policy = GatePolicy(metric="f1", min_score=0.8)
    passed = run_gate(policy, holdout=None, candidate_metrics={"f1": 0.85, "accuracy": 0.1})
    assert passed.passed and passed.checks[0].details["score"] == 0.85
    failed = run_gate(policy, holdout=None, candidate_metrics={"f1": 0.75})
    assert not failed.passed and failed.checks[0].details["score"] == 0.75
    (threshold, beat) = run_gate(policy, holdout=None, candidate_metrics={"accuracy": 0.9}).checks
    for check in (threshold, beat):
        assert not check.passed
        assert "No holdout configured and the run logged no 'f1' metric" in check.details["error"]


@pytest.mark.parametrize(
    ("settings", "name", "message"),
    [
        ({}, "beats_champion", "beat_champion needs a holdout: both models are scored on it"),
        ({"latency_p95_ms": 10}, "latency", "latency_p95_ms needs a holdout to sample rows from"),
        (
            {"fairness_column": "region", "fairness_max_gap": 0.1},
            "fairness",
            "fairness needs a holdout",
        ),
    ],
)
def test_checks_that_need_a_holdout_fail_without_one(
    settings: dict[str, Any], name: str, message: str
) -> None:
    policy = GatePolicy(beat_champion=name == "beats_champion", **settings)
    verdict = run_gate(
        policy,
        holdout=None,
        candidate_metrics={"accuracy": 0.9},
        champion=AtLeast(1),
        champion_version=1,
    )
    check = next(c for c in verdict.checks if c.name == name)
    assert not check.passed and check.details["error"] == f"InvalidInput: {message}"
    assert "Traceback" in check.details["traceback"] and not verdict.passed


def test_a_holdout_without_the_label_column_is_an_error() -> None:
    with pytest.raises(
        InvalidInput,
        match=r"The holdout has no label column 'churned' \(its columns: a, region, label\)",
    ):
        run_gate(gate(label="churned"))
    with pytest.raises(InvalidInput, match="has no label column None"):
        run_gate(GatePolicy())  # a holdout frame with no label = in the policy


def test_a_fairness_column_missing_from_the_holdout_fails_that_check() -> None:
    verdict = run_gate(gate(beat_champion=False, fairness_column="country", fairness_max_gap=0.1))
    (fairness,) = verdict.checks
    assert fairness.details["error"] == "InvalidInput: The holdout has no slice column 'country'"


def test_a_model_that_raises_fails_its_checks_and_the_others_still_run(
    checks_root: Path,
) -> None:
    class Broken:
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            raise RuntimeError("no weights")

    verdict = run_gate(
        gate(min_score=0.5, checks=("gate_unit_checks:fine",)), candidate=Broken(), root=checks_root
    )
    threshold, beat, behavioural = verdict.checks
    for check in (threshold, beat):
        assert check.details["error"] == "RuntimeError: no weights"
    assert behavioural.passed and not verdict.passed


def test_the_model_gets_the_columns_of_its_signature() -> None:
    class OnlyA(AtLeast):
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            assert list(x.columns) == ["a"], list(x.columns)
            return super().predict(x)

    only_a = Signature(inputs=(("a", "int64"),), outputs=())
    verdict = run_gate(gate(min_score=1.0), candidate=OnlyA(4), candidate_signature=only_a)
    assert verdict.passed, verdict.summary()
    needs_b = Signature(inputs=(("a", "int64"), ("b", "int64")), outputs=())
    (threshold, _) = run_gate(gate(min_score=1.0), candidate_signature=needs_b).checks
    assert "The holdout lacks columns the model needs: ['b']" in threshold.details["error"]


def test_features_come_from_the_signature_then_sklearn_then_all_but_the_label() -> None:
    assert list(features(AtLeast(1), None, HOLDOUT, "label").columns) == ["a", "region"]
    fitted = LogisticRegression().fit(HOLDOUT[["a"]], HOLDOUT["label"])
    assert list(features(fitted, None, HOLDOUT, "label").columns) == ["a"]
    arrays = Signature(inputs=(("[0]", "int64"),), outputs=())  # an array model: no names
    assert list(features(AtLeast(1), arrays, HOLDOUT, "label").columns) == ["a", "region"]
    assert model_score("accuracy", AtLeast(4), None, HOLDOUT, "label") == 1.0


@pytest.fixture
def checks_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace root holding behavioural checks, found only through evaluate's ``root``
    (imported afresh by each test)."""
    root = tmp_path / "gate_checks"
    root.mkdir()
    monkeypatch.delitem(sys.modules, "gate_unit_checks", raising=False)
    (root / "gate_unit_checks.py").write_text(
        textwrap.dedent(
            """
            def fine(model, holdout):
                return True

            def refuses(model, holdout):
                return (False, {"negative": 2})

            def agrees(model, holdout):
                return (True, {"rows": len(holdout)})

            def answers_yes(model, holdout):
                return "yes"

            def predicts_the_label(model, holdout):
                return bool((model.predict(holdout) == holdout["label"]).all())
            """
        )
    )
    return root


@pytest.mark.parametrize(
    ("spec", "passed", "details"),
    [
        ("gate_unit_checks:fine", True, {}),
        ("gate_unit_checks:refuses", False, {"negative": 2}),
        ("gate_unit_checks:agrees", True, {"rows": 8}),
        ("gate_unit_checks:answers_yes", False, None),
        ("gate_unit_checks:predicts_the_label", True, {}),  # the check gets the candidate
    ],
)
def test_a_behavioural_check_decides_by_its_bool(
    spec: str, passed: bool, details: dict[str, Any] | None, checks_root: Path
) -> None:
    verdict = run_gate(gate(beat_champion=False, checks=(spec,)), root=checks_root)
    (check,) = verdict.checks
    assert check.name == f"check:{spec}" and check.passed is passed and verdict.passed is passed
    if details is not None:
        assert check.details == details


def test_a_behavioural_check_that_cannot_be_loaded_fails(checks_root: Path) -> None:
    verdict = run_gate(
        gate(beat_champion=False, checks=("gate_unit_checks:missing",)), root=checks_root
    )
    (check,) = verdict.checks
    assert not check.passed and "Cannot load behavioural check" in check.details["error"]


def test_the_contract_check_runs_only_with_a_holdout() -> None:
    broken = Schema({"a": Column("int64", max=2)})
    verdict = run_gate(gate(beat_champion=False, require_approval=True), contract=broken)
    (contract,) = verdict.checks
    assert contract.name == "contract" and not contract.passed
    assert not verdict.passed and not verdict.awaiting_approval
    skipped = run_gate(GatePolicy(beat_champion=False), holdout=None, contract=broken)
    assert skipped.checks == () and skipped.passed


def test_a_verdict_round_trips_and_old_stored_verdicts_load() -> None:
    verdict = run_gate(gate(min_score=0.9))
    data = verdict.to_dict()
    assert list(data) == [
        "model",
        "version",
        "champion",
        "passed",
        "awaiting_approval",
        "forced",
        "reason",
        "holdout_digest",
        "policy",
        "checks",
    ]
    assert data["checks"][0] == {
        "name": "threshold",
        "passed": True,
        "details": {"metric": "accuracy", "score": 1.0, "min": 0.9},
    }
    assert Verdict.from_dict(data) == verdict
    stored = {  # a verdict as an earlier loopml wrote it
        "model": "m",
        "version": 1,
        "passed": False,
        "checks": [{"name": "latency", "passed": False, "details": {"p95_ms": 61.0}}],
    }
    old = Verdict.from_dict(stored)
    assert old.checks == (CheckResult("latency", False, {"p95_ms": 61.0}),)
    assert (old.champion, old.policy, old.forced, old.awaiting_approval) == (None, {}, False, False)
    assert old.summary() == "gate for m/1: FAIL\n  [FAIL] latency: p95_ms=61"


def test_the_summary_lists_every_check_without_tracebacks() -> None:
    verdict = Verdict(
        model="m",
        version=2,
        champion=1,
        passed=False,
        checks=(
            CheckResult("threshold", True, {"score": 0.912345, "min": 0.9}),
            CheckResult("check:x:y", False, {"error": "boom", "traceback": "Traceback ..."}),
        ),
        policy={},
    )
    assert verdict.summary() == (
        "gate for m/2: FAIL\n"
        "  [pass] threshold: score=0.9123, min=0.9\n"
        "  [FAIL] check:x:y: error=boom"
    )


def test_a_policy_from_something_else_than_a_table_is_refused() -> None:
    with pytest.raises(InvalidConfig, match=r"^gate policy must be a table of settings"):
        GatePolicy.from_dict(["metric"])  # type: ignore[arg-type]
    policy = GatePolicy.from_dict({"checks": ["a:b"], "min_score": 0.5})
    assert policy.to_dict()["checks"] == ["a:b"] and policy.to_dict()["min_score"] == 0.5
    assert GatePolicy.from_dict(policy.to_dict()) == policy


def test_a_check_answer_that_is_not_a_bool_is_described_exactly() -> None:
    expected = "a check must return True/False or (True/False, {details})"
    assert check_outcome("m:f", (True, {}, 3)) == CheckResult(
        "check:m:f", False, {"error": f"returned a tuple of 3 items; {expected}"}
    )
    assert check_outcome("m:f", (True, [1])) == CheckResult(
        "check:m:f", False, {"error": f"returned details [1] (list), not a dict; {expected}"}
    )
    assert check_outcome("m:f", None) == CheckResult(
        "check:m:f", False, {"error": f"returned None (NoneType) instead of a bool; {expected}"}
    )
    shown = "x" * 78  # its repr is 80 characters: shown whole
    assert f"returned '{shown}' (str) instead" in check_outcome("m:f", shown).details["error"]
    longer = "x" * 79  # 81: cut to 77 and an ellipsis
    cut = check_outcome("m:f", longer).details["error"]
    assert cut.startswith("returned '" + "x" * 76 + "... (str) instead of a bool")


def test_a_failing_check_keeps_a_short_traceback() -> None:
    def deep(n: int) -> CheckResult:
        if n == 0:
            raise ValueError("bottom")
        return deep(n - 1)

    result = _guard("deep", lambda: deep(10))
    assert result.name == "deep" and result.passed is False
    assert result.details["error"] == "ValueError: bottom"
    assert result.details["traceback"].count('File "') == 5  # the first five frames


def test_first_line_of_an_error() -> None:
    assert _first_line(ValueError("")) == ""
    assert _first_line(ValueError("  one\ntwo")) == "one"
    assert _first_line(ValueError("x" * 400)) == "x" * 300


WIDE = pd.DataFrame({f"c{i:02}": [i] for i in range(25)})
FIRST_20 = ", ".join(f"c{i:02}" for i in range(20))


def test_a_wide_holdout_without_its_label_names_twenty_columns(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    WIDE.to_csv(path, index=False)
    with pytest.raises(InvalidInput) as info:
        read_holdout(path, "label")
    assert str(info.value) == (
        f"Holdout {path} has no label column 'label' (its columns: {FIRST_20}); fix label = "
        "in the gate policy or add the column to the file"
    )
    with pytest.raises(InvalidInput) as info:
        run_gate(gate(), holdout=WIDE)
    assert str(info.value) == (
        f"The holdout has no label column 'label' (its columns: {FIRST_20}); set label = in "
        "the gate policy"
    )


@pytest.mark.parametrize("name", ["holdout.parquet", "holdout.pq", "HOLDOUT.PARQUET"])
def test_a_parquet_holdout_is_read(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    HOLDOUT.to_parquet(path)
    pd.testing.assert_frame_equal(read_holdout(path, "label"), HOLDOUT)


def test_read_holdout_messages(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(InvalidInput) as info:
        read_holdout(missing, "label")
    assert str(info.value) == (
        f"Holdout dataset {missing} does not exist: fetch it (`loopml data checkout`) or fix "
        "holdout = in the gate policy"
    )
    json_file = tmp_path / "h.json"
    json_file.write_text("{}")
    with pytest.raises(InvalidInput) as info:
        read_holdout(json_file)
    assert str(info.value) == f"Holdout {json_file}: use a .csv or .parquet file"
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet\nat all")
    with pytest.raises(InvalidInput) as info:
        read_holdout(broken)
    message = str(info.value)
    assert message.startswith(f"Cannot read holdout {broken} (")
    assert message.endswith("); check that it is a valid CSV or Parquet file")
    assert "\n" not in message
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('a,"b\n1,2\n')
    with pytest.raises(InvalidInput) as info:
        read_holdout(quoted)
    assert str(info.value) == (
        f"Cannot read holdout {quoted} (ParserError: Error tokenizing data. C error: EOF inside "
        "string starting at row 0); check that it is a valid CSV or Parquet file"
    )
    plain = tmp_path / "plain.csv"
    HOLDOUT.to_csv(plain, index=False)
    assert list(read_holdout(plain).columns) == ["a", "region", "label"]  # no label asked for


def test_load_check_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in (":f", "m:", "m"):
        with pytest.raises(InvalidConfig) as info:
            load_check(spec)
        assert str(info.value) == f"Behavioural check {spec!r} must look like 'module:function'"
    with pytest.raises(InvalidConfig) as info:
        load_check("no_such_gate_module_xyz:f")
    assert str(info.value) == (
        "Cannot load behavioural check 'no_such_gate_module_xyz:f': "
        "No module named 'no_such_gate_module_xyz'"
    )
    (tmp_path / "gate_not_callable.py").write_text("LIMIT = 3\n")
    monkeypatch.delitem(sys.modules, "gate_not_callable", raising=False)
    with pytest.raises(InvalidConfig) as info:
        load_check("gate_not_callable:LIMIT", tmp_path)
    assert str(info.value) == "Behavioural check 'gate_not_callable:LIMIT' is a int, not a function"


def test_the_workspace_checks_come_before_the_rest_of_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere, workspace = tmp_path / "elsewhere", tmp_path / "workspace"
    for folder, answer in ((elsewhere, False), (workspace, True)):
        folder.mkdir()
        (folder / "gate_shadowed.py").write_text(f"def check(m, h):\n    return {answer}\n")
    monkeypatch.syspath_prepend(str(elsewhere))
    monkeypatch.delitem(sys.modules, "gate_shadowed", raising=False)
    assert load_check("gate_shadowed:check", workspace)(None, None) is True


def test_from_dict_without_checks_and_a_verdict_with_every_field() -> None:
    assert GatePolicy.from_dict({"metric": "f1"}) == GatePolicy(metric="f1")
    assert GatePolicy.from_dict({"latency_sample": 1}).latency_sample == 1  # one row is enough
    verdict = Verdict(
        model="m",
        version=3,
        champion=2,
        passed=True,
        checks=(CheckResult("threshold", True, {"score": 0.9}),),
        policy={"metric": "accuracy"},
        holdout_digest="blake3:1",
        awaiting_approval=True,
        forced=True,
        reason="incident 42",
    )
    assert Verdict.from_dict(verdict.to_dict()) == verdict
    assert Verdict.from_dict({"model": "m", "version": 1, "passed": True}).checks == ()
    assert verdict.summary() == "gate for m/3: PASS\n  [pass] threshold: score=0.9"


def test_each_model_is_scored_with_its_own_signature_and_the_margin_counts() -> None:
    class OnlyA(AtLeast):
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            assert list(x.columns) == ["a"], list(x.columns)
            return super().predict(x)

    only_a = Signature(inputs=(("a", "int64"),), outputs=())
    policy = gate(margin=0.2, require_signature_match=False)
    verdict = run_gate(policy, champion=OnlyA(2), champion_version=1, champion_signature=only_a)
    (beat,) = verdict.checks
    assert beat == CheckResult(
        "beats_champion",
        True,
        {
            "metric": "accuracy",
            "score": 1.0,
            "champion_version": 1,
            "champion_score": 0.75,
            "margin": 0.2,
            "delta": 0.25,
        },
    )
    stricter = run_gate(
        gate(margin=0.3, require_signature_match=False),
        champion=OnlyA(2),
        champion_version=1,
        champion_signature=only_a,
    )
    assert not stricter.passed


def test_latency_and_fairness_feed_the_model_its_own_columns() -> None:
    fitted = LogisticRegression().fit(HOLDOUT[["a"]], HOLDOUT["label"])  # region is text
    policy = gate(
        beat_champion=False,
        latency_p95_ms=1000,
        latency_sample=2,
        fairness_column="region",
        fairness_max_gap=0.5,
    )
    latency, fairness = run_gate(policy, candidate=fitted).checks
    assert latency.passed and latency.details["sample"] == 2
    assert fairness.details["column"] == "region" and fairness.passed, fairness.details
    assert model_score("accuracy", fitted, None, HOLDOUT, "label") == 1.0

    class OnlyA(AtLeast):
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            assert list(x.columns) == ["a"], list(x.columns)
            return super().predict(x)

    only_a = Signature(inputs=(("a", "int64"),), outputs=())
    checks = run_gate(policy, candidate=OnlyA(4), candidate_signature=only_a).checks
    assert all(c.passed for c in checks), checks


def test_a_check_that_raises_is_named_after_its_setting() -> None:
    class Broken:
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            raise RuntimeError("no weights")

    odd = Signature(inputs=None, outputs=())  # type: ignore[arg-type]
    verdict = run_gate(
        gate(min_score=0.5, beat_champion=False),
        candidate=Broken(),
        champion=AtLeast(4),
        candidate_signature=odd,
        champion_signature=odd,
    )
    assert [(c.name, c.passed) for c in verdict.checks] == [
        ("threshold", False),
        ("signature", False),
    ]


@pytest.mark.parametrize(
    "module", ["loopml.checks", "loopml.registry.gates", "loopml.registry.scoring"]
)
def test_the_docstring_examples_hold(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_score": float("inf")}, "min_score must be a number, got inf"),
        ({"min_score": float("-inf")}, "min_score must be a number, got -inf"),
        ({"margin": float("inf")}, "margin must be a number, got inf"),
        ({"latency_p95_ms": "50ms"}, "latency_p95_ms must be a number, got '50ms'"),
        ({"latency_p95_ms": False}, "latency_p95_ms must be a number, got False"),
        (
            {"latency_sample": -5},
            "latency_sample must be a whole number of rows, at least 1, got -5",
        ),
        (
            {"fairness_column": "region", "fairness_max_gap": "0.1"},
            "fairness_max_gap must be a number, got '0.1'",
        ),
        (
            {"fairness_column": 7, "fairness_max_gap": 0.1},
            "fairness_column must be a non-empty string, got 7",
        ),
        ({"metric": None}, f"unknown metric None; use one of {METRIC_NAMES}"),
        ({"holdout": "data/holdout.csv", "label": ""}, "label must be a non-empty string, got ''"),
        ({"checks": ["my_checks:"]}, f"checks entry 'my_checks:' {CHECK_SPEC}"),
        ({"checks": [":fn"]}, f"checks entry ':fn' {CHECK_SPEC}"),
        ({"checks": ["my checks:fn"]}, f"checks entry 'my checks:fn' {CHECK_SPEC}"),
        ({"checks": ["a:b", "9pkg:fn"]}, f"checks entry '9pkg:fn' {CHECK_SPEC}"),
        ({"checks": {"a": "b:c"}}, "checks must be a list of 'module:function' strings, got"),
    ],
)
def test_more_bad_policy_values_name_the_key_and_the_value(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidConfig) as info:
        GatePolicy.from_dict(settings, WHERE)
    assert str(info.value).startswith(f"{WHERE}: {message}")


def test_the_python_constructor_names_what_a_holdout_lacks_and_unknown_metrics() -> None:
    with pytest.raises(InvalidConfig) as info:
        GatePolicy(holdout="data/holdout.csv")
    assert str(info.value) == "GatePolicy: a holdout needs label = '<label column>'"
    with pytest.raises(InvalidConfig) as info:
        GatePolicy(metric="rsme")
    assert str(info.value).startswith("GatePolicy: unknown metric 'rsme'; did you mean 'rmse'?")


def test_thresholds_that_may_be_zero_or_negative_load() -> None:
    # r2 and similar scores go below zero, so a negative min_score is a real threshold;
    # a zero margin or gap means "no worse at all".
    policy = GatePolicy.from_dict(
        {
            "metric": "r2",
            "min_score": -0.5,
            "margin": 0,
            "fairness_column": "region",
            "fairness_max_gap": 0,
            "latency_sample": 1,
            "beat_champion": np.bool_(False),
        },
        WHERE,
    )
    assert (policy.min_score, policy.margin, policy.fairness_max_gap) == (-0.5, 0, 0)
    assert GatePolicy.from_dict(policy.to_dict(), WHERE) == policy  # what is stored reloads


def test_a_signature_change_names_every_problem() -> None:
    champion = Signature(inputs=(("x", "float64"), ("y", "int64")), outputs=())
    dropped = Signature(inputs=(("x", "float64"),), outputs=())
    retyped = Signature(inputs=(("x", "float64"), ("y", "object")), outputs=())
    all_at_once = Signature(inputs=(("y", "float64"), ("z", "int64")), outputs=())
    assert check_signature(dropped, champion) == CheckResult(
        "signature", False, {"problems": ["drops input columns ['y']"]}
    )
    assert check_signature(retyped, champion) == CheckResult(
        "signature", False, {"problems": ["column 'y' is object, Production has int64"]}
    )
    assert check_signature(all_at_once, champion).details["problems"] == [
        "drops input columns ['x']",
        "needs new input columns ['z']",
        "column 'y' is float64, Production has int64",
    ]
    reordered = Signature(inputs=(("y", "int64"), ("x", "float64")), outputs=())
    assert check_signature(reordered, champion) == CheckResult(
        "signature", True, {"problems": []}
    )  # columns are matched by name, not position


@pytest.mark.parametrize(
    ("metric", "value", "minimum", "passed"),
    [
        ("r2", -0.2, -0.5, True),  # a negative threshold on a score that can go below zero
        ("r2", -0.6, -0.5, False),
        ("log_loss", 0.3, 0.4, True),  # every loss passes below its threshold
        ("log_loss", 0.5, 0.4, False),
        ("mae", 0.5, 0.4, False),
        ("mse", 0.1, 0.4, True),
        ("roc_auc", 0.39, 0.4, False),
        ("f1", 0.4, 0.4, True),
    ],
)
def test_threshold_follows_the_direction_of_each_metric(
    metric: str, value: float, minimum: float, passed: bool
) -> None:
    assert check_threshold(metric, value, minimum).passed is passed


def test_latency_p95_of_many_timings_is_interpolated() -> None:
    result = check_latency([float(ms) for ms in range(1, 101)], 95.0)
    assert result.details["p95_ms"] == pytest.approx(95.05) and result.passed is False
    assert check_latency([float(ms) for ms in range(1, 101)], 95.05).passed is True
