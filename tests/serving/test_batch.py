"""Batch scoring: chunks in order, CSV globs, signature checks, atomic output, the
prediction log, every executor, object storage, and a pipeline task."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from loopml.serving import batch_predict, read_predictions
from loopml.serving.batch import BatchScoringFailed, OutputExists
from loopml.serving.batch_input import InputNotFound
from loopml.serving.requests import SchemaMismatch
from loopml.workspace import Workspace


def inputs(n: int, start: int = 0) -> pd.DataFrame:
    """``n`` rows the ``double`` models take: x float, n int."""
    return pd.DataFrame(
        {"x": [float(i) / 4 for i in range(start, start + n)], "n": list(range(start, start + n))}
    )


def expected(frame: pd.DataFrame, a: float = 2.0) -> list[float]:
    return list(frame["x"] * a + frame["n"])


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Where a test's input and output files go (the workspace is elsewhere in tmp_path)."""
    path = tmp_path / "files"
    path.mkdir()
    return path


def test_a_file_of_several_chunks_is_scored_in_order_and_logged(
    serving_ws: Workspace, folder: Path
) -> None:
    frame = inputs(2500)
    frame.to_parquet(folder / "in.parquet", row_group_size=700)
    seen: dict[str, int] = {"rows": 0}

    def progress(*, files: int = 0, total_files: int | None = None, **_: Any) -> None:
        seen["rows"] += files
        if total_files is not None:
            seen["total"] = total_files

    result = batch_predict(
        "double/1",
        folder / "in.parquet",
        folder / "out" / "scores.parquet",
        chunk_rows=300,
        progress=progress,
        workspace=serving_ws,
    )
    assert (result.rows, result.chunks, result.files, result.logged) == (2500, 9, 1, 2500)
    assert result.model == "double/1" and result.deployment == "double"
    assert seen == {"rows": 2500, "total": 2500}
    out = pq.read_table(folder / "out" / "scores.parquet").to_pandas()
    assert list(out.columns) == ["x", "n", "prediction", "model_version", "request_id"]
    assert list(out["prediction"]) == expected(frame)
    assert list(out["n"]) == list(range(2500))
    assert set(out["model_version"]) == {"double/1"}
    assert list(out["request_id"]) == [f"batch-{result.batch_id}-{i}" for i in range(2500)]
    assert listing(folder / "out") == ["scores.parquet"]  # no temporary file left

    log = read_predictions(serving_ws, "double")
    assert len(log) == 2500 and set(log["batch_id"]) == {result.batch_id}
    assert set(log["variant"]) == {"batch"} and log["revision"].isna().all()
    by_id = log.set_index("request_id")
    row = by_id.loc[f"batch-{result.batch_id}-7"]
    assert row["inputs"] == '[{"x":1.75,"n":7}]' and row["outputs"] == "[10.5]"
    assert row["model"] == "double/1" and not row["shadow"] and row["error"] is None


def test_a_glob_of_csv_files_becomes_a_folder_of_parts(serving_ws: Workspace, folder: Path) -> None:
    folder = folder / "in"
    folder.mkdir()
    frames = [inputs(120, 0), inputs(50, 120), inputs(200, 170)]
    for i, frame in enumerate(frames):
        frame.to_csv(folder / f"day-{i}.csv", index=False)
    (folder / "notes.txt").write_text("not scored: the glob names CSV files only")
    result = batch_predict(
        "models:/double/2",
        str(folder / "day-*.csv"),
        folder / "scores",
        chunk_rows=100,
        deployment="nightly",
        workspace=serving_ws,
    )
    assert (result.rows, result.chunks, result.files) == (370, 4, 3)
    assert listing(folder / "scores") == [f"part-0000{i}.parquet" for i in range(4)]
    out = pq.read_table(folder / "scores").to_pandas()
    assert list(out["prediction"]) == expected(pd.concat(frames), 3.0)
    assert str(out["n"].dtype) == "int64" and str(out["x"].dtype) == "float64"
    assert len(read_predictions(serving_ws, "nightly")) == 370
    assert read_predictions(serving_ws, "double").empty


