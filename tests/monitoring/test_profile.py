"""Reference profiles: built once with frozen bins, stored per model version with a sample."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.exceptions import InvalidInput, LoopmlError, ModelNotFound, ModelVersionNotFound
from loopml.monitoring import profile as prof
from loopml.monitoring.profile import (
    PREDICTION,
    Profile,
    build_profile,
    get_reference,
    sample_of,
    set_reference,
)
from loopml.registry import PythonModel
from loopml.workspace import Workspace


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 2000
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "visits": rng.integers(0, 4, n),
            "plan": rng.choice(["basic", "pro", "team"], n, p=[0.6, 0.3, 0.1]),
            "active": rng.random(n) < 0.8,
            "joined": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
        }
    )


def test_kinds_edges_and_proportions(frame: pd.DataFrame) -> None:
    profile = build_profile(frame, bins=10)
    kinds = {name: f.kind for name, f in profile.features.items()}
    assert kinds == {
        "age": "numeric",
        "visits": "numeric",  # integers stay numeric, one bin per value
        "plan": "categorical",
        "active": "categorical",
        "joined": "numeric",
    }
    age = profile.features["age"]
    expected = np.quantile(frame["age"], np.linspace(0, 1, 11)[1:-1])
    assert age.edges == tuple(expected)
    assert len(age.proportions) == 10 and sum(age.proportions) == pytest.approx(1.0)
    assert age.proportions == pytest.approx([0.1] * 10, abs=1e-3)
    assert (age.min, age.max) == (frame["age"].min(), frame["age"].max())
    assert age.mean == pytest.approx(frame["age"].mean())
    assert age.std == pytest.approx(frame["age"].std())
    visits = profile.features["visits"]
    assert len(visits.edges) == len(set(visits.edges)) < 9  # ties deduplicated
    bins_of_values = np.searchsorted(visits.edges, [0, 1, 2, 3], side="left")
    assert len(set(bins_of_values.tolist())) == 4  # each value keeps its own bin
    plan = profile.features["plan"].categories
    assert set(plan) == {"basic", "pro", "team"} and sum(plan.values()) == pytest.approx(1.0)
    assert set(profile.features["active"].categories) == {"True", "False"}
    assert profile.rows == 2000 and profile.bins == 10 and profile.predictions is None


def test_nulls_all_null_and_constant() -> None:
    data = pd.DataFrame(
        {
            "x": [1.0, np.nan, 3.0, np.nan],
            "empty": [np.nan] * 4,
            "text": [None, None, None, None],
            "same": [5, 5, 5, 5],
        }
    )
    profile = build_profile(data)
    assert profile.features["x"].null_rate == 0.5
    empty = profile.features["empty"]
    assert empty.null_rate == 1.0 and empty.edges == () and empty.proportions == ()
    assert empty.min is None and empty.mean is None
    assert profile.features["text"].categories == {}
    same = profile.features["same"]
    assert same.edges == (5.0,) and same.proportions == (1.0, 0.0)
    assert same.std == 0.0


def test_infinities_count_as_nulls() -> None:
    profile = build_profile(pd.DataFrame({"x": [1.0, np.inf, -np.inf, 2.0]}))
    x = profile.features["x"]
    assert x.null_rate == 0.5 and (x.min, x.max) == (1.0, 2.0)
    assert Profile.from_json(profile.to_json()) == profile


def test_json_round_trip(frame: pd.DataFrame) -> None:
    profile = build_profile(frame, predictions=np.linspace(0, 1, len(frame)), bins=5)
    again = Profile.from_json(profile.to_json())
    assert again == profile
    assert again.predictions is not None and again.predictions.name == PREDICTION
    with pytest.raises(InvalidInput, match="Not a reference profile"):
        Profile.from_json('{"rows": 3}')


def test_predictions_as_probabilities_use_the_last_column() -> None:
    probabilities = np.column_stack([np.linspace(1, 0, 100), np.linspace(0, 1, 100)])
    profile = build_profile(pd.DataFrame({"x": range(100)}), predictions=probabilities)
    assert profile.predictions is not None
    assert (profile.predictions.min, profile.predictions.max) == (0.0, 1.0)
    labels = build_profile(pd.DataFrame({"x": range(4)}), predictions=["a", "b", "a", "a"])
    assert labels.predictions is not None and labels.predictions.kind == "categorical"


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        build_profile(pd.DataFrame({"x": []}))
    with pytest.raises(InvalidInput, match="DataFrame, a pyarrow Table or the path"):
        build_profile([1, 2, 3])
    with pytest.raises(InvalidInput, match="does not exist"):
        build_profile(tmp_path / "nope.parquet")
    with pytest.raises(InvalidInput, match="bins"):
        build_profile(pd.DataFrame({"x": [1.0]}), bins=0)
    with pytest.raises(LoopmlError):
        build_profile(pd.DataFrame({"x": [1.0]}), predictions=np.zeros((1, 1, 1)))


def test_arrow_tables_and_files(tmp_path: Path, frame: pd.DataFrame) -> None:
    from_arrow = build_profile(pa.Table.from_pandas(frame))
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    assert build_profile(path) == from_arrow
    csv = tmp_path / "train.csv"
    frame[["age", "plan"]].to_csv(csv, index=False)
    assert build_profile(csv).features["plan"].kind == "categorical"


def test_sample_is_bounded_and_repeatable(frame: pd.DataFrame) -> None:
    sample = sample_of(frame, rows=100, seed=1)
    assert len(sample) == 100 and list(sample.index) == list(range(100))
    assert sample.equals(sample_of(frame, rows=100, seed=1))
    assert len(sample_of(frame.head(30), rows=100)) == 30


# -- stored references ---------------------------------------------------------------------


@pytest.fixture
def registered(sqlite_ws: Workspace) -> tuple[Workspace, pd.DataFrame, LogisticRegression]:
    rng = np.random.default_rng(1)
    x = pd.DataFrame({"a": rng.normal(size=800), "b": rng.normal(size=800)})
    y = (x["a"] + x["b"] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    sqlite_ws.models.register("churn", model, input_example=x.head(5))
    return sqlite_ws, x.assign(label=y), model


def test_set_and_get_reference(
    registered: tuple[Workspace, pd.DataFrame, LogisticRegression],
) -> None:
    ws, train, model = registered
    ref = set_reference("churn", train, source="train v1", workspace=ws)
    assert (ref.model, ref.version, ref.rows, ref.source) == ("churn", 1, 800, "train v1")
    assert list(ref.profile.features) == ["a", "b"]  # the label is not a model input
    assert ref.profile.predictions is not None and ref.profile.predictions.kind == "numeric"
    stored = get_reference("churn", 1, workspace=ws)
    assert stored is not None and stored.profile == ref.profile
    assert stored.created_at.tzinfo is not None
    sample = stored.sample()
    assert list(sample.columns) == ["a", "b", PREDICTION] and len(sample) == 800
    assert np.allclose(sample[PREDICTION], model.predict(sample[["a", "b"]]))
    assert get_reference("churn", 2, workspace=ws) is None


def test_rerun_replaces_the_reference(
    registered: tuple[Workspace, pd.DataFrame, LogisticRegression],
) -> None:
    ws, train, _ = registered
    set_reference("churn/1", train.head(100), workspace=ws)
    second = set_reference("models:/churn/1", train, workspace=ws)
    stored = get_reference("churn", 1, workspace=ws)
    assert stored is not None and stored.rows == 800 == second.rows
    from sqlalchemy import func, select

    from loopml.monitoring.tables import monitor_references

    with ws.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(monitor_references)).scalar() == 1


def test_alias_resolution_and_given_predictions(
    registered: tuple[Workspace, pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    ws, train, model = registered
    ws.models.set_alias("churn", "champion", 1)
    path = tmp_path / "train.parquet"
    train.to_parquet(path)
    outputs = model.predict_proba(train[["a", "b"]])
    ref = set_reference("churn@champion", path, predictions=outputs, bins=4, workspace=ws)
    assert ref.source == str(path) and ref.profile.bins == 4
    assert ref.profile.predictions is not None
    assert ref.profile.predictions.max == pytest.approx(outputs[:, 1].max())
    with pytest.raises(InvalidInput, match="predictions has 3 values for 800 rows"):
        set_reference("churn", train, predictions=[1, 2, 3], workspace=ws)


def test_bad_references(registered: tuple[Workspace, pd.DataFrame, LogisticRegression]) -> None:
    ws, train, _ = registered
    with pytest.raises(ModelNotFound, match="No registered model 'nope'"):
        set_reference("nope", train, workspace=ws)
    with pytest.raises(ModelVersionNotFound):
        set_reference("churn/7", train, workspace=ws)
    with pytest.raises(InvalidInput, match=r"lacks input columns .*\['b'\]"):
        set_reference("churn", train[["a"]], workspace=ws)
    with pytest.raises(InvalidInput, match="empty"):
        set_reference("churn", train.head(0), workspace=ws)
    with pytest.raises(InvalidInput, match="not dict"):
        set_reference("churn", {"a": [1]}, workspace=ws)


def test_numbers_read_as_text_are_numbers_and_a_stray_word_is_refused(
    registered: tuple[Workspace, pd.DataFrame, LogisticRegression], tmp_path: Path
) -> None:
    # One 'abc' in a float column made pandas read it as text: the column was profiled as
    # categorical (every value a category), so its drift in every window was meaningless.
    ws, train, _ = registered
    path = tmp_path / "train.csv"
    bad = train.astype({"a": object})
    bad.loc[2, "a"] = "abc"
    bad.loc[5, "a"] = " n/a "
    bad.to_csv(path, index=False)
    with pytest.raises(
        InvalidInput,
        match=r"Column 'a' of .*train\.csv holds 2 value\(s\) that aren't numbers, but "
        r"models:/churn/1 takes float64 \(row 3: 'abc'; row 6: ' n/a '; rows count from 1\)",
    ):
        set_reference("churn", path, workspace=ws)
    assert ws.monitors.reference("churn") is None  # nothing stored
    text = train.astype({"a": str})  # numbers as text: read as the numbers they are
    ref = set_reference("churn", text, workspace=ws)
    assert ref.profile.features["a"].kind == "numeric"
    assert ref.profile.features["a"].mean == pytest.approx(train["a"].mean())


def test_a_model_that_cannot_predict_is_warned_about(sqlite_ws: Workspace) -> None:
    class Picky(PythonModel):
        def predict(self, data):  # type: ignore[no-untyped-def]
            raise RuntimeError("needs a column called z")

    sqlite_ws.models.register("picky", Picky())
    with pytest.warns(UserWarning, match="without a predictions profile.*needs a column"):
        ref = set_reference("picky", pd.DataFrame({"x": [1.0, 2.0]}), workspace=sqlite_ws)
    assert ref.profile.predictions is None
    assert list(ref.sample().columns) == ["x"]


def test_mixed_object_column_is_stored_as_text(sqlite_ws: Workspace) -> None:
    class Constant(PythonModel):
        def predict(self, data):  # type: ignore[no-untyped-def]
            return np.zeros(len(data))

    sqlite_ws.models.register("mixed", Constant())
    data = pd.DataFrame({"m": pd.Series([1, "a", 2.5, None], dtype=object)})
    ref = set_reference("mixed", data, workspace=sqlite_ws)
    assert ref.profile.features["m"].kind == "categorical"
    assert ref.sample()["m"].tolist()[:3] == ["1", "a", "2.5"]
    assert math.isclose(ref.profile.features["m"].null_rate, 0.25)


def test_bins_setting_default(sqlite_ws: Workspace) -> None:
    assert prof._bins_setting(sqlite_ws) == 10
