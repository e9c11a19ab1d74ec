"""The team server's web UI, served at ``/`` by the same process as the API.

Server-rendered pages (Jinja2, autoescaped) with a little vanilla JavaScript; charts are
drawn by uPlot (MIT, vendored under ``static/vendor/uplot`` with its license), graphs as SVG
made on the server (:mod:`loopml.server.ui.graph`). Nothing is fetched from another site.

Pages: ``/`` (experiments), ``/experiments/{id}`` (runs: filter, sort, columns, pages),
``/runs/{id}`` (params, metrics with charts, tags, environment, inputs, artifacts, git diff),
``/compare?runs=…``, ``/models``, ``/models/{name}``, ``/models/{name}/versions/{n}`` (gate
verdicts, lineage graph), ``/pipelines``, ``/pipelines/{name}``, ``/pipeline-runs/{id}``,
``/data``, ``/data/versions?path=…``, and the LLM gateway's ``/traces``, ``/traces/{id}``,
``/llm/costs`` and ``/llm/requests/{id}`` (:mod:`loopml.server.ui.llm`), and ``/status``
(where the loop stands and its maturity level, :mod:`loopml.server.ui.status`). Each page checks
access through the server's :class:`~loopml.server.context.Access` like the API does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from loopml.server.context import ServerContext

__all__ = ["routes"]

#: The catch-all 404 answers every method: a POST to an unknown path is a 404, not a 405.
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def routes(ctx: ServerContext) -> list[BaseRoute]:
    """Every page, the static files under ``/static``, and an HTML 404 for the rest."""
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from loopml.server.ui.data import DataPages
    from loopml.server.ui.llm import LlmPages
    from loopml.server.ui.models import ModelPages
    from loopml.server.ui.pipelines import PipelinePages
    from loopml.server.ui.render import STATIC, Renderer
    from loopml.server.ui.status import StatusPages
    from loopml.server.ui.tracking import TrackingPages

    renderer = Renderer()

    async def not_found(request: Request) -> Response:
        if request.url.path.startswith(("/api/", "/ajax-api/")) or request.method != "GET":
            raise HTTPException(404)  # the app's own answer (MLflow's error shape)
        return renderer.error(404, f"There is no page at {request.url.path}.")

    return [
        *TrackingPages(ctx, renderer).routes(),
        *ModelPages(ctx, renderer).routes(),
        *PipelinePages(ctx, renderer).routes(),
        *DataPages(ctx, renderer).routes(),
        *LlmPages(ctx, renderer).routes(),
        *StatusPages(ctx, renderer).routes(),
        Mount("/static", StaticFiles(directory=STATIC), name="ui_static"),
        Route("/{path:path}", not_found, methods=ANY_METHOD),
    ]
