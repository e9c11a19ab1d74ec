"""Drift against a reference's frozen bins: compare, compare_feature and the notebook drift()."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp
from sklearn.linear_model import LinearRegression

from loopml.exceptions import InvalidInput
from loopml.monitoring import stats
from loopml.monitoring.comparison import FeatureDrift, compare, compare_feature, drift
from loopml.monitoring.profile import PREDICTION, build_profile, set_reference
from loopml.workspace import Workspace


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 4000
    return pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "y": rng.uniform(0, 10, n),
            "plan": rng.choice(["basic", "pro"], n, p=[0.7, 0.3]),
        }
    )


comparison_module = importlib.import_module("loopml.monitoring.comparison")


def test_doctests() -> None:
    assert doctest.testmod(comparison_module).failed == 0


def test_package_drift_is_the_function_after_every_module_was_imported() -> None:
    """``loopml.monitoring.drift`` is the function, also once the modules are loaded (the
    comparison module has its own name, so importing it rebinds nothing)."""
    import loopml.monitoring
    import loopml.monitoring.windows  # noqa: F401

    frame = pd.DataFrame({"x": range(50)})
    assert loopml.monitoring.drift is drift
    assert loopml.monitoring.drift(frame, frame).loc[0, "band"] == "none"


def test_unchanged_data_has_no_drift(reference: pd.DataFrame) -> None:
    profile = build_profile(reference)
    rows = {r.feature: r for r in compare(profile, reference, sample=reference)}
    assert rows["x"].psi == 0.0 and rows["x"].band == "none"
    assert rows["x"].ks_stat == 0.0 and rows["x"].ks_pvalue == 1.0
    assert rows["x"].out_of_range == 0.0 and rows["x"].null_rate == 0.0
    assert rows["plan"].psi == 0.0 and rows["plan"].unseen == 0.0
    # Only the smoothing of the expected shares (1e-4 a bucket) separates them.
    assert rows["plan"].chi2 is not None and rows["plan"].chi2 < 1e-3
    assert rows["plan"].chi2_pvalue == pytest.approx(1.0, abs=1e-2)
    assert rows["plan"].ks_stat is None and rows["x"].chi2 is None


def test_shifted_feature_and_ks_equals_scipy_on_the_samples(reference: pd.DataFrame) -> None:
    rng = np.random.default_rng(1)
    current = reference.sample(3000, random_state=2).reset_index(drop=True)
    current["x"] = rng.normal(0.8, 1, 3000)
    sample = reference.sample(500, random_state=3)
    rows = {r.feature: r for r in compare(build_profile(reference), current, sample=sample)}
    moved = rows["x"]
    assert moved.band == "significant" and moved.psi is not None and moved.psi > 0.25
    expected = sp.ks_2samp(sample["x"], current["x"])
    assert (moved.ks_stat, moved.ks_pvalue) == (expected.statistic, expected.pvalue)
    assert rows["y"].band == "none"
    assert sum(moved.current_proportions) == pytest.approx(1.0)
    assert len(moved.current_proportions) == len(moved.reference_proportions) == 10


def test_bins_stay_frozen(reference: pd.DataFrame) -> None:
    """A current batch with another spread is counted into the reference's edges, never
    re-binned on its own quantiles (which would hide the change)."""
    profile = build_profile(reference)
    wide = pd.DataFrame({"x": reference["x"] * 3, "y": reference["y"], "plan": reference["plan"]})
    row = compare(profile, wide, columns=["x"])[0]
    expected_counts = stats.bin_counts(profile.features["x"].edges, wide["x"])
    assert row.current_proportions == pytest.approx(expected_counts / len(wide))
    assert row.current_proportions[0] > 0.3 and row.current_proportions[-1] > 0.3
    assert row.psi == pytest.approx(stats.psi(profile.features["x"].proportions, expected_counts))
    outside = (wide["x"] < reference["x"].min()) | (wide["x"] > reference["x"].max())
    assert row.band == "significant" and row.out_of_range == pytest.approx(outside.mean())
    assert row.out_of_range > 0.2


def test_unseen_categories(reference: pd.DataFrame) -> None:
    current = reference.copy()
    current.loc[:999, "plan"] = "enterprise"
    row = compare(build_profile(reference), current, columns=["plan"])[0]
    assert row.unseen == pytest.approx(0.25)
    assert row.buckets == ("basic", "pro", "__other__")
    assert row.current_proportions[-1] == pytest.approx(0.25)
    assert row.chi2_pvalue is not None and row.chi2_pvalue < 1e-10
    assert row.band == "significant" and row.js is not None and row.js > 0.1


def test_missing_all_null_and_constant_features() -> None:
    reference = pd.DataFrame(
        {"a": [1.0, 2.0, 3.0, 4.0] * 10, "c": [7.0] * 40, "n": [np.nan] * 40, "s": ["u"] * 40}
    )
    profile = build_profile(reference)
    current = pd.DataFrame({"c": [7.0] * 10, "n": [np.nan] * 10, "s": [None] * 10})
    rows = {r.feature: r for r in compare(profile, current, sample=reference)}
    assert rows["a"].missing and rows["a"].psi is None and rows["a"].band is None
    assert rows["a"].metrics()["psi"] is None
    assert rows["c"].psi == 0.0 and rows["c"].ks_stat == 0.0 and not rows["c"].missing
    assert rows["n"].psi is None and rows["n"].null_rate == 1.0
    assert rows["s"].psi is None and rows["s"].null_rate == 1.0
    assert rows["s"].metrics()["null_rate_change"] == 1.0
    moved = compare(profile, pd.DataFrame({"c": [8.0] * 10}), columns=["c"])[0]
    assert moved.band == "significant" and moved.out_of_range == 1.0


def test_an_empty_current_batch_is_reported_not_refused(reference: pd.DataFrame) -> None:
    profile = build_profile(reference)
    no_columns = pd.DataFrame(index=range(5))  # every feature absent from the logged rows
    rows = compare(profile, no_columns)
    assert [r.missing for r in rows] == [True, True, True] and rows[0].rows == 5
    no_rows = compare(profile, reference.head(0), sample=reference)
    assert all(r.psi is None and r.null_rate is None and not r.missing for r in no_rows)


def test_compare_feature_on_raw_values(reference: pd.DataFrame) -> None:
    profile = build_profile(reference).features["x"]
    values = [0.1, None, 2.0, "not a number"]
    row = compare_feature(profile, values, sample=reference["x"])
    assert row.rows == 4 and row.null_rate == 0.5
    expected = sp.ks_2samp(reference["x"], [0.1, 2.0])
    assert (row.ks_stat, row.ks_pvalue) == (expected.statistic, expected.pvalue)


def test_metrics_names(reference: pd.DataFrame) -> None:
    row = compare(build_profile(reference), reference, columns=["x"])[0]
    metrics = row.metrics()
    assert tuple(metrics) == comparison_module.METRICS
    assert metrics["null_rate_change"] == 0.0 and metrics["unseen"] is None
    assert isinstance(row.to_dict()["current_proportions"], list)


def test_drift_table_orders_worst_first(reference: pd.DataFrame) -> None:
    current = reference.copy()
    current["y"] = current["y"] + 3
    current = current.drop(columns=["plan"])
    table = drift(reference, current)
    assert table["feature"].tolist() == ["plan", "y", "x"]
    assert bool(table.loc[0, "missing"]) and table.loc[1, "band"] == "significant"
    expected = sp.ks_2samp(reference["y"], current["y"])
    assert table.loc[1, "ks_stat"] == expected.statistic
    assert table.loc[1, "ks_pvalue"] == expected.pvalue


def test_bad_input(reference: pd.DataFrame) -> None:
    profile = build_profile(reference)
    with pytest.raises(InvalidInput, match="current data must be a pandas DataFrame"):
        compare(profile, [[1.0, 2.0]])
    with pytest.raises(InvalidInput, match="Reference or a Profile"):
        compare({"x": 1}, reference)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="no feature"):
        compare(profile, reference, columns=["nope"])
    with pytest.raises(InvalidInput, match="empty"):
        drift(reference.head(0), reference)
    with pytest.raises(InvalidInput, match="bands"):
        drift(reference, reference, bands=(0.3, 0.1))


def test_against_a_stored_reference_with_prediction_drift(sqlite_ws: Workspace) -> None:
    rng = np.random.default_rng(5)
    train = pd.DataFrame({"a": rng.normal(size=1500), "b": rng.normal(size=1500)})
    model = LinearRegression().fit(train, train["a"] * 2 + train["b"])
    sqlite_ws.models.register("price", model, input_example=train.head(3))
    ref = set_reference("price", train, workspace=sqlite_ws)
    current = pd.DataFrame({"a": rng.normal(1.0, 1, 800), "b": rng.normal(size=800)})
    rows = compare(ref, current, predictions=model.predict(current))
    assert [r.feature for r in rows] == ["a", "b", PREDICTION]
    sample = ref.sample()
    expected = sp.ks_2samp(sample["a"], current["a"])
    assert (rows[0].ks_stat, rows[0].ks_pvalue) == (expected.statistic, expected.pvalue)
    assert rows[0].band == "significant" and rows[1].band == "none"
    prediction = rows[2]
    assert isinstance(prediction, FeatureDrift) and prediction.band == "significant"
    expected = sp.ks_2samp(sample[PREDICTION], model.predict(current))
    assert prediction.ks_stat == expected.statistic
