"""Permissions: one user's level (read, edit, manage) on one experiment or registered model.

An experiment is keyed by its id (as a string, so a rename keeps its grants), a model by
its name. Each level includes the ones below it: ``edit`` can read, ``manage`` can edit and
grant. Admins need no grants.

    grant(ws.db, "bo", "experiment", "3", "read")
    level_of(ws.db, "bo", "experiment", "3")   # 'read'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from loopml.exceptions import InvalidInput, NotFound
from loopml.server.auth.tables import permissions, users
from loopml.server.auth.users import user_row
from loopml.server.context import EXPERIMENT, LEVELS, MODEL
from loopml.store.db import upsert

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from loopml.server.context import Kind, Level
    from loopml.store.db import Database

KINDS: tuple[str, ...] = (EXPERIMENT, MODEL)


@dataclass(frozen=True)
class Grant:
    user: str
    kind: str
    key: str
    level: str


def rank(level: str | None) -> int:
    """0 for no access, then 1, 2, 3 for read, edit, manage.

    >>> rank("edit") >= rank("read"), rank(None)
    (True, 0)
    """
    return LEVELS.index(level) + 1 if level in LEVELS else 0


def check_level(level: str) -> Level:
    if level not in LEVELS:
        raise InvalidInput(f"No permission level {level!r}: use {', '.join(LEVELS)}.")
    return level


def check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise InvalidInput(f"No kind {kind!r}: permissions are on {' or '.join(KINDS)}s.")
    return kind  # type: ignore[return-value]


def put(conn: Connection, user_id: int, kind: str, key: str, level: str) -> None:
    """Set ``user_id``'s level on (kind, key) inside the caller's transaction."""
    stmt = upsert(conn.dialect.name, permissions).values(
        user_id=user_id, kind=kind, key=key, level=level
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id", "kind", "key"], set_={"level": stmt.excluded.level}
        )
    )


def grant(db: Database, user: str, kind: str, key: str, level: str) -> Grant:
    """Give ``user`` exactly ``level`` on the experiment id or model name ``key`` (a lower
    level than before lowers it)."""
    check_kind(kind)
    check_level(level)

    def tx(conn: Connection) -> None:
        put(conn, user_row(conn, user).id, kind, key, level)

    db.transact(tx)
    return Grant(user, kind, key, level)


def revoke(db: Database, user: str, kind: str, key: str) -> Grant:
    """Take ``user``'s grant on (kind, key) away; :class:`NotFound` if there is none."""
    check_kind(kind)

    def tx(conn: Connection) -> Grant:
        uid = user_row(conn, user).id
        where = (
            (permissions.c.user_id == uid)
            & (permissions.c.kind == kind)
            & (permissions.c.key == key)
        )
        level = conn.execute(select(permissions.c.level).where(where)).scalar()
        if level is None:
            raise NotFound(f"User {user!r} has no grant on {kind} {key!r}.")
        conn.execute(delete(permissions).where(where))
        return Grant(user, kind, key, level)

    return db.transact(tx)


def list_grants(
    db: Database, *, user: str | None = None, kind: str | None = None, key: str | None = None
) -> list[Grant]:
    """Grants, optionally only ``user``'s, or only those on one kind / one object."""
    stmt: Any = select(users.c.name, permissions.c.kind, permissions.c.key, permissions.c.level)
    stmt = stmt.join(users, users.c.id == permissions.c.user_id)
    with db.read() as conn:
        if user is not None:
            stmt = stmt.where(permissions.c.user_id == user_row(conn, user).id)
        if kind is not None:
            stmt = stmt.where(permissions.c.kind == check_kind(kind))
        if key is not None:
            stmt = stmt.where(permissions.c.key == key)
        stmt = stmt.order_by(users.c.name, permissions.c.kind, permissions.c.key)
        return [Grant(*row) for row in conn.execute(stmt)]


def grants_of(conn: Connection, user_id: int) -> dict[tuple[str, str], str]:
    """``{(kind, key): level}`` of one user."""
    rows = conn.execute(
        select(permissions.c.kind, permissions.c.key, permissions.c.level).where(
            permissions.c.user_id == user_id
        )
    )
    return {(kind, key): level for kind, key, level in rows}


def level_of(db: Database, user: str, kind: str, key: str) -> str | None:
    with db.read() as conn:
        uid = user_row(conn, user).id
        return grants_of(conn, uid).get((kind, key))


def rename_key(conn: Connection, kind: str, old: str, new: str) -> None:
    """Move every grant on (kind, ``old``) to ``new``, inside the caller's transaction:
    what renaming a registered model calls, so its users keep their access."""
    conn.execute(
        update(permissions)
        .where((permissions.c.kind == check_kind(kind)) & (permissions.c.key == old))
        .values(key=new)
    )


def drop_key(conn: Connection, kind: str, key: str) -> None:
    """Delete every grant on (kind, ``key``), inside the caller's transaction: what deleting
    a model calls, so a new model of the same name does not inherit them."""
    conn.execute(
        delete(permissions).where(
            (permissions.c.kind == check_kind(kind)) & (permissions.c.key == key)
        )
    )
