"""Delayed-label performance: the metrics against scikit-learn's, labels joined to logged
predictions (twice: the newest counts once; unknown request ids counted apart; several rows
per request), the offline comparison, the CBPE estimate, regressors."""

from __future__ import annotations

import doctest
import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from loopml.monitoring import performance
from loopml.monitoring.performance import (
    classifier_metrics,
    estimated_accuracy,
    regressor_metrics,
    task_of,
)
from loopml.monitoring.windows import run
from loopml.serving.log import PredictionLogger, to_json
from loopml.workspace import Workspace
from monitoring.traffic import HOUR, START, deploy, features, label, log, predictions

AFTER = START + HOUR + timedelta(minutes=1)


def test_doctests() -> None:
    result = doctest.testmod(performance)
    assert result.attempted > 3 and result.failed == 0


def test_binary_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 200)
    proba1 = np.clip(truth * 0.6 + rng.uniform(0, 0.4, 200), 0, 1)
    proba = np.column_stack([1 - proba1, proba1])
    guess = (proba1 > 0.5).astype(int)
    got = classifier_metrics(truth.tolist(), guess.tolist(), proba, classes=[0, 1])
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(truth, guess))
    assert got["precision"] == pytest.approx(skm.precision_score(truth, guess))
    assert got["recall"] == pytest.approx(skm.recall_score(truth, guess))
    assert got["f1"] == pytest.approx(skm.f1_score(truth, guess))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, proba1))
    assert got["log_loss"] == pytest.approx(skm.log_loss(truth, proba))


def test_multiclass_text_labels_use_macro_averages_and_undefined_is_nan() -> None:
    truth = ["cat", "dog", "bird", "dog", "cat"]
    guess = ["cat", "dog", "dog", "dog", "bird"]
    got = classifier_metrics(truth, guess)
    assert got["f1"] == pytest.approx(skm.f1_score(truth, guess, average="macro"))
    assert math.isnan(got["roc_auc"]) and math.isnan(got["log_loss"])  # no probabilities
    # "yes" is the positive class of a yes/no classifier (the last in sorted order).
    yes = classifier_metrics(["yes", "no", "yes"], ["yes", "yes", "yes"])
    assert yes["recall"] == 1.0 and yes["precision"] == pytest.approx(2 / 3)
    # One class labelled: ROC AUC is undefined, not an error.
    one = classifier_metrics([1, 1], [1, 0], np.array([[0.2, 0.8], [0.6, 0.4]]), [0, 1])
    assert math.isnan(one["roc_auc"]) and not math.isnan(one["log_loss"])


def test_regressor_metrics_and_the_estimate() -> None:
    truth, guess = [1.0, 2.0, 4.0, 8.0], [1.5, 2.0, 3.0, 9.0]
    got = regressor_metrics(truth, guess)
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(truth, guess)))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(truth, guess))
    assert got["r2"] == pytest.approx(skm.r2_score(truth, guess))
    assert math.isnan(regressor_metrics([1.0], [2.0])["r2"])
    assert estimated_accuracy(np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])) == pytest.approx(0.7)
    assert math.isnan(estimated_accuracy(np.empty((0, 2))))


@pytest.mark.slow
def test_labels_twice_count_once_with_the_newest_and_unknown_ids_apart(
    sqlite_ws: Workspace,
) -> None:
    ws = sqlite_ws
    deploy(ws)
    frame = features(40, seed=20)
    ids = log(ws, frame, start=START)
    truth = predictions(frame)
    # First every label wrong, then the first 30 corrected: the newest wins.
    label(
        ws, {rid: 1 - int(truth[i]) for i, rid in enumerate(ids)}, at=START + timedelta(minutes=5)
    )
    label(
        ws, {rid: int(truth[i]) for i, rid in enumerate(ids[:30])}, at=START + timedelta(minutes=9)
    )
    label(ws, {"nobody-1": 1, "nobody-2": 0}, at=START + timedelta(minutes=10))
    [window] = run("churn", window="1h", now=AFTER, workspace=ws)
    assert window.value("labels") == 40
    assert window.value("accuracy") == pytest.approx(30 / 40)
    assert window.value("labels_unknown") == 2
    assert window.value("accuracy_drop") == pytest.approx(0.95 - 30 / 40)
    assert window.value("log_loss") >= 0 and 0 <= window.value("roc_auc") <= 1
    assert 0.5 <= window.value("estimated_accuracy") <= 1


