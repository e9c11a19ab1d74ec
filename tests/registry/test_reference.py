"""``ws.models.register(..., reference_data=...)`` stores the version's reference profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopml
from loopml.exceptions import InvalidInput
from loopml.monitoring import get_reference
from loopml.monitoring.profile import PREDICTION
from loopml.registry import PythonModel
from loopml.workspace import Workspace


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=600), "b": rng.choice(["x", "y"], 600)})
    return x.assign(label=((x["a"] > 0) & (x["b"] == "x")).astype(int))


def test_register_with_reference_data(sqlite_ws: Workspace, train: pd.DataFrame) -> None:
    features = pd.get_dummies(train[["a", "b"]], dtype=float)
    model = LogisticRegression().fit(features, train["label"])
    version = sqlite_ws.models.register(
        "churn", model, input_example=features.head(3), reference_data=features
    )
    ref = get_reference("churn", version.version, workspace=sqlite_ws)
    assert ref is not None and ref.rows == 600 and ref.source is None
    assert list(ref.profile.features) == list(features.columns)
    assert ref.profile.predictions is not None
    sample = ref.sample()
    assert np.array_equal(sample[PREDICTION], model.predict(sample[list(features.columns)]))
    # the next version has its own reference; the first one is kept
    loopml.set_default_workspace(sqlite_ws)
    second = loopml.register_model("churn", model, reference_data=features.head(100))
    assert get_reference("churn", second.version, workspace=sqlite_ws).rows == 100  # type: ignore[union-attr]
    assert get_reference("churn", version.version, workspace=sqlite_ws).rows == 600  # type: ignore[union-attr]


def test_python_model_reference_from_a_file(
    sqlite_ws: Workspace, train: pd.DataFrame, tmp_path: Path
) -> None:
    class Threshold(PythonModel):
        def load_context(self, context):  # type: ignore[no-untyped-def]
            self.cut = 0.0

        def predict(self, data):  # type: ignore[no-untyped-def]
            return (data["a"] > self.cut).astype(int)

    path = tmp_path / "train.parquet"
    train.to_parquet(path)
    version = sqlite_ws.models.register("rule", Threshold(), reference_data=path)
    ref = get_reference("rule", version.version, workspace=sqlite_ws)
    assert ref is not None and ref.source == str(path)
    assert set(ref.profile.features) == {"a", "b", "label"}  # no signature: every column
    assert ref.profile.predictions is not None
    assert (ref.profile.predictions.min, ref.profile.predictions.max) == (0.0, 1.0)


def test_bad_reference_data_registers_nothing(sqlite_ws: Workspace) -> None:
    model = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    with pytest.raises(InvalidInput, match="empty"):
        sqlite_ws.models.register("empty", model, reference_data=pd.DataFrame())
    with pytest.raises(InvalidInput, match="must be a pandas DataFrame"):
        sqlite_ws.models.register("empty", model, reference_data=42)
    assert all(m["name"] != "empty" for m in sqlite_ws.models.list())
