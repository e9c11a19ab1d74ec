"""Feedback on gateway requests (table ``llm_feedback``): a thumbs up or down, a rating, any
named score, attached to the request id the gateway answered with (``x-request-id``).

    record_feedback("req_3f2a…", True)                      # thumbs up: stored as 1.0
    record_feedback("req_3f2a…", 4, name="rating", comment="good but long")
    feedback_for("req_3f2a…")

Over HTTP: ``POST /v1/feedback`` on the gateway; on the command line: ``loopml llm feedback
REQUEST_ID VALUE``. Feedback is append-only (a request may get several; readers that need one
value take the newest of a name). What reads it: the prompt A/B report
(:func:`loopml.llm.prompts.ab.prompt_ab`).

    LoopmlError
    ├── RequestNotFound (NotFound)             no such request in the log (loopml.llm.reports)
    └── FeedbackNotAllowed (PermissionError)   the key did not make that request
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from loopml.exceptions import InvalidInput, LoopmlError
from loopml.llm.reports import RequestNotFound
from loopml.llm.tables import llm_feedback, llm_requests
from loopml.store.clock import now_ms, to_datetime
from loopml.workspace import WorkspaceLike, resolve_workspace

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from loopml.llm.keys import VirtualKey

__all__ = [
    "Feedback",
    "FeedbackNotAllowed",
    "RequestNotFound",
    "check_value",
    "feedback_for",
    "list_feedback",
    "record_feedback",
]

#: Longest feedback name and comment.
MAX_NAME, MAX_COMMENT = 64, 10_000


class FeedbackNotAllowed(PermissionError, LoopmlError):
    """A virtual key gave feedback on a request another team (or key) made."""


@dataclass(frozen=True)
class Feedback:
    """One stored piece of feedback."""

    id: int
    request_id: str
    name: str
    value: float
    comment: str | None
    actor: str | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "request_id": self.request_id,
            "name": self.name,
            "value": self.value,
            "comment": self.comment,
            "actor": self.actor,
            "created_at": self.created_at.isoformat(),
        }


def _feedback(row: Any) -> Feedback:
    created = to_datetime(row.created_at)
    assert created is not None
    return Feedback(
        id=int(row.id),
        request_id=row.request_id,
        name=row.name,
        value=float(row.value),
        comment=row.comment,
        actor=row.actor,
        created_at=created,
    )


def check_value(value: object) -> float:
    """``value`` as a float: a finite number, or a bool (True → 1.0, False → 0.0).

    >>> check_value(True), check_value(4)
    (1.0, 4.0)
    """
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(
            f"Feedback is a finite number or true/false (a thumbs up is 1 or true), got {value!r}"
        )
    return float(value)


def check_feedback_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise InvalidInput(
            f"A feedback name is text of 1 to {MAX_NAME} characters (like 'user' or 'rating'), "
            f"got {name!r}"
        )
    return name


def _check_request_id(request_id: object) -> str:
    if not isinstance(request_id, str) or not request_id.strip():
        raise InvalidInput(
            f"request_id is the id the gateway answered with (x-request-id), got {request_id!r}"
        )
    return request_id.strip()


def _request(conn: Connection, request_id: str) -> Any:
    found = conn.execute(
        select(llm_requests.c.id, llm_requests.c.key_id, llm_requests.c.team).where(
            llm_requests.c.id == request_id
        )
    ).first()
    if found is None:
        raise RequestNotFound(
            f"No gateway request {request_id!r} in the request log: feedback goes on the id "
            "the gateway answered with (the x-request-id header); `loopml llm requests` lists "
            "recent ones. In-process, `Gateway.feedback(...)` writes the request log first."
        )
    return found


def _may_give(key: VirtualKey, request: Any) -> bool:
    """A key gives feedback on its own requests, and on its team's."""
    if request.key_id == key.id:
        return True
    return key.team is not None and request.team == key.team


def record_feedback(
    request_id: str,
    value: float | bool,
    *,
    name: str = "user",
    comment: str | None = None,
    actor: str | None = None,
    key: VirtualKey | None = None,
    workspace: WorkspaceLike = None,
) -> Feedback:
    """Store ``value`` (a number; a bool is 1 or 0) as feedback ``name`` on the gateway
    request ``request_id``, which must be in the request log (:class:`RequestNotFound`
    else). With ``key`` (the gateway passes the caller's virtual key), only a request made
    with that key or by its team takes it (:class:`FeedbackNotAllowed` else). ``actor``
    defaults to the key (``key:ID``), else the user running this."""
    request_id = _check_request_id(request_id)
    number = check_value(value)
    name = check_feedback_name(name)
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise InvalidInput(f"A feedback comment is text of at most {MAX_COMMENT} characters")
    if actor is None:
        if key is not None:
            actor = f"key:{key.id}"
        else:
            from loopml.registry.versions import actor as current_actor

            actor = current_actor()
    ws = resolve_workspace(workspace)

    def tx(conn: Connection) -> Feedback:
        request = _request(conn, request_id)
        if key is not None and not _may_give(key, request):
            whose = f"team {key.team!r}" if key.team else f"key {key.id}"
            raise FeedbackNotAllowed(
                f"Key {key.id} may not give feedback on request {request_id!r}: it was not made "
                f"by {whose}. Send feedback with the key that made the request (or one of its "
                "team's)."
            )
        new_id = conn.execute(
            insert(llm_feedback).values(
                request_id=request_id,
                name=name,
                value=number,
                comment=comment,
                actor=actor,
                created_at=now_ms(),
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        row = conn.execute(select(llm_feedback).where(llm_feedback.c.id == new_id)).one()
        return _feedback(row)

    return ws.db.transact(tx)


def feedback_for(
    request_id: str, *, name: str | None = None, workspace: WorkspaceLike = None
) -> list[Feedback]:
    """Every piece of feedback on ``request_id`` (of ``name`` only, when given), oldest
    first; an empty list when there is none."""
    request_id = _check_request_id(request_id)
    ws = resolve_workspace(workspace)
    query = select(llm_feedback).where(llm_feedback.c.request_id == request_id)
    if name is not None:
        query = query.where(llm_feedback.c.name == check_feedback_name(name))
    with ws.db.read() as conn:
        rows = conn.execute(query.order_by(llm_feedback.c.id)).all()
    return [_feedback(row) for row in rows]


def list_feedback(
    *,
    name: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    workspace: WorkspaceLike = None,
) -> list[Feedback]:
    """Feedback recorded since ``since`` (of ``name`` only, when given), newest first."""
    ws = resolve_workspace(workspace)
    query = select(llm_feedback)
    if name is not None:
        query = query.where(llm_feedback.c.name == check_feedback_name(name))
    if since is not None:
        if since.tzinfo is None:
            raise InvalidInput("since= needs a time with its UTC offset (an aware datetime)")
        query = query.where(llm_feedback.c.created_at >= int(since.timestamp() * 1000))
    query = query.order_by(llm_feedback.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with ws.db.read() as conn:
        rows = conn.execute(query).all()
    return [_feedback(row) for row in rows]
