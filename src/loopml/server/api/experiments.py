"""``/api/loopml/experiments``: create, list, get (``/experiment?name=`` or ``?id=``), rename."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml.client import wire
from loopml.exceptions import InvalidInput
from loopml.server.api.endpoint import endpoint, field
from loopml.server.context import EDIT, EXPERIMENT, READ
from loopml.server.http import query, read_json, reply
from loopml.tracking import experiments as ex

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.server.context import ServerContext


def _name_or_id(values: dict[str, Any], name_key: str, id_key: str) -> str | int:
    if values.get(id_key) is not None:
        raw = values[id_key]
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.isdigit():
            return int(raw)
        raise InvalidInput(f"{id_key} must be an experiment id (an integer), got {raw!r}")
    name = values.get(name_key)
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"give the experiment's {name_key} or {id_key}")
    return name


def routes(ctx: ServerContext) -> list[BaseRoute]:
    from starlette.routing import Route

    db = ctx.workspace.db
    limit = ctx.settings.max_request_bytes

    @endpoint
    async def create_experiment(request: Request) -> Response:
        body = await read_json(request, limit)
        name = field(body, "name", str, required=True)
        description = field(body, "description", str)
        exp = await ctx.call(ex.create_experiment, db, name, description)
        ctx.access.created(request, EXPERIMENT, str(exp.id))
        return reply(wire.experiment_to_json(exp))

    @endpoint
    async def list_experiments(request: Request) -> Response:
        readable = ctx.access.readable(request, EXPERIMENT)
        found = await ctx.call(ex.list_experiments, db)
        if readable is not None:
            found = [e for e in found if str(e.id) in readable]
        return reply({"experiments": [wire.experiment_to_json(e) for e in found]})

    @endpoint
    async def get_experiment(request: Request) -> Response:
        key = _name_or_id(query(request), "name", "id")
        exp = await ctx.call(ex.get_experiment, db, key)
        ctx.access.check(request, EXPERIMENT, str(exp.id), READ)
        return reply(wire.experiment_to_json(exp))

    @endpoint
    async def rename_experiment(request: Request) -> Response:
        body = await read_json(request, limit)
        old = _name_or_id(body, "old", "old_id")
        new = field(body, "new", str, required=True)
        current = await ctx.call(ex.get_experiment, db, old)
        ctx.access.check(request, EXPERIMENT, str(current.id), EDIT)
        exp = await ctx.call(ex.rename_experiment, db, current.id, new)
        return reply(wire.experiment_to_json(exp))

    return [
        Route("/experiments", create_experiment, methods=["POST"]),
        Route("/experiments", list_experiments, methods=["GET"]),
        Route("/experiment", get_experiment, methods=["GET"]),
        Route("/experiments/rename", rename_experiment, methods=["POST"]),
    ]
