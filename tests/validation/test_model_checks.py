"""Model checks with real scikit-learn models on data generated with numpy."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.tree import DecisionTreeClassifier

from loopml.exceptions import InvalidInput, LoopmlError
from loopml.validation import (
    CheckResult,
    ModelChecksFailed,
    assert_checks,
    check_beats_baseline,
    check_directional,
    check_invariance,
    check_trains_on_sample,
)


def make_classification(n: int = 2_000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Churn-like data: churn rises with ``overdue``, falls with ``tenure``; ``user_id`` is noise."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "overdue": rng.normal(0, 1, n),
            "tenure": rng.normal(0, 1, n),
            "user_id": rng.permutation(n).astype(float),
        }
    )
    logits = 2.0 * X["overdue"] - 1.5 * X["tenure"] - 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(int)
    return X, y


def make_regression(n: int = 1_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (n, 3))
    y = 3 * X[:, 0] - 2 * X[:, 1] + rng.normal(0, 0.5, n)
    return X, y


def ignoring_user_id() -> Any:
    """A classifier that can't see ``user_id``: the column is dropped before the model."""
    drop = ColumnTransformer([("keep", "passthrough", ["overdue", "tenure"])])
    return make_pipeline(drop, LogisticRegression())


# -- trains on a sample -------------------------------------------------------------------------


def test_trains_on_sample_passes_for_a_factory_and_an_estimator() -> None:
    X, y = make_classification()
    result = check_trains_on_sample(lambda: LogisticRegression(), X, y, n=200)
    assert isinstance(result, CheckResult) and result.passed, result
    assert result.name == "trains_on_sample" and result.details["n_rows"] == 200
    assert result.details["fit_seconds"] >= 0
    estimator = DecisionTreeClassifier(max_depth=3)
    assert check_trains_on_sample(estimator, X.to_numpy(), y, n=50).passed
    assert not hasattr(estimator, "tree_")  # the estimator was cloned, not fitted in place
    assert check_trains_on_sample(LogisticRegression, X, y, n=10_000).details["n_rows"] == 2_000


def test_trains_on_sample_fails_when_training_breaks() -> None:
    X, y = make_classification()
    X_bad = X.assign(overdue=np.where(np.arange(len(X)) % 2 == 0, np.nan, X["overdue"]))
    result = check_trains_on_sample(LogisticRegression, X_bad, y)
    assert not result.passed and result.details["error"].startswith("ValueError: ")
    assert "training failed: ValueError" in str(result)
    with pytest.raises(InvalidInput, match="X has 2000 rows and y has 3 values"):
        check_trains_on_sample(LogisticRegression, X, y[:3])


def test_trains_on_sample_catches_non_finite_predictions() -> None:
    class Exploding:
        def fit(self, X: Any, y: Any) -> Exploding:
            return self

        def predict(self, X: Any) -> np.ndarray:
            return np.full(len(X), np.inf)

    result = check_trains_on_sample(Exploding, *make_regression())
    assert not result.passed and result.summary == "predict returned non-finite values"


# -- beats a baseline -------------------------------------------------------------------------


def test_a_real_classifier_beats_the_majority_class() -> None:
    X, y = make_classification()
    model = LogisticRegression().fit(X[:1_500], y[:1_500])
    result = check_beats_baseline(model, X[1_500:], y[1_500:], margin=0.05)
    assert result.passed, result
    details = result.details
    assert details["metric"] == "accuracy" and details["baseline"].startswith("sklearn.dummy")
    majority = max(np.mean(y[1_500:]), 1 - np.mean(y[1_500:]))
    assert details["baseline_score"] == pytest.approx(majority)
    assert details["improvement"] == pytest.approx(details["model_score"] - majority)
    assert json.loads(json.dumps(details)) == details


def test_a_trivial_model_does_not_beat_the_baseline() -> None:
    X, y = make_classification()
    dummy = DummyClassifier(strategy="most_frequent").fit(X, y)
    result = check_beats_baseline(dummy, X, y)
    assert not result.passed and result.details["improvement"] == 0.0
    assert "does not beat" in result.summary
    balanced = check_beats_baseline(dummy, X, y, metric="balanced_accuracy")
    assert balanced.details["baseline_score"] == 0.5 and not balanced.passed


def test_margin_is_in_metric_units() -> None:
    X, y = make_classification()
    model = LogisticRegression().fit(X, y)
    improvement = check_beats_baseline(model, X, y).details["improvement"]
    assert check_beats_baseline(model, X, y, margin=improvement - 0.01).passed
    assert not check_beats_baseline(model, X, y, margin=improvement + 0.01).passed