@pytest.mark.slow
def test_a_request_of_several_rows_takes_a_list_of_labels(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    deploy(ws)
    frame = features(3, seed=21)
    truth = [int(v) for v in predictions(frame)]
    logger = PredictionLogger(ws.blobs)
    logger.log(
        {
            "request_id": "batch-1",
            "time": START + timedelta(minutes=1),
            "deployment": "churn",
            "revision": 1,
            "model": "churn/1",
            "variant": "primary",
            "shadow": False,
            "inputs": to_json(frame.to_dict(orient="records")),
            "outputs": to_json(truth),
            "latency_ms": 3.0,
            "error": None,
        }
    )
    logger.close()
    label(ws, {"batch-1": [truth[0], truth[1], 1 - truth[2]]}, at=START + timedelta(minutes=2))
    [window] = run("churn", window="1h", now=AFTER, workspace=ws)
    assert window.rows == 3 and window.value("requests") == 1
    assert window.value("labels") == 3
    assert window.value("accuracy") == pytest.approx(2 / 3)


@pytest.mark.slow
def test_a_regressor_gets_rmse_mae_and_r2(sqlite_ws: Workspace) -> None:
    from sklearn.linear_model import LinearRegression

    ws = sqlite_ws
    train = pd.DataFrame({"x": np.arange(100.0), "z": np.arange(100.0) % 7})
    model = LinearRegression().fit(train, 2 * train["x"] + 1)
    version = ws.models.register("price", model, input_example=train.head(3))
    assert task_of(model, version) == "regressor"
    ws.monitors.set_reference("price/1", train)
    ws.deployments.create("price", "price/1")
    logger = PredictionLogger(ws.blobs)
    current = train.sample(30, random_state=1)
    for i, row in enumerate(current.to_dict(orient="records")):
        logger.log(
            {
                "request_id": f"p{i}",
                "time": START + timedelta(seconds=i),
                "deployment": "price",
                "revision": 1,
                "model": "price/1",
                "variant": "primary",
                "shadow": False,
                "inputs": to_json([row]),
                "outputs": to_json(model.predict(pd.DataFrame([row])).tolist()),
                "latency_ms": 1.0,
                "error": None,
            }
        )
        logger.feedback(
            {
                "request_id": f"p{i}",
                "time": START + timedelta(minutes=5),
                "deployment": "price",
                "label": to_json(2 * row["x"] + 1 + (3.0 if i % 2 else -3.0)),
                "reward": None,
            }
        )
    logger.close()
    [window] = run("price", window="1h", now=AFTER, workspace=ws)
    assert window.value("labels") == 30
    assert window.value("rmse") == pytest.approx(3.0)
    assert window.value("mae") == pytest.approx(3.0)
    assert 0.9 < window.value("r2") < 1.0
    assert window.value("accuracy") is None and window.value("estimated_accuracy") is None


def test_classifier_or_regressor() -> None:
    from loopml.registry.signature import Signature
    from loopml.registry.versions import ModelVersion

    def version(outputs: tuple[tuple[str, str], ...] | None) -> ModelVersion:
        signature = None if outputs is None else Signature((("x", "float64"),), outputs)
        return ModelVersion("m", 1, "None", "pyfunc", "d", None, START, signature)

    class Proba:
        def predict_proba(self, rows: object) -> object:
            return rows

    assert task_of(Proba(), version((("prediction", "float64"),))) == "classifier"
    assert task_of(None, version((("prediction", "float64"),))) == "regressor"
    assert task_of(None, version((("prediction", "int64"),))) == "classifier"
    # No signature: the labels decide.
    assert task_of(None, version(None), ["yes", "no"]) == "classifier"
    assert task_of(None, version(None), [1.0, 2.0]) == "classifier"
    assert task_of(None, version(None), [1.5, 2.0]) == "regressor"
