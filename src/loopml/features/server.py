"""The HTTP feature server: online features over JSON (``loopml features serve``).

``POST /get-online-features`` takes the features (``"features": ["view:feature", ...]`` or
``"feature_service": "name"``) and the entities, by column as in Feast
(``"entities": {"customer_id": [1, 2]}``) or by row (``"entity_rows": [{"customer_id": 1}]``),
and optionally ``"full_feature_names": true``::

    {"metadata": {"feature_names": ["customer_id", "avg_purchase_30d"]},
     "results": [{"values": [1, 2]}, {"values": [12.5, null]}]}

One result per name, in order: the join keys, then the features; a value the store doesn't
have (or that expired) is ``null``; timestamps are ISO 8601 strings. A bad request is a 400
(not JSON, wrong shape) or 422 (unknown feature, missing join key) with ``{"error": ...,
"detail": ...}``; an unreachable online store is a 503. ``GET /health`` checks the store.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidInput, LoopmlError, NotFound, StoreUnavailable

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from loopml.features.store import FeatureStore


class BadRequest(InvalidInput):
    """A request body the feature server can't read."""


def parse_request(body: Any) -> tuple[Any, list[dict[str, Any]], bool]:
    """``(features, entity_rows, full_feature_names)`` from a request body; raises
    :class:`BadRequest` naming what is wrong."""
    if not isinstance(body, Mapping):
        raise BadRequest("The body must be a JSON object.")
    unknown = sorted(
        set(body) - {"features", "feature_service", "entities", "entity_rows", "full_feature_names"}
    )
    if unknown:
        raise BadRequest(
            f"Unknown field(s) {', '.join(map(repr, unknown))}: use features or "
            "feature_service, entities or entity_rows, and full_feature_names."
        )
    features = body.get("features")
    service = body.get("feature_service")
    if (features is None) == (service is None):
        raise BadRequest('Give "features": ["view:feature", ...] or "feature_service": "name".')
    if service is not None:
        if not isinstance(service, str):
            raise BadRequest('"feature_service" must be a name (a string).')
        features = service
    elif not (
        isinstance(features, list) and features and all(isinstance(f, str) for f in features)
    ):
        raise BadRequest('"features" must be a non-empty list of "view:feature" strings.')
    entities, rows = body.get("entities"), body.get("entity_rows")
    if (entities is None) == (rows is None):
        raise BadRequest(
            'Give "entities": {"key": [values...]} or "entity_rows": [{"key": value}, ...].'
        )
    if entities is not None:
        if not isinstance(entities, Mapping) or not entities:
            raise BadRequest('"entities" must be an object of columns: {"customer_id": [1, 2]}.')
        columns = {str(k): v for k, v in entities.items()}
        bad = [k for k, v in columns.items() if not isinstance(v, list)]
        if bad:
            raise BadRequest(f'"entities" column {bad[0]!r} must be a list of values.')
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise BadRequest(
                '"entities" columns differ in length: '
                + ", ".join(f"{k}: {len(v)}" for k, v in columns.items())
            )
        n = lengths.pop()
        rows = [{k: v[i] for k, v in columns.items()} for i in range(n)]
    elif not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise BadRequest('"entity_rows" must be a list of objects: [{"customer_id": 1}].')
    full = body.get("full_feature_names", False)
    if not isinstance(full, bool):
        raise BadRequest('"full_feature_names" must be true or false.')
    return features, [dict(r) for r in rows], full


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def create_app(store: FeatureStore) -> Starlette:
    """The Starlette app serving ``store``'s online features (see the module doc)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def error(status: int, exc: BaseException) -> JSONResponse:
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status)

    async def get_online_features(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError as exc:
            return error(400, BadRequest(f"The body is not JSON: {exc}"))
        try:
            features, rows, full = parse_request(body)
            response = await run_in_threadpool(
                store.get_online_features, features, rows, full_feature_names=full
            )
        except BadRequest as exc:
            return error(400, exc)
        except (InvalidInput, NotFound) as exc:
            return error(422, exc)
        except StoreUnavailable as exc:
            return error(503, exc)
        except LoopmlError as exc:
            return error(500, exc)
        columns = response.to_dict()
        return JSONResponse(
            {
                "metadata": {"feature_names": list(columns)},
                "results": [{"values": [_json_value(v) for v in vs]} for vs in columns.values()],
            }
        )

    async def health(request: Request) -> JSONResponse:
        try:
            await run_in_threadpool(store.online_store.ping)
        except LoopmlError as exc:
            return error(503, exc)
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/get-online-features", get_online_features, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def serve(store: FeatureStore, host: str = "127.0.0.1", port: int = 6566, **uvicorn: Any) -> None:
    """Serve ``store``'s online features over HTTP until interrupted (a port in use:
    :class:`~loopml.ports.PortInUse`, before anything starts)."""
    import uvicorn as server

    from loopml.ports import ensure_port_free

    ensure_port_free(host, port)
    server.run(create_app(store), host=host, port=port, **uvicorn)
