"""The event log: how the loop closes without one part calling another.

Every area records its notable facts here as events (a run ended, a model version was
registered or promoted, a pipeline run failed), and your own code can add its own
(``loopml.emit_event("alert", subject="churn", payload={...})``). The scheduler's
``on_event(kind, subject=...)`` triggers, and later alert channels and the UI, read them.

Events are append-only rows of the ``events`` table, ordered by an increasing id. A consumer
keeps the last id it handled and asks for the events after it (:func:`read`); a write that
emits inside its own transaction (:func:`emit` with a ``Connection``) commits its fact and its
event together, or neither.

The kinds loopml writes are listed once, in :data:`KINDS`; a kind in one of their namespaces
(``run.``, ``data.``, ``model.``, ``pipeline.``, ``feature.``,
``deployment.``, ``llm.``, ``rag.``, ``alert``) must be one of them, so a typo is an error
rather than an event nobody reads. Any other kind (``"retrain"``,
``"team.nightly"``) is yours.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    text,
)

from loopml.exceptions import InvalidValue
from loopml.store.clock import now_ms, to_datetime
from loopml.store.tables import KEY, metadata
from loopml.wording import shown

if TYPE_CHECKING:
    from loopml.store.db import Database
    from loopml.workspace import Workspace

MAX_KIND = 64
MAX_SUBJECT = KEY
#: On PostgreSQL, emitters hold this transaction-level advisory lock from their insert to
#: their commit, so ids become visible in increasing order and a reader that moves its
#: cursor past an id never skips an event still being committed with a smaller one.
_PG_EMIT_LOCK = 7215002

# Append-only events that triggers react to (monitoring alerts, registry events, your own).
events = Table(
    "events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("kind", String(MAX_KIND), nullable=False),
    Column("subject", String(MAX_SUBJECT), nullable=True),
    Column("payload", Text, nullable=True),  # JSON
    Column("created_at", BigInteger, nullable=False),
    Index("ix_events_kind_subject_id", "kind", "subject", "id"),
)


@dataclass(frozen=True)
class EventKind:
    """One kind of event loopml writes: what its subject names, its payload's keys."""

    name: str
    subject: str
    payload: tuple[str, ...]
    meaning: str


