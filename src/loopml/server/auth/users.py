"""The team server's users: a name, an optional password (stored as a scrypt hash) and
whether they are an admin. Deleting a user deletes their tokens and grants with them.

    create_user(ws.db, "ana", password="s3cret-enough", admin=True)
    [u.name for u in list_users(ws.db)]   # ['ana']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from loopml.exceptions import AlreadyExists, InvalidInput, NotFound
from loopml.server.auth.passwords import check_policy, hash_password
from loopml.server.auth.tables import api_tokens, permissions, users
from loopml.store.clock import now_ms, to_datetime
from loopml.store.tables import KEY

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from loopml.store.db import Database

# No ':' (Basic auth splits "name:password" at the first one), no whitespace or controls.
_NAME = re.compile(r"^[A-Za-z0-9_.@+-]+$")


@dataclass(frozen=True)
class User:
    """A user as listed: never their password or its hash."""

    id: int
    name: str
    is_admin: bool
    created_at: datetime
    has_password: bool


def _to_user(row: Any) -> User:
    created = to_datetime(row.created_at)
    assert created is not None
    return User(
        id=row.id,
        name=row.name,
        is_admin=bool(row.is_admin),
        created_at=created,
        has_password=row.password_hash is not None,
    )


def check_name(name: str) -> str:
    """``name`` if it can be a user name: letters, digits and ``_ . @ + -``."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("A user name must be a non-empty string.")
    if len(name) > KEY:
        raise InvalidInput(f"The user name {name[:40]!r}… is {len(name)} characters; limit {KEY}.")
    if not _NAME.match(name):
        raise InvalidInput(
            f"The user name {name!r} has characters a user name can't have: use letters, "
            "digits, '_', '.', '@', '+' and '-'."
        )
    return name


def user_row(conn: Connection, name: str) -> Any:
    """The ``users`` row named ``name``; :class:`NotFound` naming the users when missing."""
    row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        names = conn.execute(select(users.c.name).order_by(users.c.name).limit(20)).scalars()
        raise NotFound(f"No user {name!r}. Users: {', '.join(names) or 'none yet'}.")
    return row


def create_user(db: Database, name: str, *, password: str | None, admin: bool = False) -> User:
    """Add a user; ``password=None`` makes a user that signs in with tokens only."""
    check_name(name)
    hashed = hash_password(check_policy(password)) if password is not None else None

    def tx(conn: Connection) -> Any:
        if conn.execute(select(users.c.id).where(users.c.name == name)).first() is not None:
            raise AlreadyExists(f"User {name!r} exists already.")
        conn.execute(
            insert(users).values(
                name=name, password_hash=hashed, is_admin=admin, created_at=now_ms()
            )
        )
        return user_row(conn, name)

    try:
        return _to_user(db.transact(tx))
    except IntegrityError as exc:  # created by another process between our look and insert
        raise AlreadyExists(f"User {name!r} exists already.") from exc


def get_user(db: Database, name: str) -> User:
    with db.read() as conn:
        return _to_user(user_row(conn, name))


def list_users(db: Database) -> list[User]:
    with db.read() as conn:
        return [_to_user(row) for row in conn.execute(select(users).order_by(users.c.name))]


def has_users(db: Database) -> bool:
    """Whether anyone could sign in to a server with auth on."""
    with db.read() as conn:
        return bool(conn.execute(select(func.count()).select_from(users)).scalar())


def delete_user(db: Database, name: str) -> User:
    """Remove ``name`` with their tokens and grants, in one transaction."""

    def tx(conn: Connection) -> Any:
        row = user_row(conn, name)
        conn.execute(delete(api_tokens).where(api_tokens.c.user_id == row.id))
        conn.execute(delete(permissions).where(permissions.c.user_id == row.id))
        conn.execute(delete(users).where(users.c.id == row.id))
        return row

    return _to_user(db.transact(tx))


def set_password(db: Database, name: str, password: str | None) -> User:
    """Change (or, with None, remove) ``name``'s password; their tokens keep working."""
    hashed = hash_password(check_policy(password)) if password is not None else None

    def tx(conn: Connection) -> Any:
        row = user_row(conn, name)
        conn.execute(update(users).where(users.c.id == row.id).values(password_hash=hashed))
        return user_row(conn, name)

    return _to_user(db.transact(tx))


def set_admin(db: Database, name: str, admin: bool) -> User:
    def tx(conn: Connection) -> Any:
        row = user_row(conn, name)
        conn.execute(update(users).where(users.c.id == row.id).values(is_admin=admin))
        return user_row(conn, name)

    return _to_user(db.transact(tx))
