"""Performance once labels land: the feedback log joined to the prediction log by request id,
classifier and regressor metrics per window (by prediction time), the drop from the model
version's offline metric, and a confidence-based estimate while labels lag.

Labels come from the feedback log (``/feedback``, :func:`loopml.serving.read_feedback`):

- a request labelled twice counts once, with its **newest** label (by feedback time);
- labels given up to a week (``LABEL_HORIZON``) after a window are joined to it;
- a label whose request id is in no prediction logged from a week before the run's first
  window to the end of its last is counted as ``labels_unknown`` in the window of its
  feedback time, and used nowhere else;
- a request of several rows takes a list of as many labels (row by row); a one-row request
  takes one label (a list of one is unwrapped).

Which metrics: a model whose loaded object has ``predict_proba`` is a **classifier**, and so
is one whose signature's output isn't a float; the others are **regressors**.

- Classifiers: ``accuracy``, ``precision``, ``recall``, ``f1`` (binary when two classes are
  known, the positive one being the last in sorted order — ``1``, ``True``, ``"yes"`` over
  ``"no"``; macro averages otherwise), and, with ``predict_proba``, ``roc_auc`` and
  ``log_loss``. The probabilities are not logged by the server (it logs what ``predict``
  returned), so the window's rows are **rescored** with the model version loaded from the
  registry; the logged predictions are the ones judged for accuracy.
- Regressors: ``rmse``, ``mae``, ``r2``.
- ``accuracy_drop``: the registering run's ``accuracy`` metric minus the live accuracy
  (positive: worse live than offline), when that run logged one.
- ``estimated_accuracy`` (probabilistic classifiers, whether labels landed or not): the mean
  over the window's rows of the highest predicted probability — CBPE's expected accuracy
  under the assumption that the model is calibrated. It is an **estimate**, named as one;
  the measured metric is ``accuracy``.

A metric that is undefined on the window (ROC AUC with one class labelled, R² of one label)
is stored as NaN (NULL in the store), not left out, so a series shows the gap.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pandas as pd

    from loopml.registry.versions import ModelVersion
    from loopml.workspace import Workspace

Task = Literal["classifier", "regressor"]

CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSOR_METRICS = ("rmse", "mae", "r2")

#: Loaded model versions kept per process (keyed by package digest, which never changes).
MODEL_CACHE = 4
_models: OrderedDict[str, Any] = OrderedDict()
_models_lock = threading.Lock()


@dataclass
class Performance:
    """A window's performance metrics (name → value; NaN where undefined) and notes."""

    metrics: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def load_model(workspace: Workspace, version: ModelVersion) -> Any:
    """The model of ``version``, loaded once per process (a backfill of many windows loads
    it once)."""
    with _models_lock:
        found = _models.get(version.digest)
        if found is not None:
            _models.move_to_end(version.digest)
            return found
    model = workspace.models.load(version.uri)
    with _models_lock:
        _models[version.digest] = model
        while len(_models) > MODEL_CACHE:
            _models.popitem(last=False)
    return model


def task_of(model: Any, version: ModelVersion, labels: Sequence[Any] = ()) -> Task:
    """``"classifier"`` or ``"regressor"`` (see the module doc); without a signature's
    outputs, labels that are all classes (text, booleans, whole numbers) say classifier."""
    if callable(getattr(model, "predict_proba", None)):
        return "classifier"
    outputs = version.signature.outputs if version.signature is not None else ()
    if outputs:
        return "regressor" if all(d.startswith("float") for _, d in outputs) else "classifier"
    fractional = any(isinstance(v, float) and not v.is_integer() for v in labels)
    return "regressor" if fractional or not labels else "classifier"


def newest_labels_sql(feedback: str) -> str:
    """The SELECT of one label per request id (the newest) from the feedback relation
    ``feedback`` (a ``read_parquet(...)`` call), parameters ``$since``/``$until`` bounding
    the feedback time."""
    return (
        f"SELECT request_id, label, time FROM {feedback} "
        "WHERE label IS NOT NULL AND time >= $since AND time < $until "
        "QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY time DESC) = 1"
    )


def unknown_labels(
    con: duckdb.DuckDBPyConnection,
    feedback: str,
    predictions: str | None,
    params: dict[str, Any],
    seconds: int,
) -> dict[int, int]:
    """Request ids labelled in ``[$start, $end)`` (their newest label) that match no
    prediction of ``predictions``, counted by the window of ``seconds`` their label's time
    falls in: window start (epoch seconds) → count. One pass for a whole backfill."""
    labels = newest_labels_sql(feedback).replace("$since", "$start").replace("$until", "$end")
    known = (
        f"SELECT request_id FROM {predictions} WHERE request_id IS NOT NULL"
        if predictions is not None
        else "SELECT NULL::VARCHAR AS request_id WHERE false"
    )
    query = (
        f"SELECT epoch(l.time)::BIGINT // {seconds} * {seconds} AS start, count(*) "
        f"FROM ({labels}) l ANTI JOIN ({known}) k ON k.request_id = l.request_id GROUP BY 1"
    )
    found = con.execute(query, {"start": params["start"], "end": params["end"]}).fetchall()
    return {int(start): int(count) for start, count in found}


