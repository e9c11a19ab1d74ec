"""Pipelines on a real local Ray cluster (started once per session)."""

from __future__ import annotations

from types import ModuleType

import pytest

import loopml
from loopml.pipelines import ClusterUnavailable, pipeline, run_pipeline, task
from loopml.pipelines import records as rec
from loopml.workspace import Workspace


@task
def source(n: int) -> list[int]:
    return list(range(n))


@task
def scale(xs: list[int], k: int) -> list[int]:
    loopml.log_metric("scaled", float(k))
    return [x * k for x in xs]


@task
def combine(*parts: list[int]) -> int:
    return sum(sum(p) for p in parts)


@task
def broken(xs: list[int]) -> int:
    raise RuntimeError(f"broken on {len(xs)}")


@pipeline
def spread(n: int = 10, fail: bool = False):
    xs = source(n)
    parts = [scale(xs, k) for k in (1, 2, 3)]
    if fail:
        broken(xs)
    return combine(*parts)


@pytest.fixture
def ray_ws(pws: Workspace, ray_cluster: ModuleType) -> Workspace:
    return pws


@pytest.mark.slow
def test_pipeline_runs_as_ray_tasks(ray_ws: Workspace) -> None:
    run = run_pipeline(spread, {"n": 10}, executor="ray", cache=False)
    assert run.result == 45 * 6
    stored = rec.get_run(ray_ws.db, run.id)
    assert stored.executor == "ray"
    assert {t.status for t in stored.tasks} == {"COMPLETED"}
    # Ray workers logged to the pipeline's tracking run through the shared SQLite file.
    history = ray_ws.metric_history(stored.tracking_run_id or "", "scaled")
    assert sorted(history["value"].tolist()) == [1.0, 2.0, 3.0]


@pytest.mark.slow
def test_failure_on_ray_keeps_the_remote_traceback(ray_ws: Workspace) -> None:
    run = run_pipeline(spread, {"fail": True}, executor="ray", raise_on_failure=False)
    assert run.status == "FAILED"
    assert run.tasks["broken"].error == "RuntimeError: broken on 10"
    assert "in broken" in (run.tasks["broken"].traceback or "")
    assert run.tasks["combine"].status == "COMPLETED"  # an independent branch


class _FlakyRay:
    """Stands in for the ``ray`` module's init/shutdown: the server-side failures a loaded
    ``ray://`` head gives (its client server couldn't start this client's process)."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        self.inits = 0
        self.shutdowns = 0

    def init(self, address: str | None = None, **kwargs: object) -> None:
        self.inits += 1
        if self.failures:
            raise ConnectionError(self.failures.pop(0))

    def shutdown(self) -> None:
        self.shutdowns += 1


SERVER_SIDE = (
    "Initialization failure from server:\nRuntimeError: Starting Ray client server failed."
)


def test_a_client_server_that_failed_to_start_is_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loopml.pipelines import ray_executor

    monkeypatch.setattr(ray_executor.time, "sleep", lambda s: None)
    ray = _FlakyRay([SERVER_SIDE, SERVER_SIDE])
    ray_executor._connect(ray, "ray://127.0.0.1:1", {})
    assert (ray.inits, ray.shutdowns) == (3, 2)

    ray = _FlakyRay([SERVER_SIDE] * 3)
    with pytest.raises(ClusterUnavailable, match="Starting Ray client server failed"):
        ray_executor._connect(ray, "ray://127.0.0.1:1", {})
    assert ray.inits == ray_executor.CONNECT_ATTEMPTS


def test_an_address_nothing_answers_on_is_not_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loopml.pipelines import ray_executor

    monkeypatch.setattr(ray_executor.time, "sleep", lambda s: None)
    ray = _FlakyRay(["ray client connection timeout"])
    with pytest.raises(ClusterUnavailable, match="Cannot reach the Ray cluster"):
        ray_executor._connect(ray, "ray://127.0.0.1:1", {})
    assert ray.inits == 1
