"""Model checks for CI: does it train, does it beat a trivial baseline, does it behave?

Each check returns a :class:`CheckResult` instead of raising, so a CI script can run them all,
log their details, and then fail once with every problem listed::

    from loopml.validation import (
        assert_checks, check_beats_baseline, check_directional, check_invariance,
        check_trains_on_sample,
    )

    assert_checks(
        check_trains_on_sample(lambda: RandomForestClassifier(n_estimators=10), X, y),
        check_beats_baseline(model, X_test, y_test, metric="accuracy", margin=0.05),
        # the customer's id must not change the prediction
        check_invariance(model, X_test, "customer_id", lambda v: v.sample(frac=1).to_numpy()),
        # more days overdue must not lower the predicted churn probability
        check_directional(model, X_test, "days_overdue", 10, method="predict_proba"),
    )

Models are anything with scikit-learn's ``fit`` / ``predict`` (/ ``predict_proba``)
interface; ``X`` is a pandas DataFrame or a 2-D numpy array (then ``column`` is a position).
A model that raises inside a check fails that check, with the error in ``details["error"]``;
a malformed argument (an unknown metric, a missing column) raises :class:`InvalidInput`.
Every ``details`` value is plain JSON data, ready for ``loopml.log_dict``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopml.checks import CheckResult
from loopml.exceptions import InvalidInput
from loopml.registry.scoring import METRICS, improvement
from loopml.validation.exceptions import ModelChecksFailed
from loopml.validation.report import plain

Task = Literal["classification", "regression"]
Method = str | Callable[[Any, Any], Any]


def assert_checks(*results: CheckResult | Iterable[CheckResult]) -> None:
    """Raise :class:`ModelChecksFailed` listing every failed result; do nothing if all passed."""
    flat: list[CheckResult] = []
    for item in results:
        if isinstance(item, CheckResult):
            flat.append(item)
        else:
            flat.extend(item)
    failed = [r for r in flat if not r.passed]
    if failed:
        lines = "\n".join(f"  - {r}" for r in failed)
        raise ModelChecksFailed(
            f"{len(failed)} of {len(flat)} model checks failed:\n{lines}", failed
        )


# ----------------------------------------------------------------------------------------------
# Trains on a sample
# ----------------------------------------------------------------------------------------------


def check_trains_on_sample(
    make_model: Callable[[], Any] | Any,
    X: Any,
    y: Any,
    n: int = 200,
    *,
    random_state: int = 0,
    name: str = "trains_on_sample",
) -> CheckResult:
    """Fit a fresh model on ``n`` random rows and predict them back: a smoke test of training.

    ``make_model`` builds an unfitted model; an unfitted estimator is accepted too and cloned.
    Passes when ``fit`` and ``predict`` both succeed and give one finite prediction per row.
    """
    if n < 1:
        raise InvalidInput(f"n must be >= 1, not {n}")
    _check_lengths(X, y)
    rows = np.random.default_rng(random_state).choice(
        _n_rows(X), size=min(n, _n_rows(X)), replace=False
    )
    rows.sort()
    X_sample, y_sample = _take(X, rows), _take(y, rows)
    details: dict[str, Any] = {"n_rows": len(rows)}
    try:
        model = _fresh(make_model)
        started = time.perf_counter()
        model.fit(X_sample, y_sample)
        details["fit_seconds"] = round(time.perf_counter() - started, 6)
        predictions = np.asarray(model.predict(X_sample))
    except Exception as exc:
        details["error"] = f"{type(exc).__name__}: {exc}"
        return CheckResult(name, False, details, f"training failed: {details['error']}")
    problem = None
    if len(predictions) != len(rows):
        problem = f"predict returned {len(predictions)} values for {len(rows)} rows"
    elif predictions.dtype.kind in "fc" and not np.all(np.isfinite(predictions)):
        problem = "predict returned non-finite values"
    if problem:
        details["error"] = problem
        return CheckResult(name, False, details, problem)
    return CheckResult(
        name,
        True,
        details,
        f"fit and predict on {len(rows)} rows in {details['fit_seconds']:.3f} s",
    )


# ----------------------------------------------------------------------------------------------
# Beats a trivial baseline
# ----------------------------------------------------------------------------------------------


# The metric table is the promotion gate's, so a CI check and the gate agree on numbers.
DEFAULT_METRIC: dict[str, str] = {"classification": "accuracy", "regression": "rmse"}


def check_beats_baseline(
    model: Any,
    X_holdout: Any,
    y_holdout: Any,
    metric: str | Callable[[Any, Any], float] | None = None,
    task: Task = "classification",
    margin: float = 0.0,
    *,
    greater_is_better: bool | None = None,
    y_train: Any = None,
    name: str = "beats_baseline",
) -> CheckResult:
    """Whether a fitted model scores better than a trivial baseline on a holdout set.

    The baseline predicts the majority class (classification) or the mean (regression) of
    ``y_train`` when given, else of ``y_holdout`` (a baseline that has seen the holdout's
    labels, so slightly harder to beat). It is scikit-learn's ``DummyClassifier`` /
    ``DummyRegressor`` when scikit-learn is importable, and computed directly otherwise.

    ``metric``: ``accuracy`` (default for classification), ``balanced_accuracy``, ``rmse``
    (default for regression), ``mae``, ``mse``, ``r2``, or a callable
    ``metric(y_true, y_pred) -> float`` (say ``greater_is_better=False`` for a loss). Passes
    when the model is better than the baseline by more than ``margin``, in metric units.
    """
    if task not in DEFAULT_METRIC:
        raise InvalidInput(f"task must be 'classification' or 'regression', not {task!r}")
    metric = DEFAULT_METRIC[task] if metric is None else metric
    if callable(metric):
        score, higher = metric, True if greater_is_better is None else greater_is_better
        metric_name = getattr(metric, "__name__", "metric")
    elif metric in METRICS:
        score, higher, metric_task = METRICS[metric]
        if metric_task != task:
            raise InvalidInput(f"metric {metric!r} is a {metric_task} metric, and task is {task!r}")
        metric_name = metric
    else:
        raise InvalidInput(
            f"unknown metric {metric!r}: use one of {', '.join(METRICS)} or a callable "
            f"metric(y_true, y_pred)"
        )
    _check_lengths(X_holdout, y_holdout)
    y_true = np.asarray(y_holdout)
    y_fit = y_true if y_train is None else np.asarray(y_train)
    details: dict[str, Any] = {"metric": metric_name, "task": task, "margin": margin}
    try:
        y_pred = np.asarray(model.predict(X_holdout))
        model_score = float(score(y_true, y_pred))
    except Exception as exc:
        details["error"] = f"{type(exc).__name__}: {exc}"
        return CheckResult(
            name, False, details, f"the model could not be scored: {details['error']}"
        )
    baseline_pred, source = _baseline_predictions(task, y_fit, len(y_true))
    baseline_score = float(score(y_true, baseline_pred))
    gain = improvement(model_score, baseline_score, higher=higher)
    passed = gain > margin
    details.update(
        model_score=model_score,
        baseline_score=baseline_score,
        improvement=gain,
        greater_is_better=higher,
        baseline=source,
        n_rows=len(y_true),
    )
    verdict = "beats" if passed else "does not beat"
    summary = (
        f"{metric_name} {model_score:.4g} {verdict} the baseline's {baseline_score:.4g} "
        f"by more than {margin:g} (improvement {gain:.4g})"
    )
    return CheckResult(name, passed, details, summary)


def _baseline_predictions(task: str, y_fit: np.ndarray, n: int) -> tuple[np.ndarray, str]:
    try:
        from sklearn.dummy import DummyClassifier, DummyRegressor
    except ImportError:
        if task == "classification":
            labels, counts = np.unique(y_fit, return_counts=True)
            return np.full(n, labels[np.argmax(counts)]), "majority class (computed directly)"
        return np.full(n, float(np.mean(y_fit))), "mean (computed directly)"
    placeholder_fit, placeholder = np.zeros((len(y_fit), 1)), np.zeros((n, 1))
    if task == "classification":
        dummy: Any = DummyClassifier(strategy="most_frequent")
        source = "sklearn.dummy.DummyClassifier(strategy='most_frequent')"
    else:
        dummy = DummyRegressor(strategy="mean")
        source = "sklearn.dummy.DummyRegressor(strategy='mean')"
    dummy.fit(placeholder_fit, y_fit)
    return np.asarray(dummy.predict(placeholder)), source


# ----------------------------------------------------------------------------------------------
# Behavioural checks: invariance and directional expectation
# ----------------------------------------------------------------------------------------------


def check_invariance(
    model: Any,
    X: Any,
    column: str | int,
    perturb: Callable[[Any], Any] | Any,
    tolerance: float = 0.0,
    *,
    method: Method = "predict",
    max_violation_rate: float = 0.0,
    name: str | None = None,
) -> CheckResult:
    """Whether changing ``column`` leaves the model's output alone.

    ``perturb(values) -> new values`` rewrites the column (a non-callable value replaces it
    wholesale). A row violates the check when its output moves by more than ``tolerance``
    (the largest change across ``predict_proba`` columns); outputs that aren't numbers (class
    labels) violate on any change. Passes when at most ``max_violation_rate`` of the rows
    violate. ``method`` is ``"predict"``, ``"predict_proba"``, ``"decision_function"`` or a
    callable ``method(model, X)``.
    """
    name = name or f"invariance[{column}]"
    X_changed = _with_column(X, column, perturb if callable(perturb) else lambda _: perturb)
    details: dict[str, Any] = {"column": plain(column), "tolerance": tolerance}
    try:
        before = np.asarray(_outputs(model, X, method))
        after = np.asarray(_outputs(model, X_changed, method))
    except InvalidInput:
        raise
    except Exception as exc:
        details["error"] = f"{type(exc).__name__}: {exc}"
        return CheckResult(name, False, details, f"the model could not predict: {details['error']}")
    if before.dtype.kind in "biufc" and after.dtype.kind in "biufc":
        change = np.abs(after.astype(float) - before.astype(float))
        if change.ndim > 1:
            change = change.reshape(len(change), -1).max(axis=1)
        violations = change > tolerance
        details["max_abs_change"] = float(change.max()) if len(change) else 0.0
    else:
        violations = before != after
        if violations.ndim > 1:
            violations = violations.reshape(len(violations), -1).any(axis=1)
    return _behaviour_result(
        name, X, violations, before, after, max_violation_rate, details, "changed output"
    )


def check_directional(
    model: Any,
    X: Any,
    column: str | int,
    delta: float | Callable[[Any], Any],
    direction: Literal["increase", "decrease"] = "increase",
    *,
    method: Method = "predict",
    class_index: int = -1,
    tolerance: float = 0.0,
    max_violation_rate: float = 0.0,
    name: str | None = None,
) -> CheckResult:
    """Whether raising ``column`` by ``delta`` moves the output in the expected ``direction``.

    ``delta`` is added to the column (or is a callable ``delta(values) -> new values``). A
    row violates the check when its output moves against ``direction`` by more than
    ``tolerance``; an unchanged output is fine (a tree may not split on the column at every
    value). Passes when at most ``max_violation_rate`` of the rows violate;
    ``details["mean_change"]`` says how far outputs moved on average. With
    ``method="predict_proba"`` the output is the probability of class ``class_index``
    (default: the last class, the positive one of a binary classifier).
    """
    if direction not in ("increase", "decrease"):
        raise InvalidInput(f"direction must be 'increase' or 'decrease', not {direction!r}")
    name = name or f"directional[{column}]"
    shift = delta if callable(delta) else lambda values: values + delta
    X_changed = _with_column(X, column, shift)
    details: dict[str, Any] = {
        "column": plain(column),
        "direction": direction,
        "delta": plain(delta) if not callable(delta) else getattr(delta, "__name__", "callable"),
        "tolerance": tolerance,
    }
    try:
        before = _scores(_outputs(model, X, method), class_index)
        after = _scores(_outputs(model, X_changed, method), class_index)
    except InvalidInput:
        raise
    except Exception as exc:
        details["error"] = f"{type(exc).__name__}: {exc}"
        return CheckResult(name, False, details, f"the model could not predict: {details['error']}")
    change = after - before
    violations = change < -tolerance if direction == "increase" else change > tolerance
    details["mean_change"] = float(change.mean()) if len(change) else 0.0
    return _behaviour_result(
        name, X, violations, before, after, max_violation_rate, details, f"did not {direction}"
    )


def _behaviour_result(
    name: str,
    X: Any,
    violations: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    max_violation_rate: float,
    details: dict[str, Any],
    what: str,
) -> CheckResult:
    n_rows = len(violations)
    n_violations = int(np.count_nonzero(violations))
    rate = n_violations / n_rows if n_rows else 0.0
    positions = np.flatnonzero(violations)[:5]
    labels = X.index[positions] if isinstance(X, pd.DataFrame) else positions
    details.update(
        n_rows=n_rows,
        n_violations=n_violations,
        violation_rate=rate,
        max_violation_rate=max_violation_rate,
        examples=[
            {"index": plain(label), "before": plain(before[p]), "after": plain(after[p])}
            for label, p in zip(labels, positions, strict=True)
        ],
    )
    passed = rate <= max_violation_rate
    summary = f"{n_violations:,} of {n_rows:,} rows ({rate:.2%}) {what}"
    if not passed:
        summary += f", more than the {max_violation_rate:.2%} allowed"
    return CheckResult(name, passed, details, summary)


# ----------------------------------------------------------------------------------------------
# Plumbing
# ----------------------------------------------------------------------------------------------


def _fresh(make_model: Any) -> Any:
    if hasattr(make_model, "fit") and not isinstance(make_model, type):  # an estimator
        try:
            from sklearn.base import clone
        except ImportError:
            return copy.deepcopy(make_model)
        return clone(make_model)
    return make_model()


def _n_rows(X: Any) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def _check_lengths(X: Any, y: Any) -> None:
    if _n_rows(X) != len(y):
        raise InvalidInput(f"X has {_n_rows(X)} rows and y has {len(y)} values; they must match")


def _take(data: Any, rows: np.ndarray) -> Any:
    if isinstance(data, pd.DataFrame | pd.Series):
        return data.iloc[rows]
    return np.asarray(data)[rows]


def _with_column(X: Any, column: str | int, change: Callable[[Any], Any]) -> Any:
    """A copy of ``X`` with ``column`` replaced by ``change(column values)``."""
    if isinstance(X, pd.DataFrame):
        if column not in X.columns:
            raise InvalidInput(f"X has no column {column!r}; its columns are {list(X.columns)}")
        changed = X.copy()
        changed[column] = change(X[column])
        return changed
    array = np.asarray(X)
    if array.ndim != 2:
        raise InvalidInput(f"X must be a DataFrame or a 2-D array, not {array.ndim}-D")
    if not isinstance(column, int | np.integer) or not -array.shape[1] <= column < array.shape[1]:
        raise InvalidInput(
            f"with an array X, column is a position in 0..{array.shape[1] - 1}, not {column!r}"
        )
    new = np.asarray(change(array[:, column]))
    if array.dtype.kind in "iu" and new.dtype.kind == "f":
        changed_array = array.astype(float)  # a fractional delta on an int array
    else:
        changed_array = array.copy()
    changed_array[:, column] = new
    return changed_array


def _outputs(model: Any, X: Any, method: Method) -> Any:
    if callable(method):
        return method(model, X)
    if not hasattr(model, method):
        raise InvalidInput(f"the model has no {method!r} method")
    return getattr(model, method)(X)


def _scores(outputs: Any, class_index: int) -> np.ndarray:
    values = np.asarray(outputs)
    if values.ndim == 2:
        values = values[:, class_index]
    if values.dtype.kind not in "biuf":
        raise InvalidInput(
            f"a directional check needs numeric outputs, and the model returned {values.dtype}; "
            f"use method='predict_proba' for a classifier"
        )
    return values.astype(float)
