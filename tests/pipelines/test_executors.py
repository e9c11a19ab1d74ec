"""The executor seam, one contract for every implementation: inline, threads, processes and
Ray (a real local cluster)."""

from __future__ import annotations

import os
import queue
import sys
import time
from collections.abc import Iterator
from types import ModuleType

import pytest

from loopml.exceptions import LoopmlError, MissingDependency
from loopml.pipelines import ExecutorClosed
from loopml.pipelines.context import TaskContext, function_payload
from loopml.pipelines.executors import Executor, Job, Outcome, resolve_executor

EXECUTORS = ["inline", "threads", "processes", "ray"]


def add(a: int, b: int) -> int:
    return a + b


def fail(message: str) -> int:
    raise KeyError(message)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def pid() -> int:
    return os.getpid()


def _open(request: pytest.FixtureRequest) -> Iterator[Executor]:
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    pool, _ = resolve_executor(request.param, max_workers=2)
    yield pool
    pool.close()


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    yield from _open(request)


# inline runs a job inside submit(): by the time it returns there is nothing left to cancel.
@pytest.fixture(params=[name for name in EXECUTORS if name != "inline"])
def async_executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    yield from _open(request)


_ids = iter(range(1, 1_000_000))


def job(fn, *args) -> Job:  # type: ignore[no-untyped-def]
    context = TaskContext("p", "run", fn.__name__, fn.__name__, 1)
    return Job(next(_ids), fn, args, {}, context, payload=lambda: function_payload(fn))


def submit(pool: Executor, *jobs: Job) -> queue.SimpleQueue[Outcome]:
    results: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    for item in jobs:
        pool.submit(item, results.put)
    return results


@pytest.mark.slow
def test_returns_values(executor: Executor) -> None:
    results = submit(executor, job(add, 1, 2), job(add, 3, 4))
    outcomes = [results.get(timeout=60) for _ in range(2)]
    assert sorted(o.value for o in outcomes) == [3, 7]
    assert all(o.ok and o.job.started_at is not None for o in outcomes)


@pytest.mark.slow
def test_reports_errors_with_the_traceback(executor: Executor) -> None:
    outcome = submit(executor, job(fail, "missing")).get(timeout=60)
    assert not outcome.ok and not outcome.killed
    assert isinstance(outcome.error, KeyError)
    assert "in fail" in outcome.traceback and "KeyError" in outcome.traceback


@pytest.mark.slow
def test_cancel_stops_waiting_for_a_running_job(async_executor: Executor) -> None:
    executor = async_executor
    slow = job(nap, 30)
    results = submit(executor, slow)
    deadline = time.monotonic() + 60
    while slow.started_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    executor.cancel(slow)
    # The executor still has room for new work after a cancel.
    assert submit(executor, job(add, 2, 2)).get(timeout=60).value == 4
    with pytest.raises(queue.Empty):
        results.get(timeout=0.2)


def test_a_closed_executor_refuses_jobs_with_a_loopml_error(async_executor: Executor) -> None:
    async_executor.close()
    with pytest.raises(ExecutorClosed) as info:
        submit(async_executor, job(add, 1, 1))
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, LoopmlError)
    assert f"The {async_executor.name} executor is closed" in str(info.value)


@pytest.mark.slow
def test_process_pool_runs_in_other_processes() -> None:
    pool, _ = resolve_executor("processes", max_workers=1)
    try:
        outcome = submit(pool, job(pid)).get(timeout=60)
        assert outcome.ok and outcome.value != os.getpid()
    finally:
        pool.close()


def test_ray_missing_is_a_clear_error_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(MissingDependency) as info:
        resolve_executor("ray")
    assert "pip install 'loopml[ray]'" in str(info.value)
    assert "Ray executor" in str(info.value)
    with pytest.raises(MissingDependency):
        resolve_executor("ray://127.0.0.1:10001")


@pytest.mark.slow
def test_ray_uses_the_running_local_cluster(ray_cluster: ModuleType) -> None:
    pool, _ = resolve_executor("ray")
    try:
        outcome = submit(pool, job(pid)).get(timeout=60)
        assert outcome.ok and outcome.value != os.getpid()  # a Ray worker process
        assert ray_cluster.cluster_resources().get("CPU") == 2
    finally:
        pool.close()