def labelled(
    con: duckdb.DuckDBPyConnection, feedback: str | None, params: dict[str, Any]
) -> pd.DataFrame:
    """The rows of the temporary table ``monitored`` (``row``, ``request_id``, ``i``, ``n``,
    ``out``) that have a label given in ``[$start, $until)``: columns ``row``,
    ``prediction`` (JSON), ``label`` (JSON)."""
    import pandas as pd

    if feedback is None:
        return pd.DataFrame({"row": [], "prediction": [], "label": []})
    query = f"""
        WITH labels AS ({newest_labels_sql(feedback)})
        SELECT m.row AS row, m.out AS prediction,
               CASE
                 WHEN json_type(l.label::JSON) = 'ARRAY' AND json_array_length(l.label::JSON) = m.n
                   THEN json_extract(l.label::JSON, '$[' || m.i || ']')
                 WHEN m.n = 1 THEN l.label::JSON
               END AS label
        FROM monitored m JOIN labels l ON l.request_id = m.request_id
        ORDER BY m.row
    """
    frame = con.execute(query, {"since": params["start"], "until": params["until"]}).df()
    return frame[frame["label"].notna()].reset_index(drop=True)


def _values(texts: Sequence[Any]) -> list[Any]:
    """Logged JSON values as Python, parsed in one go (a list of one is unwrapped)."""
    if not len(texts):
        return []
    values = json.loads("[" + ",".join(t if isinstance(t, str) else "null" for t in texts) + "]")
    return [v[0] if isinstance(v, list) and len(v) == 1 else v for v in values]


def _comparable(values: Sequence[Any]) -> list[Any]:
    """Class values compared as the model gives them: ``1`` and ``1.0`` are one class."""
    out = []
    for v in values:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out.append(v)
    return out