def test_columns_that_do_not_match_the_signature_are_refused_before_anything_is_written(
    serving_ws: Workspace, folder: Path
) -> None:
    out = folder / "out.parquet"
    cases = {
        "missing": pd.DataFrame({"x": [1.0]}),
        "extra": inputs(3).assign(user=["a", "b", "c"]),
        "typed": pd.DataFrame({"x": ["one"], "n": [1]}),
    }
    for name, frame in cases.items():
        frame.to_parquet(folder / f"{name}.parquet")
    with pytest.raises(SchemaMismatch, match=r"missing column\(s\) \['n'\]"):
        batch_predict("double/1", folder / "missing.parquet", out, workspace=serving_ws)
    with pytest.raises(SchemaMismatch, match=r"unexpected column\(s\) \['user'\]"):
        batch_predict("double/1", folder / "extra.parquet", out, workspace=serving_ws)
    with pytest.raises(SchemaMismatch, match=r"'x' must be float64, got (string|large_string)"):
        batch_predict("double/1", folder / "typed.parquet", out, workspace=serving_ws)
    # A later file of a glob is checked before the first is scored.
    (folder / "glob").mkdir()
    inputs(10).to_csv(folder / "glob" / "a.csv", index=False)
    pd.DataFrame({"x": [1.0], "m": [2]}).to_csv(folder / "glob" / "b.csv", index=False)
    with pytest.raises(SchemaMismatch, match=r"b\.csv doesn't match.*\['n'\].*\['m'\]"):
        batch_predict("double/1", folder / "glob", out, chunk_rows=2, workspace=serving_ws)
    assert not out.exists() and read_predictions(serving_ws, "double").empty


def test_a_bad_value_in_a_later_chunk_leaves_no_output_and_no_log(
    serving_ws: Workspace, folder: Path
) -> None:
    (folder / "in").mkdir()
    inputs(40).to_csv(folder / "in" / "a.csv", index=False)
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "n": ["1", "", "3"]}).to_csv(
        folder / "in" / "b.csv", index=False
    )
    with pytest.raises(
        SchemaMismatch,
        match=r"'n' of .*b\.csv has 1 empty value\(s\) \(row 2; 1 is the file's first row\)",
    ):
        batch_predict(
            "double/1", folder / "in", folder / "out", chunk_rows=10, workspace=serving_ws
        )
    pd.DataFrame({"x": [1.0], "n": [1.5]}).to_parquet(folder / "half.parquet")
    with pytest.raises(SchemaMismatch, match=r"Column 'n' of .*half\.parquet can't be int64"):
        batch_predict("double/1", folder / "half.parquet", folder / "out", workspace=serving_ws)
    assert listing(folder).count("out") == 0
    assert not [p for p in os.listdir(folder) if p.startswith(".")]
    assert read_predictions(serving_ws, "double").empty


def test_a_csv_value_its_column_cannot_hold_is_named_with_its_row(
    serving_ws: Workspace, folder: Path
) -> None:
    # Arrow's CSV reader names the column's position and the value only: "In CSV column #1:
    # CSV conversion error to int64: invalid value 'x4'".
    frame = inputs(200_000).astype({"n": object})
    frame.loc[150_000, "n"] = "x4"  # past the reader's first blocks
    frame.to_csv(folder / "deep.csv", index=False)
    with pytest.raises(
        SchemaMismatch,
        match=r"deep\.csv as the model's inputs: column 'n', row 150001 \(1 is the file's first "
        r"row\): 'x4' can't be int64\. Fix or drop that row first\.",
    ):
        batch_predict("double/1", folder / "deep.csv", folder / "out", workspace=serving_ws)
    (folder / "first.csv").write_text("x,n\n0.5,1\nabc,2\n")  # in the block read at open
    with pytest.raises(SchemaMismatch, match=r"column 'x', row 2 .*'abc' can't be float64"):
        batch_predict("double/1", folder / "first.csv", folder / "out", workspace=serving_ws)
    assert "out" not in listing(folder)
    assert read_predictions(serving_ws, "double").empty


