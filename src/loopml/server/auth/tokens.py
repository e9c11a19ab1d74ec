"""API tokens: what scripts and the MLflow client sign in with (``Authorization: Bearer``).

A token is ``lml_`` and 43 random URL-safe characters (256 bits). It is shown once, when
created; the store keeps its SHA-256 (a high-entropy secret needs no slow hash) and its
first characters (:attr:`ApiToken.prefix`) to tell tokens apart in listings. A token can
expire and can be revoked; a revoked token stays listed.

    token, secret = create_token(ws.db, "ana", name="ci", expires_in=parse_expiry("30d"))
    revoke_token(ws.db, token.id)
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from loopml.exceptions import InvalidInput, NotFound
from loopml.server.auth.tables import api_tokens, users
from loopml.server.auth.users import user_row
from loopml.store.clock import now_ms, to_datetime
from loopml.store.tables import KEY

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from loopml.store.db import Database

TOKEN_PREFIX = "lml_"
PREFIX_CHARS = 12  # "lml_" and 8 random characters: enough to tell tokens apart

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(secret: str) -> str:
    """The hex SHA-256 the store keeps of a token."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_expiry(value: str | float | int) -> float:
    """Seconds from ``"30d"``, ``"12h"``, ``"90m"``, ``"2w"``, ``"45s"`` or a number of seconds.

    >>> parse_expiry("30d"), parse_expiry(60)
    (2592000.0, 60.0)
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise InvalidInput(
                f"{value!r} is not a duration: use e.g. 30d, 12h, 90m, 2w or seconds."
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not seconds > 0:
        raise InvalidInput(f"A token's lifetime must be positive, got {value!r}.")
    return seconds


@dataclass(frozen=True)
class ApiToken:
    """A token as listed; the secret itself is never stored."""

    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    #: Updated at most once a minute per server process, so it is right to about a minute.
    last_used_at: datetime | None

    @property
    def state(self) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at.timestamp() * 1000 <= now_ms():
            return "expired"
        return "active"


def _to_token(row: Any) -> ApiToken:
    created = to_datetime(row.created_at)
    assert created is not None
    return ApiToken(
        id=row.id,
        user=row.user,
        name=row.name,
        prefix=row.prefix,
        created_at=created,
        expires_at=to_datetime(row.expires_at),
        revoked_at=to_datetime(row.revoked_at),
        last_used_at=to_datetime(row.last_used_at),
    )


def _listing() -> Any:
    return select(api_tokens, users.c.name.label("user")).join(
        users, users.c.id == api_tokens.c.user_id
    )


def create_token(
    db: Database, user: str, *, name: str | None = None, expires_in: float | None = None
) -> tuple[ApiToken, str]:
    """A new token of ``user`` → (its listing, the secret to hand over once)."""
    if name is not None and (not name.strip() or len(name) > KEY):
        raise InvalidInput(f"A token's name must be 1 to {KEY} characters, got {name!r}.")
    if expires_in is not None and not expires_in > 0:
        raise InvalidInput(f"A token's lifetime must be positive, got {expires_in!r} seconds.")
    secret = new_secret()
    created = now_ms()
    expires = None if expires_in is None else created + round(expires_in * 1000)

    def tx(conn: Connection) -> Any:
        owner = user_row(conn, user)
        result = conn.execute(
            insert(api_tokens).values(
                user_id=owner.id,
                name=name if name is not None else f"token-{created}",
                token_hash=token_hash(secret),
                prefix=secret[:PREFIX_CHARS],
                created_at=created,
                expires_at=expires,
            )
        )
        token_id = result.inserted_primary_key[0]  # type: ignore[index]
        return conn.execute(_listing().where(api_tokens.c.id == token_id)).one()

    return _to_token(db.transact(tx)), secret


def list_tokens(db: Database, user: str | None = None) -> list[ApiToken]:
    """Every token (of ``user`` only, when given), oldest first, revoked ones included."""
    with db.read() as conn:
        stmt = _listing().order_by(api_tokens.c.id)
        if user is not None:
            stmt = stmt.where(api_tokens.c.user_id == user_row(conn, user).id)
        return [_to_token(row) for row in conn.execute(stmt)]


def get_token(db: Database, token_id: int) -> ApiToken:
    with db.read() as conn:
        row = conn.execute(_listing().where(api_tokens.c.id == token_id)).first()
    if row is None:
        raise NotFound(f"No token with id {token_id}; `loopml tokens list` shows them.")
    return _to_token(row)


def revoke_token(db: Database, token_id: int) -> ApiToken:
    """Revoke token ``token_id`` (already revoked: left as it was). Servers stop accepting
    it within a second or two."""

    def tx(conn: Connection) -> Any:
        row = conn.execute(_listing().where(api_tokens.c.id == token_id)).first()
        if row is None:
            raise NotFound(f"No token with id {token_id}; `loopml tokens list` shows them.")
        if row.revoked_at is None:
            conn.execute(
                update(api_tokens).where(api_tokens.c.id == token_id).values(revoked_at=now_ms())
            )
        return conn.execute(_listing().where(api_tokens.c.id == token_id)).one()

    return _to_token(db.transact(tx))
