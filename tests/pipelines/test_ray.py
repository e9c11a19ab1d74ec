"""Pipelines on a real local Ray cluster (started once per session)."""

from __future__ import annotations

from types import ModuleType

import pytest

import loopml
from loopml.pipelines import pipeline, run_pipeline, task
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
