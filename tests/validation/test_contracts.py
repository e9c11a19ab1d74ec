"""Schemas attached to dataset and model versions (data contracts), and the gate using them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopml.data
from loopml.exceptions import InvalidInput, PromotionBlocked
from loopml.registry import GatePolicy
from loopml.validation import Column, Schema
from loopml.workspace import Workspace


def frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": (x[:, 0] > 0).astype(int)})


@pytest.mark.slow
def test_attach_to_a_dataset_version(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "train.csv"
    frame().to_csv(data, index=False)
    schema = Schema.infer(frame())
    subject = ws.schemas.attach(schema, dataset=data)
    assert subject.startswith("dataset:")
    assert ws.schemas.get(dataset=data) == schema
    assert ws.schemas.get(dataset=subject.split(":", 1)[1]) == schema  # by data hash
    data.write_text("a,b,label\n1,2,3\n")  # another version: no contract attached yet
    assert ws.schemas.get(dataset=data) is None


def test_attach_to_a_pointer_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.init(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw").mkdir()
    frame().to_csv(tmp_path / "raw" / "part-0.csv", index=False)
    version = loopml.data.add("raw")
    schema = Schema.infer(frame())
    ws.schemas.attach(schema, dataset="raw.loopml")
    assert ws.schemas.get(dataset=version.hash) == schema
    ws.close()


def test_model_contract_and_gate(sqlite_ws: Workspace, tmp_path: Path) -> None:
    train = frame()
    features = train[["a", "b"]]
    contract = Schema({"a": Column("float", min=-10, max=10), "b": Column("float", nullable=False)})
    model = LogisticRegression().fit(features, train["label"])
    mv = sqlite_ws.register_model("m", model, input_example=features.head(), schema=contract)
    assert sqlite_ws.schemas.get(model=mv.uri) == contract
    good = tmp_path / "holdout.csv"
    frame(seed=1).to_csv(good, index=False)
    policy = GatePolicy(metric="accuracy", holdout=str(good), label="label")
    verdict = sqlite_ws.promote("m", 1, policy=policy)
    assert verdict is not None and {c.name: c.passed for c in verdict.checks}["contract"]
    sqlite_ws.register_model("m", model, input_example=features.head(), schema=contract)
    bad = frame(seed=2)
    bad.loc[3, "b"] = np.nan
    bad.loc[5, "a"] = 50.0
    bad_path = tmp_path / "bad.csv"
    bad.to_csv(bad_path, index=False)
    with pytest.raises(PromotionBlocked) as info:
        sqlite_ws.promote(
            "m", 2, policy=GatePolicy(holdout=str(bad_path), label="label", beat_champion=False)
        )
    check = {c.name: c for c in info.value.verdict.checks}["contract"]
    assert not check.passed and len(check.details["errors"]) == 2


def test_subject_must_be_one_thing(sqlite_ws: Workspace) -> None:
    schema = Schema.infer(frame())
    with pytest.raises(InvalidInput, match="exactly one subject"):
        sqlite_ws.schemas.attach(schema)
    with pytest.raises(InvalidInput, match="exactly one subject"):
        sqlite_ws.schemas.get(dataset="x", model="models:/m/1")