@pytest.mark.parametrize("metric", ["rmse", "mae", "mse", "r2", None])
def test_regression_against_the_mean(metric: str | None) -> None:
    X, y = make_regression()
    model = LinearRegression().fit(X, y)
    result = check_beats_baseline(model, X, y, metric=metric, task="regression")
    assert result.passed, result
    assert result.details["metric"] == (metric or "rmse")
    if metric == "r2":
        assert result.details["baseline_score"] == pytest.approx(0.0, abs=1e-12)
    assert result.details["greater_is_better"] is (metric == "r2")


def test_callable_metric_and_y_train() -> None:
    X, y = make_regression()
    model = LinearRegression().fit(X, y)

    def max_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(np.max(np.abs(y_true - y_pred)))

    result = check_beats_baseline(
        model, X, y, metric=max_error, task="regression", greater_is_better=False
    )
    assert result.passed and result.details["metric"] == "max_error"
    shifted = check_beats_baseline(model, X, y, task="regression", y_train=y + 100)
    assert shifted.details["baseline_score"] > 99  # a baseline fitted on other labels


def test_baseline_without_sklearn_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = make_classification()
    model = LogisticRegression().fit(X, y)
    Xr, yr = make_regression()
    reg = LinearRegression().fit(Xr, yr)
    with_sklearn = (
        check_beats_baseline(model, X, y).details,
        check_beats_baseline(reg, Xr, yr, task="regression").details,
    )
    monkeypatch.setitem(sys.modules, "sklearn.dummy", None)  # import now raises ImportError
    without = (
        check_beats_baseline(model, X, y).details,
        check_beats_baseline(reg, Xr, yr, task="regression").details,
    )
    for a, b in zip(with_sklearn, without, strict=True):
        assert b["baseline"].endswith("(computed directly)")
        assert b["baseline_score"] == pytest.approx(a["baseline_score"])


def test_beats_baseline_bad_arguments_and_broken_models() -> None:
    X, y = make_classification()
    model = LogisticRegression().fit(X, y)
    with pytest.raises(InvalidInput, match="unknown metric 'auc'"):
        check_beats_baseline(model, X, y, metric="auc")
    with pytest.raises(InvalidInput, match="'rmse' is a regression metric"):
        check_beats_baseline(model, X, y, metric="rmse")
    with pytest.raises(InvalidInput, match="task must be"):
        check_beats_baseline(model, X, y, task="ranking")  # type: ignore[arg-type]
    unfitted = check_beats_baseline(LogisticRegression(), X, y)
    assert not unfitted.passed and "NotFittedError" in unfitted.details["error"]


# -- invariance and direction ------------------------------------------------------------------


def test_invariance_passes_for_an_ignored_column_and_fails_for_a_used_one() -> None:
    X, y = make_classification()
    model = ignoring_user_id().fit(X, y)
    shuffle = lambda values: np.random.default_rng(1).permutation(values.to_numpy())  # noqa: E731
    result = check_invariance(model, X, "user_id", shuffle)
    assert result.passed and result.name == "invariance[user_id]", result
    assert result.details["n_violations"] == 0 and result.details["examples"] == []
    proba = check_invariance(model, X, "user_id", 0.0, method="predict_proba")
    assert proba.passed and proba.details["max_abs_change"] == 0.0
    used = check_invariance(model, X, "overdue", lambda v: v + 3, method="predict_proba")
    assert not used.passed and used.details["max_abs_change"] > 0.1
    example = used.details["examples"][0]
    assert set(example) == {"index", "before", "after"} and len(example["before"]) == 2
    assert json.loads(json.dumps(used.details)) == used.details


def test_invariance_tolerance_and_violation_rate() -> None:
    X, y = make_classification()
    model = LogisticRegression().fit(X, y)  # sees user_id, with a tiny weight
    nudge = lambda v: v + 1.0  # noqa: E731
    strict = check_invariance(model, X, "user_id", nudge, method="predict_proba")
    assert not strict.passed  # probabilities move a little
    assert check_invariance(model, X, "user_id", nudge, 0.01, method="predict_proba").passed
    labels = check_invariance(model, X, "overdue", lambda v: v + 0.05)
    assert not labels.passed and 0 < labels.details["violation_rate"] < 0.1
    assert check_invariance(model, X, "overdue", lambda v: v + 0.05, max_violation_rate=0.1).passed


def test_directional_expectations() -> None:
    X, y = make_classification()
    model = LogisticRegression().fit(X, y)
    up = check_directional(model, X, "overdue", 0.5, method="predict_proba")
    assert up.passed and up.details["mean_change"] > 0, up
    assert up.name == "directional[overdue]" and up.details["direction"] == "increase"
    down = check_directional(model, X, "tenure", 0.5, "decrease", method="predict_proba")
    assert down.passed
    wrong = check_directional(model, X, "tenure", 0.5, "increase", method="predict_proba")
    assert not wrong.passed and wrong.details["violation_rate"] == 1.0
    assert "2,000 of 2,000 rows (100.00%) did not increase" in wrong.summary
    named = check_directional(model, X, "overdue", lambda v: v * 2, name="doubling")
    assert named.name == "doubling" and named.details["delta"] == "<lambda>"


