"""``/api/loopml/whoami`` and, with ``--auth``, users, tokens and grants over HTTP.

- ``GET /whoami``: ``{"name", "admin", "auth"}`` of the caller;
- ``GET /auth/tokens`` (the caller's; an admin may add ``?user=NAME``), ``POST /auth/tokens``
  ``{"name"?, "expires_in"?: "30d" | seconds, "user"? (admins)}`` → the token, shown once,
  ``DELETE /auth/tokens/{id}`` revokes one (the caller's own; admins any);
- ``GET|POST /auth/users``, ``DELETE /auth/users/{name}``: admins only;
- ``GET /auth/grants?kind=&key=`` (needs manage on that experiment or model; admins may list
  all or ``?user=``), ``PUT /auth/grants`` ``{"user", "kind", "key", "level"}`` and
  ``DELETE /auth/grants?user=&kind=&key=`` (manage on it).

Without ``--auth`` only ``/whoami`` answers (``anonymous``); the rest are refused, since
there is nobody to sign in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidInput
from loopml.server.auth import grants as g
from loopml.server.auth import tokens as t
from loopml.server.auth import users as u
from loopml.server.context import MANAGE
from loopml.server.errors import ApiError
from loopml.server.http import query, read_json, reply

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.server.context import Principal, ServerContext


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def _token(token: t.ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "user": token.user,
        "name": token.name,
        "prefix": token.prefix,
        "state": token.state,
        "created_at": _iso(token.created_at),
        "expires_at": _iso(token.expires_at),
        "revoked_at": _iso(token.revoked_at),
        "last_used_at": _iso(token.last_used_at),
    }


def _user(user: u.User) -> dict[str, Any]:
    return {
        "name": user.name,
        "admin": user.is_admin,
        "password": user.has_password,
        "created_at": _iso(user.created_at),
    }


def _grant(item: g.Grant) -> dict[str, Any]:
    return {"user": item.user, "kind": item.kind, "key": item.key, "level": item.level}


def _text(values: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = values.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{key!r} must be a non-empty string, got {value!r}")
    return value


def routes(ctx: ServerContext) -> list[BaseRoute]:
    """The routes of users, tokens and grants (mounted under ``/api/loopml``)."""
    from starlette.routing import Route

    db = ctx.workspace.db
    limit = ctx.settings.max_request_bytes

    def signed_in(request: Request) -> Principal:
        principal = ctx.access.principal(request)
        if principal.user_id is None:
            raise ApiError(
                "INVALID_STATE",
                "This server runs without --auth: it has no users or tokens to manage.",
            )
        return principal

    def admin(request: Request) -> Principal:
        principal = signed_in(request)
        if not principal.is_admin:
            raise ApiError("PERMISSION_DENIED", "Only an admin may do this.")
        return principal

    async def whoami(request: Request) -> Response:
        principal = ctx.access.principal(request)
        return reply(
            {
                "name": principal.name,
                "admin": principal.is_admin,
                "auth": principal.user_id is not None,
            }
        )

    async def list_tokens(request: Request) -> Response:
        principal = signed_in(request)
        user = query(request).get("user") or principal.name
        if user != principal.name:
            admin(request)
        found = await ctx.call(t.list_tokens, db, user)
        return reply({"tokens": [_token(x) for x in found]})

    async def create_token(request: Request) -> Response:
        principal = signed_in(request)
        body = await read_json(request, limit)
        user = _text(body, "user", required=False) or principal.name
        if user != principal.name:
            admin(request)
        name = _text(body, "name", required=False)
        raw = body.get("expires_in")
        seconds = t.parse_expiry(raw) if raw is not None else None
        token, secret = await ctx.call(t.create_token, db, user, name=name, expires_in=seconds)
        return reply({"token": secret, **_token(token)})

    async def revoke_token(request: Request) -> Response:
        principal = signed_in(request)
        token_id: int = request.path_params["token_id"]
        token = await ctx.call(t.get_token, db, token_id)
        if token.user != principal.name and not principal.is_admin:
            # Someone else's token: as if it did not exist.
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"No token with id {token_id}.")
        revoked = await ctx.call(t.revoke_token, db, token_id)
        return reply(_token(revoked))

    async def list_users(request: Request) -> Response:
        admin(request)
        found = await ctx.call(u.list_users, db)
        return reply({"users": [_user(x) for x in found]})

    async def create_user(request: Request) -> Response:
        admin(request)
        body = await read_json(request, limit)
        name = _text(body, "name")
        assert name is not None
        password = _text(body, "password", required=False)
        is_admin = body.get("admin", False)
        if not isinstance(is_admin, bool):
            raise InvalidInput(f"'admin' must be true or false, got {is_admin!r}")
        user = await ctx.call(u.create_user, db, name, password=password, admin=is_admin)
        return reply(_user(user))

    async def delete_user(request: Request) -> Response:
        principal = admin(request)
        name = request.path_params["name"]
        if name == principal.name:
            raise InvalidInput("An admin can't delete themselves; ask another admin.")
        user = await ctx.call(u.delete_user, db, name)
        return reply(_user(user))

    def target(values: dict[str, Any]) -> tuple[str, str]:
        kind = g.check_kind(_text(values, "kind") or "")
        key = _text(values, "key")
        assert key is not None
        return kind, key

    async def list_grants(request: Request) -> Response:
        principal = signed_in(request)
        values = query(request)
        if values.get("kind") is None and values.get("key") is None:
            admin(request)
            found = await ctx.call(g.list_grants, db, user=values.get("user"))
        else:
            kind, key = target(values)
            if not principal.is_admin:
                ctx.access.check(request, kind, key, MANAGE)  # type: ignore[arg-type]
            found = await ctx.call(g.list_grants, db, kind=kind, key=key)
        return reply({"grants": [_grant(x) for x in found]})

    async def put_grant(request: Request) -> Response:
        signed_in(request)
        body = await read_json(request, limit)
        kind, key = target(body)
        ctx.access.check(request, kind, key, MANAGE)  # type: ignore[arg-type]
        user = _text(body, "user")
        level = g.check_level(_text(body, "level") or "")
        assert user is not None
        granted = await ctx.call(g.grant, db, user, kind, key, level)
        return reply(_grant(granted))

    async def delete_grant(request: Request) -> Response:
        signed_in(request)
        values = query(request)
        kind, key = target(values)
        ctx.access.check(request, kind, key, MANAGE)  # type: ignore[arg-type]
        user = _text(values, "user")
        assert user is not None
        removed = await ctx.call(g.revoke, db, user, kind, key)
        return reply(_grant(removed))

    return [
        Route("/whoami", whoami, methods=["GET"]),
        Route("/auth/tokens", list_tokens, methods=["GET"]),
        Route("/auth/tokens", create_token, methods=["POST"]),
        Route("/auth/tokens/{token_id:int}", revoke_token, methods=["DELETE"]),
        Route("/auth/users", list_users, methods=["GET"]),
        Route("/auth/users", create_user, methods=["POST"]),
        Route("/auth/users/{name}", delete_user, methods=["DELETE"]),
        Route("/auth/grants", list_grants, methods=["GET"]),
        Route("/auth/grants", put_grant, methods=["PUT"]),
        Route("/auth/grants", delete_grant, methods=["DELETE"]),
    ]
