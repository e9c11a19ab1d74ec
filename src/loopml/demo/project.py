"""The files ``loopml demo`` writes into its workspace: a small churn project a user can read,
change and run again with the ordinary commands.

| file | what it is |
| --- | --- |
| ``loopml.toml`` | the workspace, plus ``[features]``, ``[serving]``, the gate ``[gates.churn]`` and the drift alert rule |
| ``features.py`` | entity ``customer``, view ``customer_profile`` over ``data/churn/profiles``, service ``churn_v1`` |
| ``churn_pipeline.py`` | ``train_churn``: labels → point-in-time training set → validate → baseline and model → evaluate → register → gated promotion; an ``alert`` on ``churn`` retrains it |
| ``contracts/churn.yaml`` | the data contract, inferred from the first batch |
| ``data/churn.loopml`` | the pointer of the versioned dataset (``data/churn`` itself is git-ignored) |
"""

from __future__ import annotations

SETTINGS = """
[features]
# Feature definitions: `loopml features apply` versions them.
module = "features.py"

[serving]
# The canary controller reads what the server logged: flush it often.
log_flush_interval = 0.2

[gates.churn]
# Both models are scored on the newest holdout the pipeline wrote.
metric = "accuracy"
holdout = "data/holdout.parquet"
label = "churned"
min_score = 0.60
margin = 0.0

[[monitor.alerts]]
name = "input drift"
deployment = "churn"
when = "max(psi) > 0.25"
for = 1
severity = "critical"
channels = ["log"]
"""

GITIGNORE = """\
# written by the pipeline: the gate's holdout (derived from the versioned data)
data/holdout.parquet
# the monitoring report, written by `loopml monitor report churn -o report.html`
report.html
__pycache__/
"""

FEATURES_PY = '''\
"""Feature definitions of the churn model: `loopml features apply` versions them."""

from __future__ import annotations

from datetime import timedelta

from loopml.features import Entity, FeatureService, FeatureView, Field, FileSource

customer = Entity("customer", join_keys=["customer_id"], description="A subscriber.")

# Profile snapshots: a training row gets the latest one taken at or before its time, and
# never one taken after it (a later snapshot knows about the churn).
customer_profile = FeatureView(
    "customer_profile",
    entities=[customer],
    source=FileSource(
        "data/churn/profiles", timestamp_field="event_ts", created_timestamp_field="created_ts"
    ),
    ttl=timedelta(days=30),
    schema=[
        Field("tenure_months", "float64"),
        Field("monthly_charges", "float64"),
        Field("support_calls", "float64"),
        Field("plan", "string"),
        Field("region", "string"),
    ],
)

# What the churn model reads: each model version records this service's version.
churn_v1 = FeatureService("churn_v1", [customer_profile])
'''

