"""``/api/loopml/models…``: the registry for loopml's client. Promotion runs this server's
gate (its ``[gates.NAME]`` policy, its holdout files), so every client gets the same
verdict; a blocked promotion answers ``PromotionBlocked`` with the verdict."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from loopml.client import wire
from loopml.exceptions import InvalidInput, ModelNotFound
from loopml.registry import versions as v
from loopml.registry.signature import Signature
from loopml.server.api.endpoint import endpoint, field
from loopml.server.context import EDIT, EXPERIMENT, MODEL, READ
from loopml.server.http import query, read_json, reply
from loopml.store.blobs import check_digest

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.server.context import ServerContext


def routes(ctx: ServerContext) -> list[BaseRoute]:
    from starlette.routing import Route

    ws = ctx.workspace
    limit = ctx.settings.max_request_bytes

    def name_of(request: Request, level: Any) -> str:
        name = str(request.path_params["name"])
        ctx.access.check(request, MODEL, name, level)
        return name

    def uri_of(request: Request, level: Any) -> str:
        uri = query(request).get("uri")
        if not isinstance(uri, str) or not uri:
            raise InvalidInput("give ?uri=models:/NAME/VERSION (or NAME@ALIAS)")
        ctx.access.check(request, MODEL, v.ModelRef.parse(uri).name, level)
        return uri

    def version_of(request: Request) -> int:
        raw = str(request.path_params["version"])
        if not raw.isdigit():
            raise InvalidInput(f"A model version is a number, got {raw!r}")
        return int(raw)

    @endpoint
    async def list_models(request: Request) -> Response:
        readable = ctx.access.readable(request, MODEL)
        found = await ctx.call(ws.models.list)
        if readable is not None:
            found = [m for m in found if m["name"] in readable]
        return reply({"models": [wire.model_summary_to_json(m) for m in found]})

    @endpoint
    async def register(request: Request) -> Response:
        name = str(request.path_params["name"])
        v.check_name(name, "model name")
        body = await read_json(request, limit)
        digest = check_digest(field(body, "digest", str, required=True))
        flavor = field(body, "flavor", str, required=True)
        from loopml.registry.flavors import flavor_named

        flavor_named(flavor)  # an unknown flavor is refused here, not when loading
        run_id = field(body, "run_id", str)
        signature = field(body, "signature", dict)
        environment = field(body, "environment", dict) or {}
        description = field(body, "description", str)
        exists = True
        try:
            await ctx.call(ws.models.versions, name)
        except ModelNotFound:
            exists = False
        if exists:
            ctx.access.check(request, MODEL, name, EDIT)
        if run_id is not None:
            record = await ctx.call(ws.runs.get, run_id)
            ctx.access.check(request, EXPERIMENT, str(record.experiment_id), READ)
        if not await ctx.call(ws.blobs.exists, digest):
            raise InvalidInput(
                f"The model package {digest} is not on the server: upload its files and its "
                "manifest first (PUT /api/loopml/blobs/{digest})."
            )
        mv = await ctx.call(
            lambda: v.create_version(
                ws.db,
                name,
                flavor=flavor,
                digest=digest,
                run_id=run_id,
                signature=Signature.from_dict(signature) if signature else None,
                environment=environment,
                description=description,
            )
        )
        if not exists:
            ctx.access.created(request, MODEL, name)
        return reply(wire.version_to_json(mv))

    @endpoint
    async def list_versions(request: Request) -> Response:
        name = name_of(request, READ)
        found = await ctx.call(ws.models.versions, name)
        return reply({"versions": [wire.version_to_json(m) for m in found]})

    @endpoint
    async def get_version(request: Request) -> Response:
        uri = uri_of(request, READ)
        return reply(wire.version_to_json(await ctx.call(ws.models.get, uri)))

    @endpoint
    async def get_verdict(request: Request) -> Response:
        uri = uri_of(request, READ)
        verdict = await ctx.call(ws.models.verdict, uri)
        return reply({"verdict": verdict.to_dict() if verdict else None})

    @endpoint
    async def get_lineage(request: Request) -> Response:
        uri = uri_of(request, READ)
        return reply(await ctx.call(ws.models.lineage, uri))

    @endpoint
    async def history(request: Request) -> Response:
        name = name_of(request, READ)
        events = await ctx.call(ws.models.history, name)
        return reply({"events": [wire.event_to_json(e) for e in events]})

    @endpoint
    async def state(request: Request) -> Response:
        name = name_of(request, READ)
        raw = query(request).get("at")
        try:
            at = datetime.fromisoformat(str(raw))
        except ValueError:
            raise InvalidInput(f"at must be an ISO 8601 time, got {raw!r}") from None
        found = await ctx.call(ws.models.state_at, name, at)
        return reply({**found, "at": wire.when(found["at"])})

    @endpoint
    async def policy(request: Request) -> Response:
        name = name_of(request, READ)
        found = ws.models.policy(name)
        return reply({"policy": found.to_dict() if found else None})

    @endpoint
    async def set_alias(request: Request) -> Response:
        name = name_of(request, EDIT)
        body = await read_json(request, limit)
        alias = field(body, "alias", str, required=True)
        version = field(body, "version", int, required=True)
        await ctx.call(ws.models.set_alias, name, alias, version)
        return reply({})

    @endpoint
    async def delete_alias(request: Request) -> Response:
        name = name_of(request, EDIT)
        await ctx.call(ws.models.delete_alias, name, str(request.path_params["alias"]))
        return reply({})

    @endpoint
    async def promote(request: Request) -> Response:
        from loopml.registry import gates

        name = name_of(request, EDIT)
        version = version_of(request)
        body = await read_json(request, limit)
        raw_policy = field(body, "policy", dict)
        chosen = gates.GatePolicy.from_dict(raw_policy, "policy") if raw_policy else None
        verdict = await ctx.call(
            lambda: ws.models.promote(
                name,
                version,
                to=field(body, "to", str) or "production",
                policy=chosen,
                force=bool(field(body, "force", bool)),
                reason=field(body, "reason", str),
            )
        )
        return reply({"verdict": verdict.to_dict() if verdict else None})

    @endpoint
    async def approve(request: Request) -> Response:
        name = name_of(request, EDIT)
        version = version_of(request)
        body = await read_json(request, limit)
        verdict = await ctx.call(ws.models.approve, name, version, field(body, "reason", str))
        return reply({"verdict": verdict.to_dict()})

    @endpoint
    async def rollback(request: Request) -> Response:
        name = name_of(request, EDIT)
        body = await read_json(request, limit)
        version = await ctx.call(ws.models.rollback, name, field(body, "reason", str))
        return reply({"version": version})

    model = "/models/{name}"
    return [
        Route("/models", list_models, methods=["GET"]),
        Route(f"{model}/versions", register, methods=["POST"]),
        Route(f"{model}/versions", list_versions, methods=["GET"]),
        Route(f"{model}/versions/{{version}}/promote", promote, methods=["POST"]),
        Route(f"{model}/versions/{{version}}/approve", approve, methods=["POST"]),
        Route(f"{model}/rollback", rollback, methods=["POST"]),
        Route(f"{model}/aliases", set_alias, methods=["POST"]),
        Route(f"{model}/aliases/{{alias}}", delete_alias, methods=["DELETE"]),
        Route(f"{model}/history", history, methods=["GET"]),
        Route(f"{model}/state", state, methods=["GET"]),
        Route(f"{model}/policy", policy, methods=["GET"]),
        Route("/model-version", get_version, methods=["GET"]),
        Route("/model-version/verdict", get_verdict, methods=["GET"]),
        Route("/model-version/lineage", get_lineage, methods=["GET"]),
    ]
