"""Events in the metadata store: the way other parts of the loop (monitoring alerts, registry
changes, your own code) ask for pipeline runs without calling the pipeline.

    emit_event("alert", subject="churn", payload={"metric": "psi", "value": 0.31})

A pipeline declaring ``on_event("alert", subject="churn")`` is then started by the next
scheduler tick. Events are append-only; each has an increasing id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select

from loopml.exceptions import InvalidValue
from loopml.pipelines.exceptions import shown
from loopml.pipelines.records import now_ms, to_datetime
from loopml.store.tables import events

if TYPE_CHECKING:
    from loopml.store.db import Database
    from loopml.workspace import Workspace

MAX_KIND = 64
MAX_SUBJECT = 250


@dataclass(frozen=True)
class Event:
    """One stored event."""

    id: int
    kind: str
    subject: str | None
    payload: dict[str, Any] | None
    created_at: datetime


def emit_event(
    kind: str,
    subject: str | None = None,
    payload: dict[str, Any] | None = None,
    *,
    workspace: Workspace | None = None,
) -> int:
    """Record an event (``kind`` such as ``"alert"``, an optional ``subject`` such as a model
    or pipeline name, a JSON-serialisable ``payload``); returns its id."""
    if not isinstance(kind, str) or not kind.strip() or len(kind) > MAX_KIND:
        raise InvalidValue(
            f"An event kind is a non-empty string of at most {MAX_KIND} characters, got "
            f"{shown(kind)}."
        )
    if subject is not None and (not isinstance(subject, str) or len(subject) > MAX_SUBJECT):
        raise InvalidValue(
            f"An event subject is a string of at most {MAX_SUBJECT} characters, got "
            f"{shown(subject)}."
        )
    try:
        body = None if payload is None else json.dumps(payload, allow_nan=False, default=str)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(
            f"The payload of event {kind!r} is not JSON-serialisable: "
            f"{shown(str(exc), 200, quote=False)}"
        ) from exc
    ws = workspace or _default()
    row = {"kind": kind, "subject": subject, "payload": body, "created_at": now_ms()}

    def tx(conn: Connection) -> int:
        key = conn.execute(insert(events).values(**row)).inserted_primary_key
        assert key is not None
        return int(key[0])

    return ws.db.transact(tx)


def list_events(
    kind: str | None = None,
    subject: str | None = None,
    *,
    after_id: int = 0,
    limit: int = 1000,
    workspace: Workspace | None = None,
) -> list[Event]:
    """Events (oldest first) of ``kind``/``subject`` with an id above ``after_id``."""
    ws = workspace or _default()
    return events_after(ws.db, kind, subject, after_id, limit)


def events_after(
    db: Database, kind: str | None, subject: str | None, after_id: int, limit: int = 1000
) -> list[Event]:
    stmt = select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
    if kind is not None:
        stmt = stmt.where(events.c.kind == kind)
    if subject is not None:
        stmt = stmt.where(events.c.subject == subject)
    with db.read() as conn:
        rows = conn.execute(stmt).all()
    return [
        Event(
            id=int(row.id),
            kind=row.kind,
            subject=row.subject,
            payload=json.loads(row.payload) if row.payload else None,
            created_at=to_datetime(row.created_at) or datetime.now(),
        )
        for row in rows
    ]


def _default() -> Workspace:
    from loopml.workspace import default_workspace

    return default_workspace()
