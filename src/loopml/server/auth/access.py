"""``AuthAccess``: the access seam of ``loopml server --auth``.

Every HTTP request but ``GET /health`` must carry credentials:

- ``Authorization: Bearer <token>`` (``MLFLOW_TRACKING_TOKEN``, ``LOOPML_TOKEN``), or
- ``Authorization: Basic`` with a user name and password (``MLFLOW_TRACKING_USERNAME`` /
  ``MLFLOW_TRACKING_PASSWORD``).

Missing, wrong, revoked or expired credentials get a 401 in MLflow's error shape
(``UNAUTHENTICATED``) with ``WWW-Authenticate`` challenges for both schemes.

Authentication is cheap per request: a token's row (and its user's grants) is remembered for
:data:`CACHE_SECONDS`, so a revocation or a new grant is seen within about a second, and a
password is checked with scrypt once, then remembered under a keyed hash of (user,
password, stored hash) — a changed password misses that memory. Secrets are compared with
:func:`hmac.compare_digest` and never logged or echoed.

Permissions: admins may do everything; other users have a level per experiment and model
(:mod:`loopml.server.auth.grants`), or ``[server] default_permission`` where they have none.
Without read access an experiment or model answers the same 404 as one that does not
exist, and listings leave it out; with read but not the level needed, 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from loopml.server.auth import grants as g
from loopml.server.auth.passwords import verify_password, waste_time
from loopml.server.auth.tables import api_tokens, users
from loopml.server.auth.tokens import token_hash
from loopml.server.context import (
    PRINCIPAL_SCOPE_KEY,
    Kind,
    Level,
    Principal,
)
from loopml.server.errors import ApiError, error_body
from loopml.store.clock import now_ms

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp, Receive, Scope, Send

    from loopml.store.db import Database
    from loopml.workspace import Workspace

#: How long a token's row, a user's row and a user's grants are remembered.
CACHE_SECONDS = 1.0
#: A token's ``last_used_at`` is written at most this often (per server process).
TOUCH_EVERY_MS = 60_000
#: Successful password checks remembered (least recently used dropped first).
PASSWORDS_REMEMBERED = 1024
#: Where the caller's grants travel on the request's scope, beside the principal.
GRANTS_SCOPE_KEY = "loopml.grants"

MLFLOW_PATHS = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
PUBLIC = frozenset({("GET", "/health"), ("HEAD", "/health")})
CHALLENGES = (
    (b"www-authenticate", b'Bearer realm="loopml"'),
    (b"www-authenticate", b'Basic realm="loopml", charset="UTF-8"'),
)
HELP = (
    "send a token (Authorization: Bearer; MLFLOW_TRACKING_TOKEN or LOOPML_TOKEN) or a user "
    "name and password (Basic; MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
)


class Unauthenticated(Exception):
    """Credentials missing or not accepted; the message is safe to show (no secrets)."""


@dataclass(frozen=True)
class _Account:
    """What a token or a user name resolves to (cached)."""

    principal: Principal
    password_hash: str | None = None
    expires_at: int | None = None
    revoked: bool = False


class _Expiring:
    """A dict whose entries are forgotten :data:`CACHE_SECONDS` after they were put."""

    def __init__(self, seconds: float, limit: int = 100_000) -> None:
        self.seconds = seconds
        self.limit = limit
        self._items: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        hit = self._items.get(key)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._items) >= self.limit:
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v[0] >= now}
            if len(self._items) >= self.limit:
                self._items.clear()
        self._items[key] = (time.monotonic() + self.seconds, value)

    def forget(self, key: Any) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


class AuthAccess:
    """Users, tokens and per-experiment / per-model permissions (``loopml server --auth``)."""

    def __init__(self, workspace: Workspace, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.db: Database = workspace.db
        self.default_level: str | None = _default_level(workspace.settings.server)
        self._tokens = _Expiring(cache_seconds)  # token hash → _Account | None
        self._users = _Expiring(cache_seconds)  # user name → _Account | None
        self._grants = _Expiring(cache_seconds)  # user id → {(kind, key): level}
        self._touched: dict[int, int] = {}  # token id → when last_used_at was last written
        # Keys of the passwords checked so far: a secret of this process, so the memory
        # holds nothing a guesser could test passwords against offline.
        self._key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._verified_lock = threading.Lock()

    # -- the middleware ---------------------------------------------------------------------

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def authenticated(scope: Scope, receive: Receive, send: Send) -> None:
            kind = scope["type"]
            if kind not in ("http", "websocket") or (
                kind == "http" and (scope["method"], scope["path"]) in PUBLIC
            ):
                await app(scope, receive, send)
                return
            try:
                principal = await self._authenticate(scope)
            except Unauthenticated as exc:
                if kind == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                else:
                    await _challenge(send, str(exc))
                return
            scope[PRINCIPAL_SCOPE_KEY] = principal
            if not principal.is_admin and principal.user_id is not None:
                scope[GRANTS_SCOPE_KEY] = await self._grants_of(principal.user_id)
            await app(scope, receive, send)

        return authenticated

    async def _authenticate(self, scope: Scope) -> Principal:
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        if not header:
            raise Unauthenticated(f"This server needs credentials: {HELP}.")
        scheme, _, credentials = header.strip().partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "bearer" and credentials:
            return await self._by_token(credentials)
        if scheme == "basic" and credentials:
            name, password = _basic(credentials)
            return await self._by_password(name, password)
        # The header's text is not quoted back: it may be a token sent without a scheme.
        raise Unauthenticated(f"Unsupported Authorization header: {HELP}.")

    async def _by_token(self, secret: str) -> Principal:
        from starlette.concurrency import run_in_threadpool

        digest = token_hash(secret)
        found, account = self._tokens.get(digest)
        if not found:
            account = await run_in_threadpool(self._load_token, digest)
            self._tokens.put(digest, account)
        if account is None:
            raise Unauthenticated("Invalid token: no such token on this server.")
        if account.revoked:
            raise Unauthenticated("This token was revoked; create another (loopml tokens create).")
        if account.expires_at is not None and account.expires_at <= now_ms():
            raise Unauthenticated("This token has expired; create another (loopml tokens create).")
        return account.principal

    def _load_token(self, digest: str) -> _Account | None:
        stmt = select(
            api_tokens.c.id,
            api_tokens.c.token_hash,
            api_tokens.c.expires_at,
            api_tokens.c.revoked_at,
            api_tokens.c.last_used_at,
            users.c.id.label("user_id"),
            users.c.name,
            users.c.is_admin,
        ).join(users, users.c.id == api_tokens.c.user_id)
        with self.db.read() as conn:
            row = conn.execute(stmt.where(api_tokens.c.token_hash == digest)).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        now = now_ms()
        if (
            row.revoked_at is None
            and now - max(row.last_used_at or 0, self._touched.get(row.id, 0)) >= TOUCH_EVERY_MS
        ):
            self._touched[row.id] = now
            # Off the request's path: a busy database must not hold up a read.
            threading.Thread(target=self._touch, args=(row.id, now), daemon=True).start()
        return _Account(
            principal=Principal(row.name, is_admin=bool(row.is_admin), user_id=row.user_id),
            expires_at=row.expires_at,
            revoked=row.revoked_at is not None,
        )

    def _touch(self, token_id: int, when: int) -> None:
        """Record when a token was last used (best effort: a failure only delays it)."""
        try:
            self.db.transact(
                lambda conn: conn.execute(
                    update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=when)
                )
            )
        except Exception as exc:  # noqa: BLE001 - the token was valid; only the note failed
            self._touched.pop(token_id, None)
            logger.warning("could not record the use of token %d: %s", token_id, exc)

    async def _by_password(self, name: str, password: str) -> Principal:
        from starlette.concurrency import run_in_threadpool

        found, account = self._users.get(name)
        if not found:
            account = await run_in_threadpool(self._load_user, name)
            self._users.put(name, account)
        if account is None or account.password_hash is None:
            await run_in_threadpool(waste_time, password)  # as slow as a wrong password
            raise Unauthenticated("Wrong user name or password.")
        stored: str = account.password_hash
        key = hmac.new(
            self._key,
            b"\0".join(s.encode("utf-8") for s in (name, password, stored)),
            hashlib.sha256,
        ).digest()
        with self._verified_lock:
            known = key in self._verified
            if known:
                self._verified.move_to_end(key)
        if not known:
            if not await run_in_threadpool(verify_password, password, stored):
                raise Unauthenticated("Wrong user name or password.")
            with self._verified_lock:
                self._verified[key] = None
                while len(self._verified) > PASSWORDS_REMEMBERED:
                    self._verified.popitem(last=False)
        return account.principal

    def _load_user(self, name: str) -> _Account | None:
        with self.db.read() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            return None
        return _Account(
            principal=Principal(row.name, is_admin=bool(row.is_admin), user_id=row.id),
            password_hash=row.password_hash,
        )

    async def _grants_of(self, user_id: int) -> dict[tuple[str, str], str]:
        from starlette.concurrency import run_in_threadpool

        found, levels = self._grants.get(user_id)
        if not found:
            levels = await run_in_threadpool(self._load_grants, user_id)
            self._grants.put(user_id, levels)
        return levels

    def _load_grants(self, user_id: int) -> dict[tuple[str, str], str]:
        with self.db.read() as conn:
            return g.grants_of(conn, user_id)

    # -- the Access protocol ----------------------------------------------------------------

    def principal(self, conn: HTTPConnection) -> Principal:
        principal = conn.scope.get(PRINCIPAL_SCOPE_KEY)
        if not isinstance(principal, Principal):
            # Only /health skips the middleware, and it asks nobody.
            raise ApiError("UNAUTHENTICATED", f"This request carries no credentials: {HELP}.")
        return principal

    def level(self, conn: HTTPConnection, kind: Kind, key: str) -> str | None:
        """The caller's level on one experiment or model (``manage`` for admins; None: no
        access at all)."""
        principal = self.principal(conn)
        if principal.is_admin:
            return "manage"
        levels: dict[tuple[str, str], str] = conn.scope.get(GRANTS_SCOPE_KEY) or {}
        granted = levels.get((kind, key))
        return max(granted, self.default_level, key=g.rank) if granted else self.default_level

    def check(self, conn: HTTPConnection, kind: Kind, key: str, level: Level) -> None:
        have = self.level(conn, kind, key)
        if g.rank(have) >= g.rank(level):
            return
        if have is None:  # the same answer an unknown one gets: its existence is not told
            raise ApiError("RESOURCE_DOES_NOT_EXIST", _not_found(conn.scope, kind, key))
        name = self.principal(conn).name
        raise ApiError(
            "PERMISSION_DENIED",
            f"User {name!r} has {have} access to {kind} {key!r}; this needs {level}. "
            f"Ask a user with manage access on it, or an admin, to grant it.",
        )

    def readable(self, conn: HTTPConnection, kind: Kind) -> set[str] | None:
        principal = self.principal(conn)
        if principal.is_admin or self.default_level is not None:
            return None
        levels: dict[tuple[str, str], str] = conn.scope.get(GRANTS_SCOPE_KEY) or {}
        return {key for (k, key) in levels if k == kind}

    def created(self, conn: HTTPConnection, kind: Kind, key: str) -> None:
        principal = self.principal(conn)
        uid = principal.user_id
        if uid is None:
            return
        self.db.transact(lambda c: g.put(c, uid, kind, key, "manage"))
        # Seen at once by this request and this process (others within CACHE_SECONDS).
        levels = dict(conn.scope.get(GRANTS_SCOPE_KEY) or {})
        levels[(kind, key)] = "manage"
        conn.scope[GRANTS_SCOPE_KEY] = levels
        self._grants.forget(uid)

    def forget(self) -> None:
        """Drop every remembered token, user and grant (the next request reads the store)."""
        for cache in (self._tokens, self._users, self._grants):
            cache.clear()


def _default_level(settings: Any) -> str | None:
    level = getattr(settings, "default_permission", "none")
    return None if level in (None, "none") else str(level)


def _not_found(scope: Scope, kind: str, key: str) -> str:
    """The message the routes give something that does not exist (MLflow's own words
    under MLflow's API), so a hidden one reads the same."""
    if kind == "experiment":
        if str(scope.get("path", "")).startswith(MLFLOW_PATHS):
            return f"Could not find experiment with ID {key}"
        return f"No experiment with id {key}."
    return f"No registered model {key!r}."


def _basic(credentials: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Unauthenticated(f"Malformed Basic credentials: {HELP}.") from None
    name, colon, password = decoded.partition(":")
    if not colon or not name:
        raise Unauthenticated(f"Malformed Basic credentials: {HELP}.")
    return name, password


async def _challenge(send: Send, message: str) -> None:
    body = error_body("UNAUTHENTICATED", message)
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *CHALLENGES,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