def classifier_metrics(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    proba: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (and ROC AUC and log loss with ``proba``, whose
    columns follow ``classes``) of the labelled rows.

    >>> m = classifier_metrics([1, 0, 1, 1], [1, 0, 0, 1])
    >>> round(m["accuracy"], 2), round(m["recall"], 3), round(m["precision"], 2)
    (0.75, 0.667, 1.0)
    """
    import numpy as np
    from sklearn import metrics as skm

    truth, guess = _comparable(y_true), _comparable(y_pred)
    known = list(classes) if classes is not None else []
    found = _sorted_classes([*known, *truth, *guess])
    out: dict[str, float] = {"accuracy": float(skm.accuracy_score(truth, guess))}
    if len(found) == 2:
        average: dict[str, Any] = {"average": "binary", "pos_label": found[-1]}
    else:
        average = {"average": "macro", "labels": found}
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        out[name] = float(fn(truth, guess, zero_division=0, **average))
    out["roc_auc"] = out["log_loss"] = math.nan
    if proba is not None and classes is not None and len(truth):
        labels = _comparable(list(classes))
        index = {c: i for i, c in enumerate(labels)}
        if all(t in index for t in truth):
            p = np.clip(np.asarray(proba, dtype=float), 1e-15, 1.0)
            out["log_loss"] = float(skm.log_loss(truth, p, labels=labels))
            if len(set(truth)) > 1:
                if len(labels) == 2:
                    positive = np.asarray([t == labels[1] for t in truth])
                    out["roc_auc"] = float(skm.roc_auc_score(positive, p[:, 1]))
                elif len(set(truth)) == len(labels):
                    out["roc_auc"] = float(
                        skm.roc_auc_score(
                            truth,
                            p / p.sum(axis=1, keepdims=True),
                            multi_class="ovr",
                            labels=labels,
                        )
                    )
    return out


def _sorted_classes(values: Sequence[Any]) -> list[Any]:
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique)
    except TypeError:  # mixed types: their text decides
        return sorted(unique, key=str)


def regressor_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """RMSE, MAE and R² of the labelled rows (R² is NaN for fewer than two labels).

    >>> m = regressor_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    >>> round(m["rmse"], 4), round(m["mae"], 4), round(m["r2"], 2)
    (0.5774, 0.3333, 0.5)
    """
    import numpy as np
    from sklearn import metrics as skm

    truth = np.asarray(y_true, dtype=float)
    guess = np.asarray(y_pred, dtype=float)
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(truth, guess))),
        "mae": float(skm.mean_absolute_error(truth, guess)),
        "r2": float(skm.r2_score(truth, guess)) if truth.size > 1 else math.nan,
    }


def estimated_accuracy(proba: np.ndarray) -> float:
    """CBPE's expected accuracy: the mean of each row's highest predicted probability.

    >>> import numpy as np
    >>> estimated_accuracy(np.array([[0.9, 0.1], [0.4, 0.6]]))
    0.75
    """
    import numpy as np

    if proba.size == 0:
        return math.nan
    return float(np.mean(np.max(proba, axis=1)))


def offline_metric(workspace: Workspace, version: ModelVersion, name: str) -> float | None:
    """The registering run's metric ``name`` (its latest value); None without one."""
    from loopml.exceptions import NotFound

    if version.run_id is None:
        return None
    try:
        record = workspace.runs.get(version.run_id)
    except NotFound:
        return None
    value = record.metrics.get(name)
    return None if value is None else float(value)


def window_performance(
    workspace: Workspace,
    version: ModelVersion,
    labelled_rows: pd.DataFrame,
    inputs: pd.DataFrame | None,
) -> Performance:
    """The metrics of one window of ``version``'s rows: ``labelled_rows`` from
    :func:`labelled`; ``inputs`` the window's valid rows in the signature's columns, indexed
    by ``row`` (None when they can't be built: no signature, or no valid row)."""
    result = Performance()
    result.metrics["labels"] = float(len(labelled_rows))
    model = None
    if (inputs is not None and len(inputs)) or len(labelled_rows):
        try:
            model = load_model(workspace, version)
        except Exception as exc:  # its other metrics don't need it
            result.warnings.append(
                f"{version.name}/{version.version} could not be loaded ({type(exc).__name__}: "
                f"{exc}): no probabilities, so no roc_auc, log_loss or estimated_accuracy"
            )
    y_true = _values(list(labelled_rows["label"]))
    y_pred = _values(list(labelled_rows["prediction"]))
    task = task_of(model, version, y_true)
    proba, classes = None, None
    probabilistic = callable(getattr(model, "predict_proba", None))
    if task == "classifier" and probabilistic and inputs is not None and len(inputs):
        try:
            proba = _proba(model, inputs)
        except Exception as exc:  # a model that can't rescore keeps its other metrics
            result.warnings.append(
                f"{version.name}/{version.version}: predict_proba failed on the window's "
                f"rows ({type(exc).__name__}: {exc}): no roc_auc, log_loss or estimate"
            )
        else:
            classes = list(getattr(model, "classes_", range(proba.shape[1])))
            result.metrics["estimated_accuracy"] = estimated_accuracy(proba)
    if not len(labelled_rows):
        return result
    if task == "regressor":
        pairs = [
            (float(t), float(p))
            for t, p in zip(y_true, y_pred, strict=True)
            if _number(t) and _number(p)
        ]
        if pairs:
            truth, guess = zip(*pairs, strict=True)
            result.metrics.update(regressor_metrics(truth, guess))
        return result
    try:
        result.metrics.update(classifier_metrics(y_true, y_pred))
    except (TypeError, ValueError) as exc:  # labels that aren't classes (lists, objects)
        result.warnings.append(
            f"the labels of {version.name}/{version.version} could not be scored against its "
            f"predictions ({type(exc).__name__}: {exc})"
        )
        return result
    if proba is not None and inputs is not None:
        # ROC AUC and log loss over the labelled rows that were rescored (the valid ones).
        import numpy as np

        index = inputs.index.to_numpy()
        wanted = labelled_rows["row"].to_numpy()
        at = np.minimum(np.searchsorted(index, wanted), max(len(index) - 1, 0))
        found = index[at] == wanted
        if found.any():
            kept = np.flatnonzero(found)
            scored = classifier_metrics(
                [y_true[i] for i in kept], [y_pred[i] for i in kept], proba[at[found]], classes
            )
            result.metrics["roc_auc"] = scored["roc_auc"]
            result.metrics["log_loss"] = scored["log_loss"]
    offline = offline_metric(workspace, version, "accuracy")
    if offline is not None:
        result.metrics["accuracy_drop"] = offline - result.metrics["accuracy"]
    return result


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _proba(model: Any, inputs: pd.DataFrame) -> np.ndarray:
    import numpy as np

    proba = np.asarray(model.predict_proba(inputs), dtype=float)
    if proba.ndim == 1:  # one probability per row: that of the positive class
        proba = np.column_stack([1.0 - proba, proba])
    return proba
