"""``ws.pipelines``: run, resume, backfill and inspect pipelines of one workspace.

ws.pipelines.run("pipelines.py:train", params={"day": "2026-11-01"})
ws.pipelines.runs(status="failed")
"""

from __future__ import annotations

from loopml.namespaces import Namespace, WithWorkspace
from loopml.pipelines import records
from loopml.pipelines.backfill import backfill
from loopml.pipelines.events import emit_event, list_events
from loopml.pipelines.explain import explain_cache
from loopml.pipelines.runner import get_pipeline_run, resume, run_pipeline


class Pipelines(Namespace):
    """The :mod:`loopml.pipelines` functions with ``workspace=`` filled in, and the recorded
    pipeline runs."""

    run = WithWorkspace(run_pipeline)
    resume = WithWorkspace(resume)
    backfill = WithWorkspace(backfill)
    get_run = WithWorkspace(get_pipeline_run)
    explain_cache = WithWorkspace(explain_cache)
    emit_event = WithWorkspace(emit_event)
    list_events = WithWorkspace(list_events)

    def runs(
        self,
        pipeline: str | None = None,
        status: str | None = None,
        partition: str | None = None,
        limit: int = 100,
        include_superseded: bool = True,
    ) -> list[records.PipelineRunRecord]:
        """Recorded pipeline runs, newest first (without their task runs)."""
        return records.list_runs(
            self.workspace.db, pipeline, status, partition, limit, include_superseded
        )