def test_directional_on_arrays_and_regressors() -> None:
    X, y = make_regression()
    model = LinearRegression().fit(X, y)
    assert check_directional(model, X, 0, 1.0).passed
    assert check_directional(model, X, 1, 1.0, "decrease").passed
    assert not check_directional(model, X, 1, 1.0, "increase").passed
    assert check_invariance(model, X, 2, lambda v: v, 0.0).passed
    ints = np.round(X * 10).astype(int)
    assert check_directional(LinearRegression().fit(ints, y), ints, 0, 0.5).passed


def test_behavioural_checks_reject_bad_arguments() -> None:
    X, y = make_classification()
    model = LogisticRegression().fit(X, y)
    with pytest.raises(InvalidInput, match="X has no column 'nope'"):
        check_invariance(model, X, "nope", lambda v: v)
    with pytest.raises(InvalidInput, match="column is a position in 0..2"):
        check_directional(model, X.to_numpy(), 5, 1.0)
    with pytest.raises(InvalidInput, match="direction must be"):
        check_directional(model, X, "overdue", 1.0, "sideways")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="has no 'predict_log_odds' method"):
        check_invariance(model, X, "overdue", lambda v: v, method="predict_log_odds")
    labels = np.array(["no", "yes"])[y]
    text_model = LogisticRegression().fit(X, labels)
    with pytest.raises(InvalidInput, match="needs numeric outputs"):
        check_directional(text_model, X, "overdue", 1.0)
    assert check_invariance(text_model, X, "user_id", lambda v: v).passed  # labels compared


def test_a_model_that_raises_fails_the_check() -> None:
    class Fragile:
        def predict(self, X: pd.DataFrame) -> np.ndarray:
            if (X["overdue"] > 100).any():
                raise ValueError("out of range")
            return np.zeros(len(X))

    X, _ = make_classification()
    result = check_directional(Fragile(), X, "overdue", 1_000.0)
    assert not result.passed and result.details["error"] == "ValueError: out of range"
    assert not check_invariance(Fragile(), X, "overdue", 1_000.0).passed


# -- assert_checks ----------------------------------------------------------------------------


def test_assert_checks_raises_once_with_every_failure() -> None:
    ok = CheckResult("a", True, {})
    bad1 = CheckResult("b", False, {"x": 1}, "too slow")
    bad2 = CheckResult("c", False)
    assert_checks(ok, [ok, ok])  # nothing failed
    with pytest.raises(ModelChecksFailed) as info:
        assert_checks(ok, [bad1, bad2])
    error = info.value
    assert isinstance(error, AssertionError) and isinstance(error, LoopmlError)
    assert error.results == [bad1, bad2]
    assert str(error) == "2 of 3 model checks failed:\n  - b: FAILED: too slow\n  - c: FAILED"


def test_a_ci_suite_end_to_end() -> None:
    X, y = make_classification(seed=5)
    model = ignoring_user_id().fit(X[:1_500], y[:1_500])
    holdout, y_holdout = X[1_500:], y[1_500:]
    assert_checks(
        check_trains_on_sample(ignoring_user_id, X, y),
        check_beats_baseline(model, holdout, y_holdout, margin=0.02),
        check_invariance(model, holdout, "user_id", lambda v: v.sample(frac=1, random_state=0)),
        check_directional(model, holdout, "overdue", 1.0, method="predict_proba"),
        check_directional(model, holdout, "tenure", 1.0, "decrease", method="predict_proba"),
    )


# -- one CheckResult, one metric table, shared with the promotion gate ------------------------------


def test_the_gate_and_the_model_checks_share_their_result_and_their_scores() -> None:
    import loopml.registry
    from loopml.registry.gates import check_beats_champion
    from loopml.registry.scoring import score

    assert CheckResult is loopml.registry.CheckResult
    X, y = make_regression()
    model = LinearRegression().fit(X, y)
    ci = check_beats_baseline(model, X, y, metric="rmse", task="regression")
    assert ci.passed and ci.details["greater_is_better"] is False
    assert ci.details["model_score"] == pytest.approx(score("rmse", y, model.predict(X)))
    # the gate, given the same two scores, agrees which model is better
    gate = check_beats_champion("rmse", ci.details["model_score"], ci.details["baseline_score"])
    assert gate.passed and gate.details["delta"] < 0  # a loss went down
    assert ci.details["improvement"] == pytest.approx(-gate.details["delta"])
    stored = json.loads(json.dumps(ci.to_dict()))  # a CI result serialises like a verdict's
    assert CheckResult.from_dict(stored) == ci and stored["summary"] == ci.summary
