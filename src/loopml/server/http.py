"""Small helpers every route uses: read a JSON body within the size limit, answer JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from loopml.server.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response


def _default(value: Any) -> Any:
    import math

    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON: {type(value).__name__}")


def reply(body: Any, status: int = 200) -> Response:
    """A JSON response (orjson: NumPy scalars allowed, NaN written as null)."""
    from starlette.responses import Response

    data = orjson.dumps(body, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(data, status, media_type="application/json")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object; an empty body is ``{}``.

    A body over ``limit`` bytes is a 413, one that is not a JSON object a 400
    ``MALFORMED_REQUEST``, both in MLflow's error shape.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            "REQUEST_TOO_LARGE",
            f"request body of {declared} bytes is over the server's limit of {limit} "
            "([server] max_request_bytes)",
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(
                "REQUEST_TOO_LARGE",
                f"request body is over the server's limit of {limit} bytes "
                "([server] max_request_bytes)",
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError("MALFORMED_REQUEST", f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(
            "MALFORMED_REQUEST", f"request body must be a JSON object, got {type(body).__name__}"
        )
    return body


def query(request: Request) -> dict[str, Any]:
    """A GET request's query string as MLflow's client sends it: a key given several times
    (``experiment_ids=1&experiment_ids=2``) is a list, others are strings."""
    out: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        out[key] = values if len(values) > 1 or key.endswith("_ids") else values[0]
    return out


async def request_args(request: Request, limit: int) -> dict[str, Any]:
    """An MLflow endpoint's arguments: a GET's query string; else the JSON body (at most
    ``limit`` bytes) over the query string's."""
    if request.method == "GET":
        return query(request)
    return {**query(request), **await read_json(request, limit)}
