"""Labels from a file: good rows become feedback, bad rows are reported by number, unknown
request ids are counted, and a request labelled twice keeps its newest label."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from loopml.exceptions import InvalidInput
from loopml.serving import batch_predict, ingest_labels, read_feedback
from loopml.serving.batch_input import InputNotFound
from loopml.workspace import Workspace


@pytest.fixture
def scored(serving_ws: Workspace, tmp_path: Path) -> list[str]:
    """Request ids of 4 rows scored by ``double/1`` in a batch, logged for ``churn``."""
    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "n": [1, 2, 3, 4]}).to_parquet(tmp_path / "in.parquet")
    result = batch_predict(
        "double/1",
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        deployment="churn",
        workspace=serving_ws,
    )
    return [f"batch-{result.batch_id}-{i}" for i in range(4)]


def test_a_csv_of_labels_with_bad_rows(
    serving_ws: Workspace, scored: list[str], tmp_path: Path
) -> None:
    lines = [
        "request_id,label,time",
        f"{scored[0]},1,2026-12-01T10:00:00+00:00",
        ",0,",  # row 2: no request id
        f"{scored[1]},0,yesterday",  # row 3: not a time
        f"{scored[2]},churned,",
        "r-unknown,1,2026-12-01T11:30:00",  # naive: UTC
        f"{scored[3]},,",  # row 6: no label
    ]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    result = ingest_labels(tmp_path / "labels.csv", "churn", workspace=serving_ws)
    assert (result.rows, result.ingested, result.bad, result.unknown) == (6, 3, 3, 1)
    assert [row for row, _ in result.bad_rows] == [2, 3, 6]
    reasons = dict(result.bad_rows)
    assert reasons[2] == "no request_id" and "not an ISO 8601 time" in reasons[3]
    assert reasons[6] == "neither label nor reward"
    feedback = read_feedback(serving_ws, "churn").set_index("request_id")
    assert sorted(feedback.index) == sorted([scored[0], scored[2], "r-unknown"])
    assert (
        feedback.loc[scored[0], "label"] == "1" and feedback.loc[scored[2], "label"] == '"churned"'
    )
    assert feedback.loc["r-unknown", "time"] == datetime(2026, 12, 1, 11, 30, tzinfo=UTC)
    assert feedback["reward"].isna().all()


def test_a_request_labelled_twice_keeps_the_newest_label(
    serving_ws: Workspace, scored: list[str], tmp_path: Path
) -> None:
    pd.DataFrame(
        {"request_id": [scored[0], scored[1], scored[0]], "reward": [1.0, 0.5, 2.0]}
    ).to_parquet(tmp_path / "first.parquet")
    first = ingest_labels(tmp_path / "first.parquet", "churn", workspace=serving_ws)
    assert (first.ingested, first.duplicates, first.unknown, first.bad) == (2, 1, 0, 0)
    pd.DataFrame({"request_id": [scored[1]], "reward": [9.0], "label": [True]}).to_parquet(
        tmp_path / "second.parquet"
    )
    ingest_labels(tmp_path / "second.parquet", "churn", workspace=serving_ws)
    feedback = read_feedback(serving_ws, "churn")
    newest = feedback.groupby("request_id").last()  # read back oldest first
    assert newest.loc[scored[0], "reward"] == 2.0
    assert newest.loc[scored[1], "reward"] == 9.0 and newest.loc[scored[1], "label"] == "true"
    assert len(feedback) == 3


def test_missing_columns_are_refused_before_anything_is_written(
    serving_ws: Workspace, tmp_path: Path
) -> None:
    (tmp_path / "a.csv").write_text("id,label\nr1,1\n")
    with pytest.raises(InvalidInput, match=r"no request_id column.*Its columns: \['id', 'label'\]"):
        ingest_labels(tmp_path / "a.csv", "churn", workspace=serving_ws)
    (tmp_path / "b.csv").write_text("request_id,score\nr1,1\n")
    with pytest.raises(InvalidInput, match=r"no label \(or reward\) column"):
        ingest_labels(tmp_path / "b.csv", "churn", workspace=serving_ws)
    (tmp_path / "c.csv").write_text("request_id,reward\nr1,lots\nr2,2\n")
    result = ingest_labels(tmp_path / "c.csv", "churn", workspace=serving_ws)
    assert result.bad_rows == [(1, "reward 'lots' is not a number")] and result.ingested == 1
    with pytest.raises(InputNotFound):
        ingest_labels(tmp_path / "nope.csv", "churn", workspace=serving_ws)
    with pytest.raises(InvalidInput, match="csv"):
        ingest_labels(tmp_path / "labels.json", "churn", workspace=serving_ws)
    with pytest.raises(InvalidInput, match="Deployment name"):
        ingest_labels(tmp_path / "c.csv", "../etc", workspace=serving_ws)
    assert list(read_feedback(serving_ws, "churn")["request_id"]) == ["r2"]
