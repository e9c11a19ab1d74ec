"""The prediction log: batched Parquet files by deployment and hour, read back with DuckDB,
on a local folder and on an S3-compatible server."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loopml.exceptions import LoopmlWarning
from loopml.serving.log import PredictionLogger, read_feedback, read_predictions
from loopml.workspace import Workspace

T0 = datetime(2026, 12, 1, 9, 59, 58, tzinfo=UTC)


def row(i: int, at: datetime, deployment: str = "churn", **changes: Any) -> dict[str, Any]:
    base = {
        "request_id": f"r{i}",
        "time": at,
        "deployment": deployment,
        "revision": 1,
        "model": "churn/1",
        "variant": "primary",
        "shadow": False,
        "inputs": f'[{{"x":{i}}}]',
        "outputs": f"[{i}]",
        "latency_ms": 1.5,
        "error": None,
    }
    return {**base, **changes}


@pytest.fixture(params=["file", "s3"])
def log_ws(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    blob_url_factory: Callable[[str], tuple[str, dict[str, Any]]],
) -> Iterator[Workspace]:
    """A workspace whose blob store is a local folder or a bucket on the S3 test server."""
    url, options = blob_url_factory(request.param)
    Workspace.init(tmp_path / "ws").close()
    ws = Workspace.open(tmp_path / "ws", artifacts_url=url, **options)
    yield ws
    ws.close()


@pytest.mark.slow
def test_rows_are_written_by_deployment_and_hour_and_read_back(log_ws: Workspace) -> None:
    logger = PredictionLogger(log_ws.blobs, flush_interval=60, batch_rows=1000)
    with logger:
        for i in range(4):  # two before 10:00, two after
            logger.log(row(i, T0 + timedelta(seconds=i)))
        logger.log(row(9, T0, deployment="other"))
        logger.feedback(
            {"request_id": "r1", "time": T0, "deployment": "churn", "label": "1", "reward": None}
        )
        assert read_predictions(log_ws, "churn").empty  # queued, not written yet
    assert logger.written == 6 and logger.pending() == 0
    blobs = log_ws.blobs
    root = blobs.root
    listing = (
        sorted(str(p.relative_to(root)) for p in Path(root).rglob("*.parquet"))
        if blobs.is_local
        else sorted(p.removeprefix(root + "/") for p in blobs.fs.find(root))
    )
    folders = sorted({p.rsplit("/", 1)[0] for p in listing if p.endswith(".parquet")})
    assert folders == [
        "feedback/deployment=churn/hour=2026-12-01T09",
        "predictions/deployment=churn/hour=2026-12-01T09",
        "predictions/deployment=churn/hour=2026-12-01T10",
        "predictions/deployment=other/hour=2026-12-01T09",
    ]
    log = read_predictions(log_ws, "churn")
    assert list(log["request_id"]) == ["r0", "r1", "r2", "r3"]
    assert list(log["revision"]) == [1] * 4 and not log["shadow"].any()
    assert log["time"].iloc[0] == T0
    ten = T0 + timedelta(seconds=2)
    assert list(read_predictions(log_ws, "churn", start=ten)["request_id"]) == ["r2", "r3"]
    assert list(read_predictions(log_ws, "churn", end=ten)["request_id"]) == ["r0", "r1"]
    naive = "2026-12-01T09:59:59"  # naive times are UTC
    assert list(read_predictions(log_ws, "churn", naive, ten)["request_id"]) == ["r1"]
    assert list(read_predictions(log_ws, "other")["request_id"]) == ["r9"]
    feedback = read_feedback(log_ws, "churn")
    assert list(feedback.columns) == ["request_id", "time", "deployment", "label", "reward"]
    assert list(feedback["label"]) == ["1"]


def test_the_batch_size_triggers_a_write_before_the_interval(sqlite_ws: Workspace) -> None:
    logger = PredictionLogger(sqlite_ws.blobs, flush_interval=60, batch_rows=3).start()
    try:
        for i in range(3):
            logger.log(row(i, T0))
        deadline = time.monotonic() + 5
        while logger.written < 3:
            assert time.monotonic() < deadline, "the full batch was not written"
            time.sleep(0.01)
        assert len(read_predictions(sqlite_ws, "churn")) == 3
    finally:
        logger.close()


def test_the_interval_writes_without_close(sqlite_ws: Workspace) -> None:
    logger = PredictionLogger(sqlite_ws.blobs, flush_interval=0.05, batch_rows=1000).start()
    try:
        logger.log(row(0, T0))
        deadline = time.monotonic() + 5
        while read_predictions(sqlite_ws, "churn").empty:
            assert time.monotonic() < deadline, "the interval did not write"
            time.sleep(0.02)
    finally:
        logger.close()


def test_a_failed_write_keeps_the_rows_for_the_next_try(sqlite_ws: Workspace) -> None:
    blocker = Path(sqlite_ws.blobs.root) / "predictions"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")  # the partition folder can't be made
    logger = PredictionLogger(sqlite_ws.blobs, flush_interval=60, batch_rows=1000)
    logger.log(row(0, T0))
    with pytest.raises(OSError):
        logger.flush()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert logger.flush(warn=True) == 0
    assert any(
        issubclass(w.category, LoopmlWarning) and "kept and retried" in str(w.message)
        for w in caught
    )
    assert logger.pending() == 1
    blocker.unlink()
    assert logger.flush() == 1
    assert list(read_predictions(sqlite_ws, "churn")["request_id"]) == ["r0"]
    assert not list(Path(sqlite_ws.blobs.root).rglob(".tmp-*"))  # no half-written files


def test_a_bad_time_is_refused(sqlite_ws: Workspace) -> None:
    from loopml.exceptions import InvalidInput

    with pytest.raises(InvalidInput, match="not an ISO 8601 time"):
        read_predictions(sqlite_ws, "churn", start="yesterday")


def test_a_row_that_cannot_be_stored_is_dropped_and_the_others_are_written(
    sqlite_ws: Workspace,
) -> None:
    logger = PredictionLogger(sqlite_ws.blobs, flush_interval=60, batch_rows=1000)
    logger.log(row(0, T0, inputs=[{"x": 10**23}]))  # JSON text can't hold it (orjson: 64 bits)
    logger.log(row(1, T0, inputs=[{"x": 1}]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert logger.flush(warn=True) == 1
    messages = [str(w.message) for w in caught if issubclass(w.category, LoopmlWarning)]
    assert len(messages) == 1, messages
    assert "1 row(s)" in messages[0] and "'r0'" in messages[0] and "dropped" in messages[0]
    assert logger.pending() == 0 and logger.dropped == 1  # not kept, not retried forever
    logger.log(row(2, T0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger.close()  # the last write is clean: no warning, no error
    assert list(read_predictions(sqlite_ws, "churn")["request_id"]) == ["r1", "r2"]
