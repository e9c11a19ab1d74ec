"""Synthetic traffic for the monitoring tests: a small scikit-learn classifier registered as
``churn/1`` (from a run that logged its offline accuracy) with a reference profile, a
deployment ``churn`` serving it, and prediction and feedback rows written at chosen times
through the real :class:`~loopml.serving.log.PredictionLogger`."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from loopml.serving.log import PredictionLogger, to_json
from loopml.workspace import Workspace

START = datetime(2026, 11, 30, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
OFFLINE_ACCURACY = 0.95


def features(
    rows: int, *, seed: int = 0, shift: float = 0.0, categories: Any = None
) -> pd.DataFrame:
    """``x`` ~ N(shift, 1), ``z`` ~ N(5, 2), ``c`` in a/b/c (or ``categories``)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, rows),
            "z": rng.normal(5.0, 2.0, rows),
            "c": rng.choice(list(categories or ("a", "b", "c")), rows),
        }
    )


@functools.lru_cache(maxsize=1)
def classifier() -> Any:
    """A fitted pipeline (one-hot ``c``, logistic regression) and its training frame."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    train = features(2000, seed=1)
    target = ((train["x"] + (train["c"] == "a")) > 0.5).astype(int)
    encode = ColumnTransformer(
        [("c", OneHotEncoder(handle_unknown="ignore"), ["c"])], remainder="passthrough"
    )
    model = make_pipeline(encode, LogisticRegression()).fit(train, target)
    return model, train


def deploy(ws: Workspace, *, reference: bool = True, versions: int = 1) -> Any:
    """Register ``churn/1``… (the run logs ``accuracy``), store churn/1's reference (unless
    ``reference=False``) and deploy ``churn`` serving churn/1; the fitted model."""
    model, train = classifier()
    for _ in range(versions):
        with ws.runs.start(experiment="churn"):
            ws.log_metric("accuracy", OFFLINE_ACCURACY)
            ws.models.register("churn", model, input_example=train.head(5))
    if reference:
        ws.monitors.set_reference("churn/1", train, predictions=model.predict(train))
    ws.deployments.create("churn", "churn/1")
    return model


def log(
    ws: Workspace,
    frame: pd.DataFrame,
    *,
    start: datetime = START,
    prefix: str = "r",
    model: str = "churn/1",
    shadow: bool = False,
    errors: int = 0,
    drop: Iterable[str] = (),
    nulls: Iterable[str] = (),
    spacing: timedelta = timedelta(seconds=1),
) -> list[str]:
    """Log one request per row of ``frame`` from ``start``, ``spacing`` apart, answered by
    the classifier (the first ``errors`` fail); ``drop`` leaves fields out of the logged
    inputs, ``nulls`` logs them as null. The request ids."""
    fitted, _ = classifier()
    try:
        predicted = fitted.predict(frame)
    except ValueError:  # inputs the model can't take (mistyped): answered 0
        predicted = np.zeros(len(frame), dtype=int)
    logger = PredictionLogger(ws.blobs)
    ids = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        request_id = f"{prefix}{i}"
        ids.append(request_id)
        inputs = {k: (None if k in nulls else v) for k, v in row.items() if k not in drop}
        failed = i < errors
        logger.log(
            {
                "request_id": request_id,
                "time": start + spacing * i,
                "deployment": "churn",
                "revision": 1,
                "model": model,
                "variant": "shadow" if shadow else "primary",
                "shadow": shadow,
                "inputs": to_json([inputs]),
                "outputs": None if failed else to_json([int(predicted[i])]),
                "latency_ms": float(1 + i % 100),
                "error": "ValueError: boom" if failed else None,
            }
        )
    logger.close()
    return ids


def label(ws: Workspace, labels: Mapping[str, Any], *, at: datetime) -> None:
    """Log feedback: request id → label, all at ``at``."""
    logger = PredictionLogger(ws.blobs)
    for request_id, value in labels.items():
        logger.feedback(
            {
                "request_id": request_id,
                "time": at,
                "deployment": "churn",
                "label": to_json(value),
                "reward": None,
            }
        )
    logger.close()


def predictions(frame: pd.DataFrame) -> np.ndarray:
    fitted, _ = classifier()
    return np.asarray(fitted.predict(frame))
