"""``loopml predict``: batch scoring from the command line, its --json, a progress bar only
on a terminal, and bad input as one ``error:`` line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import Result

from loopml.serving import read_predictions
from loopml.workspace import Workspace
from terminal import run_on_terminal


def linear() -> Any:
    """``2x + n``, defined in a function so that cloudpickle stores it by value (a
    ``loopml`` subprocess loads it without importing the tests)."""
    from loopml.registry import PythonModel

    class Linear(PythonModel):
        def predict(self, model_input: Any) -> Any:
            return (model_input["x"] * 2 + model_input["n"]).to_numpy()

    return Linear()


@pytest.fixture
def churn(workspace: Workspace) -> Workspace:
    """``churn/1`` (2x + n, signature x float64, n int64) and 250 rows to score."""
    example = pd.DataFrame({"x": [1.0, 2.0], "n": [1, 2]})
    workspace.models.register("churn", linear(), input_example=example)
    workspace.models.promote("churn", 1, to="production")
    rows = pd.DataFrame({"x": [i / 2 for i in range(250)], "n": list(range(250))})
    rows.to_parquet(workspace.root / "customers.parquet")
    return workspace


def test_predict_writes_parquet_and_says_where(
    churn: Workspace, invoke: Callable[..., Result]
) -> None:
    result = invoke(
        "predict",
        "churn@production",
        "--input",
        "customers.parquet",
        "--output",
        "scores.parquet",
        "--chunk-rows",
        "100",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Scored 250 rows from 1 file with churn/1 in ")
    assert lines[0].endswith("→ scores.parquet")
    assert lines[1].startswith("Logged for deployment churn as batch ")
    assert result.stderr == ""  # not a terminal: no progress bar
    out = pq.read_table(churn.root / "scores.parquet").to_pandas()
    assert list(out["prediction"]) == [i + i for i in range(250)]
    assert len(read_predictions(churn, "churn")) == 250


def test_predict_json_and_options(
    churn: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    done = invoke_json(
        "predict",
        "models:/churn/1",
        "--input",
        "customers.parquet",
        "--output",
        "scores",
        "--chunk-rows",
        "100",
        "--deployment",
        "nightly",
        "--no-log",
    )
    assert {k: done[k] for k in ("model", "deployment", "rows", "chunks", "files", "logged")} == {
        "model": "churn/1",
        "deployment": "nightly",
        "rows": 250,
        "chunks": 3,
        "files": 1,
        "logged": 0,
    }
    assert done["executor"] == "threads" and done["output"] == "scores"
    assert sorted(p.name for p in (churn.root / "scores").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert read_predictions(churn, "nightly").empty


def test_bad_input_is_one_error_line(
    churn: Workspace, invoke: Callable[..., Result], error_lines: Callable[[Result], list[str]]
) -> None:
    def fails(*args: str) -> str:
        return error_lines(invoke("predict", "churn/1", *args))[0]

    base = ("--input", "customers.parquet", "--output")
    (churn.root / "taken.parquet").write_bytes(b"x")
    taken = fails(*base, "taken.parquet")
    assert "taken.parquet exists: pass --overwrite to replace" in taken
    assert "overwrite=True" not in taken  # the Python argument: not this command's word
    assert invoke("predict", "churn/1", *base, "taken.parquet", "--overwrite").exit_code == 0
    pd.DataFrame({"x": ["a"], "user": [1]}).to_parquet(churn.root / "odd.parquet")
    message = fails("--input", "odd.parquet", "--output", "o.parquet")
    assert "missing column(s) ['n']" in message and "unexpected column(s) ['user']" in message
    assert "'x' must be float64" in message
    assert "Unknown executor 'gpu'" in fails(*base, "o.parquet", "--executor", "gpu")
    assert "names no Parquet or CSV file" in fails("--input", "nope/*.csv", "--output", "o")
    assert "--option takes KEY=VALUE" in fails(*base, "o.parquet", "-o", "endpoint")
    unknown = error_lines(invoke("predict", "nope/1", *base, "o.parquet"))[0]
    assert "No registered model 'nope'" in unknown
    assert not (churn.root / "o.parquet").exists() and not (churn.root / "o").exists()


@pytest.mark.slow
def test_a_terminal_sees_a_progress_bar_and_json_does_not(churn: Workspace) -> None:
    argv = [sys.executable, "-m", "loopml.cli", "predict", "churn/1", "--input"]
    argv += ["customers.parquet", "--output", "s.parquet", "--chunk-rows", "50"]
    drawn = run_on_terminal(argv, cwd=churn.root)
    assert "Scoring" in drawn and "250/250 rows" in drawn
    quiet = run_on_terminal([*argv[:-4], "--output", "t.parquet", "--json"], cwd=churn.root)
    assert "Scoring" not in quiet and json.loads(quiet)["rows"] == 250


def test_empty_values_a_model_cannot_take_are_one_error_line_naming_column_and_rows(
    workspace: Workspace, invoke: Callable[..., Result], error_lines: Callable[[Result], list[str]]
) -> None:
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"tenure": [1, 2, 3, 4], "monthly": [20.0, 40.0, 60.0, 80.0]})
    model = LinearRegression().fit(frame, [0.0, 1.0, 0.0, 1.0])
    workspace.models.register("churn", model, input_example=frame)
    (workspace.root / "nulls.csv").write_text("tenure,monthly\n1,20.0\n2,\n3,60.0\n4,\n")
    result = invoke("predict", "churn/1", "--input", "nulls.csv", "--output", "o.parquet")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "Column 'monthly' has 2 empty value(s) (row 2, 4) of nulls.csv" in line, line
    assert "Input X contains NaN" in line and "fill or drop the empty values" in line
    assert "Traceback" not in result.output
