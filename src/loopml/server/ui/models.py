"""The registry pages: models, a model's versions with stages and aliases and its history
(who moved what, when and why), a version's gate verdicts and its lineage graph
(model → run → data → commit)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from loopml.exceptions import ModelNotFound, NotFound
from loopml.server.context import EXPERIMENT, MODEL, READ
from loopml.server.errors import ApiError
from loopml.server.ui.graph import Node, render_svg
from loopml.server.ui.render import PageNotFound, Renderer, page

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.server.context import ServerContext


def verdict_rows(verdict: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored gate verdict's checks as table rows: name, passed, the candidate's and the
    champion's score where the check compares them, and the other figures.

    >>> verdict_rows({"checks": [{"name": "beats_champion", "passed": True,
    ...     "details": {"metric": "accuracy", "score": 0.9, "champion_score": 0.8}}]})[0]
    {'name': 'beats_champion', 'passed': True, 'candidate': 0.9, 'champion': 0.8, 'summary': '', 'details': {'metric': 'accuracy'}}
    """
    rows = []
    for check in verdict.get("checks") or []:
        details = dict(check.get("details") or {})
        candidate = details.pop("score", None)
        champion = details.pop("champion_score", details.pop("champion", None))
        rows.append(
            {
                "name": check.get("name", "?"),
                "passed": bool(check.get("passed")),
                "candidate": candidate,
                "champion": champion,
                "summary": check.get("summary", ""),
                "details": details,
            }
        )
    return rows


def lineage_graph(lineage: dict[str, Any], run_href: str | None) -> tuple[list[Node], list[Any]]:
    """Nodes and edges of a version's lineage: the model version, the run that trained it,
    the data it read (by hash) and the code commit.

    >>> nodes, edges = lineage_graph({"model": "churn", "version": 2, "run": {"id": "r1",
    ...     "name": "train", "inputs": [{"name": "raw", "digest": "ab12"}],
    ...     "code": {"commit": "c0ffee"}}}, "/runs/r1")
    >>> [n.id for n in nodes], edges
    (['model', 'run', 'data:raw', 'commit'], [('run', 'model'), ('data:raw', 'run'), ('commit', 'run')])
    """
    nodes = [
        Node(
            "model",
            f"{lineage['model']} v{lineage['version']}",
            lineage.get("stage") or "",
            "model",
        )
    ]
    edges: list[tuple[str, str]] = []
    run = lineage.get("run")
    if run:
        detail = "missing" if run.get("missing") else (run.get("name") or "")
        nodes.append(Node("run", f"run {run['id'][:12]}", detail, "run", run_href))
        edges.append(("run", "model"))
        for item in run.get("inputs") or []:
            node_id = f"data:{item['name']}"
            nodes.append(Node(node_id, item["name"], (item.get("digest") or "")[:16], "data", None))
            edges.append((node_id, "run"))
        commit = (run.get("code") or {}).get("commit")
        if commit:
            dirty = " (dirty)" if (run.get("code") or {}).get("dirty") else ""
            nodes.append(Node("commit", f"commit {commit[:10]}", f"git{dirty}", "commit"))
            edges.append(("commit", "run"))
    return nodes, edges


class ModelPages:
    def __init__(self, ctx: ServerContext, renderer: Renderer) -> None:
        self.ctx = ctx
        self.ws = ctx.workspace
        self.renderer = renderer

    def _check(self, request: Request, name: str) -> None:
        self.ctx.access.check(request, MODEL, name, READ)

    async def models(self, request: Request) -> Response:
        found = await self.ctx.call(self.ws.models.list)
        readable = self.ctx.access.readable(request, MODEL)
        if readable is not None:
            found = [m for m in found if m["name"] in readable]
        return self.renderer.page("models.html", nav="models", models=found)

    async def model(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._check(request, name)
        try:
            versions = await self.ctx.call(self.ws.models.versions, name)
            history = await self.ctx.call(self.ws.models.history, name)
        except ModelNotFound:
            raise PageNotFound(f"No registered model {name!r} on this server.") from None
        verdicts: dict[int, dict[str, Any]] = {}
        for event in history:
            if event.kind == "gate" and event.verdict and event.version is not None:
                verdicts[event.version] = event.verdict
        return self.renderer.page(
            "model.html",
            nav="models",
            name=name,
            quoted=quote(name, safe=""),
            versions=list(reversed(versions)),
            history=list(reversed(history)),
            verdicts=verdicts,
        )

    async def version(self, request: Request) -> Response:
        name = request.path_params["name"]
        number = request.path_params["version"]
        self._check(request, name)
        uri = f"models:/{name}/{number}"
        try:
            version = await self.ctx.call(self.ws.models.get, uri)
            lineage = await self.ctx.call(self.ws.models.lineage, uri)
            history = await self.ctx.call(self.ws.models.history, name)
        except NotFound:
            raise PageNotFound(f"No version {number} of model {name!r} on this server.") from None
        run = lineage.get("run")
        run_href = None
        if run and not run.get("missing"):
            try:
                record = await self.ctx.call(self.ws.runs.get, run["id"])
                self.ctx.access.check(request, EXPERIMENT, str(record.experiment_id), READ)
                run_href = f"/runs/{run['id']}"
            except (ApiError, NotFound):
                # The caller may see the model but not the experiment of its run.
                lineage["run"] = run = {"id": run["id"], "name": "not visible to you"}
        nodes, edges = lineage_graph(lineage, run_href)
        gates = [
            {"event": e, "rows": verdict_rows(e.verdict)}
            for e in history
            if e.kind == "gate" and e.version == version.version and e.verdict
        ]
        return self.renderer.page(
            "version.html",
            nav="models",
            name=name,
            quoted=quote(name, safe=""),
            version=version,
            lineage=lineage,
            run=run,
            graph=render_svg(nodes, edges, f"lineage of {name} v{number}"),
            gates=list(reversed(gates)),
            history=[e for e in reversed(history) if e.version == version.version],
        )

    def routes(self) -> list[BaseRoute]:
        from starlette.routing import Route

        wrap = page(self.renderer)
        return [
            Route("/models", wrap(self.models), methods=["GET"]),
            Route("/models/{name}", wrap(self.model), methods=["GET"]),
            Route("/models/{name}/versions/{version:int}", wrap(self.version), methods=["GET"]),
        ]
