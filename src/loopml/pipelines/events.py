"""Your own events, and the ones loopml writes, as the pipelines see them: the way other
parts of the loop (monitoring alerts, registry changes, your own code) ask for pipeline runs
without calling the pipeline.

    emit_event("alert", subject="churn", payload={"metric": "psi", "value": 0.31})

A pipeline declaring ``on_event("alert", subject="churn")`` is then started by the next
scheduler tick; so is one declaring ``on_event("model.promoted", subject="churn")`` after a
promotion. The event log itself, and the kinds loopml writes, are :mod:`loopml.events`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml.events import MAX_KIND, MAX_SUBJECT, Event, emit, payload_json, read
from loopml.workspace import resolve_workspace

if TYPE_CHECKING:
    from loopml.workspace import Workspace, WorkspaceLike

__all__ = ["MAX_KIND", "MAX_SUBJECT", "Event", "emit_event", "list_events"]


def emit_event(
    kind: str,
    subject: str | None = None,
    payload: dict[str, Any] | None = None,
    *,
    workspace: WorkspaceLike = None,
) -> int:
    """Record an event (``kind`` such as ``"alert"``, an optional ``subject`` such as a model
    or pipeline name, a JSON-serialisable ``payload``); returns its id. A kind in loopml's
    own namespaces (``run.``, ``data.``, ``model.``, ``pipeline.``) must be one of
    :data:`loopml.events.KINDS`."""
    payload_json(kind, subject, payload)  # bad input is reported before a workspace is sought
    return emit(resolve_workspace(workspace).db, kind, subject, payload)


def list_events(
    kind: str | None = None,
    subject: str | None = None,
    *,
    after_id: int = 0,
    limit: int = 1000,
    workspace: WorkspaceLike = None,
) -> list[Event]:
    """Events (oldest first) of ``kind``/``subject`` with an id above ``after_id``."""
    ws = resolve_workspace(workspace)
    return read(ws.db, after_id, kinds=kind, subject=subject, limit=limit)


def _default() -> Workspace:
    from loopml.workspace import default_workspace

    return default_workspace()
