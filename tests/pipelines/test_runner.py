"""Running pipelines: records, caching, failures, retries, timeouts, resume, tracking —
on every metadata backend and every local executor."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import loopml
from loopml.exceptions import LoopmlError
from loopml.pipelines import (
    OutputNotStorable,
    PipelineFailed,
    TaskOutputNotFound,
    current_task,
    get_pipeline_run,
    pipeline,
    resume,
    run_pipeline,
    task,
)
from loopml.pipelines import records as rec
from loopml.workspace import Workspace


def mark(folder: str, name: str) -> None:
    """Leave a file in ``folder``: tasks count their calls this way, across processes."""
    Path(folder, f"{name}-{uuid.uuid4().hex}").touch()


def count_marks(folder: Path | str, prefix: str) -> int:
    return sum(1 for p in Path(folder).iterdir() if p.name.startswith(prefix + "-"))


# -- a small pipeline with two branches ------------------------------------------------------


@task
def numbers(n: int, marks: str) -> list[int]:
    mark(marks, "numbers")
    return list(range(n))


@task
def square(xs: list[int], marks: str) -> list[int]:
    mark(marks, "square")
    loopml.log_metric("squared", len(xs))
    return [x * x for x in xs]


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@task
def explode(xs: list[int], marks: str) -> int:
    mark(marks, "explode")
    if not Path(marks, "fixed").exists():
        raise ValueError(f"cannot handle {len(xs)} numbers")
    return len(xs)


@task
def describe(count: int, s: int) -> str:
    return f"{count}:{s}"


@pipeline
def branches(n: int = 4, marks: str = ""):
    xs = numbers(n, marks)
    s = total(square(xs, marks))
    return describe(explode(xs, marks), s)


def test_run_records_every_task_and_a_tracking_run(any_ws: Workspace, marks: Path) -> None:
    (marks / "fixed").touch()
    run = run_pipeline(branches, {"n": 4, "marks": str(marks)}, workspace=any_ws)
    assert run.ok and run.status == "FINISHED"
    assert run.result == "4:14"
    assert run.output("square") == [0, 1, 4, 9]
    stored = rec.get_run(any_ws.db, run.id[:8])
    assert stored.status == "FINISHED" and stored.pipeline == "branches"
    assert stored.params == {"n": 4, "marks": str(marks)}
    assert stored.trigger == "manual" and stored.attempt == 1
    assert [t.node for t in stored.tasks] == ["numbers", "square", "total", "explode", "describe"]
    for item in stored.tasks:
        assert item.status == "COMPLETED" and item.attempts == 1
        assert item.output_digest and len(item.output_digest) == 64
        assert item.start_time is not None and item.end_time is not None
        assert item.duration is not None and item.cache_key
    tracking = any_ws.get_run(stored.tracking_run_id or "")
    assert tracking.status == "FINISHED" and tracking.experiment == "branches"
    assert tracking.tags["loopml.pipeline_run"] == run.id
    assert tracking.params["n"] == "4"
    assert any_ws.metric_history(tracking.id, "squared")["value"].tolist() == [4.0]


def test_output_of_a_missing_or_failed_task_names_the_tasks_that_have_one(
    pws: Workspace, marks: Path
) -> None:
    run = run_pipeline(branches, {"marks": str(marks)}, workspace=pws, raise_on_failure=False)
    with pytest.raises(TaskOutputNotFound) as info:
        run.output("nope")
    assert isinstance(info.value, KeyError) and isinstance(info.value, LoopmlError)
    assert str(info.value) == (
        f"Pipeline run {run.id[:8]} of 'branches' has no task 'nope'; its tasks are: "
        "numbers, square, total, explode, describe."
    )
    with pytest.raises(TaskOutputNotFound) as failed:
        get_pipeline_run(run.id, workspace=pws).output("describe")
    assert str(failed.value) == (
        f"Task 'describe' of pipeline run {run.id[:8]} has no output: it is SKIPPED. Tasks "
        "with an output: numbers, square, total."
    )
    with pytest.raises(TaskOutputNotFound, match="has no task 'nope'; its tasks are: numbers"):
        rec.get_run(pws.db, run.id).task("nope")


def test_rerun_reuses_unchanged_tasks_and_no_cache_reruns(any_ws: Workspace, marks: Path) -> None:
    (marks / "fixed").touch()
    params = {"n": 3, "marks": str(marks)}
    first = run_pipeline(branches, params, workspace=any_ws)
    second = run_pipeline(branches, params, workspace=any_ws)
    assert {t.status for t in second.tasks.values()} == {"CACHED"}
    assert all(t.cached_from == first.id for t in second.tasks.values())
    assert second.result == first.result
    assert count_marks(marks, "numbers") == 1
    changed = run_pipeline(branches, {**params, "n": 5}, workspace=any_ws)
    assert changed.tasks["numbers"].status == "COMPLETED"
    forced = run_pipeline(branches, params, workspace=any_ws, cache=False)
    assert {t.status for t in forced.tasks.values()} == {"COMPLETED"}
    assert count_marks(marks, "numbers") == 3


def test_failure_skips_downstream_and_independent_branches_finish(
    any_ws: Workspace, marks: Path
) -> None:
    with pytest.raises(PipelineFailed) as info:
        run_pipeline(branches, {"marks": str(marks)}, workspace=any_ws)
    message = str(info.value)
    assert "task 'explode' failed: ValueError: cannot handle 4 numbers" in message
    assert "skipped downstream: describe" in message and "resume" in message
    run = info.value.run
    statuses = {n: t.status for n, t in run.tasks.items()}
    assert statuses == {
        "numbers": "COMPLETED",
        "square": "COMPLETED",
        "explode": "FAILED",
        "total": "COMPLETED",
        "describe": "SKIPPED",
    }
    stored = rec.get_run(any_ws.db, run.id)
    assert stored.status == "FAILED"
    assert "ValueError: cannot handle 4 numbers" in (stored.error or "")
    failed = stored.task("explode")
    assert failed.traceback and "in explode" in failed.traceback
    assert stored.task("describe").error == "upstream task 'explode' failed"
    assert any_ws.get_run(stored.tracking_run_id or "").status == "FAILED"


def test_resume_reruns_only_what_failed(any_ws: Workspace, marks: Path) -> None:
    failed = run_pipeline(branches, {"marks": str(marks)}, workspace=any_ws, raise_on_failure=False)
    assert failed.status == "FAILED"
    (marks / "fixed").touch()
    resumed = resume(failed.id[:10], workspace=any_ws)
    assert resumed.id == failed.id and resumed.status == "FINISHED"
    assert resumed.result == "4:14"
    assert count_marks(marks, "numbers") == 1 and count_marks(marks, "square") == 1
    assert count_marks(marks, "explode") == 2
    stored = rec.get_run(any_ws.db, failed.id)
    assert stored.attempt == 2 and stored.status == "FINISHED"
    assert stored.task("explode").status == "COMPLETED"
    assert stored.task("numbers").attempts == 1
    assert any_ws.get_run(stored.tracking_run_id or "").status == "FINISHED"
    again = resume(failed.id, workspace=any_ws)  # finished: nothing to do
    assert again.status == "FINISHED" and count_marks(marks, "explode") == 2


# -- retries, timeouts, bad outputs ----------------------------------------------------------


@task(retries=2, retry_delay=0.05, backoff=2.0)
def flaky(marks: str) -> int:
    Path(marks, f"flaky-{time.monotonic():.6f}").touch()
    if count_marks(marks, "flaky") < 3:
        raise ConnectionError("the database blinked")
    return 7


@pipeline
def retrying(marks: str):
    return flaky(marks)


def test_retries_with_exponential_backoff(pws: Workspace, marks: Path) -> None:
    run = run_pipeline(retrying, {"marks": str(marks)})
    assert run.result == 7
    assert run.tasks["flaky"].attempts == 3
    times = sorted(float(p.name.split("-")[1]) for p in marks.iterdir())
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1


@task(timeout=0.3)
def hang() -> int:
    time.sleep(30)
    return 1


@task
def quick() -> int:
    return 2


@pipeline
def hanging():
    return hang(), quick()


@pytest.mark.slow
def test_a_hanging_task_times_out(pws: Workspace) -> None:
    started = time.monotonic()
    run = run_pipeline(hanging, executor="threads", raise_on_failure=False)
    assert time.monotonic() - started < 10
    assert run.tasks["hang"].status == "FAILED"
    assert "TaskTimeout: Task 'hang' did not finish within its timeout of 0.3s" in (
        run.tasks["hang"].error or ""
    )
    assert run.tasks["quick"].status == "COMPLETED"


@task
def make_lock() -> object:
    return threading.Lock()


@pipeline
def unstorable():
    return make_lock()


def test_unstorable_output_is_an_error_naming_the_task(pws: Workspace) -> None:
    with pytest.raises(PipelineFailed) as info:
        run_pipeline(unstorable)
    error = info.value.run.tasks["make_lock"].error or ""
    assert error.startswith("OutputNotStorable: Task 'make_lock' returned a _thread.lock")
    assert "cannot store" in error
    assert isinstance(OutputNotStorable("x"), ValueError)


# -- scheduling ------------------------------------------------------------------------------


@task
def rendezvous(name: str, barrier: threading.Barrier) -> str:
    barrier.wait(timeout=10)  # only passes if all three run at the same time
    return name


@pipeline
def fan_out(barrier: threading.Barrier):
    return [rendezvous(n, barrier) for n in ("a", "b", "c")]


def test_independent_tasks_run_concurrently(pws: Workspace) -> None:
    run = run_pipeline(
        fan_out, {"barrier": threading.Barrier(3)}, executor="threads", max_workers=3, cache=False
    )
    assert run.result == ["a", "b", "c"]


@task
def slow_branch(signal: threading.Event) -> str:
    assert signal.wait(timeout=10), "the downstream task of the other branch never started"
    return "slow"


@task
def first_step() -> int:
    return 1


@task
def second_step(x: int, signal: threading.Event) -> int:
    signal.set()
    return x + 1


@pipeline
def uneven(signal: threading.Event):
    return slow_branch(signal), second_step(first_step(), signal)


def test_a_task_starts_as_soon_as_its_own_inputs_are_ready(pws: Workspace) -> None:
    # Level-by-level scheduling would deadlock: second_step would wait for slow_branch.
    run = run_pipeline(uneven, {"signal": threading.Event()}, max_workers=2, cache=False)
    assert run.result == ("slow", 2)


# -- values ----------------------------------------------------------------------------------


@task
def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": range(n), "y": [f"r{i}" for i in range(n)]})


@task
def arrow(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


@task
def context_info(table: pa.Table) -> dict[str, object]:
    ctx = current_task()
    assert ctx is not None
    return {"rows": table.num_rows, "node": ctx.node, "attempt": ctx.attempt, "run": ctx.run.id}


@pipeline
def tables(n: int = 3000):
    return context_info(arrow(frame(n)))


def test_tables_are_parquet_in_the_blob_store(pws: Workspace) -> None:
    run = run_pipeline(tables)
    info = run.result
    assert info["rows"] == 3000 and info["node"] == "context_info" and info["attempt"] == 1
    stored = rec.get_run(pws.db, run.id)
    assert info["run"] == stored.tracking_run_id
    assert stored.task("frame").output_format == "parquet/pandas"
    assert stored.task("arrow").output_format == "parquet/arrow"
    assert (stored.task("frame").output_size or 0) > 16 * 1024  # too big for the row
    digest = stored.task("frame").output_digest or ""
    assert pws.blobs.exists(digest)
    reloaded = get_pipeline_run(run.id[:8], workspace=pws).output("frame")
    pd.testing.assert_frame_equal(reloaded, frame.fn(3000))
    assert current_task() is None


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
@pytest.mark.slow
def test_every_local_executor_runs_the_pipeline(pws: Workspace, marks: Path, executor: str) -> None:
    (marks / "fixed").touch()
    run = run_pipeline(
        branches, {"marks": str(marks)}, executor=executor, max_workers=2, cache=False
    )
    assert run.result == "4:14"
    stored = rec.get_run(pws.db, run.id)
    assert stored.executor == executor
    # log_metric inside the task reached the pipeline's tracking run, even from a process.
    history = pws.metric_history(stored.tracking_run_id or "", "squared")
    assert history["value"].tolist() == [4.0]


def test_unknown_executor(pws: Workspace) -> None:
    from loopml.exceptions import InvalidInput

    with pytest.raises(InvalidInput, match="Unknown executor 'gpu'"):
        run_pipeline(branches, executor="gpu")


@task
def read_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


@pipeline
def reads_file(path: str):
    return read_lines(Path(path))


@pytest.mark.slow
def test_a_path_argument_is_hashed_by_its_content(pws: Workspace, tmp_path: Path) -> None:
    data = tmp_path / "rows.txt"
    data.write_text("a\nb\n")
    assert run_pipeline(reads_file, {"path": str(data)}).result == 2
    assert run_pipeline(reads_file, {"path": str(data)}).tasks["read_lines"].status == "CACHED"
    data.write_text("a\nb\nc\n")
    changed = run_pipeline(reads_file, {"path": str(data)})
    assert changed.tasks["read_lines"].status == "COMPLETED" and changed.result == 3