PIPELINE_PY = '''\
"""The churn training pipeline.

    loopml pipelines run churn_pipeline.py:train_churn
    loopml scheduler run churn_pipeline.py:train_churn --once

labels of the newest batch → point-in-time training set (feature store) → data contract →
time split (the later quarter is the gate's holdout) → a baseline and a model → evaluate →
register (with the training data as the monitoring reference) → promotion through the gate
of loopml.toml. An `alert` on the `churn` deployment starts it with rollout="canary": the
new version is registered and a canary rolls it out (its completion runs the gate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

import loopml
from loopml.pipelines import on_event, pipeline, task

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "plan", "region"]
NUMERIC = ["tenure_months", "monthly_charges", "support_calls"]
CATEGORICAL = ["plan", "region"]
LABEL = "churned"
HOLDOUT = "data/holdout.parquet"


@task
def load_labels(data: Path, batch: str) -> pd.DataFrame:
    """The label rows of one batch (``latest``: the newest). ``data`` is a Path: its content
    is the cache key, and the run records it as an input: the data version."""
    loopml.log_input(data, name="churn")
    files = sorted((data / "labels").glob("batch-*.parquet"))
    path = files[-1] if batch == "latest" else data / "labels" / f"batch-{batch}.parquet"
    return pd.read_parquet(path)


@task
def training_set(labels: pd.DataFrame) -> pd.DataFrame:
    """Each label row with the features as they were known at its time."""
    from loopml.workspace import default_workspace

    frame = default_workspace().features.get_historical_features(labels, features="churn_v1")
    loopml.log_params({"feature_service": "churn_v1", "rows": len(frame)})
    return frame


@task
def validate(frame: pd.DataFrame, contract: Path) -> pd.DataFrame:
    """The data contract: a batch that breaks it fails the run."""
    from loopml.validation import Schema

    Schema.load(contract).validate(frame[[*FEATURES, LABEL]]).raise_for_errors()
    return frame


@task
def split(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The earlier three quarters train; the later quarter is the holdout, written where the
    gate reads it."""
    ordered = frame.sort_values("event_timestamp").reset_index(drop=True)
    cut = int(len(ordered) * 0.75)
    train, holdout = ordered.iloc[:cut], ordered.iloc[cut:]
    Path(HOLDOUT).parent.mkdir(parents=True, exist_ok=True)
    holdout[[*FEATURES, LABEL]].to_parquet(HOLDOUT, index=False)
    return {"train": train[[*FEATURES, LABEL]], "holdout": holdout[[*FEATURES, LABEL]]}


def make_model(seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [
            ("numbers", StandardScaler(), NUMERIC),
            ("categories", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression(random_state=seed))])


@task
def train_baseline(parts: dict[str, pd.DataFrame]) -> Any:
    """What any model must beat: always the most frequent class."""
    from sklearn.dummy import DummyClassifier

    train = parts["train"]
    return DummyClassifier(strategy="most_frequent").fit(train[FEATURES], train[LABEL])


@task
def train_model(parts: dict[str, pd.DataFrame], seed: int) -> Any:
    loopml.seed_everything(seed)
    train = parts["train"]
    loopml.log_params({"model": "logistic_regression", "train_rows": len(train)})
    return make_model(seed).fit(train[FEATURES], train[LABEL])


@task
def evaluate(model: Any, baseline: Any, parts: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Accuracy and AUC on the holdout, and the baseline's accuracy: a model that does not
    beat the baseline fails the run."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    holdout = parts["holdout"]
    x, y = holdout[FEATURES], holdout[LABEL]
    metrics = {
        "accuracy": float(accuracy_score(y, model.predict(x))),
        "auc": float(roc_auc_score(y, model.predict_proba(x)[:, 1])),
        "baseline_accuracy": float(accuracy_score(y, baseline.predict(x))),
    }
    loopml.log_metrics(metrics)
    if metrics["accuracy"] <= metrics["baseline_accuracy"]:
        raise ValueError(f"the model does not beat the baseline: {metrics}")
    return metrics


@task
def register(model: Any, metrics: dict[str, float], parts: dict[str, pd.DataFrame]) -> int:
    """A new ``churn`` version: linked to this run (data version, code commit), reading the
    ``churn_v1`` features, monitored against its training data."""
    train = parts["train"]
    version = loopml.register_model(
        "churn",
        model,
        input_example=train[FEATURES].head(5),
        reference_data=train[FEATURES],
        features="churn_v1",
        description=f"holdout accuracy {metrics['accuracy']:.3f}",
    )
    return int(version.version)


@task
def promote(version: int, rollout: str) -> dict[str, Any]:
    """``promote``: through the gate now. ``canary``: leave it to a canary, whose
    completion runs the gate."""
    from loopml.exceptions import PromotionBlocked

    if rollout == "canary":
        return {"version": version, "promoted": False, "rollout": "canary"}
    try:
        verdict = loopml.promote("churn", version)
    except PromotionBlocked as blocked:
        summary = blocked.verdict.summary() if blocked.verdict else str(blocked)
        return {"version": version, "promoted": False, "rollout": rollout, "gate": summary}
    gate = verdict.summary() if verdict is not None else ""
    return {"version": version, "promoted": True, "rollout": rollout, "gate": gate}


@pipeline(
    triggers=[on_event("alert", subject="churn", params={"rollout": "canary"})],
    experiment="churn-training",
)
def train_churn(batch: str = "latest", rollout: str = "promote", seed: int = 0):
    labels = load_labels(Path("data/churn"), batch)
    clean = validate(training_set(labels), Path("contracts/churn.yaml"))
    parts = split(clean)
    model = train_model(parts, seed)
    metrics = evaluate(model, train_baseline(parts), parts)
    return promote(register(model, metrics, parts), rollout)
'''