#: Every kind loopml writes, with a one-line meaning (docs/architecture.md shows this table).
KINDS: Final[Mapping[str, EventKind]] = {
    kind.name: kind
    for kind in (
        EventKind("run.finished", "experiment", ("run_id", "name"), "a tracked run ended normally"),
        EventKind(
            "run.failed",
            "experiment",
            ("run_id", "name", "error"),
            "a tracked run ended with an exception",
        ),
        EventKind(
            "run.killed",
            "experiment",
            ("run_id", "name"),
            "a tracked run was interrupted (Ctrl-C, SIGTERM) or its process died",
        ),
        EventKind(
            "data.version_added",
            "dataset path",
            ("hash", "previous", "size", "files"),
            "a new version of a file or folder (reserved: `loopml data add` doesn't write it yet)",
        ),
        EventKind(
            "model.registered",
            "model",
            ("version", "run_id"),
            "a new model version was registered",
        ),
        EventKind(
            "model.promoted",
            "model",
            ("version", "previous", "forced"),
            "Production moved to a version: the gate passed, an approval, or a forced override",
        ),
        EventKind(
            "model.rolled_back",
            "model",
            ("version", "previous"),
            "Production moved back to the version that held it before",
        ),
        EventKind(
            "model.stage_changed",
            "model",
            ("version", "stage"),
            "a version moved to Staging, Archived or None (not Production)",
        ),
        EventKind(
            "model.alias_set",
            "model",
            ("alias", "version", "previous"),
            "an alias was set to (or moved to) a version",
        ),
        EventKind(
            "model.alias_removed",
            "model",
            ("alias", "previous"),
            "an alias was deleted",
        ),
        EventKind(
            "pipeline.succeeded",
            "pipeline",
            ("run_id", "partition", "trigger"),
            "a pipeline run finished with every task done",
        ),
        EventKind(
            "pipeline.failed",
            "pipeline",
            ("run_id", "partition", "trigger", "error"),
            "a pipeline run ended with a failed task (or could not start)",
        ),
        EventKind(
            "pipeline.killed",
            "pipeline",
            ("run_id", "partition", "trigger"),
            "a pipeline run was interrupted or its process died",
        ),
        EventKind(
            "feature.applied",
            "definition name",
            ("kind", "version", "previous"),
            "a feature definition (entity, view, on-demand view, service) got a new version",
        ),
        EventKind(
            "feature.materialized",
            "feature view",
            ("start", "end", "rows"),
            "a feature view's values from start to end were loaded into the online store",
        ),
        EventKind(
            "deployment.created",
            "deployment",
            ("revision", "strategy", "reason"),
            "a deployment was created (revision 1 of its configuration)",
        ),
        EventKind(
            "deployment.changed",
            "deployment",
            ("revision", "strategy", "reason"),
            "a deployment's configuration got a new revision (strategy, variants, weights)",
        ),
        EventKind(
            "deployment.rolled_back",
            "deployment",
            ("revision", "strategy", "reason"),
            "a deployment went back to its previous configuration",
        ),
        EventKind(
            "deployment.model_failed",
            "deployment",
            ("revision", "variant", "model", "error"),
            "a server could not load a variant's model: it gets no traffic, the primary serves",
        ),
        EventKind(
            "deployment.canary_advanced",
            "deployment",
            ("revision", "strategy", "reason"),
            "the canary controller moved a canary to its next traffic step",
        ),
        EventKind(
            "deployment.canary_aborted",
            "deployment",
            ("revision", "strategy", "reason"),
            "the canary controller rolled a canary back to its primary (the reason names why)",
        ),
        EventKind(
            "deployment.canary_completed",
            "deployment",
            ("revision", "strategy", "reason"),
            "a canary passed every step and the registry gate: the candidate serves alone",
        ),
        EventKind(
            "alert",
            "deployment",
            ("alert_id", "rule", "severity", "condition", "value", "window_start", "window_end"),
            "a monitoring alert rule fired (once, until its condition clears)",
        ),
        EventKind(
            "alert.resolved",
            "deployment",
            ("alert_id", "rule", "severity", "condition", "value", "window_start", "window_end"),
            "a fired monitoring alert's condition cleared",
        ),
        EventKind(
            "llm.budget_threshold",
            "key:ID, team:NAME or user:NAME",
            ("budget_usd", "spent_usd", "fraction", "period", "period_start"),
            "an LLM gateway budget's spend crossed 50, 80 or 100% (once per period and step)",
        ),
        EventKind(
            "rag.index_stale",
            "index",
            ("version", "corpus", "current", "added", "changed", "deleted", "served_stale"),
            "a RAG index's corpus changed since its build (once per build and corpus state)",
        ),
    )
}
#: Namespaces whose kinds are loopml's own (see :data:`KINDS`).
NAMESPACES: Final = frozenset(name.split(".", 1)[0] for name in KINDS)


@dataclass(frozen=True)
class Event:
    """One stored event."""

    id: int
    kind: str
    subject: str | None
    payload: dict[str, Any] | None
    created_at: datetime