def test_a_model_that_raises_on_a_chunk_names_its_rows_and_writes_nothing(
    serving_ws: Workspace, folder: Path
) -> None:
    frame = inputs(100)
    frame.loc[57, "x"] = -1.0  # fragile/1 raises on a negative x
    frame.to_parquet(folder / "in.parquet")
    with pytest.raises(
        BatchScoringFailed,
        match=r"rows 51–60 of .*in\.parquet \(1 is its first row\) with fragile/1 failed: ValueError: x must not be negative",
    ):
        batch_predict(
            "fragile/1",
            folder / "in.parquet",
            folder / "out.parquet",
            chunk_rows=10,
            workspace=serving_ws,
        )
    assert listing(folder) == ["in.parquet"]
    assert read_predictions(serving_ws, "fragile").empty


def test_an_existing_output_is_refused_unless_overwritten(
    serving_ws: Workspace, folder: Path
) -> None:
    inputs(5).to_parquet(folder / "in.parquet")
    out = folder / "scores"
    out.mkdir()
    (out / "old.parquet").write_bytes(b"old")
    with pytest.raises(OutputExists, match=r"pass overwrite=True to replace") as refused:
        batch_predict("double/1", folder / "in.parquet", out, workspace=serving_ws)
    assert "--overwrite" not in str(refused.value)  # the CLI's option, named by the CLI
    assert listing(out) == ["old.parquet"]
    batch_predict("double/1", folder / "in.parquet", out, overwrite=True, workspace=serving_ws)
    assert listing(out) == ["part-00000.parquet"]
    assert not [p for p in os.listdir(folder) if p.startswith(".")]


def test_missing_input_and_an_empty_file(serving_ws: Workspace, folder: Path) -> None:
    with pytest.raises(InputNotFound, match="No input at"):
        batch_predict("double/1", folder / "nope.parquet", folder / "o", workspace=serving_ws)
    with pytest.raises(InputNotFound, match="names no Parquet or CSV"):
        batch_predict("double/1", str(folder / "*.csv"), folder / "o", workspace=serving_ws)
    inputs(0).astype({"n": "int64"}).to_parquet(folder / "empty.parquet")
    result = batch_predict(
        "double/1", folder / "empty.parquet", folder / "o.parquet", workspace=serving_ws
    )
    assert (result.rows, result.chunks, result.logged) == (0, 0, 0)
    schema = pq.read_schema(folder / "o.parquet")
    assert schema.names == ["x", "n", "prediction", "model_version", "request_id"]


def test_times_and_text_are_cast_to_the_signature_and_logged_as_iso(
    serving_ws: Workspace, folder: Path
) -> None:
    from loopml.registry import PythonModel

    class Hours(PythonModel):
        def predict(self, model_input: Any) -> Any:
            return (model_input["at"].dt.hour + model_input["k"].str.len()).to_numpy()

    example = pd.DataFrame({"at": pd.to_datetime(["2026-12-01T10:00:00Z"]), "k": ["ab"]})
    serving_ws.models.register("hours", Hours(), input_example=example)
    (folder / "in.csv").write_text("at,k\n2026-12-01T10:00:00+00:00,abc\n2026-12-01T13:30:00Z,a\n")
    batch_predict("hours/1", folder / "in.csv", folder / "out.parquet", workspace=serving_ws)
    out = pd.read_parquet(folder / "out.parquet")
    assert list(out["prediction"]) == [13, 14] and str(out["at"].dtype).endswith("UTC]")
    logged = read_predictions(serving_ws, "hours")
    assert list(logged["inputs"]) == [
        '[{"at":"2026-12-01T10:00:00.000000+0000","k":"abc"}]',
        '[{"at":"2026-12-01T13:30:00.000000+0000","k":"a"}]',
    ]


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_other_executors_keep_the_order(
    executor: str, serving_ws: Workspace, folder: Path, request: pytest.FixtureRequest
) -> None:
    if executor == "ray":
        request.getfixturevalue("ray_cluster")
    frame = inputs(1000)
    frame.to_parquet(folder / "in.parquet")
    result = batch_predict(
        "double/2",
        folder / "in.parquet",
        folder / "out.parquet",
        executor=executor,
        max_workers=2,
        chunk_rows=100,
        workspace=serving_ws,
    )
    assert result.chunks == 10 and result.executor == executor
    out = pq.read_table(folder / "out.parquet").to_pandas()
    assert list(out["prediction"]) == expected(frame, 3.0)


