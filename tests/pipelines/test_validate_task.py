"""The ready-made validate task fails the pipeline on errors and passes good data through."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from loopml.pipelines import PipelineFailed, pipeline, run_pipeline, task, validate
from loopml.validation import Column, Schema
from loopml.workspace import Workspace


@task
def load(bad: bool) -> pd.DataFrame:
    ages = [25, 40, 7 if bad else 30]
    return pd.DataFrame({"age": ages, "country": ["DE", "FR", "XX" if bad else "US"]})


@task
def count(frame: pd.DataFrame) -> int:
    return len(frame)


@pipeline
def checked(bad: bool, contract: Path):
    return count(validate(load(bad), contract))


@pytest.fixture
def contract(tmp_path: Path) -> Path:
    path = tmp_path / "contract.yaml"
    Schema(
        {"age": Column("int", min=18), "country": Column("string", allowed=["DE", "FR", "US"])}
    ).save(path)
    return path


def test_good_data_passes_through(pws: Workspace, contract: Path) -> None:
    run = run_pipeline(checked, {"bad": False, "contract": contract}, workspace=pws)
    assert run.ok and run.output("count") == 3
    artifacts = [a.path for a in pws.list_artifacts(run.tracking_run_id or "")]
    assert "validation/validate.json" in artifacts


def test_bad_data_fails_the_run_and_skips_downstream(pws: Workspace, contract: Path) -> None:
    with pytest.raises(PipelineFailed) as info:
        run_pipeline(checked, {"bad": True, "contract": contract}, workspace=pws)
    run = info.value.run
    assert run.tasks["validate"].status == "FAILED"
    assert "ValidationFailed" in (run.tasks["validate"].error or "")
    assert "age" in (run.tasks["validate"].error or "")
    assert run.tasks["count"].status == "SKIPPED"