def check_kind(kind: object) -> str:
    """``kind`` if it may be emitted or listened for; raises :class:`InvalidValue` otherwise.

    >>> check_kind("model.promoted"), check_kind("alert")
    ('model.promoted', 'alert')
    """
    if not isinstance(kind, str) or not kind.strip() or len(kind) > MAX_KIND:
        raise InvalidValue(
            f"An event kind is a non-empty string of at most {MAX_KIND} characters, got "
            f"{shown(kind)}."
        )
    namespace = kind.split(".", 1)[0]
    if "." in kind and namespace in NAMESPACES and kind not in KINDS:
        close = difflib.get_close_matches(kind, list(KINDS), n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        ours = ", ".join(name for name in KINDS if name.startswith(namespace + "."))
        raise InvalidValue(
            f"Unknown event kind {kind!r}. {hint}The {namespace}.* kinds are loopml's own: "
            f"{ours}. Name your own kinds outside them (e.g. 'alert' or 'team.{kind}')."
        )
    return kind


def emit(
    target: Database | Connection,
    kind: str,
    subject: str | None = None,
    payload: Mapping[str, Any] | None = None,
) -> int:
    """Append an event; returns its id.

    With a ``Connection`` the event is written in that (write) transaction: it commits with
    the fact it reports, or rolls back with it. Emit it as the transaction's last write (on
    PostgreSQL it holds the event lock until commit). With a ``Database`` it is a
    transaction of its own.
    """
    row = _row(kind, subject, payload)
    if isinstance(target, Connection):
        return _insert(target, row)
    return target.transact(lambda conn: _insert(conn, row))


def read(
    source: Database | Connection,
    after_id: int = 0,
    *,
    kinds: str | Iterable[str] | None = None,
    subject: str | None = None,
    limit: int = 1000,
) -> list[Event]:
    """Events with an id above ``after_id`` (oldest first, at most ``limit``), of ``kinds``
    (one or several; every kind when None) and ``subject`` (any when None).

    A consumer remembers the id of the last event it handled and passes it next time.
    """
    stmt = select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
    if kinds is not None:
        wanted = [kinds] if isinstance(kinds, str) else list(kinds)
        stmt = stmt.where(events.c.kind.in_(wanted))
    if subject is not None:
        stmt = stmt.where(events.c.subject == subject)
    if isinstance(source, Connection):
        rows = source.execute(stmt).all()
    else:
        with source.read() as conn:
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


def last_id(source: Database | Connection) -> int:
    """The id of the newest event (0 when there is none): where a consumer that wants only
    what happens from now on starts."""
    stmt = select(func.max(events.c.id))
    if isinstance(source, Connection):
        value = source.execute(stmt).scalar()
    else:
        with source.read() as conn:
            value = conn.execute(stmt).scalar()
    return int(value or 0)


def _row(kind: str, subject: str | None, payload: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "kind": kind,
        "subject": subject,
        "payload": payload_json(kind, subject, payload),
        "created_at": now_ms(),
    }


def payload_json(kind: str, subject: str | None, payload: Mapping[str, Any] | None) -> str | None:
    """Check an event (:func:`check_kind`, the subject's length, a JSON payload) and return
    its payload as stored; raises :class:`InvalidValue` naming what is wrong."""
    check_kind(kind)
    if subject is not None and (not isinstance(subject, str) or len(subject) > MAX_SUBJECT):
        raise InvalidValue(
            f"An event subject is a string of at most {MAX_SUBJECT} characters, got "
            f"{shown(subject)}."
        )
    try:
        value = dict(payload) if isinstance(payload, Mapping) else payload
        body = None if value is None else json.dumps(value, allow_nan=False, default=str)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(
            f"The payload of event {kind!r} is not JSON-serialisable: "
            f"{shown(str(exc), 200, quote=False)}"
        ) from exc
    return body


def _insert(conn: Connection, row: dict[str, Any]) -> int:
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_EMIT_LOCK})"))
    key = conn.execute(insert(events).values(**row)).inserted_primary_key
    assert key is not None
    return int(key[0])


class Events:
    """``ws.events``: the workspace's event log.

    >>> ws.events.emit("alert", subject="churn", payload={"psi": 0.31})
    >>> ws.events.read(after_id=last_seen, kinds="model.promoted")
    """

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def emit(
        self, kind: str, subject: str | None = None, payload: Mapping[str, Any] | None = None
    ) -> int:
        """Append an event (a kind of loopml's own must be one of :data:`KINDS`); its id."""
        return emit(self.workspace.db, kind, subject, payload)

    def read(
        self,
        after_id: int = 0,
        *,
        kinds: str | Iterable[str] | None = None,
        subject: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        """Events above ``after_id``, oldest first (see :func:`read`)."""
        return read(self.workspace.db, after_id, kinds=kinds, subject=subject, limit=limit)

    def last_id(self) -> int:
        """The id of the newest event (0 when there is none)."""
        return last_id(self.workspace.db)
