"""What every route of loopml's API shares: errors that name their class, typed body fields."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from loopml.exceptions import LoopmlError, PromotionBlocked
from loopml.server.errors import ApiError, code_of, public_message
from loopml.server.http import reply

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

T = TypeVar("T")
Handler = Callable[["Request"], Awaitable["Response"]]


def endpoint(fn: Handler) -> Handler:
    """Answer a :class:`LoopmlError` in MLflow's shape plus ``error_class`` (its class name,
    raised again by loopml's client) and, for a blocked promotion, its ``verdict``."""

    @functools.wraps(fn)
    async def run(request: Request) -> Response:
        try:
            return await fn(request)
        except LoopmlError as exc:
            code, status = code_of(exc)
            body: dict[str, Any] = {
                "error_code": code,
                "message": public_message(exc),
                "error_class": type(exc).__name__,
            }
            verdict: Any = getattr(exc, "verdict", None)
            if isinstance(exc, PromotionBlocked) and verdict is not None:
                body["verdict"] = verdict.to_dict()
            return reply(body, status)

    return run


def field(
    body: dict[str, Any], name: str, kind: type[T] | tuple[type, ...], *, required: bool = False
) -> Any:
    """``body[name]`` if it is of ``kind`` (None when absent and not ``required``); else a
    400 ``INVALID_PARAMETER_VALUE`` naming the field."""
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError("INVALID_PARAMETER_VALUE", f"missing field {name!r}")
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            f"field {name!r} must be {wanted}, got {type(value).__name__} {value!r:.80}",
        )
    return value


def string_map(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A JSON object field (``{}`` when absent)."""
    value = field(body, name, dict) or {}
    for key in value:
        if not isinstance(key, str):
            raise ApiError("INVALID_PARAMETER_VALUE", f"{name} keys must be strings")
    return dict(value)
