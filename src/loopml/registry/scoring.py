"""Metrics for comparing models: one table shared by the promotion gate and the model checks
of ``loopml.validation`` (pure NumPy where it can be; scikit-learn for the rest)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from loopml.exceptions import InvalidInput

Task = Literal["classification", "regression"]
MetricFn = Callable[[np.ndarray, np.ndarray], float]


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred))


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    recalls = [np.mean(y_pred[y_true == label] == label) for label in np.unique(y_true)]
    return float(np.mean(recalls))


def _mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(y_true - y_pred)))


def _mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean((y_true - y_pred) ** 2))


def _rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return math.sqrt(_mse(y_true, y_pred))


def _r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    residual = float(np.sum((y_true - y_pred) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


def _sklearn(name: str) -> MetricFn:
    def metric(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        from sklearn import metrics as m

        if name == "roc_auc":
            return float(m.roc_auc_score(y_true, y_pred))
        if name == "log_loss":
            return float(m.log_loss(y_true, y_pred))
        fn = {"f1": m.f1_score, "precision": m.precision_score, "recall": m.recall_score}[name]
        average = "binary" if len(np.unique(y_true)) <= 2 else "macro"
        return float(fn(y_true, y_pred, average=average, zero_division=0))

    metric.__name__ = name
    return metric


# name -> (function, greater is better, task)
METRICS: dict[str, tuple[MetricFn, bool, Task]] = {
    "accuracy": (_accuracy, True, "classification"),
    "balanced_accuracy": (_balanced_accuracy, True, "classification"),
    "f1": (_sklearn("f1"), True, "classification"),
    "precision": (_sklearn("precision"), True, "classification"),
    "recall": (_sklearn("recall"), True, "classification"),
    "roc_auc": (_sklearn("roc_auc"), True, "classification"),
    "log_loss": (_sklearn("log_loss"), False, "classification"),
    "mae": (_mae, False, "regression"),
    "mse": (_mse, False, "regression"),
    "rmse": (_rmse, False, "regression"),
    "r2": (_r2, True, "regression"),
}


def metric(name: str) -> tuple[MetricFn, bool, Task]:
    """``(function, greater_is_better, task)`` of a named metric."""
    try:
        return METRICS[name]
    except KeyError:
        raise InvalidInput(
            f"Unknown metric {name!r}; use one of {', '.join(sorted(METRICS))}"
        ) from None


def score(name: str, y_true: Any, y_pred: Any) -> float:
    fn, _, _ = metric(name)
    return fn(np.asarray(y_true), np.asarray(y_pred))


def better(name: str, a: float, b: float, margin: float = 0.0) -> bool:
    """Is score ``a`` better than ``b`` by at least ``margin`` (in the metric's units, up to
    float rounding)? A NaN score is never better than anything.

    >>> better("accuracy", 0.82, 0.80, margin=0.01), better("rmse", 0.82, 0.80)
    (True, False)
    """
    _, higher, _ = metric(name)
    return within(margin, improvement(a, b, higher=higher))


def within(value: float, limit: float) -> bool:
    """``value <= limit``, forgiving float rounding: a score 0.05 better than another passes
    a 0.05 margin even when the subtraction gives 0.049999999999999996. NaN is never within.

    >>> 0.9 - 0.7 <= 0.2, within(0.9 - 0.7, 0.2), within(float("nan"), 1.0)
    (False, True, False)
    """
    return value <= limit or math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)


def improvement(a: float, b: float, *, higher: bool) -> float:
    """How much better score ``a`` is than ``b``, in the metric's units: positive when ``a``
    is better, whichever way the metric points.

    >>> improvement(0.9, 0.8, higher=False) < 0 < improvement(0.9, 0.8, higher=True)
    True
    """
    return a - b if higher else b - a