@pytest.mark.slow
def test_input_and_output_on_object_storage(serving_ws: Workspace) -> None:
    from services import fresh_s3_bucket, s3_endpoint, s3_filesystem

    fs = s3_filesystem()
    bucket = fresh_s3_bucket()
    frames = [inputs(30, 0), inputs(30, 30)]
    for i, frame in enumerate(frames):
        with fs.open(f"{bucket}/in/part-{i}.parquet", "wb") as fh:
            frame.to_parquet(fh)
    options = {"client_kwargs": {"endpoint_url": s3_endpoint()}, "skip_instance_cache": True}
    result = batch_predict(
        "double/1",
        f"s3://{bucket}/in/*.parquet",
        f"s3://{bucket}/out/scores.parquet",
        chunk_rows=25,
        storage_options=options,
        workspace=serving_ws,
    )
    assert (result.rows, result.chunks, result.files) == (60, 3, 2)
    fs.invalidate_cache()
    assert fs.ls(f"{bucket}/out", detail=False) == [f"{bucket}/out/scores.parquet"]
    with fs.open(f"{bucket}/out/scores.parquet", "rb") as fh:
        out = pq.read_table(fh).to_pandas()
    assert list(out["prediction"]) == expected(pd.concat(frames))
    with pytest.raises(OutputExists):
        batch_predict(
            "double/1",
            f"s3://{bucket}/in/part-0.parquet",
            f"s3://{bucket}/out/scores.parquet",
            storage_options=options,
            workspace=serving_ws,
        )
    batch_predict(  # a folder of parts, replacing the file
        "double/1",
        f"s3://{bucket}/in/",
        f"s3://{bucket}/out/scores",
        chunk_rows=25,
        storage_options=options,
        workspace=serving_ws,
    )
    fs.invalidate_cache()
    assert sorted(fs.find(f"{bucket}/out")) == [f"{bucket}/out/scores.parquet"] + [
        f"{bucket}/out/scores/part-0000{i}.parquet" for i in range(3)
    ]


@pytest.mark.slow
def test_nightly_scoring_is_a_pipeline_task(serving_ws: Workspace, folder: Path) -> None:
    from loopml.pipelines import pipeline, run_pipeline, task

    @task
    def score(day: str, folder: str) -> dict[str, Any]:
        result = batch_predict(
            "double/1",
            f"{folder}/{day}.parquet",
            f"{folder}/scores-{day}.parquet",
            workspace=serving_ws,
        )
        return result.to_dict()

    @pipeline
    def nightly(day: str = "2026-12-01", folder: str = ""):
        return score(day, folder)

    inputs(20).to_parquet(folder / "2026-12-01.parquet")
    run = run_pipeline(nightly, params={"folder": str(folder)}, workspace=serving_ws)
    assert run.status == "FINISHED", run
    out = pq.read_table(folder / "scores-2026-12-01.parquet")
    assert out.num_rows == 20 and out.column("prediction").to_pylist() == expected(inputs(20))
    assert len(read_predictions(serving_ws, "double")) == 20


def test_log_files_written_before_batch_id_read_back_with_it_empty(
    serving_ws: Workspace, folder: Path
) -> None:
    import pyarrow as pa

    from loopml.serving.log import PREDICTIONS, log_schema, write_table

    old = pa.schema([f for f in log_schema(PREDICTIONS) if f.name != "batch_id"])
    row = {"request_id": "r1", "time": pd.Timestamp("2026-11-01T10:00Z"), "deployment": "churn"}
    table = pa.Table.from_pylist([row], schema=old)
    write_table(serving_ws.blobs, PREDICTIONS, "churn", "2026-11-01T10", table)
    log = read_predictions(serving_ws, "churn")
    assert list(log["request_id"]) == ["r1"] and log["batch_id"].isna().all()
    inputs(3).to_parquet(folder / "in.parquet")
    batch = batch_predict(
        "double/1", folder / "in.parquet", folder / "o", deployment="churn", workspace=serving_ws
    )
    both = read_predictions(serving_ws, "churn")  # old and new files together
    assert list(both["batch_id"].fillna("-")) == ["-", *[batch.batch_id] * 3]
