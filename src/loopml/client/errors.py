"""The errors of loopml's HTTP client, and how a server's error answer becomes one.

    LoopmlError
    ├── StoreUnavailable
    │   └── ServerUnreachable      the server can't be reached (the spool keeps what's logged)
    ├── Unauthorized (PermissionError)   401 / 403: LOOPML_TOKEN is missing, wrong or too weak
    └── NotServed                  the area or method is not available over HTTP yet

Every other error the server answers keeps its class: loopml's own endpoints name it
(``error_class``), so ``RunNotFound`` on the server is ``RunNotFound`` here.
"""

from __future__ import annotations

from typing import Any

from loopml import exceptions
from loopml.config import TOKEN_ENV
from loopml.exceptions import LoopmlError, StoreUnavailable

__all__ = ["TOKEN_ENV", "NotServed", "ServerUnreachable", "Unauthorized", "error_from_answer"]


class ServerUnreachable(StoreUnavailable):
    """The loopml server did not answer (down, restarting, network gone) or answered 429 or
    502-504: what is being written waits in the spool."""


class Unauthorized(PermissionError, LoopmlError):
    """The server refused the credentials (401) or the permission (403)."""


class NotServed(LoopmlError):
    """What was asked is not available through a loopml server (yet)."""


def not_served(what: str) -> NotServed:
    return NotServed(
        f"{what} is not available over HTTP yet: this workspace is a loopml server. Open the "
        "workspace's own store (its loopml.toml, or LOOPML_STORE_URL=sqlite:///… / "
        "postgresql+psycopg://…) on the server's machine for it."
    )


# MLflow's error codes → the LoopmlError raised when the server names no class.
_BY_CODE: dict[str, type[LoopmlError]] = {
    "RESOURCE_DOES_NOT_EXIST": exceptions.NotFound,
    "RESOURCE_ALREADY_EXISTS": exceptions.AlreadyExists,
    "INVALID_PARAMETER_VALUE": exceptions.InvalidInput,
    "MALFORMED_REQUEST": exceptions.InvalidInput,
    "BAD_REQUEST": exceptions.InvalidInput,
    "REQUEST_TOO_LARGE": exceptions.InvalidInput,
    "INVALID_STATE": exceptions.Conflict,
    "RESOURCE_CONFLICT": exceptions.Conflict,
    "TEMPORARILY_UNAVAILABLE": ServerUnreachable,
    "REQUEST_LIMIT_EXCEEDED": ServerUnreachable,  # 429: try again later, like an outage
    "ENDPOINT_NOT_FOUND": NotServed,
}


def error_from_answer(url: str, status: int, body: Any) -> LoopmlError:
    """The error for a non-2xx answer of the server at ``url`` (``body``: its parsed JSON)."""
    data = body if isinstance(body, dict) else {}
    code = str(data.get("error_code") or "")
    message = str(data.get("message") or f"HTTP {status}")
    if status == 401:
        return Unauthorized(
            f"The loopml server at {url} refused the request (401 {code or 'UNAUTHENTICATED'}: "
            f"{message}). Set {TOKEN_ENV} to a valid API token (`loopml tokens create` on the "
            "server); it is sent as 'Authorization: Bearer'."
        )
    if status == 403:
        return Unauthorized(
            f"The loopml server at {url} refused the request (403 {code or 'PERMISSION_DENIED'}: "
            f"{message}). The user of the token in {TOKEN_ENV} lacks the permission; ask an "
            "admin of the server for it."
        )
    if status in (429, 502, 503, 504) and not data.get("error_class"):
        return ServerUnreachable(f"The loopml server at {url} is unavailable ({status}): {message}")
    named = getattr(exceptions, str(data.get("error_class") or ""), None)
    if isinstance(named, type) and issubclass(named, LoopmlError):
        if issubclass(named, exceptions.PromotionBlocked):
            return _blocked(message, data.get("verdict"))
        if issubclass(named, exceptions.InvalidFilter):
            return exceptions.InvalidFilter(message)
        try:
            return named(message)
        except TypeError:  # a class with another constructor: keep the message
            pass
    return _BY_CODE.get(code, LoopmlError)(message)


def _blocked(message: str, verdict: Any) -> exceptions.PromotionBlocked:
    from loopml.registry.gates import Verdict

    return exceptions.PromotionBlocked(
        message, Verdict.from_dict(verdict) if isinstance(verdict, dict) else None
    )
