"""The status page, ``/status``: where the loop stands and its maturity level, as
``loopml status`` prints it (:mod:`loopml.status`).

A caller sees the models it may read, and the pipelines whose latest run's experiment it may
read; the maturity grade is made over what it sees.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from loopml.server.context import EXPERIMENT, MODEL
from loopml.server.ui.render import Renderer, page

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.server.context import ServerContext
    from loopml.status import WorkspaceStatus


class StatusPages:
    def __init__(self, ctx: ServerContext, renderer: Renderer) -> None:
        self.ctx = ctx
        self.ws = ctx.workspace
        self.renderer = renderer

    def visible(self, request: Request, found: WorkspaceStatus) -> WorkspaceStatus:
        """``found`` with only what the caller may read, graded again over that."""
        from loopml.status import grade_workspace

        models = self.ctx.access.readable(request, MODEL)
        experiments = self.ctx.access.readable(request, EXPERIMENT)
        if models is None and experiments is None:
            return found
        shown = tuple(m for m in found.models if models is None or m.name in models)
        pipelines = tuple(
            p
            for p in found.pipelines
            if experiments is None
            or (p.experiment_id is not None and str(p.experiment_id) in experiments)
        )
        return replace(found, models=shown, pipelines=pipelines, maturity=grade_workspace(shown))

    async def status(self, request: Request) -> Response:
        from loopml.status import workspace_status

        found = self.visible(request, await self.ctx.call(workspace_status, self.ws))
        return self.renderer.page("status.html", nav="status", status=found)

    def routes(self) -> list[BaseRoute]:
        from starlette.routing import Route

        return [Route("/status", page(self.renderer)(self.status), methods=["GET"])]
