"""The pipeline pages: pipelines with their DAG and triggers (schedules, new data, events),
their runs, and a run's tasks with status, duration, retries and logs (error and traceback).

A pipeline's definition is code: its DAG and triggers are read by importing the ``ref`` its
runs recorded (``path/to/file.py:name`` or ``module:name``, relative to the workspace), as
``loopml pipelines`` and the scheduler do. A ref that no longer imports is shown as such;
the runs' records are shown regardless.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loopml.exceptions import NotFound
from loopml.server.context import EXPERIMENT
from loopml.server.errors import ApiError
from loopml.server.ui.graph import Node, render_svg
from loopml.server.ui.render import PageNotFound, Renderer, page

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.pipelines.records import PipelineRunRecord
    from loopml.server.context import ServerContext

#: Pipeline runs read to list the pipelines (newest first).
RECENT_RUNS = 2000


def dag_graph(
    deps: dict[str, tuple[str, ...]] | None,
    nodes: list[str],
    labels: dict[str, str],
    status: dict[str, str] | None = None,
    detail: dict[str, str] | None = None,
) -> str:
    """The DAG as SVG: ``deps`` maps each node to the nodes it reads (None: edges unknown,
    the nodes are drawn in order); ``status`` colours the boxes.

    >>> "train" in dag_graph({"load": (), "train": ("load",)}, ["load", "train"], {})
    True
    """
    status = status or {}
    detail = detail or {}
    edges: list[tuple[str, str]] = []
    if deps is not None:
        nodes = [n for n in nodes if n in deps] + [n for n in deps if n not in nodes]
        edges = [(d, n) for n in nodes for d in deps.get(n, ()) if d in deps]
    boxes = [
        Node(n, labels.get(n, n), detail.get(n, status.get(n, "")), status.get(n, ""))
        for n in nodes
    ]
    return render_svg(boxes, edges, "pipeline DAG")


class PipelinePages:
    def __init__(self, ctx: ServerContext, renderer: Renderer) -> None:
        self.ctx = ctx
        self.ws = ctx.workspace
        self.renderer = renderer
        self.definitions: dict[str, Any] = ctx.state.setdefault("ui.pipelines", {})

    def definition(self, ref: str | None) -> tuple[Any, str | None]:
        """(the Pipeline, None), or (None, why it can't be shown)."""
        if not ref:
            return None, "its runs recorded no ref to import it from"
        if ref in self.definitions:
            return self.definitions[ref]
        from loopml.pipelines.refs import load_pipeline

        try:
            found: tuple[Any, str | None] = (load_pipeline(ref, self.ws.root), None)
        except Exception as exc:  # user code: any error means "can't show the definition"
            found = (None, f"{ref} does not import here: {type(exc).__name__}: {exc}")
        self.definitions[ref] = found
        return found

    async def visible(
        self, request: Request, runs: list[PipelineRunRecord]
    ) -> list[PipelineRunRecord]:
        """The pipeline runs whose tracking run's experiment the caller may read."""
        readable = self.ctx.access.readable(request, EXPERIMENT)
        if readable is None:
            return runs
        shown = []
        for run in runs:
            if run.tracking_run_id is None:
                continue
            try:
                record = await self.ctx.call(self.ws.runs.get, run.tracking_run_id)
            except NotFound:
                continue
            if str(record.experiment_id) in readable:
                shown.append(run)
        return shown

    async def pipelines(self, request: Request) -> Response:
        runs = await self.visible(
            request, await self.ctx.call(self.ws.pipelines.runs, None, None, None, RECENT_RUNS)
        )
        by_name: dict[str, dict[str, Any]] = {}
        for run in runs:
            entry = by_name.setdefault(
                run.pipeline, {"name": run.pipeline, "last": run, "count": 0, "failed": 0}
            )
            entry["count"] += 1
            entry["failed"] += run.status == "FAILED"
        return self.renderer.page(
            "pipelines.html",
            nav="pipelines",
            pipelines=sorted(by_name.values(), key=lambda e: e["name"]),
            runs=runs[:50],
        )

    async def pipeline(self, request: Request) -> Response:
        name = request.path_params["name"]
        runs = await self.visible(
            request, await self.ctx.call(self.ws.pipelines.runs, name, None, None, 100)
        )
        if not runs:
            raise PageNotFound(f"No pipeline {name!r} has run on this server.")
        ref = next((r.ref for r in runs if r.ref), None)
        pipe, why = await self.ctx.call(self.definition, ref)
        graph = None
        triggers: list[dict[str, Any]] = []
        if pipe is not None:
            try:
                build = await self.ctx.call(pipe.shape)
                dag = build.dag
                graph = dag_graph(dag.deps, list(dag.order), dict(dag.labels))
            except Exception as exc:  # the body needs param values to decide its shape
                why = f"its DAG depends on param values ({type(exc).__name__}: {exc})"
            now = datetime.now(UTC)
            for trig in pipe.triggers:
                upcoming = None
                if hasattr(trig, "next_after"):
                    try:
                        upcoming = trig.next_after(now)
                    except Exception:  # a cron the scheduler would refuse too
                        upcoming = None
                triggers.append({"kind": trig.kind, "describe": trig.describe(), "next": upcoming})
        fired: dict[str, dict[str, Any]] = {}
        for run in runs:
            entry = fired.setdefault(run.trigger, {"trigger": run.trigger, "count": 0, "last": run})
            entry["count"] += 1
        return self.renderer.page(
            "pipeline.html",
            nav="pipelines",
            name=name,
            ref=ref,
            graph=graph,
            why=why,
            triggers=triggers,
            fired=list(fired.values()),
            runs=runs,
        )

    async def pipeline_run(self, request: Request) -> Response:
        from loopml.pipelines import records
        from loopml.pipelines.exceptions import PipelineRunNotFound

        run_id = request.path_params["run_id"]
        try:
            # The stored record (trigger, attempt, tasks' logs), not the result object.
            run = await self.ctx.call(records.get_run, self.ws.db, run_id)
        except PipelineRunNotFound:
            raise PageNotFound(f"No pipeline run {run_id!r} on this server.") from None
        if not await self.visible(request, [run]):
            # The same answer as an unknown id (as the access seam does for experiments).
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"No pipeline run {run_id!r}.")
        pipe, why = await self.ctx.call(self.definition, run.ref)
        deps = None
        labels: dict[str, str] = {}
        if pipe is not None:
            try:
                build = await self.ctx.call(pipe.shape, run.params)
                deps, labels = build.dag.deps, dict(build.dag.labels)
            except Exception as exc:
                why = f"its DAG can't be rebuilt here ({type(exc).__name__}: {exc})"
        nodes = [t.node for t in run.tasks]
        status = {t.node: t.status for t in run.tasks}
        detail = {
            t.node: f"{t.status}" + (f" · {t.duration:.1f} s" if t.duration is not None else "")
            for t in run.tasks
        }
        graph = dag_graph(
            {n: d for n, d in deps.items() if n in status} if deps else None,
            nodes,
            labels,
            status,
            detail,
        )
        return self.renderer.page(
            "pipeline_run.html",
            nav="pipelines",
            run=run,
            graph=graph,
            why=why,
        )

    def routes(self) -> list[BaseRoute]:
        from starlette.routing import Route

        wrap = page(self.renderer)
        return [
            Route("/pipelines", wrap(self.pipelines), methods=["GET"]),
            Route("/pipelines/{name}", wrap(self.pipeline), methods=["GET"]),
            Route("/pipeline-runs/{run_id}", wrap(self.pipeline_run), methods=["GET"]),
        ]
