"""Errors over HTTP in MLflow's shape: ``{"error_code": "...", "message": "..."}``.

MLflow's clients raise ``MlflowException`` (``RestException``) from this body, keyed by the
error code, so loopml answers every API error this way, MLflow's API and loopml's own alike.
A :class:`~loopml.exceptions.LoopmlError` raised by a route is turned into one by
:func:`error_response`; a route that wants a specific code raises :class:`ApiError`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import orjson

from loopml.exceptions import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    LoopmlError,
    NotFound,
    ParamConflict,
    PromotionBlocked,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from starlette.responses import Response

# MLflow's error codes and the HTTP status its server answers each with.
STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "MALFORMED_REQUEST": 400,
    "INVALID_STATE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_ALREADY_EXISTS": 400,
    "RESOURCE_CONFLICT": 409,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "REQUEST_TOO_LARGE": 413,
    "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
    "NOT_IMPLEMENTED": 501,
}


class ApiError(Exception):
    """An error a route answers with: MLflow's ``error_code`` and a message.

    >>> raise ApiError("RESOURCE_DOES_NOT_EXIST", "Run 'abc' not found")  # doctest: +SKIP
    """

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS.get(code, 400)


def code_of(exc: BaseException) -> tuple[str, int]:
    """The MLflow error code and HTTP status for ``exc``."""
    if isinstance(exc, ApiError):
        return exc.code, exc.status
    if isinstance(exc, NotFound):
        return "RESOURCE_DOES_NOT_EXIST", 404
    if isinstance(exc, AlreadyExists):
        return "RESOURCE_ALREADY_EXISTS", 400
    if isinstance(exc, ParamConflict):
        return "INVALID_PARAMETER_VALUE", 400  # what MLflow answers a changed param with
    if isinstance(exc, PromotionBlocked | Conflict):
        return "INVALID_STATE", 400
    if isinstance(exc, InvalidInput):
        return "INVALID_PARAMETER_VALUE", 400
    if isinstance(exc, StoreUnavailable):
        return "TEMPORARILY_UNAVAILABLE", 503
    if isinstance(exc, LoopmlError):
        return "INTERNAL_ERROR", 500
    return "INTERNAL_ERROR", 500


# The local API's "not found" messages list what does exist ("Known experiments: 'a', 'b'");
# over HTTP that would show a caller names it may not read, so the list is cut off.
_EXISTING = re.compile(r"\s*(Known experiments|Registered|Known models|Users):.*$", re.DOTALL)


def public_message(exc: BaseException) -> str:
    """What the server says of ``exc``: its message, without lists of existing names."""
    message = str(exc)
    if isinstance(exc, NotFound):
        message = _EXISTING.sub("", message)
    return message


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error_code": code, "message": message})


def error_response(exc: BaseException) -> Response:
    """The JSON response for ``exc`` (an unexpected error's text is not shown)."""
    from starlette.responses import Response

    code, status = code_of(exc)
    if isinstance(exc, ApiError | LoopmlError):
        message = public_message(exc)
    else:
        message = f"internal error ({type(exc).__name__}); the server's log has the details"
    return Response(error_body(code, message), status, media_type="application/json")
